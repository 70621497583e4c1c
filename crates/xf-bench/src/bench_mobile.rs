//! `xf-bench mobile`: the app's library on a phone's terms, through the binding's `Node` as an
//! app holds it (`xaeroflux-ffi`, called from Rust here, from Swift or Kotlin there).
//!
//! - Open: a store of --events events opened and closed five times (warm page cache).
//! - Memory: after a session of reads (a feed, a query, a thread), the process's resident
//!   memory split into the store's map (`data.mdb`) and everything else.
//! - Threads and wake-ups: the engine's threads (those this node started, told apart from the
//!   peer's by thread id) and their voluntary context switches over --idle-secs seconds in
//!   three states: running with one peer connected, paused, and running with no peer.
//!
//! The peer is a second node in this process on an empty store; it follows a topic none of the
//! events carry, so that anti-entropy rounds between the two move nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use xaeroflux::Store;
use xaeroflux_bench::procfs::status_value;
use xaeroflux_bench::GenParams;
use xaeroflux_ffi::{EventListener, Filter, NetOptions, Node, OpenOptions, XfError};

use crate::bench::{machine, ms, BenchArgs};
use crate::bench_sync::BatchWriter;
use crate::Args;

/// Opens timed.
const OPENS: usize = 5;

/// Counts what a subscription delivers.
#[derive(Default)]
struct Count(AtomicU64);

impl EventListener for Count {
    fn on_event(&self, _event: xaeroflux_ffi::Event) -> Result<(), XfError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The store the app opens: --events generated events, stored on the trusted path.
fn build(dir: &Path, b: &BenchArgs, authors: u32) -> Result<()> {
    let started = Instant::now();
    let store = Store::open(dir)?;
    let mut writer = BatchWriter::new(&store);
    for event in xaeroflux_bench::generate(&GenParams::new(b.events, authors, b.seed)) {
        writer.push(event)?;
    }
    writer.finish()?;
    eprintln!(
        "mobile bench: {} events stored in {:.1} s",
        b.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// This process's thread ids.
fn tids() -> BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A thread's name and voluntary context switches (`None` once it has ended).
fn switches(tid: u32) -> Option<(String, u64)> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let name = status_value(&status, "Name:")?.to_owned();
    let count = status_value(&status, "voluntary_ctxt_switches:")?
        .parse()
        .ok()?;
    Some((name, count))
}

/// The voluntary context switches of `threads` over `window`, per thread (by name and id), and
/// the engine's total. The main thread sleeps through the window: its one switch is its own.
fn wakeups(threads: &BTreeSet<u32>, window: Duration) -> Value {
    let before: BTreeMap<u32, (String, u64)> = threads
        .iter()
        .filter_map(|&t| Some((t, switches(t)?)))
        .collect();
    std::thread::sleep(window);
    let mut per_thread = Vec::new();
    let mut total = 0;
    for (tid, (name, then)) in &before {
        let now = switches(*tid).map_or(*then, |(_, n)| n);
        total += now - then;
        per_thread.push(json!({ "thread": name, "tid": tid, "voluntary_switches": now - then }));
    }
    json!({
        "seconds": window.as_secs_f64(),
        "engine_voluntary_switches": total,
        "threads": per_thread,
    })
}

/// Resident memory of this process: all of it, the store's map, and the rest.
fn memory() -> Result<Value> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").context("reading smaps")?;
    let (mut total, mut map, mut anon) = (0u64, 0u64, 0u64);
    let mut in_map = false;
    let mut anonymous = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            // A mapping's header: range, perms, offset, device, inode, path.
            let path = fields.nth(4);
            in_map = path.is_some_and(|p| p.ends_with("data.mdb"));
            anonymous = path.is_none() || path.is_some_and(|p| p.starts_with('['));
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            total += kib * 1024;
            if in_map {
                map += kib * 1024;
            }
            if anonymous {
                anon += kib * 1024;
            }
        }
    }
    Ok(json!({
        "rss_bytes": total,
        "rss_store_map_bytes": map,
        "rss_outside_map_bytes": total - map,
        "rss_anonymous_bytes": anon,
    }))
}

fn loopback() -> NetOptions {
    NetOptions {
        listen: vec![
            "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
        ],
        mdns: false,
        ..NetOptions::default()
    }
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("xf-bench-mobile-")
        .tempdir()?;
    let path = dir.path().join("a");
    let path_text = path.to_string_lossy().into_owned();
    eprintln!("mobile bench: generating {} events…", b.events);
    build(&path, b, authors)?;

    // Open, warm: the store's pages are in the page cache from the build.
    let mut opens = Vec::new();
    for _ in 0..OPENS {
        let started = Instant::now();
        let node = Node::open(path_text.clone(), OpenOptions::default(), None)?;
        opens.push(ms(started.elapsed()));
        node.close()?;
    }
    opens.sort_by(f64::total_cmp);

    let before = tids();
    let node = Node::open(path_text, OpenOptions::default(), None)?;
    let stats = node.stats()?;
    // Fewer than generated: the generator's deletions remove what they name.
    ensure!(stats.events > 0, "the store holds no event");

    // A session of reads, as an app's first screen makes them.
    let started = Instant::now();
    let follow_lists = node.query(Filter {
        kinds: vec!["follow-list".into()],
        limit: Some(1),
        ..Filter::default()
    })?;
    let follower = follow_lists.first().map(|e| e.author.clone());
    let feed = node.feed(follower, 50, None)?;
    let posts = node.query(Filter {
        kinds: vec!["post".into()],
        limit: Some(50),
        ..Filter::default()
    })?;
    let replies = node.query(Filter {
        kinds: vec!["reply".into()],
        limit: Some(1),
        ..Filter::default()
    })?;
    let thread = match replies.first().and_then(|r| r.reference.clone()) {
        Some(root) => node.thread(root, 500)?.entries.len(),
        None => 0,
    };
    let session = ms(started.elapsed());
    let memory_after_reads = memory()?;

    // The network and a subscription, as a running app has them.
    let seen = Arc::new(Count::default());
    let subscription = node.subscribe(Filter::default(), seen.clone())?;
    node.start_network(loopback(), None)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let address = loop {
        let quic = node
            .listen_addresses(1_000)?
            .into_iter()
            .find(|a| a.contains("/quic-v1/"));
        match quic {
            Some(a) => break a,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => anyhow::bail!("no QUIC listen address within 10 s"),
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    let mine: BTreeSet<u32> = tids().difference(&before).copied().collect();
    let threads_running = json!({
        "process": tids().len(),
        "engine": mine.iter().filter_map(|&t| switches(t).map(|(n, _)| n)).collect::<Vec<_>>(),
    });
    let memory_running = memory()?;

    // A peer: an empty store that follows a topic no event carries.
    let peer_dir = dir.path().join("b");
    let peer = Node::open(
        peer_dir.to_string_lossy().into_owned(),
        OpenOptions::default(),
        None,
    )?;
    peer.start_network(
        NetOptions {
            topics: vec!["xf-bench idle".into()],
            ..loopback()
        },
        None,
    )?;
    peer.sync_with(address, vec!["xf-bench idle".into()], None, None, 30_000)?;
    ensure!(!node.peers()?.is_empty(), "the peer is not connected");
    let window = Duration::from_secs(b.idle_secs.max(1));
    // This node's threads, taken before the peer started its own.
    let engine = mine;
    eprintln!("mobile bench: {window:?} running with a peer…");
    let with_peer = wakeups(&engine, window);
    node.pause()?;
    peer.pause()?;
    // The reports of the pause reach the callback thread just after `pause` returns.
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("mobile bench: {window:?} paused…");
    let paused = wakeups(&engine, window);
    peer.close()?;
    node.resume()?;
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("mobile bench: {window:?} running with no peer…");
    let alone = wakeups(&engine, window);
    let memory_end = memory()?;
    drop(subscription);
    node.close()?;

    let report = json!({
        "bench": "mobile",
        "machine": machine(),
        "events_generated": b.events,
        "store": {
            "events": stats.events,
            "file_bytes": stats.file_bytes,
            "map_bytes": stats.map_bytes,
        },
        "open_ms": { "min": opens[0], "median": opens[OPENS / 2], "max": opens[OPENS - 1] },
        "read_session": {
            "ms": session,
            "feed": feed.len(),
            "posts": posts.len(),
            "thread_entries": thread,
        },
        "memory_after_reads": memory_after_reads,
        "memory_running": memory_running,
        "memory_end": memory_end,
        "threads_running": threads_running,
        "idle_running_with_peer": with_peer,
        "idle_paused": paused,
        "idle_running_alone": alone,
        "events_delivered_to_subscription": seen.0.load(Ordering::Relaxed),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
