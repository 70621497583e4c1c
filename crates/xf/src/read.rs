//! Commands that read: get, query, feed, thread, stats, verify.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use xaeroflux::{EventId, Filter, IdPrefix, PublicKey, Scope};

use crate::cli::{open_node_for_reading as open_node, Args, QueryArgs};
use crate::output::{event_json, event_line, hex, print_events, set_root_json};

pub fn get(args: &Args, id: &IdPrefix) -> Result<()> {
    let node = open_node(args)?;
    let id = &node.resolve_id(id)?;
    let read = node.store().read()?;
    let Some(ev) = read.get(id)? else {
        bail!("no event {id} in this store")
    };
    if args.json {
        println!("{}", event_json(&ev));
    } else {
        println!("{}", event_line(&ev));
    }
    Ok(())
}

pub fn query(args: &Args, q: &QueryArgs) -> Result<()> {
    if let (Some(since), Some(until)) = (q.since, q.until) {
        if since > until {
            crate::cli::usage_error("--since is after --until: the window is empty");
        }
    }
    let node = open_node(args)?;
    let resolve = |ids: &[IdPrefix]| -> Result<Vec<EventId>> {
        Ok(ids
            .iter()
            .map(|id| node.resolve_id(id))
            .collect::<Result<_, _>>()?)
    };
    let filter = Filter {
        ids: resolve(&q.ids)?,
        kinds: q.kinds.clone(),
        references: resolve(&q.references)?,
        limit: Some(q.limit),
        scope: Scope {
            authors: q.authors.clone(),
            topics: q.topics.clone(),
            since: q.since,
            until: q.until,
        },
    };
    let read = node.store().read()?;
    print_events(args.json, &read.query(&filter)?);
    Ok(())
}

pub fn feed(
    args: &Args,
    author: Option<PublicKey>,
    limit: usize,
    until: Option<u64>,
) -> Result<()> {
    let node = open_node(args)?;
    let who = match author.or_else(|| node.identity().map(|i| i.public_key())) {
        Some(who) => who,
        None => bail!("no identity here: pass --author or run `xf init`"),
    };
    let read = node.store().read()?;
    print_events(args.json, &read.feed(&who, limit, until)?);
    Ok(())
}

pub fn thread(args: &Args, id: &IdPrefix, limit: usize) -> Result<()> {
    let node = open_node(args)?;
    let id = &node.resolve_id(id)?;
    let read = node.store().read()?;
    let thread = read.thread(id, limit)?;
    if args.json {
        let entries: Vec<Value> = thread
            .entries
            .iter()
            .map(|e| json!({ "depth": e.depth, "event": event_json(&e.event) }))
            .collect();
        let root = thread.root.as_ref().map(event_json);
        println!(
            "{}",
            json!({ "root": root, "entries": entries, "truncated": thread.truncated })
        );
        return Ok(());
    }
    match &thread.root {
        Some(root) => println!("{}", event_line(root)),
        None => println!("(root {id} not stored)"),
    }
    for e in &thread.entries {
        println!(
            "{}└ {}",
            "  ".repeat(e.depth as usize - 1),
            event_line(&e.event)
        );
    }
    if thread.truncated {
        println!("… (truncated at {limit} entries)");
    }
    Ok(())
}

/// How a store is kept, in one line.
pub fn encryption_line(encrypted: bool) -> &'static str {
    if encrypted {
        "encrypted:    yes (AES-256-GCM-SIV, key wrapped by a passphrase through Argon2id)"
    } else {
        "encrypted:    no (plain files: anyone with the device can read them)"
    }
}

pub fn stats(args: &Args) -> Result<()> {
    let node = open_node(args)?;
    let s = node.store().read()?.stats()?;
    let ratio = if s.event_bytes > 0 {
        s.used_bytes as f64 / s.event_bytes as f64
    } else {
        0.0
    };
    if args.json {
        let tables: Vec<Value> = s
            .tables
            .iter()
            .map(|t| json!({ "name": t.name, "entries": t.entries, "bytes": t.bytes, "depth": t.depth }))
            .collect();
        println!(
            "{}",
            json!({
                "encrypted": node.store().is_encrypted(),
                "events": s.events, "event_bytes": s.event_bytes, "used_bytes": s.used_bytes,
                "file_bytes": s.file_bytes, "map_bytes": s.map_bytes, "next_seq": s.next_seq,
                "used_per_event_byte": ratio, "tables": tables, "set": set_root_json(&s.set),
            })
        );
        return Ok(());
    }
    println!("{}", encryption_line(node.store().is_encrypted()));
    println!("events:       {}", s.events);
    println!("event bytes:  {}", s.event_bytes);
    println!(
        "used bytes:   {} ({ratio:.2}× the event bytes)",
        s.used_bytes
    );
    println!("file bytes:   {}", s.file_bytes);
    println!("map bytes:    {}", s.map_bytes);
    println!(
        "set root:     {} ({} events)",
        hex(&s.set.fingerprint),
        s.set.accum.count
    );
    println!(
        "set index:    height {}, {} leaf pages, {} branch pages",
        s.set.height, s.set.leaf_pages, s.set.branch_pages
    );
    println!(
        "{:<12} {:>12} {:>14} {:>6}",
        "table", "entries", "bytes", "depth"
    );
    for t in &s.tables {
        println!(
            "{:<12} {:>12} {:>14} {:>6}",
            t.name, t.entries, t.bytes, t.depth
        );
    }
    Ok(())
}

pub fn verify(args: &Args) -> Result<()> {
    let node = open_node(args)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let report = node.store().read()?.check(threads)?;
    if args.json {
        println!(
            "{}",
            json!({ "ok": report.is_ok(), "events": report.events, "index_entries": report.index_entries,
                    "problems_total": report.problems_total, "problems": report.problems })
        );
    } else {
        println!(
            "checked {} events and {} index entries",
            report.events, report.index_entries
        );
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    if !report.is_ok() {
        bail!("{} problems found", report.problems_total);
    }
    if !args.json {
        println!("ok");
    }
    Ok(())
}
