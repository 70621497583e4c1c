//! What part of the set a session reconciles: a time window, optionally narrowed to authors
//! and topics. The store's query filter embeds the same type, so which events a window,
//! authors and topics take in is decided by [`Scope::contains`] alone.

use xaeroflux_event::{EventRef, PublicKey, SetKey, Topic};

use crate::error::WireError;
use crate::wire::{put_varint, Reader};

/// The part of the set a session covers, and the window, authors and topics of a store query.
/// In a session, time bounds use the persistent index directly; authors and topics narrow the
/// set to a view gathered from the store's secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Only events with `created_at >= since` (ms).
    pub since: Option<u64>,
    /// Only events with `created_at <= until` (ms).
    pub until: Option<u64>,
    /// Only events by these authors (empty: any author).
    pub authors: Vec<PublicKey>,
    /// Only events in these topics (empty: any topic).
    pub topics: Vec<Topic>,
}

impl Scope {
    /// Everything.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// The inclusive lower key bound.
    pub fn lower(&self) -> SetKey {
        SetKey::at_time(self.since.unwrap_or(0))
    }

    /// The exclusive upper key bound.
    pub fn upper(&self) -> SetKey {
        match self.until {
            Some(u) if u < u64::MAX - 1 => SetKey::at_time(u + 1),
            _ => SetKey::MAX,
        }
    }

    /// Whether the scope is a plain time window, answered by the persistent index.
    pub fn is_window(&self) -> bool {
        self.authors.is_empty() && self.topics.is_empty()
    }

    /// Whether an event belongs to the scope.
    pub fn contains(&self, ev: &EventRef<'_>) -> bool {
        let key = SetKey {
            created_at: ev.created_at(),
            id: *ev.id(),
        };
        key >= self.lower()
            && key < self.upper()
            && (self.authors.is_empty() || self.authors.contains(ev.author()))
            && (self.topics.is_empty() || self.topics.contains(ev.topic()))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.since.map_or(0, |s| s.saturating_add(1)));
        put_varint(out, self.until.map_or(0, |u| u.saturating_add(1)));
        put_varint(out, self.authors.len() as u64);
        for a in &self.authors {
            out.extend_from_slice(&a.0);
        }
        put_varint(out, self.topics.len() as u64);
        for t in &self.topics {
            out.extend_from_slice(&t.0);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, values_max: usize) -> Result<Scope, WireError> {
        let opt = |v: u64| v.checked_sub(1);
        let since = opt(r.varint("scope since")?);
        let until = opt(r.varint("scope until")?);
        let n = r.count(values_max, 32, "scope authors")?;
        let authors = (0..n)
            .map(|_| r.array::<32>("scope authors").map(PublicKey))
            .collect::<Result<_, _>>()?;
        let n = r.count(values_max, 32, "scope topics")?;
        let topics = (0..n)
            .map(|_| r.array::<32>("scope topics").map(Topic))
            .collect::<Result<_, _>>()?;
        let scope = Scope {
            since,
            until,
            authors,
            topics,
        };
        if scope.lower() >= scope.upper() {
            return Err(WireError::Malformed {
                what: "scope: since after until",
            });
        }
        Ok(scope)
    }
}
