//! A hostile or broken peer ends the session with a typed error, never a panic, with bounded
//! memory, and nothing but verified events reaches the store.

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::ops::ControlFlow;

use common::{keys, mask, pool, split, NOW_MS};
use xaeroflux_event::{Accum, EventId, SetKey};
use xaeroflux_sync::{
    run_local, LinkOptions, LocalError, MemStore, Peer, Scope, Session, SetView, SyncConfig,
    SyncError, SyncSource, WireError,
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
    type Error = Infallible;
    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, Infallible> {
        let mut acc = self.inner.accumulate(lo, hi)?;
        if self.lie.is_some() {
            acc.sum[0] ^= self.noise();
            acc.count = acc.count.max(1) + self.noise() % 3;
        }
        Ok(acc)
    }
    fn rank(&self, key: &SetKey) -> Result<u64, Infallible> {
        self.inner.rank(key)
    }
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, Infallible> {
        self.inner.nth(rank)
    }
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), Infallible> {
        let lo = if self.leak_below { &SetKey::MIN } else { lo };
        self.inner.for_each_in(lo, hi, f)
    }
}

impl SyncSource for Hostile {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, Infallible> {
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
        events: Vec<xaeroflux_event::VerifiedEvent>,
    ) -> Result<Option<xaeroflux_sync::PendingWrite<Infallible>>, Infallible> {
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

/// Two honest sides driven frame by frame until one of them (the victim) has sent a pool of
/// coded symbols, or has answered once; the test then speaks for the other side.
struct Driven {
    victim: Session,
    store: MemStore,
    /// The victim's open pool: id and symbols sent.
    pool: Option<(u64, u64)>,
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// The pools `(id, first symbol, symbols)` of a reconciliation message (`docs/protocol.md`).
fn pools_of(msg: &[u8]) -> Vec<(u64, u64, u64)> {
    if msg.first() != Some(&1) || msg.get(1) != Some(&0) {
        return Vec::new();
    }
    let mut at = 2;
    for _ in 0..varint(msg, &mut at) {
        if varint(msg, &mut at) != 0 {
            at += 1 + usize::from(msg[at]);
        }
        at += 1;
        match msg[at - 1] {
            1 => {
                at += 6;
                varint(msg, &mut at);
            }
            2 => at += 32 * varint(msg, &mut at) as usize,
            3 => {
                varint(msg, &mut at);
            }
            _ => {}
        }
    }
    let mut pools = Vec::new();
    for _ in 0..varint(msg, &mut at) {
        let (pool, from, k) = (
            varint(msg, &mut at),
            varint(msg, &mut at),
            varint(msg, &mut at),
        );
        for _ in 0..k {
            at += 40;
            varint(msg, &mut at);
        }
        pools.push((pool, from, k));
    }
    pools
}

impl Driven {
    /// Runs an honest session (both sides with `cfg`) until a side has sent a pool, or only
    /// until the responder's first answer.
    fn new(cfg: SyncConfig, until_pool: bool) -> Driven {
        let (a, b) = split(&mask(29, 200));
        let mut initiator = Session::initiator(cfg, Scope::all(), 11);
        initiator.start(&a).unwrap();
        let mut sides = vec![(initiator, a), (Session::responder(cfg), b)];
        for turn in 0..40 {
            let from = turn % 2;
            let mut msg = Vec::new();
            let (session, store) = &mut sides[from];
            while let Some(f) = session.poll_frame(store).unwrap() {
                if msg.is_empty() && f[2] != 1 {
                    break; // events: reconciliation is over
                }
                msg.extend_from_slice(&f[2..]);
                if f[1] & 1 != 0 {
                    break;
                }
            }
            let pool = pools_of(&msg).first().map(|&(id, _, k)| (id, k));
            if (until_pool && pool.is_some()) || (!until_pool && from == 1) {
                let (victim, store) = sides.swap_remove(from);
                return Driven {
                    victim,
                    store,
                    pool,
                };
            }
            let (session, store) = &mut sides[1 - from];
            for f in wire_frames(&msg) {
                session.handle_frame(store, &f, NOW_MS).unwrap();
            }
        }
        panic!("no side sent a pool");
    }

    /// Feeds one crafted message; returns the reconciliation bytes the answer took.
    fn feed(&mut self, msg: &[u8]) -> Result<u64, SyncError> {
        let before = self.victim.stats().recon_bytes_sent;
        for f in wire_frames(msg) {
            self.victim.handle_frame(&self.store, &f, NOW_MS)?;
        }
        Ok(self.victim.stats().recon_bytes_sent - before)
    }
}

/// A message cut into frames of at most 64 KiB.
fn wire_frames(msg: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = msg.chunks(64 * 1024 - 2).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut f = vec![1u8, u8::from(i == last)];
            f.extend_from_slice(c);
            f
        })
        .collect()
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A reconciliation message (no hello): `ranges` pre-encoded, symbol requests, need list.
fn crafted(ranges: &[u8], more: &[(u64, u64, u64)], need: &[EventId]) -> Vec<u8> {
    let mut m = vec![1u8, 0];
    m.extend_from_slice(ranges);
    put(&mut m, 0); // pools
    put(&mut m, more.len() as u64);
    for &(pool, from, count) in more {
        put(&mut m, pool);
        put(&mut m, from);
        put(&mut m, count);
    }
    put(&mut m, need.len() as u64);
    for id in need {
        m.extend_from_slice(&id.0);
    }
    put(&mut m, 0); // give
    m
}

#[test]
fn a_flood_of_symbol_requests_is_refused_before_any_work() {
    let cfg = SyncConfig::default();
    let mut d = Driven::new(cfg, true);
    let (pool, served) = d.pool.unwrap();
    let sent_before = d.victim.stats().bytes_sent;
    let flood = vec![(pool, served, 1u64 << 18); 1000];
    let err = d.feed(&crafted(&[0], &flood, &[])).unwrap_err();
    assert!(
        matches!(err, SyncError::Wire(WireError::TooMany { got: 1000, max, .. }) if max == cfg.pools_max),
        "{err:?}"
    );
    assert_eq!(d.victim.stats().bytes_sent, sent_before, "nothing produced");
}

#[test]
fn symbol_requests_are_answered_within_the_turn_budget_and_never_twice() {
    let cfg = SyncConfig {
        turn_bytes_max: 64 * 1024,
        ..SyncConfig::default()
    };
    let mut d = Driven::new(cfg, true);
    let (pool, served) = d.pool.unwrap();
    // Every symbol the pool may still yield (about 11 MiB of them), asked in one request.
    let all = cfg.symbols_max as u64 - served;
    let produced = d.feed(&crafted(&[0], &[(pool, served, all)], &[])).unwrap();
    assert!(
        produced > 0 && produced <= cfg.turn_bytes_max as u64,
        "answered {produced} bytes"
    );
    assert!(d.victim.stats().recon_message_bytes_max <= cfg.turn_bytes_max as u64);
    // Asking again for symbols already sent is refused.
    let err = d
        .feed(&crafted(&[0], &[(pool, served, all)], &[]))
        .unwrap_err();
    assert!(matches!(err, SyncError::Protocol(_)), "{err:?}");
}

#[test]
fn an_empty_id_list_over_everything_gets_fingerprints_not_every_id() {
    let cfg = SyncConfig {
        turn_bytes_max: 32 * 1024,
        ..SyncConfig::default()
    };
    let mut d = Driven::new(cfg, false);
    let held = d.store.len() as u64;
    // One range to the end of the key space (bound 0), mode Ids, no ids: "send me your list".
    let produced = d.feed(&crafted(&[1, 0, 2, 0], &[], &[])).unwrap();
    assert!(
        produced <= cfg.turn_bytes_max as u64 && produced < 32 * held,
        "answered {produced} bytes for {held} ids"
    );
}

#[test]
fn ids_asked_for_twice_are_sent_once() {
    let mut d = Driven::new(SyncConfig::default(), false);
    let id = *pool()[..]
        .iter()
        .map(common::key)
        .find(|k| d.store.set().contains(k))
        .map(|k| Box::new(k.id))
        .unwrap();
    d.feed(&crafted(&[0], &[], &[id, id])).unwrap();
    d.feed(&crafted(&[0], &[], &[id])).unwrap();
    while d.victim.poll_frame(&d.store).unwrap().is_some() {}
    assert_eq!(d.victim.stats().events_sent, 1);
}
