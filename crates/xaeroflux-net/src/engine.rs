//! The node's network loop, generic over the [`Transport`]: sync on every new connection and
//! periodically (anti-entropy), gossip of local events, verification of received ones, redial
//! with backoff, and scoring of peers that misbehave. It runs on one thread, inside a
//! current-thread runtime; sessions are tasks on the same thread.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};
use xaeroflux_event::{
    EventId, Limits, Topic, Verification, Verified, VerifiedEvent, Verifier, VerifierStopped,
};
use xaeroflux_store::{Durability, FollowTicket, Store, Ticket};

use crate::peers::{next_backoff, Peers, RateLimit};
use crate::runner::{self, Start, SyncFailure, SyncSummary, PENALTY_INVALID, PENALTY_PROTOCOL};
use crate::transport::{
    peer_in, GossipToken, Multiaddr, OpenFuture, PeerId, Transport, TransportEvent, Verdict,
};
use crate::NetConfig;

/// Gossip topic every event is published on; nodes following all topics subscribe to it.
pub const GOSSIP_ALL: &str = "xf/1/all";
/// Gossip writes in flight before the loop waits for the oldest.
const GOSSIP_WRITES_AHEAD: usize = 64;
/// Gossiped events waiting at the verifier stage; more are dropped unread (anti-entropy
/// fetches whatever of them was real).
const GOSSIP_CHECKS_AHEAD: usize = 256;
/// Score a peer earns back per anti-entropy round of good behaviour.
const FORGIVE_PER_ROUND: i32 = 5;
/// Events other processes stored that one upkeep tick gossips at most; beyond, the node
/// reconciles with its peers instead (an `xf import` beside a node is not a gossip storm).
const FOLLOW_EVENTS_MAX: usize = 256;
/// How long a stopping node waits for its connections to close cleanly, so peers learn at
/// once that it left instead of holding a stale connection until it times out.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The gossip topic of one event topic.
pub fn gossip_topic(topic: &Topic) -> String {
    let mut name = String::from("xf/1/t/");
    for b in topic.0 {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// What the rest of the engine asks of the network thread.
#[derive(Debug)]
pub(crate) enum Command {
    Publish(VerifiedEvent),
    Dial(Multiaddr),
    SyncNow,
    Shutdown,
}

/// What the network thread reports (to the CLI, tests, an app).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NetEvent {
    /// Listening on an address.
    Listening(Multiaddr),
    /// A peer connected.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: Multiaddr,
    },
    /// A peer's last connection closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A session finished.
    Synced(SyncSummary),
    /// A session failed.
    SyncFailed {
        /// The peer.
        peer: PeerId,
        /// Whether this side opened it.
        initiator: bool,
        /// Why.
        error: String,
        /// Score deducted from the peer for it.
        penalty: i32,
        /// This side opens the session again, with backoff, while the peer stays connected
        /// (a busy peer, a cut stream).
        retrying: bool,
    },
    /// A gossiped event was verified and queued for storing.
    Gossiped {
        /// The event.
        id: EventId,
        /// The peer that forwarded it.
        from: PeerId,
    },
    /// A peer misbehaved past the threshold and was blocked.
    Blocked {
        /// The peer.
        peer: PeerId,
    },
    /// A dial failed.
    DialFailed {
        /// The peer, if known.
        peer: Option<PeerId>,
        /// Why.
        error: String,
    },
    /// The network stopped on a signal (with `stop_on_signals`); the last report.
    Stopped {
        /// The signal's name.
        signal: &'static str,
    },
}

/// Sessions running with one peer: at most one each way.
#[derive(Debug, Default, Clone, Copy)]
struct Running {
    outbound: bool,
    inbound: bool,
    /// Another outbound session was asked for while one ran.
    again: bool,
}

pub(crate) struct Engine<T: Transport> {
    transport: T,
    store: Store,
    cfg: NetConfig,
    commands: Receiver<Command>,
    wake: Arc<Notify>,
    events: Sender<NetEvent>,
    peers: Peers,
    running: HashMap<PeerId, Running>,
    done_tx: mpsc::UnboundedSender<(PeerId, bool, Result<SyncSummary, SyncFailure>)>,
    done_rx: mpsc::UnboundedReceiver<(PeerId, bool, Result<SyncSummary, SyncFailure>)>,
    gossip_writes: VecDeque<Ticket>,
    /// Bootstrap addresses without a known peer: dialed until they answer.
    bootstrap: Vec<(Multiaddr, Instant, Duration)>,
    last_anti_entropy: Instant,
    /// Outbound sessions that failed through no fault of the peer: when to retry, and the
    /// wait before it (doubling per failure in a row).
    retries: HashMap<PeerId, (Instant, Duration)>,
    /// Gossip budget of each connected peer.
    gossip_limits: HashMap<PeerId, RateLimit>,
    /// Gossip messages dropped over a peer's rate.
    gossip_dropped: u64,
    /// The writer's answer about events other processes stored, while it is pending.
    following: Option<FollowTicket>,
    /// Checks what sessions and gossip receive.
    verifier: Verifier,
    /// Gossiped events at the verifier stage, oldest first.
    gossip_checks: VecDeque<GossipCheck>,
}

/// A gossiped event handed to the verifier stage, and what its report needs.
struct GossipCheck {
    topic: String,
    token: GossipToken,
    check: Verification,
}

/// First retry of a failed session; doubles per failure in a row, up to an anti-entropy round.
const RETRY_FIRST: Duration = Duration::from_millis(500);

enum Input {
    Wake,
    Signal(&'static str),
    Transport(TransportEvent),
    Done(Box<(PeerId, bool, Result<SyncSummary, SyncFailure>)>),
    Checked(Result<Verified, VerifierStopped>),
    Tick,
}

impl<T: Transport> Engine<T> {
    pub(crate) fn new(
        transport: T,
        store: Store,
        cfg: NetConfig,
        commands: Receiver<Command>,
        wake: Arc<Notify>,
        events: Sender<NetEvent>,
    ) -> Engine<T> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let cfg_verifier = cfg.verifier.clone().unwrap_or_else(Verifier::per_core);
        let mut peers = Peers::new(cfg.redial_min, cfg.redial_max);
        if let Some(text) = cfg
            .peers_file
            .as_ref()
            .filter(|_| cfg.restore_peers)
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            let n = peers.load(&text);
            debug!(peers = n, "peer table restored");
        }
        // A bootstrap address naming its peer makes that peer one to keep connected, redialed
        // with backoff like any other; one without a peer id is dialed until something answers.
        let mut bootstrap = Vec::new();
        for addr in &cfg.bootstrap {
            match peer_in(addr) {
                Some(peer) => {
                    peers.learn(peer, addr.clone(), true);
                    peers.dial_soon(peer);
                }
                None => bootstrap.push((addr.clone(), now, Duration::ZERO)),
            }
        }
        Engine {
            transport,
            store,
            peers,
            bootstrap,
            cfg,
            commands,
            wake,
            events,
            running: HashMap::new(),
            done_tx,
            done_rx,
            gossip_writes: VecDeque::new(),
            last_anti_entropy: now,
            retries: HashMap::new(),
            gossip_limits: HashMap::new(),
            gossip_dropped: 0,
            following: None,
            verifier: cfg_verifier,
            gossip_checks: VecDeque::new(),
        }
    }

    /// Runs until told to shut down (or every handle is gone).
    pub(crate) async fn run(mut self) {
        if self.cfg.topics.is_empty() {
            self.transport.subscribe(GOSSIP_ALL);
        }
        for t in &self.cfg.topics.clone() {
            self.transport.subscribe(&gossip_topic(t));
        }
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signals = Signals::new(self.cfg.stop_on_signals);
        let mut stopped_by = None;
        loop {
            let input = {
                let transport = &mut self.transport;
                let done_rx = &mut self.done_rx;
                let checking = !self.gossip_checks.is_empty();
                tokio::select! {
                    _ = self.wake.notified() => Input::Wake,
                    ev = poll_fn(|cx| transport.poll_event(cx)) => Input::Transport(ev),
                    Some(done) = done_rx.recv() => Input::Done(Box::new(done)),
                    checked = runner::front(&mut self.gossip_checks, |c| &mut c.check), if checking => {
                        Input::Checked(checked)
                    }
                    _ = tick.tick() => Input::Tick,
                    name = signals.next() => Input::Signal(name),
                }
            };
            match input {
                Input::Wake => {
                    if !self.drain_commands() {
                        break;
                    }
                }
                Input::Signal(name) => {
                    info!(signal = name, "stopping");
                    stopped_by = Some(name);
                    break;
                }
                Input::Transport(ev) => self.on_transport(ev),
                Input::Done(done) => {
                    let (peer, initiator, r) = *done;
                    self.on_done(peer, initiator, r)
                }
                Input::Checked(checked) => {
                    if let Some(done) = self.gossip_checks.pop_front() {
                        self.on_gossip_checked(done, checked);
                    }
                }
                Input::Tick => self.on_tick(),
            }
        }
        self.close_connections().await;
        self.finish_writes().await;
        let flushed = match self.store.flush() {
            Ok(flush) => flush.await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            warn!(error = %e, "flushing received events failed");
        }
        self.peers.all_disconnected(crate::now_ms());
        self.persist_peers();
        if let Some(signal) = stopped_by {
            self.emit(NetEvent::Stopped { signal });
        }
    }

    /// Closes every connection and lets the transport say so to the peers, for a bounded time.
    async fn close_connections(&mut self) {
        let connected = self.peers.connected_peers();
        if connected.is_empty() {
            return;
        }
        for peer in &connected {
            self.transport.disconnect(*peer);
        }
        let mut open = connected.len();
        let deadline = tokio::time::sleep(CLOSE_WAIT);
        tokio::pin!(deadline);
        while open > 0 {
            let transport = &mut self.transport;
            tokio::select! {
                ev = poll_fn(|cx| transport.poll_event(cx)) => {
                    if let TransportEvent::Disconnected { peer } = ev {
                        if connected.contains(&peer) {
                            open -= 1;
                        }
                    }
                }
                _ = &mut deadline => break,
            }
        }
    }

    fn emit(&self, ev: NetEvent) {
        // Observers that fall behind lose reports, never stall the network.
        if let Err(TrySendError::Full(_)) = self.events.try_send(ev) {
            debug!("event observer full, report dropped");
        }
    }

    /// Returns false on shutdown.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Publish(ev)) => self.publish(ev),
                Ok(Command::Dial(addr)) => self.dial(addr),
                Ok(Command::SyncNow) => {
                    for peer in self.peers.connected_peers() {
                        self.start_sync(peer);
                    }
                }
                Ok(Command::Shutdown) => return false,
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr) {
        if let Some(peer) = peer_in(&addr) {
            self.peers.learn(peer, addr.clone(), true);
        }
        if let Err(e) = self.transport.dial(addr.clone()) {
            warn!(%addr, error = %e, "dial failed");
        }
    }

    fn publish(&mut self, ev: VerifiedEvent) {
        let topic = *ev.as_ref().topic();
        self.gossip(ev.as_bytes().to_vec(), &topic);
    }

    fn gossip(&mut self, bytes: Vec<u8>, topic: &Topic) {
        self.transport.publish(GOSSIP_ALL, bytes.clone());
        self.transport.publish(&gossip_topic(topic), bytes);
    }

    /// Gossips what other processes (`xf post` beside a running node) stored: asks the
    /// writer on one tick, and takes its answer on a later one, never waiting for it.
    fn follow_store(&mut self) {
        match self.following.as_mut().map(FollowTicket::try_wait) {
            None => {}
            Some(None) => return,
            Some(Some(Err(e))) => {
                warn!(error = %e, "following the store failed");
                self.following = None;
            }
            Some(Some(Ok(followed))) => {
                self.following = None;
                let n = followed.events.len();
                for ev in followed.events {
                    let topic = *ev.event().topic();
                    self.gossip(ev.bytes.to_vec(), &topic);
                }
                if n > 0 {
                    debug!(events = n, "gossiped events stored by another process");
                }
                if followed.skipped > 0 || n >= FOLLOW_EVENTS_MAX {
                    // More than gossip should carry: reconcile instead.
                    for peer in self.peers.connected_peers() {
                        self.start_sync(peer);
                    }
                }
            }
        }
        match self.store.follow(FOLLOW_EVENTS_MAX) {
            Ok(ticket) => self.following = Some(ticket),
            Err(e) => debug!(error = %e, "cannot follow the store"),
        }
    }

    fn on_transport(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Listening(addr) => {
                info!(%addr, "listening");
                self.emit(NetEvent::Listening(addr));
            }
            TransportEvent::Connected { peer, addr, dialer } => {
                if self.peers.is_blocked(&peer) {
                    self.transport.disconnect(peer);
                    return;
                }
                info!(%peer, %addr, dialer, "connected");
                self.peers
                    .connected(peer, addr.clone(), dialer, crate::now_ms());
                if dialer {
                    let reached = without_peer(&addr);
                    self.bootstrap
                        .retain(|(a, _, _)| without_peer(a) != reached);
                }
                self.emit(NetEvent::Connected { peer, addr });
                // The dialer opens the first session, so a new pair runs one, not two.
                if dialer {
                    self.start_sync(peer);
                }
            }
            TransportEvent::Disconnected { peer } => {
                info!(%peer, "disconnected");
                self.peers.disconnected(peer, crate::now_ms());
                self.gossip_limits.remove(&peer);
                self.emit(NetEvent::Disconnected { peer });
            }
            TransportEvent::InboundSync { peer, link } => {
                let answering = self.running.values().filter(|r| r.inbound).count();
                let busy = self.running.get(&peer).is_some_and(|r| r.inbound)
                    || answering >= self.cfg.inbound_sessions_max
                    || self.peers.is_blocked(&peer);
                // A refused session leaves no entry behind and reports nothing: only running
                // sessions are kept.
                if !busy {
                    self.running.entry(peer).or_default().inbound = true;
                }
                self.spawn_session(
                    peer,
                    Box::pin(async { Ok(link) }),
                    Start::Responder { busy },
                );
            }
            TransportEvent::Gossip { topic, data, token } => self.on_gossip(&topic, data, token),
            TransportEvent::Discovered { peer, addr } => {
                if peer == self.transport.local_peer() {
                    return;
                }
                let known_connected = self.peers.get(&peer).is_some_and(|e| e.connected);
                self.peers.learn(peer, addr.clone(), true);
                if !known_connected && !self.peers.is_blocked(&peer) {
                    debug!(%peer, %addr, "discovered");
                    let _ = self.transport.dial(with_peer(addr, peer));
                }
            }
            TransportEvent::DialFailed { peer, error } => {
                debug!(?peer, %error, "dial failed");
                if let Some(p) = peer {
                    self.peers.dial_failed(p);
                }
                self.emit(NetEvent::DialFailed { peer, error });
            }
        }
    }

    fn on_gossip(&mut self, topic: &str, data: Vec<u8>, token: GossipToken) {
        let from = token.source;
        let now = Instant::now();
        let rate = self.cfg.gossip_per_peer_per_sec;
        let limit = self
            .gossip_limits
            .entry(from)
            .or_insert_with(|| RateLimit::new(rate, now));
        if !limit.take(now) {
            return self.drop_gossip(token, "over the peer's rate");
        }
        if self.gossip_checks.len() >= GOSSIP_CHECKS_AHEAD {
            return self.drop_gossip(token, "over what the verifier holds");
        }
        let check = self
            .verifier
            .verify(vec![data], &Limits::at(crate::now_ms()));
        self.gossip_checks.push_back(GossipCheck {
            topic: topic.to_owned(),
            token,
            check,
        });
    }

    /// Drops a gossiped message unread: ignored, neither forwarded nor held against anyone
    /// (anti-entropy fetches whatever of it was real). Logged at each power of two.
    fn drop_gossip(&mut self, token: GossipToken, why: &'static str) {
        self.gossip_dropped += 1;
        if self.gossip_dropped.is_power_of_two() {
            warn!(peer = %token.source, dropped = self.gossip_dropped, why, "gossip dropped");
        }
        self.transport.validated(token, Verdict::Ignore);
    }

    /// Reports a gossiped event's verification to the transport, and stores it if it holds.
    fn on_gossip_checked(&mut self, done: GossipCheck, checked: Result<Verified, VerifierStopped>) {
        let GossipCheck { topic, token, .. } = done;
        let from = token.source;
        let result = match checked.map(|mut r| r.pop()) {
            Ok(Some(result)) => result,
            Ok(None) | Err(_) => {
                self.transport.validated(token, Verdict::Ignore);
                return;
            }
        };
        let ev = match result {
            Ok(ev) => ev,
            Err(e) if e.verdict().is_invalid() => {
                warn!(peer = %from, error = %e, "invalid gossiped event");
                self.transport.validated(token, Verdict::Reject);
                self.penalize(from, PENALTY_INVALID, "invalid gossiped event");
                return;
            }
            Err(e) => {
                // Newer than this build, or early by this clock: not the forwarder's fault.
                // Not forwarded by this node either; sync fetches it once it can be checked.
                debug!(peer = %from, error = %e, "gossiped event declined");
                self.transport.validated(token, Verdict::Ignore);
                return;
            }
        };
        let event_topic = *ev.as_ref().topic();
        if topic != GOSSIP_ALL && topic != gossip_topic(&event_topic) {
            self.transport.validated(token, Verdict::Reject);
            self.penalize(from, PENALTY_PROTOCOL, "event gossiped on another topic");
            return;
        }
        self.transport.validated(token, Verdict::Accept);
        if !self.cfg.topics.is_empty() && !self.cfg.topics.contains(&event_topic) {
            return;
        }
        let id = *ev.id();
        self.reap_writes();
        if self.gossip_writes.len() >= GOSSIP_WRITES_AHEAD {
            // The writer is behind (a bulk sync): the loop never waits for it. The event is
            // verified and forwarded; anti-entropy stores it later.
            debug!(%id, "writer busy: gossiped event left to anti-entropy");
            return;
        }
        match self.store.submit(vec![ev], Durability::Relaxed) {
            Ok(ticket) => {
                self.gossip_writes.push_back(ticket);
                self.emit(NetEvent::Gossiped { id, from });
            }
            Err(e) => warn!(error = %e, "storing a gossiped event failed"),
        }
    }

    /// Drops the gossip writes already done (reporting failures), without waiting for any.
    fn reap_writes(&mut self) {
        while let Some(done) = self.gossip_writes.front_mut().and_then(Ticket::try_wait) {
            self.gossip_writes.pop_front();
            if let Err(e) = done {
                warn!(error = %e, "storing a gossiped event failed");
            }
        }
    }

    /// Awaits every gossip write still in flight (when stopping).
    async fn finish_writes(&mut self) {
        while let Some(ticket) = self.gossip_writes.pop_front() {
            if let Err(e) = ticket.await {
                warn!(error = %e, "storing a gossiped event failed");
            }
        }
    }

    fn start_sync(&mut self, peer: PeerId) {
        // The salt keys fingerprints: one an attacker could predict lets it grind colliding
        // ids, so without the OS's randomness no session starts (anti-entropy tries again).
        let salt = match crate::salt() {
            Ok(salt) => salt,
            Err(e) => {
                warn!(%peer, error = %e, "no randomness for a session salt: session not started");
                return;
            }
        };
        let running = self.running.entry(peer).or_default();
        if running.outbound {
            running.again = true;
            return;
        }
        running.outbound = true;
        let open = self.transport.open_sync(peer);
        self.spawn_session(peer, open, Start::Initiator { salt });
    }

    /// Runs a session on this thread once its stream is open, and reports how it ended
    /// (unless it only told the peer this side is busy: that one was never counted).
    fn spawn_session(&self, peer: PeerId, open: OpenFuture, start: Start) {
        let setup = runner::Setup {
            store: self.store.clone(),
            verifier: self.verifier.clone(),
            cfg: self.cfg.sync,
            topics: self.cfg.topics.clone(),
            progress: runner::Progress {
                window: self.cfg.progress_window,
                bytes_min: self.cfg.progress_bytes_min,
            },
        };
        let done = self.done_tx.clone();
        tokio::task::spawn_local(async move {
            let r = match open.await {
                Ok(link) => runner::run(setup, peer, link, start).await,
                Err(e) => Err(e.into()),
            };
            match start {
                Start::Responder { busy: true } => {}
                Start::Initiator { .. } => drop(done.send((peer, true, r))),
                Start::Responder { busy: false } => drop(done.send((peer, false, r))),
            }
        });
    }

    fn on_done(&mut self, peer: PeerId, initiator: bool, r: Result<SyncSummary, SyncFailure>) {
        let mut again = false;
        if let Some(running) = self.running.get_mut(&peer) {
            if initiator {
                running.outbound = false;
                again = std::mem::take(&mut running.again);
            } else {
                running.inbound = false;
            }
            if !running.outbound && !running.inbound {
                self.running.remove(&peer);
            }
        }
        match r {
            Ok(summary) => {
                let s = &summary.stats;
                info!(
                    %peer,
                    initiator,
                    round_trips = s.round_trips(),
                    sent = s.events_sent,
                    received = s.events_received,
                    bytes_out = s.bytes_sent,
                    bytes_in = s.bytes_received,
                    ms = summary.elapsed.as_millis() as u64,
                    "synced"
                );
                self.peers.synced(peer);
                if initiator {
                    self.retries.remove(&peer);
                }
                if s.events_received > 0 {
                    // The writer thread does the fsync; this loop goes on.
                    match self.store.flush() {
                        Ok(flush) => {
                            tokio::task::spawn_local(async move {
                                if let Err(e) = flush.await {
                                    warn!(error = %e, "flushing received events failed");
                                }
                            });
                        }
                        Err(e) => warn!(error = %e, "flushing received events failed"),
                    }
                }
                self.emit(NetEvent::Synced(summary));
            }
            Err(e) => {
                let penalty = e.penalty();
                if matches!(e, SyncFailure::Busy) {
                    debug!(%peer, "peer busy");
                } else {
                    warn!(%peer, initiator, error = %e, penalty, "sync failed");
                }
                let retrying = penalty == 0 && initiator && !matches!(e, SyncFailure::Disjoint);
                self.emit(NetEvent::SyncFailed {
                    peer,
                    initiator,
                    error: e.to_string(),
                    penalty,
                    retrying,
                });
                if penalty > 0 {
                    self.penalize(peer, penalty, "sync protocol violation");
                } else if retrying {
                    // A cut stream or a busy peer: what was stored stays, and the retry moves
                    // only what is still missing. (libp2p-stream also drops an inbound stream
                    // when one is already waiting to be accepted; the opener sees it closed.)
                    let last = self.retries.get(&peer).map_or(Duration::ZERO, |r| r.1);
                    let max = self.cfg.anti_entropy;
                    let wait = next_backoff(last, RETRY_FIRST.min(max), max);
                    self.retries.insert(peer, (Instant::now() + wait, wait));
                }
            }
        }
        if again && self.peers.get(&peer).is_some_and(|e| e.connected) {
            self.start_sync(peer);
        }
    }

    /// Scores a peer down and disconnects it; past the threshold it is blocked.
    fn penalize(&mut self, peer: PeerId, penalty: i32, why: &str) {
        let blocked = self.peers.penalize(peer, penalty);
        warn!(%peer, penalty, why, blocked, "peer scored down and disconnected");
        if blocked {
            self.transport.block(peer);
            self.emit(NetEvent::Blocked { peer });
        } else {
            self.transport.disconnect(peer);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (peer, addrs) in self.peers.due(now) {
            debug!(%peer, "redialing");
            for addr in addrs {
                let _ = self.transport.dial(with_peer(addr, peer));
            }
        }
        let (min, max) = (self.cfg.redial_min, self.cfg.redial_max);
        for (addr, next, backoff) in &mut self.bootstrap {
            if *next <= now {
                *backoff = next_backoff(*backoff, min, max);
                *next = now + *backoff;
                let _ = self.transport.dial(addr.clone());
            }
        }
        let due: Vec<PeerId> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.peers.get(&peer).is_some_and(|e| e.connected) {
                // Stays in the map (with its wait) until a session succeeds.
                if let Some(r) = self.retries.get_mut(&peer) {
                    r.0 = now + self.cfg.anti_entropy;
                }
                self.start_sync(peer);
            } else {
                self.retries.remove(&peer);
            }
        }
        for peer in self.peers.unblock_expired(now) {
            self.transport.unblock(peer);
        }
        if now.duration_since(self.last_anti_entropy) >= self.cfg.anti_entropy {
            self.last_anti_entropy = now;
            self.peers.forgive(FORGIVE_PER_ROUND);
            self.transport.tick();
            // Each pair reconciles once per round: the side with the smaller id opens it.
            let me = self.transport.local_peer();
            for peer in self.peers.connected_peers() {
                if me < peer {
                    self.start_sync(peer);
                }
            }
        }
        // The network thread never waits on the writer here: a bulk sync may have filled its
        // queue. Writes still running are checked next tick, and bounded on the gossip path.
        self.reap_writes();
        self.follow_store();
        self.persist_peers();
    }

    fn persist_peers(&mut self) {
        let Some(path) = &self.cfg.peers_file else {
            return;
        };
        if !std::mem::take(&mut self.peers.dirty) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let text = self.peers.render();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
            warn!(error = %e, "writing the peer table failed");
        }
    }
}

/// SIGINT and SIGTERM as one stream, or nothing when the host handles signals itself.
struct Signals {
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new(on: bool) -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = on
            .then(|| {
                Some((
                    signal(SignalKind::interrupt()).ok()?,
                    signal(SignalKind::terminate()).ok()?,
                ))
            })
            .flatten();
        if on && streams.is_none() {
            warn!("cannot watch for SIGINT and SIGTERM");
        }
        Signals { streams }
    }

    /// The next signal's name; never resolves when off.
    async fn next(&mut self) -> &'static str {
        match &mut self.streams {
            Some((int, term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            None => std::future::pending().await,
        }
    }
}

/// An address without the peer id at its end.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if peer_in(&a).is_some() {
        a.pop();
    }
    a
}

/// An address with the peer's id at its end (unless it has one).
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if peer_in(&addr).is_some() {
        addr
    } else {
        addr.with(libp2p::multiaddr::Protocol::P2p(peer))
    }
}
