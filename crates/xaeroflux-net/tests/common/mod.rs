//! Fixtures shared by the network tests.
#![allow(dead_code)] // each test file uses a different subset

use std::time::{Duration, Instant};

use xaeroflux_event::{Draft, Identity, Topic, VerifiedEvent};
use xaeroflux_store::Store;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Posts `from..from + n` by one author in one topic, a few minutes in the past (received
/// events must not come from the future).
pub fn events(author: u8, from: usize, n: usize, topic: &str) -> Vec<VerifiedEvent> {
    let id = Identity::from_seed(&[author; 32]);
    let base = now_ms() - 600_000;
    (from..from + n)
        .map(|i| {
            id.sign(
                &Draft::post(base + i as u64, &format!("author {author}, post {i}"))
                    .in_topic(Topic::named(topic)),
            )
        })
        .collect()
}

/// The set's fingerprint and count.
pub fn root(store: &Store) -> ([u8; 32], u64) {
    let r = store.read().unwrap().set_root().unwrap();
    (r.fingerprint, r.accum.count)
}

pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not reached in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}
