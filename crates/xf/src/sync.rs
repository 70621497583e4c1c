//! `xf sync --local`: reconciles this store with another one on the same machine over an
//! in-memory link, and each side stores what it lacked.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xaeroflux::{now_ms, Store};
use xaeroflux_store::SetRoot;
use xaeroflux_sync::{
    run_local, LinkOptions, LinkReport, Scope, SessionStats, SyncConfig, FRAME_BYTES_DEFAULT,
};

use crate::cli::{default_data_dir, open_node, Args};
use crate::output::{hex, set_root_json};

/// Frames each side may have in flight on the in-memory link before the other reads them.
/// Larger windows open fewer read snapshots; the protocol's turns do not depend on it.
pub const WINDOW_FRAMES: usize = 64;

/// Flags of `xf sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The other store's data directory (it must already hold a store). Authors and topics
    /// cannot narrow a sync yet: the store's Merkle index covers the whole set.
    #[arg(long, value_name = "OTHER_DIR")]
    pub local: PathBuf,
    /// Largest frame sent or accepted, in bytes (at least 1024).
    #[arg(long, default_value_t = FRAME_BYTES_DEFAULT)]
    pub frame_bytes: usize,
    /// Only events created at or after this time (ms since the Unix epoch).
    #[arg(long)]
    pub since: Option<u64>,
    /// Only events created at or before this time (ms since the Unix epoch).
    #[arg(long)]
    pub until: Option<u64>,
}

pub fn run(args: &Args, s: &SyncArgs) -> Result<()> {
    let here = args.data.clone().unwrap_or_else(default_data_dir);
    check_other(&here, &s.local)?;
    let scope = Scope {
        since: s.since,
        until: s.until,
        ..Scope::all()
    };
    if scope.lower() >= scope.upper() {
        bail!("--since is after --until: the window is empty");
    }
    let node = open_node(args, false)?;
    // Clones share the node's writer: received events go through it like any other write.
    let mut ours = node.store().clone();
    let mut theirs = Store::open(&s.local)
        .with_context(|| format!("opening the other store {}", s.local.display()))?;
    let salt = getrandom::u64().map_err(|e| anyhow::anyhow!("drawing a session salt: {e}"))?;
    let started = Instant::now();
    let report = run_local(
        &mut ours,
        &mut theirs,
        scope.clone(),
        SyncConfig::with_frame_bytes(s.frame_bytes),
        salt,
        now_ms(),
        LinkOptions {
            window_frames: WINDOW_FRAMES,
            cut_after_frames: None,
        },
    )
    .with_context(|| format!("syncing with {}", s.local.display()))?;
    let session = started.elapsed();
    // Received events were written with relaxed durability: make both stores durable now.
    ours.sync().context("flushing this store")?;
    theirs.sync().context("flushing the other store")?;
    let total = started.elapsed();

    let (root_here, window_here) = roots(&ours, &scope)?;
    let (root_there, window_there) = roots(&theirs, &scope)?;
    let equal = if scope == Scope::all() {
        root_here.fingerprint == root_there.fingerprint
    } else {
        window_here == window_there
    };
    let out = Summary {
        other: &s.local,
        scope: &scope,
        frame_bytes: s.frame_bytes,
        report: &report,
        session_s: session.as_secs_f64(),
        total_s: total.as_secs_f64(),
        here: &root_here,
        there: &root_there,
        window: (window_here, window_there),
        equal,
    };
    if args.json {
        println!("{}", out.json());
    } else {
        out.print();
    }
    if !equal {
        bail!(
            "after the sync the sets still differ (here {}, there {}): run it again, and \
             `xf verify` both stores if they keep differing",
            hex(&window_here),
            hex(&window_there)
        );
    }
    Ok(())
}

/// Refuses anything but an existing store other than this one, before anything is created.
fn check_other(here: &Path, other: &Path) -> Result<()> {
    let shown = other.display();
    match std::fs::metadata(other) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{shown} is not a directory: --local takes another store's data directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{shown} does not exist: --local takes another store's data directory")
        }
        Err(e) => bail!("{shown}: {e}"),
    }
    if !other.join("data.mdb").is_file() {
        bail!("{shown} is not a Xaeroflux store (no data.mdb); create one with `xf --data {shown} init`");
    }
    if let (Ok(a), Ok(b)) = (here.canonicalize(), other.canonicalize()) {
        if a == b {
            bail!("--local {shown} is this store itself");
        }
    }
    Ok(())
}

/// The whole set's root and the fingerprint of the scope's window.
fn roots(store: &Store, scope: &Scope) -> Result<(SetRoot, [u8; 32])> {
    let txn = store.read()?;
    let root = txn.set_root()?;
    let window = txn
        .set_accumulate(&scope.lower(), &scope.upper())?
        .fingerprint();
    anyhow::ensure!(
        *scope != Scope::all() || window == root.fingerprint,
        "{}: the Merkle root and the summary of the whole set disagree; run `xf verify`",
        store.path().display()
    );
    Ok((root, window))
}

struct Summary<'a> {
    other: &'a Path,
    scope: &'a Scope,
    frame_bytes: usize,
    report: &'a LinkReport,
    session_s: f64,
    total_s: f64,
    here: &'a SetRoot,
    there: &'a SetRoot,
    window: ([u8; 32], [u8; 32]),
    equal: bool,
}

/// One direction of the link, from the initiator's counters (and the responder's for the
/// event bytes it sent).
fn direction(bytes: u64, recon: u64, frames: u64, events: u64, event_bytes: u64) -> Value {
    json!({ "bytes": bytes, "recon_bytes": recon, "frames": frames, "events": events,
            "event_bytes": event_bytes })
}

impl Summary<'_> {
    fn json(&self) -> Value {
        let (i, r): (&SessionStats, &SessionStats) =
            (&self.report.initiator, &self.report.responder);
        let mut out = json!({
            "other": self.other,
            "scope": { "since": self.scope.since, "until": self.scope.until },
            "frame_bytes": self.frame_bytes,
            "round_trips": i.round_trips(),
            "seconds": self.session_s,
            "seconds_durable": self.total_s,
            "sent": direction(i.bytes_sent, i.recon_bytes_sent, i.frames_sent, i.events_sent, i.event_bytes_sent),
            "received": direction(i.bytes_received, i.recon_bytes_received, i.frames_received, i.events_received, r.event_bytes_sent),
            "have": i.have, "need": i.need, "missing": i.missing,
            "initiator_busy_ms": self.report.initiator_busy.as_secs_f64() * 1e3,
            "responder_busy_ms": self.report.responder_busy.as_secs_f64() * 1e3,
            "root": { "here": set_root_json(self.here), "there": set_root_json(self.there),
                      "equal": self.here.fingerprint == self.there.fingerprint },
            "equal": self.equal,
        });
        if *self.scope != Scope::all() {
            out["window"] = json!({ "here": hex(&self.window.0), "there": hex(&self.window.1),
                                    "equal": self.window.0 == self.window.1 });
        }
        out
    }

    fn print(&self) {
        let (i, r) = (&self.report.initiator, &self.report.responder);
        let trips = i.round_trips();
        println!(
            "synced with {} in {:.3} s ({:.3} s with both stores flushed), {trips} round trip{}",
            self.other.display(),
            self.session_s,
            self.total_s,
            if trips == 1 { "" } else { "s" }
        );
        println!("{:<16} {:>14} {:>14}", "", "sent", "received");
        let row = |name: &str, a: u64, b: u64| println!("{name:<16} {a:>14} {b:>14}");
        row("bytes", i.bytes_sent, i.bytes_received);
        row(
            "  reconciliation",
            i.recon_bytes_sent,
            i.recon_bytes_received,
        );
        row("events", i.events_sent, i.events_received);
        row("event bytes", i.event_bytes_sent, r.event_bytes_sent);
        if i.missing > 0 {
            println!(
                "{} events promised by the other store never came (deleted there meanwhile)",
                i.missing
            );
        }
        let root = |name: &str, s: &SetRoot| {
            println!("{name} {} ({} events)", hex(&s.fingerprint), s.accum.count)
        };
        root("root here: ", self.here);
        root("root there:", self.there);
        if *self.scope != Scope::all() {
            println!("window here:  {}", hex(&self.window.0));
            println!("window there: {}", hex(&self.window.1));
        }
        let what = if *self.scope == Scope::all() {
            "roots"
        } else {
            "window fingerprints"
        };
        if self.equal {
            println!("{what} equal");
        } else {
            println!("{what} DIFFER");
        }
    }
}
