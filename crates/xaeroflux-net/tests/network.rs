//! Nodes on loopback (libp2p, QUIC and TCP) and on the in-memory network converge: on
//! connection, through gossip, and by anti-entropy after a cut.

mod common;

use std::time::{Duration, Instant};

use common::{events, root, wait_until};

use xaeroflux_event::VerifiedEvent;
use xaeroflux_net::{MemoryHub, Multiaddr, NetConfig, NetHandle};
use xaeroflux_store::Store;

fn loopback(tcp_only: bool) -> NetConfig {
    let mut listen: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    if !tcp_only {
        listen.insert(0, "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    }
    NetConfig {
        listen,
        mdns: false,
        anti_entropy: Duration::from_secs(2),
        redial_min: Duration::from_millis(200),
        redial_max: Duration::from_secs(2),
        ..NetConfig::default()
    }
}

fn first_listen(h: &NetHandle, want: &str) -> Multiaddr {
    h.wait_listening(want, Duration::from_secs(10)).unwrap()
}

struct Node {
    store: Store,
    net: NetHandle,
    _dir: tempfile::TempDir,
}

fn node(seed: u8, initial: &[VerifiedEvent], cfg: NetConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    if !initial.is_empty() {
        store.ingest(initial.to_vec()).unwrap();
    }
    let net = NetHandle::start(store.clone(), [seed; 32], cfg).unwrap();
    Node {
        store,
        net,
        _dir: dir,
    }
}

fn converge(nodes: &[&Node], expect: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    let done = |nodes: &[&Node]| {
        let roots: Vec<_> = nodes.iter().map(|n| root(&n.store)).collect();
        roots.iter().all(|r| *r == roots[0]) && roots[0].1 == expect
    };
    while !done(nodes) {
        if start.elapsed() > limit {
            // What each node reported says which session failed and why.
            for n in nodes {
                let evs: Vec<_> = n.net.events().try_iter().collect();
                eprintln!("{} {:?}: {evs:#?}", n.net.peer_id(), root(&n.store).1);
            }
            panic!("not converged on {expect} events within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn three_nodes_converge(tcp_only: bool) {
    let (ea, eb, ec) = (
        events(1, 0, 700, "a"),
        events(2, 0, 500, "b"),
        events(3, 0, 300, "a"),
    );
    // No anti-entropy rounds: what converges here moved in the session each new connection
    // runs, and what arrives later came by gossip.
    let mut cfg = loopback(tcp_only);
    cfg.anti_entropy = Duration::from_secs(3600);
    let a = node(11, &ea, cfg.clone());
    let a_addr = first_listen(&a.net, if tcp_only { "/tcp/" } else { "/quic-v1" });
    cfg.bootstrap = vec![a_addr.clone()];
    let b = node(12, &eb, cfg.clone());
    let b_addr = first_listen(&b.net, if tcp_only { "/tcp/" } else { "/quic-v1" });
    // Every pair connects, so the sessions run on connection alone carry every event, in
    // whatever order they run.
    cfg.bootstrap = vec![a_addr, b_addr];
    let c = node(13, &ec, cfg);
    let took = converge(&[&a, &b, &c], 1500, Duration::from_secs(30));
    eprintln!("three nodes converged on 1,500 events in {took:?} (tcp only: {tcp_only})");

    // Live: an event published on one node reaches the others through gossip.
    let fresh = events(4, 0, 1, "a").remove(0);
    a.store.ingest(vec![fresh.clone()]).unwrap();
    let sent = Instant::now();
    a.net.publish(fresh.clone()).unwrap();
    let has = |n: &Node| n.store.read().unwrap().get(fresh.id()).unwrap().is_some();
    // The design's figure is "within a second"; the bound here is loose for a loaded machine,
    // and the figure printed is the one to read.
    wait_until("gossip", Duration::from_secs(5), || has(&b) && has(&c));
    eprintln!("gossip reached both peers in {:?}", sent.elapsed());
}

#[test]
fn three_nodes_converge_over_quic_and_gossip_live_events() {
    three_nodes_converge(false);
}

#[test]
fn three_nodes_converge_over_tcp_alone() {
    three_nodes_converge(true);
}

#[test]
fn memory_nodes_converge_and_catch_up_after_a_cut() {
    let hub = MemoryHub::new();
    let mk = |seed: u8, evs: &[VerifiedEvent]| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.ingest(evs.to_vec()).unwrap();
        let peer = xaeroflux_net::keypair_from_seed(&[seed; 32])
            .public()
            .to_peer_id();
        let mut cfg = NetConfig {
            anti_entropy: Duration::from_millis(300),
            ..NetConfig::default()
        };
        cfg.mdns = false;
        let net = NetHandle::start_memory(store.clone(), &hub, peer, cfg).unwrap();
        Node {
            store,
            net,
            _dir: dir,
        }
    };
    let a = mk(21, &events(5, 0, 400, "x"));
    let b = mk(22, &events(6, 0, 300, "y"));
    let a_addr = first_listen(&a.net, "/memory/");
    b.net.dial(a_addr.clone()).unwrap();
    converge(&[&a, &b], 700, Duration::from_secs(20));

    // Cut the link, add on both sides, reconnect: anti-entropy on the new connection heals.
    hub.cut(a.net.peer_id());
    a.store.ingest(events(7, 0, 50, "x")).unwrap();
    b.store.ingest(events(8, 0, 60, "y")).unwrap();
    b.net.dial(a_addr).unwrap();
    converge(&[&a, &b], 810, Duration::from_secs(20));

    // Events that never went through gossip (written straight into a store) arrive with the
    // next anti-entropy round.
    a.store.ingest(events(9, 0, 25, "x")).unwrap();
    b.store.ingest(events(10, 0, 35, "y")).unwrap();
    let took = converge(&[&a, &b], 870, Duration::from_secs(20));
    eprintln!("anti-entropy carried events gossip never saw in {took:?}");
}

#[test]
fn a_gossip_flood_is_cut_to_the_peers_rate_and_anti_entropy_repairs_it() {
    let hub = MemoryHub::new();
    let start = |seed: u8, anti_entropy: Duration| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let peer = xaeroflux_net::keypair_from_seed(&[seed; 32])
            .public()
            .to_peer_id();
        let cfg = NetConfig {
            mdns: false,
            anti_entropy,
            gossip_per_peer_per_sec: 50,
            ..NetConfig::default()
        };
        let net = NetHandle::start_memory(store.clone(), &hub, peer, cfg).unwrap();
        Node {
            store,
            net,
            _dir: dir,
        }
    };
    let flooder = start(31, Duration::from_secs(3600));
    let victim = start(32, Duration::from_secs(3600));
    let addr = first_listen(&victim.net, "/memory/");
    flooder.net.dial(addr).unwrap();
    converge(&[&flooder, &victim], 0, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));

    let flood = events(33, 0, 1000, "flood");
    flooder.store.ingest(flood.clone()).unwrap();
    for chunk in flood.chunks(500) {
        for e in chunk {
            flooder.net.publish(e.clone()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the accepted part land: a burst of 100 plus 50 a second.
    std::thread::sleep(Duration::from_millis(500));
    let got = root(&victim.store).1;
    eprintln!("the victim took {got} of 1,000 flooded events by gossip");
    assert!((50..=250).contains(&got), "{got}");

    // What was dropped unread is still fetched, by the next session.
    victim.net.sync_now().unwrap();
    converge(&[&flooder, &victim], 1000, Duration::from_secs(20));
}

#[test]
fn nodes_with_different_frame_caps_sync_and_nobody_is_penalised() {
    // A node that accepts only 1 KiB frames and an honest default one (64 KiB): each session
    // uses the smaller cap, in both directions, and neither side scores the other down.
    let (small_side, big_side) = (events(1, 0, 400, "a"), events(2, 0, 400, "b"));
    let mut small_cfg = loopback(false);
    small_cfg.sync = xaeroflux_sync::SyncConfig::with_frame_bytes(1024);
    small_cfg.anti_entropy = Duration::from_millis(500);
    let small = node(21, &small_side, small_cfg);
    let small_addr = first_listen(&small.net, "/quic-v1");
    let mut big_cfg = loopback(false);
    big_cfg.anti_entropy = Duration::from_millis(500);
    big_cfg.bootstrap = vec![small_addr];
    let big = node(22, &big_side, big_cfg);
    converge(&[&small, &big], 800, Duration::from_secs(30));
    // Several anti-entropy rounds more, opened by both sides in turn.
    std::thread::sleep(Duration::from_secs(2));
    for n in [&small, &big] {
        for ev in n.net.events().try_iter() {
            match ev {
                xaeroflux_net::NetEvent::SyncFailed { penalty, error, .. } => {
                    assert_eq!(penalty, 0, "an honest peer was penalised: {error}")
                }
                xaeroflux_net::NetEvent::Blocked { peer } => panic!("{peer} was blocked"),
                _ => {}
            }
        }
    }
    let fresh = events(3, 0, 50, "a");
    big.store.ingest(fresh).unwrap();
    big.net.sync_now().unwrap();
    converge(&[&small, &big], 850, Duration::from_secs(30));
}

#[test]
fn out_of_range_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for frame in [0usize, 1023, (16 << 20) + 1, usize::MAX] {
        let mut cfg = loopback(false);
        cfg.sync = xaeroflux_sync::SyncConfig::with_frame_bytes(frame);
        let r = NetHandle::start(store.clone(), [31; 32], cfg);
        assert!(
            matches!(r, Err(xaeroflux_net::NetError::Config(_))),
            "frame cap {frame}: {r:?}"
        );
    }
    let mut cfg = loopback(false);
    cfg.topics = (0..1025u32)
        .map(|i| xaeroflux_event::Topic::named(&i.to_string()))
        .collect();
    let r = NetHandle::start(store, [31; 32], cfg);
    assert!(
        matches!(r, Err(xaeroflux_net::NetError::Config(_))),
        "{r:?}"
    );
}

#[test]
fn the_network_thread_serves_other_peers_while_the_writer_is_stalled() {
    // A's writer is held up: its map is small, and a read transaction the test keeps open stops
    // it from growing while B streams thousands of events at A. Meanwhile C, which lacks what A
    // holds, must still get it: A's network thread may not wait on its writer.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        xaeroflux_store::StoreOptions {
            map_bytes_initial: 2 << 20,
            resize_wait_ms: 20_000,
            ..xaeroflux_store::StoreOptions::default()
        },
    )
    .unwrap();
    store.ingest(events(1, 0, 300, "a")).unwrap();
    let mut cfg = loopback(false);
    cfg.anti_entropy = Duration::from_secs(3600);
    let a_net = NetHandle::start(store.clone(), [41; 32], cfg.clone()).unwrap();
    let a_addr = first_listen(&a_net, "/quic-v1");

    let reader = store.read().unwrap();
    let mut b_cfg = cfg.clone();
    b_cfg.bootstrap = vec![a_addr.clone()];
    let b = node(42, &events(2, 0, 15_000, "b"), b_cfg);
    // Let B's bulk session fill A's writer queue and map.
    std::thread::sleep(Duration::from_secs(3));

    let mut c_cfg = cfg;
    c_cfg.bootstrap = vec![a_addr];
    let started = Instant::now();
    let c = node(43, &[], c_cfg);
    let got = wait_until("C gets A's events", Duration::from_secs(15), || {
        root(&c.store).1 >= 300
    });
    let stored = root(&store).1;
    eprintln!("C got A's 300 events in {got:?}; A held {stored} of the 15,300 events by then");
    assert!(
        stored < 15_300,
        "the writer was not held up: the test proves nothing"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "A's network waited on its writer"
    );
    drop(reader);
    // Once the reader is gone the writer grows the map and takes in the rest.
    wait_until("A stores B's events", Duration::from_secs(60), || {
        root(&store).1 == 15_300
    });
    drop((b, c, a_net));
}

/// Nodes that follow a topic reconcile only that topic (the session's keys are gathered off
/// the network thread): each ends with the other's events of the topic and none of the rest.
#[test]
fn nodes_following_a_topic_exchange_that_topic_only() {
    use xaeroflux_event::Topic;
    let (a_t, a_u) = (events(21, 0, 400, "t"), events(21, 400, 300, "u"));
    let (b_t, b_u) = (events(22, 0, 200, "t"), events(22, 200, 100, "u"));
    let mut cfg = loopback(false);
    cfg.anti_entropy = Duration::from_secs(3600);
    cfg.topics = vec![Topic::named("t")];
    let a = node(23, &[a_t.clone(), a_u.clone()].concat(), cfg.clone());
    cfg.bootstrap = vec![first_listen(&a.net, "/quic-v1")];
    let b = node(24, &[b_t.clone(), b_u.clone()].concat(), cfg);
    let has = |n: &Node, e: &VerifiedEvent| n.store.read().unwrap().get(e.id()).unwrap().is_some();
    wait_until("the topic's events", Duration::from_secs(30), || {
        a_t.iter().all(|e| has(&b, e)) && b_t.iter().all(|e| has(&a, e))
    });
    // Settled: the session that moved them has ended; nothing else may have come over.
    std::thread::sleep(Duration::from_millis(500));
    assert!(a_u.iter().all(|e| !has(&b, e)), "A's other topic reached B");
    assert!(b_u.iter().all(|e| !has(&a, e)), "B's other topic reached A");
    assert_eq!(root(&a.store).1, 400 + 300 + 200);
    assert_eq!(root(&b.store).1, 200 + 100 + 400);
}
