//! Tor, on a private Tor network that runs offline: three directory authorities and four
//! relays (`scripts/tor-testnet`) on a host of their own in a network lab, and `xf` nodes on
//! other hosts of the lab, each starting its own `tor` as a child that joins that network.
//!
//! - Two anonymous nodes exchange events through their onion services: a sync session when
//!   they connect, gossip after; neither opens a socket other than to its own Tor's ports.
//! - An anonymous node that keeps its onion key restarts and is reached at the same address.
//! - Two nodes with no route between their hosts converge through Tor, the fallback.
//!
//! Needs root, iproute2 and Debian's `tor` (`.ci/run` installs it).

mod common;
mod lab;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{failure, ok_json, wait_converged, xf, NodeProc};
use lab::Lab;

const XF: &str = env!("CARGO_BIN_EXE_xf");
/// The test functions below that use the network: the last one to finish tears it down.
const TESTS: usize = 4;
/// Lab host of the Tor network; the nodes take the hosts after it, two per test.
const HUB: usize = 0;
/// How long a Tor network may take to come up (it takes 30 to 80 s on a 2-core machine).
const NETWORK_UP: Duration = Duration::from_secs(240);
/// How long a node may take from start to a published onion service, or two nodes to meet.
const TOR_WAIT: Duration = Duration::from_secs(120);

/// The private Tor network, shared by the tests of this file.
struct TorNet {
    lab: Lab,
    /// The network's directory (torrc files, data, logs), removed with it.
    dir: tempfile::TempDir,
    /// The torrc fragment that makes a client join it.
    client_torrc: PathBuf,
}

impl Drop for TorNet {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/tor-testnet");
        let _ = self
            .lab
            .command(HUB, "bash")
            .arg(script)
            .arg("down")
            .arg(self.dir.path().join("net"))
            .output();
    }
}

static NET: Mutex<(Option<Arc<TorNet>>, usize)> = Mutex::new((None, 0));

/// The network, brought up by the first test that asks; dropped by the last one to finish.
struct Shared(Arc<TorNet>);

impl std::ops::Deref for Shared {
    type Target = TorNet;
    fn deref(&self) -> &TorNet {
        &self.0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut net = NET.lock().unwrap_or_else(|e| e.into_inner());
        net.1 += 1;
        if net.1 == TESTS {
            net.0 = None;
        }
    }
}

fn network() -> Shared {
    let mut net = NET.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = &net.0 {
        return Shared(n.clone());
    }
    let lab = Lab::new(1 + 2 * TESTS);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/tor-testnet");
    let started = Instant::now();
    let out = lab
        .command(HUB, "bash")
        .arg(script)
        .args(["up", "--timeout"])
        .arg(NETWORK_UP.as_secs().to_string())
        .arg("--address")
        .arg(lab.addr(HUB).to_string())
        .arg("--owner")
        .arg(std::process::id().to_string())
        .arg(dir.path().join("net"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the private Tor network did not come up (is Debian's `tor` installed?): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("private Tor network up in {:?}", started.elapsed());
    let client_torrc = dir.path().join("net/client-base.torrc");
    assert!(client_torrc.exists());
    let n = Arc::new(TorNet {
        lab,
        dir,
        client_torrc,
    });
    net.0 = Some(n.clone());
    Shared(n)
}

/// A node's first listen address containing `kind`, as printed (with its peer id).
fn wait_listening(node: &NodeProc, kind: &str, limit: Duration) -> String {
    wait_line(node, limit, |l| {
        l.strip_prefix("listening: ")
            .filter(|a| a.contains(kind))
            .map(str::to_owned)
    })
}

/// Waits for a line of a node's output that `pick` takes; other lines are dropped.
fn wait_line<T>(node: &NodeProc, limit: Duration, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match node.lines.recv_timeout(left) {
            Ok(line) => {
                if line.starts_with("listening on") {
                    eprintln!("node {}: {line}", node.peer);
                }
                if let Some(t) = pick(&line) {
                    return t;
                }
            }
            Err(e) => panic!(
                "node {} did not print what was awaited in {limit:?}: {e}",
                node.peer
            ),
        }
    }
}

/// `xf node` on lab host `host` with `args`, its child tor joining the private network.
fn tor_node(net: &TorNet, host: usize, data: &Path, args: &[&str]) -> NodeProc {
    let mut cmd = net.lab.command(host, XF);
    cmd.arg("--data")
        .arg(data)
        .arg("node")
        .arg("--tor-torrc")
        .arg(&net.client_torrc)
        .args(args);
    NodeProc::spawn(cmd, false)
}

/// Posts to the store at `data`, creating it (encrypted) first if there is none.
fn post(data: &Path, text: &str) {
    if !data.exists() {
        let out = xf(data, &["init"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = xf(data, &["post", text]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The TCP ports process `pid` listens on (in its own network namespace).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    sockets(pid)
        .into_iter()
        .filter(|s| s.proto.starts_with("tcp") && s.state == 0x0A)
        .map(|s| s.local_port)
        .collect()
}

/// One of a process's internet sockets, from `/proc/PID/net/*`.
#[derive(Debug)]
struct Socket {
    proto: &'static str,
    local_port: u16,
    remote: String,
    remote_port: u16,
    state: u8,
}

/// Every internet socket (TCP, UDP, raw; IPv4 and IPv6) that process `pid` holds open.
fn sockets(pid: u32) -> Vec<Socket> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process's fds") {
        let Ok(target) = std::fs::read_link(fd.unwrap().path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            inodes.insert(inode.to_owned());
        }
    }
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            let (local, remote) = (split_addr(f[1]), split_addr(f[2]));
            out.push(Socket {
                proto,
                local_port: local.1,
                remote: remote.0,
                remote_port: remote.1,
                state: u8::from_str_radix(f[3], 16).unwrap(),
            });
        }
    }
    out
}

/// `0100007F:1F90` as ("127.0.0.1", 8080) (IPv6 addresses are left in hex).
fn split_addr(s: &str) -> (String, u16) {
    let (addr, port) = s.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let text = if addr.len() == 8 {
        let n = u32::from_str_radix(addr, 16).unwrap();
        std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
    } else {
        addr.to_owned()
    };
    (text, port)
}

/// The `tor` child of process `pid`.
fn tor_child(pid: u32) -> u32 {
    let tors = xaeroflux_bench::procfs::children_named(pid, "tor");
    assert_eq!(tors.len(), 1, "process {pid} has one tor child: {tors:?}");
    tors[0]
}

/// Asserts that the node opens no internet socket but connections to its own Tor's ports
/// (SOCKS and control), and returns how many it has.
fn only_tor_sockets(node: &NodeProc) -> usize {
    let pid = node.child.id();
    let tor_ports = listening_ports(tor_child(pid));
    let mine = sockets(pid);
    for s in &mine {
        assert!(
            s.proto.starts_with("tcp")
                && s.state == 0x01
                && s.remote == "127.0.0.1"
                && tor_ports.contains(&s.remote_port),
            "anonymous node {} holds a socket not to its Tor ({tor_ports:?}): {s:?}; all: {mine:?}",
            node.peer
        );
    }
    mine.len()
}

#[test]
fn two_anonymous_nodes_exchange_events_through_onion_services() {
    let net = network();
    let (ha, hb) = (1, 2);
    let base = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (base.path().join("a"), base.path().join("b"));
    for (dir, n) in [(&a_dir, 3), (&b_dir, 2)] {
        for i in 0..n {
            post(dir, &format!("before {i}"));
        }
    }
    let started = Instant::now();
    // No anti-entropy rounds: the first session syncs, gossip does the rest.
    let quiet = ["--anonymous", "--anti-entropy-secs", "3600"];
    let a = tor_node(&net, ha, &a_dir, &quiet);
    let a_onion = wait_listening(&a, "/onion3/", TOR_WAIT);
    eprintln!(
        "A's onion service published in {:?}: {a_onion}",
        started.elapsed()
    );
    assert!(a_onion.ends_with(&format!("/p2p/{}", a.peer)));
    let mut b_args = quiet.to_vec();
    b_args.extend(["--bootstrap", &a_onion]);
    let b = tor_node(&net, hb, &b_dir, &b_args);
    let b_onion = wait_listening(&b, "/onion3/", TOR_WAIT);
    assert_ne!(a_onion, b_onion);
    let took = wait_converged(&[&a_dir, &b_dir], 5, TOR_WAIT);
    eprintln!("synced through Tor {took:?} after B started");
    // B stores an event from another process: its node gossips it to A.
    post(&b_dir, "live over gossip");
    wait_line(&a, TOR_WAIT, |l| l.starts_with("gossiped: ").then_some(()));
    wait_converged(&[&a_dir, &b_dir], 6, TOR_WAIT);
    // Connected and idle: each holds its control connection, and B its SOCKS stream to A.
    let (na, nb) = (only_tor_sockets(&a), only_tor_sockets(&b));
    assert!(
        na >= 1 && nb >= 2,
        "too few sockets to be connected: {na}, {nb}"
    );
    // The peer table names onion addresses, never an IP address.
    drop((a, b));
    let peers = ok_json(&b_dir, &["peers", "--anonymous"]).to_string();
    assert!(peers.contains("/onion3/"), "{peers}");
    for dir in [&a_dir, &b_dir] {
        let text = ok_json(dir, &["peers", "--anonymous"]).to_string();
        assert!(!text.contains("/ip4/") && !text.contains("/ip6/"), "{text}");
    }
}

#[test]
fn an_anonymous_node_that_keeps_its_onion_is_reached_again_after_a_restart() {
    let net = network();
    let (ha, hc) = (3, 4);
    let base = tempfile::tempdir().unwrap();
    let (a_dir, c_dir) = (base.path().join("a"), base.path().join("c"));
    post(&a_dir, "on the onion");
    post(&c_dir, "from the client");
    let args = ["--anonymous", "--keep-onion"];
    let a = tor_node(&net, ha, &a_dir, &args);
    let first = wait_listening(&a, "/onion3/", TOR_WAIT);
    let peer = a.peer.clone();
    a.kill();
    // The kept key is sealed like the store's other secrets.
    let key = std::fs::read(a_dir.join(xaeroflux::ANON_ONION_KEY_FILE)).unwrap();
    assert!(!String::from_utf8_lossy(&key).contains("ED25519-V3"));
    let started = Instant::now();
    let a = tor_node(&net, ha, &a_dir, &args);
    let again = wait_listening(&a, "/onion3/", TOR_WAIT);
    assert_eq!(
        again, first,
        "same onion address and peer id after a restart"
    );
    assert_eq!(a.peer, peer);
    eprintln!("onion service back in {:?}", started.elapsed());
    // A one-shot sync from another host reaches it there.
    let out = net
        .lab
        .command(hc, XF)
        .arg("--data")
        .arg(&c_dir)
        .args(["sync", &again, "--anonymous", "--tor-torrc"])
        .arg(&net.client_torrc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xf sync {again}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_converged(&[&a_dir, &c_dir], 2, TOR_WAIT);
}

#[test]
fn nodes_with_no_route_between_them_converge_through_tor() {
    let net = network();
    let (ha, hb) = (5, 6);
    let base = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (base.path().join("a"), base.path().join("b"));
    post(&a_dir, "a");
    post(&b_dir, "b");
    // No route between the two hosts: a direct dial fails at once.
    for (from, to) in [(ha, hb), (hb, ha)] {
        let status = Command::new("ip")
            .args(["-n", net.lab.ns(from), "route", "add", "unreachable"])
            .arg(format!("{}/32", net.lab.addr(to)))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let a = tor_node(
        &net,
        ha,
        &a_dir,
        &[
            "--tor",
            "--no-mdns",
            "--listen",
            "/ip4/0.0.0.0/udp/0/quic-v1",
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
        ],
    );
    let lan = net.lab.addr(ha).to_string();
    let mut direct = Vec::new();
    let mut onion = None;
    while direct.len() < 2 || onion.is_none() {
        let addr = wait_line(&a, TOR_WAIT, |l| {
            l.strip_prefix("listening: ").map(str::to_owned)
        });
        if addr.contains("/onion3/") {
            onion = Some(addr);
        } else if addr.contains(&lan) {
            direct.push(addr);
        }
    }
    let onion = onion.unwrap();
    // B knows all of A's addresses; only the onion one leads anywhere.
    let mut b_args = vec!["--tor", "--no-onion", "--no-listen", "--no-mdns"];
    for addr in direct.iter().chain([&onion]) {
        b_args.extend(["--bootstrap", addr.as_str()]);
    }
    let started = Instant::now();
    let b = tor_node(&net, hb, &b_dir, &b_args);
    let via = wait_line(&b, TOR_WAIT, |l| {
        l.strip_prefix("connected: ")
            .filter(|rest| rest.starts_with(&a.peer))
            .map(str::to_owned)
    });
    assert!(via.contains("/onion3/"), "B reached A through Tor: {via}");
    let took = wait_converged(&[&a_dir, &b_dir], 2, TOR_WAIT);
    eprintln!(
        "converged through Tor {:?} after B started ({took:?} after connecting)",
        started.elapsed()
    );
}

/// A valid onion address that no service uses: the key of an author nobody runs a service
/// for, with the checksum and version of Tor's rend-spec (SHA3-256 from python3's hashlib, as
/// the Rust tree has none).
fn unused_onion() -> String {
    let key = xaeroflux::Identity::from_seed(&[7; 32]).public_key();
    let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import base64,hashlib,sys\n\
        k=bytes.fromhex(sys.argv[1])\n\
        c=hashlib.sha3_256(b'.onion checksum'+k+b'\\x03').digest()[:2]\n\
        print(base64.b32encode(k+c+b'\\x03').decode().lower())";
    let out = Command::new("python3")
        .args(["-c", script, &hex])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(host.len(), 56);
    format!("/onion3/{host}:7464")
}

#[test]
fn a_missing_tor_and_an_unreachable_onion_are_named_with_the_time_spent() {
    let base = tempfile::tempdir().unwrap();
    let c_dir = base.path().join("c");
    post(&c_dir, "c");
    let onion = unused_onion();
    // No tor program: said at once, naming the program.
    let out = xf(
        &c_dir,
        &[
            "sync",
            &onion,
            "--tor-binary",
            "/nonexistent/tor",
            "--timeout-secs",
            "30",
        ],
    );
    let err = failure(&out);
    assert!(err.contains("cannot run /nonexistent/tor"), "{err}");
    // A well-formed onion address that no service publishes: Tor's own reason, and the time.
    let net = network();
    let out = net
        .lab
        .command(7, XF)
        .arg("--data")
        .arg(&c_dir)
        .args(["sync", &onion, "--timeout-secs", "120", "--tor-torrc"])
        .arg(&net.client_torrc)
        .output()
        .unwrap();
    let err = failure(&out);
    assert!(
        err.contains("unreachable through Tor") && err.contains(" ms"),
        "{err}"
    );
    eprintln!("{err}");
}
