//! `xf sync ADDR` dials a peer and reconciles over the network (see `net.rs`); `xf sync --local`
//! reconciles this store with another one on the same machine over an in-memory link, and each
//! side stores what it lacked.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xaeroflux::{
    Accum, LinkReport, PublicKey, Scope, SessionStats, SetRoot, Store, StoreOptions, SyncConfig,
    Topic, FRAME_BYTES_DEFAULT,
};

use crate::cli::{open_node, parse_topic, Args};
use crate::output::{hex, set_root_json};

/// Flags of `xf sync`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("other").required(true).args(["addr", "local"])))]
pub struct SyncArgs {
    /// A peer's address (a multiaddr ending in `/p2p/<peer id>`, e.g. from `xf node`).
    #[arg(value_name = "ADDR", value_parser = crate::cli::parse_addr)]
    pub addr: Option<xaeroflux::Multiaddr>,
    /// The other store's data directory (it must already hold a store).
    #[arg(long, value_name = "OTHER_DIR")]
    pub local: Option<PathBuf>,
    /// Give up on a network sync after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Largest frame sent or accepted, in bytes (1024 to 16 MiB; each session uses the
    /// smaller of the two sides' caps).
    #[arg(long, default_value_t = FRAME_BYTES_DEFAULT, value_parser = xaeroflux::parse_frame_bytes)]
    pub frame_bytes: usize,
    /// Only events created at or after this time (ms since the Unix epoch).
    #[arg(long)]
    pub since: Option<u64>,
    /// Only events created at or before this time (ms since the Unix epoch).
    #[arg(long)]
    pub until: Option<u64>,
    /// With --local only (a peer answers by topic and time): only events by these authors.
    /// Narrowed scopes gather their keys from the secondary indexes when the session starts
    /// (40 bytes of memory per event in scope).
    #[arg(long = "author", conflicts_with = "addr")]
    pub authors: Vec<PublicKey>,
    /// Only events in these topics (names or 64 hex digits); with --author, both must match.
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<Topic>,
    /// Tor (an onion ADDR uses a child tor without any of these).
    #[command(flatten)]
    pub tor: crate::tor::TorArgs,
}

pub fn run(args: &Args, s: &SyncArgs) -> Result<()> {
    let scope = Scope {
        since: s.since,
        until: s.until,
        authors: s.authors.clone(),
        topics: s.topics.clone(),
    };
    if scope.lower() >= scope.upper() {
        crate::cli::usage_error("--since is after --until: the window is empty");
    }
    let Some(local) = &s.local else {
        let addr = s.addr.as_ref().expect("clap requires ADDR or --local");
        return crate::net::sync_remote(
            args,
            &crate::net::RemoteSync {
                addr,
                tor: &s.tor,
                scope,
                frame_bytes: s.frame_bytes,
                timeout: std::time::Duration::from_secs(s.timeout_secs),
            },
        );
    };
    let here = crate::cli::data_dir(args);
    check_other(&here, local)?;
    let node = open_node(args, crate::cli::Opening::Create)?;
    let theirs = Store::open_with(
        local,
        StoreOptions {
            create: false,
            key: other_key(local)?,
            ..StoreOptions::default()
        },
    )
    .with_context(|| format!("opening the other store {}", local.display()))?;
    let done = node
        .sync_with_store(&theirs, &scope, SyncConfig::with_frame_bytes(s.frame_bytes))
        .with_context(|| format!("syncing with {}", local.display()))?;
    let (scoped_here, scoped_there) = done.scoped;
    let equal = done.equal();
    let out = Summary {
        other: local,
        scope: &scope,
        frame_bytes: s.frame_bytes,
        report: &done.report,
        session_s: done.session.as_secs_f64(),
        total_s: done.durable.as_secs_f64(),
        here: &done.here,
        there: &done.there,
        scoped: (scoped_here, scoped_there),
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
            hex(&scoped_here.fingerprint()),
            hex(&scoped_there.fingerprint())
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

struct Summary<'a> {
    other: &'a Path,
    scope: &'a Scope,
    frame_bytes: usize,
    report: &'a LinkReport,
    session_s: f64,
    total_s: f64,
    here: &'a SetRoot,
    there: &'a SetRoot,
    scoped: (Accum, Accum),
    equal: bool,
}

/// One direction of the link, from the initiator's counters.
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
            "scope": {
                "since": self.scope.since, "until": self.scope.until,
                "authors": self.scope.authors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "topics": self.scope.topics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "frame_bytes": self.frame_bytes,
            "round_trips": i.round_trips(),
            "ms": self.session_s * 1e3,
            "durable_ms": self.total_s * 1e3,
            "sent": direction(i.bytes_sent, i.recon_bytes_sent, i.frames_sent, i.events_sent, i.event_bytes_sent),
            "received": direction(i.bytes_received, i.recon_bytes_received, i.frames_received, i.events_received, i.event_bytes_received),
            "have": i.have, "need": i.need, "missing": i.missing,
            "declined": { "here": i.declined, "there": r.declined },
            "initiator_busy_ms": self.report.initiator_busy.as_secs_f64() * 1e3,
            "responder_busy_ms": self.report.responder_busy.as_secs_f64() * 1e3,
            "set": { "here": set_root_json(self.here), "there": set_root_json(self.there),
                      "equal": self.here.fingerprint == self.there.fingerprint },
            "equal": self.equal,
        });
        if *self.scope != Scope::all() {
            let side =
                |a: &Accum| json!({ "fingerprint": hex(&a.fingerprint()), "events": a.count });
            out["scoped"] = json!({ "here": side(&self.scoped.0), "there": side(&self.scoped.1),
                                    "equal": self.scoped.0 == self.scoped.1 });
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
        row("event bytes", i.event_bytes_sent, i.event_bytes_received);
        if i.declined + r.declined > 0 {
            println!(
                "{} events offered were declined (already deleted or replaced on the receiving side)",
                i.declined + r.declined
            );
        }
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
            let scoped = |name: &str, a: &Accum| {
                println!("{name} {} ({} events)", hex(&a.fingerprint()), a.count)
            };
            scoped("scope here: ", &self.scoped.0);
            scoped("scope there:", &self.scoped.1);
        }
        let what = if *self.scope == Scope::all() {
            "roots"
        } else {
            "scoped sets"
        };
        if self.equal {
            println!("{what} equal");
        } else {
            println!("{what} DIFFER");
        }
    }
}

/// The data key of the other store of `xf sync --local`, if it is encrypted: its passphrase
/// from `XF_OTHER_PASSPHRASE`, else `XF_PASSPHRASE`, else the terminal.
fn other_key(dir: &std::path::Path) -> Result<Option<xaeroflux::DataKey>> {
    use crate::secret::{self, Asking};
    let Some(file) = xaeroflux::keys::read_key_file(dir)? else {
        return Ok(None);
    };
    let env = if std::env::var_os(secret::OTHER_PASSPHRASE_ENV).is_some() {
        secret::OTHER_PASSPHRASE_ENV
    } else {
        secret::PASSPHRASE_ENV
    };
    let prompt = format!("Passphrase for {}", dir.display());
    let provider = secret::provider(secret::read(env, &prompt, Asking::Open)?);
    match xaeroflux::keys::unwrap_key(&file, &*provider) {
        Ok(key) => Ok(Some(key)),
        Err(xaeroflux::KeyError::WrongKey) => bail!(
            "wrong passphrase for the other store {} (set {} if it differs from this one's): nothing was changed",
            dir.display(),
            secret::OTHER_PASSPHRASE_ENV
        ),
        Err(e) => Err(e.into()),
    }
}
