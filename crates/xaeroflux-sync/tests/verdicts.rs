//! Graded verdicts in a session: an event of a kind this build does not define is relayed, an
//! event of a newer header version or dated ahead of the clock is declined, and none of them
//! ends the session or blames the peer; only invalid events do (`hostile_peer.rs`).

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::ControlFlow;

use common::{keys, mask, split, NOW_MS};
use ed25519_dalek::Signer;
use xaeroflux_event::{
    event_id, Accum, Draft, EventId, Header, Identity, Kind, SetKey, Topic, VerifiedEvent,
};
use xaeroflux_sync::{
    run_local, LinkOptions, MemSet, MemStore, Peer, PendingWrite, Scope, SetView, SyncConfig,
    SyncSource,
};

fn author() -> Identity {
    Identity::from_seed(&[42; 32])
}

#[test]
fn an_unknown_reserved_kind_is_relayed_and_both_sides_end_equal() {
    for initiator_holds in [true, false] {
        let (mut a, mut b) = split(&mask(3, 128));
        let newer = author().sign(&Draft::app(
            Kind(77),
            NOW_MS - 5_000,
            EventId::ZERO,
            b"defined by a newer build".to_vec(),
        ));
        let holder = if initiator_holds { &mut a } else { &mut b };
        holder.insert(&newer);
        let r = common::sync_all(&mut a, &mut b, SyncConfig::default(), 4)
            .unwrap_or_else(|e| panic!("initiator holds: {initiator_holds}: {e}"));
        assert_eq!(keys(&a), keys(&b));
        for store in [&a, &b] {
            assert!(store.set().contains(&common::key(&newer)));
        }
        let declined = r.initiator.declined_not_understood + r.responder.declined_not_understood;
        assert_eq!(declined, 0, "it was understood well enough to store");
    }
}

/// A peer of a newer build: a set of keys and raw bodies, some of them in a format this
/// build cannot check.
struct NewerPeer {
    set: MemSet,
    bodies: HashMap<EventId, Vec<u8>>,
}

impl NewerPeer {
    fn new(events: &[VerifiedEvent], raw: &[(SetKey, Vec<u8>)]) -> NewerPeer {
        let mut keys: Vec<SetKey> = events.iter().map(common::key).collect();
        let mut bodies: HashMap<EventId, Vec<u8>> = events
            .iter()
            .map(|e| (*e.id(), e.body().to_vec()))
            .collect();
        for (key, body) in raw {
            keys.push(*key);
            bodies.insert(key.id, body.clone());
        }
        NewerPeer {
            set: MemSet::from_keys(keys),
            bodies,
        }
    }
}

impl SetView for NewerPeer {
    type Error = Infallible;
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, Infallible> {
        self.set.accumulate(lo, hi)
    }
    fn rank(&self, key: &SetKey) -> Result<u64, Infallible> {
        self.set.rank(key)
    }
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, Infallible> {
        self.set.nth(rank)
    }
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), Infallible> {
        self.set.for_each_in(lo, hi, f)
    }
}

impl SyncSource for NewerPeer {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, Infallible> {
        Ok(self.bodies.get(id).map(|b| f(b)).is_some())
    }
}

impl Peer for NewerPeer {
    type ReadError = Infallible;
    type WriteError = Infallible;
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource<Error = Infallible>),
    ) -> Result<(), Infallible> {
        f(self);
        Ok(())
    }
    fn store(
        &mut self,
        events: Vec<VerifiedEvent>,
    ) -> Result<Option<PendingWrite<Infallible>>, Infallible> {
        for e in events {
            self.set.insert(common::key(&e));
            self.bodies.insert(*e.id(), e.body().to_vec());
        }
        Ok(None)
    }
}

/// A properly signed event whose header claims format version 2: its key and body.
fn version_2_event(at: u64) -> (SetKey, Vec<u8>) {
    let who = author();
    let payload = b"a version 2 payload".to_vec();
    let mut header = Header::new(
        Kind::APP_MIN,
        at,
        who.public_key(),
        Topic::ZERO,
        EventId::ZERO,
        &payload,
    );
    header.version = 2u16.to_le_bytes();
    let id = event_id(&header);
    let signature = ed25519_dalek::SigningKey::from_bytes(&who.seed()).sign(&id.0);
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(&signature.to_bytes());
    body.extend_from_slice(&payload);
    (SetKey { created_at: at, id }, body)
}

#[test]
fn a_newer_header_version_is_declined_without_ending_the_session() {
    for newer_initiates in [true, false] {
        let m = mask(12, 100);
        let (old_events, newer_events) = (common::side(&m, 1), common::side(&m, 2));
        let v2 = version_2_event(NOW_MS - 10_000);
        let mut old = MemStore::from_events(old_events);
        let mut newer = NewerPeer::new(&newer_events, std::slice::from_ref(&v2));
        let r = if newer_initiates {
            common::sync_all(&mut newer, &mut old, SyncConfig::default(), 6)
        } else {
            common::sync_all(&mut old, &mut newer, SyncConfig::default(), 6)
        }
        .unwrap_or_else(|e| panic!("newer initiates: {newer_initiates}: {e}"));
        let (old_stats, newer_stats) = if newer_initiates {
            (r.responder, r.initiator)
        } else {
            (r.initiator, r.responder)
        };
        assert_eq!(old_stats.declined_not_understood, 1);
        assert_eq!(old_stats.missing, 0, "asked for, arrived, unreadable");
        assert_eq!(newer_stats.declined_not_understood, 0);
        // Everything else moved; the version 2 event was not stored.
        let mut expected = keys(&split(&m).0);
        expected.extend(newer_events.iter().map(common::key));
        assert_eq!(keys(&old), expected);
        assert!(!old.set().contains(&v2.0));
        assert_eq!(newer.set.keys().len(), expected.len() + 1);
    }
}

#[test]
fn an_event_from_the_future_is_declined_then_fetched_once_its_time_comes() {
    let (mut a, mut b) = split(&mask(19, 128));
    let ahead = NOW_MS + 60 * 60 * 1000;
    let early = author().sign(&Draft::post(ahead, "posted by a clock an hour ahead"));
    b.insert(&early);
    let run = |a: &mut MemStore, b: &mut MemStore, now_ms: u64| {
        run_local(
            a,
            b,
            Scope::all(),
            SyncConfig::default(),
            8,
            now_ms,
            LinkOptions::default(),
        )
    };
    let r = run(&mut a, &mut b, NOW_MS).expect("an early event is not the peer's fault");
    assert_eq!(r.initiator.declined_out_of_bounds, 1);
    assert!(!a.set().contains(&common::key(&early)));
    let mut without = keys(&b);
    without.remove(&common::key(&early));
    assert_eq!(keys(&a), without, "everything else moved");
    let r = run(&mut a, &mut b, ahead).expect("in time now");
    assert_eq!(r.initiator.declined_out_of_bounds, 0);
    assert_eq!(r.initiator.events_received, 1);
    assert_eq!(keys(&a), keys(&b));
}
