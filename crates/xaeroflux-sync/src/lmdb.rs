//! The LMDB store as a sync peer: the persistent two-tier index answers every range query, the
//! events table supplies bodies, and received events go through the store's writer.

use std::ops::ControlFlow;

use xaeroflux_event::{EventId, VerifiedEvent};
use xaeroflux_store::{Accum, Durability, ReadTxn, SetKey, Store};

use crate::local::{LocalError, Peer, PeerError};
use crate::view::{SetView, SyncSource, ViewError};

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

/// Received events are written with relaxed durability (they survive a crash of this process,
/// and a later session fetches whatever a power loss took); call [`Store::sync`] at the end.
impl Peer for Store {
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError> {
        let txn = self.read().map_err(ViewError::from)?;
        f(&txn)
    }

    fn store(&mut self, events: Vec<VerifiedEvent>) -> Result<(), PeerError> {
        self.submit(events, Durability::Relaxed)
            .and_then(|t| t.wait())
            .map(|_| ())
            .map_err(|e| PeerError(e.to_string()))
    }
}
