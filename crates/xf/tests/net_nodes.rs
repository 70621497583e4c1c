//! Real `xf node` processes on loopback: they converge after each publishes thousands of
//! events, a node that joins late bootstraps everything, and a node killed mid-sync catches up
//! after a restart. A running node's OS threads are counted.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{ok_json, root, wait_converged, xf, NodeProc};

fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let base = tempfile::tempdir().unwrap();
    let dirs = (0..n).map(|i| base.path().join(format!("n{i}"))).collect();
    (base, dirs)
}

#[test]
fn nodes_converge_after_each_publishes_thousands_and_a_late_joiner_bootstraps() {
    const POSTS: u64 = 1500;
    let (_base, d) = dirs(4);
    let posts = POSTS.to_string();
    let a = NodeProc::start(&d[0], &["--publish", &posts]);
    let b = NodeProc::start(&d[1], &["--publish", &posts, "--bootstrap", &a.quic]);
    let c = NodeProc::start(&d[2], &["--publish", &posts, "--bootstrap", &a.quic]);
    let took = wait_converged(&[&d[0], &d[1], &d[2]], 3 * POSTS, Duration::from_secs(120));
    eprintln!("three nodes converged on {} events in {took:?}", 3 * POSTS);
    // At rest a node runs main, writer and network threads only: the verifier stage's
    // threads end once they have had nothing to do for two seconds.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in [&a, &b, &c] {
        loop {
            let threads = n.threads();
            assert!(
                threads <= 4 + cores,
                "at most one verifier thread per core beside the node's own: {threads}"
            );
            if threads <= 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a node at rest still runs {threads} threads"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A node that joins late, knowing only one peer, bootstraps everything.
    let late = NodeProc::start(&d[3], &["--bootstrap", &c.quic]);
    let took = wait_converged(&[&d[0], &d[3]], 3 * POSTS, Duration::from_secs(60));
    eprintln!(
        "a late joiner bootstrapped {} events in {took:?}",
        3 * POSTS
    );
    drop(late);
    let _ = a.lines.try_recv();
}

#[test]
fn a_node_killed_mid_sync_catches_up_after_a_restart() {
    const EVENTS: u64 = 100_000;
    let (_base, d) = dirs(2);
    let out = xf(
        &d[0],
        &["gen", "--events", &EVENTS.to_string(), "--seed", "9"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deletions and replaced profiles among the generated events leave fewer stored.
    let (stored, _) = root(&d[0]);
    assert!(stored > EVENTS * 9 / 10, "{stored}");
    let a = NodeProc::start(&d[0], &[]);
    let b = NodeProc::start(&d[1], &["--bootstrap", &a.quic]);
    // Kill the empty node once part of the transfer has landed.
    let start = Instant::now();
    let partial = loop {
        let (n, _) = root(&d[1]);
        if n > 0 {
            break n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no transfer started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    b.kill();
    let (after_kill, _) = root(&d[1]);
    eprintln!("killed with {partial}..{after_kill} of {stored} events stored");
    assert!(
        after_kill < stored,
        "the kill came after the transfer ended"
    );
    let _b = NodeProc::start(&d[1], &["--bootstrap", &a.quic]);
    let took = wait_converged(&[&d[0], &d[1]], stored, Duration::from_secs(120));
    eprintln!("the restarted node caught up in {took:?}");
    let check = ok_json(&d[1], &["verify"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn a_dropped_peer_is_redialed_when_it_comes_back() {
    let (_base, d) = dirs(2);
    // A fixed port, so the restarted node is found where it was.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quic = format!("/ip4/127.0.0.1/udp/{port}/quic-v1");
    let start_a = |posts: &str| {
        let mut cmd = common::xf_cmd();
        cmd.arg("--data").arg(&d[0]).args([
            "node",
            "--listen",
            &quic,
            "--no-mdns",
            "--anti-entropy-secs",
            "1",
            "--publish",
            posts,
        ]);
        NodeProc::spawn(cmd, true)
    };
    let a = start_a("20");
    let _b = NodeProc::start(&d[1], &["--publish", "10", "--bootstrap", &a.quic]);
    wait_converged(&[&d[0], &d[1]], 30, Duration::from_secs(60));
    a.kill();
    // Down for a while: the other side's redials fail and back off meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let _a = start_a("30");
    let took = wait_converged(&[&d[0], &d[1]], 60, Duration::from_secs(90));
    eprintln!("the peer came back and was redialed; converged {took:?} after the restart");
}

#[test]
fn one_shot_sync_dials_transfers_and_reports() {
    let (_base, d) = dirs(3);
    let a = NodeProc::start(&d[0], &["--publish", "40"]);
    wait_converged(&[&d[0]], 40, Duration::from_secs(30));
    let out = ok_json(&d[1], &["sync", &a.quic]);
    assert_eq!(out["received"]["events"], 40, "{out}");
    assert_eq!(out["sent"]["events"], 0, "{out}");
    assert_eq!(out["set"]["events"], 40, "{out}");
    assert_eq!(out["peer"], a.quic.rsplit('/').next().unwrap(), "{out}");
    assert_eq!(root(&d[1]), root(&d[0]));
    let peers = ok_json(&d[1], &["peers"]);
    assert_eq!(
        peers[0]["peer"],
        a.quic.rsplit('/').next().unwrap(),
        "{peers}"
    );
    assert_eq!(peers[0]["syncs"], 1, "{peers}");
    // The same node by name: `/dns4/localhost/…` is resolved and dialed.
    let by_name = a.quic.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert_ne!(by_name, a.quic);
    let out = ok_json(&d[2], &["sync", &by_name]);
    assert_eq!(out["received"]["events"], 40, "{out}");
    // Nobody listening there: a clear failure, not a hang.
    let port_gone = format!(
        "/ip4/127.0.0.1/udp/9/quic-v1/p2p/{}",
        a.quic.rsplit('/').next().unwrap()
    );
    let out = xf(&d[1], &["sync", &port_gone, "--timeout-secs", "5"]);
    let err = common::failure(&out);
    assert!(err.contains("sync") || err.contains("dial"), "{err}");
}
