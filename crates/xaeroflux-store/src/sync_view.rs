//! The LMDB store as a sync peer: the persistent two-tier index answers every range query of a
//! reconciliation session, the events table supplies bodies, and received events go through
//! the store's writer. The session itself lives in `xaeroflux-sync`, which knows nothing of
//! LMDB: this module is the adapter, here because the traits' crate cannot name the store.

use std::ops::ControlFlow;

use xaeroflux_event::{Accum, EventId, SetBoundary, SetKey, VerifiedEvent};
use xaeroflux_sync::{MemSet, Peer, PendingWrite, Scope, SetView, SyncSource};

use crate::error::{QueryError, ReadError, WriteError};
use crate::query::Filter;
use crate::read::ReadTxn;
use crate::writer::Durability;
use crate::Store;

/// The LMDB store's persistent index, read inside one read transaction.
impl SetView for ReadTxn<'_> {
    type Error = ReadError;

    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ReadError> {
        self.set_accumulate(lo, hi)
    }

    fn rank(&self, key: &SetKey) -> Result<u64, ReadError> {
        self.set_rank(key)
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ReadError> {
        self.set_nth(rank)
    }

    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        self.set_for_each(lo, hi, f)
    }

    fn is_dropped(&self, id: &EventId) -> Result<bool, ReadError> {
        ReadTxn::is_dropped(self, id)
    }

    fn prefix(&self, key: &SetKey) -> Result<Accum, ReadError> {
        self.set_prefix(key)
    }

    fn boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ReadError> {
        self.set_boundary(rank)
    }
}

impl SyncSource for ReadTxn<'_> {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ReadError> {
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
/// not necessarily one of the operating system (see [`Durability::Relaxed`]); call
/// [`Store::sync`] at the end.
impl Peer for Store {
    type ReadError = ReadError;
    type WriteError = WriteError;

    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource<Error = ReadError>),
    ) -> Result<(), ReadError> {
        f(&self.read()?);
        Ok(())
    }

    fn store(
        &mut self,
        events: Vec<VerifiedEvent>,
    ) -> Result<Option<PendingWrite<WriteError>>, WriteError> {
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
    pub fn new(store: &'s Store, scope: &Scope) -> Result<ScopedStore<'s>, QueryError> {
        Ok(ScopedStore::with_keys(
            store,
            ScopedStore::gather(store, scope)?,
        ))
    }

    /// The keys of the events in `scope`, read from one snapshot: the part of
    /// [`ScopedStore::new`] that grows with the events in scope, for a caller that runs it on
    /// a thread of its own (a network thread must not).
    pub fn gather(store: &Store, scope: &Scope) -> Result<MemSet, QueryError> {
        let filter = Filter::from(scope.clone());
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

/// The value of a read of the in-memory set, which cannot fail.
fn in_memory<T>(r: Result<T, std::convert::Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl SetView for ScopedView<'_, '_> {
    type Error = ReadError;

    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ReadError> {
        Ok(in_memory(self.set.accumulate(lo, hi)))
    }

    fn rank(&self, key: &SetKey) -> Result<u64, ReadError> {
        Ok(in_memory(self.set.rank(key)))
    }

    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ReadError> {
        Ok(in_memory(self.set.nth(rank)))
    }

    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        in_memory(self.set.for_each_in(lo, hi, f));
        Ok(())
    }

    fn is_dropped(&self, id: &EventId) -> Result<bool, ReadError> {
        self.txn.is_dropped(id)
    }
}

impl SyncSource for ScopedView<'_, '_> {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ReadError> {
        self.txn.with_body(id, f)
    }
}

impl Peer for ScopedStore<'_> {
    type ReadError = ReadError;
    type WriteError = WriteError;

    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource<Error = ReadError>),
    ) -> Result<(), ReadError> {
        let txn = self.store.read()?;
        f(&ScopedView {
            set: &self.set,
            txn: &txn,
        });
        Ok(())
    }

    fn store(
        &mut self,
        events: Vec<VerifiedEvent>,
    ) -> Result<Option<PendingWrite<WriteError>>, WriteError> {
        store_relaxed(self.store, events)
    }
}

/// Queues received events for the writer with relaxed durability and hands back the wait.
fn store_relaxed(
    store: &Store,
    events: Vec<VerifiedEvent>,
) -> Result<Option<PendingWrite<WriteError>>, WriteError> {
    let ticket = store.submit(events, Durability::Relaxed)?;
    Ok(Some(Box::new(move || ticket.wait().map(drop))))
}
