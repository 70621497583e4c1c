//! Private records: written in the same transaction as the events they come with, read back
//! opened, sealed and named by a keyed hash on an encrypted store, and refused when damaged.

mod common;

use common::{flip_inside, table_rows};
use xaeroflux_event::*;
use xaeroflux_store::*;
use zeroize::Zeroizing;

const T0: u64 = 1_700_000_000_000;
const SECRET: &[u8] = b"ratchet state of the wombat conversation 5521";
const NAME: &[u8] = b"conversation-engine";

fn options(key: Option<u8>) -> StoreOptions {
    StoreOptions {
        key: key.map(|b| DataKey::from_bytes(Zeroizing::new([b; DATA_KEY_BYTES]))),
        ..StoreOptions::default()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn round_trip(key: Option<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let alice = Identity::from_seed(&[1; 32]);
    let post = alice.sign(&Draft::post(T0, "hello"));
    {
        let store = Store::open_with(dir.path(), options(key)).unwrap();
        assert!(store.read().unwrap().record(NAME).unwrap().is_none());
        let out = store
            .submit_with_records(
                vec![post.clone()],
                vec![Record::put(NAME, Zeroizing::new(SECRET.to_vec()))],
                Durability::Durable,
            )
            .unwrap()
            .wait()
            .unwrap();
        assert!(matches!(out[0], Outcome::Stored { .. }));
        let read = store.read().unwrap();
        assert_eq!(read.record(NAME).unwrap().unwrap().as_slice(), SECRET);
        assert!(read.get(post.id()).unwrap().is_some());
        drop(read);
        // Names are checked before anything is queued.
        let long = [b'x'; RECORD_NAME_MAX + 1];
        for bad in [&b""[..], &long[..]] {
            let err = store
                .submit_with_records(Vec::new(), vec![Record::delete(bad)], Durability::Durable)
                .err()
                .unwrap();
            assert!(matches!(err, WriteError::RecordName { .. }), "{err}");
        }
    }
    // After a reopen the record is there; a delete removes it.
    let store = Store::open_with(dir.path(), options(key)).unwrap();
    assert_eq!(
        store
            .read()
            .unwrap()
            .record(NAME)
            .unwrap()
            .unwrap()
            .as_slice(),
        SECRET
    );
    let data = std::fs::read(dir.path().join("data.mdb")).unwrap();
    assert_eq!(
        contains(&data, SECRET),
        key.is_none(),
        "sealed exactly when encrypted"
    );
    assert_eq!(
        contains(&data, NAME),
        key.is_none(),
        "named by a keyed hash when encrypted"
    );
    store
        .submit_with_records(Vec::new(), vec![Record::delete(NAME)], Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    assert!(store.read().unwrap().record(NAME).unwrap().is_none());
}

#[test]
fn records_round_trip_on_a_plain_store() {
    round_trip(None);
}

#[test]
fn records_are_sealed_and_hidden_on_an_encrypted_store() {
    round_trip(Some(7));
}

#[test]
fn a_damaged_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options(Some(9))).unwrap();
        store
            .submit_with_records(
                Vec::new(),
                vec![Record::put(NAME, Zeroizing::new(vec![0x5a; 4000]))],
                Durability::Durable,
            )
            .unwrap()
            .wait()
            .unwrap();
    }
    // Flip one bit in the middle of the sealed value (the longest value of `meta`), found in
    // the file by its bytes.
    let sealed = table_rows(dir.path(), "meta")
        .into_iter()
        .map(|(_, v)| v)
        .max_by_key(Vec::len)
        .unwrap();
    assert!(sealed.len() > 4000);
    flip_inside(dir.path(), &sealed);
    let store = Store::open_with(dir.path(), options(Some(9))).unwrap();
    let err = store.read().unwrap().record(NAME).unwrap_err();
    assert!(
        matches!(err, ReadError::Unauthentic { table: "meta", .. }),
        "{err}"
    );
}
