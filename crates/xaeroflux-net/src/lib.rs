//! The Xaeroflux network: rust-libp2p transports, discovery and gossip, and the sync protocol
//! of `xaeroflux-sync` driven over streams.
//!
//! The rest of the engine sees a [`NetHandle`]: publish an event, dial an address, ask for a
//! sync round, read [`NetEvent`]s. Behind it, one thread runs a current-thread runtime with the
//! node's [`engine`](crate) loop over a [`Transport`]: [`Libp2pTransport`] on real sockets, or
//! [`MemoryTransport`] inside one process. Received events go to the store's writer thread
//! through its bounded queue; nothing else runs in the background.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod engine;
mod link;
mod memory;
mod peers;
#[cfg(feature = "quic")]
mod quic;
mod quic_config;
mod request;
mod runner;
mod swarm;
pub mod tor;
mod transport;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::Notify;
use xaeroflux_event::{Topic, VerifiedEvent, Verifier};
use xaeroflux_store::Store;
use xaeroflux_sync::{Scope, SyncConfig};

pub use engine::{gossip_topic, NetEvent, GOSSIP_ALL};
pub use link::{read_frame, write_frame, FRAME_PREFIX_BYTES};
pub use memory::{MemoryHub, MemoryTransport};
pub use peers::{
    PeerEntry, Peers, RateLimit, ADDRS_PER_PEER_MAX, BLOCK_FOR, PEERS_MAX, SCORE_BLOCK,
};
#[cfg(feature = "quic")]
pub use quic::{QuicConnection, QuicError, QuicStream, QuicTransport};
pub use quic_config::{Congestion, QuicConfig};
pub use request::{RequestId, SyncProgress, SyncRequest, SyncWithError};
pub use runner::{
    common_topics, SyncFailure, SyncSummary, OPEN_TOPICS_MAX, OPEN_VERSION, PENALTY_INVALID,
    PENALTY_PROTOCOL, PENALTY_TOO_MANY_ROUNDS,
};
pub use swarm::{
    error_line, keypair_from_seed, Libp2pTransport, IDENTIFY_PROTOCOL, KAD_PROTOCOL, SYNC_PROTOCOL,
};
pub use transport::{
    is_onion, peer_in, with_peer, DialId, FrameRx, GossipToken, LinkError, Multiaddr, OpenFuture,
    PeerId, Protocol, SyncLink, Transport, TransportEvent, Verdict, LINK_FRAMES_BUFFERED,
};

use engine::{Carry, Command, Engine, Exit};

/// Commands queued to the network thread at most (publishes beyond are left to anti-entropy).
pub const COMMANDS_MAX: usize = 1024;
/// Reports queued for observers at most (beyond, reports are dropped, never the network).
pub const EVENTS_MAX: usize = 4096;
/// Reports queued for one `sync_with` caller at most (a request ends after a few).
const REPLIES_MAX: usize = 64;
/// Name of the peer table file in a data directory.
pub const PEERS_FILE: &str = "peers";
/// Name of the peer table file of anonymous mode (onion addresses only), kept apart.
pub const ANON_PEERS_FILE: &str = "peers-anon";

/// Seals and opens a file the network keeps in the data directory (the peer table).
pub trait FileSeal: Send + Sync {
    /// The sealed form of `plain`; `None` if it cannot be sealed (the file is then not
    /// written).
    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>>;
    /// What [`FileSeal::seal`] sealed; `None` if it does not open (the file is then ignored).
    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>>;
}

impl std::fmt::Debug for dyn FileSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileSeal")
    }
}

/// How the node networks.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and keep redialing.
    pub bootstrap: Vec<Multiaddr>,
    /// Relays to listen through (for peers behind NAT; DCUtR upgrades to direct links).
    pub relays: Vec<Multiaddr>,
    /// Serve as a relay (circuit relay v2) for peers that cannot be reached directly.
    pub relay_server: bool,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Topics this node follows (empty: all).
    pub topics: Vec<Topic>,
    /// Session limits.
    pub sync: SyncConfig,
    /// Period of anti-entropy rounds with every connected peer.
    pub anti_entropy: Duration,
    /// First redial delay after a peer drops.
    pub redial_min: Duration,
    /// Longest redial delay.
    pub redial_max: Duration,
    /// Period of the loop's upkeep (due redials, peer table, pending writes).
    pub tick: Duration,
    /// A sync stream on which no whole frame moved either way for this long fails.
    pub idle_timeout: Duration,
    /// A session must move `progress_bytes_min` bytes, either way, in every window this long,
    /// or it ends (a stalled or dripping peer frees its slot; nobody is scored for it).
    pub progress_window: Duration,
    /// Bytes a session moves per `progress_window` at least.
    pub progress_bytes_min: u64,
    /// Gossip messages accepted from one peer per second (twice that in a burst); beyond, they
    /// are dropped unread and anti-entropy fetches what was real.
    pub gossip_per_peer_per_sec: u32,
    /// Sessions answered at once (further ones are told the node is busy).
    pub inbound_sessions_max: usize,
    /// Where to keep the peer table (`xf peers` reads it).
    pub peers_file: Option<PathBuf>,
    /// Seals the peer table file (it says whom the node knows and at which addresses): set by
    /// the facade for an encrypted store. `None`: the file is plain text.
    pub peers_seal: Option<std::sync::Arc<dyn FileSeal>>,
    /// Restore the peer table from `peers_file` at start and redial its peers (off for a
    /// one-shot sync that should reach only the address it was given).
    pub restore_peers: bool,
    /// Stop in order on SIGINT or SIGTERM (close connections, store what was received, save
    /// the peer table) and report [`NetEvent::Stopped`]: for a command-line host. An app that
    /// handles signals itself leaves this off (the default) and calls `shutdown`.
    pub stop_on_signals: bool,
    /// The verifier stage that checks what sessions and gossip receive, shared with the rest
    /// of the app (the facade passes the one its ingest uses, so one pool of threads and one
    /// key cache serve all). `None`: the network starts its own, a thread per core.
    pub verifier: Option<Verifier>,
    /// Tell peers (identify) the addresses this node listens on. Off, it tells them only its
    /// external addresses (none unless one is set or confirmed): for a node that is to be
    /// reached only through a forward or a relay in front of it, so that peers do not go
    /// around it.
    pub announce_listen_addrs: bool,
    /// How QUIC connections recover from loss and control congestion (see [`QuicConfig`]).
    pub quic: QuicConfig,
    /// Tor, for onion addresses and this node's onion service (see [`tor`]). Without
    /// `anonymous`, it is the fallback: direct dials (QUIC, then TCP) come first, and a peer's
    /// onion address is dialed only when they fail. That is reachability, not anonymity: the
    /// node still listens on and dials IP addresses, and tells peers both.
    pub tor: Option<TorConfig>,
    /// Anonymous mode: every connection goes through Tor (`tor` must be set). No IP address is
    /// listened on or announced, nothing is dialed directly, no mDNS, relay or hole punching;
    /// Kademlia and the peer table keep onion addresses only. `docs/privacy.md` says what it
    /// hides and what it does not.
    pub anonymous: bool,
}

/// Tor for the node: where it comes from and whether the node serves an onion service.
#[derive(Clone)]
pub struct TorConfig {
    /// Tor itself: a child `tor` ([`tor::TorDaemon`]) or a running one ([`tor::TorAttach`]).
    pub backend: Arc<dyn tor::TorBackend>,
    /// Serve an onion service on this virtual port (`None`: dial only).
    pub onion_port: Option<u16>,
    /// Where the onion service's key is kept, so that the address outlives restarts; `None`:
    /// a new address at every start.
    pub onion_key_file: Option<PathBuf>,
    /// Seals the onion key file (set by the facade for an encrypted store); `None`: plain.
    pub onion_key_seal: Option<Arc<dyn FileSeal>>,
}

impl TorConfig {
    /// Tor from `backend`, serving an onion service on [`tor::ONION_PORT`] whose key the
    /// node keeps (the facade picks the file).
    pub fn new(backend: Arc<dyn tor::TorBackend>) -> TorConfig {
        TorConfig {
            backend,
            onion_port: Some(tor::ONION_PORT),
            onion_key_file: None,
            onion_key_seal: None,
        }
    }
}

impl std::fmt::Debug for TorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorConfig")
            .field("backend", &self.backend)
            .field("onion_port", &self.onion_port)
            .field("onion_key_file", &self.onion_key_file)
            .finish()
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        let addr = |s: &str| s.parse().expect("valid multiaddr");
        NetConfig {
            // QUIC and TCP, each where this build has it.
            listen: [
                (cfg!(feature = "quic"), "/ip4/0.0.0.0/udp/0/quic-v1"),
                (cfg!(feature = "tcp"), "/ip4/0.0.0.0/tcp/0"),
                (cfg!(feature = "quic"), "/ip6/::/udp/0/quic-v1"),
                (cfg!(feature = "tcp"), "/ip6/::/tcp/0"),
            ]
            .into_iter()
            .filter(|(built, _)| *built)
            .map(|(_, a)| addr(a))
            .collect(),
            bootstrap: Vec::new(),
            relays: Vec::new(),
            relay_server: false,
            mdns: cfg!(feature = "mdns"),
            topics: Vec::new(),
            sync: SyncConfig::default(),
            anti_entropy: Duration::from_secs(30),
            redial_min: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            tick: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(60),
            progress_window: Duration::from_secs(60),
            progress_bytes_min: 16 << 10,
            inbound_sessions_max: 8,
            gossip_per_peer_per_sec: 1000,
            peers_file: None,
            peers_seal: None,
            restore_peers: true,
            stop_on_signals: false,
            verifier: None,
            announce_listen_addrs: true,
            quic: QuicConfig::default(),
            tor: None,
            anonymous: false,
        }
    }
}

/// Why the network could not start or take a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The swarm could not be built.
    #[error("building the network failed: {0}")]
    Build(String),
    /// An address could not be listened on. Fix: check the address and that the port is free.
    #[error("cannot listen on {0}: {1}")]
    Listen(Multiaddr, String),
    /// The network thread could not start.
    #[error("starting the network thread failed: {0}")]
    Thread(std::io::Error),
    /// The network thread has stopped.
    #[error("the network thread has stopped")]
    Stopped,
    /// No listen address of the kind asked for was reported in time. Fix: check the listen
    /// addresses the node was given.
    #[error("no listen address containing {0:?} was reported in time")]
    NotListening(String),
    /// The command queue is full. Fix: retry later.
    #[error("the network's command queue is full")]
    Busy,
    /// A setting is out of range. Fix: the message names it and its range.
    #[error("invalid network configuration: {0}")]
    Config(String),
}

impl NetConfig {
    /// Checks the settings a peer sees or relies on (the frame cap and the topic list), and
    /// that anonymous mode is not contradicted by another setting.
    pub fn validate(&self) -> Result<(), NetError> {
        self.check_built()?;
        if self.anonymous {
            let clash = if self.tor.is_none() {
                Some("it needs `tor`")
            } else if self.mdns {
                Some("mDNS announces the node on the LAN")
            } else if !self.listen.is_empty() {
                Some("it listens on no address but its onion service (`listen` must be empty)")
            } else if !self.relays.is_empty() || self.relay_server {
                Some("relays see the node's IP address")
            } else {
                None
            };
            if let Some(why) = clash {
                return Err(NetError::Config(format!("anonymous mode: {why}")));
            }
        }
        xaeroflux_sync::check_frame_bytes(self.sync.frame_bytes_max as u64)
            .map_err(NetError::Config)?;
        if self.topics.len() > OPEN_TOPICS_MAX {
            return Err(NetError::Config(format!(
                "{} topics; a node follows at most {OPEN_TOPICS_MAX} (none: all)",
                self.topics.len()
            )));
        }
        Ok(())
    }
}

impl NetConfig {
    /// Refuses a setting whose code this build leaves out (a cargo feature of this crate),
    /// naming the feature: a listen address of a transport not built, mDNS, relays, Tor.
    fn check_built(&self) -> Result<(), NetError> {
        let left_out = |what: &str, feature: &str| {
            Err(NetError::Config(format!(
                "{what}: this build leaves it out (cargo feature `{feature}`)"
            )))
        };
        for addr in &self.listen {
            let text = addr.to_string();
            if !cfg!(feature = "quic") && text.contains("/quic-v1") {
                return left_out(&format!("listening on {text}"), "quic");
            }
            if !cfg!(feature = "tcp") && text.contains("/tcp/") {
                return left_out(&format!("listening on {text}"), "tcp");
            }
        }
        if !cfg!(feature = "mdns") && self.mdns {
            return left_out("mDNS", "mdns");
        }
        if !cfg!(feature = "relay") && (self.relay_server || !self.relays.is_empty()) {
            return left_out("relays", "relay");
        }
        if !cfg!(feature = "tor") && self.tor.is_some() {
            return left_out("Tor", "tor");
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch by the system clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh session salt from the operating system's generator.
pub(crate) fn salt() -> Result<u64, getrandom::Error> {
    getrandom::u64()
}

/// The running network: a thread with its own current-thread runtime. Dropping the handle
/// stops the thread and waits for it.
pub struct NetHandle {
    /// Taken out (dropped) before the thread is joined, so the thread sees the disconnect
    /// even when the queue was too full for `Shutdown`.
    commands: Option<Sender<Command>>,
    wake: Arc<Notify>,
    events: Receiver<NetEvent>,
    peer: PeerId,
    thread: Option<JoinHandle<()>>,
    next_request: AtomicU64,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl NetHandle {
    /// Starts the libp2p network with the node's network key, an ed25519 seed (kept, zeroized
    /// on stop, to build the transport again when the network resumes after a pause). Give it
    /// a key of its own, not the author's: the peer id is announced to the LAN and every peer.
    pub fn start(store: Store, seed: [u8; 32], cfg: NetConfig) -> Result<NetHandle, NetError> {
        let seed = zeroize::Zeroizing::new(seed);
        let peer = keypair_from_seed(&seed).public().to_peer_id();
        spawn(peer, store, cfg, move |cfg| {
            Libp2pTransport::new(&seed, cfg)
        })
    }

    /// Starts a node on an in-memory network.
    pub fn start_memory(
        store: Store,
        hub: &MemoryHub,
        peer: PeerId,
        cfg: NetConfig,
    ) -> Result<NetHandle, NetError> {
        let hub = hub.clone();
        spawn(peer, store, cfg, move |_| Ok(hub.join(peer)))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// Reports from the network thread.
    pub fn events(&self) -> &Receiver<NetEvent> {
        &self.events
    }

    fn command(&self, c: Command) -> Result<(), NetError> {
        let commands = self.commands.as_ref().ok_or(NetError::Stopped)?;
        match commands.try_send(c) {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(NetError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(NetError::Stopped),
        }
    }

    /// Waits up to `limit` for the first listen address whose text contains `kind` (say
    /// `"/quic-v1"`, `"/tcp/"`, `"/memory/"`; empty: any) and returns it with this node's peer id
    /// at its end, ready to dial. Other reports read meanwhile are dropped: call this before
    /// watching [`NetHandle::events`].
    pub fn wait_listening(&self, kind: &str, limit: Duration) -> Result<Multiaddr, NetError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(NetEvent::Listening(a)) if a.to_string().contains(kind) => {
                    return Ok(with_peer(a, self.peer))
                }
                Ok(_) => {}
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(NetError::NotListening(kind.to_owned()))
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(NetError::Stopped)
                }
            }
        }
    }

    /// Gossips a stored event to connected peers. A full queue returns [`NetError::Busy`]:
    /// the event is stored, and anti-entropy carries it.
    pub fn publish(&self, event: VerifiedEvent) -> Result<(), NetError> {
        self.command(Command::Publish(event))
    }

    fn next_request(&self) -> RequestId {
        RequestId(self.next_request.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Dials an address (with `/p2p/<id>` at its end to check whom it reaches). The outcome
    /// is reported as [`NetEvent::Dialed`] or [`NetEvent::DialFailed`] carrying the returned
    /// id (and a new connection as [`NetEvent::Connected`], with its first sync round).
    pub fn dial(&self, addr: Multiaddr) -> Result<RequestId, NetError> {
        let request = self.next_request();
        self.command(Command::Dial { addr, request })?;
        Ok(request)
    }

    /// Starts a sync round with every connected peer now: [`NetEvent::SyncRound`] names them,
    /// and each session's [`NetEvent::Synced`] or [`NetEvent::SyncFailed`] carries the
    /// returned id.
    pub fn sync_now(&self) -> Result<RequestId, NetError> {
        let request = self.next_request();
        self.command(Command::SyncNow(request))?;
        Ok(request)
    }

    /// Dials `addr` (unless it names a peer already connected) and reconciles `scope` with
    /// the peer it reaches: its topics (none: the topics this node follows, as agreed with the
    /// peer) and its time window. A session narrowed by authors is refused (the peer answers
    /// from its topic index); a sync with a store on this machine takes any scope. The
    /// outcome reaches the returned request alone (the reports on [`NetHandle::events`] carry
    /// its id too); sessions that fail through no fault of the peer are retried, with backoff,
    /// while the peer stays connected.
    pub fn sync_with(&self, addr: Multiaddr, scope: Scope) -> Result<SyncRequest, SyncWithError> {
        if !scope.authors.is_empty() {
            return Err(SyncWithError::AuthorsScope);
        }
        if scope.lower() >= scope.upper() {
            return Err(SyncWithError::EmptyWindow);
        }
        let request = self.next_request();
        let (reply, progress) = bounded(REPLIES_MAX);
        self.command(Command::SyncWith {
            addr,
            scope,
            request,
            reply,
        })
        .map_err(|e| match e {
            NetError::Busy => SyncWithError::Busy,
            _ => SyncWithError::Stopped,
        })?;
        Ok(SyncRequest::new(request, progress))
    }

    /// Pauses the network, for an app going to the background, and returns once it is
    /// paused: sessions end (what they received is stored), connections close, the peer
    /// table is saved, and the transport with its sockets and timers is gone. While paused
    /// the network thread sleeps until the next command: no timer fires, nothing is polled.
    /// Requests under way end with [`SyncWithError::Paused`]; publishing stores events (their
    /// gossip is left to the first sync after resuming). Pausing a paused network does
    /// nothing.
    pub fn pause(&self) -> Result<(), NetError> {
        let (ack, done) = bounded(1);
        self.command(Command::Pause(ack))?;
        done.recv().map_err(|_| NetError::Stopped)
    }

    /// Resumes a paused network and returns once its transport is back: it listens again
    /// (on the configured addresses; ports chosen by the system may differ) and redials the
    /// peers it was connected to. Resuming a running network does nothing.
    pub fn resume(&self) -> Result<(), NetError> {
        let (ack, done) = bounded(1);
        self.command(Command::Resume(ack))?;
        done.recv().map_err(|_| NetError::Stopped)?
    }

    /// Stops the network thread and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // A full queue loses `Shutdown`, but not the disconnect of the last sender.
        if let Some(commands) = self.commands.take() {
            let _ = commands.try_send(Command::Shutdown);
        }
        self.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NetHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn<T, F>(
    peer: PeerId,
    store: Store,
    cfg: NetConfig,
    mut make: F,
) -> Result<NetHandle, NetError>
where
    T: Transport + 'static,
    F: FnMut(&NetConfig) -> Result<T, NetError> + Send + 'static,
{
    cfg.validate()?;
    let (cmd_tx, cmd_rx) = bounded(COMMANDS_MAX);
    let (ev_tx, ev_rx) = bounded(EVENTS_MAX);
    let (ready_tx, ready_rx) = bounded(1);
    let wake = Arc::new(Notify::new());
    let thread_wake = wake.clone();
    let thread = std::thread::Builder::new()
        .name("xf-net".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(NetError::Thread(e)));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let transport = match make(&cfg) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut carry = Carry::new(store, cfg, cmd_rx, thread_wake, ev_tx);
                let mut transport = Some(transport);
                loop {
                    let Some(t) = transport.take() else { break };
                    let (exit, back) = Engine::new(t, carry).run().await;
                    carry = back;
                    let Exit::Pause(ack) = exit else { break };
                    // The transport is gone: its sockets closed, its timers dropped.
                    carry.emit(NetEvent::Paused);
                    let _ = ack.send(());
                    transport = match paused(&carry, &mut make) {
                        Some(t) => Some(t),
                        None => break,
                    };
                    carry.emit(NetEvent::Resumed);
                }
            });
        })
        .map_err(NetError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(NetHandle {
            commands: Some(cmd_tx),
            wake,
            events: ev_rx,
            peer,
            thread: Some(thread),
            next_request: AtomicU64::new(0),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(NetError::Stopped)
        }
    }
}

/// The paused network: the thread blocks on the command queue (no runtime, no timer) and
/// answers what comes until told to resume, then builds the transport again. `None`: stop.
fn paused<T, F>(carry: &Carry, make: &mut F) -> Option<T>
where
    F: FnMut(&NetConfig) -> Result<T, NetError>,
{
    loop {
        match carry.commands.recv() {
            Ok(Command::Resume(ack)) => match make(&carry.cfg) {
                Ok(t) => {
                    let _ = ack.send(Ok(()));
                    return Some(t);
                }
                // Still paused; the caller may try again.
                Err(e) => drop(ack.send(Err(e))),
            },
            Ok(Command::Pause(ack)) => drop(ack.send(())),
            // Stored already; the first sync after resuming carries it.
            Ok(Command::Publish(_)) => {}
            Ok(Command::Dial { request, .. }) => carry.emit(NetEvent::DialFailed {
                peer: None,
                error: "the network is paused".into(),
                request: Some(request),
            }),
            Ok(Command::SyncNow(request)) => carry.emit(NetEvent::SyncRound {
                request,
                peers: Vec::new(),
            }),
            Ok(Command::SyncWith { reply, .. }) => {
                drop(reply.try_send(SyncProgress::Done(Err(SyncWithError::Paused))))
            }
            Ok(Command::Shutdown) | Err(_) => return None,
        }
    }
}
