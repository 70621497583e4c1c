//! `xf-bench tor`: Tor next to direct QUIC, in one run, on the Tor network that `--tor-torrc`
//! joins (the private one `scripts/tor-testnet` builds, which runs offline).
//!
//! - A holds N events and serves QUIC on loopback and an onion service (Tor as the fallback):
//!   the time from starting its network to a published onion service.
//! - B (empty, Tor for dialing only) dials A's onion address: the time from starting B's network
//!   (its own tor included) to the first completed sync, which moves all N events.
//! - C (empty) dials A's QUIC address: the same bootstrap, directly.
//! - At rest: threads and memory of this process with a node without Tor, then with Tor, and
//!   the resident memory of the `tor` child.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crossbeam_channel::RecvTimeoutError;
use serde_json::{json, Value};
use xaeroflux::tor::TorDaemon;
use xaeroflux::{Multiaddr, NetConfig, NetEvent, NetHandle, Store, TorConfig};

use crate::bench::{machine, ms, ratio, BenchArgs};
use crate::bench_net::{close, config, dial, limit_for, proc_status, root, workload_args, Dialed};
use crate::bench_sync::build;
use crate::Args;

/// How long a tor may take to start, bootstrap and publish.
const TOR_LIMIT: Duration = Duration::from_secs(180);
/// The node at rest is measured this long after it is up.
const REST: Duration = Duration::from_secs(3);

/// A child tor in `dir/tor` that joins the network of `torrc`.
fn tor(dir: &Path, torrc: &Path) -> TorConfig {
    let mut daemon = TorDaemon::new(dir.join("tor"));
    daemon.torrc.push(format!("%include {}", torrc.display()));
    daemon.bootstrap_timeout = TOR_LIMIT;
    TorConfig::new(Arc::new(daemon))
}

/// Waits for a listen address containing `kind`; returns it (with the peer id) and the time.
fn listening(net: &NetHandle, kind: &str, started: Instant) -> Result<(Multiaddr, Duration)> {
    let deadline = started + TOR_LIMIT;
    loop {
        match net
            .events()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(NetEvent::Listening(a)) if a.to_string().contains(kind) => {
                let a = a.with(xaeroflux::Protocol::P2p(net.peer_id()));
                return Ok((a, started.elapsed()));
            }
            Ok(NetEvent::ListenFailed { error, .. }) => bail!("listening failed: {error}"),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => bail!("no {kind} address within {TOR_LIMIT:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("the network thread stopped"),
        }
    }
}

fn bootstrap_json(d: &Dialed, n: u64, since_start: Duration) -> Value {
    let s = &d.summary.stats;
    let secs = d.converged.as_secs_f64();
    json!({
        "first_sync_from_start_ms": ms(since_start),
        "dial_to_converged_ms": ms(d.converged),
        "connect_ms": d.connect.map(ms),
        "session_ms": ms(d.summary.elapsed),
        "events": s.events_received,
        "events_per_s": n as f64 / secs,
        "event_mb_per_s": s.event_bytes_received as f64 / secs / 1e6,
        "round_trips": s.round_trips(),
    })
}

/// This process's threads and memory, and those of its `tor` children.
fn resources() -> Result<Value> {
    let me = std::process::id();
    let tors = xaeroflux_bench::procfs::children_named(me, "tor")
        .into_iter()
        .map(proc_status)
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "process": proc_status(me)?, "tor_children": tors }))
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    let torrc = b.tor_torrc.as_ref().context(
        "--tor-torrc FILE is needed: `scripts/tor-testnet up DIR` writes DIR/client-base.torrc",
    )?;
    let torrc = std::fs::canonicalize(torrc).context("--tor-torrc")?;
    let n = b.events;
    eprintln!("tor bench: building A's store ({n} events)…");
    let (dir, _) = close(build(&workload_args(b, true), authors)?);
    let a_dir = dir.path().join("a");
    let open = |p: &Path| Store::open(p).with_context(|| format!("opening {}", p.display()));

    // At rest without Tor first, for the comparison.
    eprintln!("tor bench: a node without Tor, at rest…");
    let plain = NetHandle::start(open(&a_dir)?, [0xA1; 32], config(b))?;
    listening(&plain, "/quic-v1", Instant::now())?;
    std::thread::sleep(REST);
    let rest_plain = resources()?;
    plain.shutdown();

    eprintln!("tor bench: A with Tor as the fallback, to a published onion service…");
    let mut cfg_a = config(b);
    cfg_a.tor = Some(tor(&dir.path().join("a-tor"), &torrc));
    let started = Instant::now();
    let a_store = open(&a_dir)?;
    let a = NetHandle::start(a_store.clone(), [0xA1; 32], cfg_a)?;
    let mut quic = None;
    let mut onion = None;
    while quic.is_none() || onion.is_none() {
        let left = TOR_LIMIT.saturating_sub(started.elapsed());
        match a.events().recv_timeout(left) {
            Ok(NetEvent::Listening(addr)) => {
                let text = addr.to_string();
                let addr = addr.with(xaeroflux::Protocol::P2p(a.peer_id()));
                if text.contains("/onion3/") {
                    onion = Some((addr, started.elapsed()));
                } else if text.contains("/quic-v1") && quic.is_none() {
                    quic = Some(addr);
                }
            }
            Ok(NetEvent::ListenFailed { error, .. }) => bail!("A's onion service: {error}"),
            Ok(_) => {}
            Err(e) => bail!("A did not listen in time: {e}"),
        }
    }
    let (onion, onion_ready) = onion.unwrap();
    let quic = quic.unwrap();
    std::thread::sleep(REST);
    let rest_tor = resources()?;

    eprintln!("tor bench: B bootstraps {n} events through Tor…");
    let b_dir = dir.path().join("b-tor");
    let b_store = open(&b_dir)?;
    let mut cfg_b = NetConfig {
        listen: Vec::new(),
        ..config(b)
    };
    let mut b_tor = tor(&b_dir, &torrc);
    b_tor.onion_port = None;
    cfg_b.tor = Some(b_tor);
    let b_started = Instant::now();
    let b_net = NetHandle::start(b_store.clone(), [0xB2; 32], cfg_b)?;
    let over_tor = dial(&b_net, &onion, TOR_LIMIT + limit_for(n), || {
        Ok(root(&b_store)?.1 == n)
    })?;
    let tor_first_sync = b_started.elapsed();
    ensure!(
        root(&b_store)? == root(&a_store)?,
        "B did not converge with A"
    );
    drop(b_net);

    eprintln!("tor bench: C bootstraps {n} events over direct QUIC…");
    let c_dir = dir.path().join("c-quic");
    let c_store = open(&c_dir)?;
    let c_started = Instant::now();
    let c_net = NetHandle::start(
        c_store.clone(),
        [0xC3; 32],
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse()?],
            ..config(b)
        },
    )?;
    let direct = dial(&c_net, &quic, limit_for(n), || Ok(root(&c_store)?.1 == n))?;
    let quic_first_sync = c_started.elapsed();
    drop(c_net);
    drop(a);

    let tor_json = bootstrap_json(&over_tor, n, tor_first_sync);
    let quic_json = bootstrap_json(&direct, n, quic_first_sync);
    let report = json!({
        "machine": machine(),
        "events": n,
        "authors": authors,
        "network": "the Tor network of --tor-torrc (each node starts its own tor child)",
        "onion_published_ms": ms(onion_ready),
        "bootstrap": {
            "tor": tor_json,
            "quic": quic_json,
            "tor_vs_quic_time": ratio(&tor_json["dial_to_converged_ms"], &quic_json["dial_to_converged_ms"]),
        },
        "at_rest": { "without_tor": rest_plain, "with_tor": rest_tor },
    });
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.0}"));
    println!(
        "{} events; {}",
        r["events"],
        r["network"].as_str().unwrap_or("")
    );
    println!(
        "onion service published {} ms after the network started",
        f(&r["onion_published_ms"])
    );
    println!("bootstrap      first sync from start   dial to converged   events/s");
    for via in ["tor", "quic"] {
        let v = &r["bootstrap"][via];
        println!(
            "{via:<14} {:>17} ms {:>16} ms {:>10}",
            f(&v["first_sync_from_start_ms"]),
            f(&v["dial_to_converged_ms"]),
            f(&v["events_per_s"])
        );
    }
    println!(
        "Tor / QUIC time: {:.2}",
        r["bootstrap"]["tor_vs_quic_time"]
            .as_f64()
            .unwrap_or(f64::NAN)
    );
    for (name, v) in [
        ("without Tor", &r["at_rest"]["without_tor"]),
        ("with Tor", &r["at_rest"]["with_tor"]),
    ] {
        let tors: Vec<String> = v["tor_children"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{:.1} MiB",
                    t["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
                )
            })
            .collect();
        println!(
            "at rest, {name}: {} threads, {:.1} MiB RSS; tor children: [{}]",
            v["process"]["threads"],
            v["process"]["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            tors.join(", ")
        );
    }
}
