//! A paused network is silent: its thread wakes for nothing (no timer, no socket) until it
//! resumes, its listening socket is closed, and after resuming it reconnects and catches up.
//! One test in its own process: the thread counted is the only network thread there.

mod common;

use std::time::Duration;

use common::{events, root, wait_until};

use xaeroflux_net::{Multiaddr, NetConfig, NetEvent, NetHandle};
use xaeroflux_store::Store;

/// Context switches (voluntary and not) of every thread of this process named `name`.
fn switches(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let n: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.push((dir.display().to_string(), n));
    }
    out.sort();
    out
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_paused_network_wakes_for_nothing_and_catches_up_after_resuming() {
    let port = free_tcp_port();
    let a_listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let cfg = NetConfig {
        listen: vec![a_listen],
        mdns: false,
        tick: Duration::from_millis(100),
        anti_entropy: Duration::from_secs(1),
        redial_min: Duration::from_millis(200),
        redial_max: Duration::from_secs(1),
        ..NetConfig::default()
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (
        Store::open(da.path()).unwrap(),
        Store::open(db.path()).unwrap(),
    );
    sa.ingest(events(1, 0, 200, "t")).unwrap();
    let a = NetHandle::start(sa.clone(), [51; 32], cfg.clone()).unwrap();
    let a_addr = a.wait_listening("/tcp/", Duration::from_secs(10)).unwrap();
    let b_cfg = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![a_addr],
        ..cfg
    };
    let b = NetHandle::start(sb.clone(), [52; 32], b_cfg).unwrap();
    wait_until("first sync", Duration::from_secs(20), || {
        root(&sa) == root(&sb)
    });

    // Running, the network threads wake (upkeep every 100 ms): the count can move.
    let before = switches("xf-net");
    assert_eq!(before.len(), 2, "two network threads: {before:?}");
    std::thread::sleep(Duration::from_secs(1));
    let after = switches("xf-net");
    assert!(
        before.iter().zip(&after).all(|(x, y)| y.1 > x.1),
        "running threads wake: {before:?} then {after:?}"
    );
    let woke = |b: &[(String, u64)], a: &[(String, u64)]| -> Vec<u64> {
        b.iter().zip(a).map(|(x, y)| y.1 - x.1).collect()
    };
    eprintln!(
        "running: {:?} context switches per network thread in 1 s",
        woke(&before, &after)
    );

    a.pause().unwrap();
    b.pause().unwrap();
    // Pausing again changes nothing.
    a.pause().unwrap();
    // The acknowledgement goes out before the thread blocks: let it get there (its wait spins
    // and yields briefly first), then count.
    std::thread::sleep(Duration::from_millis(500));
    let before = switches("xf-net");
    std::thread::sleep(Duration::from_secs(3));
    let after = switches("xf-net");
    eprintln!(
        "paused: {:?} context switches per network thread in 3 s",
        woke(&before, &after)
    );
    assert_eq!(before, after, "paused network threads woke up");
    // Nothing listens on a's port while it is paused.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a paused node still listens on {port}"
    );
    // What a stores meanwhile reaches b after both resume.
    sa.ingest(events(2, 0, 50, "t")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(root(&sb).1, 200);

    a.resume().unwrap();
    b.resume().unwrap();
    wait_until("catch-up after resuming", Duration::from_secs(30), || {
        root(&sa) == root(&sb)
    });
    assert_eq!(root(&sb).1, 250);
    let reports: Vec<NetEvent> = b.events().try_iter().collect();
    assert!(reports.iter().any(|e| matches!(e, NetEvent::Paused)));
    assert!(reports.iter().any(|e| matches!(e, NetEvent::Resumed)));
}
