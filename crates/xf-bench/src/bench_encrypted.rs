//! `xf-bench encrypted`: an encrypted store next to a plain one holding the same generated
//! events, in one process.
//!
//! The events are generated once. The plain store is measured first, then the encrypted one,
//! each in its own temporary directory and each whole before the next: verified, fully indexed
//! ingest through `Node::ingest_stream`; the store's size; point reads of the same sampled ids;
//! the same feed queries; and the time to reopen the closed store. The encrypted store is given
//! its data key directly, so its open time holds no key derivation; the passphrase's
//! derivation (Argon2id) is timed on its own, once. Ratios are encrypted / plain.
//!
//! On an encrypted store every value a read transaction returns is decrypted into memory the
//! transaction keeps until it ends, so no transaction here outlives one sample: a new one per
//! chunk of reads, per read, or per feed query.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};
use xaeroflux::{
    DataKey, EventId, KdfParams, KeyProvider, Node, Passphrase, PublicKey, Store, StoreOptions,
};
use xaeroflux_bench::{allocations, counting, generate, median_ns, percentile, GenParams};
use zeroize::Zeroizing;

use crate::bench::{
    feed_author_sets, finish, machine, ms, rate, ratio, sample_indexes, store_options, BenchArgs,
    FEED_AUTHORS, FEED_LIMIT, FEED_SAMPLES, READS_PER_SAMPLE, READ_SAMPLES,
};
use crate::Args;

/// Opens of each closed store; the median is reported.
const OPENS: usize = 5;
/// The passphrase the key-derivation measurement wraps and unwraps the data key with.
const PASSPHRASE: &str = "bench";

/// What one store's measurements found, beside its report: what the other store must match.
struct Measured {
    report: Value,
    /// The sampled ids the store holds, in reading order.
    ids: Vec<[u8; 32]>,
    /// Events each feed query returned.
    feed_counts: Vec<usize>,
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    ensure!(b.events > 0, "--events must be at least 1");
    eprintln!(
        "encrypted bench: generating {} events from {authors} authors…",
        b.events
    );
    let events: Vec<Vec<u8>> = generate(&GenParams::new(b.events, authors, b.seed))
        .map(|e| e.into_bytes())
        .collect();
    let raw: u64 = events.iter().map(|e| e.len() as u64).sum();
    let sample: Vec<[u8; 32]> =
        sample_indexes(events.len(), READS_PER_SAMPLE * READ_SAMPLES, b.seed)
            .into_iter()
            .map(|i| events[i][..32].try_into().expect("32-byte id"))
            .collect();
    let sets = feed_author_sets(authors, b.seed);
    let key = DataKey::generate().map_err(|e| anyhow!("no randomness for the data key: {e}"))?;

    let plain = measure("plain", b, &events, raw, None, &sample, &sets)?;
    let encrypted = measure(
        "encrypted",
        b,
        &events,
        raw,
        Some(key.clone()),
        &sample,
        &sets,
    )?;
    // The same reads and the same answers, or the comparison means nothing.
    ensure!(
        plain.ids == encrypted.ids,
        "the stores hold different sampled ids: {} plain, {} encrypted",
        plain.ids.len(),
        encrypted.ids.len()
    );
    ensure!(
        plain.report["size"]["events"] == encrypted.report["size"]["events"],
        "the stores hold different numbers of events: {} plain, {} encrypted",
        plain.report["size"]["events"],
        encrypted.report["size"]["events"]
    );
    if let Some(i) = (0..sets.len()).find(|&i| plain.feed_counts[i] != encrypted.feed_counts[i]) {
        anyhow::bail!(
            "feed query {i} returned {} events from the plain store and {} from the encrypted one",
            plain.feed_counts[i],
            encrypted.feed_counts[i]
        );
    }

    eprintln!("encrypted bench: passphrase key derivation…");
    let (plain, mut encrypted) = (plain.report, encrypted.report);
    let kdf = kdf(&key)?;
    encrypted["kdf_ms"] = kdf["unwrap_ms"].clone();
    encrypted["kdf"] = kdf;

    let ratios = ratios(&plain, &encrypted);
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());
    report.insert("events".into(), json!(b.events));
    report.insert("authors".into(), json!(authors));
    report.insert("seed".into(), json!(b.seed));
    report.insert("event_bytes".into(), json!(raw));
    report.insert("batch".into(), json!(b.batch));
    report.insert("plain".into(), plain);
    report.insert("encrypted".into(), encrypted);
    report.insert("ratios".into(), ratios);
    let report = Value::Object(report);
    print_summary(&report);
    match report {
        Value::Object(map) => finish(args, map),
        _ => unreachable!("the report is an object"),
    }
}

/// Ingest, size, point reads, feed queries and open time of one store, in its own directory.
fn measure(
    name: &str,
    b: &BenchArgs,
    events: &[Vec<u8>],
    raw: u64,
    key: Option<DataKey>,
    sample: &[[u8; 32]],
    sets: &[Vec<PublicKey>],
) -> Result<Measured> {
    let encrypted = key.is_some();
    let options = StoreOptions {
        key,
        ..store_options(b)
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("xf-bench-{name}-"))
        .tempdir()?;
    let path = dir.path().join("store");
    let node = Node::builder()
        .data_dir(&path)
        .store_options(options.clone())
        .open()?;
    ensure!(
        node.store().is_encrypted() == encrypted,
        "the {name} store opened with is_encrypted() = {}",
        node.store().is_encrypted()
    );

    eprintln!("encrypted bench: {name}: verified ingest…");
    let n = events.len() as u64;
    let t = Instant::now();
    let r = node.ingest_stream(events.iter().cloned().map(Ok), b.batch, |_| {})?;
    let ingest = rate(n, t.elapsed().as_nanos());
    ensure!(
        r.stored + r.deleted + r.superseded == n,
        "every event accounted for: {r:?}"
    );
    let stats = node.store().read()?.stats()?;

    eprintln!("encrypted bench: {name}: point reads…");
    let (ids, read) = point_reads(node.store(), sample)?;
    eprintln!("encrypted bench: {name}: feed queries…");
    let (feed_counts, feed) = feed_queries(node.store(), sets)?;

    node.close()?;
    let file_bytes = std::fs::metadata(path.join("data.mdb"))
        .context("the store's data.mdb")?
        .len();
    eprintln!("encrypted bench: {name}: reopening the closed store…");
    let open = open_time(&path, &options, encrypted)?;
    drop(dir);

    let report = json!({
        "is_encrypted": encrypted,
        "ingest": {
            "events_per_s": ingest,
            "stored": r.stored, "deleted": r.deleted, "superseded": r.superseded,
        },
        "size": {
            "events": stats.events,
            "data_mdb_bytes": file_bytes,
            "used_bytes": stats.used_bytes,
            "used_vs_event_bytes": stats.used_bytes as f64 / raw.max(1) as f64,
        },
        "read": read,
        "feed": feed,
        "open": open,
    });
    Ok(Measured {
        report,
        ids,
        feed_counts,
    })
}

/// Point reads by id of the sampled ids the store holds (those deleted or replaced are not
/// stored and are skipped), two ways: [`READS_PER_SAMPLE`] reads inside one read transaction,
/// a new one per sample (its end timed with it, as the encrypted store frees the decrypted
/// values then); and a read transaction per read, as an app reading through a `Node` does.
/// Median nanoseconds per read over the samples of each.
fn point_reads(store: &Store, sample: &[[u8; 32]]) -> Result<(Vec<[u8; 32]>, Value)> {
    let txn = store.read()?;
    let ids: Vec<[u8; 32]> = sample
        .iter()
        .filter(|id| txn.contains(EventId::from_ref(id)).unwrap_or(false))
        .copied()
        .collect();
    drop(txn);
    ensure!(!ids.is_empty(), "none of the sampled ids is stored");
    let reads = ids.len() as u64;

    // Sized up front so the measured loops allocate only what reading does.
    let mut samples = Vec::with_capacity(READ_SAMPLES);
    let before = allocations();
    for chunk in ids.chunks(READS_PER_SAMPLE) {
        let txn = store.read()?;
        let t = Instant::now();
        for id in chunk {
            let ev = txn.get(EventId::from_ref(id))?.context("stored")?;
            black_box(ev.payload().len());
        }
        drop(txn);
        samples.push(t.elapsed().as_nanos() as u64 / chunk.len() as u64);
    }
    let chunk_allocs = allocations() - before;
    let chunk_ns = median_ns(&mut samples);

    let mut samples = Vec::with_capacity(READ_SAMPLES);
    let before = allocations();
    for chunk in ids.chunks(READS_PER_SAMPLE) {
        let t = Instant::now();
        for id in chunk {
            let txn = store.read()?;
            let ev = txn.get(EventId::from_ref(id))?.context("stored")?;
            black_box(ev.payload().len());
        }
        samples.push(t.elapsed().as_nanos() as u64 / chunk.len() as u64);
    }
    let per_read_allocs = allocations() - before;
    let per_read_ns = median_ns(&mut samples);

    let report = json!({
        "reads": reads,
        "allocation_counting": counting(),
        "txn_per_chunk": {
            "reads_per_txn": READS_PER_SAMPLE,
            "median_ns": chunk_ns,
            "allocations_per_read": chunk_allocs as f64 / reads as f64,
        },
        "txn_per_read": {
            "median_ns": per_read_ns,
            "allocations_per_read": per_read_allocs as f64 / reads as f64,
        },
    });
    Ok((ids, report))
}

/// The newest posts and replies of each author set (`ReadTxn::feed_of`), a new read
/// transaction per query, its start and end timed with the query. The events each query
/// returned, and the median and p99 in microseconds.
fn feed_queries(store: &Store, sets: &[Vec<PublicKey>]) -> Result<(Vec<usize>, Value)> {
    let mut times = Vec::with_capacity(sets.len());
    let mut counts = Vec::with_capacity(sets.len());
    for set in sets {
        let t = Instant::now();
        let txn = store.read()?;
        let got = txn.feed_of(set, FEED_LIMIT, None)?;
        let len = black_box(got.len());
        drop(got);
        drop(txn);
        times.push(t.elapsed().as_nanos() as u64);
        counts.push(len);
    }
    let report = json!({
        "authors_per_feed": FEED_AUTHORS, "limit": FEED_LIMIT, "queries": FEED_SAMPLES,
        "events_returned": counts.iter().sum::<usize>(),
        "median_us": median_ns(&mut times) as f64 / 1e3,
        "p99_us": percentile(&mut times, 99.0) as f64 / 1e3,
    });
    Ok((counts, report))
}

/// Opens the closed store [`OPENS`] times (`Store::open_with`, with its key if it has one)
/// and reads its set root in a first read transaction; the median in milliseconds. The data
/// file is in the page cache from the measurements before.
fn open_time(path: &Path, options: &StoreOptions, encrypted: bool) -> Result<Value> {
    let mut samples = Vec::with_capacity(OPENS);
    for _ in 0..OPENS {
        let options = options.clone();
        let t = Instant::now();
        let store = Store::open_with(path, options)?;
        black_box(store.read()?.set_root()?);
        samples.push(t.elapsed().as_nanos() as u64);
        ensure!(
            store.is_encrypted() == encrypted,
            "the store reopened with is_encrypted() = {}",
            store.is_encrypted()
        );
        // Dropping the store joins its writer thread: not part of the open.
        drop(store);
    }
    Ok(json!({
        "opens": OPENS,
        "median_ms": median_ns(&mut samples) as f64 / 1e6,
        "includes_key_derivation": false,
    }))
}

/// The data key wrapped and unwrapped once by a passphrase (`Passphrase`, through the
/// `KeyProvider` trait): each is one Argon2id derivation with the default costs. The unwrap
/// is what opening an encrypted node with a passphrase adds to the open.
fn kdf(key: &DataKey) -> Result<Value> {
    let provider = Passphrase::new(Zeroizing::new(PASSPHRASE.to_owned()));
    let t = Instant::now();
    let wrapped = provider.wrap(key)?;
    let wrap = t.elapsed();
    let t = Instant::now();
    let unwrapped = provider.unwrap(&wrapped)?;
    let unwrap = t.elapsed();
    ensure!(
        unwrapped.expose() == key.expose(),
        "the unwrapped data key differs from the wrapped one"
    );
    let p = KdfParams::DEFAULT;
    Ok(json!({
        "algorithm": "argon2id",
        "memory_kib": p.memory_kib, "iterations": p.iterations, "lanes": p.lanes,
        "wrap_ms": ms(wrap),
        "unwrap_ms": ms(unwrap),
    }))
}

/// What a ratio (encrypted / plain) should be.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    None,
}

/// The value at `path` in a report (null when missing).
fn at<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// The ratio encrypted / plain of the figure at `path`, with its target when it has one.
fn compare(plain: &Value, encrypted: &Value, path: &[&str], target: Target) -> Value {
    let r = ratio(at(encrypted, path), at(plain, path));
    let mut out = json!({ "encrypted_vs_plain": r });
    let x = r.as_f64();
    match target {
        Target::AtLeast(min) => {
            out["target_at_least"] = json!(min);
            out["met"] = json!(x.is_some_and(|x| x >= min));
        }
        Target::AtMost(max) => {
            out["target_at_most"] = json!(max);
            out["met"] = json!(x.is_some_and(|x| x <= max));
        }
        Target::None => {}
    }
    out
}

/// The ratios the report names, in the order the summary prints them: the key, the figure's
/// path in each store's report, the summary's label and the target.
fn figures() -> [(&'static str, &'static [&'static str], String, Target); 8] {
    [
        (
            "ingest_events_per_s",
            &["ingest", "events_per_s"],
            "verified ingest, events/s".to_owned(),
            Target::AtLeast(0.7),
        ),
        (
            "data_mdb_bytes",
            &["size", "data_mdb_bytes"],
            "data.mdb bytes".to_owned(),
            Target::AtMost(1.1),
        ),
        (
            "used_bytes",
            &["size", "used_bytes"],
            "used bytes".to_owned(),
            Target::AtMost(1.1),
        ),
        (
            "read_txn_per_chunk_time",
            &["read", "txn_per_chunk", "median_ns"],
            format!("point read, txn per {READS_PER_SAMPLE} reads, ns"),
            Target::AtMost(1.5),
        ),
        (
            "read_txn_per_read_time",
            &["read", "txn_per_read", "median_ns"],
            "point read, txn per read, ns".to_owned(),
            Target::AtMost(1.5),
        ),
        (
            "feed_median_time",
            &["feed", "median_us"],
            format!("feed, {FEED_LIMIT} of {FEED_AUTHORS} authors, median µs"),
            Target::AtMost(1.5),
        ),
        (
            "feed_p99_time",
            &["feed", "p99_us"],
            "feed p99 µs".to_owned(),
            Target::None,
        ),
        (
            "open_time",
            &["open", "median_ms"],
            "open + first read txn, median ms".to_owned(),
            Target::None,
        ),
    ]
}

fn ratios(plain: &Value, encrypted: &Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("note".into(), json!("encrypted / plain"));
    for (key, path, _, target) in figures() {
        out.insert(key.into(), compare(plain, encrypted, path, target));
    }
    Value::Object(out)
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "-".to_owned(),
    }
}

/// The report as a table on stderr; the JSON goes to stdout.
fn print_summary(r: &Value) {
    let (p, e, ratios, m) = (&r["plain"], &r["encrypted"], &r["ratios"], &r["machine"]);
    eprintln!(
        "encrypted: {} events ({} bytes) from {} authors, batches of {}; {} ({} cores)",
        r["events"],
        r["event_bytes"],
        r["authors"],
        r["batch"],
        m["cpu"].as_str().unwrap_or("unknown"),
        m["cores"]
    );
    eprintln!(
        "{:<40} {:>14} {:>14} {:>10} {:>12}",
        "", "plain", "encrypted", "enc/plain", "target"
    );
    let row = |name: &str, plain: &Value, encrypted: &Value, ratio: &Value| {
        let target = match (
            ratio["target_at_least"].as_f64(),
            ratio["target_at_most"].as_f64(),
        ) {
            (Some(t), _) => format!("≥ {t}"),
            (_, Some(t)) => format!("≤ {t}"),
            _ => String::new(),
        };
        let verdict = match ratio["met"].as_bool() {
            Some(true) => " met",
            Some(false) => " missed",
            None => "",
        };
        let target = format!("{target}{verdict}");
        eprintln!(
            "{name:<40} {:>14} {:>14} {:>10} {target:>12}",
            num(plain),
            num(encrypted),
            num(&ratio["encrypted_vs_plain"]),
        );
    };
    for (key, path, name, _) in figures() {
        row(&name, at(p, path), at(e, path), &ratios[key]);
    }
    let kdf = &e["kdf"];
    eprintln!(
        "{} reads of stored ids per way; the opens are given the key: no key derivation",
        p["read"]["reads"]
    );
    eprintln!(
        "passphrase (Argon2id, {} KiB, {} passes, {} lanes): unwrap {} ms, wrap {} ms",
        kdf["memory_kib"],
        kdf["iterations"],
        kdf["lanes"],
        num(&kdf["unwrap_ms"]),
        num(&kdf["wrap_ms"])
    );
}
