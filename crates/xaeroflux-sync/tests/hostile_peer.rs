//! A hostile or broken peer ends the session with a typed error, never a panic, with bounded
//! memory, and nothing but verified events reaches the store.

mod common;

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use common::{keys, mask, pool, split, NOW_MS};
use xaeroflux_event::EventId;
use xaeroflux_store::{Accum, SetKey};
use xaeroflux_sync::{
    run_local, LinkOptions, LocalError, MemStore, Peer, PeerError, Scope, Session, SetView,
    SyncConfig, SyncError, SyncSource, ViewError, WireError,
};

fn responder_error(frames: &[Vec<u8>]) -> SyncError {
    let store = MemStore::from_events(pool()[..100].to_vec());
    let mut s = Session::responder(SyncConfig::default());
    for f in frames {
        if let Err(e) = s.handle_frame(&store, f, NOW_MS) {
            return e;
        }
    }
    panic!("every frame was accepted");
}

fn hello_frame() -> Vec<u8> {
    let store = MemStore::from_events(pool()[..100].to_vec());
    let mut s = Session::initiator(SyncConfig::default(), Scope::all(), 1);
    s.start(&store).unwrap();
    s.poll_frame(&store).unwrap().unwrap()
}

#[test]
fn garbage_and_truncated_frames_are_typed_errors() {
    assert!(matches!(
        responder_error(&[vec![1, 1, 0xee]]),
        SyncError::Wire(WireError::Malformed { .. })
    ));
    assert!(matches!(
        responder_error(&[vec![7, 1, 1]]),
        SyncError::Wire(WireError::Version { got: 7 })
    ));
    assert!(matches!(
        responder_error(&[vec![1]]),
        SyncError::Wire(WireError::Truncated { .. })
    ));
    let hello = hello_frame();
    for cut in 3..hello.len() {
        let e = responder_error(&[hello[..cut].to_vec()]);
        assert!(matches!(e, SyncError::Wire(_)), "cut at {cut}: {e:?}");
    }
    let mut trailing = hello.clone();
    trailing.push(0);
    assert!(matches!(
        responder_error(&[trailing]),
        SyncError::Wire(WireError::Trailing { .. })
    ));
    // Every single-byte corruption of a valid hello is either rejected with a typed error or
    // still a valid message; none panics.
    for i in 0..hello.len() {
        for bit in 0..8 {
            let mut f = hello.clone();
            f[i] ^= 1 << bit;
            let store = MemStore::new();
            let _ = Session::responder(SyncConfig::default()).handle_frame(&store, &f, NOW_MS);
        }
    }
}

#[test]
fn oversized_frames_and_endless_messages_are_refused_with_bounded_memory() {
    let cfg = SyncConfig::default();
    let big = vec![1u8; cfg.frame_bytes_max + 1];
    assert!(matches!(
        responder_error(&[big]),
        SyncError::Wire(WireError::FrameTooLarge { .. })
    ));
    // A message that never ends: frames without the last-frame flag, each within the cap.
    let chunk = {
        let mut f = vec![1u8, 0];
        f.resize(cfg.frame_bytes_max, 0xab);
        f
    };
    let mut s = Session::responder(cfg);
    let store = MemStore::new();
    let mut fed = 0usize;
    let err = loop {
        match s.handle_frame(&store, &chunk, NOW_MS) {
            Ok(_) => fed += chunk.len(),
            Err(e) => break e,
        }
        assert!(
            fed <= cfg.message_bytes_max,
            "held more than the message cap"
        );
    };
    assert!(
        matches!(err, SyncError::Wire(WireError::MessageTooLarge { .. })),
        "{err:?}"
    );
}

#[test]
fn out_of_order_and_uncovering_ranges_are_refused() {
    // version, last, recon, hello, salt, scope (all), 2 ranges: the second bound equals the
    // first (timestamp delta 1 = same millisecond, empty prefix).
    let mut f = vec![1u8, 1, 1, 1];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&[2, 0x90, 0x4e, 0, 0, 1, 0, 0]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(
        responder_error(&[f]),
        SyncError::Wire(WireError::OutOfOrder)
    ));
    // One fingerprint range ending before the scope does.
    let mut f = vec![1u8, 1, 1, 1];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&[1, 0x90, 0x4e, 0, 1]);
    f.extend_from_slice(&[0; xaeroflux_sync::FP_BYTES]);
    f.extend_from_slice(&[5, 0, 0, 0, 0]);
    assert!(
        matches!(responder_error(&[f]), SyncError::Protocol(_)),
        "{:?}",
        responder_error(&[vec![]])
    );
}

/// A peer that misbehaves in one of several ways over an honest in-memory store.
struct Hostile {
    inner: MemStore,
    /// Fingerprints lie: random sums and counts, from this xorshift state.
    lie: Option<std::cell::Cell<u64>>,
    /// This event's body goes out with a flipped signature bit.
    forge: Option<EventId>,
    /// Range walks ignore their lower bound (events outside the scope leak out).
    leak_below: bool,
}

impl Hostile {
    fn new(inner: MemStore) -> Hostile {
        Hostile {
            inner,
            lie: None,
            forge: None,
            leak_below: false,
        }
    }

    fn noise(&self) -> u64 {
        let state = self.lie.as_ref().expect("lying peer");
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    }
}

impl SetView for Hostile {
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ViewError> {
        let mut acc = self.inner.accumulate(lo, hi)?;
        if self.lie.is_some() {
            acc.sum[0] ^= self.noise();
            acc.count = acc.count.max(1) + self.noise() % 3;
        }
        Ok(acc)
    }
    fn rank(&self, key: &SetKey) -> Result<u64, ViewError> {
        self.inner.rank(key)
    }
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, ViewError> {
        self.inner.nth(rank)
    }
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ViewError> {
        let lo = if self.leak_below { &SetKey::MIN } else { lo };
        self.inner.for_each_in(lo, hi, f)
    }
}

impl SyncSource for Hostile {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, ViewError> {
        let forged = self.forge == Some(*id);
        self.inner.with_body(id, &mut |body| {
            let mut b = body.to_vec();
            if forged {
                let at = b.len() - 11;
                b[at] ^= 1;
            }
            f(&b)
        })
    }
}

impl Peer for Hostile {
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError> {
        f(self)
    }
    fn store(
        &mut self,
        events: Vec<xaeroflux_event::VerifiedEvent>,
    ) -> Result<Option<xaeroflux_sync::PendingWrite>, PeerError> {
        Peer::store(&mut self.inner, events)
    }
}

#[test]
fn lying_fingerprints_end_within_the_turn_limit() {
    let m = mask(21, 200);
    let (mut honest, liar_store) = split(&m);
    let before = keys(&honest);
    let real: BTreeSet<SetKey> = pool().iter().map(common::key).collect();
    let mut liar = Hostile {
        lie: Some(std::cell::Cell::new(99)),
        ..Hostile::new(liar_store)
    };
    let cfg = SyncConfig {
        rounds_max: 16,
        ..SyncConfig::default()
    };
    let outcome = common::sync_all(&mut honest, &mut liar, cfg, 5);
    // Either the lies are survived (the exchange degenerates to id lists and symbols, which do
    // not lie) or the session stops at the turn limit; it never loops on.
    match outcome {
        Ok(_) => {}
        Err(LocalError::Initiator(SyncError::TooManyRounds { .. }))
        | Err(LocalError::Responder(SyncError::TooManyRounds { .. })) => {}
        Err(e) => panic!("unexpected end: {e}"),
    }
    let after = keys(&honest);
    assert!(before.is_subset(&after));
    assert!(
        after.is_subset(&real),
        "only real, verified events were stored"
    );
}

#[test]
fn a_forged_event_ends_the_session_and_is_not_stored() {
    let m = mask(33, 100);
    let (mut honest, other) = split(&m);
    let missing: Vec<SetKey> = keys(&other).difference(&keys(&honest)).copied().collect();
    let forged = missing[missing.len() / 2].id;
    let mut forger = Hostile {
        forge: Some(forged),
        ..Hostile::new(other)
    };
    let err = common::sync_all(&mut honest, &mut forger, SyncConfig::default(), 2)
        .expect_err("the forged event must end the session");
    assert!(
        matches!(err, LocalError::Initiator(SyncError::InvalidEvent(_))),
        "{err}"
    );
    let got = keys(&honest);
    assert!(
        !got.iter().any(|k| k.id == forged),
        "the forged event was not stored"
    );
    let real: BTreeSet<SetKey> = pool().iter().map(common::key).collect();
    assert!(got.is_subset(&real));
}

#[test]
fn events_outside_the_scope_are_refused() {
    // The initiator asks for the newest half only; a peer that pushes older events anyway is
    // cut off. Simulated by a responder whose range walks ignore the scope's lower bound.
    let m = mask(8, 0);
    let (mut a, b) = split(&m);
    let since = common::key(&pool()[2000]).created_at;
    let old = |store: &MemStore| -> BTreeSet<SetKey> {
        keys(store)
            .into_iter()
            .filter(|k| k.created_at < since)
            .collect()
    };
    let old_before = old(&a);
    let mut pusher = Hostile {
        leak_below: true,
        ..Hostile::new(b)
    };
    let scope = Scope {
        since: Some(since),
        ..Scope::all()
    };
    let err = run_local(
        &mut a,
        &mut pusher,
        scope,
        SyncConfig::default(),
        2,
        NOW_MS,
        LinkOptions::default(),
    )
    .expect_err("out-of-scope events must end the session");
    assert!(
        matches!(err, LocalError::Initiator(SyncError::Unrequested(_))),
        "{err}"
    );
    assert_eq!(
        old(&a),
        old_before,
        "no event older than the scope was stored"
    );
}
