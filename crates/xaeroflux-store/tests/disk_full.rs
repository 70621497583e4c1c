//! A full disk is reported as a full disk, and loses nothing already stored. The test makes
//! its own small disk: a 4 MiB tmpfs, mounted and removed here (it needs root, as the
//! network-namespace tests do).

use std::path::Path;
use std::process::Command;

use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;

struct Mount(tempfile::TempDir);

impl Mount {
    fn small() -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mounting a 4 MiB tmpfs needs root");
        Mount(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_named_and_loses_nothing_stored() {
    full_disk(None);
}

#[test]
fn a_full_disk_under_an_encrypted_store_is_named_and_loses_nothing_stored() {
    full_disk(Some(DataKey::generate().unwrap()));
}

fn full_disk(key: Option<DataKey>) {
    let disk = Mount::small();
    let encrypted = key.is_some();
    let store = Store::open_with(
        disk.path().join("db"),
        StoreOptions {
            map_bytes_initial: 64 << 20,
            key,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.is_encrypted(), encrypted);
    let who = Identity::from_seed(&[1; 32]);
    let mut stored = Vec::new();
    let mut n = 0u64;
    let error = loop {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let text = format!("{:0>2000}", n * 50 + i);
                who.sign(&Draft::post(T0 + n * 50 + i, &text))
            })
            .collect();
        let ids: Vec<EventId> = batch.iter().map(|e| *e.id()).collect();
        match store.ingest(batch) {
            Ok(_) => stored.extend(ids),
            Err(e) => break e,
        }
        n += 1;
        assert!(n < 10_000, "a 4 MiB disk never filled");
    };
    assert!(matches!(error, WriteError::DiskFull), "{error:?}");
    assert!(
        error.to_string().contains("no space left on device"),
        "{error}"
    );
    assert!(!stored.is_empty());
    // Everything acknowledged before is still there, and the store is whole.
    let read = store.read().unwrap();
    for id in &stored {
        assert!(read.get(id).unwrap().is_some());
    }
    assert_eq!(read.stats().unwrap().events, stored.len() as u64);
    assert!(read.check(1).unwrap().is_ok());
}
