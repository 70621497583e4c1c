//! An encrypted store: no file of its directory holds any plaintext of what it stores; a wrong
//! or missing key opens nothing and changes nothing; a damaged sealed value or Merkle page is a
//! typed error naming the row or page, never a panic and never wrong data.
mod common;

use std::path::Path;

use common::{flip_inside, table_rows};
use xaeroflux_event::*;
use xaeroflux_store::*;
use zeroize::Zeroizing;

const T0: u64 = 1_700_000_000_000;
const TEXT: &str = "the quokka sings at midnight 7731";
const NAME: &str = "Zanzibar Quokka";
const TOPIC: &str = "secret-garden-topic";

fn key(byte: u8) -> DataKey {
    DataKey::from_bytes(Zeroizing::new([byte; DATA_KEY_BYTES]))
}

fn options(key: Option<DataKey>) -> StoreOptions {
    StoreOptions {
        key,
        ..StoreOptions::default()
    }
}

/// What a new user does: a profile, posts (one in a topic), a reply, a reaction, a follow.
/// Returns the events, whose ids and authors must not be found.
fn populate(store: &Store) -> Vec<VerifiedEvent> {
    let alice = Identity::from_seed(&[1; 32]);
    let bob = Identity::from_seed(&[2; 32]);
    let profile = Profile {
        name: NAME.into(),
        about: "keeps bees".into(),
        picture: String::new(),
    };
    let post = alice.sign(&Draft::post(T0, TEXT));
    let in_topic = alice.sign(&Draft::post(T0 + 1, "garden notes").in_topic(Topic::named(TOPIC)));
    let events = vec![
        alice.sign(&Draft::profile(T0, &profile)),
        post.clone(),
        in_topic,
        bob.sign(&Draft::reply(T0 + 2, *post.id(), "a reply from bob")),
        bob.sign(&Draft::reaction(T0 + 3, *post.id(), "+")),
        bob.sign(&Draft::follow_list(T0 + 4, &[alice.public_key()])),
    ];
    for outcome in store.ingest(events.clone()).unwrap() {
        assert!(matches!(outcome, Outcome::Stored { .. }), "{outcome:?}");
    }
    events
}

/// Every file of the directory, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(out.iter().any(|(n, _)| n == "data.mdb"));
    out
}

/// The needles a stolen device must not give away, each as raw bytes and as hex.
fn needles(events: &[VerifiedEvent]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("post text".into(), TEXT.as_bytes().to_vec()),
        ("profile name".into(), NAME.as_bytes().to_vec()),
        ("topic name".into(), TOPIC.as_bytes().to_vec()),
    ];
    let mut raw = vec![("topic id".to_string(), Topic::named(TOPIC).0)];
    for ev in events {
        let ev = ev.as_ref();
        raw.push((format!("id of a {:?}", ev.kind()), ev.id().0));
        raw.push((format!("author of a {:?}", ev.kind()), ev.author().0));
    }
    for (what, bytes) in raw {
        out.push((format!("{what} (hex)"), hex(&bytes).into_bytes()));
        // Any 8 bytes of it would already link the file to the public event.
        for (i, window) in bytes.chunks(8).enumerate() {
            out.push((format!("{what} (raw, bytes {}..)", i * 8), window.to_vec()));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn found(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_file_of_an_encrypted_store_holds_what_it_stores() {
    let plain_dir = tempfile::tempdir().unwrap();
    let sealed_dir = tempfile::tempdir().unwrap();
    let plain = Store::open(plain_dir.path()).unwrap();
    let sealed = Store::open_with(sealed_dir.path(), options(Some(key(7)))).unwrap();
    let events = populate(&plain);
    populate(&sealed);
    for store in [&plain, &sealed] {
        store.sync().unwrap();
        let read = store.read().unwrap();
        // Both answer the same.
        let feed = read
            .feed(&Identity::from_seed(&[2; 32]).public_key(), 10, None)
            .unwrap();
        assert_eq!(feed.len(), 2);
        assert_eq!(read.stats().unwrap().events, events.len() as u64);
    }
    assert_eq!(
        plain.read().unwrap().set_root().unwrap(),
        sealed.read().unwrap().set_root().unwrap()
    );
    drop((plain, sealed));
    // The control: the plain store gives every needle away, so the search below can fail.
    let plain_files = files(plain_dir.path());
    for (what, needle) in needles(&events) {
        if what.contains("(hex)") || what == "topic name" {
            continue;
        }
        assert!(
            plain_files.iter().any(|(_, bytes)| found(bytes, &needle)),
            "the plain store should hold {what}"
        );
    }
    for (name, bytes) in files(sealed_dir.path()) {
        for (what, needle) in needles(&events) {
            assert!(!found(&bytes, &needle), "{name} holds {what}");
        }
    }
}

#[test]
fn a_wrong_or_missing_key_opens_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    populate(&store);
    drop(store);
    let before = std::fs::read(dir.path().join("data.mdb")).unwrap();
    let err = Store::open_with(dir.path(), options(Some(key(8)))).unwrap_err();
    assert!(matches!(err, OpenError::WrongKey { .. }), "{err}");
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::KeyRequired { .. }), "{err}");
    let read_only = StoreOptions {
        read_only: true,
        ..options(Some(key(9)))
    };
    let err = Store::open_with(dir.path(), read_only).unwrap_err();
    assert!(matches!(err, OpenError::WrongKey { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join("data.mdb")).unwrap(), before);
    // The right key still opens it, with everything in place.
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    assert!(store.is_encrypted());
    assert_eq!(store.read().unwrap().stats().unwrap().events, 6);
    assert!(store.read().unwrap().check(1).unwrap().is_ok());

    // A key for a plain store is refused too: it would not be encrypted.
    let plain = tempfile::tempdir().unwrap();
    drop(Store::open(plain.path()).unwrap());
    let err = Store::open_with(plain.path(), options(Some(key(7)))).unwrap_err();
    assert!(matches!(err, OpenError::NotEncrypted { .. }), "{err}");
    assert!(!Store::open(plain.path()).unwrap().is_encrypted());
}

/// The stored bytes of one row, read with LMDB directly.
fn raw_value(dir: &Path, table: &str, key: &[u8]) -> Vec<u8> {
    table_rows(dir, table)
        .into_iter()
        .find(|(k, _)| k == key)
        .expect("the row exists")
        .1
}

#[test]
fn a_flipped_bit_in_an_event_is_a_typed_error_naming_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    let events = populate(&store);
    drop(store);
    // Event 2 is the post.
    let stored = raw_value(dir.path(), "events", &2u64.to_be_bytes());
    assert_eq!(
        stored.len(),
        events[1].as_ref().body().len() + SEAL_OVERHEAD
    );
    flip_inside(dir.path(), &stored);

    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    let read = store.read().unwrap();
    let err = read.get(events[1].id()).unwrap_err();
    match &err {
        ReadError::Unauthentic { table, row } => {
            assert_eq!((*table, row.as_str()), ("events", "2"))
        }
        other => panic!("expected an authentication failure, got {other}"),
    }
    assert!(err.to_string().contains("events row 2"), "{err}");
    // The other events are intact, and queries that reach the damaged one fail, not lie.
    for (i, ev) in events.iter().enumerate() {
        if i != 1 {
            assert_eq!(read.get(ev.id()).unwrap().unwrap().to_vec(), ev.as_bytes());
        }
    }
    let all = Filter::default();
    assert!(matches!(
        read.query(&all),
        Err(QueryError::Read(ReadError::Unauthentic { .. }))
    ));
    let report = read.check(1).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems.iter().any(|p| p.contains("events row 2")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_flipped_bit_in_a_merkle_page_is_a_typed_error_naming_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    populate(&store);
    drop(store);
    // Six events fit in one leaf: the root, page 1.
    let stored = raw_value(dir.path(), "merkle", &1u32.to_be_bytes());
    flip_inside(dir.path(), &stored);
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    let read = store.read().unwrap();
    match read.set_root() {
        Err(ReadError::CorruptPage { page, reason }) => {
            assert_eq!(page, 1);
            assert!(reason.contains("authentication"), "{reason}");
        }
        other => panic!("expected a damaged page, got {other:?}"),
    }
    let report = read.check(1).unwrap();
    assert!(report.merkle_problems > 0, "{:?}", report.problems);
    // A write that must change the page refuses rather than build on it.
    drop(read);
    let late = Identity::from_seed(&[3; 32]).sign(&Draft::post(T0 + 9, "late"));
    assert!(store.ingest(vec![late]).is_err());
}

#[test]
fn a_truncated_store_of_either_kind_is_refused_with_a_typed_error() {
    for sealed in [None, Some(key(7))] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options(sealed.clone())).unwrap();
        populate(&store);
        drop(store);
        let path = dir.path().join("data.mdb");
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 3).unwrap();
        drop(file);
        let err = Store::open_with(dir.path(), options(sealed)).unwrap_err();
        match err {
            OpenError::Truncated { bytes, needed, .. } => {
                assert_eq!(bytes, len / 3);
                assert!(needed > bytes);
            }
            other => panic!("expected a truncated file, got {other}"),
        }
    }
}

#[test]
fn typed_short_ids_are_found_on_an_encrypted_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(Some(key(7)))).unwrap();
    let events = populate(&store);
    let read = store.read().unwrap();
    let mut all: Vec<EventId> = events.iter().map(|e| *e.id()).collect();
    all.sort();
    assert_eq!(read.ids_from(&EventId([0; 32]), 100).unwrap(), all);
    assert_eq!(read.ids_from(&all[2], 2).unwrap(), all[2..4].to_vec());
}
