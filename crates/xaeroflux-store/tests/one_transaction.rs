//! Events written in one transaction end exactly as the same events written one transaction
//! each: the same outcome per event (duplicates, deletions and replacements of events stored
//! earlier in the same transaction included), the same events stored, the same indexes and the
//! same Merkle root. The writer puts the `ids` and index rows of a transaction at its end,
//! sorted; this is what proves that changes nothing.

use proptest::prelude::*;
use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

/// What the next event is; indexes pick among the events made before it (wrapping).
#[derive(Debug, Clone)]
enum Step {
    Post { author: u8, at: u64, topic: bool },
    Reply { author: u8, at: u64, to: usize },
    Delete { author: u8, at: u64, target: usize },
    Profile { author: u8, at: u64 },
    Again { which: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let author = 0u8..3;
    let at = 0u64..30;
    prop_oneof![
        3 => (author.clone(), at.clone(), any::<bool>())
            .prop_map(|(author, at, topic)| Step::Post { author, at, topic }),
        2 => (author.clone(), at.clone(), any::<usize>())
            .prop_map(|(author, at, to)| Step::Reply { author, at, to }),
        2 => (author.clone(), at.clone(), any::<usize>())
            .prop_map(|(author, at, target)| Step::Delete { author, at, target }),
        2 => (author, at).prop_map(|(author, at)| Step::Profile { author, at }),
        2 => any::<usize>().prop_map(|which| Step::Again { which }),
    ]
}

fn events(steps: &[Step]) -> Vec<VerifiedEvent> {
    let who = |a: u8| Identity::from_seed(&[a + 1; 32]);
    let mut out: Vec<VerifiedEvent> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let earlier = |n: usize| (!out.is_empty()).then(|| out[n % out.len()].clone());
        let ev = match *s {
            Step::Post { author, at, topic } => {
                let draft = Draft::post(T0 + at, &format!("post {i}"));
                let draft = if topic {
                    draft.in_topic(Topic::named("t"))
                } else {
                    draft
                };
                who(author).sign(&draft)
            }
            Step::Reply { author, at, to } => match earlier(to) {
                Some(parent) => {
                    who(author).sign(&Draft::reply(T0 + at, *parent.id(), &format!("re {i}")))
                }
                None => who(author).sign(&Draft::post(T0 + at, &format!("post {i}"))),
            },
            Step::Delete { author, at, target } => match earlier(target) {
                Some(target) => who(author).sign(&Draft::deletion(T0 + at, *target.id(), "")),
                None => continue,
            },
            Step::Profile { author, at } => who(author).sign(&Draft::profile(
                T0 + at,
                &Profile {
                    name: format!("v{i}"),
                    ..Default::default()
                },
            )),
            Step::Again { which } => match earlier(which) {
                Some(ev) => ev,
                None => continue,
            },
        };
        out.push(ev);
    }
    out
}

/// Everything a store holds that the test compares, newest first.
fn contents(store: &Store) -> (Vec<EventId>, [u8; 32], u64) {
    let read = store.read().unwrap();
    let report = read.check(1).unwrap();
    assert_eq!(report.problems_total, 0, "{:?}", report.problems);
    let all = read
        .query(&Filter {
            limit: Some(QUERY_LIMIT_MAX),
            ..Filter::default()
        })
        .unwrap()
        .iter()
        .map(|e| *e.id())
        .collect();
    (
        all,
        read.set_root().unwrap().fingerprint,
        report.index_entries,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn one_transaction_ends_as_one_per_event(steps in prop::collection::vec(step(), 1..80)) {
        let events = events(&steps);
        let (one_dir, each_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = Store::open(one_dir.path()).unwrap();
        let each = Store::open(each_dir.path()).unwrap();
        // Relaxed: an fsync per event would make the test slow, and it changes no outcome.
        let write = |store: &Store, events: Vec<VerifiedEvent>| {
            store.submit(events, Durability::Relaxed).unwrap().wait().unwrap()
        };
        let together = write(&one, events.clone());
        let alone: Vec<Outcome> = events.iter().map(|e| write(&each, vec![e.clone()])[0]).collect();
        prop_assert_eq!(together, alone);
        prop_assert_eq!(contents(&one), contents(&each));
        // The rows put at the end of a transaction are found by the next one: the same events
        // again (a replaceable superseded earlier may now win: its newer head may be gone).
        let together = write(&one, events.clone());
        let alone: Vec<Outcome> = events.iter().map(|e| write(&each, vec![e.clone()])[0]).collect();
        prop_assert_eq!(together, alone);
        prop_assert_eq!(contents(&one), contents(&each));
    }
}
