//! `xf-bench`: our store measured next to plain heed and SQLite, same process, same events.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use xaeroflux::{Durability, Filter, Node, PublicKey, Scope, Store};
use xaeroflux_bench::{
    allocations, counting, generate, identity_for, median_ns, percentile, GenParams, PlainHeed,
    Sqlite,
};
use xaeroflux_event::{Draft, Identity, Limits, Verification, Verified, Verifier};

use crate::Args;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub which: Which,
    /// Events in the data set.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Authors (default: events / 1000, at least 100).
    #[arg(long)]
    pub authors: Option<u32>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per ingest batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent publishers (publish).
    #[arg(long, default_value_t = 64)]
    pub publishers: usize,
    /// Events each publisher publishes (publish).
    #[arg(long, default_value_t = 100)]
    pub per_publisher: usize,
    /// Skip the SQLite baseline.
    #[arg(long)]
    pub no_sqlite: bool,
    /// Events held by one store and not the other (sync): ⌈D/2⌉ only in A, which holds
    /// --events in all, and ⌊D/2⌋ only in B.
    #[arg(long, default_value_t = 1000)]
    pub diff: u64,
    /// Frame cap in bytes (sync; default: ours 64 KiB, negentropy's messages unlimited).
    #[arg(long, value_parser = xaeroflux::parse_frame_bytes)]
    pub frame_bytes: Option<usize>,
    /// The second store starts empty: the bulk path (sync; --diff is ignored).
    #[arg(long)]
    pub empty_peer: bool,
    /// Events submitted ahead of their acknowledgement (append): the most one transaction
    /// can gather, as in `Node::ingest_stream`.
    #[arg(long, default_value_t = IN_FLIGHT_EVENTS)]
    pub in_flight: usize,
    /// The store's `batch_events_max`: events folded into one transaction at most (append,
    /// and the stores sync builds).
    #[arg(long, default_value_t = xaeroflux::StoreOptions::default().batch_events_max)]
    pub txn_events: usize,
    /// Also cost each table alone, on a plain heed copy of the store's layout (append).
    #[arg(long)]
    pub tables: bool,
    /// Seeds per link and loss rate (lossy); run i uses seed `--seed` × 1000 + i.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Seconds a lossy run may take before it counts as not converged (lossy).
    #[arg(long, default_value_t = 900)]
    pub limit_secs: u64,
    /// Only this link (lossy; default: both).
    #[arg(long, value_enum)]
    pub link: Option<crate::bench_lossy::LinkName>,
    /// Seconds each idle state is watched for wake-ups (mobile).
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Members of the group (convo).
    #[arg(long, default_value_t = 100)]
    pub members: u32,
    /// The torrc fragment that joins the Tor network to measure on (tor): `scripts/tor-testnet
    /// up` writes one for its private network.
    #[arg(long, value_name = "FILE")]
    pub tor_torrc: Option<std::path::PathBuf>,
    /// Only these loss rates, 0 to 1 (lossy; default: 0, 0.05 and 0.2).
    #[arg(long, value_delimiter = ',', value_parser = xaeroflux_bench::netsim::parse_loss)]
    pub loss: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Verified, fully indexed ingest; store size.
    Ingest,
    /// Point read by id.
    Read,
    /// Feed query: newest 50 events of 100 authors.
    Query,
    /// Durable single-event publish with concurrent publishers.
    Publish,
    /// All of the above on one data set.
    All,
    /// Set reconciliation and transfer between two stores, next to the negentropy reference.
    Sync,
    /// Two nodes syncing over libp2p on loopback, next to the in-memory transport.
    Net,
    /// Two nodes converging over QUIC through the seeded loss-and-delay relay: in order and
    /// reordering, at 0, 5 and 20% loss, --seeds seeds each.
    Lossy,
    /// Verified ingest and trusted append (already verified events through `Store::submit`)
    /// next to the verification-only rate of the same run; with --tables, each table's cost.
    Append,
    /// Encrypted store next to a plain one: verified ingest, point read, feed, size, open time.
    Encrypted,
    /// Private conversations: seal and open per message next to NIP-44, envelope overhead, and
    /// an add, a remove and a key update in a group of --members.
    Convo,
    /// Tor (on the network --tor-torrc joins): time to a reachable onion service, to a first
    /// sync, and a bootstrap of --events over Tor next to the same over direct QUIC; threads
    /// and memory Tor adds.
    Tor,
    /// The app's library through its binding: open time, memory outside the store's map after
    /// a session of reads, threads, and the engine's wake-ups over --idle-secs running with a
    /// peer, paused, and running alone.
    Mobile,
}

/// Milliseconds, fractional.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a / b` of two JSON numbers (null when either is missing or `b` is zero): the ratios the
/// benchmarks print beside their baselines.
pub fn ratio(a: &Value, b: &Value) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => serde_json::json!(a / b),
        _ => Value::Null,
    }
}

/// The machine a report was measured on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    json!({ "cpu": cpu, "cores": threads(), "os": std::env::consts::OS, "arch": std::env::consts::ARCH })
}

pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

struct Stores {
    _dir: tempfile::TempDir,
    ours: Node,
    heed: PlainHeed,
    sqlite: Option<Sqlite>,
}

fn open_stores(no_sqlite: bool) -> Result<Stores> {
    let dir = tempfile::Builder::new().prefix("xf-bench-").tempdir()?;
    let ours = Node::builder().data_dir(dir.path().join("ours")).open()?;
    let heed = PlainHeed::open(dir.path().join("heed"))?;
    let sqlite = if no_sqlite {
        None
    } else {
        Some(Sqlite::open(dir.path().join("sqlite"))?)
    };
    Ok(Stores {
        _dir: dir,
        ours,
        heed,
        sqlite,
    })
}

pub(crate) fn rate(n: u64, ns: u128) -> f64 {
    n as f64 / (ns as f64 / 1e9)
}

/// Verification alone, as a node verifies: a fresh verifier stage (a thread per core, the
/// author-key cache), batches of `batch` with one more at the stage while the oldest is
/// collected, as `Node::ingest_stream` keeps it. The rate is the reference every verified
/// path of the run is compared with; the results come back in input order.
pub(crate) fn verify_only(events: &[Vec<u8>], batch: usize) -> Result<(f64, Vec<Verified>)> {
    let stage = Verifier::per_core();
    let limits = Limits::at(xaeroflux::now_ms());
    // The copies are made before the clock starts: the ingest paths own their input too.
    let chunks: Vec<Vec<Vec<u8>>> = events.chunks(batch.max(1)).map(<[_]>::to_vec).collect();
    let t = Instant::now();
    let mut at_stage: std::collections::VecDeque<Verification> = Default::default();
    let mut out = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        at_stage.push_back(stage.verify(chunk, &limits));
        if at_stage.len() > 2 {
            out.push(at_stage.pop_front().expect("non-empty").wait()?);
        }
    }
    while let Some(check) = at_stage.pop_front() {
        out.push(check.wait()?);
    }
    let verify_only = rate(events.len() as u64, t.elapsed().as_nanos());
    let ok: usize = out
        .iter()
        .map(|r| r.iter().filter(|r| r.is_ok()).count())
        .sum();
    anyhow::ensure!(ok == events.len(), "generated events must verify");
    Ok((verify_only, out))
}

pub fn run(args: &Args, b: &BenchArgs) -> Result<()> {
    let authors = b.authors.unwrap_or(((b.events / 1000) as u32).max(100));
    if b.which == Which::Sync {
        return crate::bench_sync::run(args, b, authors);
    }
    if b.which == Which::Net {
        return crate::bench_net::run(args, b, authors);
    }
    if b.which == Which::Lossy {
        return crate::bench_lossy::run(args, b, authors);
    }
    if b.which == Which::Encrypted {
        return crate::bench_encrypted::run(args, b, authors);
    }
    if b.which == Which::Convo {
        return crate::bench_convo::run(args, b.members);
    }
    if b.which == Which::Tor {
        return crate::bench_tor::run(args, b, authors);
    }
    if b.which == Which::Mobile {
        return crate::bench_mobile::run(args, b, authors);
    }
    let params = GenParams::new(b.events, authors, b.seed);
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());
    report.insert("events".into(), json!(b.events));
    report.insert("authors".into(), json!(authors));
    if b.which == Which::Publish {
        report.insert("publish".into(), publish(b)?);
        return finish(args, report);
    }
    eprintln!("generating {} events from {authors} authors…", b.events);
    let events: Vec<Vec<u8>> = generate(&params).map(|e| e.into_bytes()).collect();
    let raw: u64 = events.iter().map(|e| e.len() as u64).sum();
    report.insert("event_bytes".into(), json!(raw));
    if b.which == Which::Append {
        report.insert("append".into(), append(b, &events)?);
        return finish(args, report);
    }
    let mut stores = open_stores(b.no_sqlite)?;
    let ingest_report = ingest(&mut stores, &events, b.batch, raw)?;
    if matches!(b.which, Which::Ingest | Which::All) {
        report.insert("ingest".into(), ingest_report);
    }
    if matches!(b.which, Which::Read | Which::All) {
        report.insert("read".into(), read(&stores, &events, b.seed)?);
    }
    if matches!(b.which, Which::Query | Which::All) {
        report.insert("query".into(), query(&stores, authors, b.seed)?);
    }
    if b.which == Which::All {
        report.insert("publish".into(), publish(b)?);
    }
    finish(args, report)
}

pub(crate) fn finish(args: &Args, report: serde_json::Map<String, Value>) -> Result<()> {
    let report = Value::Object(report);
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Verified ingest into each store, batches of `batch`; verification uses every core in each.
fn ingest(s: &mut Stores, events: &[Vec<u8>], batch: usize, raw: u64) -> Result<Value> {
    let n = events.len() as u64;
    eprintln!("ingest: verification alone…");
    let (verify_only, verified) = verify_only(events, batch)?;

    eprintln!("ingest: ours…");
    let t = Instant::now();
    let r = s
        .ours
        .ingest_stream(events.iter().cloned().map(Ok), batch, |_| {})?;
    let ours = rate(n, t.elapsed().as_nanos());
    anyhow::ensure!(
        r.stored + r.deleted + r.superseded == n,
        "every event accounted for: {r:?}"
    );
    let stats = s.ours.store().read()?.stats()?;

    eprintln!("ingest: ours, trusted append (already verified)…");
    let trusted_store = Store::open(s._dir.path().join("trusted"))?;
    let verified: Vec<Vec<xaeroflux::VerifiedEvent>> = verified
        .into_iter()
        .map(|c| c.into_iter().filter_map(|r| r.ok()).collect())
        .collect();
    let trusted = trusted_append(&trusted_store, verified, IN_FLIGHT_EVENTS)?;
    let trusted = trusted["events_per_s"].as_f64().unwrap_or(0.0);
    drop(trusted_store);

    // The baselines verify the same way (a stage of their own), then write each batch: what a
    // straightforward engine would do.
    let limits = Limits::at(xaeroflux::now_ms());
    let verified_batches =
        |name: &str, write: &mut dyn FnMut(&[&[u8]]) -> Result<()>| -> Result<f64> {
            eprintln!("ingest: {name}…");
            let stage = Verifier::per_core();
            let t = Instant::now();
            for chunk in events.chunks(batch) {
                let verified = stage.verify(chunk.to_vec(), &limits).wait()?;
                let bytes: Vec<&[u8]> = verified
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|e| e.as_bytes())
                    .collect();
                write(&bytes)?;
            }
            Ok(rate(n, t.elapsed().as_nanos()))
        };
    let heed = verified_batches("plain heed", &mut |b| Ok(s.heed.ingest(b)?))?;
    let heed_bytes = s.heed.disk_bytes();
    let mut out = json!({
        "batch": batch,
        "verify_only_events_per_s": verify_only,
        "ours": { "events_per_s": ours, "used_bytes": stats.used_bytes, "size_ratio": stats.used_bytes as f64 / raw as f64 },
        "plain_heed": { "events_per_s": heed, "disk_bytes": heed_bytes, "size_ratio": heed_bytes as f64 / raw as f64 },
        "ours_vs_plain_heed": ours / heed,
        "ours_vs_verify_only": ours / verify_only,
        "ours_trusted_append_events_per_s": trusted,
    });
    if let Some(sqlite) = s.sqlite.as_mut() {
        let sq = verified_batches("sqlite", &mut |b| Ok(sqlite.ingest(b)?))?;
        let sq_bytes = sqlite.disk_bytes();
        out["sqlite"] = json!({ "events_per_s": sq, "disk_bytes": sq_bytes, "size_ratio": sq_bytes as f64 / raw as f64 });
        out["ours_vs_sqlite"] = json!(ours / sq);
    }
    Ok(out)
}

/// Events the trusted append keeps unacknowledged in `xf-bench ingest`: as many as
/// `Node::ingest_stream` does, so the two rates compare.
const IN_FLIGHT_EVENTS: usize = 32 * 1024;

/// The store options the benches open their stores with: transactions of at most
/// `--txn-events` events.
pub(crate) fn store_options(b: &BenchArgs) -> xaeroflux::StoreOptions {
    xaeroflux::StoreOptions {
        batch_events_max: b.txn_events,
        ..xaeroflux::StoreOptions::default()
    }
}

/// Tenths of a run: the rate of each tenth shows how writing slows as the store grows.
const TENTHS: usize = 10;

/// Verified ingest and trusted append at scale, next to the verification-only rate measured
/// in the same run; with `--tables`, what each table costs alone (see [`append_tables`]).
fn append(b: &BenchArgs, events: &[Vec<u8>]) -> Result<Value> {
    let n = events.len() as u64;
    let options = store_options(b);
    let dir = tempfile::Builder::new()
        .prefix("xf-bench-append-")
        .tempdir()?;

    eprintln!("append: verification alone…");
    let (verify_only, verified) = verify_only(events, b.batch)?;
    let verified: Vec<Vec<xaeroflux::VerifiedEvent>> = verified
        .into_iter()
        .map(|c| c.into_iter().filter_map(|r| r.ok()).collect())
        .collect();

    eprintln!("append: verified ingest…");
    let node = Node::builder()
        .data_dir(dir.path().join("verified"))
        .store_options(options.clone())
        .open()?;
    let t = Instant::now();
    let r = node.ingest_stream(events.iter().cloned().map(Ok), b.batch, |_| {})?;
    let verified_ingest = rate(n, t.elapsed().as_nanos());
    anyhow::ensure!(
        r.stored + r.deleted + r.superseded == n,
        "every event accounted for: {r:?}"
    );
    drop(node);

    eprintln!("append: trusted append (already verified)…");
    let store = Store::open_with(dir.path().join("trusted"), options)?;
    let trusted = trusted_append(&store, verified.clone(), b.in_flight)?;
    let used = store.read()?.stats()?.used_bytes;
    drop(store);

    let mut out = json!({
        "batch": b.batch, "in_flight": b.in_flight, "txn_events": b.txn_events,
        "verify_only_events_per_s": verify_only,
        "verified_ingest_events_per_s": verified_ingest,
        "verified_ingest_vs_verify_only": verified_ingest / verify_only,
        "trusted": trusted,
        "trusted_vs_verify_only": trusted["events_per_s"].as_f64().unwrap_or(0.0) / verify_only,
        "used_bytes": used,
    });
    if b.tables {
        out["tables"] = append_tables(dir.path(), &verified, b.in_flight)?;
    }
    Ok(out)
}

/// Submits the batches with up to `in_flight` events unacknowledged; the rate overall and per
/// tenth, and the bytes written per event.
fn trusted_append(
    store: &Store,
    batches: Vec<Vec<xaeroflux::VerifiedEvent>>,
    in_flight: usize,
) -> Result<Value> {
    let n: usize = batches.iter().map(Vec::len).sum();
    let written = xaeroflux_bench::written_bytes();
    let mut tenths = Vec::with_capacity(TENTHS);
    let mut pending = std::collections::VecDeque::new();
    let (mut queued, mut acked) = (0usize, 0usize);
    let start = Instant::now();
    let (mut lap, mut lap_acked) = (start, 0usize);
    let mut ack = |ticket: xaeroflux::Ticket, len: usize, acked: &mut usize| -> Result<()> {
        ticket.wait()?;
        let tenth = *acked * TENTHS / n.max(1);
        *acked += len;
        // One rate per tenth crossed: what was acknowledged since the last one.
        if *acked * TENTHS / n.max(1) > tenth {
            tenths.push(rate((*acked - lap_acked) as u64, lap.elapsed().as_nanos()));
            (lap, lap_acked) = (Instant::now(), *acked);
        }
        Ok(())
    };
    for batch in batches {
        let len = batch.len();
        pending.push_back((store.submit(batch, Durability::Durable)?, len));
        queued += len;
        while queued - acked > in_flight {
            let (ticket, len) = pending.pop_front().expect("events in flight");
            ack(ticket, len, &mut acked)?;
        }
    }
    for (ticket, len) in pending {
        ack(ticket, len, &mut acked)?;
    }
    let elapsed = start.elapsed().as_nanos();
    let written = written.zip(xaeroflux_bench::written_bytes());
    Ok(json!({
        "events_per_s": rate(n as u64, elapsed),
        "tenths_events_per_s": tenths,
        "written_bytes_per_event": written.map(|(a, b)| (b - a) as f64 / n.max(1) as f64),
    }))
}

/// Each table of the store's layout written alone beside `events` (a plain heed copy, one
/// durable transaction per `txn_events` events), then all of them in the writer's order and
/// sorted per table: microseconds and bytes written per event, and the cost each table adds.
fn append_tables(
    dir: &std::path::Path,
    batches: &[Vec<xaeroflux::VerifiedEvent>],
    txn_events: usize,
) -> Result<Value> {
    use xaeroflux_bench::{Layout, LayoutTable, PutOrder};
    let refs: Vec<xaeroflux::EventRef<'_>> = batches.iter().flatten().map(|e| e.as_ref()).collect();
    let n = refs.len().max(1) as f64;
    let run = |name: &str, tables: &[LayoutTable], order: PutOrder| -> Result<Value> {
        eprintln!("append: layout copy, {name}…");
        let path = dir.join(format!("layout-{name}"));
        let mut layout = Layout::open(&path, tables)?;
        let written = xaeroflux_bench::written_bytes();
        let t = Instant::now();
        let mut last_tenth = 0.0;
        for (i, txn) in refs.chunks(txn_events.max(1)).enumerate() {
            let lap = Instant::now();
            layout.append(txn, order)?;
            if (i + 1) * txn_events >= refs.len() * (TENTHS - 1) / TENTHS {
                last_tenth += lap.elapsed().as_secs_f64();
            }
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n;
        let written = written.zip(xaeroflux_bench::written_bytes());
        let out = json!({
            "us_per_event": us,
            "last_tenth_us_per_event": last_tenth * 1e6 / (n / TENTHS as f64),
            "written_bytes_per_event": written.map(|(a, b)| (b - a) as f64 / n),
            "disk_bytes": layout.disk_bytes()?,
        });
        drop(layout);
        std::fs::remove_dir_all(&path)?;
        Ok(out)
    };
    let mut out = serde_json::Map::new();
    let base = run("events", &[LayoutTable::Events], PutOrder::Event)?;
    for table in &LayoutTable::ALL[1..] {
        let mut r = run(
            table.name(),
            &[LayoutTable::Events, *table],
            PutOrder::Event,
        )?;
        r["adds_us_per_event"] = json!(
            r["us_per_event"].as_f64().unwrap_or(0.0)
                - base["us_per_event"].as_f64().unwrap_or(0.0)
        );
        out.insert(format!("events+{}", table.name()), r);
        let sorted = run(
            &format!("{}-sorted", table.name()),
            &[LayoutTable::Events, *table],
            PutOrder::Sorted,
        )?;
        out.insert(format!("events+{}_sorted", table.name()), sorted);
    }
    out.insert("events".into(), base);
    out.insert(
        "all".into(),
        run("all", &LayoutTable::ALL, PutOrder::Event)?,
    );
    out.insert(
        "all_sorted".into(),
        run("all-sorted", &LayoutTable::ALL, PutOrder::Sorted)?,
    );
    Ok(Value::Object(out))
}

/// A deterministic shuffle of indexes (xorshift), so every store reads the same sequence.
pub(crate) fn sample_indexes(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

pub(crate) const READS_PER_SAMPLE: usize = 1000;
pub(crate) const READ_SAMPLES: usize = 200;

fn read(s: &Stores, events: &[Vec<u8>], seed: u64) -> Result<Value> {
    let ids: Vec<[u8; 32]> = sample_indexes(events.len(), READS_PER_SAMPLE * READ_SAMPLES, seed)
        .into_iter()
        .map(|i| events[i][..32].try_into().expect("32-byte id"))
        .collect();
    // Deleted and replaced events are not stored: read only what is there.
    let txn = s.ours.store().read()?;
    let ids: Vec<[u8; 32]> = ids
        .into_iter()
        .filter(|id| txn.contains(&xaeroflux::EventId(*id)).unwrap_or(false))
        .collect();
    // Sized up front so the measured loop itself allocates nothing.
    let mut samples = Vec::with_capacity(READ_SAMPLES);
    let before = allocations();
    for chunk in ids.chunks(READS_PER_SAMPLE) {
        let t = Instant::now();
        for id in chunk {
            let ev = txn
                .get(xaeroflux::EventId::from_ref(id))?
                .context("stored")?;
            black_box(ev.payload().len());
        }
        samples.push(t.elapsed().as_nanos() as u64 / chunk.len() as u64);
    }
    let ours_allocs = allocations() - before;
    let ours = median_ns(&mut samples);
    drop(txn);

    let rtxn = s.heed.read_txn()?;
    let mut samples = Vec::with_capacity(READ_SAMPLES);
    let before = allocations();
    for chunk in ids.chunks(READS_PER_SAMPLE) {
        let t = Instant::now();
        for id in chunk {
            black_box(s.heed.get_in(&rtxn, id)?.context("stored")?.len());
        }
        samples.push(t.elapsed().as_nanos() as u64 / chunk.len() as u64);
    }
    let heed_allocs = allocations() - before;
    let heed = median_ns(&mut samples);
    drop(rtxn);
    let mut out = json!({
        "reads": ids.len(),
        "allocation_counting": counting(),
        "ours": { "median_ns": ours, "allocations": ours_allocs },
        "plain_heed": { "median_ns": heed, "allocations": heed_allocs },
        "ours_vs_plain_heed_time": ours as f64 / heed as f64,
    });
    if let Some(sqlite) = &s.sqlite {
        let mut samples = Vec::new();
        for chunk in ids.chunks(READS_PER_SAMPLE).take(20) {
            let t = Instant::now();
            for id in chunk {
                black_box(sqlite.get_with(id, |b| b.len())?);
            }
            samples.push(t.elapsed().as_nanos() as u64 / chunk.len() as u64);
        }
        let sq = median_ns(&mut samples);
        out["sqlite"] = json!({ "median_ns": sq });
        out["ours_vs_sqlite_time"] = json!(ours as f64 / sq as f64);
    }
    Ok(out)
}

pub(crate) const FEED_AUTHORS: usize = 100;
pub(crate) const FEED_LIMIT: usize = 50;
pub(crate) const FEED_SAMPLES: usize = 200;

/// The author sets the feed queries ask for: [`FEED_SAMPLES`] sets of up to [`FEED_AUTHORS`]
/// distinct authors, the same for every store of a run.
pub(crate) fn feed_author_sets(authors: u32, seed: u64) -> Vec<Vec<PublicKey>> {
    (0..FEED_SAMPLES)
        .map(|i| {
            let mut picks = sample_indexes(authors as usize, FEED_AUTHORS * 2, seed + i as u64);
            picks.sort_unstable();
            picks.dedup();
            picks.truncate(FEED_AUTHORS);
            picks
                .into_iter()
                .map(|a| identity_for(seed, a as u32).public_key())
                .collect()
        })
        .collect()
}

fn query(s: &Stores, authors: u32, seed: u64) -> Result<Value> {
    let sets = feed_author_sets(authors, seed);
    let txn = s.ours.store().read()?;
    let mut ours = Vec::new();
    let mut ours_feed = Vec::new();
    for set in &sets {
        let filter = Filter {
            limit: Some(FEED_LIMIT),
            scope: Scope {
                authors: set.clone(),
                ..Scope::all()
            },
            ..Filter::default()
        };
        let t = Instant::now();
        let got = txn.query(&filter)?;
        ours.push(t.elapsed().as_nanos() as u64);
        black_box(got.len());
        let t = Instant::now();
        black_box(txn.feed_of(set, FEED_LIMIT, None)?.len());
        ours_feed.push(t.elapsed().as_nanos() as u64);
    }
    // Same answers as the baseline, or the comparison means nothing.
    let check_set: Vec<[u8; 32]> = sets[0].iter().map(|p| p.0).collect();
    let ours_ids: Vec<[u8; 32]> = txn
        .query(&Filter {
            limit: Some(FEED_LIMIT),
            scope: Scope {
                authors: sets[0].clone(),
                ..Scope::all()
            },
            ..Filter::default()
        })?
        .iter()
        .map(|e| e.id().0)
        .collect();
    drop(txn);
    let heed_ids = s.heed.feed(&check_set, FEED_LIMIT)?;
    anyhow::ensure!(
        ours_ids.len() == heed_ids.len(),
        "feed sizes differ: {} vs {}",
        ours_ids.len(),
        heed_ids.len()
    );
    let mut heed = Vec::new();
    for set in &sets {
        let keys: Vec<[u8; 32]> = set.iter().map(|p| p.0).collect();
        let t = Instant::now();
        black_box(s.heed.feed(&keys, FEED_LIMIT)?.len());
        heed.push(t.elapsed().as_nanos() as u64);
    }
    let (o, h) = (median_ns(&mut ours), median_ns(&mut heed));
    let mut out = json!({
        "authors_per_feed": FEED_AUTHORS, "limit": FEED_LIMIT, "samples": FEED_SAMPLES,
        "ours": { "median_us": o as f64 / 1e3, "p99_us": percentile(&mut ours, 99.0) as f64 / 1e3,
                  "posts_and_replies_median_us": median_ns(&mut ours_feed) as f64 / 1e3 },
        "plain_heed": { "median_us": h as f64 / 1e3, "p99_us": percentile(&mut heed, 99.0) as f64 / 1e3 },
        "ours_vs_plain_heed_time": o as f64 / h as f64,
    });
    if let Some(sqlite) = &s.sqlite {
        let mut sq = Vec::new();
        for set in sets.iter().take(50) {
            let keys: Vec<[u8; 32]> = set.iter().map(|p| p.0).collect();
            let t = Instant::now();
            black_box(sqlite.feed(&keys, FEED_LIMIT)?.len());
            sq.push(t.elapsed().as_nanos() as u64);
        }
        let q = median_ns(&mut sq);
        out["sqlite"] = json!({ "median_us": q as f64 / 1e3 });
        out["ours_vs_sqlite_time"] = json!(o as f64 / q as f64);
    }
    Ok(out)
}

/// Durable single-event publishes from concurrent threads: ours (group commit) next to plain
/// heed committing (and fsyncing) once per event.
fn publish(b: &BenchArgs) -> Result<Value> {
    let dir = tempfile::Builder::new().prefix("xf-bench-pub-").tempdir()?;
    let store = Store::open(dir.path().join("ours"))?;
    let heed = Mutex::new(PlainHeed::open(dir.path().join("heed"))?);
    let people: Vec<Identity> = (0..b.publishers)
        .map(|i| identity_for(b.seed ^ 0xABCD, i as u32))
        .collect();
    let total = (b.publishers * b.per_publisher) as u64;
    let base = xaeroflux::now_ms() - 86_400_000;
    eprintln!(
        "publish: {} publishers × {} durable events…",
        b.publishers, b.per_publisher
    );
    let run = |write: &(dyn Fn(xaeroflux::VerifiedEvent) -> Result<()> + Sync)| -> Result<f64> {
        let t = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = people
                .iter()
                .enumerate()
                .map(|(p, who)| {
                    scope.spawn(move || -> Result<()> {
                        for i in 0..b.per_publisher {
                            let at = base + (i * b.publishers + p) as u64;
                            write(who.sign(&Draft::post(at, &format!("publisher {p} event {i}"))))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
            }
            Ok(())
        })?;
        Ok(rate(total, t.elapsed().as_nanos()))
    };
    let ours = run(&|ev| {
        store.submit(vec![ev], Durability::Durable)?.wait()?;
        Ok(())
    })?;
    let plain = run(&|ev| {
        Ok(heed
            .lock()
            .expect("not poisoned")
            .ingest(&[ev.as_bytes()])?)
    })?;
    anyhow::ensure!(
        store.read()?.stats()?.events == total,
        "every publish stored"
    );
    Ok(json!({
        "publishers": b.publishers, "events": total,
        "ours": { "events_per_s": ours },
        "plain_heed_commit_per_event": { "events_per_s": plain },
        "ours_vs_plain_heed": ours / plain,
    }))
}
