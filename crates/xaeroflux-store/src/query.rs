//! Filters, the query planner, and the feed and thread queries.
//!
//! A query picks one index by a fixed order of selectivity (ids, references, authors, topics,
//! kinds, time), walks each of its keys newest first, merges the walks, and checks every
//! candidate against the whole filter. The order mirrors what social workloads look like: an
//! event has few replies, an author writes a small share of all events, a topic more, a kind
//! is a large share of everything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use heed::types::Bytes;
use heed::RoRevPrefix;
use xaeroflux_event::{EventId, EventRef, Kind, PublicKey};
use xaeroflux_sync::Scope;

use crate::error::{QueryError, ReadError};
use crate::read::ReadTxn;
use crate::seal::Slot;
use crate::tables::{kind_key, Pos, Table};

/// Results returned when a filter names no limit.
pub const QUERY_LIMIT_DEFAULT: usize = 500;
/// Largest limit a query accepts.
pub const QUERY_LIMIT_MAX: usize = 10_000;
/// Most values one filter field may list.
pub const FILTER_VALUES_MAX: usize = 10_000;

/// Which events a query or subscription wants. Empty lists match everything; several fields
/// must all match; within a list any value matches. The time window, authors and topics are a
/// [`Scope`], the same type a sync session covers, matched by the same code
/// ([`Scope::contains`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event ids.
    pub ids: Vec<EventId>,
    /// Kinds.
    pub kinds: Vec<Kind>,
    /// Referenced events.
    pub references: Vec<EventId>,
    /// The time window (`since`, `until`: ms, inclusive), authors and topics.
    pub scope: Scope,
    /// Most results; [`QUERY_LIMIT_DEFAULT`] if unset.
    pub limit: Option<usize>,
}

impl Filter {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), QueryError> {
        let lists = [
            ("ids", self.ids.len()),
            ("authors", self.scope.authors.len()),
            ("kinds", self.kinds.len()),
            ("topics", self.scope.topics.len()),
            ("references", self.references.len()),
        ];
        for (field, got) in lists {
            if got > FILTER_VALUES_MAX {
                return Err(QueryError::FilterTooLarge {
                    field,
                    got,
                    max: FILTER_VALUES_MAX,
                });
            }
        }
        if let Some(got) = self.limit.filter(|&l| l > QUERY_LIMIT_MAX) {
            return Err(QueryError::LimitTooLarge {
                got,
                max: QUERY_LIMIT_MAX,
            });
        }
        if let (Some(since), Some(until)) = (self.scope.since, self.scope.until) {
            if since > until {
                return Err(QueryError::EmptyRange { since, until });
            }
        }
        Ok(())
    }

    /// True if the event matches every field.
    pub fn matches(&self, ev: &EventRef<'_>) -> bool {
        (self.ids.is_empty() || self.ids.contains(ev.id()))
            && (self.kinds.is_empty() || self.kinds.contains(&ev.kind()))
            && (self.references.is_empty() || self.references.contains(ev.reference()))
            && self.scope.contains(ev)
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(QUERY_LIMIT_DEFAULT)
    }
}

/// The events in a scope (a query still stops at its limit; a scan does not).
impl From<Scope> for Filter {
    fn from(scope: Scope) -> Filter {
        Filter {
            scope,
            ..Filter::default()
        }
    }
}

/// One event of a thread with its depth below the root (direct replies and reactions: 1).
#[derive(Debug, Clone, Copy)]
pub struct ThreadEntry<'t> {
    /// Depth below the root.
    pub depth: u32,
    /// The reply or reaction.
    pub event: EventRef<'t>,
}

/// An event with the replies and reactions below it.
#[derive(Debug, Clone)]
pub struct Thread<'t> {
    /// The root, if stored.
    pub root: Option<EventRef<'t>>,
    /// Replies and reactions in conversation order: depth first, oldest first among siblings.
    pub entries: Vec<ThreadEntry<'t>>,
    /// True if `limit` cut the thread short.
    pub truncated: bool,
}

/// A newest-first walk of one key's positions in a duplicate-sorted index.
struct KeyWalk<'t> {
    iter: RoRevPrefix<'t, Bytes, Bytes>,
}

impl KeyWalk<'_> {
    fn next_pos(&mut self) -> Result<Option<Pos>, ReadError> {
        match self.iter.next() {
            Some(item) => {
                let (_, value) = item?;
                Pos::decode(value)
                    .map(Some)
                    .ok_or_else(|| ReadError::Corrupt("index value is not a position".into()))
            }
            None => Ok(None),
        }
    }
}

/// Merges several newest-first walks into one newest-first stream of positions.
struct Merge<'t> {
    walks: Vec<KeyWalk<'t>>,
    heap: BinaryHeap<(Pos, usize)>,
    since: u64,
    until: u64,
}

impl<'t> Merge<'t> {
    fn new(walks: Vec<KeyWalk<'t>>, since: u64, until: u64) -> Result<Merge<'t>, ReadError> {
        let mut merge = Merge {
            heap: BinaryHeap::with_capacity(walks.len()),
            walks,
            since,
            until,
        };
        for i in 0..merge.walks.len() {
            merge.advance(i)?;
        }
        Ok(merge)
    }

    /// Pushes walk `i`'s next position inside `[since, until]`, skipping newer ones.
    fn advance(&mut self, i: usize) -> Result<(), ReadError> {
        while let Some(pos) = self.walks[i].next_pos()? {
            if pos.created_at > self.until {
                continue;
            }
            if pos.created_at >= self.since {
                self.heap.push((pos, i));
            }
            break;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Pos>, ReadError> {
        let Some((pos, i)) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(i)?;
        Ok(Some(pos))
    }
}

impl<'s> ReadTxn<'s> {
    /// Events matching `filter`, newest first (ties by local arrival).
    pub fn query(&self, filter: &Filter) -> Result<Vec<EventRef<'_>>, QueryError> {
        filter.validate()?;
        let limit = filter.limit();
        if limit == 0 {
            return Ok(Vec::new());
        }
        if !filter.ids.is_empty() {
            return self.query_ids(filter, limit);
        }
        let mut merge = self.plan(filter)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let Some(pos) = merge.next()? else { break };
            let ev = self.at(pos)?;
            if filter.matches(&ev) {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Visits every event matching `filter`, newest first, without the query limit, until `f`
    /// breaks. For bulk work (gathering a sync scope); `query` is the bounded form.
    pub fn scan(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(EventRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> Result<(), QueryError> {
        filter.validate()?;
        if !filter.ids.is_empty() {
            for ev in self.query_ids(filter, filter.ids.len())? {
                if f(ev).is_break() {
                    break;
                }
            }
            return Ok(());
        }
        let mut merge = self.plan(filter)?;
        while let Some(pos) = merge.next()? {
            // Each event is opened on its own (on an encrypted store, into a buffer dropped
            // after the visit, not the transaction's memory): a scan's memory stays flat.
            let body = self.event_owned(pos.seq)?.ok_or_else(|| {
                ReadError::Corrupt(format!("index points at missing event {}", pos.seq))
            })?;
            let ev = crate::read::decode_stored(&body, pos.seq)?;
            check_position(&ev, pos)?;
            if filter.matches(&ev) && f(ev).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The index walk a filter uses: the most selective field's index, merged newest first.
    fn plan(&self, filter: &Filter) -> Result<Merge<'_>, QueryError> {
        let t = *self.tables();
        let stored = |slot: Slot, raw: Vec<u8>| self.key(slot, &[&raw]).to_vec();
        let (table, keys): (Table, Vec<Vec<u8>>) = if !filter.references.is_empty() {
            (
                t.by_ref,
                keys_of(
                    filter
                        .references
                        .iter()
                        .map(|r| stored(Slot::Ref, r.0.to_vec())),
                ),
            )
        } else if !filter.scope.authors.is_empty() {
            (
                t.by_author,
                keys_of(
                    filter
                        .scope
                        .authors
                        .iter()
                        .map(|a| stored(Slot::Author, a.0.to_vec())),
                ),
            )
        } else if !filter.scope.topics.is_empty() {
            (
                t.by_topic,
                keys_of(
                    filter
                        .scope
                        .topics
                        .iter()
                        .map(|x| stored(Slot::Topic, x.0.to_vec())),
                ),
            )
        } else if !filter.kinds.is_empty() {
            (
                t.by_kind,
                keys_of(
                    filter
                        .kinds
                        .iter()
                        .map(|k| stored(Slot::Kind, kind_key(k.0).to_vec())),
                ),
            )
        } else {
            // No field to narrow by: the kinds partition every event, so merging all of them
            // walks the whole store in time order.
            (t.by_kind, self.kind_keys()?)
        };
        let mut walks = Vec::with_capacity(keys.len());
        for key in &keys {
            walks.push(KeyWalk {
                iter: table.rev_prefix_iter(&self.txn, key)?,
            });
        }
        Ok(Merge::new(
            walks,
            filter.scope.since.unwrap_or(0),
            filter.scope.until.unwrap_or(u64::MAX),
        )?)
    }

    fn at(&self, pos: Pos) -> Result<EventRef<'_>, ReadError> {
        let ev = self.by_seq(pos.seq)?.ok_or_else(|| {
            ReadError::Corrupt(format!("index points at missing event {}", pos.seq))
        })?;
        check_position(&ev, pos)?;
        Ok(ev)
    }

    fn query_ids(&self, filter: &Filter, limit: usize) -> Result<Vec<EventRef<'_>>, QueryError> {
        let mut out = Vec::new();
        let mut ids = filter.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            if let Some(ev) = self.get(id)? {
                if filter.matches(&ev) {
                    out.push(ev);
                }
            }
        }
        out.sort_by_key(|ev| Reverse((ev.created_at(), *ev.id())));
        out.truncate(limit);
        Ok(out)
    }

    /// Every kind stored, as `by_kind` keys.
    fn kind_keys(&self) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut keys = Vec::new();
        for item in self.tables().by_kind.iter(&self.txn)?.move_between_keys() {
            keys.push(item?.0.to_vec());
        }
        Ok(keys)
    }

    /// The newest posts and replies of the authors `follower` follows.
    pub fn feed(
        &self,
        follower: &PublicKey,
        limit: usize,
        until: Option<u64>,
    ) -> Result<Vec<EventRef<'_>>, QueryError> {
        let follows = self.follows(follower)?;
        self.feed_of(&follows, limit, until)
    }

    /// The newest posts and replies of these authors.
    pub fn feed_of(
        &self,
        authors: &[PublicKey],
        limit: usize,
        until: Option<u64>,
    ) -> Result<Vec<EventRef<'_>>, QueryError> {
        if authors.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Filter {
            kinds: vec![Kind::POST, Kind::REPLY],
            limit: Some(limit),
            scope: Scope {
                authors: authors.to_vec(),
                until,
                ..Scope::all()
            },
            ..Filter::default()
        };
        self.query(&filter)
    }

    /// An event with its replies and reactions, down to any depth, at most `limit` entries.
    /// Walks with an explicit stack: no recursion on stored data.
    pub fn thread(&self, root: &EventId, limit: usize) -> Result<Thread<'_>, QueryError> {
        let root_event = self.get(root)?;
        let mut entries = Vec::new();
        let mut truncated = false;
        // (depth, id) of events whose children are still to list; children pushed newest first
        // so that the oldest is popped first.
        let mut stack = vec![(0u32, *root)];
        'walk: while let Some((depth, parent)) = stack.pop() {
            let children = self.children(&parent)?;
            let mut replies = Vec::new();
            for child in children {
                if entries.len() >= limit {
                    truncated = true;
                    break 'walk;
                }
                entries.push(ThreadEntry {
                    depth: depth + 1,
                    event: child,
                });
                if child.kind() == Kind::REPLY {
                    replies.push(*child.id());
                }
            }
            // Depth-first: a reply's subtree comes before its next sibling is expanded.
            for id in replies.into_iter().rev() {
                stack.push((depth + 1, id));
            }
        }
        if !truncated {
            order_depth_first(&mut entries);
        }
        Ok(Thread {
            root: root_event,
            entries,
            truncated,
        })
    }

    /// Replies and reactions referencing `parent`, oldest first.
    fn children(&self, parent: &EventId) -> Result<Vec<EventRef<'_>>, QueryError> {
        let mut out = Vec::new();
        let key = self.key(Slot::Ref, &[&parent.0]);
        if let Some(iter) = self.tables().by_ref.get_duplicates(&self.txn, &key)? {
            for item in iter {
                let (_, value) = item?;
                let pos = Pos::decode(value)
                    .ok_or_else(|| ReadError::Corrupt("by_ref value is not a position".into()))?;
                let ev = self.at(pos)?;
                if ev.kind() == Kind::REPLY || ev.kind() == Kind::REACTION {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }
}

/// Rearranges entries gathered level by level into conversation order: each entry followed by
/// its own subtree. Iterative, bounded by the entries already gathered.
fn order_depth_first(entries: &mut Vec<ThreadEntry<'_>>) {
    use std::collections::HashMap;
    let mut children: HashMap<EventId, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.depth == 1 {
            roots.push(i);
        } else {
            children.entry(*e.event.reference()).or_default().push(i);
        }
    }
    let mut order = Vec::with_capacity(entries.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        if let Some(kids) = children.get(entries[i].event.id()) {
            stack.extend(kids.iter().rev());
        }
    }
    let old = std::mem::take(entries);
    entries.extend(order.into_iter().map(|i| old[i]));
}

/// An index entry must lead to an event of its time.
fn check_position(ev: &EventRef<'_>, pos: Pos) -> Result<(), ReadError> {
    if ev.created_at() != pos.created_at {
        return Err(ReadError::Corrupt(format!(
            "index entry ({}, {}) does not match the event stored there",
            pos.created_at, pos.seq
        )));
    }
    Ok(())
}

fn keys_of(keys: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
