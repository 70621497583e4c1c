//! Hostile and malformed input, version handling, and reconciliation against a `BTreeSet`
//! model. Interop with the reference implementation is in `tests/negentropy_interop.rs`.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::view::MemSet;

fn key(created_at: u64, byte: u8) -> SetKey {
    SetKey {
        created_at,
        id: EventId([byte; 32]),
    }
}

fn set(n: u8) -> MemSet {
    MemSet::from_keys((0..n).map(|i| key(u64::from(i / 3), i)).collect())
}

fn responder() -> NegentropyResponder {
    NegentropyResponder::new(0).unwrap()
}

/// Runs both sides to the end; returns (have, need, rounds).
fn reconcile(
    ours: &MemSet,
    theirs: &MemSet,
    frames: (u64, u64),
) -> (BTreeSet<EventId>, BTreeSet<EventId>, usize) {
    let (mut session, mut msg) = NegentropySession::initiate(ours, frames.0).unwrap();
    let responder = NegentropyResponder::new(frames.1).unwrap();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 1000, "reconciliation did not end");
        let answer = responder.respond(theirs, &msg).unwrap();
        if frames.1 != 0 {
            assert!(
                answer.len() as u64 <= frames.1,
                "responder overran its frame"
            );
        }
        match session.reconcile(ours, &answer).unwrap() {
            Some(next) => {
                if frames.0 != 0 {
                    assert!(next.len() as u64 <= frames.0, "initiator overran its frame");
                }
                msg = next;
            }
            None => break,
        }
    }
    let have: BTreeSet<EventId> = session.have_ids().iter().copied().collect();
    let need: BTreeSet<EventId> = session.need_ids().iter().copied().collect();
    (have, need, rounds)
}

#[test]
fn frame_limits_below_the_minimum_are_refused() {
    assert!(matches!(
        NegentropyResponder::new(4095),
        Err(NegentropyError::FrameLimitTooSmall {
            got: 4095,
            min: 4096
        })
    ));
    assert!(NegentropySession::initiate(&set(3), 1).is_err());
    assert!(NegentropyResponder::new(0).is_ok());
    assert!(NegentropyResponder::new(4096).is_ok());
}

#[test]
fn other_versions_get_our_version_byte() {
    let view = set(40);
    assert_eq!(
        responder().respond(&view, &[0x62, 1, 2, 3]).unwrap(),
        [0x61]
    );
    assert_eq!(responder().respond(&view, &[0x60]).unwrap(), [0x61]);
    let (mut session, _) = NegentropySession::initiate(&view, 0).unwrap();
    assert!(matches!(
        session.reconcile(&view, &[0x62]),
        Err(NegentropyError::UnsupportedVersion {
            got: 0x62,
            supported: 0x61
        })
    ));
    for not_ours in [0x00, 0x5f, 0x70, 0xff] {
        assert!(matches!(
            responder().respond(&view, &[not_ours]),
            Err(NegentropyError::NotNegentropy { got }) if got == not_ours
        ));
    }
    assert!(matches!(
        responder().respond(&view, &[]),
        Err(NegentropyError::Malformed { offset: 0, .. })
    ));
}

#[test]
fn a_bare_version_byte_ends_the_initiator() {
    let view = set(5);
    let (mut session, _) = NegentropySession::initiate(&view, 0).unwrap();
    assert_eq!(session.reconcile(&view, &[0x61]).unwrap(), None);
    assert!(session.have_ids().is_empty() && session.need_ids().is_empty());
}

#[test]
fn truncated_and_malformed_messages_are_errors() {
    let view = set(40);
    let cases: [&[u8]; 6] = [
        &[0x61, 0x80],                   // varint cut short
        &[0x61, 0x00, 0x00],             // bound without a mode
        &[0x61, 0x00, 0x00, 0x01, 0xaa], // fingerprint cut short
        &[0x61, 0x00, 0x21],             // 33-byte id prefix
        &[0x61, 0x00, 0x00, 0x07],       // unknown mode
        &[0x61, 0x00, 0x00, 0x02, 0x02], // two ids announced, none sent
    ];
    for msg in cases {
        assert!(
            matches!(
                responder().respond(&view, msg),
                Err(NegentropyError::Malformed { .. })
            ),
            "{msg:02x?}"
        );
    }
}

#[test]
fn huge_counts_are_refused_before_reserving() {
    let view = set(1);
    // A count of 2^34 ids with none following: refused by count, nothing reserved.
    let msg = [0x61, 0x00, 0x00, 0x02, 0xc0, 0x80, 0x80, 0x80, 0x00];
    assert!(matches!(
        responder().respond(&view, &msg),
        Err(NegentropyError::IdListTooLong { got, .. }) if got == 1 << 34
    ));
    let (mut session, _) = NegentropySession::initiate(&view, 0).unwrap();
    assert!(session.reconcile(&view, &msg).is_err());
    assert!(
        session.have_ids().is_empty(),
        "nothing learnt from a bad message"
    );
}

#[test]
fn oversized_messages_are_refused() {
    let mut msg = vec![0u8; NEGENTROPY_MESSAGE_BYTES_MAX as usize + 1];
    msg[0] = 0x61;
    assert!(matches!(
        responder().respond(&set(1), &msg),
        Err(NegentropyError::MessageTooLarge { .. })
    ));
}

#[test]
fn descending_bounds_are_refused() {
    // Bound at timestamp 9 (encoded 10), Skip; then timestamp 9 with id prefix [0x05] (fine,
    // above); then back to timestamp 9 with no prefix (below the previous bound).
    let msg = [
        0x61, 0x0a, 0x00, 0x00, 0x01, 0x01, 0x05, 0x00, 0x01, 0x00, 0x00,
    ];
    assert!(matches!(
        responder().respond(&set(40), &msg),
        Err(NegentropyError::BoundsOutOfOrder { offset: 8 })
    ));
}

#[test]
fn too_many_ranges_are_refused() {
    // Empty skip ranges at timestamp 0: 3 bytes each, one more than allowed.
    let mut msg = vec![0x61];
    for _ in 0..=NEGENTROPY_RANGES_MAX {
        msg.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    assert!(matches!(
        responder().respond(&MemSet::new(), &msg),
        Err(NegentropyError::TooManyRanges { .. })
    ));
}

#[test]
fn small_sets_travel_as_id_lists_and_large_ones_as_16_fingerprints() {
    let (_, small) = NegentropySession::initiate(&set(31), 0).unwrap();
    // Version, infinity bound (0, 0), IdList, 31, ids.
    assert_eq!(&small[..5], &[0x61, 0x00, 0x00, 0x02, 31]);
    assert_eq!(small.len(), 5 + 31 * 32);
    let (_, large) = NegentropySession::initiate(&set(32), 0).unwrap();
    assert!(large.len() < 16 * (2 + 34 + 1 + 16) + 1);
    let mut r = Reader::new(&large);
    for _ in 0..16 {
        r.bound().unwrap();
        assert_eq!(r.mode().unwrap(), Mode::Fingerprint);
        r.fingerprint().unwrap();
    }
    assert!(r.is_empty());
}

#[test]
fn empty_and_equal_sets_settle_in_one_round() {
    let empty = MemSet::new();
    let (have, need, rounds) = reconcile(&empty, &empty, (0, 0));
    assert!(have.is_empty() && need.is_empty());
    assert_eq!(rounds, 1);
    let full = set(200);
    let (have, need, rounds) = reconcile(&full, &full, (0, 0));
    assert!(have.is_empty() && need.is_empty());
    assert_eq!(rounds, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let view = set(100);
        let mut msg = vec![0x61];
        msg.extend(tail);
        let _ = responder().respond(&view, &msg);
        let (mut session, _) = NegentropySession::initiate(&view, 0).unwrap();
        let _ = session.reconcile(&view, &msg);
    }

    #[test]
    fn finds_exactly_the_differences(
        shared in proptest::collection::btree_set((0u64..50, any::<[u8; 32]>()), 0..300),
        only_ours in proptest::collection::btree_set((0u64..50, any::<[u8; 32]>()), 0..40),
        only_theirs in proptest::collection::btree_set((0u64..50, any::<[u8; 32]>()), 0..40),
        frames in prop_oneof![Just((0, 0)), Just((4096, 4096)), Just((0, 4096)), Just((4096, 0))],
    ) {
        let to_key = |&(created_at, id): &(u64, [u8; 32])| SetKey { created_at, id: EventId(id) };
        let only_ours: BTreeSet<SetKey> =
            only_ours.iter().map(to_key).filter(|k| !shared.contains(&(k.created_at, k.id.0))).collect();
        let only_theirs: BTreeSet<SetKey> = only_theirs.iter().map(to_key)
            .filter(|k| !shared.contains(&(k.created_at, k.id.0)) && !only_ours.contains(k)).collect();
        let shared: Vec<SetKey> = shared.iter().map(to_key).collect();
        let ours = MemSet::from_keys(shared.iter().chain(&only_ours).copied().collect());
        let theirs = MemSet::from_keys(shared.iter().chain(&only_theirs).copied().collect());
        let (have, need, _) = reconcile(&ours, &theirs, frames);
        prop_assert_eq!(have, only_ours.iter().map(|k| k.id).collect::<BTreeSet<_>>());
        prop_assert_eq!(need, only_theirs.iter().map(|k| k.id).collect::<BTreeSet<_>>());
    }
}
