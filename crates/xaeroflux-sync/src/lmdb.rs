//! The LMDB store as a sync peer: the persistent two-tier index answers every range query, the
//! events table supplies bodies, and received events go through the store's writer.

use std::ops::ControlFlow;

use xaeroflux_event::{EventId, VerifiedEvent};
use xaeroflux_store::{Accum, Durability, Filter, ReadTxn, SetBoundary, SetKey, Store};

use crate::local::{LocalError, Peer, PeerError, PendingWrite};
use crate::view::{set_view_via_mem_set, MemSet, SetView, SyncSource, ViewError};
use crate::Scope;

/// The LMDB store's persistent index, read inside one read transaction.
impl SetView for ReadTxn<'_> {
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError> {
        Ok(self.set_accumulate(lo, hi)?)
    }

    fn rank(&self, key: &SetKey) -> Result<u64, ViewError> {
        Ok(self.set_rank(key)?)
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError> {
        Ok(self.set_nth(rank)?)
    }

    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError> {
        Ok(self.set_for_each(lo, hi, f)?)
    }

    fn is_dropped(&self, id: &EventId) -> Result<bool, ViewError> {
        Ok(ReadTxn::is_dropped(self, id)?)
    }

    fn prefix(&self, key: &SetKey) -> Result<Accum, ViewError> {
        Ok(self.set_prefix(key)?)
    }

    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ViewError> {
        Ok(self.set_boundary(rank)?)
    }
}

impl SyncSource for ReadTxn<'_> {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError> {
        match self.get(id)? {
            Some(ev) => {
                f(ev.body());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Received events are written with relaxed durability: they survive a crash of this process,
/// not necessarily one of the operating system (see [`xaeroflux_store::Durability::Relaxed`]);
/// call [`Store::sync`] at the end.
impl Peer for Store {
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError> {
        let txn = self.read().map_err(ViewError::from)?;
        f(&txn)
    }

    fn store(&mut self, events: Vec<VerifiedEvent>) -> Result<Option<PendingWrite>, PeerError> {
        store_relaxed(self, events)
    }
}

/// A store seen through a scope narrowed to authors or topics. The persistent index covers the
/// whole set, so the scope's keys are gathered once, when the session starts, from the store's
/// secondary indexes (memory: 40 bytes per event in scope); bodies are read from the store.
pub struct ScopedStore<'s> {
    store: &'s Store,
    set: MemSet,
}

impl<'s> ScopedStore<'s> {
    /// Gathers the keys of the events in `scope`.
    pub fn new(store: &'s Store, scope: &Scope) -> Result<ScopedStore<'s>, ViewError> {
        Ok(ScopedStore::with_keys(
            store,
            ScopedStore::gather(store, scope)?,
        ))
    }

    /// The keys of the events in `scope`, read from one snapshot: the part of
    /// [`ScopedStore::new`] that grows with the events in scope, for a caller that runs it on
    /// a thread of its own (a network thread must not).
    pub fn gather(store: &Store, scope: &Scope) -> Result<MemSet, ViewError> {
        let filter = Filter {
            authors: scope.authors.clone(),
            topics: scope.topics.clone(),
            since: scope.since,
            until: scope.until,
            ..Filter::default()
        };
        let txn = store.read()?;
        let mut keys = Vec::new();
        txn.scan(&filter, &mut |ev| {
            keys.push(SetKey {
                created_at: ev.created_at(),
                id: *ev.id(),
            });
            ControlFlow::Continue(())
        })?;
        Ok(MemSet::from_keys(keys))
    }

    /// A scoped view over keys gathered earlier with [`ScopedStore::gather`] (events stored
    /// since are not in it; the next session sees them).
    pub fn with_keys(store: &'s Store, set: MemSet) -> ScopedStore<'s> {
        ScopedStore { store, set }
    }

    /// Events in scope.
    pub fn len(&self) -> usize {
        self.set.keys().len()
    }

    /// Whether no event is in scope.
    pub fn is_empty(&self) -> bool {
        self.set.keys().is_empty()
    }
}

/// The gathered keys and a read transaction for bodies.
struct ScopedView<'a, 't> {
    set: &'a MemSet,
    txn: &'a ReadTxn<'t>,
}

set_view_via_mem_set!(ScopedView<'_, '_>, set, |this, id| Ok(this
    .txn
    .is_dropped(id)?));

impl SyncSource for ScopedView<'_, '_> {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError> {
        self.txn.with_body(id, f)
    }
}

impl Peer for ScopedStore<'_> {
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError> {
        let txn = self.store.read().map_err(ViewError::from)?;
        f(&ScopedView {
            set: &self.set,
            txn: &txn,
        })
    }

    fn store(&mut self, events: Vec<VerifiedEvent>) -> Result<Option<PendingWrite>, PeerError> {
        store_relaxed(self.store, events)
    }
}

/// Queues received events for the writer with relaxed durability and hands back the wait.
fn store_relaxed(
    store: &Store,
    events: Vec<VerifiedEvent>,
) -> Result<Option<PendingWrite>, PeerError> {
    let ticket = store
        .submit(events, Durability::Relaxed)
        .map_err(|e| PeerError(e.to_string()))?;
    Ok(Some(Box::new(move || {
        ticket
            .wait()
            .map(|_| ())
            .map_err(|e| PeerError(e.to_string()))
    })))
}
