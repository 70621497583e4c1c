//! The facade's network door: `Node::sync_with` reaches a peer and answers its caller,
//! `pause`/`resume` hold the network back and let it catch up, and a node without a network
//! says so instead of pretending.

use std::time::{Duration, Instant};

use xaeroflux::{NetConfig, Node, Scope, SyncWithError};

fn loopback() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        mdns: false,
        anti_entropy: Duration::from_secs(3600),
        restore_peers: false,
        ..NetConfig::default()
    }
}

fn count(node: &Node) -> u64 {
    node.store().read().unwrap().set_root().unwrap().accum.count
}

#[test]
fn a_node_syncs_with_an_address_and_pauses_its_network() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let open = |dir: &tempfile::TempDir| {
        Node::builder()
            .data_dir(dir.path())
            .create_identity(true)
            .network(loopback())
            .open()
            .unwrap()
    };
    let a = open(&da);
    for i in 0..20 {
        a.post(&format!("post {i}"), None, None).unwrap();
    }
    let addr = a
        .net()
        .unwrap()
        .wait_listening("/quic-v1", Duration::from_secs(10))
        .unwrap();
    let b = open(&db);
    let summary = b
        .sync_with(addr.clone(), Scope::all())
        .unwrap()
        .wait(Duration::from_secs(30))
        .unwrap();
    assert_eq!(summary.stats.events_received, 20);
    assert_eq!(count(&b), 20);

    // Paused, a node keeps its store: it publishes, and nothing leaves until it resumes.
    b.pause().unwrap();
    b.post("written while paused", None, None).unwrap();
    let refused = b.sync_with(addr.clone(), Scope::all()).unwrap();
    assert_eq!(
        refused.wait(Duration::from_secs(5)).unwrap_err(),
        SyncWithError::Paused
    );
    b.resume().unwrap();
    // The redial's own session may carry the post before this one runs: either way it lands.
    b.sync_with(addr, Scope::all())
        .unwrap()
        .wait(Duration::from_secs(30))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&a) != 21 {
        assert!(Instant::now() < deadline, "a never stored b's post");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Without a network: nothing to pause, and no sync over one.
    let c = Node::builder()
        .data_dir(dc.path())
        .create_identity(true)
        .open()
        .unwrap();
    c.pause().unwrap();
    c.resume().unwrap();
    let any = "/ip4/127.0.0.1/udp/9/quic-v1".parse().unwrap();
    assert_eq!(
        c.sync_with(any, Scope::all()).unwrap_err(),
        SyncWithError::NoNetwork
    );
    a.close().unwrap();
    b.close().unwrap();
}
