//! What reconciliation reads: an ordered set of [`SetKey`]s with range accumulators. The LMDB
//! store answers from its persistent two-tier index in O(log n) page reads; [`MemSet`] answers
//! from a sorted vector with prefix sums (tests, and sessions scoped to authors or topics, whose
//! members are gathered from the store's secondary indexes).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::ops::ControlFlow;

use xaeroflux_event::{Accum, EventId, SetBoundary, SetKey};

/// Why a set could not be read: the view's own error ([`SetView::Error`]), boxed so the
/// reconciliation code is compiled once for every kind of view. The original error is the
/// [`source`](StdError::source) and comes back typed through [`ViewError::downcast_ref`] (for
/// the LMDB store: its `ReadError` or `QueryError`).
#[derive(Debug, thiserror::Error)]
#[error("reading the local set failed: {source}")]
pub struct ViewError {
    /// The view's error. Fix: see it; a store read error means a damaged store or a full map.
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl ViewError {
    /// Wraps a view's error (a `ViewError` is kept as it is, not wrapped twice).
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> ViewError {
        let boxed: Box<dyn StdError + Send + Sync + 'static> = Box::new(error);
        match boxed.downcast::<ViewError>() {
            Ok(view) => *view,
            Err(source) => ViewError { source },
        }
    }

    /// The view's error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }

    /// The view's error, boxed.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.source
    }
}

/// An ordered set of keys, read-only for the length of one call.
pub trait SetView {
    /// Why a read failed ([`std::convert::Infallible`] for sets in memory). Sessions hand it
    /// back inside [`ViewError`].
    type Error: StdError + Send + Sync + 'static;
    /// Summary of the keys `k` with `lo <= k < hi`.
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, Self::Error>;
    /// Number of keys strictly below `key`.
    fn rank(&self, key: &SetKey) -> Result<u64, Self::Error>;
    /// The key with `rank` keys below it, if the set has more than `rank` keys.
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, Self::Error>;
    /// Visits the keys in `[lo, hi)` in ascending order until `f` breaks.
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), Self::Error>;
    /// Summary of the keys below `key`.
    fn prefix(&self, key: &SetKey) -> Result<Accum, Self::Error> {
        self.accumulate(&SetKey::MIN, key)
    }
    /// The key with `rank` keys below it, the key before it and the summary of the keys below
    /// it (the store answers in one descent).
    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, Self::Error> {
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
    fn len(&self) -> Result<u64, Self::Error> {
        Ok(self.accumulate(&SetKey::MIN, &SetKey::MAX)?.count)
    }
    /// Whether the set is empty.
    fn is_empty(&self) -> Result<bool, Self::Error> {
        Ok(self.len()? == 0)
    }
    /// Whether this side dropped the event on purpose (deleted by its author, or an older
    /// replaceable): it is not asked for again.
    fn is_dropped(&self, _id: &EventId) -> Result<bool, Self::Error> {
        Ok(false)
    }
}

/// A set whose events can be read: what a session sends from.
pub trait SyncSource: SetView {
    /// Calls `f` with the stored body (`header ‖ signature ‖ payload`) of event `id`; false if
    /// the event is not stored.
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, Self::Error>;
}

/// The object-safe form of [`SetView`] the reconciliation code runs on: one compiled copy of
/// it whatever the view, with the view's errors boxed into [`ViewError`].
pub(crate) trait DynView {
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError>;
    fn rank(&self, key: &SetKey) -> Result<u64, ViewError>;
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError>;
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError>;
    fn prefix(&self, key: &SetKey) -> Result<Accum, ViewError>;
    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ViewError>;
    fn is_dropped(&self, id: &EventId) -> Result<bool, ViewError>;
}

/// The object-safe form of [`SyncSource`].
pub(crate) trait DynSource: DynView {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError>;
}

/// A view seen through [`DynView`] and [`DynSource`]: what the generic entry points hand to
/// the reconciliation code.
pub(crate) struct Erased<'a, V: ?Sized>(pub(crate) &'a V);

impl<V: SetView + ?Sized> DynView for Erased<'_, V> {
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError> {
        self.0.accumulate(lo, hi).map_err(ViewError::new)
    }

    fn rank(&self, key: &SetKey) -> Result<u64, ViewError> {
        self.0.rank(key).map_err(ViewError::new)
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError> {
        self.0.nth(rank).map_err(ViewError::new)
    }

    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError> {
        self.0.for_each_in(lo, hi, f).map_err(ViewError::new)
    }

    fn prefix(&self, key: &SetKey) -> Result<Accum, ViewError> {
        self.0.prefix(key).map_err(ViewError::new)
    }

    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ViewError> {
        self.0.boundary(rank).map_err(ViewError::new)
    }

    fn is_dropped(&self, id: &EventId) -> Result<bool, ViewError> {
        self.0.is_dropped(id).map_err(ViewError::new)
    }
}

impl<V: SyncSource + ?Sized> DynSource for Erased<'_, V> {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError> {
        self.0.with_body(id, f).map_err(ViewError::new)
    }
}

/// The value of a read that cannot fail.
pub(crate) fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Implements [`SetView`] for a type whose keys live in the [`MemSet`] field `$set`, with
/// errors of type `$err`; `is_dropped` is answered by `$dropped` with `$this` bound to `self`
/// and `$id` to the id.
macro_rules! set_view_via_mem_set {
    ($ty:ty, $set:ident, $err:ty, |$this:ident, $id:ident| $dropped:expr) => {
        impl $crate::view::SetView for $ty {
            type Error = $err;

            fn accumulate(
                &self,
                lo: &xaeroflux_event::SetKey,
                hi: &xaeroflux_event::SetKey,
            ) -> Result<xaeroflux_event::Accum, $err> {
                Ok($crate::view::infallible($crate::view::SetView::accumulate(
                    &self.$set, lo, hi,
                )))
            }

            fn rank(&self, key: &xaeroflux_event::SetKey) -> Result<u64, $err> {
                Ok($crate::view::infallible($crate::view::SetView::rank(
                    &self.$set, key,
                )))
            }

            fn nth(&self, rank: u64) -> Result<Option<xaeroflux_event::SetKey>, $err> {
                Ok($crate::view::infallible($crate::view::SetView::nth(
                    &self.$set, rank,
                )))
            }

            fn for_each_in(
                &self,
                lo: &xaeroflux_event::SetKey,
                hi: &xaeroflux_event::SetKey,
                f: &mut dyn FnMut(&xaeroflux_event::SetKey) -> std::ops::ControlFlow<()>,
            ) -> Result<(), $err> {
                $crate::view::infallible($crate::view::SetView::for_each_in(&self.$set, lo, hi, f));
                Ok(())
            }

            fn is_dropped(&self, $id: &xaeroflux_event::EventId) -> Result<bool, $err> {
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
    type Error = Infallible;

    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, Infallible> {
        let (a, b) = (self.position(lo), self.position(hi));
        if b <= a {
            return Ok(Accum::ZERO);
        }
        let mut acc = self.prefix[b];
        acc.sub(&self.prefix[a]);
        Ok(acc)
    }

    fn rank(&self, key: &SetKey) -> Result<u64, Infallible> {
        Ok(self.position(key) as u64)
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, Infallible> {
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
    ) -> Result<(), Infallible> {
        let (a, b) = (self.position(lo), self.position(hi));
        for key in self.keys.get(a..b).unwrap_or(&[]) {
            if f(key).is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerError;

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct Fire;

    #[test]
    fn boxed_errors_keep_the_original_as_their_source() {
        let e = ViewError::new(Fire);
        assert!(e.downcast_ref::<Fire>().is_some());
        assert!(StdError::source(&e).is_some_and(|s| s.is::<Fire>()));
        assert_eq!(e.to_string(), "reading the local set failed: disk on fire");
        let again = ViewError::new(e);
        assert!(again.downcast_ref::<Fire>().is_some(), "not wrapped twice");
        assert!(again.into_inner().is::<Fire>());

        let e = PeerError::new(Fire);
        assert!(e.downcast_ref::<Fire>().is_some());
        assert!(PeerError::new(e).downcast_ref::<Fire>().is_some());
    }
}
