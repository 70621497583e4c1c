//! What reconciliation reads: an ordered set of [`SetKey`]s with range accumulators. The LMDB
//! store answers from its persistent two-tier index in O(log n) page reads; [`MemSet`] answers
//! from a sorted vector with prefix sums (tests, and sessions scoped to authors or topics, whose
//! members are gathered from the store's secondary indexes).

use std::ops::ControlFlow;

use xaeroflux_event::EventId;
use xaeroflux_store::{Accum, QueryError, ReadError, SetBoundary, SetKey};

/// Why a set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The store failed to read. Fix: see the inner error.
    #[error("store read failed: {0}")]
    Store(#[from] ReadError),
    /// The store refused a query. Fix: see the inner error.
    #[error("store query failed: {0}")]
    Query(#[from] QueryError),
}

/// An ordered set of keys, read-only for the length of one call.
pub trait SetView {
    /// Summary of the keys `k` with `lo <= k < hi`.
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError>;
    /// Number of keys strictly below `key`.
    fn rank(&self, key: &SetKey) -> Result<u64, ViewError>;
    /// The key with `rank` keys below it, if the set has more than `rank` keys.
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError>;
    /// Visits the keys in `[lo, hi)` in ascending order until `f` breaks.
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError>;
    /// Summary of the keys below `key`.
    fn prefix(&self, key: &SetKey) -> Result<Accum, ViewError> {
        self.accumulate(&SetKey::MIN, key)
    }
    /// The key with `rank` keys below it, the key before it and the summary of the keys below
    /// it (the store answers in one descent).
    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ViewError> {
        let Some(at) = self.nth(rank)? else {
            return Ok(None);
        };
        let before = match rank.checked_sub(1) {
            Some(r) => self.nth(r)?,
            None => None,
        };
        Ok(Some(SetBoundary {
            before,
            at,
            below: self.prefix(&at)?,
        }))
    }
    /// Number of keys in the whole set.
    fn len(&self) -> Result<u64, ViewError> {
        Ok(self.accumulate(&SetKey::MIN, &SetKey::MAX)?.count)
    }
    /// Whether the set is empty.
    fn is_empty(&self) -> Result<bool, ViewError> {
        Ok(self.len()? == 0)
    }
    /// Whether this side dropped the event on purpose (deleted by its author, or an older
    /// replaceable): it is not asked for again.
    fn is_dropped(&self, _id: &EventId) -> Result<bool, ViewError> {
        Ok(false)
    }
}

/// A set whose events can be read: what a session sends from.
pub trait SyncSource: SetView {
    /// Calls `f` with the stored body (`header ‖ signature ‖ payload`) of event `id`; false if
    /// the event is not stored.
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError>;
}

/// Implements [`SetView`] for a type whose keys live in the [`MemSet`] field `$set`;
/// `is_dropped` is answered by `$dropped` with `$this` bound to `self` and `$id` to the id.
macro_rules! set_view_via_mem_set {
    ($ty:ty, $set:ident, |$this:ident, $id:ident| $dropped:expr) => {
        impl $crate::view::SetView for $ty {
            fn accumulate(
                &self,
                lo: &xaeroflux_store::SetKey,
                hi: &xaeroflux_store::SetKey,
            ) -> Result<xaeroflux_store::Accum, $crate::view::ViewError> {
                self.$set.accumulate(lo, hi)
            }

            fn rank(&self, key: &xaeroflux_store::SetKey) -> Result<u64, $crate::view::ViewError> {
                self.$set.rank(key)
            }

            fn nth(
                &self,
                rank: u64,
            ) -> Result<Option<xaeroflux_store::SetKey>, $crate::view::ViewError> {
                self.$set.nth(rank)
            }

            fn for_each_in(
                &self,
                lo: &xaeroflux_store::SetKey,
                hi: &xaeroflux_store::SetKey,
                f: &mut dyn FnMut(&xaeroflux_store::SetKey) -> std::ops::ControlFlow<()>,
            ) -> Result<(), $crate::view::ViewError> {
                self.$set.for_each_in(lo, hi, f)
            }

            fn is_dropped(
                &self,
                $id: &xaeroflux_event::EventId,
            ) -> Result<bool, $crate::view::ViewError> {
                let $this = self;
                $dropped
            }
        }
    };
}
pub(crate) use set_view_via_mem_set;

/// An in-memory ordered set with prefix sums: `accumulate`, `rank` and `nth` in O(log n),
/// inserts in O(n).
#[derive(Clone, Debug, Default)]
pub struct MemSet {
    keys: Vec<SetKey>,
    /// `prefix[i]` sums `keys[..i]`.
    prefix: Vec<Accum>,
}

impl MemSet {
    /// An empty set.
    pub fn new() -> MemSet {
        MemSet {
            keys: Vec::new(),
            prefix: vec![Accum::ZERO],
        }
    }

    /// A set of these keys (any order, duplicates ignored).
    pub fn from_keys(mut keys: Vec<SetKey>) -> MemSet {
        keys.sort_unstable();
        keys.dedup();
        let mut set = MemSet {
            keys,
            prefix: Vec::new(),
        };
        set.rebuild_from(0);
        set
    }

    /// Adds a key; false if it was present.
    pub fn insert(&mut self, key: SetKey) -> bool {
        match self.keys.binary_search(&key) {
            Ok(_) => false,
            Err(at) => {
                self.keys.insert(at, key);
                self.rebuild_from(at);
                true
            }
        }
    }

    /// Removes a key; false if it was absent.
    pub fn remove(&mut self, key: &SetKey) -> bool {
        match self.keys.binary_search(key) {
            Ok(at) => {
                self.keys.remove(at);
                self.rebuild_from(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &SetKey) -> bool {
        self.keys.binary_search(key).is_ok()
    }

    /// The keys in order.
    pub fn keys(&self) -> &[SetKey] {
        &self.keys
    }

    fn rebuild_from(&mut self, at: usize) {
        self.prefix.truncate(at + 1);
        if self.prefix.is_empty() {
            self.prefix.push(Accum::ZERO);
        }
        let mut acc = self.prefix[at];
        for key in &self.keys[at..] {
            acc.add_id(&key.id);
            self.prefix.push(acc);
        }
        debug_assert_eq!(self.prefix.len(), self.keys.len() + 1);
    }

    fn position(&self, key: &SetKey) -> usize {
        self.keys.partition_point(|k| k < key)
    }
}

impl SetView for MemSet {
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError> {
        let (a, b) = (self.position(lo), self.position(hi));
        if b <= a {
            return Ok(Accum::ZERO);
        }
        let mut acc = self.prefix[b];
        acc.sub(&self.prefix[a]);
        Ok(acc)
    }

    fn rank(&self, key: &SetKey) -> Result<u64, ViewError> {
        Ok(self.position(key) as u64)
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError> {
        Ok(usize::try_from(rank)
            .ok()
            .and_then(|r| self.keys.get(r))
            .copied())
    }

    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError> {
        let (a, b) = (self.position(lo), self.position(hi));
        for key in self.keys.get(a..b).unwrap_or(&[]) {
            if f(key).is_break() {
                break;
            }
        }
        Ok(())
    }
}
