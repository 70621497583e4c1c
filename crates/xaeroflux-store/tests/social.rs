//! The store keeps social semantics: idempotent ingest, deletions with tombstones, replaceable
//! profiles and follow lists, feeds, threads, queries and subscriptions.

use std::time::Duration;

use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

fn who(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

/// Runs a test on a plain store and then on an encrypted one: the social semantics are the
/// same on both.
fn each_kind(test: fn(Store)) {
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            key: encrypted.then(|| DataKey::generate().unwrap()),
            ..StoreOptions::default()
        };
        let store = Store::open_with(dir.path().join("db"), options).unwrap();
        assert_eq!(store.is_encrypted(), encrypted);
        test(store);
    }
}

fn ids(events: &[EventRef<'_>]) -> Vec<EventId> {
    events.iter().map(|e| *e.id()).collect()
}

#[test]
fn stores_reads_and_reports_duplicates() {
    each_kind(stores_reads_and_reports_duplicates_on);
}

fn stores_reads_and_reports_duplicates_on(store: Store) {
    let alice = who(1);
    let post = alice.sign(&Draft::post(T0, "hello"));
    assert_eq!(
        store.ingest(vec![post.clone()]).unwrap(),
        vec![Outcome::Stored { seq: 1 }]
    );
    assert_eq!(
        store.ingest(vec![post.clone(), post.clone()]).unwrap(),
        vec![Outcome::Duplicate, Outcome::Duplicate]
    );
    let read = store.read().unwrap();
    let got = read.get(post.id()).unwrap().unwrap();
    assert_eq!(got.to_vec(), post.as_bytes());
    assert_eq!(got.body(), post.body(), "stored without its id");
    assert_eq!(
        got.payload_as::<ArchivedNote>().unwrap().text.as_str(),
        "hello"
    );
    assert!(read.get(&EventId([9; 32])).unwrap().is_none());
    assert_eq!(read.stats().unwrap().events, 1);
    assert!(read.check(2).unwrap().is_ok());
}

#[test]
fn a_ticket_can_be_polled_until_its_batch_is_written() {
    each_kind(a_ticket_can_be_polled_until_its_batch_is_written_on);
}

fn a_ticket_can_be_polled_until_its_batch_is_written_on(store: Store) {
    let post = who(1).sign(&Draft::post(T0, "polled"));
    let mut ticket = store.submit(vec![post], Durability::Relaxed).unwrap();
    let start = std::time::Instant::now();
    let outcome = loop {
        if let Some(outcome) = ticket.try_wait() {
            break outcome;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never written");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(outcome.unwrap(), vec![Outcome::Stored { seq: 1 }]);
    assert!(
        matches!(ticket.try_wait(), Some(Err(WriteError::Closed))),
        "a spent ticket has nothing more to say"
    );
}

#[test]
fn deletion_drops_target_and_keeps_it_out() {
    each_kind(deletion_drops_target_and_keeps_it_out_on);
}

fn deletion_drops_target_and_keeps_it_out_on(store: Store) {
    let (alice, mallory) = (who(1), who(2));
    let post = alice.sign(&Draft::post(T0, "oops"));
    let keep = alice.sign(&Draft::post(T0 + 1, "keep"));
    store.ingest(vec![post.clone(), keep.clone()]).unwrap();

    // Someone else's deletion has no effect on the target.
    let forged = mallory.sign(&Draft::deletion(T0 + 2, *post.id(), "not yours"));
    store.ingest(vec![forged]).unwrap();
    assert!(store.read().unwrap().get(post.id()).unwrap().is_some());

    let del = alice.sign(&Draft::deletion(T0 + 3, *post.id(), "typo"));
    assert!(matches!(
        store.ingest(vec![del.clone()]).unwrap()[0],
        Outcome::Stored { .. }
    ));
    assert_eq!(
        store.ingest(vec![post.clone()]).unwrap(),
        vec![Outcome::Deleted]
    );
    let read = store.read().unwrap();
    assert!(read.get(post.id()).unwrap().is_none());
    assert!(read.is_deleted(post.id(), &alice.public_key()).unwrap());
    let all = read
        .query(&Filter {
            scope: Scope {
                authors: vec![alice.public_key()],
                ..Scope::all()
            },
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(ids(&all), vec![*del.id(), *keep.id()]);
    assert!(
        read.check(1).unwrap().is_ok(),
        "{:?}",
        read.check(1).unwrap()
    );
}

#[test]
fn deletion_arriving_first_blocks_the_target() {
    each_kind(deletion_arriving_first_blocks_the_target_on);
}

fn deletion_arriving_first_blocks_the_target_on(store: Store) {
    let alice = who(1);
    let post = alice.sign(&Draft::post(T0, "late"));
    let del = alice.sign(&Draft::deletion(T0 + 5, *post.id(), ""));
    store.ingest(vec![del]).unwrap();
    assert_eq!(
        store.ingest(vec![post.clone()]).unwrap(),
        vec![Outcome::Deleted]
    );
    assert!(store.read().unwrap().get(post.id()).unwrap().is_none());
}

#[test]
fn newest_replaceable_wins_in_any_arrival_order() {
    each_kind(newest_replaceable_wins_in_any_arrival_order_on);
}

fn newest_replaceable_wins_in_any_arrival_order_on(store: Store) {
    let alice = who(1);
    let (bob, carol) = (who(2).public_key(), who(3).public_key());
    let old = alice.sign(&Draft::follow_list(T0, &[bob]));
    let new = alice.sign(&Draft::follow_list(T0 + 10, &[bob, carol]));
    let p_old = alice.sign(&Draft::profile(
        T0,
        &Profile {
            name: "al".into(),
            ..Default::default()
        },
    ));
    let p_new = alice.sign(&Draft::profile(
        T0 + 1,
        &Profile {
            name: "alice".into(),
            ..Default::default()
        },
    ));
    assert!(matches!(
        store.ingest(vec![new.clone(), p_old.clone()]).unwrap()[..],
        [Outcome::Stored { .. }, Outcome::Stored { .. }]
    ));
    assert_eq!(
        store.ingest(vec![old.clone(), p_new.clone()]).unwrap()[0],
        Outcome::Superseded
    );
    let read = store.read().unwrap();
    assert_eq!(read.follows(&alice.public_key()).unwrap(), vec![bob, carol]);
    let profile = read
        .latest(&alice.public_key(), Kind::PROFILE)
        .unwrap()
        .unwrap();
    assert_eq!(
        profile
            .payload_as::<ArchivedProfile>()
            .unwrap()
            .name
            .as_str(),
        "alice"
    );
    assert!(
        read.get(p_old.id()).unwrap().is_none(),
        "replaced profile is dropped"
    );
    assert_eq!(
        read.query(&Filter {
            kinds: vec![Kind::PROFILE],
            ..Filter::default()
        })
        .unwrap()
        .len(),
        1
    );
    assert!(read.check(1).unwrap().is_ok());
}

#[test]
fn queries_pick_an_index_and_return_newest_first() {
    each_kind(queries_pick_an_index_and_return_newest_first_on);
}

fn queries_pick_an_index_and_return_newest_first_on(store: Store) {
    let people: Vec<Identity> = (1..=5).map(who).collect();
    let rust = Topic::named("rust");
    let mut all = Vec::new();
    for i in 0..200u64 {
        let author = &people[(i % 5) as usize];
        let mut draft = Draft::post(T0 + i * 7 % 50 * 1000 + i, &format!("post {i}"));
        if i % 3 == 0 {
            draft = draft.in_topic(rust);
        }
        all.push(author.sign(&draft));
    }
    // Arrival order differs from time order.
    let mut shuffled = all.clone();
    shuffled.reverse();
    shuffled.rotate_left(37);
    store.ingest(shuffled).unwrap();
    let read = store.read().unwrap();
    let model = |f: &Filter| {
        let mut want: Vec<&VerifiedEvent> = all.iter().filter(|e| f.matches(&e.as_ref())).collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.as_ref().created_at()));
        want.truncate(f.limit.unwrap_or(QUERY_LIMIT_DEFAULT));
        want.into_iter().map(|e| *e.id()).collect::<Vec<_>>()
    };
    let filters = [
        Filter::default(),
        Filter {
            limit: Some(17),
            scope: Scope {
                authors: vec![people[1].public_key(), people[3].public_key()],
                ..Scope::all()
            },
            ..Filter::default()
        },
        Filter {
            scope: Scope {
                topics: vec![rust],
                since: Some(T0 + 10_000),
                ..Scope::all()
            },
            ..Filter::default()
        },
        Filter {
            kinds: vec![Kind::POST],
            limit: Some(9),
            scope: Scope {
                until: Some(T0 + 30_000),
                ..Scope::all()
            },
            ..Filter::default()
        },
        Filter {
            scope: Scope {
                authors: vec![people[0].public_key()],
                topics: vec![rust],
                ..Scope::all()
            },
            ..Filter::default()
        },
        Filter {
            scope: Scope {
                since: Some(T0 + 20_000),
                until: Some(T0 + 21_000),
                ..Scope::all()
            },
            ..Filter::default()
        },
        Filter {
            ids: vec![*all[5].id(), *all[9].id(), EventId([3; 32])],
            ..Filter::default()
        },
    ];
    for f in &filters {
        let got = ids(&read.query(f).unwrap());
        // Timestamps are unique here, so the order is fully determined.
        assert_eq!(got, model(f), "filter {f:?}");
    }
    let err = read
        .query(&Filter {
            limit: Some(QUERY_LIMIT_MAX + 1),
            ..Filter::default()
        })
        .unwrap_err();
    assert!(matches!(err, QueryError::LimitTooLarge { .. }));
}

#[test]
fn feed_and_thread() {
    each_kind(feed_and_thread_on);
}

fn feed_and_thread_on(store: Store) {
    let (alice, bob, carol) = (who(1), who(2), who(3));
    let follow = alice.sign(&Draft::follow_list(
        T0,
        &[bob.public_key(), carol.public_key()],
    ));
    let root = bob.sign(&Draft::post(T0 + 1, "root"));
    let r1 = carol.sign(&Draft::reply(T0 + 2, *root.id(), "first"));
    let r2 = alice.sign(&Draft::reply(T0 + 3, *root.id(), "second"));
    let r11 = bob.sign(&Draft::reply(T0 + 4, *r1.id(), "nested"));
    let like = alice.sign(&Draft::reaction(T0 + 5, *r1.id(), "+"));
    let other = alice.sign(&Draft::post(T0 + 6, "not in my own feed"));
    store
        .ingest(vec![
            follow,
            root.clone(),
            r1.clone(),
            r2.clone(),
            r11.clone(),
            like.clone(),
            other,
        ])
        .unwrap();
    let read = store.read().unwrap();
    let feed = read.feed(&alice.public_key(), 10, None).unwrap();
    assert_eq!(ids(&feed), vec![*r11.id(), *r1.id(), *root.id()]);
    let thread = read.thread(root.id(), 100).unwrap();
    assert_eq!(thread.root.unwrap().id(), root.id());
    let order: Vec<(u32, EventId)> = thread
        .entries
        .iter()
        .map(|e| (e.depth, *e.event.id()))
        .collect();
    assert_eq!(
        order,
        vec![
            (1, *r1.id()),
            (2, *r11.id()),
            (2, *like.id()),
            (1, *r2.id())
        ]
    );
    assert!(!thread.truncated);
    assert!(read.thread(root.id(), 2).unwrap().truncated);
}

#[test]
fn subscriptions_see_every_match_even_when_slow() {
    each_kind(subscriptions_see_every_match_even_when_slow_on);
}

fn subscriptions_see_every_match_even_when_slow_on(store: Store) {
    let alice = who(1);
    let bob = who(2);
    let mut sub = store
        .subscribe(
            Filter {
                scope: Scope {
                    authors: vec![alice.public_key()],
                    ..Scope::all()
                },
                ..Filter::default()
            },
            4,
        )
        .unwrap();
    let mut want = Vec::new();
    for i in 0..50u64 {
        let a = alice.sign(&Draft::post(T0 + i, &format!("a{i}")));
        let b = bob.sign(&Draft::post(T0 + i, &format!("b{i}")));
        want.push(*a.id());
        // Ten-event channel overflow: the subscriber must catch up from the log.
        store.ingest(vec![a, b]).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        let ev = sub
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("an event in time");
        got.push(*ev.event().id());
    }
    assert_eq!(got, want);
    assert!(sub
        .recv_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
}

#[test]
fn map_grows_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        map_bytes_initial: 256 * 1024,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let alice = who(1);
    let text = "x".repeat(2000);
    for chunk in 0..10u64 {
        let batch = (0..100)
            .map(|i| alice.sign(&Draft::post(T0 + chunk * 100 + i, &text)))
            .collect();
        store.ingest(batch).unwrap();
    }
    let read = store.read().unwrap();
    let stats = read.stats().unwrap();
    assert_eq!(stats.events, 1000);
    assert!(
        stats.map_bytes > 2 * 1024 * 1024,
        "map grew to {}",
        stats.map_bytes
    );
    assert!(read.check(2).unwrap().is_ok());
}

#[test]
fn reopen_keeps_everything_and_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let alice = who(1);
    let first = alice.sign(&Draft::post(T0, "one"));
    {
        let store = Store::open(dir.path()).unwrap();
        store.ingest(vec![first.clone()]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let second = alice.sign(&Draft::post(T0 + 1, "two"));
    assert_eq!(
        store.ingest(vec![second]).unwrap(),
        vec![Outcome::Stored { seq: 2 }]
    );
    assert!(store.read().unwrap().get(first.id()).unwrap().is_some());
}
