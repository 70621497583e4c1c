//! `xf-bench sync`: our reconciliation and transfer between two LMDB stores, next to the
//! `negentropy` reference crate reconciling the same two sets, in one process.
//!
//! Workload: the generator's posts, replies and reactions. Deletions and replaceable events
//! (profiles, follow lists) are left out, because the store drops what they delete or supersede
//! and the two sets would no longer be the intended ones. Store A holds N events; ⌈D/2⌉ of them
//! are only in A and ⌊D/2⌋ more only in B, at random positions in time. The shared events are
//! ingested once into a base store whose data file is copied for the other side.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use serde_json::{json, Value};
use xaeroflux::{Durability, Kind, Outcome, Store, VerifiedEvent};
use xaeroflux_bench::{generate, GenParams};
use xaeroflux_sync::{run_local, LinkOptions, LinkReport, Scope, SyncConfig};

use crate::bench::{machine, ms, ratio, BenchArgs};
use crate::hex;
use crate::Args;

/// Events per write transaction while building the stores (the writer folds up to 16 Ki).
const INGEST_BATCH: usize = 16 * 1024;
/// Batches queued at the writer while the generator signs the next ones.
const INGEST_IN_FLIGHT: usize = 2;
/// The reference refuses frame limits below this (0 means unlimited).
const NEGENTROPY_FRAME_MIN: u64 = 4096;
/// A reference run that goes on longer than this is stuck.
const NEGENTROPY_ROUNDS_MAX: u64 = 100_000;

/// Where each drafted event goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Both,
    OnlyA,
    OnlyB,
}

/// Two stores and the same two sets as the reference sees them.
pub(crate) struct Workload {
    pub(crate) _dir: tempfile::TempDir,
    a: Store,
    b: Store,
    neg_a: NegentropyStorageVector,
    neg_b: NegentropyStorageVector,
    /// Ids only A holds, sorted (every id of A with --empty-peer).
    only_a: Vec<[u8; 32]>,
    /// Ids only B holds, sorted.
    only_b: Vec<[u8; 32]>,
    /// Portable bytes (`id ‖ body`) of the events that must move.
    diff_event_bytes: u64,
    pub(crate) setup: Duration,
}

/// Deterministic positions (splitmix64): the same seed picks the same differences.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Marks `only_a + only_b` distinct random positions of `total`: the first `only_a` drawn go
/// to A, the rest to B, so both kinds are spread over the whole time range.
fn places(total: usize, only_a: usize, only_b: usize, seed: u64) -> Vec<Place> {
    assert!(only_a + only_b <= total);
    let mut out = vec![Place::Both; total];
    let mut rng = SplitMix(seed ^ 0x5EED_5111_C0DE);
    let mut chosen = 0;
    while chosen < only_a + only_b {
        let i = (rng.next() % total as u64) as usize;
        if out[i] == Place::Both {
            out[i] = if chosen < only_a {
                Place::OnlyA
            } else {
                Place::OnlyB
            };
            chosen += 1;
        }
    }
    out
}

/// Writes events with relaxed durability in big batches, a few in flight.
pub(crate) struct BatchWriter<'s> {
    store: &'s Store,
    batch: Vec<VerifiedEvent>,
    pending: VecDeque<xaeroflux::Ticket>,
    stored: u64,
}

impl<'s> BatchWriter<'s> {
    pub(crate) fn new(store: &'s Store) -> BatchWriter<'s> {
        BatchWriter {
            store,
            batch: Vec::with_capacity(INGEST_BATCH),
            pending: VecDeque::new(),
            stored: 0,
        }
    }

    pub(crate) fn push(&mut self, event: VerifiedEvent) -> Result<()> {
        self.batch.push(event);
        if self.batch.len() == INGEST_BATCH {
            let batch = std::mem::take(&mut self.batch);
            self.pending
                .push_back(self.store.submit(batch, Durability::Relaxed)?);
            if self.pending.len() > INGEST_IN_FLIGHT {
                self.wait_oldest()?;
            }
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let ticket = self.pending.pop_front().expect("a batch in flight");
        let outcomes = ticket.wait()?;
        self.stored += outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored { .. }))
            .count() as u64;
        Ok(())
    }

    /// Writes what is left, flushes the store, and returns how many events were new.
    pub(crate) fn finish(mut self) -> Result<u64> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            self.pending
                .push_back(self.store.submit(batch, Durability::Relaxed)?);
        }
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        self.store.sync()?;
        Ok(self.stored)
    }
}

fn ingest(store: &Store, events: Vec<VerifiedEvent>) -> Result<u64> {
    let mut w = BatchWriter::new(store);
    for e in events {
        w.push(e)?;
    }
    w.finish()
}

fn set_count(store: &Store) -> Result<u64> {
    Ok(store.read()?.set_root()?.accum.count)
}

/// What drawing the workload left outside the base store.
#[derive(Default)]
struct Drawn {
    neg_a: NegentropyStorageVector,
    neg_b: NegentropyStorageVector,
    ids_a: Vec<[u8; 32]>,
    ids_b: Vec<[u8; 32]>,
    unique_a: Vec<VerifiedEvent>,
    unique_b: Vec<VerifiedEvent>,
    diff_event_bytes: u64,
    shared_stored: u64,
}

/// Generates the events and routes each by its place: shared ones into `base`, each side's
/// own ones kept for later; every one into the reference's sets. With an empty peer every
/// event is shared-path (`base` becomes A) and counts as a difference.
fn draw(base: &Store, b: &BenchArgs, authors: u32, place: &[Place]) -> Result<Drawn> {
    let total = place.len();
    // Enough drafts for `total` kept events: about 96% of the steady stream is kept, and each
    // author's profile and follow list come first.
    let drafts = total as u64 + total as u64 / 16 + 2 * u64::from(authors) + 4096;
    let kept = generate(&GenParams::new(drafts, authors, b.seed))
        .filter(|e| matches!(e.as_ref().kind(), Kind::POST | Kind::REPLY | Kind::REACTION));
    let mut d = Drawn {
        neg_a: NegentropyStorageVector::with_capacity(total),
        neg_b: NegentropyStorageVector::with_capacity(if b.empty_peer { 0 } else { total }),
        ..Drawn::default()
    };
    let mut writer = BatchWriter::new(base);
    let mut drawn = 0;
    for (&p, e) in place.iter().zip(kept) {
        drawn += 1;
        let (at, id) = (e.as_ref().created_at(), e.id().0);
        if p != Place::OnlyB {
            d.neg_a.insert(at, Id::from_byte_array(id))?;
        }
        if p != Place::OnlyA && !b.empty_peer {
            d.neg_b.insert(at, Id::from_byte_array(id))?;
        }
        if p != Place::Both || b.empty_peer {
            d.diff_event_bytes += e.as_bytes().len() as u64;
        }
        match p {
            Place::Both if b.empty_peer => {
                d.ids_a.push(id);
                writer.push(e)?;
            }
            Place::Both => writer.push(e)?,
            Place::OnlyA => {
                d.ids_a.push(id);
                d.unique_a.push(e);
            }
            Place::OnlyB => {
                d.ids_b.push(id);
                d.unique_b.push(e);
            }
        }
    }
    ensure!(
        drawn == total,
        "the generator ran dry after {drawn} of {total} events"
    );
    d.shared_stored = writer.finish()?;
    d.neg_a.seal()?;
    d.neg_b.seal()?;
    d.ids_a.sort_unstable();
    d.ids_b.sort_unstable();
    Ok(d)
}

pub(crate) fn build(b: &BenchArgs, authors: u32) -> Result<Workload> {
    let started = Instant::now();
    let n = usize::try_from(b.events).context("--events")?;
    let (only_a, only_b) = if b.empty_peer {
        (0, 0) // everything goes to the base store, which becomes A
    } else {
        let d = usize::try_from(b.diff).context("--diff")?;
        (d - d / 2, d / 2)
    };
    ensure!(
        only_a <= n,
        "--diff {} puts {only_a} events only in A, more than --events {n}",
        b.diff
    );
    let total = n + only_b;
    eprintln!(
        "sync bench: generating {total} events ({only_a} only in A, {only_b} only in B{}) and \
         storing the shared ones once…",
        if b.empty_peer { ", B empty" } else { "" }
    );
    let dir = tempfile::Builder::new()
        .prefix("xf-bench-sync-")
        .tempdir()?;
    let base_dir = dir.path().join("base");
    // The stores are built, and later written, with transactions of at most --txn-events.
    let base = Store::open_with(&base_dir, crate::bench::store_options(b))?;
    let place = places(total, only_a, only_b, b.seed);
    let d = draw(&base, b, authors, &place)?;
    let shared = (total - only_a - only_b) as u64;
    ensure!(
        d.shared_stored == shared,
        "base store: {} of {shared} shared events stored",
        d.shared_stored
    );
    // Closing the base store (its writer joins) leaves a data file that is safe to copy.
    drop(base);

    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    if b.empty_peer {
        std::fs::rename(&base_dir, &a_dir)?;
    } else {
        eprintln!("sync bench: copying the base store and adding each side's own events…");
        std::fs::create_dir(&a_dir)?;
        copy_data_file(&base_dir, &a_dir)?;
        std::fs::rename(&base_dir, &b_dir)?;
    }
    let a = Store::open_with(&a_dir, crate::bench::store_options(b))?;
    let b_store = Store::open_with(&b_dir, crate::bench::store_options(b))?;
    let stored_a = ingest(&a, d.unique_a)?;
    let stored_b = ingest(&b_store, d.unique_b)?;
    ensure!(
        stored_a == only_a as u64 && stored_b == only_b as u64,
        "own events stored: A {stored_a} of {only_a}, B {stored_b} of {only_b}"
    );
    let want_b = if b.empty_peer {
        0
    } else {
        shared + only_b as u64
    };
    let (count_a, count_b) = (set_count(&a)?, set_count(&b_store)?);
    ensure!(
        count_a == n as u64 && count_b == want_b,
        "stores hold {count_a} and {count_b} events, expected {n} and {want_b}"
    );
    Ok(Workload {
        _dir: dir,
        a,
        b: b_store,
        neg_a: d.neg_a,
        neg_b: d.neg_b,
        only_a: d.ids_a,
        only_b: d.ids_b,
        diff_event_bytes: d.diff_event_bytes,
        setup: started.elapsed(),
    })
}

pub(crate) fn copy_data_file(from: &Path, to: &Path) -> Result<()> {
    let (src, dst) = (from.join("data.mdb"), to.join("data.mdb"));
    std::fs::copy(&src, &dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

/// Bytes per difference, or null when there are none.
fn per_difference(bytes: u64, differences: u64) -> Value {
    if differences == 0 {
        Value::Null
    } else {
        json!(bytes as f64 / differences as f64)
    }
}

/// Runs our session A → B and checks that both stores end with the same root.
fn ours(w: &mut Workload, cfg: SyncConfig, seed: u64) -> Result<(LinkReport, Value)> {
    eprintln!("sync bench: ours…");
    let salt = SplitMix(seed ^ 0x5A17).next();
    let started = Instant::now();
    let report = run_local(
        &mut w.a,
        &mut w.b,
        Scope::all(),
        cfg,
        salt,
        xaeroflux::now_ms(),
        LinkOptions {
            window_frames: xaeroflux::LOCAL_WINDOW_FRAMES,
            cut_after_frames: None,
            verifier: Some(xaeroflux::Verifier::per_core()),
        },
    )
    .context("our session failed")?;
    let wall = started.elapsed();
    w.a.sync()?;
    w.b.sync()?;
    let (ra, rb) = (w.a.read()?.set_root()?, w.b.read()?.set_root()?);
    let (i, r) = (&report.initiator, &report.responder);
    let differences = (w.only_a.len() + w.only_b.len()) as u64;
    let recon = i.recon_bytes_sent + i.recon_bytes_received;
    let total = i.bytes_sent + i.bytes_received;
    let event_bytes = i.event_bytes_sent + r.event_bytes_sent;
    let exact =
        i.events_sent == w.only_a.len() as u64 && i.events_received == w.only_b.len() as u64;
    let out = json!({
        "frame_bytes": cfg.frame_bytes_max,
        "round_trips": i.round_trips(),
        "recon_messages": i.recon_messages_sent + i.recon_messages_received,
        "recon_bytes": recon,
        "recon_bytes_a_to_b": i.recon_bytes_sent,
        "recon_bytes_b_to_a": i.recon_bytes_received,
        "bytes_per_difference": per_difference(recon, differences),
        "total_bytes": total,
        "bytes_a_to_b": i.bytes_sent,
        "bytes_b_to_a": i.bytes_received,
        "frames": i.frames_sent + i.frames_received,
        "events_a_to_b": i.events_sent,
        "events_b_to_a": i.events_received,
        "event_bytes": event_bytes,
        "total_vs_event_bytes": if event_bytes > 0 { json!(total as f64 / event_bytes as f64) } else { Value::Null },
        "exact_transfer": exact,
        "have": i.have, "need": i.need, "missing": i.missing,
        "wall_ms": ms(wall),
        "initiator_busy_ms": ms(report.initiator_busy),
        "responder_busy_ms": ms(report.responder_busy),
        "roots_equal": ra.fingerprint == rb.fingerprint,
        "root": hex(&ra.fingerprint),
        "events_after": ra.accum.count,
    });
    Ok((report, out))
}

/// Drives the reference crate's initiator (A) and responder (B) to the end.
fn reference(w: &Workload, frame_bytes: Option<usize>) -> Result<Value> {
    eprintln!("sync bench: negentropy…");
    let limit = frame_bytes.map_or(0, |f| (f as u64).max(NEGENTROPY_FRAME_MIN));
    let mut init = Negentropy::borrowed(&w.neg_a, limit)?;
    let mut resp = Negentropy::borrowed(&w.neg_b, limit)?;
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let (mut a_to_b, mut b_to_a, mut rounds) = (0u64, 0u64, 0u64);
    let (mut init_time, mut resp_time) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    let mut msg = init.initiate()?;
    init_time += started.elapsed();
    loop {
        rounds += 1;
        ensure!(rounds <= NEGENTROPY_ROUNDS_MAX, "negentropy did not finish");
        a_to_b += msg.len() as u64;
        let t = Instant::now();
        let reply = resp.reconcile(&msg)?;
        resp_time += t.elapsed();
        b_to_a += reply.len() as u64;
        let t = Instant::now();
        let next = init.reconcile_with_ids(&reply, &mut have, &mut need)?;
        init_time += t.elapsed();
        match next {
            Some(m) => msg = m,
            None => break,
        }
    }
    let wall = started.elapsed();
    let mut have: Vec<[u8; 32]> = have.into_iter().map(Id::to_bytes).collect();
    let mut need: Vec<[u8; 32]> = need.into_iter().map(Id::to_bytes).collect();
    have.sort_unstable();
    need.sort_unstable();
    let verified = have == w.only_a && need == w.only_b;
    let differences = (w.only_a.len() + w.only_b.len()) as u64;
    Ok(json!({
        "frame_size_limit": limit,
        "round_trips": rounds,
        "recon_bytes": a_to_b + b_to_a,
        "recon_bytes_a_to_b": a_to_b,
        "recon_bytes_b_to_a": b_to_a,
        "bytes_per_difference": per_difference(a_to_b + b_to_a, differences),
        "total_with_events_bytes": a_to_b + b_to_a + w.diff_event_bytes,
        "have": have.len(), "need": need.len(),
        "verified": verified,
        "wall_ms": ms(wall),
        "initiator_ms": ms(init_time),
        "responder_ms": ms(resp_time),
    }))
}

pub fn run(args: &Args, b: &BenchArgs, authors: u32) -> Result<()> {
    let cfg = b
        .frame_bytes
        .map_or_else(SyncConfig::default, SyncConfig::with_frame_bytes);
    let mut w = build(b, authors)?;
    let (_, ours) = ours(&mut w, cfg, b.seed)?;
    let neg = reference(&w, b.frame_bytes)?;
    let report = json!({
        "machine": machine(),
        "events": b.events,
        "authors": authors,
        "seed": b.seed,
        "diff": w.only_a.len() + w.only_b.len(),
        "only_a": w.only_a.len(),
        "only_b": w.only_b.len(),
        "empty_peer": b.empty_peer,
        "frame_bytes": b.frame_bytes,
        "diff_event_bytes": w.diff_event_bytes,
        "setup_s": w.setup.as_secs_f64(),
        "ours": ours,
        "negentropy": neg,
        "ratio": {
            "note": "negentropy / ours",
            "round_trips": ratio(&neg["round_trips"], &ours["round_trips"]),
            "recon_bytes": ratio(&neg["recon_bytes"], &ours["recon_bytes"]),
            "total_with_events_bytes": ratio(&neg["total_with_events_bytes"], &ours["total_bytes"]),
        },
    });
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    if ours["roots_equal"] != true {
        bail!("after our session A and B have different roots");
    }
    if neg["verified"] != true {
        bail!("negentropy's have/need differ from the true differences");
    }
    Ok(())
}

fn print_table(r: &Value) {
    let (o, n) = (&r["ours"], &r["negentropy"]);
    println!(
        "sync: {} events in A, {} only in A, {} only in B{}; frames {}",
        r["events"],
        r["only_a"],
        r["only_b"],
        if r["empty_peer"] == true {
            " (B empty)"
        } else {
            ""
        },
        o["frame_bytes"]
    );
    let num = |v: &Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) => format!("{x:.2}"),
        None => "-".to_owned(),
    };
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "ours", "negentropy", "neg/ours"
    );
    let row = |name: &str, ours: &Value, neg: &Value| {
        println!(
            "{name:<28} {:>14} {:>14} {:>10}",
            num(ours),
            num(neg),
            num(&ratio(neg, ours))
        )
    };
    row("round trips", &o["round_trips"], &n["round_trips"]);
    row("reconciliation bytes", &o["recon_bytes"], &n["recon_bytes"]);
    row(
        "  A → B",
        &o["recon_bytes_a_to_b"],
        &n["recon_bytes_a_to_b"],
    );
    row(
        "  B → A",
        &o["recon_bytes_b_to_a"],
        &n["recon_bytes_b_to_a"],
    );
    row(
        "bytes per difference",
        &o["bytes_per_difference"],
        &n["bytes_per_difference"],
    );
    row(
        "total bytes with events",
        &o["total_bytes"],
        &n["total_with_events_bytes"],
    );
    row("wall ms", &o["wall_ms"], &n["wall_ms"]);
    row("responder ms", &o["responder_busy_ms"], &n["responder_ms"]);
    row("initiator ms", &o["initiator_busy_ms"], &n["initiator_ms"]);
    println!(
        "ours: {} events A → B, {} B → A, {} event bytes; total / event bytes {}",
        o["events_a_to_b"],
        o["events_b_to_a"],
        o["event_bytes"],
        num(&o["total_vs_event_bytes"])
    );
    println!(
        "roots equal: {} ({}); negentropy found the true differences: {}",
        o["roots_equal"],
        o["root"].as_str().unwrap_or("-"),
        n["verified"]
    );
}
