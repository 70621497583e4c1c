//! Every query plan returns exactly what a linear scan of a model returns, in the same order.

use proptest::prelude::*;
use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
struct Spec {
    author: u8,
    kind: u8,
    topic: Option<u8>,
    reference: Option<u8>,
    at: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..4,
        0u8..4,
        prop::option::of(0u8..3),
        prop::option::of(0u8..5),
        0u64..40,
    )
        .prop_map(|(author, kind, topic, reference, at)| Spec {
            author,
            kind,
            topic,
            reference,
            at,
        })
}

fn event(s: &Spec, salt: usize) -> VerifiedEvent {
    let who = Identity::from_seed(&[s.author + 1; 32]);
    let reference = EventId([s.reference.unwrap_or(0) + 1; 32]);
    let at = T0 + s.at;
    let draft = match s.kind {
        0 => Draft::post(at, &format!("p{salt}")),
        1 => Draft::reply(at, reference, &format!("r{salt}")),
        2 => Draft::reaction(at, reference, &format!("+{salt}")),
        _ => Draft::app(
            Kind(Kind::APP_MIN.0 + 3),
            at,
            reference,
            format!("a{salt}").into_bytes(),
        ),
    };
    who.sign(&match s.topic {
        Some(t) => draft.in_topic(Topic::named(&format!("t{t}"))),
        None => draft,
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    (
        prop::collection::vec(0u8..5, 0..3),
        prop::collection::vec(0u8..5, 0..3),
        prop::collection::vec(0u8..4, 0..2),
        prop::collection::vec(0u8..6, 0..2),
        prop::option::of(0u64..40),
        prop::option::of(0u64..40),
        prop::option::of(0usize..12),
    )
        .prop_map(
            |(authors, kinds, topics, refs, since, until, limit)| Filter {
                kinds: kinds
                    .iter()
                    .map(|k| match k {
                        0 => Kind::POST,
                        1 => Kind::REPLY,
                        2 => Kind::REACTION,
                        3 => Kind(Kind::APP_MIN.0 + 3),
                        _ => Kind::PROFILE,
                    })
                    .collect(),
                references: refs.iter().map(|r| EventId([r + 1; 32])).collect(),
                limit,
                ids: Vec::new(),
                scope: Scope {
                    authors: authors
                        .iter()
                        .map(|a| Identity::from_seed(&[a + 1; 32]).public_key())
                        .collect(),
                    topics: topics
                        .iter()
                        .map(|t| Topic::named(&format!("t{t}")))
                        .collect(),
                    since: since.map(|s| T0 + s),
                    until: until.map(|u| T0 + u),
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn plans_agree_with_a_linear_scan(specs in prop::collection::vec(spec(), 1..60), filters in prop::collection::vec(filter(), 1..8), encrypted in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { key: encrypted.then(|| DataKey::generate().unwrap()), ..StoreOptions::default() };
        let store = Store::open_with(dir.path(), options).unwrap();
        let events: Vec<VerifiedEvent> = specs.iter().enumerate().map(|(i, s)| event(s, i)).collect();
        // Arrival order decides ties on time: the local sequence number.
        let outcomes = store.ingest(events.clone()).unwrap();
        let seqs: Vec<u64> = outcomes.iter().map(|o| match o { Outcome::Stored { seq } => *seq, other => panic!("{other:?}") }).collect();
        let read = store.read().unwrap();
        for f in &filters {
            let f = Filter { scope: Scope { since: f.scope.since.min(f.scope.until), ..f.scope.clone() }, ..f.clone() };
            let mut want: Vec<(u64, u64, EventId)> = events
                .iter()
                .zip(&seqs)
                .filter(|(e, _)| f.matches(&e.as_ref()))
                .map(|(e, s)| (e.as_ref().created_at(), *s, *e.id()))
                .collect();
            want.sort_by_key(|w| std::cmp::Reverse((w.0, w.1)));
            want.truncate(f.limit.unwrap_or(QUERY_LIMIT_DEFAULT));
            let want: Vec<EventId> = want.into_iter().map(|w| w.2).collect();
            let got: Vec<EventId> = read.query(&f).unwrap().iter().map(|e| *e.id()).collect();
            prop_assert_eq!(got, want, "filter {:?}", f);
        }
    }
}
