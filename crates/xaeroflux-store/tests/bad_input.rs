//! Directories that are not ours, damaged files and refused writes get typed errors, and
//! nothing already stored changes.

use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

#[test]
fn a_directory_with_other_files_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::NotOurs { .. }), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
}

#[test]
fn a_file_that_is_not_lmdb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0x5au8; 64 * 1024];
    std::fs::write(dir.path().join("data.mdb"), &garbage).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, OpenError::NotOurs { .. } | OpenError::Lmdb { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.path().join("data.mdb")).unwrap(), garbage);
}

#[test]
fn another_programs_lmdb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    foreign_env(dir.path());
    let before = std::fs::read(dir.path().join("data.mdb")).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::NotOurs { .. }), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("data.mdb")).unwrap(),
        before,
        "file untouched"
    );
}

#[test]
fn a_refused_directory_gets_no_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    foreign_env(dir.path());
    std::fs::remove_file(dir.path().join("lock.mdb")).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::NotOurs { .. }), "{err}");
    assert!(
        !dir.path().join("lock.mdb").exists(),
        "the refused open left a lock file behind"
    );
}

#[test]
fn an_open_told_not_to_create_creates_nothing() {
    let no_create = StoreOptions {
        create: false,
        ..StoreOptions::default()
    };
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("nothing-here");
    let err = Store::open_with(&missing, no_create.clone()).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("there is no store in {}", missing.display())
    );
    assert!(!missing.exists(), "the directory was created");
    let empty = tempfile::tempdir().unwrap();
    let err = Store::open_with(empty.path(), no_create.clone()).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    // A store that exists opens as usual.
    Store::open(empty.path()).unwrap();
    Store::open_with(empty.path(), no_create).unwrap();
}

/// An LMDB environment with a table of its own, as another program would leave it.
fn foreign_env(path: &std::path::Path) {
    use heed::types::Bytes;
    let mut options = heed::EnvOpenOptions::new();
    options.max_dbs(4).map_size(1 << 20);
    // SAFETY: a fresh directory, opened once, closed before the store opens it.
    let env = unsafe { options.open(path) }.unwrap();
    let wtxn = env.write_txn().unwrap();
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
            let db = opener.create_database::<Bytes, Bytes>(wtxn, Some("posts"))?;
            db.put(wtxn, b"k", b"v")?;
            Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
        })
        .unwrap()
        .unwrap_commit();
    let _ = db;
    env.prepare_for_closing().wait();
}

#[test]
fn read_only_store_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Identity::from_seed(&[1; 32]);
    let post = alice.sign(&Draft::post(T0, "kept"));
    Store::open(dir.path())
        .unwrap()
        .ingest(vec![post.clone()])
        .unwrap();
    let ro = Store::open_with(
        dir.path(),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let err = ro
        .ingest(vec![alice.sign(&Draft::post(T0 + 1, "no"))])
        .unwrap_err();
    assert!(matches!(err, WriteError::ReadOnly));
    assert!(ro.read().unwrap().get(post.id()).unwrap().is_some());
    let missing = tempfile::tempdir().unwrap();
    let err = Store::open_with(
        missing.path(),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }));
}

#[test]
fn oversized_batches_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            batch_events_max: 10,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let alice = Identity::from_seed(&[1; 32]);
    let batch: Vec<_> = (0..11)
        .map(|i| alice.sign(&Draft::post(T0 + i, "x")))
        .collect();
    assert!(matches!(
        store.ingest(batch).unwrap_err(),
        WriteError::BatchTooLarge { got: 11, max: 10 }
    ));
    assert_eq!(store.read().unwrap().stats().unwrap().events, 0);
}

#[test]
fn a_path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Store::open(&file).unwrap_err(),
        OpenError::NotADirectory { .. }
    ));
}
