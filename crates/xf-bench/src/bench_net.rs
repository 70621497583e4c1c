//! `xf-bench net`: two nodes syncing over libp2p on loopback (QUIC), and the same two nodes
//! over the in-memory transport; the ratio of the two is what the network costs.
//!
//! Workloads (the stores are built as `xf-bench sync` builds them):
//! - bootstrap: A holds N events, B none; B dials A and the on-connect session moves them all;
//! - diff: A and B share most events and each lacks ⌈D/2⌉ or ⌊D/2⌋ of the other's;
//! - at rest: `xf node` on A's data, in a process of its own, idle; then again after it has
//!   served a bootstrap.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crossbeam_channel::RecvTimeoutError;
use serde_json::{json, Value};
use xaeroflux::{MemoryHub, Multiaddr, NetConfig, NetEvent, NetHandle, Store, SyncSummary};
use xaeroflux_bench::procfs::status_value;
use xaeroflux_sync::SyncConfig;

use crate::bench::{machine, ms, ratio, BenchArgs};
use crate::bench_sync::{build, copy_data_file, Workload};
use crate::Args;

const LOOPBACK_QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
/// Long enough that only the on-connect session runs during a measurement.
const ANTI_ENTROPY: Duration = Duration::from_secs(24 * 3600);
/// The node at rest is measured this long after it is up (and again after it has served).
const REST: Duration = Duration::from_secs(3);
/// Starting, listening, and the child's first line.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Events per batch of the verification-only reference (as `xf-bench ingest`).
const VERIFY_BATCH: usize = 1000;
/// How often convergence is checked once the session reported.
const POLL: Duration = Duration::from_millis(1);

#[derive(Clone)]
pub(crate) enum Via {
    Libp2p,
    Memory(MemoryHub),
}

impl Via {
    fn name(&self) -> &'static str {
        match self {
            Via::Libp2p => "libp2p",
            Via::Memory(_) => "memory",
        }
    }
}

pub(crate) struct Running {
    pub(crate) store: Store,
    pub(crate) net: NetHandle,
    /// Where the others dial it, `/p2p/<id>` included.
    pub(crate) addr: Multiaddr,
}

pub(crate) fn config(b: &BenchArgs) -> NetConfig {
    NetConfig {
        listen: vec![LOOPBACK_QUIC.parse().expect("valid multiaddr")],
        mdns: false,
        anti_entropy: ANTI_ENTROPY,
        sync: b
            .frame_bytes
            .map_or_else(SyncConfig::default, SyncConfig::with_frame_bytes),
        ..NetConfig::default()
    }
}

pub(crate) fn start(via: &Via, dir: &Path, seed: u8, cfg: NetConfig) -> Result<Running> {
    let store = Store::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let seed = [seed; 32];
    let (net, want) = match via {
        Via::Libp2p => (NetHandle::start(store.clone(), seed, cfg)?, "/quic-v1"),
        Via::Memory(hub) => {
            let peer = xaeroflux_net::keypair_from_seed(&seed)
                .public()
                .to_peer_id();
            (
                NetHandle::start_memory(store.clone(), hub, peer, cfg)?,
                "/memory/",
            )
        }
    };
    let addr = net
        .wait_listening(want, START_LIMIT)
        .with_context(|| via.name())?;
    Ok(Running { store, net, addr })
}

pub(crate) fn root(store: &Store) -> Result<([u8; 32], u64)> {
    let r = store.read()?.set_root()?;
    Ok((r.fingerprint, r.accum.count))
}

/// One dial of `to` by `from`, timed until `done` holds after `from`'s session reported.
pub(crate) struct Dialed {
    pub(crate) connect: Option<Duration>,
    pub(crate) converged: Duration,
    pub(crate) summary: SyncSummary,
}

pub(crate) fn dial(
    from: &NetHandle,
    to: &Multiaddr,
    limit: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<Dialed> {
    let started = Instant::now();
    let deadline = started + limit;
    from.dial(to.clone())?;
    let mut connect = None;
    let summary = loop {
        match from
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(NetEvent::Connected { .. }) => {
                connect.get_or_insert(started.elapsed());
            }
            Ok(NetEvent::Synced(s)) if s.initiator => break s,
            Ok(NetEvent::SyncFailed {
                initiator: true,
                error,
                ..
            }) => bail!("the session failed: {error}"),
            Ok(NetEvent::DialFailed { error, .. }) => bail!("dialing {to} failed: {error}"),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => bail!("no session finished within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("the network thread stopped"),
        }
    };
    // Received events are flushed before the session reports; the other side may still be
    // committing what it received.
    while !done()? {
        ensure!(
            Instant::now() < deadline,
            "the stores did not converge within {limit:?}"
        );
        std::thread::sleep(POLL);
    }
    Ok(Dialed {
        connect,
        converged: started.elapsed(),
        summary,
    })
}

/// Bytes sent through the loopback interface so far (each packet counts once), if known.
fn loopback_bytes() -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = dev.lines().find(|l| l.trim_start().starts_with("lo:"))?;
    line.split_once(':')?
        .1
        .split_whitespace()
        .nth(8)?
        .parse()
        .ok()
}

/// A generous limit: a session moving `events` must not be cut short on a slow machine.
pub(crate) fn limit_for(events: u64) -> Duration {
    Duration::from_secs(120 + events / 1000)
}

fn bootstrap(via: &Via, a_dir: &Path, b_dir: &Path, n: u64, cfg: &NetConfig) -> Result<Value> {
    eprintln!("net bench: bootstrap over {}…", via.name());
    let a = start(via, a_dir, 0xA1, cfg.clone())?;
    let b = start(via, b_dir, 0xB2, cfg.clone())?;
    let lo_before = loopback_bytes();
    let d = dial(&b.net, &a.addr, limit_for(n), || Ok(root(&b.store)?.1 == n))?;
    let lo_after = loopback_bytes();
    let s = &d.summary.stats;
    ensure!(
        s.events_received == n,
        "B received {} of {n} events",
        s.events_received
    );
    let secs = d.converged.as_secs_f64();
    let loopback = match (via, lo_before, lo_after) {
        (Via::Libp2p, Some(x), Some(y)) => json!(y.saturating_sub(x)),
        _ => Value::Null,
    };
    Ok(json!({
        "seconds": secs,
        "connect_ms": d.connect.map(ms),
        "session_ms": ms(d.summary.elapsed),
        "events": s.events_received,
        "events_per_s": n as f64 / secs,
        "event_bytes": s.event_bytes_received,
        "event_mb_per_s": s.event_bytes_received as f64 / secs / 1e6,
        "session_bytes": s.bytes_sent + s.bytes_received,
        "session_bytes_per_event_byte": (s.bytes_sent + s.bytes_received) as f64 / s.event_bytes_received.max(1) as f64,
        "loopback_interface_bytes": loopback,
        "frames": s.frames_sent + s.frames_received,
        "round_trips": s.round_trips(),
    }))
}

/// The events of the store in `dir`, in their portable form (`id ‖ body`), store order.
fn portable_events(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let store = Store::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut out = Vec::new();
    each_stored(&store, |ev| {
        let mut bytes = Vec::with_capacity(32 + ev.body().len());
        bytes.extend_from_slice(&ev.id().0);
        bytes.extend_from_slice(ev.body());
        out.push(bytes);
    })?;
    Ok(out)
}

/// Calls `f` with every event `store` holds, in store order, from one snapshot read in pages.
pub(crate) fn each_stored(
    store: &Store,
    mut f: impl FnMut(&xaeroflux::EventRef<'_>),
) -> Result<()> {
    let read = store.read()?;
    let mut after = 0;
    loop {
        let page = read.changes_since(after, 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        page.iter().for_each(|(_, ev)| f(ev));
    }
    Ok(())
}

fn diff(via: &Via, a_dir: &Path, b_dir: &Path, want: u64, cfg: &NetConfig) -> Result<Value> {
    eprintln!("net bench: diff over {}…", via.name());
    let a = start(via, a_dir, 0xA1, cfg.clone())?;
    let b = start(via, b_dir, 0xB2, cfg.clone())?;
    let d = dial(&b.net, &a.addr, limit_for(want), || {
        Ok(root(&a.store)? == root(&b.store)?)
    })?;
    let (count, s) = (root(&a.store)?.1, &d.summary.stats);
    ensure!(
        count == want,
        "converged on {count} events, expected {want}"
    );
    Ok(json!({
        "ms": ms(d.converged),
        "connect_ms": d.connect.map(ms),
        "session_ms": ms(d.summary.elapsed),
        "round_trips": s.round_trips(),
        "recon_bytes": s.recon_bytes_sent + s.recon_bytes_received,
        "recon_messages": s.recon_messages_sent + s.recon_messages_received,
        "session_bytes": s.bytes_sent + s.bytes_received,
        "events_a_to_b": s.events_received,
        "events_b_to_a": s.events_sent,
        "have": s.have, "need": s.need,
        "events_after": count,
        "roots_equal": true,
    }))
}

/// Closes a workload's stores and keeps its directory.
pub(crate) fn close(w: Workload) -> (tempfile::TempDir, Duration) {
    (w._dir, w.setup)
}

/// `--diff` and `--empty-peer` as each workload needs them; everything else as given.
pub(crate) fn workload_args(b: &BenchArgs, empty_peer: bool) -> BenchArgs {
    BenchArgs {
        empty_peer,
        ..b.clone()
    }
}

/// Kills the child however the measurement ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Threads and resident memory of a process, from the kernel's own accounting.
pub(crate) fn proc_status(pid: u32) -> Result<Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    let field = |name: &str| -> Option<u64> {
        status_value(&text, name)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let kib = |name: &str| field(name).map(|k| k * 1024);
    Ok(json!({
        "threads": field("Threads:"),
        "rss_bytes": kib("VmRSS:"),
        "rss_file_bytes": kib("RssFile:"),
        "rss_anon_bytes": kib("RssAnon:"),
        "rss_shmem_bytes": kib("RssShmem:"),
    }))
}

/// `xf node` on `dir` as a process of its own, so its threads and memory are its alone.
fn at_rest(dir: &Path, n: u64, cfg: &NetConfig) -> Result<Value> {
    eprintln!("net bench: a node at rest, in its own process…");
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut child = Command::new(exe)
        .arg("--data")
        .arg(dir)
        .args(["node", "--listen", LOOPBACK_QUIC, "--no-mdns"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `xf node`")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let child = ChildGuard(child);
    let pid = child.0.id();
    // Read on a thread of our own: the child must never block on a full pipe.
    let (tx, lines) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_LIMIT;
    let (mut peer, mut addr) = (None, None);
    while addr.is_none() {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("`xf node` did not print its listen address")?;
        if let Some(p) = line.strip_prefix("peer id: ") {
            peer = Some(p.trim().to_owned());
        } else if let Some(a) = line.strip_prefix("listening: ") {
            addr = Some(a.trim().to_owned());
        }
    }
    let peer = peer.context("`xf node` did not print its peer id")?;
    let addr: Multiaddr = format!("{}/p2p/{peer}", addr.expect("loop ends with it"))
        .parse()
        .context("the child's listen address")?;
    std::thread::sleep(REST);
    let idle = proc_status(pid)?;

    eprintln!("net bench: the node at rest serves a bootstrap…");
    let b_dir = tempfile::Builder::new()
        .prefix("xf-bench-net-rest-")
        .tempdir()?;
    let b = start(&Via::Libp2p, b_dir.path(), 0xB3, cfg.clone())?;
    let d = dial(&b.net, &addr, limit_for(n), || Ok(root(&b.store)?.1 == n))?;
    std::thread::sleep(REST);
    let served = proc_status(pid)?;
    drop(child);
    drop(b);
    Ok(json!({
        "rest_s": REST.as_secs_f64(),
        "store_file_bytes": std::fs::metadata(dir.join("data.mdb")).map(|m| m.len()).ok(),
        "idle": idle,
        "after_serving_bootstrap": served,
        "bootstrap_served_s": d.converged.as_secs_f64(),
        "bootstrap_events": d.summary.stats.events_received,
        "note": "rss_anon_bytes is the RSS outside the LMDB map; rss_file_bytes is file-backed \
                 (the LMDB map, and this executable's own pages); the peer stays connected while \
                 the node rests after serving",
    }))
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    let cfg = config(b);
    let n = b.events;
    let only_b = b.diff / 2;
    let hub = || Via::Memory(MemoryHub::new());

    eprintln!("net bench: building the bootstrap stores ({n} events in A, B empty)…");
    let (boot_dir, boot_setup) = close(build(&workload_args(b, true), authors)?);
    let a_dir = boot_dir.path().join("a");
    let boot_libp2p = bootstrap(
        &Via::Libp2p,
        &a_dir,
        &boot_dir.path().join("b-libp2p"),
        n,
        &cfg,
    )?;
    let boot_memory = bootstrap(&hub(), &a_dir, &boot_dir.path().join("b-memory"), n, &cfg)?;
    eprintln!("net bench: verification alone of the same events…");
    let events = portable_events(&a_dir)?;
    ensure!(
        events.len() as u64 == n,
        "A holds {} of {n} events",
        events.len()
    );
    let (verify_only, _) = crate::bench::verify_only(&events, VERIFY_BATCH)?;
    drop(events);
    let rest = at_rest(&a_dir, n, &cfg)?;
    drop(boot_dir);

    eprintln!("net bench: building the diff stores…");
    let (diff_dir, diff_setup) = close(build(&workload_args(b, false), authors)?);
    let (a_mem, b_mem) = (
        diff_dir.path().join("a-memory"),
        diff_dir.path().join("b-memory"),
    );
    for (from, to) in [("a", &a_mem), ("b", &b_mem)] {
        std::fs::create_dir(to)?;
        copy_data_file(&diff_dir.path().join(from), to)?;
    }
    let want = n + only_b;
    let diff_libp2p = diff(
        &Via::Libp2p,
        &diff_dir.path().join("a"),
        &diff_dir.path().join("b"),
        want,
        &cfg,
    )?;
    let diff_memory = diff(&hub(), &a_mem, &b_mem, want, &cfg)?;
    drop(diff_dir);

    let report = json!({
        "machine": machine(),
        "events": n,
        "authors": authors,
        "seed": b.seed,
        "diff": b.diff,
        "only_a": b.diff - only_b,
        "only_b": only_b,
        "transport": { "libp2p": format!("QUIC on loopback ({LOOPBACK_QUIC}), mDNS off"), "memory": "in-process channels" },
        "setup_s": { "bootstrap": boot_setup.as_secs_f64(), "diff": diff_setup.as_secs_f64() },
        "bootstrap": {
            "libp2p": boot_libp2p,
            "memory": boot_memory,
            "libp2p_vs_memory_time": ratio(&boot_libp2p["seconds"], &boot_memory["seconds"]),
            "verify_only_events_per_s": verify_only,
            "libp2p_vs_verify_only": boot_libp2p["events_per_s"].as_f64().map(|r| r / verify_only),
            "memory_vs_verify_only": boot_memory["events_per_s"].as_f64().map(|r| r / verify_only),
        },
        "diff_sync": {
            "libp2p": diff_libp2p,
            "memory": diff_memory,
            "libp2p_vs_memory_time": ratio(&diff_libp2p["ms"], &diff_memory["ms"]),
        },
        "at_rest": rest,
    });
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    Ok(())
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "-".to_owned(),
    }
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |b| format!("{:.1} MiB", b / 1048576.0))
}

fn print_table(r: &Value) {
    let m = &r["machine"];
    println!(
        "net: {} events, diff {} ({} only in A, {} only in B); {} ({} cores)",
        r["events"],
        r["diff"],
        r["only_a"],
        r["only_b"],
        m["cpu"].as_str().unwrap_or("unknown"),
        m["cores"]
    );
    println!(
        "{:<30} {:>14} {:>14} {:>14}",
        "", "libp2p", "memory", "libp2p/memory"
    );
    let row = |name: &str, section: &Value, key: &str| {
        let (l, m) = (&section["libp2p"][key], &section["memory"][key]);
        println!(
            "{name:<30} {:>14} {:>14} {:>14}",
            num(l),
            num(m),
            num(&ratio(l, m))
        );
    };
    let boot = &r["bootstrap"];
    println!("bootstrap (B empty dials A)");
    row("  seconds", boot, "seconds");
    row("  connect ms", boot, "connect_ms");
    row("  events/s", boot, "events_per_s");
    row("  event MB/s", boot, "event_mb_per_s");
    println!(
        "  verification alone: {} events/s; bootstrap / verification alone: libp2p {}, memory {}",
        num(&boot["verify_only_events_per_s"]),
        num(&boot["libp2p_vs_verify_only"]),
        num(&boot["memory_vs_verify_only"])
    );
    row("  event bytes", boot, "event_bytes");
    row("  session bytes", boot, "session_bytes");
    row(
        "  loopback interface bytes",
        boot,
        "loopback_interface_bytes",
    );
    let diff = &r["diff_sync"];
    println!("diff (both roots equal)");
    row("  ms", diff, "ms");
    row("  connect ms", diff, "connect_ms");
    row("  round trips", diff, "round_trips");
    row("  reconciliation bytes", diff, "recon_bytes");
    row("  session bytes", diff, "session_bytes");
    let rest = &r["at_rest"];
    println!(
        "at rest ({} s after start; `xf node` process, store file {}):",
        rest["rest_s"],
        mib(&rest["store_file_bytes"])
    );
    for (name, s) in [
        ("idle", &rest["idle"]),
        (
            "after serving a bootstrap",
            &rest["after_serving_bootstrap"],
        ),
    ] {
        println!(
            "  {name:<26} threads {:>3}, RSS {}, RSS outside the LMDB map {}, file-backed {}",
            num(&s["threads"]),
            mib(&s["rss_bytes"]),
            mib(&s["rss_anon_bytes"]),
            mib(&s["rss_file_bytes"])
        );
    }
    println!(
        "  bootstrap served to another process in {} s",
        num(&rest["bootstrap_served_s"])
    );
}
