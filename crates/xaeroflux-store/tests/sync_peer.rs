//! The store as a sync peer: its persistent index and the in-memory set agree on every
//! fingerprint, and two LMDB stores converge to the same root; an interrupted session resumes
//! where it stopped.

use common::{mask, pool, side, split, NOW_MS, POOL};
use proptest::prelude::*;
use xaeroflux_store::{DataKey, ScopedStore, SetKey, Store, StoreOptions};
use xaeroflux_sync::{run_local, LinkOptions, LocalError, MemStore, Scope, SetView, SyncConfig};

/// The sync crate's fixtures: a pool of signed events and helpers to split it between two
/// peers (one copy for both crates' tests).
#[path = "../../xaeroflux-sync/tests/common/mod.rs"]
mod common;

fn lmdb_with(events: Vec<xaeroflux_event::VerifiedEvent>) -> (tempfile::TempDir, Store) {
    store_with(events, false)
}

/// A plain store, or an encrypted one: a session between the two kinds sees one set.
fn store_with(
    events: Vec<xaeroflux_event::VerifiedEvent>,
    encrypted: bool,
) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        key: encrypted.then(|| DataKey::generate().unwrap()),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    for chunk in events.chunks(1000) {
        store.ingest(chunk.to_vec()).unwrap();
    }
    (dir, store)
}

fn root(store: &Store) -> [u8; 32] {
    store.read().unwrap().set_root().unwrap().fingerprint
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]
    #[test]
    fn index_and_memory_agree_on_every_range(seed in any::<u64>(), bounds in proptest::collection::vec((0usize..POOL, 0usize..POOL), 1..40), encrypted in any::<bool>()) {
        let events = side(&mask(seed, 128), 1);
        let mem = MemStore::from_events(events.clone());
        let (_dir, store) = store_with(events, encrypted);
        let txn = store.read().unwrap();
        let at = |i: usize| SetKey { created_at: common::key(&pool()[i]).created_at, id: common::key(&pool()[i]).id };
        prop_assert_eq!(txn.len().unwrap(), mem.len() as u64);
        for (x, y) in bounds {
            let (lo, hi) = (at(x.min(y)), at(x.max(y)));
            prop_assert_eq!(txn.accumulate(&lo, &hi).unwrap(), mem.accumulate(&lo, &hi).unwrap());
            prop_assert_eq!(txn.rank(&hi).unwrap(), mem.rank(&hi).unwrap());
            prop_assert_eq!(txn.nth(x as u64).unwrap(), mem.nth(x as u64).unwrap());
            prop_assert_eq!(txn.boundary(y as u64).unwrap(), mem.boundary(y as u64).unwrap());
            prop_assert_eq!(txn.prefix(&lo).unwrap(), mem.prefix(&lo).unwrap());
        }
        prop_assert_eq!(txn.accumulate(&SetKey::MIN, &SetKey::MAX).unwrap(), mem.accumulate(&SetKey::MIN, &SetKey::MAX).unwrap());
    }
}

#[test]
fn two_stores_converge_to_one_root() {
    two_stores_converge(false);
}

#[test]
fn an_encrypted_and_a_plain_store_converge_to_one_root() {
    two_stores_converge(true);
}

fn two_stores_converge(a_encrypted: bool) {
    let m = mask(11, 160);
    let (_da, mut a) = store_with(side(&m, 1), a_encrypted);
    let (_db, mut b) = lmdb_with(side(&m, 2));
    assert_ne!(root(&a), root(&b));
    let r = common::sync_all(&mut a, &mut b, SyncConfig::default(), 3).unwrap();
    assert_eq!(root(&a), root(&b));
    let (ma, mb) = split(&m);
    let union = ma
        .set()
        .keys()
        .iter()
        .chain(mb.set().keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert_eq!(a.read().unwrap().len().unwrap(), union);
    assert_eq!(
        r.initiator.events_received + r.responder.events_received,
        2 * union - ma.len() as u64 - mb.len() as u64
    );
    // Nothing left to do: one round trip, nothing moves.
    let again = common::sync_all(&mut a, &mut b, SyncConfig::default(), 4).unwrap();
    assert_eq!(again.initiator.round_trips(), 1);
    assert_eq!(
        again.initiator.events_sent + again.initiator.events_received,
        0
    );
}

#[test]
fn a_cut_session_resumes_with_only_what_is_missing() {
    let m = mask(5, 64);
    let (_da, mut a) = lmdb_with(side(&m, 1));
    let (_db, mut b) = lmdb_with(side(&m, 2));
    let (ma, mb) = split(&m);
    let missing_total = {
        let union = ma
            .set()
            .keys()
            .iter()
            .chain(mb.set().keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        (2 * union - ma.len() - mb.len()) as u64
    };
    let cfg = SyncConfig::with_frame_bytes(4096);
    // Received events go through a verifier stage here, as on a node.
    let link = LinkOptions {
        window_frames: 4,
        cut_after_frames: None,
        verifier: Some(xaeroflux_event::Verifier::new(2)),
    };
    // A dry run on copies in memory counts the frames; the cut falls three quarters in, where
    // events are moving.
    let dry = run_local(
        &mut ma.clone(),
        &mut mb.clone(),
        Scope::all(),
        cfg,
        8,
        NOW_MS,
        link.clone(),
    )
    .unwrap();
    let cut_at = (dry.initiator.frames_sent + dry.responder.frames_sent) * 3 / 4;
    let cut = run_local(
        &mut a,
        &mut b,
        Scope::all(),
        cfg,
        8,
        NOW_MS,
        LinkOptions {
            cut_after_frames: Some(cut_at),
            ..link
        },
    );
    assert!(
        matches!(cut, Err(LocalError::Cut { frames }) if frames == cut_at),
        "{cut:?}"
    );
    let moved_before: u64 = a.read().unwrap().len().unwrap() + b.read().unwrap().len().unwrap()
        - (ma.len() + mb.len()) as u64;
    assert!(
        moved_before > 0 && moved_before < missing_total,
        "the cut fell mid-transfer: {moved_before} of {missing_total}"
    );
    let r = common::sync_all(&mut a, &mut b, cfg, 9).unwrap();
    let moved_after = r.initiator.events_received + r.responder.events_received;
    assert_eq!(
        moved_before + moved_after,
        missing_total,
        "nothing moved twice"
    );
    assert_eq!(root(&a), root(&b));
}

#[test]
fn a_fresh_store_is_bootstrapped_in_bulk_and_resumes() {
    let all = pool().to_vec();
    let (_da, mut a) = lmdb_with(all.clone());
    let (_db, mut b) = lmdb_with(Vec::new());
    let cfg = SyncConfig::with_frame_bytes(8192);
    let cut = run_local(
        &mut a,
        &mut b,
        Scope::all(),
        cfg,
        1,
        NOW_MS,
        LinkOptions {
            window_frames: 8,
            cut_after_frames: Some(100),
            verifier: None,
        },
    );
    assert!(matches!(cut, Err(LocalError::Cut { .. })));
    let have = b.read().unwrap().len().unwrap();
    assert!(have > 0 && have < POOL as u64);
    let r = common::sync_all(&mut a, &mut b, cfg, 2).unwrap();
    assert_eq!(r.initiator.events_sent, POOL as u64 - have);
    assert_eq!(root(&a), root(&b));
    let bytes = r.initiator.bytes_sent + r.initiator.bytes_received;
    assert!(
        bytes < r.initiator.event_bytes_sent + 4096 + r.initiator.round_trips() * 4096,
        "bulk costs about the events: {bytes}"
    );
}

#[test]
fn a_scope_of_authors_and_topics_moves_only_its_events() {
    let m = mask(17, 96);
    let (_da, a) = lmdb_with(side(&m, 1));
    let (_db, b) = lmdb_with(side(&m, 2));
    let author = *pool()[0].as_ref().author();
    let topic = *pool()[0].as_ref().topic();
    let scope = Scope {
        authors: vec![author],
        topics: vec![topic],
        ..Scope::all()
    };
    let in_scope = |e: &xaeroflux_event::VerifiedEvent| {
        e.as_ref().author() == &author && e.as_ref().topic() == &topic
    };
    let expected: std::collections::BTreeSet<SetKey> = side(&m, 3)
        .iter()
        .filter(|e| in_scope(e))
        .map(common::key)
        .collect();
    let others_before = (
        a.read().unwrap().len().unwrap(),
        b.read().unwrap().len().unwrap(),
    );
    let mut sa = ScopedStore::new(&a, &scope).unwrap();
    let mut sb = ScopedStore::new(&b, &scope).unwrap();
    let r = run_local(
        &mut sa,
        &mut sb,
        scope.clone(),
        SyncConfig::default(),
        6,
        NOW_MS,
        LinkOptions::default(),
    )
    .unwrap();
    let moved = r.initiator.events_received + r.responder.events_received;
    assert!(moved > 0);
    for store in [&a, &b] {
        let after = ScopedStore::new(store, &scope).unwrap();
        assert_eq!(after.len(), expected.len());
    }
    let total_after = a.read().unwrap().len().unwrap() + b.read().unwrap().len().unwrap();
    assert_eq!(
        total_after,
        others_before.0 + others_before.1 + moved,
        "only scoped events moved"
    );
}
