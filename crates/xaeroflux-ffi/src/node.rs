//! The node object the host app holds.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::dispatch::{Control, Dispatcher, EventListener};
use crate::error::XfError;
use crate::keys::{HostKeys, KeyProvider};
use crate::net::{multiaddr, NetListener, NetOptions, Peer, SyncSummary};
use crate::types::{
    event_id, hex32, parse_hex32, public_key, Event, Filter, ImportReport, Profile, Published,
    Thread,
};

/// How a node opens.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OpenOptions {
    /// Make an author identity (`identity.key`) if the directory has none: needed to publish.
    #[uniffi(default = true)]
    pub create_identity: bool,
    /// Open without writing: no writer thread; publishing and importing fail.
    #[uniffi(default)]
    pub read_only: bool,
    /// The memory map's first size in bytes (address space, not memory or disk: the map
    /// doubles when full). Unset: 1 GiB on 64-bit, 256 MiB on 32-bit targets.
    #[uniffi(default)]
    pub map_bytes_initial: Option<u64>,
    /// Most threads verifying a batch of incoming events at once (they run only while there
    /// is work); unset: one per core.
    #[uniffi(default)]
    pub verify_threads: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            create_identity: true,
            read_only: false,
            map_bytes_initial: None,
            verify_threads: None,
        }
    }
}

/// An embedded Xaeroflux node: a store on a directory, an author identity, and once started,
/// the network.
///
/// Threading: every method may be called from any thread. Methods that read or write the
/// store return in microseconds to milliseconds; `open`, `sync_with`, `start_network`,
/// `pause`, `resume`, `stop_network`, `import_from`, `export_to` and `close` block for longer
/// (a key derivation, a network round trip, a file) and belong off the UI thread. Callbacks
/// (subscriptions, network reports) run on the binding's own callback thread.
///
/// Threads: the store's writer; the network's, once started; the callback thread while a
/// subscription or the network exists; verifier threads only while a batch is checked. A
/// paused network runs no timer and polls no socket.
#[derive(uniffi::Object)]
pub struct Node {
    /// `None` once closed.
    inner: RwLock<Option<xaeroflux::Node>>,
    dispatch: Arc<Dispatcher>,
    dir: PathBuf,
    next_subscription: AtomicU64,
}

impl Node {
    fn open_inner(
        dir: String,
        options: OpenOptions,
        provider: Option<Arc<dyn xaeroflux::KeyProvider>>,
    ) -> Result<Arc<Node>, XfError> {
        if dir.is_empty() {
            return Err(XfError::invalid("the data directory is empty"));
        }
        let mut store = xaeroflux::StoreOptions {
            read_only: options.read_only,
            ..xaeroflux::StoreOptions::default()
        };
        if let Some(bytes) = options.map_bytes_initial {
            store.map_bytes_initial = usize::try_from(bytes).map_err(|_| {
                XfError::invalid(format!("a map of {bytes} bytes does not fit this target"))
            })?;
        }
        let mut builder = xaeroflux::Node::builder()
            .data_dir(&dir)
            .create_identity(options.create_identity && !options.read_only)
            .store_options(store);
        if let Some(threads) = options.verify_threads {
            builder = builder.verify_threads(threads as usize);
        }
        if let Some(provider) = provider {
            builder = builder.key_provider(provider);
        }
        let node = builder.open()?;
        Ok(Arc::new(Node {
            inner: RwLock::new(Some(node)),
            dispatch: Arc::default(),
            dir: dir.into(),
            next_subscription: AtomicU64::new(0),
        }))
    }

    /// The open node, or `Closed`.
    fn node(&self) -> Result<NodeRef<'_>, XfError> {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(XfError::closed());
        }
        Ok(NodeRef(guard))
    }

    fn with_net<T>(
        &self,
        f: impl FnOnce(&xaeroflux::NetHandle) -> Result<T, XfError>,
    ) -> Result<T, XfError> {
        let node = self.node()?;
        let net = node.get().net().ok_or_else(XfError::no_network)?;
        f(net)
    }

    fn identity_key(&self) -> Result<xaeroflux::PublicKey, XfError> {
        self.node()?
            .get()
            .identity()
            .map(|i| i.public_key())
            .ok_or_else(|| XfError::NoIdentity {
                detail: "this node has no identity: open it with create_identity".into(),
            })
    }
}

/// A read guard on an open node.
struct NodeRef<'a>(RwLockReadGuard<'a, Option<xaeroflux::Node>>);

impl NodeRef<'_> {
    fn get(&self) -> &xaeroflux::Node {
        // `node()` checked it is open, and the guard keeps it so.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("checked open"))
    }
}

#[uniffi::export]
impl Node {
    /// Opens (creating if needed) the node on `dir`. With `key_provider`, a new store is
    /// encrypted under a data key the provider wraps, and an encrypted one opens only with
    /// the provider that wrapped its key (`WrongKey` otherwise, nothing changed). Without
    /// one, a new store is plain and an encrypted one is refused (`KeyRequired`). Blocks
    /// while the store opens (milliseconds) and the provider answers.
    #[uniffi::constructor(default(key_provider = None, options))]
    pub fn open(
        dir: String,
        options: OpenOptions,
        key_provider: Option<Arc<dyn KeyProvider>>,
    ) -> Result<Arc<Node>, XfError> {
        let provider = key_provider
            .map(|host| Arc::new(HostKeys::new(host)) as Arc<dyn xaeroflux::KeyProvider>);
        Node::open_inner(dir, options, provider)
    }

    /// Opens the node on `dir` with a passphrase: the data key is wrapped under a key derived
    /// with Argon2id (64 MiB, 3 passes: about a quarter of a second on a phone's big core,
    /// at every open). A wrong passphrase is `WrongKey`, nothing changed.
    #[uniffi::constructor(default(options))]
    pub fn open_with_passphrase(
        dir: String,
        passphrase: String,
        options: OpenOptions,
    ) -> Result<Arc<Node>, XfError> {
        let provider = Arc::new(xaeroflux::Passphrase::new(Zeroizing::new(passphrase)));
        Node::open_inner(dir, options, Some(provider))
    }

    /// The data directory.
    pub fn data_dir(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// This node's author key (64 hex digits), if it has an identity.
    pub fn author(&self) -> Result<Option<String>, XfError> {
        Ok(self
            .node()?
            .get()
            .identity()
            .map(|i| i.public_key().to_string()))
    }

    /// True if the store is encrypted at rest.
    pub fn is_encrypted(&self) -> Result<bool, XfError> {
        Ok(self.node()?.get().store().is_encrypted())
    }

    /// What the store holds and what it takes, in constant time: events, bytes on disk, and
    /// the address space its memory map reserves (not memory: pages are read in as they are used). The map
    /// starts at `OpenOptions.map_bytes_initial` and doubles when a write finds it full.
    pub fn stats(&self) -> Result<StoreStats, XfError> {
        let f = self.node()?.get().store().read()?.footprint()?;
        Ok(StoreStats {
            events: f.events,
            used_bytes: f.used_bytes,
            file_bytes: f.file_bytes,
            map_bytes: f.map_bytes,
        })
    }

    /// Posts text, in a topic (a name or 64 hex digits) if given, or as a reply to `reply_to`.
    #[uniffi::method(default(topic = None, reply_to = None))]
    pub fn post(
        &self,
        text: String,
        topic: Option<String>,
        reply_to: Option<String>,
    ) -> Result<Published, XfError> {
        let reply_to = reply_to.as_deref().map(event_id).transpose()?;
        let topic = topic.as_deref().map(xaeroflux::Topic::from_text);
        Ok(self.node()?.get().post(&text, topic, reply_to)?.into())
    }

    /// Replies to `parent`.
    pub fn reply(&self, parent: String, text: String) -> Result<Published, XfError> {
        let parent = event_id(&parent)?;
        Ok(self.node()?.get().post(&text, None, Some(parent))?.into())
    }

    /// Reacts to `target` ("+", an emoji, a short text).
    pub fn react(&self, target: String, content: String) -> Result<Published, XfError> {
        Ok(self
            .node()?
            .get()
            .react(event_id(&target)?, &content)?
            .into())
    }

    /// Adds authors to this node's follow list (publishing the whole new list).
    pub fn follow(&self, authors: Vec<String>) -> Result<Published, XfError> {
        let authors = authors
            .iter()
            .map(|a| public_key(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.node()?.get().follow(&authors)?.into())
    }

    /// The authors `author` follows, by their newest follow list stored here.
    pub fn follows(&self, author: String) -> Result<Vec<String>, XfError> {
        let author = public_key(&author)?;
        let node = self.node()?;
        let follows = node.get().store().read()?.follows(&author)?;
        Ok(follows.iter().map(ToString::to_string).collect())
    }

    /// Deletes one of this node's own events (another author's is refused: `Rejected`).
    #[uniffi::method(default(reason = ""))]
    pub fn delete(&self, target: String, reason: String) -> Result<Published, XfError> {
        Ok(self
            .node()?
            .get()
            .delete(event_id(&target)?, &reason)?
            .into())
    }

    /// Replaces this node's profile.
    pub fn set_profile(&self, profile: Profile) -> Result<Published, XfError> {
        let profile = xaeroflux::Profile {
            name: profile.name,
            about: profile.about,
            picture: profile.picture,
        };
        Ok(self.node()?.get().set_profile(&profile)?.into())
    }

    /// An author's newest profile stored here.
    pub fn profile(&self, author: String) -> Result<Option<Profile>, XfError> {
        let author = public_key(&author)?;
        let profile = self.node()?.get().profile(&author)?;
        Ok(profile.map(|p| Profile {
            name: p.name,
            about: p.about,
            picture: p.picture,
        }))
    }

    /// The stored event `id`.
    pub fn get(&self, id: String) -> Result<Option<Event>, XfError> {
        let id = event_id(&id)?;
        Ok(self.node()?.get().get(&id)?.as_ref().map(Event::from))
    }

    /// The one stored event whose id starts with `prefix` (at least 4 hex digits), as a
    /// person copies a short id: `NotFound`, or `InvalidArgument` naming the candidates
    /// when several match.
    pub fn resolve_id(&self, prefix: String) -> Result<String, XfError> {
        let prefix: xaeroflux::IdPrefix = prefix.parse()?;
        Ok(self.node()?.get().resolve_id(&prefix)?.to_string())
    }

    /// The events matching `filter`, newest first.
    pub fn query(&self, filter: Filter) -> Result<Vec<Event>, XfError> {
        let filter = filter.to_core()?;
        let events = self.node()?.get().query(&filter)?;
        Ok(events.iter().map(Event::from).collect())
    }

    /// The newest posts and replies of the authors `follower` follows (this node's author if
    /// unset), created at or before `until_ms` if given.
    #[uniffi::method(default(follower = None, limit = 50, until_ms = None))]
    pub fn feed(
        &self,
        follower: Option<String>,
        limit: u32,
        until_ms: Option<u64>,
    ) -> Result<Vec<Event>, XfError> {
        let follower = match follower {
            Some(f) => public_key(&f)?,
            None => self.identity_key()?,
        };
        let limit = (limit as usize).min(xaeroflux::QUERY_LIMIT_MAX);
        let events = self.node()?.get().feed(&follower, limit, until_ms)?;
        Ok(events.iter().map(Event::from).collect())
    }

    /// An event with its replies and reactions, down to any depth, at most `limit` of them.
    #[uniffi::method(default(limit = 500))]
    pub fn thread(&self, root: String, limit: u32) -> Result<Thread, XfError> {
        let root = event_id(&root)?;
        let limit = (limit as usize).min(xaeroflux::QUERY_LIMIT_MAX);
        Ok(self.node()?.get().thread(&root, limit)?.into())
    }

    /// Calls `listener` with every newly stored event that matches `filter` (its `limit` is
    /// not used), whoever stored it: this node, a peer, an import. Events come in store
    /// order on the callback thread; one that falls behind catches up from the log, so none
    /// is lost. Keep the handle: cancelling it, or dropping it, ends the subscription.
    pub fn subscribe(
        &self,
        filter: Filter,
        listener: Arc<dyn EventListener>,
    ) -> Result<Arc<SubscriptionHandle>, XfError> {
        let filter = filter.to_core()?;
        let subscription = self
            .node()?
            .get()
            .store()
            .subscribe(filter, SUBSCRIPTION_CAPACITY)?;
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed) + 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        self.dispatch.send(Control::Subscribe {
            id,
            subscription: Box::new(subscription),
            listener,
            cancelled: cancelled.clone(),
        })?;
        Ok(Arc::new(SubscriptionHandle {
            id,
            cancelled,
            dispatch: Arc::downgrade(&self.dispatch),
        }))
    }

    /// Joins the network (one more thread) and, with `listener`, reports what it does on
    /// the callback thread. The network key is the node's own (`network.key`), never the
    /// author's; in anonymous mode a fresh one each start. Blocks while the transports bind
    /// (milliseconds; with Tor, not for Tor's bootstrap, which is reported).
    #[uniffi::method(default(listener = None, options))]
    pub fn start_network(
        &self,
        options: NetOptions,
        listener: Option<Arc<dyn NetListener>>,
    ) -> Result<(), XfError> {
        let config = options.to_config(&self.dir)?;
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let node = guard.as_mut().ok_or_else(XfError::closed)?;
        node.start_network(config, None)?;
        let net = node
            .net()
            .unwrap_or_else(|| unreachable!("the network just started"));
        self.dispatch.send(Control::Network {
            events: net.events().clone(),
            me: net.peer_id(),
            listener,
        })
    }

    /// Leaves the network and returns once its thread has ended (connections closed, the
    /// peer table saved). The store stays open.
    pub fn stop_network(&self) -> Result<(), XfError> {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let node = guard.as_mut().ok_or_else(XfError::closed)?;
        if node.net().is_some() {
            self.dispatch.tell(Control::NetworkGone);
            node.stop_network();
        }
        Ok(())
    }

    /// Pauses the network for the app's background: returns once every connection is closed
    /// and the transport is gone. Until `resume`, no timer fires, no socket is polled, no
    /// thread of the engine wakes. The store stays open: publishing goes on, and reaches
    /// peers with the first sync after resuming. Does nothing without a network.
    pub fn pause(&self) -> Result<(), XfError> {
        Ok(self.node()?.get().pause()?)
    }

    /// Resumes the network: it listens again and redials the peers it had.
    pub fn resume(&self) -> Result<(), XfError> {
        Ok(self.node()?.get().resume()?)
    }

    /// This node's peer id on the network, once started.
    pub fn peer_id(&self) -> Result<Option<String>, XfError> {
        Ok(self.node()?.get().net().map(|n| n.peer_id().to_string()))
    }

    /// The addresses the network listens on, each ending in this node's peer id (what
    /// another node dials), waiting up to `timeout_ms` for a first one.
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn listen_addresses(&self, timeout_ms: u64) -> Result<Vec<String>, XfError> {
        self.with_net(|_| Ok(()))?;
        Ok(self
            .dispatch
            .net
            .listening(Duration::from_millis(timeout_ms)))
    }

    /// The peers connected, as the network's reports have told the callback thread: a
    /// connection made a moment ago shows once its `Connected` report was read (a listener
    /// hears it after this list has it).
    pub fn peers(&self) -> Result<Vec<Peer>, XfError> {
        self.with_net(|_| Ok(()))?;
        Ok(self.dispatch.net.peers())
    }

    /// Reconciles with the peer at `address` (dialing it unless connected): the topics given
    /// (none: the ones this node follows) within the time window, and blocks until the
    /// session finishes or `timeout_ms` passes (`Timeout`: the session may still finish).
    /// Only what either side lacks moves.
    #[uniffi::method(default(topics = [], since_ms = None, until_ms = None, timeout_ms = 60000))]
    pub fn sync_with(
        &self,
        address: String,
        topics: Vec<String>,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        timeout_ms: u64,
    ) -> Result<SyncSummary, XfError> {
        let addr = multiaddr(&address)?;
        let scope = xaeroflux::Scope {
            since: since_ms,
            until: until_ms,
            authors: Vec::new(),
            topics: topics
                .iter()
                .map(|t| xaeroflux::Topic::from_text(t))
                .collect(),
        };
        // The request is made under the lock and waited for without it: closing or stopping
        // the network meanwhile ends the wait with an error, not a deadlock.
        let request = self.with_net(|net| Ok(net.sync_with(addr, scope)?))?;
        let summary = request.wait(Duration::from_millis(timeout_ms))?;
        Ok((&summary).into())
    }

    /// Starts a sync round with every connected peer now (reported as `Synced` events).
    pub fn sync_now(&self) -> Result<(), XfError> {
        self.with_net(|net| Ok(net.sync_now().map(drop)?))
    }

    /// Writes every stored event to `path` in the portable export format and returns how
    /// many. The file is not encrypted, even from an encrypted store.
    pub fn export_to(&self, path: String) -> Result<u64, XfError> {
        let node = self.node()?;
        let file = File::create(&path).map_err(|e| XfError::Storage {
            detail: format!("creating {path}: {e}"),
        })?;
        let (out, count) = node.get().export_to(BufWriter::new(file))?;
        let file = out.into_inner().map_err(|e| XfError::Storage {
            detail: format!("writing {path}: {}", e.error()),
        })?;
        file.sync_all().map_err(|e| XfError::Storage {
            detail: format!("syncing {path}: {e}"),
        })?;
        Ok(count)
    }

    /// Verifies and stores the events of an export file. Forged or malformed events are
    /// refused and counted, the rest stored; a truncated or corrupt file stops the import
    /// with an error after storing what came before it.
    pub fn import_from(&self, path: String) -> Result<ImportReport, XfError> {
        let file = File::open(&path).map_err(|e| XfError::Storage {
            detail: format!("opening {path}: {e}"),
        })?;
        let mut reader = xaeroflux::ImportReader::new(BufReader::new(file))?;
        let events = std::iter::from_fn(move || reader.next_event().transpose());
        let node = self.node()?;
        Ok(node
            .get()
            .ingest_stream(events, IMPORT_BATCH, |_| {})?
            .into())
    }

    /// Sends `text` to `peer` (an author key) in the direct conversation between the two,
    /// started if new: end-to-end encrypted; the peer may be offline (its published key
    /// bundle is enough). Returns the conversation's id.
    pub fn dm(&self, peer: String, text: String) -> Result<String, XfError> {
        let peer = public_key(&peer)?;
        Ok(hex32(&self.node()?.get().dm(&peer, &text)?))
    }

    /// The conversations this author is or was in, direct and group.
    pub fn conversations(&self) -> Result<Vec<Conversation>, XfError> {
        let list = self.node()?.get().conversations()?;
        Ok(list.iter().map(Conversation::from).collect())
    }

    /// Brings the conversations up to date with the envelopes and key bundles stored since
    /// the last look (what sync and gossip brought).
    pub fn conversations_catch_up(&self) -> Result<CatchUp, XfError> {
        let c = self.node()?.get().conversations_catch_up()?;
        Ok(CatchUp {
            accepted: c.accepted as u64,
            rejected: c.rejected.len() as u64,
            pending: c.pending as u64,
        })
    }

    /// Publishes a new key bundle (the keys others seal direct messages and group keys to)
    /// and renews this author's sessions: call it once at first start, then now and then, so
    /// that a stolen key reads less.
    pub fn update_keys(&self) -> Result<(), XfError> {
        Ok(self.node()?.get().conversations_update_keys()?)
    }

    /// The readable messages of a conversation (direct or group), oldest first.
    pub fn messages(&self, conversation: String) -> Result<Vec<Message>, XfError> {
        let id = parse_hex32(&conversation, "conversation id")?;
        let list = self.node()?.get().group_read(&id)?;
        Ok(list
            .iter()
            .map(|m| Message {
                id: hex32(&m.id),
                conversation: hex32(&m.convo),
                author: hex32(&m.author),
                sent_at_ms: m.sent_at,
                text: m.text.clone(),
            })
            .collect())
    }

    /// Creates a group with this author as its only member and admin; returns its id.
    pub fn group_create(&self, name: String) -> Result<String, XfError> {
        Ok(hex32(&self.node()?.get().group_create(&name)?))
    }

    /// Adds authors to a group (as admins if `admin`).
    #[uniffi::method(default(admin = false))]
    pub fn group_add(
        &self,
        group: String,
        members: Vec<String>,
        admin: bool,
    ) -> Result<(), XfError> {
        let group = parse_hex32(&group, "group id")?;
        let members = members
            .iter()
            .map(|m| public_key(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.node()?.get().group_add(&group, &members, admin)?)
    }

    /// Removes authors from a group.
    pub fn group_remove(&self, group: String, members: Vec<String>) -> Result<(), XfError> {
        let group = parse_hex32(&group, "group id")?;
        let members = members
            .iter()
            .map(|m| public_key(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.node()?.get().group_remove(&group, &members)?)
    }

    /// Leaves a group.
    pub fn group_leave(&self, group: String) -> Result<(), XfError> {
        let group = parse_hex32(&group, "group id")?;
        Ok(self.node()?.get().group_leave(&group)?)
    }

    /// Sends `text` to a group's members.
    pub fn group_send(&self, group: String, text: String) -> Result<(), XfError> {
        let group = parse_hex32(&group, "group id")?;
        Ok(self.node()?.get().group_send(&group, &text)?)
    }

    /// Closes the node and returns once its threads have ended: the network stops, the
    /// subscriptions end, the store is flushed to disk. Every later call is `Closed`.
    /// Closing twice does nothing.
    pub fn close(&self) -> Result<(), XfError> {
        let node = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        self.dispatch.stop();
        match node {
            Some(node) => Ok(node.close()?),
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.dispatch.stop();
    }
}

/// Events a subscription's channel holds before it falls back to reading the log.
const SUBSCRIPTION_CAPACITY: usize = 1024;
/// Events verified and stored per batch by an import.
const IMPORT_BATCH: usize = 1024;

/// A live subscription. `cancel` (or dropping the handle) ends it: no callback starts after
/// `cancel` returns (one running on the callback thread at that moment finishes).
#[derive(uniffi::Object)]
pub struct SubscriptionHandle {
    id: u64,
    cancelled: Arc<AtomicBool>,
    dispatch: std::sync::Weak<Dispatcher>,
}

#[uniffi::export]
impl SubscriptionHandle {
    /// Ends the subscription. Cancelling twice does nothing.
    pub fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::AcqRel) {
            if let Some(dispatch) = self.dispatch.upgrade() {
                // The thread drops it at its next look; the flag already stops deliveries. A
                // thread that has ended holds no subscription: none is started to be told.
                dispatch.tell(Control::Unsubscribe(self.id));
            }
        }
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

impl Drop for SubscriptionHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// What the store holds and the address space it reserves.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Bytes of the data file in use.
    pub used_bytes: u64,
    /// The data file's size on disk.
    pub file_bytes: u64,
    /// Address space the memory map reserves.
    pub map_bytes: u64,
}

/// A private conversation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Conversation {
    /// Its id.
    pub id: String,
    /// The group's name; empty for a direct conversation.
    pub name: String,
    /// The other member of a direct conversation.
    pub direct_peer: Option<String>,
    /// The members now (this author included while it is one).
    pub members: Vec<String>,
    /// The admins among them.
    pub admins: Vec<String>,
    /// Whether this author is a member.
    pub member: bool,
    /// Messages readable.
    pub messages: u64,
}

impl From<&xaeroflux::ConvoInfo> for Conversation {
    fn from(c: &xaeroflux::ConvoInfo) -> Conversation {
        Conversation {
            id: hex32(&c.id),
            name: c.name.clone(),
            direct_peer: c.direct.as_ref().map(hex32),
            members: c.members.iter().map(hex32).collect(),
            admins: c.admins.iter().map(hex32).collect(),
            member: c.member,
            messages: c.messages as u64,
        }
    }
}

/// A message of a conversation, decrypted.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Message {
    /// Its id.
    pub id: String,
    /// The conversation.
    pub conversation: String,
    /// Its author's key.
    pub author: String,
    /// The sender's clock, ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text stays out of logs.
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("text_bytes", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// What a catch-up of the conversations did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CatchUp {
    /// Envelopes read for the first time that changed something.
    pub accepted: u64,
    /// Envelopes meant for this author and refused (forged, replayed, undecryptable).
    pub rejected: u64,
    /// Envelopes waiting for a key bundle or a session key.
    pub pending: u64,
}
