//! Arguments and dispatch.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xaeroflux::{EventId, Kind, Node, PublicKey, Topic};

/// Xaeroflux: signed social events in an embedded store.
#[derive(Debug, Parser)]
#[command(name = "xf", version, about)]
pub struct Args {
    /// Data directory (default: $XF_DATA, else $XDG_DATA_HOME/xaeroflux, else ~/.local/share/xaeroflux).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and an identity key (mode 0600).
    Init,
    /// Publish a post, or a reply with --reply-to.
    Post {
        /// The text.
        text: String,
        /// Topic: a name, or 64 hex digits.
        #[arg(long)]
        topic: Option<String>,
        /// The event replied to.
        #[arg(long, value_name = "ID")]
        reply_to: Option<EventId>,
    },
    /// React to an event.
    React {
        /// The event.
        id: EventId,
        /// The reaction, e.g. "+" or an emoji.
        text: String,
    },
    /// Follow authors (adds to your follow list).
    Follow {
        /// Authors' public keys.
        #[arg(required = true)]
        authors: Vec<PublicKey>,
    },
    /// Delete one of your events.
    Delete {
        /// The event.
        id: EventId,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set your profile.
    Profile {
        /// Display name.
        #[arg(long)]
        name: String,
        /// About text.
        #[arg(long, default_value = "")]
        about: String,
        /// Picture address.
        #[arg(long, default_value = "")]
        picture: String,
    },
    /// Show one event.
    Get {
        /// The event id.
        id: EventId,
    },
    /// Query events, newest first.
    Query(QueryArgs),
    /// Newest posts and replies from the authors someone follows.
    Feed {
        /// Whose feed (default: yours).
        #[arg(long)]
        author: Option<PublicKey>,
        /// Most events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only events at or before this time (ms since the Unix epoch).
        #[arg(long)]
        until: Option<u64>,
    },
    /// An event with its replies and reactions.
    Thread {
        /// The root event.
        id: EventId,
        /// Most entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Write every event to a portable export file.
    Export {
        /// The file to write.
        file: PathBuf,
    },
    /// Verify and store every event of an export file.
    Import {
        /// The file to read.
        file: PathBuf,
        /// Events per batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Event count, bytes on disk, index sizes.
    Stats,
    /// Re-verify every event and check every index against the events.
    Verify,
    /// Reconcile with another store and exchange what each lacks; both end with the same set.
    Sync(crate::sync::SyncArgs),
    /// Run a node: listen, discover peers, sync on every connection, gossip live events.
    Node(crate::net::NodeArgs),
    /// The peers a node on this data directory knows, as it last recorded them.
    Peers,
    /// Relay traffic to another address, dropping and delaying packets on purpose (a network
    /// simulator for tests).
    #[command(hide = true)]
    Netsim(crate::netsim::NetsimArgs),
    /// Generate a synthetic social graph into the store.
    Gen {
        /// Events to generate.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Authors.
        #[arg(long, default_value_t = 1000)]
        authors: u32,
        /// Seed (same seed, same events).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Benchmarks, each next to a baseline run in the same process.
    Bench(crate::bench::BenchArgs),
    /// Build a small social network in a temporary store and show feeds, threads, reactions.
    Demo,
}

/// Filter flags of `xf query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Event ids.
    #[arg(long = "id")]
    pub ids: Vec<EventId>,
    /// Authors.
    #[arg(long = "author")]
    pub authors: Vec<PublicKey>,
    /// Kinds: profile, post, reply, reaction, follow-list, deletion, or a number.
    #[arg(long = "kind", value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Topics: names or 64 hex digits.
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<Topic>,
    /// Referenced events.
    #[arg(long = "reference")]
    pub references: Vec<EventId>,
    /// Oldest time included (ms since the Unix epoch).
    #[arg(long)]
    pub since: Option<u64>,
    /// Newest time included (ms since the Unix epoch).
    #[arg(long)]
    pub until: Option<u64>,
    /// Most results.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

pub fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| format!("unknown kind {s:?}"))
}

/// A frame cap in bytes, within the range every node accepts.
pub fn parse_frame_bytes(s: &str) -> Result<usize, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    xaeroflux_sync::check_frame_bytes(n)
}

pub fn parse_topic(s: &str) -> Result<Topic, String> {
    Ok(match s.parse::<Topic>() {
        Ok(t) if s.len() == 64 => t,
        _ => Topic::named(s),
    })
}

pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XF_DATA") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("xaeroflux");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/xaeroflux"),
        None => PathBuf::from("xaeroflux-data"),
    }
}

/// Opens the node in the data directory, for writing.
pub fn open_node(args: &Args, create_identity: bool) -> Result<Node> {
    let dir = args.data.clone().unwrap_or_else(default_data_dir);
    Node::builder()
        .data_dir(&dir)
        .create_identity(create_identity)
        .open()
        .with_context(|| format!("opening {}", dir.display()))
}

/// Opens the node for reading: on read-only media, the store opens read-only instead of failing.
pub fn open_node_for_reading(args: &Args) -> Result<Node> {
    let dir = args.data.clone().unwrap_or_else(default_data_dir);
    let open = |read_only| {
        Node::builder()
            .data_dir(&dir)
            .store_options(xaeroflux::StoreOptions {
                read_only,
                ..Default::default()
            })
            .open()
    };
    match open(false) {
        Err(xaeroflux::NodeError::Open(xaeroflux::OpenError::ReadOnly { .. })) => open(true),
        other => other,
    }
    .with_context(|| format!("opening {}", dir.display()))
}

pub fn run(args: Args) -> Result<()> {
    use Command::*;
    match &args.command {
        Init => crate::social::init(&args),
        Post {
            text,
            topic,
            reply_to,
        } => crate::social::post(&args, text, topic.as_deref(), *reply_to),
        React { id, text } => crate::social::react(&args, *id, text),
        Follow { authors } => crate::social::follow(&args, authors),
        Delete { id, reason } => crate::social::delete(&args, *id, reason),
        Profile {
            name,
            about,
            picture,
        } => crate::social::profile(&args, name, about, picture),
        Get { id } => crate::read::get(&args, id),
        Query(q) => crate::read::query(&args, q),
        Feed {
            author,
            limit,
            until,
        } => crate::read::feed(&args, *author, *limit, *until),
        Thread { id, limit } => crate::read::thread(&args, id, *limit),
        Export { file } => crate::port::export(&args, file),
        Import { file, batch } => crate::port::import(&args, file, *batch),
        Stats => crate::read::stats(&args),
        Verify => crate::read::verify(&args),
        Gen {
            events,
            authors,
            seed,
        } => crate::port::gen(&args, *events, *authors, *seed),
        Sync(s) => crate::sync::run(&args, s),
        Node(n) => crate::net::node(&args, n),
        Peers => crate::net::peers(&args),
        Netsim(n) => crate::netsim::run(n),
        Bench(b) => crate::bench::run(&args, b),
        Demo => crate::demo::run(&args),
    }
}
