//! The whole-index check behind `ReadTxn::check`: every page, every link, every summary, and
//! the key sequence against the set rebuilt from the events.

use std::collections::HashSet;

use heed::RoTxn;

use super::page::{Key, PageRef, PAGE_BYTES};
use super::update::hex_key;
use super::{load_page, read_meta, MerkleError, PageCache};
use crate::error::ReadError;
use crate::seal::{Cipher, SEAL_OVERHEAD};
use crate::tables::Tables;
use xaeroflux_event::Accum;

/// Missing or extra keys described one by one before only counting them.
const KEY_PROBLEMS_SHOWN: u64 = 10;

/// A page to check and what its parent says about it.
struct Visit {
    no: u32,
    level: u8,
    /// The parent entry's first key.
    first: Option<Key>,
    /// The next sibling's first key: every key here must be below it.
    upper: Option<Key>,
    /// The parent entry's count and sum.
    accum: Option<Accum>,
    /// The parent's last key, for its last child.
    last: Option<Key>,
}

/// Compares the index's keys, in the order they come, with the sorted expected keys.
struct KeyMerge<'k> {
    expected: &'k [Key],
    at: usize,
    missing: u64,
    extra: u64,
}

impl KeyMerge<'_> {
    fn next(&mut self, key: &Key, problem: &mut dyn FnMut(String)) {
        while self.at < self.expected.len() && self.expected[self.at] < *key {
            self.missing(problem);
        }
        if self.expected.get(self.at) == Some(key) {
            self.at += 1;
        } else {
            self.extra += 1;
            if self.extra <= KEY_PROBLEMS_SHOWN {
                problem(format!(
                    "merkle: key {} is indexed but no such event is stored",
                    hex_key(key)
                ));
            }
        }
    }

    fn missing(&mut self, problem: &mut dyn FnMut(String)) {
        self.missing += 1;
        if self.missing <= KEY_PROBLEMS_SHOWN {
            problem(format!(
                "merkle: stored event {} is not indexed",
                hex_key(&self.expected[self.at])
            ));
        }
        self.at += 1;
    }

    fn finish(&mut self, problem: &mut dyn FnMut(String)) {
        while self.at < self.expected.len() {
            self.missing(problem);
        }
        if self.missing > KEY_PROBLEMS_SHOWN || self.extra > KEY_PROBLEMS_SHOWN {
            problem(format!(
                "merkle: {} stored events not indexed, {} indexed keys not stored",
                self.missing, self.extra
            ));
        }
    }
}

/// Checks the index against `expected` (every stored event's key, sorted) and reports each
/// problem through `problem`. Returns the number of pages reached.
pub(crate) fn verify(
    txn: &RoTxn,
    t: &Tables,
    cipher: &Cipher,
    expected: &[Key],
    problem: &mut dyn FnMut(String),
) -> Result<u64, ReadError> {
    debug_assert!(expected.windows(2).all(|w| w[0] < w[1]));
    let meta = match read_meta(txn, t.meta, cipher) {
        Ok(m) => m,
        Err(MerkleError::Heed(e)) => return Err(e.into()),
        Err(e) => {
            problem(e.to_string());
            return Ok(0);
        }
    };
    let mut free = HashSet::new();
    for item in t.merkle_free.iter(txn)? {
        let (k, v) = item?;
        match <[u8; 4]>::try_from(k).map(u32::from_be_bytes) {
            Ok(no) if no != 0 && no < meta.next_page && v.is_empty() => {
                free.insert(no);
            }
            _ => problem(format!("merkle_free holds a malformed entry {k:02x?}")),
        }
    }
    let mut stored = 0u64;
    for item in t.merkle.iter(txn)? {
        let (k, v) = item?;
        stored += 1;
        let no = <[u8; 4]>::try_from(k).map(u32::from_be_bytes);
        match no {
            Ok(no) if no != 0 && no < meta.next_page => {
                if free.contains(&no) {
                    problem(format!("merkle page {no} is stored and also free"));
                }
            }
            _ => problem(format!("merkle holds a page under key {k:02x?}")),
        }
        let want = PAGE_BYTES + if cipher.is_sealed() { SEAL_OVERHEAD } else { 0 };
        if v.len() != want {
            problem(format!("merkle value {k:02x?} is {} bytes", v.len()));
        }
    }

    let mut merge = KeyMerge {
        expected,
        at: 0,
        missing: 0,
        extra: 0,
    };
    let mut visited = HashSet::new();
    let (mut leaves, mut branches) = (0u64, 0u64);
    let mut root_accum = Accum::ZERO;
    let mut stack = Vec::new();
    if meta.root != 0 {
        stack.push(Visit {
            no: meta.root,
            level: meta.root_level(),
            first: None,
            upper: None,
            accum: None,
            last: None,
        });
    }
    while let Some(v) = stack.pop() {
        if !visited.insert(v.no) {
            problem(format!("merkle page {} is reached twice", v.no));
            continue;
        }
        if free.contains(&v.no) {
            problem(format!("merkle page {} is in use and also free", v.no));
        }
        // Each page is opened on its own: a check of the whole index keeps one at a time.
        let cache = PageCache::new();
        let bytes = match load_page(txn, t.merkle, cipher, &cache, v.no) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                problem(format!("merkle page {} is referenced but missing", v.no));
                continue;
            }
            Err(MerkleError::Heed(e)) => return Err(e.into()),
            Err(e) => {
                problem(e.to_string());
                continue;
            }
        };
        let page = match PageRef::parse(v.no, bytes, v.level) {
            Ok(p) => p,
            Err(e) => {
                problem(e.to_string());
                continue;
            }
        };
        if let Err(e) = page.validate_entries() {
            problem(e.to_string());
            continue;
        }
        let s = page.summary();
        if v.no == meta.root {
            root_accum = s.accum;
        }
        let mut link = |ok: bool, what: &str| {
            if !ok {
                problem(format!("merkle page {}: {what}", v.no));
            }
        };
        link(
            v.first.is_none_or(|f| f == s.first),
            "first key differs from its parent entry",
        );
        link(
            v.upper.is_none_or(|u| s.last < u),
            "keys reach past the next sibling's first key",
        );
        link(
            v.accum.is_none_or(|a| a == s.accum),
            "summary differs from its parent entry",
        );
        link(
            v.last.is_none_or(|l| l == s.last),
            "last key differs from its parent's",
        );
        if page.is_leaf() {
            leaves += 1;
            for i in 0..page.count() {
                merge.next(page.key(i), problem);
            }
            continue;
        }
        branches += 1;
        let count = page.count();
        for i in (0..count).rev() {
            let is_last = i + 1 == count;
            stack.push(Visit {
                no: page.child(i),
                level: page.level() - 1,
                first: Some(*page.key(i)),
                upper: if is_last {
                    v.upper
                } else {
                    Some(*page.key(i + 1))
                },
                accum: Some(page.child_accum(i)),
                last: is_last.then_some(s.last),
            });
        }
    }
    merge.finish(problem);

    if (leaves, branches) != (meta.leaf_pages, meta.branch_pages) {
        problem(format!(
            "merkle: meta counts {} leaf and {} branch pages, {leaves} and {branches} reached",
            meta.leaf_pages, meta.branch_pages
        ));
    }
    let reached = visited.len() as u64;
    if stored != reached {
        problem(format!(
            "merkle holds {stored} pages, {reached} reachable from the root"
        ));
    }
    let mut want = Accum::ZERO;
    for k in expected {
        want.add_id(&super::page::id_of(k));
    }
    if root_accum != want {
        problem(format!(
            "merkle: root summary counts {} keys, {} events stored, or their sums differ",
            root_accum.count, want.count
        ));
    }
    Ok(reached)
}
