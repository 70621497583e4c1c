//! `Node::close` returns once the node's threads have ended: the network thread, the
//! verifier's threads and the store's writer. (One test in this file: it counts the process's
//! threads, which other tests running beside it would add to.)

use xaeroflux::{Identity, Multiaddr, NetConfig, Node};

/// Threads of this process whose name starts with one of the engine's.
fn engine_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("xf-") || name.starts_with("xaeroflux"))
        .collect()
}

#[test]
fn close_returns_when_every_thread_has_ended() {
    assert!(engine_threads().is_empty(), "{:?}", engine_threads());
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::from_seed(&[5; 32]);
    let signer = Identity::from_seed(&[5; 32]);
    let node = Node::builder()
        .data_dir(dir.path())
        .identity(me)
        .network(NetConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse::<Multiaddr>().unwrap()],
            mdns: false,
            ..NetConfig::default()
        })
        .open()
        .unwrap();
    // Work for the verifier: a batch it checks on its threads.
    let batch: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            signer
                .sign(&xaeroflux::Draft::post(xaeroflux::now_ms() - 1000 + i, "x"))
                .into_bytes()
        })
        .collect();
    let outcomes = node.ingest(batch).unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let running = engine_threads();
    assert!(
        running.iter().any(|t| t == "xf-net") && running.iter().any(|t| t.starts_with("xaeroflux")),
        "{running:?}"
    );
    node.close().unwrap();
    assert!(
        engine_threads().is_empty(),
        "threads left after close: {:?}",
        engine_threads()
    );
    // Everything was flushed: a reopened store holds the batch.
    let node = Node::builder().data_dir(dir.path()).open().unwrap();
    assert_eq!(node.store().read().unwrap().stats().unwrap().events, 500);
}
