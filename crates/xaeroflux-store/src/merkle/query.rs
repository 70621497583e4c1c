//! Reading the index: prefix sums, ranks, the key at a rank and ordered visits, each over
//! O(height) pages read in place. Every descent checks each page's level against the stored
//! height, so a damaged page cannot send it deeper than [`super::HEIGHT_MAX`] levels.

use std::ops::ControlFlow;

use heed::RoTxn;

use super::page::{Key, PageError, PageRef};
use super::{load_page, read_meta, MerkleError, PageCache, TreeMeta};
use crate::seal::Cipher;
use crate::tables::{Table, Tables};
use xaeroflux_event::Accum;

/// A key found by rank, with what lies below it.
pub(crate) struct Boundary {
    /// The key just below, when it is on the same leaf.
    pub before: Option<Key>,
    pub at: Key,
    /// Sum and count of every key below `at`.
    pub below: Accum,
}

/// The index as of one transaction.
pub(crate) struct Tree<'a, 'e> {
    txn: &'a RoTxn<'e>,
    merkle: Table,
    cipher: &'a Cipher,
    pages: &'a PageCache,
    pub(crate) meta: TreeMeta,
}

impl<'a, 'e> Tree<'a, 'e> {
    /// The index as `txn` sees it; pages of a sealed store are opened into `pages`.
    pub(crate) fn open(
        txn: &'a RoTxn<'e>,
        t: &Tables,
        cipher: &'a Cipher,
        pages: &'a PageCache,
    ) -> Result<Tree<'a, 'e>, MerkleError> {
        Ok(Tree {
            txn,
            merkle: t.merkle,
            cipher,
            pages,
            meta: read_meta(txn, t.meta, cipher)?,
        })
    }

    pub(crate) fn page(&self, no: u32, level: u8) -> Result<PageRef<'a>, MerkleError> {
        let bytes = load_page(self.txn, self.merkle, self.cipher, self.pages, no)?
            .ok_or_else(|| PageError::new(no, "referenced but missing"))?;
        Ok(PageRef::parse(no, bytes, level)?)
    }

    fn root(&self) -> Result<Option<PageRef<'a>>, MerkleError> {
        if self.meta.root == 0 {
            return Ok(None);
        }
        self.page(self.meta.root, self.meta.root_level()).map(Some)
    }

    /// Sum and count of every key.
    pub(crate) fn root_summary(&self) -> Result<Accum, MerkleError> {
        Ok(self.root()?.map_or(Accum::ZERO, |r| r.summary().accum))
    }

    /// Sum and count of the keys below `key`. With `with_sum` false only the count is computed
    /// (the sum is left zero), which skips the 256-bit additions.
    pub(crate) fn prefix(&self, key: &Key, with_sum: bool) -> Result<Accum, MerkleError> {
        let mut acc = Accum::ZERO;
        let Some(mut page) = self.root()? else {
            return Ok(acc);
        };
        loop {
            let s = page.summary();
            if *key > s.last {
                add(&mut acc, &s.accum, with_sum);
                return Ok(acc);
            }
            if *key <= s.first {
                return Ok(acc);
            }
            if page.is_leaf() {
                let below = page.lower_bound(key);
                if with_sum {
                    acc.add(&page.accum_of(0..below));
                } else {
                    acc.count += below as u64;
                }
                return Ok(acc);
            }
            // Every child before the one that may hold `key` lies wholly below it.
            let c = page.child_for(key);
            if with_sum {
                acc.add(&page.accum_of(0..c));
            } else {
                acc.count += (0..c).map(|i| page.child_total(i)).sum::<u64>();
            }
            page = self.page(page.child(c), page.level() - 1)?;
        }
    }

    /// The key with `rank` keys below it, the key just below it when it shares the leaf (else
    /// `None`), and (with `with_sum`; else only the count) the summary of the keys below it:
    /// one descent.
    pub(crate) fn boundary(
        &self,
        rank: u64,
        with_sum: bool,
    ) -> Result<Option<Boundary>, MerkleError> {
        let Some(mut page) = self.root()? else {
            return Ok(None);
        };
        if rank >= page.summary().accum.count {
            return Ok(None);
        }
        let mut below = Accum::ZERO;
        let mut left = rank;
        loop {
            if page.is_leaf() {
                let i = usize::try_from(left)
                    .ok()
                    .filter(|i| *i < page.count())
                    .ok_or_else(|| PageError::new(page.no(), "total exceeds its entries"))?;
                if with_sum {
                    below.add(&page.accum_of(0..i));
                }
                below.count = rank;
                return Ok(Some(Boundary {
                    before: i.checked_sub(1).map(|j| *page.key(j)),
                    at: *page.key(i),
                    below,
                }));
            }
            let mut next = None;
            for i in 0..page.count() {
                let total = page.child_total(i);
                if left < total {
                    next = Some(i);
                    break;
                }
                left -= total;
            }
            let Some(i) = next else {
                return Err(PageError::new(page.no(), "total exceeds its children's").into());
            };
            if with_sum {
                below.add(&page.accum_of(0..i));
            }
            page = self.page(page.child(i), page.level() - 1)?;
        }
    }

    /// The key with `rank` keys below it.
    pub(crate) fn nth(&self, rank: u64) -> Result<Option<Key>, MerkleError> {
        Ok(self.boundary(rank, false)?.map(|b| b.at))
    }

    /// Visits the keys in `[lo, hi)` in ascending order until `f` breaks. Checks that the keys
    /// come out strictly ascending across pages.
    pub(crate) fn for_each(
        &self,
        lo: &Key,
        hi: &Key,
        f: &mut dyn FnMut(&Key) -> ControlFlow<()>,
    ) -> Result<(), MerkleError> {
        let Some(root) = self.root()? else {
            return Ok(());
        };
        if lo >= hi {
            return Ok(());
        }
        // (branch, entry followed), root first; at most `height - 1` long.
        let mut stack: Vec<(PageRef<'a>, usize)> = Vec::with_capacity(self.meta.height as usize);
        let mut page = root;
        while !page.is_leaf() {
            let c = page.child_for(lo);
            stack.push((page, c));
            page = self.page(page.child(c), page.level() - 1)?;
        }
        let mut pos = page.lower_bound(lo);
        let mut prev: Option<Key> = None;
        loop {
            while pos < page.count() {
                let key = page.key(pos);
                if key >= hi {
                    return Ok(());
                }
                if prev.is_some_and(|p| p >= *key) {
                    return Err(PageError::new(page.no(), "keys out of order across pages").into());
                }
                prev = Some(*key);
                if f(key).is_break() {
                    return Ok(());
                }
                pos += 1;
            }
            // Up to the nearest branch with a next child, then down its leftmost path.
            loop {
                let Some((branch, idx)) = stack.pop() else {
                    return Ok(());
                };
                if idx + 1 < branch.count() {
                    stack.push((branch, idx + 1));
                    page = self.page(branch.child(idx + 1), branch.level() - 1)?;
                    break;
                }
            }
            while !page.is_leaf() {
                stack.push((page, 0));
                page = self.page(page.child(0), page.level() - 1)?;
            }
            pos = 0;
        }
    }
}

fn add(acc: &mut Accum, x: &Accum, with_sum: bool) {
    if with_sum {
        acc.add(x);
    } else {
        acc.count += x.count;
    }
}
