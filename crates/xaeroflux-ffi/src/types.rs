//! The records the binding hands out and takes: owned, plain, with ids, keys and topics as
//! 64 lower-case hex digits.

use xaeroflux::{EventId, Kind, Outcome, PublicKey, Topic};

use crate::error::XfError;

/// A stored event, owned: a copy made in a read transaction that ended before the call
/// returned. It was verified (signature, id, bounds) when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Event {
    /// The event id, 64 hex digits.
    pub id: String,
    /// The author's public key, 64 hex digits.
    pub author: String,
    /// The kind's name ("post", "reply", "reaction", "follow-list", "deletion", "profile",
    /// "envelope", "key-bundle") or, for an app's own kind, its number.
    pub kind: String,
    /// The kind's number.
    pub kind_code: u32,
    /// When its author created it, in ms since the Unix epoch (the author's clock).
    pub created_at_ms: u64,
    /// Its topic, 64 hex digits ([`topic_id`] of a name), if any.
    pub topic: Option<String>,
    /// The event it replies to, reacts to or deletes, if any.
    pub reference: Option<String>,
    /// The text of a post or reply, the content of a reaction, the reason of a deletion.
    pub text: Option<String>,
    /// The encoded payload (for an app's own kinds, what the app put there).
    pub payload: Vec<u8>,
}

impl From<&xaeroflux::Event> for Event {
    fn from(e: &xaeroflux::Event) -> Event {
        let kind = e.kind();
        Event {
            id: e.id().to_string(),
            author: e.author().to_string(),
            kind: kind_name(kind),
            kind_code: kind.get(),
            created_at_ms: e.created_at(),
            topic: e.topic().map(|t| t.to_string()),
            reference: e.reference().map(|r| r.to_string()),
            text: e.text().map(str::to_owned),
            payload: e.payload().to_vec(),
        }
    }
}

fn kind_name(kind: Kind) -> String {
    kind.name()
        .map_or_else(|| kind.get().to_string(), str::to_owned)
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Published {
    /// The new event's id.
    pub id: String,
    /// "stored"; or "duplicate" (an identical event was stored already), "deleted" (its
    /// target deleted it earlier), "superseded" (a newer profile or follow list is stored).
    pub outcome: String,
    /// Its local sequence number, when stored.
    pub seq: Option<u64>,
}

impl From<xaeroflux::Published> for Published {
    fn from(p: xaeroflux::Published) -> Published {
        let (outcome, seq) = match p.outcome {
            Outcome::Stored { seq } => ("stored", Some(seq)),
            Outcome::Duplicate => ("duplicate", None),
            Outcome::Deleted => ("deleted", None),
            Outcome::Superseded => ("superseded", None),
            _ => ("other", None),
        };
        Published {
            id: p.id.to_string(),
            outcome: outcome.into(),
            seq,
        }
    }
}

/// Which events a query or subscription wants. Empty lists match everything; the fields must
/// all match; within a list any value does.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct Filter {
    /// Event ids.
    #[uniffi(default)]
    pub ids: Vec<String>,
    /// Kinds, by name ("post") or number.
    #[uniffi(default)]
    pub kinds: Vec<String>,
    /// Authors' public keys.
    #[uniffi(default)]
    pub authors: Vec<String>,
    /// Topics: names, or 64 hex digits.
    #[uniffi(default)]
    pub topics: Vec<String>,
    /// Events referenced (replied to, reacted to, deleted).
    #[uniffi(default)]
    pub references: Vec<String>,
    /// Created at or after, ms since the Unix epoch.
    #[uniffi(default)]
    pub since_ms: Option<u64>,
    /// Created at or before, ms since the Unix epoch.
    #[uniffi(default)]
    pub until_ms: Option<u64>,
    /// Most results (a query: 500 if unset, at most 10,000).
    #[uniffi(default)]
    pub limit: Option<u32>,
}

impl Filter {
    pub(crate) fn to_core(&self) -> Result<xaeroflux::Filter, XfError> {
        let filter = xaeroflux::Filter {
            ids: self
                .ids
                .iter()
                .map(|s| event_id(s))
                .collect::<Result<_, _>>()?,
            kinds: self
                .kinds
                .iter()
                .map(|s| kind(s))
                .collect::<Result<_, _>>()?,
            references: self
                .references
                .iter()
                .map(|s| event_id(s))
                .collect::<Result<_, _>>()?,
            scope: xaeroflux::Scope {
                since: self.since_ms,
                until: self.until_ms,
                authors: self
                    .authors
                    .iter()
                    .map(|s| public_key(s))
                    .collect::<Result<_, _>>()?,
                topics: self.topics.iter().map(|s| Topic::from_text(s)).collect(),
            },
            limit: self.limit.map(|l| l as usize),
        };
        filter.validate()?;
        Ok(filter)
    }
}

/// A profile: what an author says of themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct Profile {
    /// Display name.
    #[uniffi(default)]
    pub name: String,
    /// Free text.
    #[uniffi(default)]
    pub about: String,
    /// A picture's address or content hash.
    #[uniffi(default)]
    pub picture: String,
}

/// An event with the replies and reactions below it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Thread {
    /// The root, if stored here.
    pub root: Option<Event>,
    /// Replies and reactions in conversation order: depth first, oldest first among siblings.
    pub entries: Vec<ThreadEntry>,
    /// True if the limit cut the thread short.
    pub truncated: bool,
}

/// One reply or reaction of a thread.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ThreadEntry {
    /// Depth below the root (direct replies and reactions: 1).
    pub depth: u32,
    /// The event.
    pub event: Event,
}

impl From<xaeroflux::OwnedThread> for Thread {
    fn from(t: xaeroflux::OwnedThread) -> Thread {
        Thread {
            root: t.root.as_ref().map(Event::from),
            entries: t
                .entries
                .iter()
                .map(|(depth, e)| ThreadEntry {
                    depth: *depth,
                    event: e.into(),
                })
                .collect(),
            truncated: t.truncated,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportReport {
    /// Events read.
    pub seen: u64,
    /// Newly stored.
    pub stored: u64,
    /// Stored already.
    pub duplicates: u64,
    /// Deleted by their authors earlier, or superseded by a newer replaceable event.
    pub dropped: u64,
    /// Refused by verification (forged, malformed, out of bounds): not stored.
    pub rejected: u64,
    /// Why the first refused ones were refused, with their position in the file.
    pub rejections: Vec<String>,
}

impl From<xaeroflux::IngestReport> for ImportReport {
    fn from(r: xaeroflux::IngestReport) -> ImportReport {
        ImportReport {
            seen: r.seen,
            stored: r.stored,
            duplicates: r.duplicates,
            dropped: r.deleted + r.superseded,
            rejected: r.rejected_total,
            rejections: r
                .rejected
                .iter()
                .map(|x| format!("event {}: {}", x.index, x.error))
                .collect(),
        }
    }
}

/// The topic id of a topic name, as events carry it (64 hex digits); 64 hex digits are taken
/// as an id already.
#[uniffi::export]
pub fn topic_id(name: String) -> String {
    Topic::from_text(&name).to_string()
}

pub(crate) fn event_id(s: &str) -> Result<EventId, XfError> {
    s.parse()
        .map_err(|_| XfError::invalid(format!("{s:?} is not an event id (64 hex digits)")))
}

pub(crate) fn public_key(s: &str) -> Result<PublicKey, XfError> {
    s.parse()
        .map_err(|_| XfError::invalid(format!("{s:?} is not a public key (64 hex digits)")))
}

pub(crate) fn kind(s: &str) -> Result<Kind, XfError> {
    Kind::parse(s).ok_or_else(|| {
        XfError::invalid(format!(
            "{s:?} is not a kind: post, reply, reaction, follow-list, deletion, profile, \
             envelope, key-bundle, or a number"
        ))
    })
}

/// 32 bytes that are not an event id (a conversation id) as the same 64 hex digits.
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    EventId(*bytes).to_string()
}

pub(crate) fn parse_hex32(s: &str, what: &str) -> Result<[u8; 32], XfError> {
    s.parse::<EventId>()
        .map(|id| id.0)
        .map_err(|_| XfError::invalid(format!("{s:?} is not a {what} (64 hex digits)")))
}
