//! Negentropy V1 interop: our initiator and responder, computed from a [`SetView`], against the
//! reference implementation (the `negentropy` crate) on random sets with shared items and
//! differences both ways, with and without frame size limits.
//!
//! Every run checks three things: the have/need sets equal the true differences of the two
//! `BTreeSet`s, they equal what the reference finds running both sides itself, and every
//! message one of our sides sends is byte-identical to the message the reference sends in its
//! place for the same input.
//!
//! Randomized: each test prints its seed; `XF_SEED=<n>` replays it.

use std::collections::BTreeSet;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xaeroflux_event::EventId;
use xaeroflux_event::SetKey;
use xaeroflux_sync::{
    MemSet, NegentropyError, NegentropyResponder, NegentropySession, SetView, NEGENTROPY_VERSION,
};

/// The seed used when `XF_SEED` is not set, so CI runs are repeatable.
const SEED_DEFAULT: u64 = 0x5eed_0077;
/// Frame limits as (initiator, responder): 0 is unlimited. 4096/4767 is the pair that once
/// lost items in the reference (fixed in 0.5.3).
const FRAMES: [(u64, u64); 6] = [
    (0, 0),
    (4096, 4096),
    (60_000, 60_000),
    (4096, 0),
    (0, 4096),
    (4096, 4767),
];
/// Around when the generated events were created (ms).
const EPOCH_MS: u64 = 1_780_000_000_000;
/// A sync that takes more rounds than this is stuck.
const ROUNDS_MAX: usize = 2_000;

fn seed(test: &str) -> ChaCha8Rng {
    let seed = match std::env::var("XF_SEED") {
        Ok(s) => s.parse().expect("XF_SEED must be a u64"),
        Err(_) => SEED_DEFAULT,
    };
    println!("{test}: XF_SEED={seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

/// How the generated keys are laid out, to reach every kind of bound.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Timestamps over a span half the set's size: many ties, bounds mostly bare timestamps.
    Spread,
    /// One timestamp for everything: every bound is an id prefix.
    OneTimestamp,
    /// Ids sharing their first 28 bytes over four timestamps: prefixes up to 32 bytes long.
    LongPrefixes,
}

/// One side's set in both forms.
struct Side {
    keys: BTreeSet<SetKey>,
    view: MemSet,
    reference: NegentropyStorageVector,
}

impl Side {
    fn new(keys: BTreeSet<SetKey>) -> Side {
        let mut reference = NegentropyStorageVector::with_capacity(keys.len());
        for k in &keys {
            reference
                .insert(k.created_at, Id::from_byte_array(k.id.0))
                .unwrap();
        }
        reference.seal().unwrap();
        Side {
            view: MemSet::from_keys(keys.iter().copied().collect()),
            keys,
            reference,
        }
    }

    fn ids(&self) -> BTreeSet<[u8; 32]> {
        self.keys.iter().map(|k| k.id.0).collect()
    }
}

/// Two sets sharing `shared` keys, with `only_a` and `only_b` keys of their own.
fn sides(
    rng: &mut ChaCha8Rng,
    shared: usize,
    only_a: usize,
    only_b: usize,
    shape: Shape,
) -> (Side, Side) {
    let total = shared + only_a + only_b;
    let span = (total as u64 / 2).max(1);
    let mut prefix = [0u8; 28];
    rng.fill_bytes(&mut prefix);
    let mut seen = BTreeSet::new();
    let mut keys = Vec::with_capacity(total);
    while keys.len() < total {
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let created_at = match shape {
            Shape::Spread => EPOCH_MS + rng.random_range(0..span),
            Shape::OneTimestamp => EPOCH_MS,
            Shape::LongPrefixes => {
                id[..28].copy_from_slice(&prefix);
                EPOCH_MS + rng.random_range(0..4u64)
            }
        };
        // Ids are unique across both sides, as event ids are.
        if seen.insert(id) {
            keys.push(SetKey {
                created_at,
                id: EventId(id),
            });
        }
    }
    let (common, rest) = keys.split_at(shared);
    let (a_own, b_own) = rest.split_at(only_a);
    let a = common.iter().chain(a_own).copied().collect();
    let b = common.iter().chain(b_own).copied().collect();
    (Side::new(a), Side::new(b))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Ours,
    Reference,
}

/// What one reconciliation found and said.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    have: BTreeSet<[u8; 32]>,
    need: BTreeSet<[u8; 32]>,
    /// Ids reported as had and as needed, repeats included: when a frame is cut, the range
    /// left over can hold id lists already settled, and the reference reports their ids again.
    reported: (usize, usize),
    /// Every message in order: initiator's first, then alternating.
    transcript: Vec<Vec<u8>>,
}

impl Outcome {
    fn rounds(&self) -> usize {
        self.transcript.len().div_ceil(2)
    }

    fn bytes(&self) -> usize {
        self.transcript.iter().map(Vec::len).sum()
    }
}

/// The initiator's side: ours shadowed by the reference, whose every message must match ours
/// byte for byte; or the reference alone.
enum Initiator<'a> {
    Ours {
        session: NegentropySession,
        view: &'a MemSet,
        shadow: Negentropy<'a, NegentropyStorageVector>,
    },
    Reference(Negentropy<'a, NegentropyStorageVector>),
}

impl<'a> Initiator<'a> {
    fn start(kind: Impl, side: &'a Side, frame: u64) -> (Initiator<'a>, Vec<u8>) {
        let mut reference = Negentropy::borrowed(&side.reference, frame).unwrap();
        let expected = reference.initiate().unwrap();
        match kind {
            Impl::Reference => (Initiator::Reference(reference), expected),
            Impl::Ours => {
                let (session, msg) = NegentropySession::initiate(&side.view, frame).unwrap();
                assert_eq!(msg, expected, "first message differs from the reference's");
                let me = Initiator::Ours {
                    session,
                    view: &side.view,
                    shadow: reference,
                };
                (me, msg)
            }
        }
    }

    /// Answers a reply; adds what it learnt to `have` and `need`.
    fn step(
        &mut self,
        reply: &[u8],
        have: &mut Vec<[u8; 32]>,
        need: &mut Vec<[u8; 32]>,
    ) -> Option<Vec<u8>> {
        let (mut ref_have, mut ref_need) = (Vec::new(), Vec::new());
        match self {
            Initiator::Reference(reference) => {
                let next = reference
                    .reconcile_with_ids(reply, &mut ref_have, &mut ref_need)
                    .unwrap();
                have.extend(ref_have.iter().map(|id| id.to_bytes()));
                need.extend(ref_need.iter().map(|id| id.to_bytes()));
                next
            }
            Initiator::Ours {
                session,
                view,
                shadow,
            } => {
                let next = session.reconcile(*view, reply).unwrap();
                let expected = shadow
                    .reconcile_with_ids(reply, &mut ref_have, &mut ref_need)
                    .unwrap();
                assert_eq!(
                    next, expected,
                    "initiator message differs from the reference's"
                );
                let ours_have: Vec<[u8; 32]> =
                    session.take_have_ids().iter().map(|id| id.0).collect();
                let ours_need: Vec<[u8; 32]> =
                    session.take_need_ids().iter().map(|id| id.0).collect();
                assert_eq!(
                    sorted(&ours_have),
                    sorted(&ref_have.iter().map(|id| id.to_bytes()).collect::<Vec<_>>()),
                    "this round's have ids differ from the reference's"
                );
                assert_eq!(
                    sorted(&ours_need),
                    sorted(&ref_need.iter().map(|id| id.to_bytes()).collect::<Vec<_>>()),
                    "this round's need ids differ from the reference's"
                );
                have.extend(ours_have);
                need.extend(ours_need);
                next
            }
        }
    }
}

fn sorted(ids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

/// The reference responder's reply to `msg`.
fn reference_reply(side: &Side, frame: u64, msg: &[u8]) -> Vec<u8> {
    Negentropy::borrowed(&side.reference, frame)
        .unwrap()
        .reconcile(msg)
        .unwrap()
}

/// The responder's reply; ours must equal the reference's byte for byte.
fn respond(kind: Impl, side: &Side, frame: u64, msg: &[u8]) -> Vec<u8> {
    let expected = reference_reply(side, frame, msg);
    if kind == Impl::Reference {
        return expected;
    }
    let ours = NegentropyResponder::new(frame)
        .unwrap()
        .respond(&side.view, msg)
        .unwrap();
    assert_eq!(
        ours, expected,
        "responder message differs from the reference's"
    );
    ours
}

/// Runs a whole reconciliation of `a` (initiator) with `b`.
fn run(initiator: Impl, responder: Impl, a: &Side, b: &Side, frames: (u64, u64)) -> Outcome {
    let (mut init, first) = Initiator::start(initiator, a, frames.0);
    let mut transcript = vec![first];
    let (mut have, mut need) = (Vec::new(), Vec::new());
    loop {
        assert!(
            transcript.len() < 2 * ROUNDS_MAX,
            "reconciliation did not end"
        );
        let question = transcript.last().unwrap();
        if frames.0 != 0 {
            assert!(
                question.len() as u64 <= frames.0,
                "initiator overran its frame"
            );
        }
        let reply = respond(responder, b, frames.1, question);
        if frames.1 != 0 {
            assert!(
                reply.len() as u64 <= frames.1,
                "responder overran its frame"
            );
        }
        let next = init.step(&reply, &mut have, &mut need);
        transcript.push(reply);
        match next {
            Some(msg) => transcript.push(msg),
            None => break,
        }
    }
    Outcome {
        have: have.iter().copied().collect(),
        need: need.iter().copied().collect(),
        reported: (have.len(), need.len()),
        transcript,
    }
}

/// A generated case.
#[derive(Clone, Copy, Debug)]
struct Case {
    shared: usize,
    only_a: usize,
    only_b: usize,
    shape: Shape,
}

/// Sizes at the split thresholds (31/32/33 items), empty sides, identical sets, and sets up
/// to 20,000 items with few or many differences, plus a few drawn from the seed.
fn cases(rng: &mut ChaCha8Rng) -> Vec<Case> {
    let fixed = [
        (0, 0, 0, Shape::Spread),
        (0, 1, 0, Shape::Spread),
        (0, 0, 1, Shape::Spread),
        (1, 0, 0, Shape::Spread),
        (0, 31, 0, Shape::Spread),
        (0, 0, 32, Shape::OneTimestamp),
        (20, 12, 1, Shape::OneTimestamp),
        (33, 0, 33, Shape::LongPrefixes),
        (500, 0, 0, Shape::LongPrefixes),
        (300, 40, 40, Shape::LongPrefixes),
        (1000, 5, 5, Shape::Spread),
        (2000, 300, 0, Shape::OneTimestamp),
        (2000, 0, 300, Shape::Spread),
        (8000, 2000, 2000, Shape::Spread),
        (0, 6000, 0, Shape::Spread),
        (0, 0, 6000, Shape::Spread),
        (20_000, 0, 0, Shape::Spread),
        (20_000, 10, 10, Shape::Spread),
    ];
    let mut out: Vec<Case> = fixed
        .into_iter()
        .map(|(shared, only_a, only_b, shape)| Case {
            shared,
            only_a,
            only_b,
            shape,
        })
        .collect();
    for _ in 0..4 {
        let shape =
            [Shape::Spread, Shape::OneTimestamp, Shape::LongPrefixes][rng.random_range(0..3usize)];
        out.push(Case {
            shared: rng.random_range(0..5000),
            only_a: rng.random_range(0..300),
            only_b: rng.random_range(0..300),
            shape,
        });
    }
    out
}

/// The frame limits tried on a case: all of them on small cases, unlimited and one limited
/// pair on large ones, to keep the suite quick.
fn frames_for(case: &Case, i: usize) -> Vec<(u64, u64)> {
    if case.shared + case.only_a + case.only_b <= 2500 {
        FRAMES.to_vec()
    } else {
        vec![FRAMES[0], FRAMES[1 + i % (FRAMES.len() - 1)]]
    }
}

/// Runs every case with the given pairing and checks it against the truth and the reference.
fn check_pairing(test: &str, initiator: Impl, responder: Impl) {
    let mut rng = seed(test);
    let (mut rounds, mut bytes, mut runs) = (0, 0, 0);
    for (i, case) in cases(&mut rng).into_iter().enumerate() {
        let (a, b) = sides(&mut rng, case.shared, case.only_a, case.only_b, case.shape);
        let truth_have: BTreeSet<_> = a.ids().difference(&b.ids()).copied().collect();
        let truth_need: BTreeSet<_> = b.ids().difference(&a.ids()).copied().collect();
        for frames in frames_for(&case, i) {
            let label = format!("{test}: case {i} {case:?}, frames {frames:?}");
            let ours = run(initiator, responder, &a, &b, frames);
            let reference = run(Impl::Reference, Impl::Reference, &a, &b, frames);
            assert_eq!(ours.have, truth_have, "{label}: have ids are not A \\ B");
            assert_eq!(ours.need, truth_need, "{label}: need ids are not B \\ A");
            assert_eq!(
                ours.have, reference.have,
                "{label}: have differs from the reference"
            );
            assert_eq!(
                ours.need, reference.need,
                "{label}: need differs from the reference"
            );
            assert_eq!(
                ours.reported, reference.reported,
                "{label}: repeats differ from the reference's"
            );
            assert_eq!(
                ours.transcript, reference.transcript,
                "{label}: messages differ from the reference's"
            );
            rounds += ours.rounds();
            bytes += ours.bytes();
            runs += 1;
        }
    }
    println!("{test}: {runs} reconciliations, {rounds} round trips, {bytes} bytes, all byte-identical to the reference");
}

#[test]
fn our_initiator_against_reference_responder() {
    check_pairing(
        "our_initiator_against_reference_responder",
        Impl::Ours,
        Impl::Reference,
    );
}

#[test]
fn reference_initiator_against_our_responder() {
    check_pairing(
        "reference_initiator_against_our_responder",
        Impl::Reference,
        Impl::Ours,
    );
}

#[test]
fn our_initiator_against_our_responder() {
    check_pairing(
        "our_initiator_against_our_responder",
        Impl::Ours,
        Impl::Ours,
    );
}

/// Replies to messages that do not come from a reconciliation of these two sets (another
/// set's messages, a truncated transcript) are byte-identical too: the responder is a pure
/// function of the set and the message.
#[test]
fn responder_replies_are_byte_identical_to_reference() {
    let mut rng = seed("responder_replies_are_byte_identical_to_reference");
    let (a, b) = sides(&mut rng, 3000, 400, 400, Shape::Spread);
    let (c, _) = sides(&mut rng, 0, 2000, 0, Shape::OneTimestamp);
    let mut checked = 0;
    for frames in FRAMES {
        // Every message either initiator sends in a reference run, answered by each set.
        for initiator in [&a, &b, &c] {
            for responder in [&a, &b, &c] {
                let outcome = run(
                    Impl::Reference,
                    Impl::Reference,
                    initiator,
                    responder,
                    frames,
                );
                for question in outcome.transcript.iter().step_by(2) {
                    for side in [&a, &b, &c] {
                        respond(Impl::Ours, side, frames.1, question);
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} replies byte-identical");
}

#[test]
fn version_mismatch_matches_reference() {
    let mut rng = seed("version_mismatch_matches_reference");
    let (a, _) = sides(&mut rng, 100, 0, 0, Shape::Spread);
    // A future version's message: both responders answer with their own version byte alone.
    for msg in [
        &[0x62u8, 0x00, 0x00, 0x02, 0x00][..],
        &[0x6f],
        &[0x60, 0xff],
    ] {
        let ours = respond(Impl::Ours, &a, 0, msg);
        assert_eq!(ours, [NEGENTROPY_VERSION]);
    }
    // An initiator told another version gives up, as the reference does.
    let (mut session, _) = NegentropySession::initiate(&a.view, 0).unwrap();
    assert!(matches!(
        session.reconcile(&a.view, &[0x62]),
        Err(NegentropyError::UnsupportedVersion { got: 0x62, .. })
    ));
    let mut reference = Negentropy::borrowed(&a.reference, 0).unwrap();
    reference.initiate().unwrap();
    let (mut have, mut need) = (Vec::new(), Vec::new());
    assert!(reference
        .reconcile_with_ids(&[0x62], &mut have, &mut need)
        .is_err());
    // Not negentropy at all: both refuse.
    assert!(NegentropyResponder::new(0)
        .unwrap()
        .respond(&a.view, &[0x42])
        .is_err());
    assert!(Negentropy::borrowed(&a.reference, 0)
        .unwrap()
        .reconcile(&[0x42])
        .is_err());
}

/// A fresh side against 5,000 items with 4 KiB frames: every id arrives, over many cut
/// replies, whichever side starts and whichever implementation answers.
#[test]
fn empty_against_large_with_frames_fetches_everything() {
    let mut rng = seed("empty_against_large_with_frames_fetches_everything");
    let (a, b) = sides(&mut rng, 0, 0, 5000, Shape::Spread);
    assert!(a.view.is_empty().unwrap());
    for (initiator, responder) in [
        (Impl::Ours, Impl::Reference),
        (Impl::Reference, Impl::Ours),
        (Impl::Ours, Impl::Ours),
    ] {
        let outcome = run(initiator, responder, &a, &b, (4096, 4096));
        assert_eq!(outcome.need, b.ids());
        assert!(outcome.have.is_empty());
        // 5000 ids at about 120 per 4 KiB reply.
        assert!(outcome.rounds() > 30, "{} rounds", outcome.rounds());
        let reversed = run(initiator, responder, &b, &a, (4096, 4096));
        assert_eq!(reversed.have, b.ids());
        assert!(reversed.need.is_empty());
    }
}
