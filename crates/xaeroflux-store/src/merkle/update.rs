//! Editing the index inside a write transaction.
//!
//! An [`Edit`] keeps every page it changes in a dirty cache, so a page touched by many keys of
//! one batch is read (and fully validated) once and written once, at [`Edit::flush`]. Pages are
//! B+tree nodes: inserts split full pages, removals unlink empty pages, merge pages under a
//! quarter full with a neighbour when both fit in one, and collapse a root with one child.

use std::collections::HashMap;
use std::ops::Bound;

use heed::{RoTxn, RwTxn};
use xaeroflux_event::EventRef;

use super::page::{branch_entry, geometry, id_of, Key, PageBuf, PageError, PageRef};
use super::{
    load_page, open_page, page_key, read_meta, seal_meta, MerkleError, PageCache, TreeMeta,
    HEIGHT_MAX, META_MERKLE,
};
use crate::seal::{Cipher, Slot};
use crate::tables::{Table, Tables};
use xaeroflux_event::SetKey;

/// One branch on the way from the root to a leaf.
#[derive(Clone, Copy, Debug)]
struct Step {
    page: u32,
    level: u8,
    /// The entry followed.
    idx: usize,
    /// Entries in the page when it was read.
    count: usize,
    /// The page is on the rightmost path from the root.
    spine: bool,
}

/// Changes to the index within one write transaction.
pub(crate) struct Edit<'c> {
    cipher: &'c Cipher,
    /// Pages of a sealed store opened to be read, not changed.
    clean: PageCache,
    merkle: Table,
    free: Table,
    meta_table: Table,
    meta: TreeMeta,
    dirty: HashMap<u32, PageBuf>,
    /// Pages freed by this edit and not reused yet.
    freed: Vec<u32>,
    /// Pages taken from the `merkle_free` table, to delete from it at flush.
    taken: Vec<u32>,
    /// The last page taken from `merkle_free`: the next one is looked for above it.
    taken_last: Option<u32>,
}

impl<'c> Edit<'c> {
    pub(crate) fn begin(
        txn: &RoTxn,
        t: &Tables,
        cipher: &'c Cipher,
    ) -> Result<Edit<'c>, MerkleError> {
        Ok(Edit {
            cipher,
            clean: PageCache::new(),
            merkle: t.merkle,
            free: t.merkle_free,
            meta_table: t.meta,
            meta: read_meta(txn, t.meta, cipher)?,
            dirty: HashMap::new(),
            freed: Vec::new(),
            taken: Vec::new(),
            taken_last: None,
        })
    }

    /// Page `no` at `level`, from the cache or the map. The header is checked.
    fn page<'a>(&'a self, txn: &'a RoTxn, no: u32, level: u8) -> Result<PageRef<'a>, MerkleError> {
        if let Some(buf) = self.dirty.get(&no) {
            if buf.level() != level {
                return Err(PageError::new(no, format!("cached at level {}", buf.level())).into());
            }
            return Ok(buf.view());
        }
        let bytes = load_page(txn, self.merkle, self.cipher, &self.clean, no)?
            .ok_or_else(|| PageError::new(no, "referenced but missing"))?;
        Ok(PageRef::parse(no, bytes, level)?)
    }

    /// Page `no` in the cache, ready to change. A page loaded from the map is validated in full
    /// first, so no change builds on damaged data.
    fn page_mut(&mut self, txn: &RoTxn, no: u32, level: u8) -> Result<&mut PageBuf, MerkleError> {
        let merkle = self.merkle;
        let cipher = self.cipher;
        let clean = self.clean.as_mut().remove(&no);
        match self.dirty.entry(no) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let buf = e.into_mut();
                if buf.level() != level {
                    return Err(PageError::new(no, "cached at another level").into());
                }
                Ok(buf)
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let opened;
                let bytes: &[u8] = match clean {
                    Some(page) => {
                        opened = page;
                        &opened[..]
                    }
                    None => {
                        let stored = merkle
                            .get(txn, &page_key(no))?
                            .ok_or_else(|| PageError::new(no, "referenced but missing"))?;
                        if cipher.is_sealed() {
                            opened = open_page(cipher, no, stored)?;
                            &opened[..]
                        } else {
                            stored
                        }
                    }
                };
                let view = PageRef::parse(no, bytes, level)?;
                view.validate_entries()?;
                Ok(e.insert(PageBuf::copy_of(&view)))
            }
        }
    }

    /// Page `no` out of the cache, for edits that hold two pages at once. Put it back with
    /// `self.dirty.insert`.
    fn take(&mut self, txn: &RoTxn, no: u32, level: u8) -> Result<PageBuf, MerkleError> {
        self.page_mut(txn, no, level)?;
        Ok(self.dirty.remove(&no).expect("just cached"))
    }

    /// A page number for a new page: one freed by this edit, else the lowest in `merkle_free`,
    /// else a new number.
    fn alloc(&mut self, txn: &RoTxn, level: u8) -> Result<u32, MerkleError> {
        let no = if let Some(no) = self.freed.pop() {
            no
        } else if let Some(no) = self.take_free(txn)? {
            no
        } else {
            let no = self.meta.next_page;
            self.meta.next_page = no
                .checked_add(1)
                .ok_or_else(|| MerkleError::Corrupt("page numbers exhausted".into()))?;
            no
        };
        if level == 0 {
            self.meta.leaf_pages += 1;
        } else {
            self.meta.branch_pages += 1;
        }
        Ok(no)
    }

    fn take_free(&mut self, txn: &RoTxn) -> Result<Option<u32>, MerkleError> {
        let after = self.taken_last.map(page_key);
        let lower = match &after {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let Some(item) = self.free.range(txn, &(lower, Bound::Unbounded))?.next() else {
            return Ok(None);
        };
        let (k, _) = item?;
        let no = <[u8; 4]>::try_from(k)
            .map(u32::from_be_bytes)
            .map_err(|_| MerkleError::Corrupt("merkle_free key is not a page number".into()))?;
        if no == 0 || no >= self.meta.next_page {
            return Err(MerkleError::Corrupt(format!(
                "free page {no} was never allocated"
            )));
        }
        self.taken_last = Some(no);
        self.taken.push(no);
        Ok(Some(no))
    }

    fn free(&mut self, no: u32, level: u8) {
        self.dirty.remove(&no);
        self.clean.as_mut().remove(&no);
        self.freed.push(no);
        let count = if level == 0 {
            &mut self.meta.leaf_pages
        } else {
            &mut self.meta.branch_pages
        };
        *count = count.saturating_sub(1);
    }

    /// Writes the changed pages, the free list and the meta record into the transaction.
    pub(crate) fn flush(&mut self, txn: &mut RwTxn) -> Result<(), MerkleError> {
        for no in self.taken.drain(..) {
            self.free.delete(txn, &page_key(no))?;
        }
        for no in self.freed.drain(..) {
            self.merkle.delete(txn, &page_key(no))?;
            self.free.put(txn, &page_key(no), &[])?;
        }
        let mut pages: Vec<_> = self.dirty.drain().collect();
        pages.sort_unstable_by_key(|(no, _)| *no);
        for (no, buf) in &pages {
            if cfg!(debug_assertions) {
                let view = PageRef::parse(*no, buf.bytes(), buf.level());
                view.and_then(|v| v.validate_entries())
                    .unwrap_or_else(|e| panic!("writing an invalid page: {e}"));
            }
            let key = page_key(*no);
            let stored = self
                .cipher
                .seal(Slot::Merkle, &key, buf.bytes())
                .map_err(|e| MerkleError::Corrupt(e.to_string()))?;
            self.merkle.put(txn, &key, &stored)?;
        }
        self.meta_table
            .put(txn, META_MERKLE, &seal_meta(&self.meta, self.cipher)?)?;
        self.taken_last = None;
        Ok(())
    }

    /// The path of branches from the root to the leaf that holds, or would hold, `key`.
    fn descend(&self, txn: &RoTxn, key: &Key) -> Result<(Vec<Step>, u32, bool), MerkleError> {
        let mut path = Vec::with_capacity(self.meta.height as usize);
        let mut no = self.meta.root;
        let mut level = self.meta.root_level();
        let mut spine = true;
        while level > 0 {
            let p = self.page(txn, no, level)?;
            let idx = p.child_for(key);
            path.push(Step {
                page: no,
                level,
                idx,
                count: p.count(),
                spine,
            });
            spine &= idx + 1 == p.count();
            no = p.child(idx);
            level -= 1;
        }
        Ok((path, no, spine))
    }

    /// Adds `key`; the index must not hold it.
    pub(crate) fn insert(&mut self, txn: &RoTxn, key: &Key) -> Result<(), MerkleError> {
        if self.meta.root == 0 {
            let no = self.alloc(txn, 0)?;
            let mut leaf = PageBuf::new(no, 0);
            leaf.insert_entry(0, key);
            leaf.refresh_leaf();
            self.dirty.insert(no, leaf);
            self.meta.root = no;
            self.meta.height = 1;
            return Ok(());
        }
        let (path, leaf, spine) = self.descend(txn, key)?;
        let mut split = self.leaf_insert(txn, leaf, key, spine)?;
        let mut child = leaf;
        for step in path.iter().rev() {
            split = self.branch_insert(txn, step, child, split, key)?;
            child = step.page;
        }
        if let Some(right) = split {
            self.grow_root(txn, child, right)?;
        }
        Ok(())
    }

    /// Inserts into a leaf. Returns the new right sibling if the leaf split.
    fn leaf_insert(
        &mut self,
        txn: &RoTxn,
        no: u32,
        key: &Key,
        spine: bool,
    ) -> Result<Option<u32>, MerkleError> {
        let page = self.page_mut(txn, no, 0)?;
        let view = page.view();
        let (pos, count) = (view.lower_bound(key), view.count());
        if pos < count && view.key(pos) == key {
            return Err(MerkleError::Corrupt(format!(
                "key {} is already indexed",
                hex_key(key)
            )));
        }
        if count < page.capacity() {
            let mut s = view.summary();
            s.accum.add_id(&id_of(key));
            s.first = s.first.min(*key);
            s.last = s.last.max(*key);
            page.insert_entry(pos, key);
            page.set_summary(&s);
            return Ok(None);
        }
        let right_no = self.alloc(txn, 0)?;
        let mut left = self.dirty.remove(&no).expect("cached above");
        let mut right = PageBuf::new(right_no, 0);
        if spine && pos == count {
            // Time-ordered appends fill pages to the brim, as LMDB's append split does.
            right.insert_entry(0, key);
        } else {
            let mid = count / 2;
            left.move_tail_to(mid, &mut right);
            if pos <= mid {
                left.insert_entry(pos, key);
            } else {
                right.insert_entry(pos - mid, key);
            }
            left.refresh_leaf();
        }
        right.refresh_leaf();
        self.dirty.insert(no, left);
        self.dirty.insert(right_no, right);
        Ok(Some(right_no))
    }

    /// Updates a branch after its child `child` gained `key`, adding the child's new right
    /// sibling if it split. Returns this branch's new right sibling if it split in turn.
    fn branch_insert(
        &mut self,
        txn: &RoTxn,
        step: &Step,
        child: u32,
        split: Option<u32>,
        key: &Key,
    ) -> Result<Option<u32>, MerkleError> {
        let child_summary = self.page(txn, child, step.level - 1)?.summary();
        let right = match split {
            Some(r) => Some((r, self.page(txn, r, step.level - 1)?.summary())),
            None => None,
        };
        let page = self.page_mut(txn, step.page, step.level)?;
        debug_assert_eq!(page.count(), step.count);
        page.set_branch_entry(step.idx, &branch_entry(child, &child_summary));
        let Some((right_no, right_summary)) = right else {
            let mut s = page.view().summary();
            s.accum.add_id(&id_of(key));
            s.first = *page.view().key(0);
            if step.idx + 1 == step.count {
                s.last = child_summary.last;
            }
            page.set_summary(&s);
            return Ok(None);
        };
        let pos = step.idx + 1;
        let entry = branch_entry(right_no, &right_summary);
        if step.count < page.capacity() {
            let mut s = page.view().summary();
            s.accum.add_id(&id_of(key));
            s.first = *page.view().key(0);
            if pos == step.count {
                s.last = right_summary.last;
            }
            page.insert_entry(pos, &entry);
            page.set_summary(&s);
            return Ok(None);
        }
        let new_no = self.alloc(txn, step.level)?;
        let mut left = self.dirty.remove(&step.page).expect("cached above");
        let mut new = PageBuf::new(new_no, step.level);
        if step.spine && pos == step.count {
            new.insert_entry(0, &entry);
        } else {
            let mid = step.count / 2;
            left.move_tail_to(mid, &mut new);
            if pos <= mid {
                left.insert_entry(pos, &entry);
            } else {
                new.insert_entry(pos - mid, &entry);
            }
        }
        self.refresh_branch(txn, &mut left)?;
        self.refresh_branch(txn, &mut new)?;
        self.dirty.insert(step.page, left);
        self.dirty.insert(new_no, new);
        Ok(Some(new_no))
    }

    /// Recomputes a branch's summary; its last key comes from its last child.
    fn refresh_branch(&self, txn: &RoTxn, page: &mut PageBuf) -> Result<(), MerkleError> {
        let view = page.view();
        let last_child = view.child(view.count() - 1);
        let last = self.page(txn, last_child, page.level() - 1)?.summary().last;
        page.refresh_branch(&last);
        Ok(())
    }

    /// The root split: a new root above the old one and its new sibling.
    fn grow_root(&mut self, txn: &RoTxn, old: u32, right: u32) -> Result<(), MerkleError> {
        if self.meta.height >= HEIGHT_MAX {
            return Err(MerkleError::Corrupt(format!(
                "index would grow past {HEIGHT_MAX} levels"
            )));
        }
        let level = self.meta.height as u8;
        let old_summary = self.page(txn, old, level - 1)?.summary();
        let right_summary = self.page(txn, right, level - 1)?.summary();
        let no = self.alloc(txn, level)?;
        let mut root = PageBuf::new(no, level);
        root.insert_entry(0, &branch_entry(old, &old_summary));
        root.insert_entry(1, &branch_entry(right, &right_summary));
        root.refresh_branch(&right_summary.last);
        self.dirty.insert(no, root);
        self.meta.root = no;
        self.meta.height += 1;
        Ok(())
    }

    /// Removes `key`; the index must hold it.
    pub(crate) fn remove(&mut self, txn: &RoTxn, key: &Key) -> Result<(), MerkleError> {
        if self.meta.root == 0 {
            return Err(MerkleError::Corrupt(format!(
                "removing {} from an empty index",
                hex_key(key)
            )));
        }
        let (path, leaf, _) = self.descend(txn, key)?;
        let page = self.page_mut(txn, leaf, 0)?;
        let view = page.view();
        let pos = view.lower_bound(key);
        if pos == view.count() || view.key(pos) != key {
            return Err(MerkleError::Corrupt(format!(
                "key {} to remove is not indexed",
                hex_key(key)
            )));
        }
        let mut s = view.summary();
        page.remove_entry(pos);
        if page.count() > 0 {
            let view = page.view();
            s.accum.sub_id(&id_of(key));
            s.first = *view.key(0);
            s.last = *view.key(view.count() - 1);
            page.set_summary(&s);
        }
        let mut child = leaf;
        for step in path.iter().rev() {
            self.branch_remove(txn, step, child, key)?;
            child = step.page;
        }
        self.shrink_root(txn)
    }

    /// Updates a branch after its child lost `key`: unlinks the child if it is empty, merges it
    /// with a neighbour if it is under a quarter full and both fit in one page.
    fn branch_remove(
        &mut self,
        txn: &RoTxn,
        step: &Step,
        child: u32,
        key: &Key,
    ) -> Result<(), MerkleError> {
        let child_level = step.level - 1;
        let child_count = self.dirty.get(&child).map_or(0, PageBuf::count);
        if child_count == 0 {
            self.free(child, child_level);
            let page = self.page_mut(txn, step.page, step.level)?;
            page.remove_entry(step.idx);
            return self.refresh_cached(txn, step.page);
        }
        let capacity = geometry(child_level).1;
        if child_count < capacity / 4 && step.count >= 2 && self.merge(txn, step)? {
            return Ok(());
        }
        let cs = self.page(txn, child, child_level)?.summary();
        let page = self.page_mut(txn, step.page, step.level)?;
        page.set_branch_entry(step.idx, &branch_entry(child, &cs));
        let mut s = page.view().summary();
        s.accum.sub_id(&id_of(key));
        s.first = *page.view().key(0);
        if step.idx + 1 == step.count {
            s.last = cs.last;
        }
        page.set_summary(&s);
        Ok(())
    }

    /// Merges the child at `step.idx` with its left neighbour (or right, for the first child)
    /// if their entries fit in one page. The left page survives.
    fn merge(&mut self, txn: &RoTxn, step: &Step) -> Result<bool, MerkleError> {
        let child_level = step.level - 1;
        let (li, ri) = if step.idx > 0 {
            (step.idx - 1, step.idx)
        } else {
            (step.idx, step.idx + 1)
        };
        let parent = self.page(txn, step.page, step.level)?;
        let (lno, rno) = (parent.child(li), parent.child(ri));
        let fits = self.page(txn, lno, child_level)?.count()
            + self.page(txn, rno, child_level)?.count()
            <= geometry(child_level).1;
        if !fits {
            return Ok(false);
        }
        let mut left = self.take(txn, lno, child_level)?;
        let mut right = self.take(txn, rno, child_level)?;
        right.move_tail_to(0, &mut left);
        if child_level == 0 {
            left.refresh_leaf();
        } else {
            self.refresh_branch(txn, &mut left)?;
        }
        let summary = left.view().summary();
        self.dirty.insert(lno, left);
        self.free(rno, child_level);
        let page = self.page_mut(txn, step.page, step.level)?;
        page.set_branch_entry(li, &branch_entry(lno, &summary));
        page.remove_entry(ri);
        self.refresh_cached(txn, step.page)?;
        Ok(true)
    }

    /// Recomputes the summary of cached branch `no`, unless it is now empty.
    fn refresh_cached(&mut self, txn: &RoTxn, no: u32) -> Result<(), MerkleError> {
        let mut page = self.dirty.remove(&no).expect("cached by the caller");
        if page.count() > 0 {
            self.refresh_branch(txn, &mut page)?;
        }
        self.dirty.insert(no, page);
        Ok(())
    }

    /// Frees an emptied root; replaces a branch root holding one child by that child.
    fn shrink_root(&mut self, txn: &RoTxn) -> Result<(), MerkleError> {
        loop {
            let (root, level) = (self.meta.root, self.meta.root_level());
            let count = self.page_mut(txn, root, level)?.count();
            if count == 0 {
                self.free(root, level);
                self.meta.root = 0;
                self.meta.height = 0;
                return Ok(());
            }
            if level == 0 || count > 1 {
                return Ok(());
            }
            let only = self.page(txn, root, level)?.child(0);
            self.free(root, level);
            self.meta.root = only;
            self.meta.height -= 1;
        }
    }
}

/// Applies one transaction's set changes: `(key, +1)` for each stored event, `(key, -1)` for
/// each removed one. Changes to the same key net out first (an event stored and removed in
/// the same transaction never reaches the index).
pub(crate) fn apply(
    t: &Tables,
    cipher: &Cipher,
    txn: &mut RwTxn,
    changes: &mut [(Key, i8)],
) -> Result<(), MerkleError> {
    if changes.is_empty() {
        return Ok(());
    }
    changes.sort_unstable_by_key(|c| c.0);
    let mut edit = Edit::begin(txn, t, cipher)?;
    for run in changes.chunk_by(|a, b| a.0 == b.0) {
        let net: i32 = run.iter().map(|(_, d)| i32::from(*d)).sum();
        match net {
            1 => edit.insert(txn, &run[0].0)?,
            -1 => edit.remove(txn, &run[0].0)?,
            0 => {}
            _ => {
                return Err(MerkleError::Corrupt(format!(
                    "key {} changed by {net} in one transaction",
                    hex_key(&run[0].0)
                )))
            }
        }
    }
    edit.flush(txn)
}

/// Pages built before each flush while rebuilding: bounds the rebuild's memory.
const REBUILD_FLUSH_PAGES: usize = 256;

/// Replaces the index by one built from the `events` table. Returns the number of keys.
pub(crate) fn rebuild(t: &Tables, cipher: &Cipher, txn: &mut RwTxn) -> Result<u64, MerkleError> {
    let mut keys = Vec::new();
    for item in t.events.iter(txn)? {
        let (k, v) = item?;
        let v = cipher
            .open_cow(Slot::Events, k, v)
            .map_err(|_| MerkleError::Corrupt(format!("event {k:02x?} fails authentication")))?;
        let ev = EventRef::from_body(&v)
            .map_err(|e| MerkleError::Corrupt(format!("event {k:02x?}: {e}")))?;
        keys.push(
            SetKey {
                created_at: ev.created_at(),
                id: *ev.id(),
            }
            .encode(),
        );
    }
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(MerkleError::Corrupt(format!(
            "event {} is stored twice",
            hex_key(&pair[0])
        )));
    }
    t.merkle.clear(txn)?;
    t.merkle_free.clear(txn)?;
    t.meta
        .put(txn, META_MERKLE, &seal_meta(&TreeMeta::EMPTY, cipher)?)?;
    let mut edit = Edit::begin(txn, t, cipher)?;
    // Ascending inserts take the append split: every page but the last on each level is full.
    for chunk in keys.chunks(REBUILD_FLUSH_PAGES * super::page::LEAF_CAPACITY) {
        for key in chunk {
            edit.insert(txn, key)?;
        }
        edit.flush(txn)?;
    }
    edit.flush(txn)?;
    Ok(keys.len() as u64)
}

pub(crate) fn hex_key(key: &Key) -> String {
    let k = SetKey::decode(key);
    format!("({}, {})", k.created_at, k.id)
}

#[cfg(test)]
mod tests {
    //! The editor against a `BTreeSet` model, directly (no events): inserts, removals, splits,
    //! merges and collapses, with the whole index verified after every batch.
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::page::LEAF_CAPACITY;
    use super::*;
    use crate::merkle::Tree;
    use xaeroflux_event::Accum;

    pub(crate) fn key(t: u64, salt: u32) -> Key {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&salt.to_le_bytes());
        id[4..12].copy_from_slice(&t.to_le_bytes());
        let id = *blake3::hash(&id).as_bytes();
        SetKey {
            created_at: t,
            id: xaeroflux_event::EventId(id),
        }
        .encode()
    }

    fn apply_batch(store: &crate::Store, batch: &[(Key, i8)]) {
        let shared = store.shared();
        let mut txn = shared.env.write_txn().unwrap();
        let mut changes = batch.to_vec();
        apply(&shared.tables, &shared.cipher, &mut txn, &mut changes).unwrap();
        txn.commit().unwrap();
    }

    fn assert_matches(store: &crate::Store, model: &BTreeSet<Key>) {
        let read = store.read().unwrap();
        let tree = Tree::open(&read.txn, read.tables(), read.cipher(), &read.pages).unwrap();
        let mut all = Accum::ZERO;
        for k in model {
            all.add_id(&id_of(k));
        }
        assert_eq!(tree.root_summary().unwrap(), all);
        let mut seen = Vec::new();
        tree.for_each(&SetKey::MIN.encode(), &SetKey::MAX.encode(), &mut |k| {
            seen.push(*k);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert!(seen.iter().eq(model.iter()), "keys in order");
        let mut problems = Vec::new();
        let expected: Vec<Key> = model.iter().copied().collect();
        crate::merkle::verify(
            &read.txn,
            read.tables(),
            read.cipher(),
            &expected,
            &mut |p| problems.push(p),
        )
        .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    fn store() -> (tempfile::TempDir, crate::Store) {
        store_of(false)
    }

    /// A plain store, or an encrypted one (whose pages are sealed and opened on every read).
    fn store_of(sealed: bool) -> (tempfile::TempDir, crate::Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::StoreOptions {
            key: sealed.then(|| crate::DataKey::generate().unwrap()),
            ..crate::StoreOptions::default()
        };
        let store = crate::Store::open_with(dir.path().join("db"), options).unwrap();
        assert_eq!(store.is_encrypted(), sealed);
        (dir, store)
    }

    #[test]
    fn appends_fill_pages_and_removals_shrink_back_to_empty() {
        let (_d, store) = store();
        let mut model = BTreeSet::new();
        let keys: Vec<Key> = (0..3000).map(|i| key(i, 0)).collect();
        for chunk in keys.chunks(700) {
            let batch: Vec<_> = chunk.iter().map(|k| (*k, 1)).collect();
            apply_batch(&store, &batch);
            model.extend(chunk.iter().copied());
        }
        assert_matches(&store, &model);
        {
            let read = store.read().unwrap();
            let meta = read_meta(&read.txn, read.tables().meta, read.cipher()).unwrap();
            assert_eq!(
                meta.leaf_pages,
                3000u64.div_ceil(405),
                "appends fill leaves"
            );
            assert_eq!((meta.height, meta.branch_pages), (2, 1));
        }
        // Remove all but a few, in two batches, then the rest.
        let batch: Vec<_> = keys[..2990].iter().map(|k| (*k, -1)).collect();
        for k in &keys[..2990] {
            model.remove(k);
        }
        apply_batch(&store, &batch[..1500]);
        apply_batch(&store, &batch[1500..]);
        assert_matches(&store, &model);
        let batch: Vec<_> = keys[2990..].iter().map(|k| (*k, -1)).collect();
        apply_batch(&store, &batch);
        model.clear();
        assert_matches(&store, &model);
        let read = store.read().unwrap();
        let meta = read_meta(&read.txn, read.tables().meta, read.cipher()).unwrap();
        assert_eq!(
            (meta.root, meta.height, meta.leaf_pages, meta.branch_pages),
            (0, 0, 0, 0)
        );
        assert_eq!(read.tables().merkle.len(&read.txn).unwrap(), 0);
    }

    fn meta_of(store: &crate::Store) -> TreeMeta {
        let read = store.read().unwrap();
        read_meta(&read.txn, read.tables().meta, read.cipher()).unwrap()
    }

    #[test]
    fn a_deep_index_fills_splits_merges_and_collapses() {
        let (_d, store) = store();
        let n = 100_000u64;
        let keys: Vec<Key> = (0..n).map(|i| key(i * 4, 2)).collect();
        for chunk in keys.chunks(10_000) {
            apply_batch(&store, &chunk.iter().map(|k| (*k, 1)).collect::<Vec<_>>());
        }
        let mut model: BTreeSet<Key> = keys.iter().copied().collect();
        let meta = meta_of(&store);
        let fill = n as f64 / (meta.leaf_pages as f64 * LEAF_CAPACITY as f64);
        assert!(fill >= 0.95, "sequential fill leaves pages {fill:.3} full");
        assert_eq!((meta.height, meta.branch_pages), (3, 3));
        assert_matches(&store, &model);

        // Back-dated keys land in the middle; the tail pages are not rewritten.
        let late: Vec<Key> = (0..3_000).map(|i| key(100_000 + i * 8, 3)).collect();
        apply_batch(&store, &late.iter().map(|k| (*k, 1)).collect::<Vec<_>>());
        model.extend(late.iter().copied());
        assert_matches(&store, &model);

        // A wide hole: leaves unlinked, branches merged.
        let hole: Vec<Key> = model
            .range(key(50_000, 0)..key(330_000, 0))
            .copied()
            .collect();
        apply_batch(&store, &hole.iter().map(|k| (*k, -1)).collect::<Vec<_>>());
        for k in &hole {
            model.remove(k);
        }
        assert_matches(&store, &model);
        let after = meta_of(&store);
        assert!(after.leaf_pages < meta.leaf_pages && after.branch_pages <= meta.branch_pages);

        // Down to a handful: the root collapses to a single leaf.
        let most: Vec<Key> = model.iter().skip(10).copied().collect();
        apply_batch(&store, &most.iter().map(|k| (*k, -1)).collect::<Vec<_>>());
        for k in &most {
            model.remove(k);
        }
        assert_matches(&store, &model);
        let meta = meta_of(&store);
        assert_eq!((meta.height, meta.leaf_pages, meta.branch_pages), (1, 1, 0));
    }

    #[test]
    fn freed_pages_are_reused() {
        let (_d, store) = store();
        let keys: Vec<Key> = (0..2000).map(|i| key(i, 1)).collect();
        apply_batch(&store, &keys.iter().map(|k| (*k, 1)).collect::<Vec<_>>());
        apply_batch(&store, &keys.iter().map(|k| (*k, -1)).collect::<Vec<_>>());
        let next = {
            let read = store.read().unwrap();
            read_meta(&read.txn, read.tables().meta, read.cipher())
                .unwrap()
                .next_page
        };
        apply_batch(&store, &keys.iter().map(|k| (*k, 1)).collect::<Vec<_>>());
        let read = store.read().unwrap();
        let meta = read_meta(&read.txn, read.tables().meta, read.cipher()).unwrap();
        assert_eq!(meta.next_page, next, "no new page numbers");
        assert_matches(&store, &keys.iter().copied().collect());
    }

    #[test]
    fn a_key_twice_or_a_missing_key_is_refused() {
        let (_d, store) = store();
        apply_batch(&store, &[(key(1, 0), 1)]);
        let shared = store.shared();
        let mut txn = shared.env.write_txn().unwrap();
        let err = apply(
            &shared.tables,
            &shared.cipher,
            &mut txn,
            &mut [(key(1, 0), 1)],
        )
        .unwrap_err();
        assert!(matches!(err, MerkleError::Corrupt(_)), "{err}");
        let err = apply(
            &shared.tables,
            &shared.cipher,
            &mut txn,
            &mut [(key(2, 0), -1)],
        )
        .unwrap_err();
        assert!(matches!(err, MerkleError::Corrupt(_)), "{err}");
        // A key added and removed in one transaction never reaches the index.
        apply(
            &shared.tables,
            &shared.cipher,
            &mut txn,
            &mut [(key(3, 0), 1), (key(3, 0), -1)],
        )
        .unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Keys after everything so far, ascending.
        Append(u16),
        /// Keys at random times (mostly in the middle).
        Scatter(Vec<(u16, u32)>),
        /// Remove the keys at these (wrapped) ranks.
        Remove(Vec<u16>),
        /// Remove this many of the largest (true) or smallest keys: moves first and last keys.
        RemoveEnd(u16, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u16..900).prop_map(Op::Append),
            proptest::collection::vec((any::<u16>(), any::<u32>()), 1..600).prop_map(Op::Scatter),
            proptest::collection::vec(any::<u16>(), 1..900).prop_map(Op::Remove),
            (1u16..500, any::<bool>()).prop_map(|(n, top)| Op::RemoveEnd(n, top)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn matches_a_sorted_set_model(
            ops in proptest::collection::vec(op(), 1..8),
            sealed in any::<bool>(),
        ) {
            let (_d, store) = store_of(sealed);
            let mut model = BTreeSet::new();
            let mut clock = 1_000_000u64;
            for op in ops {
                let mut batch = Vec::new();
                match op {
                    Op::Append(n) => for i in 0..n {
                        clock += 1;
                        let k = key(clock, u32::from(i));
                        model.insert(k);
                        batch.push((k, 1));
                    },
                    Op::Scatter(keys) => for (t, salt) in keys {
                        let k = key(u64::from(t) * 16 + 1_000_000, salt);
                        if model.insert(k) {
                            batch.push((k, 1));
                        }
                    },
                    Op::Remove(ranks) => for r in ranks {
                        if model.is_empty() { break; }
                        let k = *model.iter().nth(usize::from(r) % model.len()).unwrap();
                        model.remove(&k);
                        batch.push((k, -1));
                    },
                    Op::RemoveEnd(n, top) => for _ in 0..n {
                        let k = if top { model.pop_last() } else { model.pop_first() };
                        let Some(k) = k else { break };
                        batch.push((k, -1));
                    },
                }
                apply_batch(&store, &batch);
                assert_matches(&store, &model);
            }
        }
    }
}
