//! An in-memory event store for tests and for sessions scoped to authors or topics: the same
//! [`SyncSource`] the LMDB store provides, over a [`MemSet`] and a map of bodies.

use std::collections::{HashMap, HashSet};

use xaeroflux_event::SetKey;
use xaeroflux_event::{EventId, VerifiedEvent};

use std::convert::Infallible;

use crate::view::{set_view_via_mem_set, MemSet, SyncSource};

/// Events held in memory, keyed for reconciliation.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    set: MemSet,
    bodies: HashMap<EventId, Vec<u8>>,
    dropped: HashSet<EventId>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore {
            set: MemSet::new(),
            ..MemStore::default()
        }
    }

    /// A store holding these events.
    pub fn from_events(events: impl IntoIterator<Item = VerifiedEvent>) -> MemStore {
        let mut keys = Vec::new();
        let mut bodies = HashMap::new();
        for e in events {
            keys.push(key_of(&e));
            bodies.insert(*e.id(), e.body().to_vec());
        }
        MemStore {
            set: MemSet::from_keys(keys),
            bodies,
            dropped: HashSet::new(),
        }
    }

    /// Adds an event; false if it was present.
    pub fn insert(&mut self, event: &VerifiedEvent) -> bool {
        if !self.set.insert(key_of(event)) {
            return false;
        }
        self.bodies.insert(*event.id(), event.body().to_vec());
        true
    }

    /// Marks an id as dropped on purpose: reconciliation will not ask for it.
    pub fn drop_id(&mut self, id: EventId) {
        self.dropped.insert(id);
    }

    /// The keys held.
    pub fn set(&self) -> &MemSet {
        &self.set
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.set.keys().len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.set.keys().is_empty()
    }
}

fn key_of(e: &VerifiedEvent) -> SetKey {
    SetKey {
        created_at: e.as_ref().created_at(),
        id: *e.id(),
    }
}

set_view_via_mem_set!(MemStore, set, Infallible, |this, id| Ok(this
    .dropped
    .contains(id)));

impl SyncSource for MemStore {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, Infallible> {
        match self.bodies.get(id) {
            Some(b) => {
                f(b);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
