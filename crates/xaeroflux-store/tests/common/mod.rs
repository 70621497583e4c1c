//! Reading and damaging a closed store's file directly, for the tests of encrypted values.
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;

use heed::types::Bytes;

/// Every row of one table of the closed store in `dir`, read with LMDB directly.
#[allow(unsafe_code)]
pub fn table_rows(dir: &Path, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
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
                .name(table)
                .open(rtxn)?
                .expect("the table exists");
            Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap();
    let heed::CommitOrAbort::Commit(db) = opened else {
        unreachable!("committed")
    };
    let rtxn = env.read_txn().unwrap();
    let rows = db
        .iter(&rtxn)
        .unwrap()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    drop(rtxn);
    env.prepare_for_closing().wait();
    rows
}

/// Flips one bit in the middle of `value`, found in the data file.
pub fn flip_inside(dir: &Path, value: &[u8]) {
    let path = dir.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let probe = &value[..32];
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the value is in the file");
    assert_eq!(&bytes[at..at + value.len()], value);
    bytes[at + value.len() / 2] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}
