//! Reconciliation and transfer between in-memory and LMDB peers, against a `BTreeSet` model.

mod common;

use std::collections::BTreeSet;

use common::{key, keys, pool, split, NOW_MS, POOL};
use proptest::prelude::*;
use xaeroflux_event::SetKey;
use xaeroflux_sync::{run_local, LinkOptions, Scope, SetView, SyncConfig};

#[test]
fn identical_sets_take_one_round_trip() {
    let (mut a, mut b) = split(&vec![3u8; POOL]);
    let r = common::sync_all(&mut a, &mut b, SyncConfig::default(), 7).unwrap();
    assert_eq!(r.initiator.round_trips(), 1);
    assert!(
        r.initiator.bytes_sent + r.initiator.bytes_received <= 100,
        "{:?}",
        r.initiator
    );
}

#[test]
fn fresh_peer_gets_everything_in_bulk() {
    let (mut a, mut b) = split(&vec![2u8; POOL]);
    let r = common::sync_all(&mut a, &mut b, SyncConfig::default(), 9).unwrap();
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(a.len(), POOL);
    assert_eq!(r.initiator.events_received, POOL as u64);
    assert_eq!(r.initiator.round_trips(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn both_sides_end_with_the_union(
        mask in proptest::collection::vec(0u8..4, POOL),
        frame in prop_oneof![Just(1024usize), Just(4096), Just(65536)],
        salt in any::<u64>(),
        since in proptest::option::of(0usize..POOL),
        until in proptest::option::of(0usize..POOL),
    ) {
        let (mut a, mut b) = split(&mask);
        let (keys_a, keys_b) = (keys(&a), keys(&b));
        let at = |i: usize| key(&pool()[i]).created_at;
        let (since, until) = match (since, until) {
            (Some(s), Some(u)) if u < s => (Some(u), Some(s)),
            other => other,
        };
        let scope = Scope { since: since.map(at), until: until.map(at), ..Scope::all() };
        let (lower, upper) = (scope.lower(), scope.upper());
        let union: BTreeSet<SetKey> = keys(&a).union(&keys(&b)).copied().collect();
        let cfg = SyncConfig::with_frame_bytes(frame);
        let r = run_local(&mut a, &mut b, scope, cfg, salt, NOW_MS, LinkOptions::default()).unwrap();
        let inside = |k: &SetKey| *k >= lower && *k < upper;
        let in_scope: BTreeSet<SetKey> = union.iter().filter(|k| inside(k)).copied().collect();
        let got_a: BTreeSet<SetKey> = keys(&a).into_iter().filter(inside).collect();
        let got_b: BTreeSet<SetKey> = keys(&b).into_iter().filter(inside).collect();
        prop_assert_eq!(&got_a, &in_scope);
        prop_assert_eq!(&got_b, &in_scope);
        prop_assert!(r.initiator.frames_sent > 0);
        // Each side found exactly the ids of the difference (whole ranges aside, which move
        // without ids: one side held nothing there).
        let only = |x: &BTreeSet<SetKey>, y: &BTreeSet<SetKey>| -> BTreeSet<xaeroflux_event::EventId> {
            x.difference(y).filter(|k| inside(k)).map(|k| k.id).collect()
        };
        let in_ranges = |ranges: &[(SetKey, SetKey)], id: &xaeroflux_event::EventId| {
            union.iter().any(|k| k.id == *id && ranges.iter().any(|(lo, hi)| k >= lo && k < hi))
        };
        let (fi, fr) = (&r.initiator_found, &r.responder_found);
        let i_have: BTreeSet<_> = fi.have.iter().copied().collect();
        let i_need: BTreeSet<_> = fi.need.iter().copied().collect();
        let r_have: BTreeSet<_> = fr.have.iter().copied().collect();
        prop_assert_eq!(&i_have, &r.responder_found.need.iter().copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(&i_need, &r_have);
        for id in only(&keys_a, &keys_b) {
            prop_assert!(i_have.contains(&id) || in_ranges(&fi.have_ranges, &id));
        }
        for id in only(&keys_b, &keys_a) {
            prop_assert!(i_need.contains(&id) || in_ranges(&fi.need_ranges, &id));
        }
        prop_assert_eq!(a.accumulate(&lower, &upper).unwrap(), b.accumulate(&lower, &upper).unwrap());
    }
}

#[test]
fn events_one_side_dropped_are_neither_asked_for_nor_kept() {
    // One peer deleted (dropped) some of the other's events: whichever side decodes the
    // difference, they are not requested, and if offered they are discarded on arrival.
    let mut declined = 0;
    for salt in 0..6u64 {
        for initiator_dropped in [false, true] {
            let m = common::mask(40 + salt, 64);
            let (mut a, mut b) = split(&m);
            let (holder, dropper) = if initiator_dropped {
                (&b, &mut a)
            } else {
                (&a, &mut b)
            };
            let dropped: Vec<_> = keys(holder)
                .difference(&keys(dropper))
                .step_by(7)
                .map(|k| k.id)
                .collect();
            for id in &dropped {
                dropper.drop_id(*id);
            }
            let r = common::sync_all(&mut a, &mut b, SyncConfig::default(), salt)
                .unwrap_or_else(|e| panic!("salt {salt}: {e}"));
            let dropper = if initiator_dropped { &a } else { &b };
            for id in &dropped {
                assert!(
                    !keys(dropper).iter().any(|k| k.id == *id),
                    "salt {salt}: a dropped event came back"
                );
            }
            declined += r.initiator.declined + r.responder.declined;
        }
    }
    assert!(
        declined > 0,
        "some dropped events were offered and discarded on arrival"
    );
}
