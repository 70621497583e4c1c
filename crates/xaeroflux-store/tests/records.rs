//! Private records: written in the same transaction as the events they come with, read back
//! opened, sealed and named by a keyed hash on an encrypted store, and refused when damaged.

#![allow(unsafe_code)]

use heed::types::Bytes;
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
    // Flip one byte in the middle of the sealed value, found in the file by its bytes.
    let sealed = longest_meta_value(dir.path());
    assert!(sealed.len() > 4000);
    let path = dir.path().join("data.mdb");
    let mut data = std::fs::read(&path).unwrap();
    let at = data
        .windows(32)
        .position(|w| w == &sealed[..32])
        .expect("the sealed value is in the file");
    assert_eq!(&data[at..at + sealed.len()], &sealed[..]);
    data[at + sealed.len() / 2] ^= 0x10;
    std::fs::write(&path, &data).unwrap();
    let store = Store::open_with(dir.path(), options(Some(9))).unwrap();
    let err = store.read().unwrap().record(NAME).unwrap_err();
    assert!(
        matches!(err, ReadError::Unauthentic { table: "meta", .. }),
        "{err}"
    );
}

/// The longest value of the `meta` table, read with LMDB directly.
fn longest_meta_value(dir: &std::path::Path) -> Vec<u8> {
    // SAFETY: the store is closed; this process opens the file once, read-only.
    let env = unsafe {
        heed::EnvOpenOptions::new()
            .max_dbs(16)
            .flags(heed::EnvFlags::READ_ONLY)
            .open(dir)
    }
    .unwrap();
    let opened = env
        .open_databases_and_commit(env.read_txn().unwrap(), |opener, rtxn| {
            let db = opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name("meta")
                .open(rtxn)?
                .expect("the table exists");
            Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap();
    let heed::CommitOrAbort::Commit(db) = opened else {
        unreachable!("committed")
    };
    let rtxn = env.read_txn().unwrap();
    let longest = db
        .iter(&rtxn)
        .unwrap()
        .map(|kv| kv.unwrap().1.to_vec())
        .max_by_key(Vec::len)
        .unwrap();
    drop(rtxn);
    env.prepare_for_closing().wait();
    longest
}
