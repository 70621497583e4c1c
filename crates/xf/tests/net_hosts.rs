//! Nodes on separate hosts: each `xf node` runs in its own network namespace, joined to the
//! others by veth pairs on a bridge. Five nodes converge through a partition that heals, and
//! through 20% packet loss plus 200 ms of delay each way. This kernel has no netem qdisc, so
//! loss and delay come from the seeded relay `xf-netsim` (UDP for QUIC, TCP for the fallback);
//! the seed is printed and `XF_NETSIM_SEED` replays it. Needs root and iproute2.

mod common;
mod lab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{root, wait_converged, NodeProc};
use lab::Lab;

const XF: &str = env!("CARGO_BIN_EXE_xf");
/// The seeded loss-and-delay relay.
const NETSIM: &str = env!("CARGO_BIN_EXE_xf-netsim");

fn node_in(lab: &Lab, host: usize, data: &Path, listen: &[String], extra: &[&str]) -> NodeProc {
    let mut cmd = lab.command(host, XF);
    cmd.arg("--data")
        .arg(data)
        .arg("node")
        .args(["--no-mdns", "--anti-entropy-secs", "1"]);
    for l in listen {
        cmd.args(["--listen", l]);
    }
    if listen.is_empty() {
        cmd.arg("--no-listen");
    }
    cmd.args(extra);
    NodeProc::spawn(cmd, !listen.is_empty())
}

#[test]
fn five_hosts_converge_through_a_partition_that_heals() {
    const POSTS: u64 = 300;
    let lab = Lab::new(5);
    let base = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..5).map(|i| base.path().join(format!("h{i}"))).collect();
    let listen = |i: usize| {
        vec![
            format!("/ip4/{}/udp/4001/quic-v1", lab.addr(i)),
            format!("/ip4/{}/tcp/4001", lab.addr(i)),
            format!("/ip6/{}/udp/4001/quic-v1", lab.addr6(i)),
        ]
    };
    // Each node keeps publishing for about six seconds, across the partition.
    let publish = [
        "--publish",
        &POSTS.to_string(),
        "--publish-interval-ms",
        "20",
    ]
    .map(String::from);
    let publish: Vec<&str> = publish.iter().map(String::as_str).collect();
    let first = node_in(&lab, 0, &dirs[0], &listen(0), &publish);
    // Half the nodes bootstrap over IPv6, half over IPv4.
    let first_v6 = format!("/ip6/{}/udp/4001/quic-v1/p2p/{}", lab.addr6(0), first.peer);
    let mut nodes = vec![first];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let boot = if i % 2 == 0 {
            first_v6.clone()
        } else {
            nodes[0].quic.clone()
        };
        let mut extra = publish.clone();
        extra.extend(["--bootstrap", &boot]);
        nodes.push(node_in(&lab, i, dir, &listen(i), &extra));
    }
    std::thread::sleep(Duration::from_secs(2));
    lab.partition(&[0, 1], &[2, 3, 4]);
    eprintln!("partitioned {{0,1}} from {{2,3,4}}");
    std::thread::sleep(Duration::from_secs(6));
    let (a, b) = (root(&dirs[0]), root(&dirs[2]));
    assert_ne!(
        a, b,
        "the two sides of the partition could not have the same set"
    );
    lab.heal();
    eprintln!("healed with {} and {} events on the two sides", a.0, b.0);
    let took = wait_converged(&dirs, 5 * POSTS, Duration::from_secs(120));
    eprintln!(
        "five hosts converged on {} events {took:?} after the heal",
        5 * POSTS
    );
}

#[test]
fn five_hosts_converge_through_loss_and_delay() {
    const POSTS: u64 = 200;
    let seed = xaeroflux_bench::seed_from_env("XF_NETSIM_SEED");
    eprintln!("netsim seed {seed} (XF_NETSIM_SEED={seed} replays it)");
    let lab = Lab::new(5);
    let base = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..5).map(|i| base.path().join(format!("h{i}"))).collect();
    // The hub listens on its own loopback only, so every path to it crosses a lossy relay; the
    // others listen on nothing (as behind a NAT), so nobody can reach anyone around the relays.
    let local = vec![
        "/ip4/127.0.0.1/udp/4001/quic-v1".to_owned(),
        "/ip4/127.0.0.1/tcp/4001".to_owned(),
    ];
    let posts = POSTS.to_string();
    let hub = node_in(&lab, 0, &dirs[0], &local, &["--publish", &posts]);
    let mut relays = Vec::new();
    let mut nodes = vec![hub];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let port = 5000 + i;
        let relay = lab
            .command(0, NETSIM)
            .args(["--udp", "--tcp", "--loss", "0.2", "--delay-ms", "200"])
            .args(["--listen", &format!("{}:{port}", lab.addr(0))])
            .args(["--target", "127.0.0.1:4001"])
            .args(["--seed", &(seed + i as u64).to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("relay starts");
        relays.push(Killed(relay));
        // The last node reaches the hub over TCP, the fallback, through the same relay.
        let boot = if i == 4 {
            format!("/ip4/{}/tcp/{port}/p2p/{}", lab.addr(0), nodes[0].peer)
        } else {
            format!(
                "/ip4/{}/udp/{port}/quic-v1/p2p/{}",
                lab.addr(0),
                nodes[0].peer
            )
        };
        nodes.push(node_in(
            &lab,
            i,
            dir,
            &[],
            &["--publish", &posts, "--bootstrap", &boot],
        ));
    }
    let took = wait_converged(&dirs, 5 * POSTS, Duration::from_secs(240));
    eprintln!(
        "five hosts converged on {} events through 20% loss and 200 ms delay in {took:?}",
        5 * POSTS
    );
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hosts_on_one_lan_find_each_other_by_mdns() {
    let lab = Lab::new(3);
    let base = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| base.path().join(format!("h{i}"))).collect();
    // No bootstrap addresses at all: only LAN discovery can join them.
    let nodes: Vec<NodeProc> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut cmd = lab.command(i, XF);
            cmd.arg("--data").arg(dir).args([
                "node",
                "--listen",
                &format!("/ip4/{}/udp/4001/quic-v1", lab.addr(i)),
                "--anti-entropy-secs",
                "1",
                "--publish",
                "100",
            ]);
            NodeProc::spawn(cmd, true)
        })
        .collect();
    let took = wait_converged(&dirs, 300, Duration::from_secs(60));
    eprintln!("three hosts found each other on the LAN and converged in {took:?}");
    drop(nodes);
}

#[test]
fn hosts_that_cannot_reach_each_other_sync_through_a_relay() {
    let lab = Lab::new(3);
    let base = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| base.path().join(format!("h{i}"))).collect();
    // Hosts 1 and 2 have no path to each other (as two peers behind NATs); both reach host 0.
    lab.partition(&[1], &[2]);
    // The relay follows a topic nobody posts in, so it stores none of their events: whatever
    // the two exchange crosses the relayed circuit.
    let relay = node_in(
        &lab,
        0,
        &dirs[0],
        &[format!("/ip4/{}/udp/4001/quic-v1", lab.addr(0))],
        &["--relay-server", "--topic", "relay-only"],
    );
    let mut cmd = lab.command(1, XF);
    cmd.arg("--data").arg(&dirs[1]).args([
        "node",
        "--no-mdns",
        "--no-listen",
        "--anti-entropy-secs",
        "1",
        "--relay",
        &relay.quic,
        "--publish",
        "100",
    ]);
    // Its only address is the circuit through the relay.
    let behind = NodeProc::spawn(cmd, true);
    assert!(behind.quic.contains("/p2p-circuit"), "{}", behind.quic);
    let mut cmd = lab.command(2, XF);
    cmd.arg("--data").arg(&dirs[2]).args([
        "node",
        "--no-mdns",
        "--no-listen",
        "--anti-entropy-secs",
        "1",
        "--bootstrap",
        &behind.quic,
        "--publish",
        "100",
    ]);
    let other = NodeProc::spawn(cmd, false);
    let took = wait_converged(&dirs[1..], 200, Duration::from_secs(60));
    eprintln!("two hosts with no path between them converged through a relay in {took:?}");
    assert_eq!(root(&dirs[0]).0, 0, "the relay stored nothing of theirs");
    drop((behind, other, relay));
}
