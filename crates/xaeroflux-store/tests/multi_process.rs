//! Several processes write one store, as LMDB allows: no writer keeps state that another
//! process changes (the next sequence number, the Merkle pages, the map size). The second
//! process is this test binary again, started with the store's directory in an environment
//! variable.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use xaeroflux_event::*;
use xaeroflux_store::*;

const T0: u64 = 1_700_000_000_000;
const CHILD_DIR: &str = "XF_STORE_TEST_CHILD_DIR";
/// Events each process writes, in batches of `BATCH`.
const EVENTS: u64 = 1500;
const BATCH: u64 = 5;

/// A small map, so both processes grow it many times while the other one writes.
fn options() -> StoreOptions {
    StoreOptions {
        map_bytes_initial: 256 << 10,
        ..StoreOptions::default()
    }
}

fn writes(seed: u8, store: &Store) {
    let who = Identity::from_seed(&[seed; 32]);
    for b in 0..EVENTS / BATCH {
        let batch = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
                who.sign(&Draft::post(
                    T0 + n * 7 + seed as u64,
                    &format!("{seed}:{n}"),
                ))
            })
            .collect();
        let outcomes = store.ingest(batch).expect("a concurrent write succeeds");
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Stored { .. })));
    }
}

/// The second process's part: only runs when the parent starts it.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let store = Store::open_with(Path::new(&dir), options()).unwrap();
    writes(2, &store);
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_write_one_store_and_each_sees_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open_with(&path, options()).unwrap();
    // Follow from here on: everything the child stores is handed out, nothing of ours.
    let _ = store.follow(0).unwrap().wait().unwrap();
    let mut sub = store.subscribe(Filter::default(), 64).unwrap();

    let mut child = spawn_child(&path);
    writes(1, &store);
    assert!(child.wait().unwrap().success(), "the child's writes failed");

    // The subscription sees both processes' events, each once, in store order.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 * EVENTS as usize && Instant::now() < deadline {
        if let Some(ev) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            seen.push(ev.seq);
        } else {
            // Our own writes have stopped: ask the writer to look for the child's.
            let _ = store.follow(usize::MAX).unwrap().wait().unwrap();
        }
    }
    assert_eq!(
        seen.len(),
        2 * EVENTS as usize,
        "subscription saw every event"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in store order, once each"
    );

    let read = store.read().unwrap();
    assert_eq!(read.stats().unwrap().events, 2 * EVENTS);
    let report = read.check(2).unwrap();
    assert!(report.is_ok(), "integrity after two writers: {report:?}");
    // The Merkle root is that of the same set written by one process.
    let root = read.set_root().unwrap();
    drop(read);
    let one = tempfile::tempdir().unwrap();
    let alone = Store::open(one.path()).unwrap();
    writes(1, &alone);
    writes(2, &alone);
    let alone_root = alone.read().unwrap().set_root().unwrap();
    assert_eq!(
        (alone_root.fingerprint, alone_root.accum.count),
        (root.fingerprint, root.accum.count)
    );
}

#[test]
fn follow_hands_out_exactly_what_another_process_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open_with(&path, options()).unwrap();
    let _ = store.follow(0).unwrap().wait().unwrap();

    let mut child = spawn_child(&path);
    writes(1, &store);
    assert!(child.wait().unwrap().success(), "the child's writes failed");

    let child_author = Identity::from_seed(&[2; 32]).public_key();
    let mut followed = Vec::new();
    let mut skipped = 0;
    loop {
        let got = store.follow(100).unwrap().wait().unwrap();
        assert!(got.events.len() <= 100);
        skipped += got.skipped;
        if got.events.is_empty() {
            break;
        }
        followed.extend(got.events);
    }
    assert_eq!(skipped, 0);
    assert_eq!(followed.len(), EVENTS as usize);
    assert!(followed.iter().all(|e| e.event().author() == &child_author));
    assert!(followed.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn a_subscription_ends_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sub = store.subscribe(Filter::default(), 4).unwrap();
    let waiter = std::thread::spawn(move || sub.recv());
    std::thread::sleep(Duration::from_millis(50));
    drop(store);
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(SubscriptionError::Closed)), "{r:?}");
}
