//! Owned events: what an app keeps after a read transaction ends, and what bindings hand out.

use xaeroflux_event::{EventId, EventRef, Kind, PublicKey, Topic};
use xaeroflux_store::{Filter, QueryError, ReadError};

use crate::node::Node;

/// An event read from the store, owned. [`EventRef`] is the zero-copy view inside a read
/// transaction; this is a copy of the same bytes that outlives it.
///
/// It was verified when it was stored, and is not verified again when read: it is not a
/// `VerifiedEvent`, which only verification makes.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    id: EventId,
    /// `header ‖ signature ‖ payload`.
    body: Box<[u8]>,
}

impl Event {
    /// Copies a view.
    pub fn from_ref(event: &EventRef<'_>) -> Event {
        Event {
            id: *event.id(),
            body: event.body().into(),
        }
    }

    /// The zero-copy view of this event.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef::with_id(self.id, &self.body).expect("copied from an event that decoded")
    }

    /// The event id.
    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.as_ref().kind()
    }

    /// The creation time, in ms since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.as_ref().created_at()
    }

    /// The author's public key.
    pub fn author(&self) -> PublicKey {
        *self.as_ref().author()
    }

    /// The topic, if any.
    pub fn topic(&self) -> Option<Topic> {
        Some(*self.as_ref().topic()).filter(|t| !t.is_zero())
    }

    /// The event this one replies to, reacts to or deletes, if any.
    pub fn reference(&self) -> Option<EventId> {
        Some(*self.as_ref().reference()).filter(|r| !r.is_zero())
    }

    /// The encoded payload.
    pub fn payload(&self) -> &[u8] {
        self.as_ref().payload()
    }

    /// The text of a post or reply, the content of a reaction, the reason of a deletion;
    /// `None` for other kinds, or if the payload does not decode.
    pub fn text(&self) -> Option<&str> {
        self.as_ref().text().and_then(Result::ok)
    }

    /// The encoding: `id ‖ header ‖ signature ‖ payload`, as export files and the network
    /// carry it.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_ref().to_vec()
    }
}

impl From<&EventRef<'_>> for Event {
    fn from(event: &EventRef<'_>) -> Event {
        Event::from_ref(event)
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Event").field(&self.as_ref()).finish()
    }
}

impl Node {
    /// The stored event `id`, owned.
    pub fn get(&self, id: &EventId) -> Result<Option<Event>, ReadError> {
        Ok(self.store().read()?.get(id)?.as_ref().map(Event::from_ref))
    }

    /// The events matching `filter`, newest first, owned.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Event>, QueryError> {
        let read = self.store().read()?;
        Ok(read.query(filter)?.iter().map(Event::from_ref).collect())
    }

    /// The newest posts and replies of the authors `follower` follows, owned.
    pub fn feed(
        &self,
        follower: &PublicKey,
        limit: usize,
        until: Option<u64>,
    ) -> Result<Vec<Event>, QueryError> {
        let read = self.store().read()?;
        Ok(read
            .feed(follower, limit, until)?
            .iter()
            .map(Event::from_ref)
            .collect())
    }

    /// An event with its replies and reactions, at most `limit` of them, owned.
    pub fn thread(&self, root: &EventId, limit: usize) -> Result<OwnedThread, QueryError> {
        let read = self.store().read()?;
        let thread = read.thread(root, limit)?;
        Ok(OwnedThread {
            root: thread.root.as_ref().map(Event::from_ref),
            entries: thread
                .entries
                .iter()
                .map(|e| (e.depth, Event::from_ref(&e.event)))
                .collect(),
            truncated: thread.truncated,
        })
    }
}

/// A thread read from the store, owned: what [`Node::thread`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedThread {
    /// The root, if stored.
    pub root: Option<Event>,
    /// Replies and reactions with their depth below the root (direct ones: 1), in
    /// conversation order: depth first, oldest first among siblings.
    pub entries: Vec<(u32, Event)>,
    /// True if the limit cut the thread short.
    pub truncated: bool,
}
