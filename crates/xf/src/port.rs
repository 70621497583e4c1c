//! Moving events in and out: export, import, gen.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use xaeroflux::{Durability, ImportReader, IngestReport};

use crate::cli::{open_node, Args};

pub fn export(args: &Args, file: &Path) -> Result<()> {
    let node = crate::cli::open_node_for_reading(args)?;
    let out = File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let (out, count) = node.export_to(BufWriter::new(out))?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // An export is for moving events elsewhere: it is not sealed, even from an encrypted store.
    if args.json {
        println!(
            "{}",
            json!({ "exported": count, "file": file, "encrypted": false })
        );
    } else {
        println!("exported {count} events to {}", file.display());
        println!(
            "note: the export file is not encrypted{}: anyone who can read it reads every event",
            if node.store().is_encrypted() {
                " (the store is)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} {msg} ({eta})")
            .expect("valid template"),
    );
    bar
}

pub fn import(args: &Args, file: &Path, batch: usize) -> Result<()> {
    let node = open_node(args, crate::cli::Opening::Create)?;
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = ImportReader::new(BufReader::new(input))?;
    let bar = progress_bar(total);
    let offset = std::cell::Cell::new(0u64);
    let events = std::iter::from_fn(|| {
        let item = reader.next_event().transpose();
        offset.set(reader.offset());
        item
    });
    let json = args.json;
    let mut stdout = std::io::stdout();
    let result = node.ingest_stream(events, batch, |r: &IngestReport| {
        bar.set_position(offset.get());
        bar.set_message(format!("{} stored", r.stored));
        if json {
            // One line per durable batch: what is acknowledged here is on disk.
            let acked = r.stored + r.duplicates + r.deleted + r.superseded;
            let _ = writeln!(
                stdout,
                "{}",
                json!({ "type": "progress", "acked": acked, "stored": r.stored })
            );
            let _ = stdout.flush();
        }
    });
    bar.finish_and_clear();
    let report = result?;
    print_report(args, &report);
    if report.rejected_total > 0 {
        anyhow::bail!(
            "{} events failed verification and were not stored",
            report.rejected_total
        );
    }
    Ok(())
}

fn print_report(args: &Args, r: &IngestReport) {
    if args.json {
        let rejected: Vec<_> = r
            .rejected
            .iter()
            .map(|x| json!({ "index": x.index, "error": x.error.to_string() }))
            .collect();
        println!(
            "{}",
            json!({ "type": "imported", "seen": r.seen, "stored": r.stored, "duplicates": r.duplicates, "deleted": r.deleted,
                    "superseded": r.superseded, "rejected_total": r.rejected_total, "rejected": rejected })
        );
        return;
    }
    println!(
        "read {}: {} stored, {} duplicates, {} deleted earlier, {} superseded, {} rejected",
        r.seen, r.stored, r.duplicates, r.deleted, r.superseded, r.rejected_total
    );
    for x in &r.rejected {
        println!("  event {}: {}", x.index, x.error);
    }
}

pub fn gen(args: &Args, events: u64, authors: u32, seed: u64) -> Result<()> {
    let node = open_node(args, crate::cli::Opening::Create)?;
    let params = xaeroflux_bench::GenParams {
        events,
        authors,
        seed,
        ..xaeroflux_bench::GenParams::default()
    };
    let bar = progress_bar(events);
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(GEN_BATCH);
    let mut pending = std::collections::VecDeque::new();
    let mut stored = 0u64;
    let wait = |t: xaeroflux::Ticket, stored: &mut u64| -> Result<()> {
        *stored += t
            .wait()?
            .iter()
            .filter(|o| matches!(o, xaeroflux::Outcome::Stored { .. }))
            .count() as u64;
        Ok(())
    };
    // Generated events are signed here, so they go in on the trusted path.
    for event in xaeroflux_bench::generate(&params) {
        batch.push(event);
        if batch.len() == GEN_BATCH {
            pending.push_back(
                node.store()
                    .submit(std::mem::take(&mut batch), Durability::Relaxed)?,
            );
            bar.inc(GEN_BATCH as u64);
            if pending.len() > 2 {
                wait(pending.pop_front().expect("non-empty"), &mut stored)?;
            }
        }
    }
    if !batch.is_empty() {
        pending.push_back(node.store().submit(batch, Durability::Relaxed)?);
    }
    for t in pending {
        wait(t, &mut stored)?;
    }
    node.store().sync()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({ "generated": events, "stored": stored, "ms": secs * 1e3 })
        );
    } else {
        println!("generated {events} events ({stored} stored) in {secs:.1} s");
    }
    Ok(())
}

const GEN_BATCH: usize = 4096;
