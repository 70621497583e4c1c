//! Shared test fixtures: a pool of signed events (signing is the slow part, so tests take
//! subsets of one pool) and helpers to split it between two peers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use xaeroflux_event::SetKey;
use xaeroflux_event::{verify_batch, Draft, Identity, Topic, VerifiedEvent};
use xaeroflux_sync::{
    run_local, LinkOptions, LinkReport, LocalError, MemStore, Peer, Scope, Session, SyncConfig,
    SyncError, SyncSource,
};

/// "Now" for every test: after every pool event.
pub const NOW_MS: u64 = 1_800_000_000_000;
/// Events in the pool.
pub const POOL: usize = 4000;

/// The pool: 8 authors, 3 topics, three events per second, oldest first.
pub fn pool() -> &'static [VerifiedEvent] {
    static EVENTS: OnceLock<Vec<VerifiedEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let authors: Vec<Identity> = (0..8u8)
            .map(|i| Identity::from_seed(&[i + 1; 32]))
            .collect();
        (0..POOL)
            .map(|i| {
                let ts = NOW_MS - 10_000_000 + (i as u64 / 3) * 1000;
                let draft = Draft::post(ts, &format!("event {i}"))
                    .in_topic(Topic::named(&format!("t{}", i % 3)));
                authors[i % authors.len()].sign(&draft)
            })
            .collect()
    })
}

/// One frame into `session`; the events it carried, verified on this thread and settled.
pub fn receive<V: SyncSource + ?Sized>(
    session: &mut Session,
    view: &V,
    frame: &[u8],
) -> Result<Vec<VerifiedEvent>, SyncError> {
    match session.handle_frame(view, frame, NOW_MS)?.unverified {
        Some(batch) => batch.verify_with(session, verify_batch),
        None => Ok(Vec::new()),
    }
}

pub fn key(e: &VerifiedEvent) -> SetKey {
    SetKey {
        created_at: e.as_ref().created_at(),
        id: *e.id(),
    }
}

pub fn keys(store: &MemStore) -> BTreeSet<SetKey> {
    store.set().keys().iter().copied().collect()
}

/// Pool events whose mask has bit `bit` set.
pub fn side(mask: &[u8], bit: u8) -> Vec<VerifiedEvent> {
    pool()
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m & bit != 0)
        .map(|(e, _)| e.clone())
        .collect()
}

/// Two in-memory peers: bit 1 of each mask byte puts the event on the first, bit 2 on the second.
pub fn split(mask: &[u8]) -> (MemStore, MemStore) {
    (
        MemStore::from_events(side(mask, 1)),
        MemStore::from_events(side(mask, 2)),
    )
}

/// A deterministic mask from a seed: `shared` in 256 events on both sides, the rest split.
pub fn mask(seed: u64, shared: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..POOL)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 256 < shared {
                3
            } else if x & 256 != 0 {
                1
            } else {
                2
            }
        })
        .collect()
}

/// One session over the whole set, default link.
pub fn sync_all<A: Peer + ?Sized, B: Peer + ?Sized>(
    a: &mut A,
    b: &mut B,
    cfg: SyncConfig,
    salt: u64,
) -> Result<LinkReport, LocalError> {
    run_local(
        a,
        b,
        Scope::all(),
        cfg,
        salt,
        NOW_MS,
        LinkOptions::default(),
    )
}
