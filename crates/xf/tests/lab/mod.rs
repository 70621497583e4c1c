//! A small network of hosts for multi-host tests, built from Linux network namespaces.
//!
//! Each host is a network namespace with one interface, `eth0`, whose veth peer is a port of a
//! bridge living in a separate "switch" namespace, so the hosts share one LAN:
//! 10.77.0.0/24 and fd77::/64. Processes are placed on a host with [`Lab::command`].
//!
//! Building a lab needs root (namespaces, veths and bridges are privileged) and iproute2's `ip`.
//! Nothing else: partitions are made with routes, so no firewall tool or traffic-control module
//! is required.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Every namespace a lab creates starts with this, so stale ones from a killed run can be found.
const PREFIX: &str = "xft-";

/// Makes namespace names unique between labs of one test process.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Address of the hole that partitioned traffic is routed into. No host holds it (hosts start at
/// .10 / ::10), and its neighbour entry names a MAC no interface has, so packets sent there are
/// flooded by the bridge and discarded by every host: the sender sees silence, as in a real
/// partition, rather than an immediate local error as a `blackhole` or `prohibit` route gives.
const SINK4: &str = "10.77.0.1";
const SINK6: &str = "fd77::1";
const SINK_MAC: &str = "02:00:00:00:00:01";

/// Hosts are .10 up to .253, leaving .254 and the broadcast address alone.
const MAX_HOSTS: usize = 244;

/// A set of hosts on one switch, torn down (with every process still running on it) on drop.
pub struct Lab {
    /// Namespace of each host, by index.
    hosts: Vec<String>,
    /// Namespace holding the bridge; `None` until created.
    switch: Option<String>,
    /// Directed pairs `(from, to)` whose traffic is currently cut, so `heal` knows what to undo.
    cuts: Mutex<BTreeSet<(usize, usize)>>,
}

impl Lab {
    /// Creates `hosts` hosts on one switch. Host `i` gets 10.77.0.`i+10`/24 and fd77::`i+10`/64
    /// (the IPv6 address reads like the IPv4 one: host 2 is 10.77.0.12 and fd77::12).
    ///
    /// Panics, saying the test needs root and iproute2, if namespaces cannot be created.
    pub fn new(hosts: usize) -> Lab {
        assert!(
            (1..=MAX_HOSTS).contains(&hosts),
            "a lab has 1 to {MAX_HOSTS} hosts, not {hosts}"
        );
        remove_stale();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        // Built up in place so that a panic half-way still drops it and removes what exists.
        let mut lab = Lab {
            hosts: Vec::with_capacity(hosts),
            switch: None,
            cuts: Mutex::new(BTreeSet::new()),
        };
        let switch = format!("{base}-sw");
        add_namespace(&switch);
        lab.switch = Some(switch.clone());
        // Snooping off: a test lab wants a plain hub for multicast (neighbour discovery, any
        // peer discovery under test) rather than one that depends on MLD/IGMP timing.
        ip_batch(
            &switch,
            &[
                "link set lo up".into(),
                "link add br0 type bridge mcast_snooping 0".into(),
                "link set br0 up".into(),
            ],
        );
        for i in 0..hosts {
            let ns = format!("{base}-h{i}");
            add_namespace(&ns);
            lab.hosts.push(ns.clone());
            // Both ends are created directly in their namespaces, so the fixed short names
            // cannot clash with anything outside the lab.
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &ns,
                "type",
                "veth",
                "peer",
                "name",
                &port(i),
                "netns",
                &switch,
            ]);
            ip_batch(&switch, &[format!("link set {} master br0 up", port(i))]);
            ip_batch(
                &ns,
                &[
                    "link set lo up".into(),
                    format!("addr add {}/24 dev eth0", lab.addr(i)),
                    // Without `nodad` the address stays tentative for a second or more.
                    format!("addr add {}/64 dev eth0 nodad", lab.addr6(i)),
                    "link set eth0 up".into(),
                    format!("neigh replace {SINK4} lladdr {SINK_MAC} nud permanent dev eth0"),
                    format!("neigh replace {SINK6} lladdr {SINK_MAC} nud permanent dev eth0"),
                ],
            );
        }
        lab
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// IPv4 address of host `i`.
    pub fn addr(&self, i: usize) -> IpAddr {
        self.check(i);
        format!("10.77.0.{}", i + 10).parse().expect("valid IPv4")
    }

    /// IPv6 address of host `i`.
    pub fn addr6(&self, i: usize) -> IpAddr {
        self.check(i);
        format!("fd77::{}", i + 10).parse().expect("valid IPv6")
    }

    /// Network namespace name of host `i`, for running `ip netns exec` or `ip -n` directly.
    pub fn ns(&self, i: usize) -> &str {
        self.check(i);
        &self.hosts[i]
    }

    /// A command running `program` on host `i`; add arguments, environment and stdio as usual.
    /// The spawned child is `program` itself (`ip netns exec` replaces itself with it), so
    /// killing or waiting on the child acts on `program`.
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.ns(i)]).arg(program);
        // The passphrase of the stores `xf` creates there (as `common::PASSPHRASE`).
        command.env("XF_PASSPHRASE", "correct horse battery staple");
        command
    }

    /// Cuts all traffic on the lab addresses between every host in `a` and every host in `b`,
    /// both ways. Other pairs are untouched, and cuts add up over calls until [`Lab::heal`].
    ///
    /// Packets are silently lost, so connections time out as across a real partition; live
    /// connections resume after `heal` by retransmission. Link-local and multicast traffic is
    /// not cut.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &i in a.iter().chain(b) {
            self.check(i);
        }
        assert!(
            a.iter().all(|i| !b.contains(i)),
            "partition groups overlap: {a:?} and {b:?}"
        );
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        for &from in a.iter().chain(b) {
            let other = if a.contains(&from) { b } else { a };
            let mut lines = Vec::new();
            for &to in other {
                if cuts.insert((from, to)) {
                    lines.push(format!(
                        "route replace {}/32 via {SINK4} dev eth0",
                        self.addr(to)
                    ));
                    lines.push(format!(
                        "route replace {}/128 via {SINK6} dev eth0",
                        self.addr6(to)
                    ));
                }
            }
            ip_batch(&self.hosts[from], &lines);
        }
    }

    /// Restores all traffic cut by [`Lab::partition`].
    pub fn heal(&self) {
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        for from in 0..self.hosts.len() {
            let lines: Vec<String> = cuts
                .iter()
                .filter(|&&(f, _)| f == from)
                .flat_map(|&(_, to)| {
                    [
                        format!("route del {}/32", self.addr(to)),
                        format!("route del {}/128", self.addr6(to)),
                    ]
                })
                .collect();
            ip_batch(&self.hosts[from], &lines);
        }
        cuts.clear();
    }

    fn check(&self, i: usize) {
        assert!(
            i < self.hosts.len(),
            "host {i} out of range: the lab has {} hosts",
            self.hosts.len()
        );
    }
}

impl Drop for Lab {
    /// Kills every process left on the lab and deletes its namespaces; their veths and the
    /// bridge go with them. Never panics, as it also runs while a failed test unwinds.
    fn drop(&mut self) {
        let all: Vec<String> = self.hosts.iter().chain(&self.switch).cloned().collect();
        remove_namespaces(&all);
    }
}

/// Bridge port name of host `i` in the switch namespace (at most 15 bytes, like any interface).
fn port(i: usize) -> String {
    format!("p{i}")
}

/// Removes namespaces left by test processes that no longer exist (killed before their drop
/// ran), so they do not pile up. Namespaces of live processes are left to their owners.
fn remove_stale() {
    let stale: Vec<String> = list_namespaces()
        .into_iter()
        .filter(|name| {
            let pid = name[PREFIX.len()..].split('-').next().unwrap_or("");
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
        })
        .collect();
    remove_namespaces(&stale);
}

/// Namespaces with our prefix, as listed by `ip netns list` ("NAME" or "NAME (id: N)").
fn list_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Kills the processes in `names`, then deletes the namespaces. Failures are reported, not
/// raised: this runs from `Drop`.
fn remove_namespaces(names: &[String]) {
    // A namespace outlives its name while any process is still inside it, and its veths with
    // it, so processes go first; a few rounds catch children forked meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<String> = names.iter().flat_map(|ns| namespace_pids(ns)).collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("network lab: processes {pids:?} survive SIGKILL; deleting anyway");
            break;
        }
        // `sh` rather than a `kill` binary: a shell is present wherever `ip` is usable.
        let _ = Command::new("sh")
            .args(["-c", "kill -KILL \"$@\" 2>/dev/null", "sh"])
            .args(&pids)
            .status();
        thread::sleep(Duration::from_millis(20));
    }
    for ns in names {
        match Command::new("ip").args(["netns", "delete", ns]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "network lab: deleting namespace {ns} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("network lab: deleting namespace {ns} failed: {e}"),
        }
    }
}

/// Pids of processes in namespace `ns`.
fn namespace_pids(ns: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Creates namespace `ns`; the first privileged step, so its failure explains what is needed.
fn add_namespace(ns: &str) {
    match Command::new("ip").args(["netns", "add", ns]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "network lab tests need root and iproute2: `ip netns add {ns}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("network lab tests need root and iproute2: cannot run `ip`: {e}"),
    }
}

/// Runs `ip ARGS` and panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("network lab tests need root and iproute2: `ip`: {e}"));
    assert!(
        out.status.success(),
        "network lab: `ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `lines` as `ip` commands inside namespace `ns`, in one process rather than one each.
fn ip_batch(ns: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("network lab tests need root and iproute2: `ip`: {e}"));
    let mut script = lines.join("\n");
    script.push('\n');
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes());
    let out = child.wait_with_output().expect("waiting for `ip`");
    assert!(
        written.is_ok() && out.status.success(),
        "network lab: `ip -n {ns}` failed on\n{script}{}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
