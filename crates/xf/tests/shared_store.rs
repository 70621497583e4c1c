//! A running node shares its data directory with other `xf` commands, as a user at a second
//! terminal expects: `xf post` beside `xf node` is stored and gossiped by the node, imports and
//! posts run at once, a second node on the directory is refused, one-shot syncs can be
//! repeated against a node, and a node stops in order on SIGTERM.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{count, failure, ok_json, root, wait_converged, xf, NodeProc};

fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let base = tempfile::tempdir().unwrap();
    let dirs = (0..n).map(|i| base.path().join(format!("n{i}"))).collect();
    (base, dirs)
}

/// A node with anti-entropy rounds an hour apart: only gossip carries events in time.
fn gossip_only(data: &std::path::Path, extra: &[&str]) -> NodeProc {
    let mut args = vec!["--anti-entropy-secs", "3600"];
    args.extend_from_slice(extra);
    NodeProc::start(data, &args)
}

#[test]
fn a_post_beside_a_running_node_is_stored_and_gossiped_by_it() {
    let (_base, d) = dirs(2);
    let a = gossip_only(&d[0], &[]);
    let b = gossip_only(&d[1], &["--bootstrap", &a.quic]);
    // Wait for the two to meet: the first session runs on connect.
    wait_converged(&[&d[0], &d[1]], 0, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));

    for i in 0..5 {
        let text = format!("typed at a second terminal {i}");
        let started = Instant::now();
        let posted = ok_json(&d[0], &["post", &text]);
        let id = posted["id"].as_str().expect("an id").to_owned();
        // Stored in A's store by the `xf post` process itself …
        assert_eq!(posted["outcome"], "stored", "{posted}");
        // … and carried to B by A's gossip (anti-entropy is an hour away).
        let deadline = started + Duration::from_secs(20);
        loop {
            let got = xf(&d[1], &["--json", "get", &id]);
            if got.status.success() {
                eprintln!(
                    "post {i} reached the other node {:?} after `xf post` began",
                    started.elapsed()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "post {i} never reached the other node"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(count(&d[0]), 5);
    assert_eq!(root(&d[0]), root(&d[1]));
    drop((a, b));
}

#[test]
fn a_second_node_on_one_directory_is_refused() {
    let (_base, d) = dirs(1);
    let a = NodeProc::start(&d[0], &[]);
    let out = xf(
        &d[0],
        &[
            "node",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--no-mdns",
        ],
    );
    let err = failure(&out);
    assert!(err.contains("already running"), "{err}");
    // The first node is unharmed and still takes posts from beside it.
    ok_json(&d[0], &["post", "still here"]);
    assert_eq!(count(&d[0]), 1);
    drop(a);
}

#[test]
fn an_import_and_posts_run_at_once_beside_a_node() {
    let (_base, d) = dirs(3);
    // Events to import, made in another store.
    ok_json(
        &d[1],
        &["gen", "--events", "20000", "--authors", "50", "--seed", "7"],
    );
    let file = d[2].with_extension("xf");
    std::fs::create_dir_all(&d[2]).unwrap();
    ok_json(&d[1], &["export", file.to_str().unwrap()]);

    let generated = count(&d[1]);
    let node = NodeProc::start(&d[0], &[]);
    let data = d[0].clone();
    let file_arg = file.to_str().unwrap().to_owned();
    let import = std::thread::spawn(move || xf(&data, &["--json", "import", &file_arg]));
    let mut posted = 0;
    while !import.is_finished() || posted < 20 {
        ok_json(&d[0], &["post", &format!("during the import {posted}")]);
        posted += 1;
    }
    let out = import.join().unwrap();
    assert!(
        out.status.success(),
        "import beside a node and posts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&d[0]), generated + posted);
    let verify = ok_json(&d[0], &["verify"]);
    assert_eq!(verify["problems_total"], 0, "{verify}");
    drop(node);
}

#[test]
fn repeated_one_shot_syncs_against_a_node_all_succeed() {
    let (_base, d) = dirs(2);
    let a = NodeProc::start(&d[0], &["--publish", "30"]);
    wait_converged(&[&d[0]], 30, Duration::from_secs(30));
    ok_json(&d[1], &["init"]);
    for round in 0..5 {
        // Something new each time, so every session moves events.
        ok_json(&d[1], &["post", &format!("from the client, round {round}")]);
        let out = xf(&d[1], &["--json", "sync", &a.quic, "--timeout-secs", "30"]);
        assert!(
            out.status.success(),
            "one-shot sync {round} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_converged(&[&d[0], &d[1]], 35, Duration::from_secs(10));
    drop(a);
}

#[test]
fn a_node_stops_in_order_on_sigterm() {
    let (_base, d) = dirs(2);
    let a = NodeProc::start(&d[0], &[]);
    let mut b = NodeProc::start(&d[1], &["--bootstrap", &a.quic, "--publish", "10"]);
    wait_converged(&[&d[0], &d[1]], 10, Duration::from_secs(30));
    let pid = b.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = b.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "orderly stop exits 0: {status:?}");
    let said: Vec<String> = b.lines.try_iter().collect();
    assert!(said.iter().any(|l| l == "stopped on SIGTERM"), "{said:?}");
    // The peer table records that the connection is gone.
    let peers = ok_json(&d[1], &["peers"]);
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] != "connected"),
        "{peers}"
    );
    // The directory is free for the next node at once.
    let again = NodeProc::start(&d[1], &[]);
    drop((a, again));
}
