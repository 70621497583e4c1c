//! Arguments and dispatch.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use xaeroflux::{IdPrefix, Kind, Node, PublicKey, Topic, PAYLOAD_BYTES_MAX, QUERY_LIMIT_MAX};

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
    /// Create a new store without encryption (by default a new store is encrypted under a
    /// passphrase: `XF_PASSPHRASE`, else asked on the terminal). Existing stores open as they are.
    #[arg(long, global = true)]
    pub plain: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `xf group` subcommands. GROUP is a conversation's id (or a unique prefix of 4 or more hex
/// digits) or a group's name.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group with you as its only member and admin; prints its id.
    Create {
        /// Its name.
        name: String,
    },
    /// Add authors (admins only).
    Add {
        /// The group.
        group: String,
        /// Authors' public keys.
        #[arg(required = true)]
        authors: Vec<PublicKey>,
        /// Make them admins.
        #[arg(long)]
        admin: bool,
    },
    /// Remove authors (admins only; members, or admins added after you).
    Remove {
        /// The group.
        group: String,
        /// Authors' public keys.
        #[arg(required = true)]
        authors: Vec<PublicKey>,
    },
    /// Leave a group.
    Leave {
        /// The group.
        group: String,
    },
    /// Send a message.
    Send {
        /// The group (or a direct conversation).
        group: String,
        /// The text.
        text: String,
    },
    /// Read a group's messages, oldest first.
    Read {
        /// The group (or a direct conversation).
        group: String,
    },
    /// List your conversations.
    List,
    /// Renew your conversation keys after a suspected compromise: new prekeys, new sessions,
    /// and every member rotates its sender key when it reads the update.
    UpdateKeys,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and an identity key (mode 0600). The store is encrypted under a
    /// passphrase (`XF_PASSPHRASE`, else asked twice on the terminal) unless `--plain`.
    Init,
    /// Change the passphrase of an encrypted store: the data key is rewrapped, no data is
    /// rewritten. The new one comes from `XF_NEW_PASSPHRASE`, else the terminal.
    Passwd,
    /// Replace the data key of an encrypted store: every event is copied (and verified) into
    /// a new store under a new random key, wrapped by the same passphrase, and the copy takes
    /// the store's place once its set matches. No node may run on it meanwhile.
    Rekey,
    /// Encrypt a plain store (one made with `--plain`, or by an earlier release): the same
    /// copy as `rekey`, under a new passphrase (`XF_PASSPHRASE`, else asked twice).
    Encrypt,
    /// Publish a post, or a reply with --reply-to. A post's payload holds at most 64 KiB
    /// (65,536 bytes) of encoded text.
    Post {
        /// The text; `-` reads it from standard input.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// Read the text from this file (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Topic: a name, or 64 hex digits.
        #[arg(long)]
        topic: Option<String>,
        /// The event replied to (its id, or a unique prefix of 4 or more hex digits).
        #[arg(long, value_name = "ID")]
        reply_to: Option<IdPrefix>,
    },
    /// React to an event.
    React {
        /// The event (its id, or a unique prefix of 4 or more hex digits).
        id: IdPrefix,
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
        /// The event (its id, or a unique prefix of 4 or more hex digits).
        id: IdPrefix,
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
    /// Send an end-to-end encrypted message to an author, starting a direct conversation if
    /// there is none (the author's published key bundle is enough: they may be offline).
    Dm {
        /// The author's public key.
        author: PublicKey,
        /// The text.
        text: String,
    },
    /// Private conversations and their newest messages, after reading what arrived.
    Inbox {
        /// Newest messages shown per conversation.
        #[arg(long, default_value_t = 3)]
        last: usize,
    },
    /// End-to-end encrypted groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Show one event.
    Get {
        /// The event (its id, or a unique prefix of 4 or more hex digits).
        id: IdPrefix,
    },
    /// Query events, newest first.
    Query(QueryArgs),
    /// Newest posts and replies from the authors someone follows.
    Feed {
        /// Whose feed (default: yours).
        #[arg(long)]
        author: Option<PublicKey>,
        /// Most events (1 to 10,000).
        #[arg(long, default_value_t = 50, value_parser = parse_limit)]
        limit: usize,
        /// Only events at or before this time (ms since the Unix epoch).
        #[arg(long)]
        until: Option<u64>,
    },
    /// An event with its replies and reactions.
    Thread {
        /// The root event (its id, or a unique prefix of 4 or more hex digits).
        id: IdPrefix,
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
    Peers {
        /// The table of anonymous mode (onion addresses only), kept apart.
        #[arg(long)]
        anonymous: bool,
    },
    /// Generate a synthetic social graph into the store.
    Gen {
        /// Events to generate.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Authors (at least 1).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        authors: u32,
        /// Seed (same seed, same events).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build a small social network in a temporary store and show feeds, threads, reactions.
    Demo,
}

/// Filter flags of `xf query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Event ids (or unique prefixes of 4 or more hex digits).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<IdPrefix>,
    /// Authors.
    #[arg(long = "author")]
    pub authors: Vec<PublicKey>,
    /// Kinds: profile, post, reply, reaction, follow-list, deletion, or a number.
    #[arg(long = "kind", value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Topics: names or 64 hex digits.
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<Topic>,
    /// Referenced events (ids, or unique prefixes of 4 or more hex digits).
    #[arg(long = "reference", value_name = "ID")]
    pub references: Vec<IdPrefix>,
    /// Oldest time included (ms since the Unix epoch).
    #[arg(long)]
    pub since: Option<u64>,
    /// Newest time included (ms since the Unix epoch).
    #[arg(long)]
    pub until: Option<u64>,
    /// Most results (1 to 10,000).
    #[arg(long, default_value_t = 100, value_parser = parse_limit)]
    pub limit: usize,
}

/// A result count within what the store answers at once.
pub fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=QUERY_LIMIT_MAX).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a count from 1 to {QUERY_LIMIT_MAX}")),
    }
}

/// A mistake in how `xf` was called, found after parsing (flags that exclude each other's
/// values): printed as clap prints its own, and the exit status is 2.
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    Args::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// The text of a post: the argument, or standard input for `-`, or a file; refused with a
/// clear error beyond what one event holds, without reading further.
pub fn post_text(text: Option<&str>, file: Option<&std::path::Path>) -> Result<String> {
    use std::io::Read;
    // `-` as the text or as the file both mean standard input.
    let path = match (text, file) {
        (Some("-"), _) => std::path::Path::new("-"),
        (Some(text), _) => return Ok(text.to_owned()),
        (None, Some(path)) => path,
        (None, None) => usage_error("a post needs its text, `-` or --file"),
    };
    let (mut input, from): (Box<dyn Read>, String) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), "standard input".into())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        (Box::new(file), path.display().to_string())
    };
    let mut bytes = Vec::new();
    input
        .by_ref()
        .take(PAYLOAD_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {from}"))?;
    if bytes.len() > PAYLOAD_BYTES_MAX {
        anyhow::bail!(
            "the text from {from} is larger than a post holds (at most {PAYLOAD_BYTES_MAX} bytes)"
        );
    }
    String::from_utf8(bytes).with_context(|| format!("the text from {from} is not UTF-8"))
}

pub fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| format!("unknown kind {s:?}"))
}

/// A peer's address: a multiaddr, not empty.
pub fn parse_addr(s: &str) -> Result<xaeroflux::Multiaddr, String> {
    if s.trim().is_empty() {
        return Err("an empty address: give a multiaddr such as /ip4/192.0.2.1/udp/4001/quic-v1/p2p/<peer id>, as `xf node` prints it".into());
    }
    s.parse().map_err(|e| {
        format!(
            "{s:?} is not a multiaddr ({e}), such as /ip4/192.0.2.1/udp/4001/quic-v1/p2p/<peer id>"
        )
    })
}

pub fn parse_topic(s: &str) -> Result<Topic, String> {
    Ok(Topic::from_text(s))
}

fn default_data_dir() -> PathBuf {
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

/// How a command opens the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `xf init`: create the store and the identity.
    Init,
    /// Commands that bring events in from elsewhere (import, gen, sync): create the store if
    /// there is none.
    Create,
    /// Every other command: the store must exist, and nothing is created.
    Existing,
}

/// The data directory this invocation uses.
pub fn data_dir(args: &Args) -> PathBuf {
    args.data.clone().unwrap_or_else(default_data_dir)
}

/// A node builder for `dir` with the key provider it needs: the passphrase of an encrypted
/// store, or a new one for a store this command creates (unless `--plain`).
pub fn builder_for(
    args: &Args,
    dir: &std::path::Path,
    creates: bool,
) -> Result<xaeroflux::NodeBuilder> {
    let builder = Node::builder().data_dir(dir);
    Ok(
        match crate::secret::provider_for(dir, creates, args.plain)? {
            Some(provider) => builder.key_provider(provider),
            None => builder,
        },
    )
}

fn open_with(
    args: &Args,
    dir: &std::path::Path,
    opening: Opening,
    read_only: bool,
) -> Result<Node> {
    builder_for(args, dir, opening != Opening::Existing)?
        .create_identity(opening == Opening::Init)
        .store_options(xaeroflux::StoreOptions {
            read_only,
            create: opening != Opening::Existing,
            ..Default::default()
        })
        .open()
        .map_err(|e| open_failed(dir, e))
}

/// A failed open, said to a person: what to do about a missing store or a wrong passphrase;
/// every other error names the directory or file itself.
pub fn open_failed(dir: &std::path::Path, e: xaeroflux::NodeOpenError) -> anyhow::Error {
    use xaeroflux::{KeyError, NodeOpenError, OpenError};
    match e {
        NodeOpenError::Open(OpenError::Missing { .. }) => anyhow::anyhow!(
            "there is no store in {}: create one with `xf init`, or point --data or XF_DATA at one",
            dir.display()
        ),
        NodeOpenError::Key(KeyError::WrongKey) => anyhow::anyhow!(
            "wrong passphrase for the store in {}: nothing was read or changed",
            dir.display()
        ),
        other => other.into(),
    }
}

/// Opens the node in the data directory, for writing.
pub fn open_node(args: &Args, opening: Opening) -> Result<Node> {
    let dir = data_dir(args);
    open_with(args, &dir, opening, false)
}

/// Opens an existing store for reading: on read-only media it opens read-only instead of
/// failing.
pub fn open_node_for_reading(args: &Args) -> Result<Node> {
    let dir = data_dir(args);
    match open_with(args, &dir, Opening::Existing, false) {
        Err(e)
            if matches!(
                e.downcast_ref::<xaeroflux::NodeOpenError>(),
                Some(xaeroflux::NodeOpenError::Open(
                    xaeroflux::OpenError::ReadOnly { .. }
                ))
            ) =>
        {
            open_with(args, &dir, Opening::Existing, true)
        }
        other => other,
    }
}

pub fn run(args: Args) -> Result<()> {
    use Command::*;
    match &args.command {
        Init => crate::social::init(&args),
        Passwd => crate::social::passwd(&args),
        Rekey => crate::social::reseal(&args, true),
        Encrypt => crate::social::reseal(&args, false),
        Post {
            text,
            file,
            topic,
            reply_to,
        } => crate::social::post(
            &args,
            &post_text(text.as_deref(), file.as_deref())?,
            topic.as_deref(),
            reply_to.as_ref(),
        ),
        React { id, text } => crate::social::react(&args, id, text),
        Follow { authors } => crate::social::follow(&args, authors),
        Delete { id, reason } => crate::social::delete(&args, id, reason),
        Profile {
            name,
            about,
            picture,
        } => crate::social::profile(&args, name, about, picture),
        Dm { author, text } => crate::convo::dm(&args, author, text),
        Inbox { last } => crate::convo::inbox(&args, *last),
        Group { command } => crate::convo::group(&args, command),
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
        Peers { anonymous } => crate::net::peers(&args, *anonymous),
        Demo => crate::demo::run(&args),
    }
}
