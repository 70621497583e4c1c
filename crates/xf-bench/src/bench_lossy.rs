//! `xf-bench lossy`: two nodes converging through the seeded loss-and-delay relay of
//! `xf-netsim`, over QUIC on loopback. A holds `--events`, B a tenth as many others; B dials A
//! through the relay and both run as nodes do (anti-entropy, retries). Links: in order (a
//! fixed delay per datagram) and reordering (a delay drawn per datagram, so datagrams overtake
//! each other), each at 0, 5 and 20% loss, `--seeds` seeds each. A run ends when both roots are
//! equal, or counts as not converged at `--limit-secs`. Reported per run: the time, the bytes
//! the relay delivered (its goodput over the run), the sessions that failed and were retried.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xaeroflux::{Multiaddr, NetConfig, NetEvent, Store};
use xaeroflux_bench::{generate_vec, GenParams};

use crate::bench::{machine, BenchArgs};
use crate::bench_net::{each_stored, root, start, Via};
use crate::bench_sync::copy_data_file;
use crate::Args;
use xaeroflux_bench::netsim::{self, NetsimArgs};

/// The links measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkName {
    /// A fixed delay: datagrams keep their order.
    InOrder,
    /// A delay drawn per datagram: datagrams overtake each other.
    Reordering,
}

/// One shape of link: the delay every datagram takes, and the extra drawn per datagram.
struct Link {
    which: LinkName,
    name: &'static str,
    delay_ms: u64,
    jitter_ms: u64,
}

/// The same mean one-way delay (150 ms), once in order and once reordered: 100–200 ms drawn
/// per datagram, so a datagram overtakes those sent up to 100 ms before it.
const LINKS: [Link; 2] = [
    Link {
        which: LinkName::InOrder,
        name: "in_order",
        delay_ms: 150,
        jitter_ms: 0,
    },
    Link {
        which: LinkName::Reordering,
        name: "reordering",
        delay_ms: 100,
        jitter_ms: 100,
    },
];
const LOSSES: [f64; 3] = [0.0, 0.05, 0.20];
/// How often the roots are compared.
const POLL: Duration = Duration::from_millis(50);

/// The nodes' configuration: a node's defaults without mDNS. A listens on loopback QUIC and
/// does not announce it; B listens on nothing (as behind a NAT). On one host either could
/// otherwise learn the other's own address from identify and redial it around the relay once
/// a connection through it fails.
fn config(listens: bool) -> NetConfig {
    NetConfig {
        listen: if listens {
            vec!["/ip4/127.0.0.1/udp/0/quic-v1"
                .parse()
                .expect("valid multiaddr")]
        } else {
            Vec::new()
        },
        mdns: false,
        announce_listen_addrs: false,
        ..NetConfig::default()
    }
}

/// The UDP port of a QUIC listen address.
fn udp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        xaeroflux_net::Protocol::Udp(port) => Some(port),
        _ => None,
    })
}

/// Bytes of the bodies of the events a store holds: what the sync protocol sends of them (the
/// receiver recomputes the ids).
fn body_bytes(store: &Store) -> Result<u64> {
    let mut sum = 0;
    each_stored(store, |ev| sum += ev.body().len() as u64)?;
    Ok(sum)
}

/// Builds A's and B's stores once; each run copies them. Returns the bytes of their bodies.
fn build(dir: &Path, n: u64, extra: u64, authors: u32, seed: u64) -> Result<(u64, u64)> {
    eprintln!("lossy bench: generating {n} + {extra} events…");
    let mut events = generate_vec(&GenParams::new(n + extra, authors, seed));
    let theirs = events.split_off(usize::try_from(n).context("--events")?);
    let mut bytes = Vec::new();
    for (name, part) in [("a", events), ("b", theirs)] {
        let store = Store::open(dir.join(name))?;
        for chunk in part.chunks(1000) {
            store.ingest(chunk.to_vec())?;
        }
        bytes.push(body_bytes(&store)?);
    }
    Ok((bytes[0], bytes[1]))
}

/// One run: fresh copies of both stores, a relay in front of A, B dialing A through it.
fn one(
    base: &Path,
    link: &Link,
    loss: f64,
    seed: u64,
    limit: Duration,
    held: (u64, u64),
) -> Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix("xf-bench-lossy-")
        .tempdir()?;
    for name in ["a", "b"] {
        std::fs::create_dir(dir.path().join(name))?;
        copy_data_file(&base.join(name), &dir.path().join(name))?;
    }
    let a = start(&Via::Libp2p, &dir.path().join("a"), 0xA1, config(true))?;
    let port = udp_port(&a.addr).context("A's QUIC port")?;
    let relay = netsim::spawn(&NetsimArgs {
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        target: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        udp: true,
        tcp: false,
        loss,
        delay_ms: link.delay_ms,
        jitter_ms: link.jitter_ms,
        seed: Some(seed),
        duration_secs: None,
    })?;
    let via = relay.udp_addr().context("the relay's UDP address")?;
    let b = start_dialer(&dir.path().join("b"), 0xB2, config(false))?;
    let to: Multiaddr = format!(
        "/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}",
        via.port(),
        a.net.peer_id()
    )
    .parse()?;
    let started = Instant::now();
    b.net.dial(to)?;
    let (mut failed, mut synced) = (0u64, 0u64);
    // Why sessions failed: the first few distinct reasons.
    let mut reasons: Vec<String> = Vec::new();
    let converged = loop {
        for ev in b.net.events().try_iter() {
            match ev {
                NetEvent::SyncFailed { error, .. } => {
                    failed += 1;
                    if reasons.len() < 4 && !reasons.contains(&error) {
                        reasons.push(error);
                    }
                }
                NetEvent::Synced(_) => synced += 1,
                _ => {}
            }
        }
        if root(&a.store)? == root(&b.store)? {
            break true;
        }
        if started.elapsed() > limit {
            break false;
        }
        std::thread::sleep(POLL);
    };
    let secs = started.elapsed().as_secs_f64();
    let stats = relay.stop();
    let events = root(&b.store)?.1;
    // What moved, either way: the union less what each side held.
    let union = body_bytes(&b.store)?;
    let moving = (union - held.1.min(union)) + (union - held.0.min(union));
    drop((a, b));
    Ok(json!({
        "seed": seed,
        "converged": converged,
        "seconds": secs,
        "events": events,
        "relay_bytes": stats.udp_bytes,
        "relay_datagrams": stats.udp_forwarded,
        "relay_dropped": stats.udp_dropped,
        "relay_overflow": stats.udp_overflow,
        "relay_goodput_bytes_per_s": stats.udp_bytes as f64 / secs,
        // Every event that moved crossed the relay: nothing went around it.
        "through_relay": stats.udp_bytes >= moving,
        "event_bytes_moving": moving,
        "sessions_synced": synced,
        "sessions_failed": failed,
        "failure_reasons": reasons,
    }))
}

/// A node that listens on nothing: it only dials.
fn start_dialer(dir: &Path, seed: u8, cfg: NetConfig) -> Result<Dialer> {
    let store = Store::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let net = xaeroflux::NetHandle::start(store.clone(), [seed; 32], cfg)?;
    Ok(Dialer { store, net })
}

struct Dialer {
    store: Store,
    net: xaeroflux::NetHandle,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    // The nodes' logs, for a run that needs explaining (`XF_LOG=debug`).
    if std::env::var_os("XF_LOG").is_some() {
        crate::init_logging();
    }
    if b.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let n = b.events;
    let extra = (n / 10).max(1);
    let base = tempfile::Builder::new()
        .prefix("xf-bench-lossy-base-")
        .tempdir()?;
    let held = build(base.path(), n, extra, authors, b.seed)?;
    let limit = Duration::from_secs(b.limit_secs);
    let losses = if b.loss.is_empty() {
        LOSSES.to_vec()
    } else {
        b.loss.clone()
    };
    let mut links = serde_json::Map::new();
    for link in LINKS.iter().filter(|l| b.link.is_none_or(|w| w == l.which)) {
        let mut by_loss = serde_json::Map::new();
        for &loss in &losses {
            let mut runs = Vec::new();
            for i in 0..b.seeds {
                let seed = b.seed.wrapping_mul(1000).wrapping_add(i);
                eprintln!(
                    "lossy bench: {} link, {:.0}% loss, seed {seed} (replay: --seed {} picks it)…",
                    link.name,
                    loss * 100.0,
                    b.seed
                );
                runs.push(one(base.path(), link, loss, seed, limit, held)?);
            }
            let secs: Vec<f64> = runs.iter().filter_map(|r| r["seconds"].as_f64()).collect();
            let goodput: Vec<f64> = runs
                .iter()
                .filter_map(|r| r["relay_goodput_bytes_per_s"].as_f64())
                .collect();
            by_loss.insert(
                format!("{:.0}", loss * 100.0),
                json!({
                    "loss": loss,
                    "converged": runs.iter().filter(|r| r["converged"] == true).count(),
                    "median_seconds": median(secs.clone()),
                    "max_seconds": secs.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
                    "median_relay_goodput_bytes_per_s": median(goodput),
                    "runs": runs,
                }),
            );
        }
        links.insert(
            link.name.into(),
            json!({
                "delay_ms": link.delay_ms,
                "jitter_ms": link.jitter_ms,
                "by_loss_percent": by_loss,
            }),
        );
    }
    let mut reordering_vs_in_order = serde_json::Map::new();
    for &loss in &losses {
        let key = format!("{:.0}", loss * 100.0);
        let t = |link: &str| {
            links
                .get(link)
                .and_then(|l| l["by_loss_percent"][&key]["median_seconds"].as_f64())
        };
        let ratio = match (t("reordering"), t("in_order")) {
            (Some(r), Some(o)) if o > 0.0 => json!(r / o),
            _ => Value::Null,
        };
        reordering_vs_in_order.insert(key, ratio);
    }
    let report = json!({
        "machine": machine(),
        "events_a": n,
        "events_b": extra,
        "authors": authors,
        "seed": b.seed,
        "seeds": b.seeds,
        "limit_s": b.limit_secs,
        "transport": "QUIC on loopback through the relay (UDP), mDNS off, anti-entropy 30 s",
        "links": links,
        "reordering_vs_in_order_median_time": reordering_vs_in_order,
    });
    if args.json {
        println!("{report}");
    } else {
        print_table(&report, &losses);
    }
    Ok(())
}

fn print_table(r: &Value, losses: &[f64]) {
    println!(
        "lossy: {} events in A, {} in B, {} seeds per cell, limit {} s",
        r["events_a"], r["events_b"], r["seeds"], r["limit_s"]
    );
    println!(
        "{:<12} {:>6} {:>10} {:>12} {:>12} {:>16}",
        "link", "loss", "converged", "median s", "max s", "relay KB/s"
    );
    for link in ["in_order", "reordering"] {
        if r["links"][link].is_null() {
            continue;
        }
        for &loss in losses {
            let c = &r["links"][link]["by_loss_percent"][format!("{:.0}", loss * 100.0)];
            let num = |v: &Value, scale: f64| {
                v.as_f64()
                    .map_or_else(|| "-".to_owned(), |x| format!("{:.1}", x / scale))
            };
            println!(
                "{link:<12} {:>5.0}% {:>7}/{:<2} {:>12} {:>12} {:>16}",
                loss * 100.0,
                c["converged"],
                r["seeds"],
                num(&c["median_seconds"], 1.0),
                num(&c["max_seconds"], 1.0),
                num(&c["median_relay_goodput_bytes_per_s"], 1000.0)
            );
        }
    }
    println!(
        "reordering / in order (median time): {}",
        r["reordering_vs_in_order_median_time"]
    );
}
