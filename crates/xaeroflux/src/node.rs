//! The node: a store, an identity, and the operations an app calls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xaeroflux_event::{
    Draft, EventId, Identity, Kind, Limits, Profile, PublicKey, Topic, Verifier, VerifyError,
};
use xaeroflux_net::{
    Multiaddr, NetConfig, NetError, NetHandle, SyncRequest, SyncWithError, ANON_PEERS_FILE,
    PEERS_FILE,
};
use xaeroflux_store::keys::{self, KeyError, KeyProvider};
use xaeroflux_store::{DataKey, OpenError, Outcome, ReadError, Store, StoreOptions, WriteError};
use xaeroflux_sync::Scope;

use crate::identity::{
    load_or_create_identity, network_seed_at, IdentityFileError, NetworkIdentity,
    ANON_NETWORK_KEY_FILE, ANON_ONION_KEY_FILE, IDENTITY_FILE, NETWORK_KEY_FILE, ONION_KEY_FILE,
};

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a node could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeOpenError {
    /// No data directory was given to the builder.
    #[error("no data directory given")]
    NoDataDir,
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The identity file could not be used.
    #[error(transparent)]
    Identity(#[from] IdentityFileError),
    /// The store is encrypted (its directory holds `data.key`) and no key provider was given.
    /// Fix: give the passphrase (`xf`: `XF_PASSPHRASE` or the prompt) or the app's provider.
    #[error("{path} holds an encrypted store: its passphrase or key is needed")]
    KeyRequired {
        /// The data directory.
        path: PathBuf,
    },
    /// The store's key could not be unwrapped (a wrong passphrase is [`KeyError::WrongKey`])
    /// or a new one could not be made. Nothing was changed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] NetError),
    /// [`Node::start_network`] on a node whose network runs already. Fix: stop it first.
    #[error("the network is running already")]
    NetworkRunning,
    /// Another node already runs on this data directory (it holds `node.lock`). Fix: stop it,
    /// or use its store through commands that do not join the network: what they store, the
    /// running node gossips.
    #[error("a node is already running on {path}")]
    AlreadyRunning {
        /// The data directory.
        path: PathBuf,
    },
    /// The node lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Why publishing an event (a post, a reaction, a follow list, a deletion, a profile) failed.
/// Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Publishing needs an identity. Fix: run `xf init`, or pass one to the builder.
    #[error("this node has no identity: run `xf init` first")]
    NoIdentity,
    /// The event is out of bounds (too large a payload, a malformed reference).
    #[error("event rejected: {0}")]
    Invalid(#[from] VerifyError),
    /// The write failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading what the event builds on (the follow list, the event to delete) failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A deletion of another author's event: it would change nothing, since a deletion
    /// removes only its author's own events.
    #[error("event {id} is by {author}, not by this identity: only its author can delete it")]
    NotYours {
        /// The event.
        id: EventId,
        /// Its author.
        author: PublicKey,
    },
}

/// Hex digits a short event id needs at least (as git asks of an abbreviated commit).
pub const ID_PREFIX_DIGITS_MIN: usize = 4;

/// An event id as a person types it: 64 hex digits, or a prefix of at least
/// [`ID_PREFIX_DIGITS_MIN`] (as a person copies them from a short id), in either case. Checked
/// when parsed; [`Node::resolve_id`] finds the one stored event it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix {
    /// The digits, in lower case.
    digits: String,
    /// The smallest id that starts with them (the rest zeros): where a scan for them begins.
    lowest: EventId,
}

impl std::str::FromStr for IdPrefix {
    type Err = IdPrefixError;

    fn from_str(text: &str) -> Result<IdPrefix, IdPrefixError> {
        let not_an_id = || IdPrefixError::NotAnId(text.to_owned());
        if !(ID_PREFIX_DIGITS_MIN..=64).contains(&text.len()) {
            return Err(not_an_id());
        }
        let digits = text.to_ascii_lowercase();
        let lowest = format!("{digits:0<64}").parse().map_err(|_| not_an_id())?;
        Ok(IdPrefix { digits, lowest })
    }
}

impl std::fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.digits)
    }
}

/// Candidates an ambiguous short id lists.
const AMBIGUOUS_SHOWN: usize = 5;

/// Why a typed event id named no single event ([`Node::resolve_id`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdPrefixError {
    /// Not 4 to 64 hex digits.
    #[error("{0:?} is not an event id: 64 hex digits, or a unique prefix of 4 or more")]
    NotAnId(String),
    /// No stored id starts with these digits.
    #[error("no stored event id starts with {0}")]
    NotFound(String),
    /// Several stored ids start with these digits.
    #[error("{prefix} is ambiguous, it starts {}; type more digits", id_list(candidates, *more))]
    Ambiguous {
        /// The digits typed, in lower case.
        prefix: String,
        /// The first ids that start with them, in id order.
        candidates: Vec<EventId>,
        /// Whether more ids than `candidates` start with them.
        more: bool,
    },
    /// The store could not be read.
    #[error(transparent)]
    Read(ReadError),
}

/// `a, b and c`, or `a, b, c and more`.
fn id_list(ids: &[EventId], more: bool) -> String {
    let mut names: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    if more {
        names.push("more".into());
    }
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The file a networked node holds an exclusive lock on, so that one node runs per data
/// directory. Other processes may still write the store; the node gossips what they store.
pub const NODE_LOCK_FILE: &str = "node.lock";

/// Takes the data directory's node lock, or says who has it. The lock goes with the file
/// handle: it is released when the node drops, or when its process dies.
pub(crate) fn lock_node(dir: &std::path::Path) -> Result<std::fs::File, NodeOpenError> {
    let path = dir.join(NODE_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NodeOpenError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeOpenError::AlreadyRunning {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(NodeOpenError::Lock { path, source }),
    }
}

/// What publishing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The new event's id.
    pub id: EventId,
    /// What the store did with it.
    pub outcome: Outcome,
}

/// Builds a [`Node`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    identity: Option<Identity>,
    create_identity: bool,
    store_options: StoreOptions,
    verify_threads: Option<usize>,
    network: Option<NetConfig>,
    network_identity: Option<NetworkIdentity>,
    key_provider: Option<std::sync::Arc<dyn KeyProvider>>,
}

impl NodeBuilder {
    /// Encrypts the store at rest with a data key wrapped by `provider` (a [`Passphrase`] or
    /// the app's platform keystore):
    ///
    /// - a directory with no store gets a new encrypted one: a random data key is wrapped
    ///   into `data.key` first, then the store is created sealed under it;
    /// - an encrypted store (with `data.key`) opens only with the provider that wrapped its
    ///   key: a wrong passphrase is [`NodeOpenError::Key`] with [`KeyError::WrongKey`], and
    ///   nothing is changed;
    /// - a plain store opens as it is: the provider is not used.
    ///
    /// The key files (`identity.key`, `network.key`) of an encrypted store are sealed under
    /// its data key. Without a provider, a new store is plain and an encrypted one is refused
    /// with [`NodeOpenError::KeyRequired`].
    ///
    /// [`Passphrase`]: crate::Passphrase
    pub fn key_provider(mut self, provider: std::sync::Arc<dyn KeyProvider>) -> Self {
        self.key_provider = Some(provider);
        self
    }

    /// Joins the network with this configuration when the node opens: one more thread, running
    /// the libp2p swarm. The node's network key is its own (`network.key` in the data
    /// directory, see [`NodeBuilder::network_identity`]), never the author's, so a node needs
    /// no author identity to network. Without a peer table file in the configuration, `peers`
    /// in the data directory is used.
    pub fn network(mut self, config: NetConfig) -> Self {
        self.network = Some(config);
        self
    }

    /// Where the network key comes from: the stored one, a fresh one for this start, or a new
    /// one that replaces the stored one. By default the stored one (`network.key`); in
    /// anonymous mode a fresh one, with a new onion address, so nothing links two runs.
    /// Anonymous mode told to keep one uses `network-anon.key` and `onion-anon.key`, never
    /// the keys of the node in the clear.
    pub fn network_identity(mut self, which: NetworkIdentity) -> Self {
        self.network_identity = Some(which);
        self
    }

    /// The directory holding the store (created if missing).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// The identity to publish with. Without one, the node loads `identity.key` from the data
    /// directory if present.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
    /// Create `identity.key` (mode 0600) if the data directory has none.
    pub fn create_identity(mut self, create: bool) -> Self {
        self.create_identity = create;
        self
    }
    /// Store options.
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.store_options = options;
        self
    }
    /// Most threads verifying incoming batches (default: the machine's parallelism); they
    /// run only while there is work.
    pub fn verify_threads(mut self, threads: usize) -> Self {
        self.verify_threads = Some(threads.max(1));
        self
    }

    /// Opens the store and loads the identity.
    pub fn open(self) -> Result<Node, NodeOpenError> {
        let dir = self.data_dir.ok_or(NodeOpenError::NoDataDir)?;
        let data_key = data_key(&dir, self.key_provider.as_deref(), &self.store_options)?;
        let mut options = self.store_options;
        options.key = data_key.clone();
        let store = Store::open_with(&dir, options)?;
        let path = dir.join(IDENTITY_FILE);
        let sealer = data_key.as_ref();
        let identity = match self.identity {
            Some(identity) => Some(identity),
            None if self.create_identity => Some(load_or_create_identity(&path, sealer)?.0),
            None if path.exists() => Some(load_or_create_identity(&path, sealer)?.0),
            None => None,
        };
        let verifier = self
            .verify_threads
            .map_or_else(Verifier::per_core, Verifier::new);
        let (net, lock) = match self.network {
            Some(config) => {
                let (net, lock) = join_network(
                    &dir,
                    &store,
                    data_key.as_ref(),
                    &verifier,
                    config,
                    self.network_identity,
                )?;
                (Some(net), Some(lock))
            }
            None => (None, None),
        };
        Ok(Node {
            store,
            net,
            lock,
            dir,
            data_key,
            identity,
            verifier,
            last_ms: AtomicU64::new(0),
            convo: Default::default(),
        })
    }
}

/// Starts the network on an open store: takes the data directory's node lock, loads (or
/// makes) the network key, and points the peer table and the onion key at the data directory,
/// sealed under the data key on an encrypted store.
fn join_network(
    dir: &Path,
    store: &Store,
    data_key: Option<&DataKey>,
    verifier: &Verifier,
    mut config: NetConfig,
    which: Option<NetworkIdentity>,
) -> Result<(NetHandle, std::fs::File), NodeOpenError> {
    let lock = lock_node(dir)?;
    let anonymous = config.anonymous;
    let which = which.unwrap_or(if anonymous {
        NetworkIdentity::Fresh
    } else {
        NetworkIdentity::Stored
    });
    let (key_file, peers_file, onion_file) = if anonymous {
        (ANON_NETWORK_KEY_FILE, ANON_PEERS_FILE, ANON_ONION_KEY_FILE)
    } else {
        (NETWORK_KEY_FILE, PEERS_FILE, ONION_KEY_FILE)
    };
    let seed = network_seed_at(&dir.join(key_file), which, data_key)?;
    config
        .peers_file
        .get_or_insert_with(|| dir.join(peers_file));
    let seal = |label: &'static str| {
        data_key.map(|key| {
            std::sync::Arc::new(SealedFile {
                key: key.clone(),
                label,
            }) as std::sync::Arc<dyn xaeroflux_net::FileSeal>
        })
    };
    // Whom the node knows, and where, is sealed like the rest.
    config.peers_seal = config.peers_seal.take().or_else(|| seal(peers_file));
    if let Some(tor) = config.tor.as_mut() {
        // A fresh identity comes with a fresh onion address; a kept one keeps it.
        if tor.onion_port.is_some()
            && tor.onion_key_file.is_none()
            && which != NetworkIdentity::Fresh
        {
            tor.onion_key_file = Some(dir.join(onion_file));
        }
        tor.onion_key_seal = tor.onion_key_seal.take().or_else(|| seal(onion_file));
    }
    // One stage checks what the network receives and what the app ingests.
    config.verifier.get_or_insert_with(|| verifier.clone());
    Ok((NetHandle::start(store.clone(), *seed, config)?, lock))
}

/// A file of the data directory sealed under the store's data key (`keys::seal_secret`,
/// bound to the file's name).
struct SealedFile {
    key: DataKey,
    label: &'static str,
}

impl xaeroflux_net::FileSeal for SealedFile {
    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        keys::seal_secret(&self.key, self.label, plain).ok()
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        keys::open_secret(&self.key, self.label, sealed)
            .ok()
            .map(|p| p.to_vec())
    }
}

/// The peer table a node on `dir` recorded (`xf peers`), as text: opened with the store's key
/// (from `provider`) when the store is encrypted. Empty if there is none yet. `anonymous`:
/// the table of anonymous mode (`peers-anon`), kept apart from the other.
pub fn read_peers_file(
    dir: &Path,
    provider: Option<&dyn KeyProvider>,
    anonymous: bool,
) -> Result<String, NodeOpenError> {
    let name = if anonymous {
        ANON_PEERS_FILE
    } else {
        PEERS_FILE
    };
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => return Err(NodeOpenError::Open(OpenError::Io { path, source })),
    };
    let plain = match existing_key(dir, provider)? {
        Some(key) => keys::open_secret(&key, name, &bytes)?.to_vec(),
        None => bytes,
    };
    String::from_utf8(plain).map_err(|_| {
        NodeOpenError::Key(KeyError::Malformed(format!(
            "{} is not a peer table",
            path.display()
        )))
    })
}

/// The data key of the encrypted store in `dir`, unwrapped from its `data.key` with
/// `provider` (required then); `None` for a directory without a key file.
pub(crate) fn existing_key(
    dir: &Path,
    provider: Option<&dyn KeyProvider>,
) -> Result<Option<DataKey>, NodeOpenError> {
    let Some(file) = keys::read_key_file(dir)? else {
        return Ok(None);
    };
    let provider = provider.ok_or_else(|| NodeOpenError::KeyRequired {
        path: dir.to_owned(),
    })?;
    Ok(Some(keys::unwrap_key(&file, provider)?))
}

/// The data key the store in `dir` is opened with: unwrapped from `data.key`, made for a new
/// encrypted store, or none for a plain one.
fn data_key(
    dir: &Path,
    provider: Option<&dyn KeyProvider>,
    options: &StoreOptions,
) -> Result<Option<DataKey>, NodeOpenError> {
    if let Some(key) = &options.key {
        // Given as it is (a temporary store, a copy being made): the store checks it.
        return Ok(Some(key.clone()));
    }
    if let Some(key) = existing_key(dir, provider)? {
        return Ok(Some(key));
    }
    let Some(provider) = provider else {
        return Ok(None);
    };
    if !options.create || options.read_only || !may_create_store(dir) {
        // A plain store opens as it is; a missing or foreign one is refused by the store.
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(|source| {
        NodeOpenError::Open(OpenError::Io {
            path: dir.to_owned(),
            source,
        })
    })?;
    let key = DataKey::generate().map_err(|e| KeyError::Entropy(e.to_string()))?;
    keys::write_key_file(dir, &key, provider)?;
    Ok(Some(key))
}

/// True if `dir` holds no store yet and nothing but what may precede one: a new store may be
/// made there.
fn may_create_store(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // Missing: the store creates it.
        return !dir.exists();
    };
    entries.flatten().all(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name == "lock.mdb" || xaeroflux_store::FOREIGN_FILES_ALLOWED.contains(&name.as_ref())
    })
}

/// An embedded Xaeroflux node.
pub struct Node {
    store: Store,
    /// The network thread; it holds its own clone of the store, and stops when this drops.
    net: Option<NetHandle>,
    /// The data directory's node lock, held while networked (declared after `net`, so it is
    /// released only once the network has stopped).
    lock: Option<std::fs::File>,
    /// The data directory.
    dir: PathBuf,
    /// The store's data key, if it is encrypted: it seals the network's key files.
    data_key: Option<DataKey>,
    identity: Option<Identity>,
    /// Checks what the node ingests (and, when networked, what it receives): threads that
    /// start with work and end when idle, and the decompressed author keys.
    pub(crate) verifier: Verifier,
    last_ms: AtomicU64,
    /// Private conversations, loaded on first use.
    pub(crate) convo: crate::convo::ConvoSlot,
}

impl Node {
    /// Starts building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Closes the node and returns once its threads have ended: the network stops (its
    /// connections closed in order, the peer table saved), the store is flushed to disk, the
    /// verifier's threads end, and the store's writer ends, unless the app still holds clones
    /// of the store (then it ends when the last clone drops). Dropping a node does the same
    /// without waiting for the verifier's threads, which end on their own after
    /// `IDLE_EXIT`.
    pub fn close(mut self) -> Result<(), WriteError> {
        // Dropping the handle stops the network thread and joins it.
        drop(self.net.take());
        self.store.sync()?;
        self.verifier.wind_down();
        // The store's handle drops with the node: the last clone joins the writer.
        Ok(())
    }

    /// The store, for reads and subscriptions.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The network, if the node joined one.
    pub fn net(&self) -> Option<&NetHandle> {
        self.net.as_ref()
    }

    /// Joins the network on a node opened without one (an app that starts networking once
    /// the user asks, or again after [`Node::stop_network`]), as [`NodeBuilder::network`]
    /// does at open: the data directory's node lock, the node's network key (`which`: `None`
    /// for the default of the mode), the peer table and onion key in the data directory.
    /// A node already networked is refused with [`NodeOpenError::NetworkRunning`].
    pub fn start_network(
        &mut self,
        config: NetConfig,
        which: Option<NetworkIdentity>,
    ) -> Result<(), NodeOpenError> {
        if self.net.is_some() {
            return Err(NodeOpenError::NetworkRunning);
        }
        let (net, lock) = join_network(
            &self.dir,
            &self.store,
            self.data_key.as_ref(),
            &self.verifier,
            config,
            which,
        )?;
        self.net = Some(net);
        self.lock = Some(lock);
        Ok(())
    }

    /// Leaves the network and returns once its thread has ended: connections closed in
    /// order, the peer table saved, the node lock released. The store stays open. Does
    /// nothing on a node without a network.
    pub fn stop_network(&mut self) {
        if let Some(net) = self.net.take() {
            net.shutdown();
        }
        self.lock = None;
    }

    /// Reconciles `scope` with the peer at `addr` over the network (dialing it unless it is
    /// connected already) and returns the request under way: wait for its outcome with
    /// [`SyncRequest::wait`], or follow it with [`SyncRequest::next`]. A network session is
    /// narrowed by topics and time, not authors; [`Node::sync_with_store`] syncs with a store
    /// on this machine under any scope.
    pub fn sync_with(&self, addr: Multiaddr, scope: Scope) -> Result<SyncRequest, SyncWithError> {
        let net = self.net.as_ref().ok_or(SyncWithError::NoNetwork)?;
        net.sync_with(addr, scope)
    }

    /// Pauses the network (an app going to the background) and returns once every
    /// connection is closed and the transport is gone: no timer fires and no socket is polled
    /// until [`Node::resume`]. The store stays open: the app reads and publishes as before,
    /// and what it publishes meanwhile reaches peers with the first sync after resuming.
    /// Does nothing on a node without a network.
    pub fn pause(&self) -> Result<(), NetError> {
        self.net.as_ref().map_or(Ok(()), NetHandle::pause)
    }

    /// Resumes the network after [`Node::pause`]: it listens again and redials the peers it
    /// was connected to. Does nothing on a node without a network or one not paused.
    pub fn resume(&self) -> Result<(), NetError> {
        self.net.as_ref().map_or(Ok(()), NetHandle::resume)
    }

    /// The node's identity, if it has one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// A creation time for a new event: the clock, but strictly after this node's previous
    /// event, so a burst of posts keeps its order.
    fn next_ms(&self) -> u64 {
        let now = now_ms();
        let mut last = self.last_ms.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_ms.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Signs and durably stores a draft whose `created_at` is filled in here.
    pub fn publish(&self, mut draft: Draft) -> Result<Published, PublishError> {
        let identity = self.identity.as_ref().ok_or(PublishError::NoIdentity)?;
        draft.created_at = self.next_ms();
        let event = identity.sign_checked(&draft, &Limits::at(now_ms()))?;
        let id = *event.id();
        let gossip = self.net.as_ref().map(|_| event.clone());
        let outcome = self.store.ingest(vec![event])?[0];
        if let (Some(net), Some(event), Outcome::Stored { .. }) = (&self.net, gossip, outcome) {
            // A full queue only delays the event: the next anti-entropy round carries it.
            let _ = net.publish(event);
        }
        Ok(Published { id, outcome })
    }

    /// Posts text, optionally in a topic or as a reply.
    pub fn post(
        &self,
        text: &str,
        topic: Option<Topic>,
        reply_to: Option<EventId>,
    ) -> Result<Published, PublishError> {
        let draft = match reply_to {
            Some(parent) => Draft::reply(0, parent, text),
            None => Draft::post(0, text),
        };
        self.publish(draft.in_topic(topic.unwrap_or(Topic::ZERO)))
    }

    /// Reacts to an event.
    pub fn react(&self, target: EventId, content: &str) -> Result<Published, PublishError> {
        self.publish(Draft::reaction(0, target, content))
    }

    /// Adds authors to this node's follow list (publishing the whole new list).
    pub fn follow(&self, authors: &[PublicKey]) -> Result<Published, PublishError> {
        let me = self
            .identity
            .as_ref()
            .ok_or(PublishError::NoIdentity)?
            .public_key();
        let mut follows = self.store.read()?.follows(&me)?;
        for a in authors {
            if !follows.contains(a) {
                follows.push(*a);
            }
        }
        self.publish(Draft::follow_list(0, &follows))
    }

    /// Deletes one of this node's own events. A stored event of another author is refused
    /// ([`PublishError::NotYours`]): a deletion removes only its own author's events, so it would
    /// change nothing. An event not stored here may be deleted (it stays dropped if it comes).
    pub fn delete(&self, target: EventId, reason: &str) -> Result<Published, PublishError> {
        let me = self
            .identity
            .as_ref()
            .ok_or(PublishError::NoIdentity)?
            .public_key();
        if let Some(event) = self.store.read()?.get(&target)? {
            if *event.author() != me {
                return Err(PublishError::NotYours {
                    id: target,
                    author: *event.author(),
                });
            }
        }
        self.publish(Draft::deletion(0, target, reason))
    }

    /// The stored event whose id starts with `prefix`; 64 digits are taken as they are, stored
    /// here or not.
    pub fn resolve_id(&self, prefix: &IdPrefix) -> Result<EventId, IdPrefixError> {
        if prefix.digits.len() == 64 {
            return Ok(prefix.lowest);
        }
        let read = self.store.read().map_err(IdPrefixError::Read)?;
        let found: Vec<EventId> = read
            .ids_from(&prefix.lowest, AMBIGUOUS_SHOWN + 1)
            .map_err(IdPrefixError::Read)?
            .into_iter()
            .take_while(|id| id.to_string().starts_with(&prefix.digits))
            .collect();
        match found.as_slice() {
            [] => Err(IdPrefixError::NotFound(prefix.digits.clone())),
            [one] => Ok(*one),
            _ => Err(IdPrefixError::Ambiguous {
                prefix: prefix.digits.clone(),
                more: found.len() > AMBIGUOUS_SHOWN,
                candidates: found.into_iter().take(AMBIGUOUS_SHOWN).collect(),
            }),
        }
    }

    /// Replaces this node's profile.
    pub fn set_profile(&self, profile: &Profile) -> Result<Published, PublishError> {
        self.publish(Draft::profile(0, profile))
    }

    /// An author's newest profile stored here.
    pub fn profile(&self, author: &PublicKey) -> Result<Option<Profile>, ReadError> {
        let read = self.store.read()?;
        let Some(profile) = read.latest(author, Kind::PROFILE)? else {
            return Ok(None);
        };
        let archived = profile
            .payload_as::<xaeroflux_event::ArchivedProfile>()
            .map_err(|e| ReadError::Corrupt(e.to_string()))?;
        Ok(Some(Profile {
            name: archived.name.as_str().to_owned(),
            about: archived.about.as_str().to_owned(),
            picture: archived.picture.as_str().to_owned(),
        }))
    }

    /// The display name an author gave in their newest profile.
    pub fn display_name(&self, author: &PublicKey) -> Result<Option<String>, ReadError> {
        Ok(self.profile(author)?.map(|p| p.name))
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("store", &self.store)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}
