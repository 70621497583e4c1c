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
use xaeroflux_sync::Scope;

use crate::peers::{next_backoff, Peers, RateLimit};
use crate::request::{RequestId, SyncProgress, SyncWithError};
use crate::runner::{self, Start, SyncFailure, SyncSummary, PENALTY_INVALID, PENALTY_PROTOCOL};
use crate::transport::{
    peer_in, with_peer, DialId, GossipToken, Multiaddr, OpenFuture, PeerId, Transport,
    TransportEvent, Verdict,
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
/// How long a peer scored down for a failed session keeps its connection, so the abort that
/// names its fault leaves first.
const ABORT_GRACE: Duration = Duration::from_millis(200);
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
    Dial {
        addr: Multiaddr,
        request: RequestId,
    },
    SyncNow(RequestId),
    SyncWith {
        addr: Multiaddr,
        scope: Scope,
        request: RequestId,
        reply: Sender<SyncProgress>,
    },
    /// Stop networking until `Resume`; the sender hears once every socket is closed.
    Pause(Sender<()>),
    /// Network again after `Pause`; the sender hears whether the transport came back.
    Resume(Sender<Result<(), crate::NetError>>),
    Shutdown,
}

/// Why the loop returned.
pub(crate) enum Exit {
    /// Told to stop, every handle gone, or a signal (named).
    Stop(Option<&'static str>),
    /// Told to pause: the sender hears once the transport is gone.
    Pause(Sender<()>),
}

/// One outbound session someone asked for: its scope, and the requests it answers (none for
/// the node's own rounds).
#[derive(Debug, Clone)]
struct Ask {
    scope: Scope,
    requests: Vec<RequestId>,
}

impl Ask {
    /// The node's own round: every topic it follows, no request.
    fn round() -> Ask {
        Ask {
            scope: Scope::all(),
            requests: Vec::new(),
        }
    }
}

/// A dial someone asked for, until it connects or fails.
struct PendingDial {
    addr: Multiaddr,
    request: RequestId,
    /// A `sync_with`: the scope to sync once connected.
    sync: Option<Scope>,
}

/// What the network thread reports (to the CLI, tests, an app).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NetEvent {
    /// Listening on an address.
    Listening(Multiaddr),
    /// A listener failed (it is tried again later): say, Tor could not start or serve the
    /// onion service.
    ListenFailed {
        /// The address it was to listen on.
        addr: Multiaddr,
        /// Why, with the time spent.
        error: String,
    },
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
        /// The requests the session was to answer (a retry carries them on).
        requests: Vec<RequestId>,
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
        /// The request that asked for the dial (none for the node's own redials).
        request: Option<RequestId>,
    },
    /// A dial asked for by a request reached a peer (reported once per request, whether the
    /// peer was already connected or not; [`NetEvent::Connected`] reports new connections).
    Dialed {
        /// The request.
        request: RequestId,
        /// The peer reached.
        peer: PeerId,
    },
    /// A `sync_now` request opened sessions with these peers (each ends in a `Synced` or
    /// `SyncFailed` carrying the request; none if no peer was connected).
    SyncRound {
        /// The request.
        request: RequestId,
        /// The peers a session opens with.
        peers: Vec<PeerId>,
    },
    /// The network paused: every connection is closed and nothing runs until it resumes.
    Paused,
    /// The network resumed after a pause.
    Resumed,
    /// The network stopped on a signal (with `stop_on_signals`); the last report.
    Stopped {
        /// The signal's name.
        signal: &'static str,
    },
}

/// Sessions with one peer: at most one running each way, and the outbound ones asked for
/// meanwhile.
#[derive(Debug, Default)]
struct Running {
    /// The outbound session running, and what it was asked for.
    outbound: Option<Ask>,
    inbound: bool,
    /// Outbound sessions asked for while one ran, oldest first; asks for the same scope share
    /// one session.
    waiting: Vec<Ask>,
}

impl Running {
    fn is_idle(&self) -> bool {
        self.outbound.is_none() && !self.inbound && self.waiting.is_empty()
    }

    /// Queues an ask, folding it into a waiting one of the same scope.
    fn queue(&mut self, ask: Ask) {
        match self.waiting.iter_mut().find(|w| w.scope == ask.scope) {
            Some(w) => w.requests.extend(ask.requests),
            None => self.waiting.push(ask),
        }
    }
}

/// What outlives a pause of the network: everything but the transport and the sessions.
pub(crate) struct Carry {
    pub(crate) store: Store,
    pub(crate) cfg: NetConfig,
    pub(crate) commands: Receiver<Command>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) events: Sender<NetEvent>,
    verifier: Verifier,
    peers: Peers,
    bootstrap: Vec<(Multiaddr, Instant, Duration)>,
    next_dial: u64,
}

impl Carry {
    /// The first start: the peer table restored from its file, the bootstrap peers queued.
    pub(crate) fn new(
        store: Store,
        cfg: NetConfig,
        commands: Receiver<Command>,
        wake: Arc<Notify>,
        events: Sender<NetEvent>,
    ) -> Carry {
        let now = Instant::now();
        let verifier = cfg.verifier.clone().unwrap_or_else(Verifier::per_core);
        let mut peers = Peers::new(cfg.redial_min, cfg.redial_max);
        if cfg.anonymous {
            peers.onion_only();
        }
        if let Some(text) = cfg
            .peers_file
            .as_ref()
            .filter(|_| cfg.restore_peers)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| match &cfg.peers_seal {
                Some(seal) => seal.open(&bytes),
                None => Some(bytes),
            })
            .and_then(|bytes| String::from_utf8(bytes).ok())
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
        Carry {
            store,
            cfg,
            commands,
            wake,
            events,
            verifier,
            peers,
            bootstrap,
            next_dial: 0,
        }
    }

    /// Reports to observers; ones that fall behind lose reports, never stall the network.
    pub(crate) fn emit(&self, ev: NetEvent) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(ev) {
            debug!("event observer full, report dropped");
        }
    }
}

pub(crate) struct Engine<T: Transport> {
    transport: T,
    /// The store, settings, channels, verifier, peer table and bootstrap list: what outlives
    /// a pause.
    carry: Carry,
    running: HashMap<PeerId, Running>,
    done_tx: mpsc::UnboundedSender<(PeerId, bool, Result<SyncSummary, SyncFailure>)>,
    done_rx: mpsc::UnboundedReceiver<(PeerId, bool, Result<SyncSummary, SyncFailure>)>,
    /// Peers to cut off once the abort that told them why has had time to leave (a peer and
    /// whether to block it).
    cut_tx: mpsc::UnboundedSender<(PeerId, bool)>,
    cut_rx: mpsc::UnboundedReceiver<(PeerId, bool)>,
    gossip_writes: VecDeque<Ticket>,
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
    /// The store's next sequence number when the writer was last asked.
    followed_at: Option<u64>,
    /// Gossiped events at the verifier stage, oldest first.
    gossip_checks: VecDeque<GossipCheck>,
    /// Dials requests asked for, until they connect or fail.
    dials: HashMap<DialId, PendingDial>,
    /// Where each `sync_with` request reports, until it ends.
    replies: HashMap<RequestId, Sender<SyncProgress>>,
    /// The node's own direct dials to peers that also have onion addresses, by dial.
    direct_dials: HashMap<DialId, PeerId>,
    /// Onion addresses to dial once a peer's direct dials under way have all failed (or have
    /// not connected by the instant given), and how many are under way (the Tor fallback:
    /// QUIC and TCP first).
    onion_later: HashMap<PeerId, (Vec<Multiaddr>, usize, Instant)>,
}

/// A gossiped event handed to the verifier stage, and what its report needs.
struct GossipCheck {
    topic: String,
    token: GossipToken,
    check: Verification,
}

/// How long direct dials to a peer that also has an onion address may take before it is
/// dialed through Tor as well.
const TOR_FALLBACK_AFTER: Duration = Duration::from_secs(10);

/// First retry of a failed session; doubles per failure in a row, up to an anti-entropy round.
const RETRY_FIRST: Duration = Duration::from_millis(500);

enum Input {
    Wake,
    Signal(&'static str),
    Transport(TransportEvent),
    Done(Box<(PeerId, bool, Result<SyncSummary, SyncFailure>)>),
    Checked(Result<Verified, VerifierStopped>),
    Tick,
    Cut(PeerId, bool),
}

impl<T: Transport> Engine<T> {
    pub(crate) fn new(transport: T, carry: Carry) -> Engine<T> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (cut_tx, cut_rx) = mpsc::unbounded_channel();
        Engine {
            transport,
            carry,
            running: HashMap::new(),
            done_tx,
            done_rx,
            cut_tx,
            cut_rx,
            gossip_writes: VecDeque::new(),
            last_anti_entropy: Instant::now(),
            retries: HashMap::new(),
            gossip_limits: HashMap::new(),
            gossip_dropped: 0,
            following: None,
            followed_at: None,
            gossip_checks: VecDeque::new(),
            dials: HashMap::new(),
            replies: HashMap::new(),
            direct_dials: HashMap::new(),
            onion_later: HashMap::new(),
        }
    }

    /// Runs until told to shut down or to pause (or every handle is gone); returns why, and
    /// what a resumed network starts from.
    pub(crate) async fn run(mut self) -> (Exit, Carry) {
        if self.carry.cfg.topics.is_empty() {
            self.transport.subscribe(GOSSIP_ALL);
        }
        for t in &self.carry.cfg.topics.clone() {
            self.transport.subscribe(&gossip_topic(t));
        }
        let mut tick = tokio::time::interval(self.carry.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signals = Signals::new(self.carry.cfg.stop_on_signals);
        let exit = loop {
            let input = {
                let transport = &mut self.transport;
                let done_rx = &mut self.done_rx;
                let cut_rx = &mut self.cut_rx;
                let checking = !self.gossip_checks.is_empty();
                tokio::select! {
                    _ = self.carry.wake.notified() => Input::Wake,
                    ev = poll_fn(|cx| transport.poll_event(cx)) => Input::Transport(ev),
                    Some(done) = done_rx.recv() => Input::Done(Box::new(done)),
                    Some((peer, block)) = cut_rx.recv() => Input::Cut(peer, block),
                    checked = runner::front(&mut self.gossip_checks, |c| &mut c.check), if checking => {
                        Input::Checked(checked)
                    }
                    _ = tick.tick() => Input::Tick,
                    name = signals.next() => Input::Signal(name),
                }
            };
            match input {
                Input::Wake => {
                    if let Some(exit) = self.drain_commands() {
                        break exit;
                    }
                }
                Input::Signal(name) => {
                    info!(signal = name, "stopping");
                    break Exit::Stop(Some(name));
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
                Input::Cut(peer, block) => self.cut(peer, block),
            }
        };
        let connected = self.carry.peers.connected_peers();
        self.close_connections().await;
        // Sessions the closed connections ended report now (their writes are done: a session
        // stores what it received before it reports).
        while let Ok(done) = self.done_rx.try_recv() {
            let (peer, initiator, r) = done;
            self.on_done(peer, initiator, r);
        }
        self.finish_writes().await;
        let flushed = match self.carry.store.flush() {
            Ok(flush) => flush.await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            warn!(error = %e, "flushing received events failed");
        }
        self.carry.peers.all_disconnected(crate::now_ms());
        self.persist_peers();
        match exit {
            Exit::Stop(Some(signal)) => self.emit(NetEvent::Stopped { signal }),
            Exit::Stop(None) => {}
            Exit::Pause(_) => {
                // Requests end here: nothing is dialed or synced while paused.
                for (_, dial) in std::mem::take(&mut self.dials) {
                    self.dial_failed(dial, None, "the network paused".into());
                }
                for (_, reply) in std::mem::take(&mut self.replies) {
                    let _ = reply.try_send(SyncProgress::Done(Err(SyncWithError::Paused)));
                }
                // The peers connected now are dialed again first when the network resumes.
                for peer in connected {
                    self.carry.peers.dial_soon(peer);
                }
            }
        }
        (exit, self.carry)
    }

    /// Closes every connection and lets the transport say so to the peers, for a bounded time.
    async fn close_connections(&mut self) {
        let connected = self.carry.peers.connected_peers();
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
        self.carry.emit(ev);
    }

    /// Tells a `sync_with` request's caller how it goes; a report that ends it forgets it.
    fn reply(&mut self, request: RequestId, report: SyncProgress) {
        let done = matches!(report, SyncProgress::Done(_));
        let Some(reply) = self.replies.get(&request) else {
            return;
        };
        // A caller that stopped listening (or lets reports pile up) loses them.
        let gone = matches!(reply.try_send(report), Err(TrySendError::Disconnected(_)));
        if done || gone {
            self.replies.remove(&request);
        }
    }

    /// Takes the commands queued; returns why the loop must end, if it must.
    fn drain_commands(&mut self) -> Option<Exit> {
        loop {
            match self.carry.commands.try_recv() {
                Ok(Command::Publish(ev)) => self.publish(ev),
                Ok(Command::Dial { addr, request }) => self.dial_for(addr, request, None),
                Ok(Command::SyncNow(request)) => {
                    let peers = self.carry.peers.connected_peers();
                    for peer in &peers {
                        self.start_sync(
                            *peer,
                            Some(Ask {
                                scope: Scope::all(),
                                requests: vec![request],
                            }),
                        );
                    }
                    self.emit(NetEvent::SyncRound { request, peers });
                }
                Ok(Command::SyncWith {
                    addr,
                    scope,
                    request,
                    reply,
                }) => {
                    self.replies.insert(request, reply);
                    self.dial_for(addr, request, Some(scope));
                }
                Ok(Command::Pause(ack)) => return Some(Exit::Pause(ack)),
                // Not paused: nothing to resume.
                Ok(Command::Resume(ack)) => drop(ack.send(Ok(()))),
                Ok(Command::Shutdown) => return Some(Exit::Stop(None)),
                Err(crossbeam_channel::TryRecvError::Empty) => return None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Some(Exit::Stop(None))
                }
            }
        }
    }

    /// Dials for a request. An address naming a peer already connected is not dialed again:
    /// the request goes on with that connection.
    fn dial_for(&mut self, addr: Multiaddr, request: RequestId, sync: Option<Scope>) {
        let pending = PendingDial {
            addr: addr.clone(),
            request,
            sync,
        };
        if let Some(peer) = peer_in(&addr) {
            self.carry.peers.learn(peer, addr.clone(), true);
            if self.carry.peers.get(&peer).is_some_and(|e| e.connected) {
                return self.dialed(pending, peer);
            }
        }
        let dial = self.next_dial_id();
        match self.transport.dial(addr.clone(), dial) {
            Ok(()) => {
                self.dials.insert(dial, pending);
            }
            Err(e) => {
                warn!(%addr, error = %e, "dial failed");
                self.dial_failed(pending, None, e);
            }
        }
    }

    fn next_dial_id(&mut self) -> DialId {
        self.carry.next_dial += 1;
        DialId(self.carry.next_dial)
    }

    /// Dials for the node itself (redials, discovery, bootstrap): nobody waits for the outcome.
    /// The dial's id, if the transport took it.
    fn dial_own(&mut self, addr: Multiaddr) -> Option<DialId> {
        let dial = self.next_dial_id();
        self.transport.dial(addr, dial).ok().map(|()| dial)
    }

    /// Dials a peer at its known addresses for the node itself: the direct ones at once, and
    /// its onion addresses only once every direct dial failed (or if it has no other).
    /// Anonymous mode dials everything through Tor anyway, so it dials them all at once.
    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let (onion, direct): (Vec<Multiaddr>, Vec<Multiaddr>) =
            addrs.into_iter().partition(crate::transport::is_onion);
        let mut under_way = 0;
        for addr in direct {
            if let Some(dial) = self.dial_own(with_peer(addr, peer)) {
                if !onion.is_empty() && !self.carry.cfg.anonymous {
                    self.direct_dials.insert(dial, peer);
                    under_way += 1;
                }
            }
        }
        if onion.is_empty() {
            return;
        }
        if under_way == 0 {
            for addr in onion {
                self.dial_own(with_peer(addr, peer));
            }
        } else {
            let by = Instant::now() + TOR_FALLBACK_AFTER;
            self.onion_later.insert(peer, (onion, under_way, by));
        }
    }

    /// Dials through Tor the peers whose direct dials are still under way past their time (a
    /// firewall that drops packets makes a TCP dial wait minutes before it fails).
    fn onion_overdue(&mut self, now: Instant) {
        let overdue: Vec<PeerId> = self
            .onion_later
            .iter()
            .filter(|(_, (_, _, by))| *by <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in overdue {
            self.dial_onion_later(peer, "direct dials too slow: dialing through Tor as well");
        }
    }

    /// Dials a peer's onion addresses kept for later, unless it connected meanwhile.
    fn dial_onion_later(&mut self, peer: PeerId, why: &'static str) {
        let Some((onion, _, _)) = self.onion_later.remove(&peer) else {
            return;
        };
        if self.carry.peers.get(&peer).is_some_and(|e| e.connected) {
            return;
        }
        debug!(%peer, why);
        for addr in onion {
            self.dial_own(with_peer(addr, peer));
        }
    }

    /// One of the node's own dials ended: when it was the last direct dial to a peer that is
    /// still not connected, that peer's onion addresses are dialed now.
    fn own_dial_ended(&mut self, dial: DialId, failed: bool) {
        let Some(peer) = self.direct_dials.remove(&dial) else {
            return;
        };
        let Some((_, left, _)) = self.onion_later.get_mut(&peer) else {
            return;
        };
        *left = left.saturating_sub(1);
        if !failed {
            self.onion_later.remove(&peer);
            return;
        }
        if *left == 0 {
            self.dial_onion_later(peer, "direct dials failed: dialing through Tor");
        }
    }

    /// A request's dial reached `peer`: a `sync_with` now asks for its session.
    fn dialed(&mut self, pending: PendingDial, peer: PeerId) {
        let PendingDial { request, sync, .. } = pending;
        self.emit(NetEvent::Dialed { request, peer });
        if let Some(scope) = sync {
            self.reply(request, SyncProgress::Connected(peer));
            self.start_sync(
                peer,
                Some(Ask {
                    scope,
                    requests: vec![request],
                }),
            );
        }
    }

    fn dial_failed(&mut self, pending: PendingDial, peer: Option<PeerId>, error: String) {
        let PendingDial {
            addr,
            request,
            sync,
        } = pending;
        if sync.is_some() {
            let failed = SyncWithError::Dial {
                addr,
                error: error.clone(),
            };
            self.reply(request, SyncProgress::Done(Err(failed)));
        }
        self.emit(NetEvent::DialFailed {
            peer,
            error,
            request: Some(request),
        });
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
                    for peer in self.carry.peers.connected_peers() {
                        self.start_sync(peer, None);
                    }
                }
            }
        }
        // Ask the writer again only once something was stored since the last ask (a read of
        // the log's next number, on this thread): an idle node does not wake the writer on
        // every tick.
        let next = self.carry.store.read().and_then(|r| r.next_seq()).ok();
        if next.is_some() && next == self.followed_at {
            return;
        }
        match self.carry.store.follow(FOLLOW_EVENTS_MAX) {
            Ok(ticket) => {
                self.following = Some(ticket);
                self.followed_at = next;
            }
            Err(e) => debug!(error = %e, "cannot follow the store"),
        }
    }

    fn on_transport(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Listening(addr) => {
                info!(%addr, "listening");
                self.emit(NetEvent::Listening(addr));
            }
            TransportEvent::ListenFailed { addr, error } => {
                warn!(%addr, %error, "listening failed");
                self.emit(NetEvent::ListenFailed { addr, error });
            }
            TransportEvent::Connected {
                peer,
                addr,
                dialer,
                dial,
            } => {
                let pending = dial.and_then(|d| self.dials.remove(&d));
                if let Some(d) = dial {
                    self.own_dial_ended(d, false);
                }
                self.onion_later.remove(&peer);
                if self.carry.peers.is_blocked(&peer) {
                    self.transport.disconnect(peer);
                    if let Some(pending) = pending {
                        self.dial_failed(pending, Some(peer), "the peer is blocked".into());
                    }
                    return;
                }
                info!(%peer, %addr, dialer, "connected");
                self.carry
                    .peers
                    .connected(peer, addr.clone(), dialer, crate::now_ms());
                if dialer {
                    let reached = without_peer(&addr);
                    self.carry
                        .bootstrap
                        .retain(|(a, _, _)| without_peer(a) != reached);
                }
                self.emit(NetEvent::Connected { peer, addr });
                match pending {
                    // A `sync_with` dial opens its own session instead of the plain round.
                    Some(pending) if pending.sync.is_some() => self.dialed(pending, peer),
                    Some(pending) => {
                        self.dialed(pending, peer);
                        self.start_sync(peer, None);
                    }
                    // The dialer opens the first session, so a new pair runs one, not two.
                    None if dialer => self.start_sync(peer, None),
                    None => {}
                }
            }
            TransportEvent::Dialed { dial, peer } => {
                self.own_dial_ended(dial, false);
                if let Some(pending) = self.dials.remove(&dial) {
                    self.dialed(pending, peer);
                }
            }
            TransportEvent::Disconnected { peer } => {
                info!(%peer, "disconnected");
                self.carry.peers.disconnected(peer, crate::now_ms());
                self.gossip_limits.remove(&peer);
                self.emit(NetEvent::Disconnected { peer });
                self.forget_waiting(peer);
            }
            TransportEvent::InboundSync { peer, link } => {
                let answering = self.running.values().filter(|r| r.inbound).count();
                let busy = self.running.get(&peer).is_some_and(|r| r.inbound)
                    || answering >= self.carry.cfg.inbound_sessions_max
                    || self.carry.peers.is_blocked(&peer);
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
                let known_connected = self.carry.peers.get(&peer).is_some_and(|e| e.connected);
                self.carry.peers.learn(peer, addr.clone(), true);
                if !known_connected && !self.carry.peers.is_blocked(&peer) {
                    debug!(%peer, %addr, "discovered");
                    if crate::transport::is_onion(&addr) {
                        // Through Tor only if its direct addresses fail.
                        let known = self.carry.peers.get(&peer).map(|e| e.addrs.clone());
                        self.dial_peer(peer, known.unwrap_or_else(|| vec![addr]));
                    } else {
                        self.dial_own(with_peer(addr, peer));
                    }
                }
            }
            TransportEvent::DialFailed { peer, error, dial } => {
                debug!(?peer, %error, "dial failed");
                if let Some(d) = dial {
                    self.own_dial_ended(d, true);
                }
                if let Some(p) = peer {
                    self.carry.peers.dial_failed(p);
                }
                match dial.and_then(|d| self.dials.remove(&d)) {
                    Some(pending) => self.dial_failed(pending, peer, error),
                    None => self.emit(NetEvent::DialFailed {
                        peer,
                        error,
                        request: None,
                    }),
                }
            }
        }
    }

    fn on_gossip(&mut self, topic: &str, data: Vec<u8>, token: GossipToken) {
        let from = token.source;
        let now = Instant::now();
        let rate = self.carry.cfg.gossip_per_peer_per_sec;
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
            .carry
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
                self.penalize(from, PENALTY_INVALID, "invalid gossiped event", false);
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
            self.penalize(
                from,
                PENALTY_PROTOCOL,
                "event gossiped on another topic",
                false,
            );
            return;
        }
        self.transport.validated(token, Verdict::Accept);
        if !self.carry.cfg.topics.is_empty() && !self.carry.cfg.topics.contains(&event_topic) {
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
        match self.carry.store.submit(vec![ev], Durability::Relaxed) {
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

    /// Asks for an outbound session with a connected peer: `ask`, or with `None` the node's
    /// own round (unless asks are waiting: the next of them runs). One runs at a time per
    /// peer; asks made meanwhile wait for it.
    fn start_sync(&mut self, peer: PeerId, ask: Option<Ask>) {
        let running = self.running.entry(peer).or_default();
        match ask {
            Some(ask) => running.queue(ask),
            None if running.waiting.is_empty() => running.queue(Ask::round()),
            None => {}
        }
        if running.outbound.is_some() {
            return;
        }
        // The salt keys fingerprints: one an attacker could predict lets it grind colliding
        // ids, so without the OS's randomness no session starts (the asks wait for the next
        // round).
        let salt = match crate::salt() {
            Ok(salt) => salt,
            Err(e) => {
                warn!(%peer, error = %e, "no randomness for a session salt: session not started");
                return;
            }
        };
        let ask = running.waiting.remove(0);
        let scope = ask.scope.clone();
        running.outbound = Some(ask);
        let open = self.transport.open_sync(peer);
        self.spawn_session(peer, open, Start::Initiator { salt, scope });
    }

    /// A peer left: the asks waiting for it end (a running session ends by itself).
    fn forget_waiting(&mut self, peer: PeerId) {
        let Some(running) = self.running.get_mut(&peer) else {
            return;
        };
        let asks = std::mem::take(&mut running.waiting);
        if running.is_idle() {
            self.running.remove(&peer);
        }
        for request in asks.into_iter().flat_map(|a| a.requests) {
            self.reply(
                request,
                SyncProgress::Done(Err(SyncWithError::Disconnected { peer })),
            );
            self.emit(NetEvent::SyncFailed {
                peer,
                initiator: true,
                error: "the peer disconnected".into(),
                penalty: 0,
                retrying: false,
                requests: vec![request],
            });
        }
    }

    /// Runs a session on this thread once its stream is open, and reports how it ended
    /// (unless it only told the peer this side is busy: that one was never counted).
    fn spawn_session(&self, peer: PeerId, open: OpenFuture, start: Start) {
        let setup = runner::Setup {
            store: self.carry.store.clone(),
            verifier: self.carry.verifier.clone(),
            cfg: self.carry.cfg.sync,
            topics: self.carry.cfg.topics.clone(),
            progress: runner::Progress {
                window: self.carry.cfg.progress_window,
                bytes_min: self.carry.cfg.progress_bytes_min,
            },
        };
        let done = self.done_tx.clone();
        // `None`: a refusal, never counted.
        let report = match start {
            Start::Responder { busy: true } => None,
            Start::Initiator { .. } => Some(true),
            Start::Responder { busy: false } => Some(false),
        };
        tokio::task::spawn_local(async move {
            let r = match open.await {
                Ok(link) => runner::run(setup, peer, link, start).await,
                Err(e) => Err(e.into()),
            };
            if let Some(initiator) = report {
                drop(done.send((peer, initiator, r)));
            }
        });
    }

    fn on_done(&mut self, peer: PeerId, initiator: bool, r: Result<SyncSummary, SyncFailure>) {
        let mut ask = None;
        if let Some(running) = self.running.get_mut(&peer) {
            if initiator {
                ask = running.outbound.take();
            } else {
                running.inbound = false;
            }
        }
        let requests = ask.as_ref().map(|a| a.requests.clone()).unwrap_or_default();
        let mut retry_ask = None;
        match r {
            Ok(mut summary) => {
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
                self.carry.peers.synced(peer);
                if initiator {
                    self.retries.remove(&peer);
                }
                if s.events_received > 0 {
                    // The writer thread does the fsync; this loop goes on.
                    match self.carry.store.flush() {
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
                summary.requests = requests;
                for request in &summary.requests {
                    self.reply(*request, SyncProgress::Done(Ok(summary.clone())));
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
                let error = e.to_string();
                for request in &requests {
                    let report = if retrying {
                        SyncProgress::Retrying(error.clone())
                    } else {
                        SyncProgress::Done(Err(SyncWithError::Failed {
                            peer,
                            error: error.clone(),
                        }))
                    };
                    self.reply(*request, report);
                }
                self.emit(NetEvent::SyncFailed {
                    peer,
                    initiator,
                    error,
                    penalty,
                    retrying,
                    requests,
                });
                if retrying {
                    // The retry runs what this session was asked for.
                    retry_ask = ask;
                }
                if penalty > 0 {
                    self.penalize(peer, penalty, "sync protocol violation", true);
                } else if retrying {
                    // A cut stream or a busy peer: what was stored stays, and the retry moves
                    // only what is still missing. (libp2p-stream also drops an inbound stream
                    // when one is already waiting to be accepted; the opener sees it closed.)
                    let last = self.retries.get(&peer).map_or(Duration::ZERO, |r| r.1);
                    let max = self.carry.cfg.anti_entropy;
                    let wait = next_backoff(last, RETRY_FIRST.min(max), max);
                    self.retries.insert(peer, (Instant::now() + wait, wait));
                }
            }
        }
        let connected = self.carry.peers.get(&peer).is_some_and(|e| e.connected);
        let mut next = false;
        if let Some(running) = self.running.get_mut(&peer) {
            if let Some(ask) = retry_ask {
                // First in line, for the retry (with backoff) to take.
                running.waiting.insert(0, ask);
            } else {
                next = initiator && !running.waiting.is_empty();
            }
        }
        if !connected {
            self.forget_waiting(peer);
        } else if next {
            self.start_sync(peer, None);
        }
        if self.running.get(&peer).is_some_and(Running::is_idle) {
            self.running.remove(&peer);
        }
    }

    /// Scores a peer down and disconnects it; past the threshold it is blocked. A peer whose
    /// session failed is cut off `ABORT_GRACE` later, so that the abort naming its fault, which
    /// the session wrote into the stream, reaches it before the connection closes (a block
    /// applies at once: meanwhile it can open nothing).
    fn penalize(&mut self, peer: PeerId, penalty: i32, why: &str, aborted: bool) {
        let blocked = self.carry.peers.penalize(peer, penalty);
        warn!(%peer, penalty, why, blocked, "peer scored down and disconnected");
        if blocked {
            self.emit(NetEvent::Blocked { peer });
        }
        if !aborted {
            return self.cut(peer, blocked);
        }
        let cut = self.cut_tx.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(ABORT_GRACE).await;
            let _ = cut.send((peer, blocked));
        });
    }

    fn cut(&mut self, peer: PeerId, block: bool) {
        if block {
            self.transport.block(peer);
        } else {
            self.transport.disconnect(peer);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (peer, addrs) in self.carry.peers.due(now) {
            debug!(%peer, "redialing");
            self.dial_peer(peer, addrs);
        }
        self.onion_overdue(now);
        let (min, max) = (self.carry.cfg.redial_min, self.carry.cfg.redial_max);
        let mut due_bootstrap = Vec::new();
        for (addr, next, backoff) in &mut self.carry.bootstrap {
            if *next <= now {
                *backoff = next_backoff(*backoff, min, max);
                *next = now + *backoff;
                due_bootstrap.push(addr.clone());
            }
        }
        for addr in due_bootstrap {
            self.dial_own(addr);
        }
        let due: Vec<PeerId> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.carry.peers.get(&peer).is_some_and(|e| e.connected) {
                // Stays in the map (with its wait) until a session succeeds.
                if let Some(r) = self.retries.get_mut(&peer) {
                    r.0 = now + self.carry.cfg.anti_entropy;
                }
                self.start_sync(peer, None);
            } else {
                self.retries.remove(&peer);
            }
        }
        for peer in self.carry.peers.unblock_expired(now) {
            self.transport.unblock(peer);
        }
        if now.duration_since(self.last_anti_entropy) >= self.carry.cfg.anti_entropy {
            self.last_anti_entropy = now;
            self.carry.peers.forgive(FORGIVE_PER_ROUND);
            self.transport.tick();
            // Each pair reconciles once per round: the side with the smaller id opens it.
            let me = self.transport.local_peer();
            for peer in self.carry.peers.connected_peers() {
                if me < peer {
                    self.start_sync(peer, None);
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
        let Some(path) = &self.carry.cfg.peers_file else {
            return;
        };
        if !std::mem::take(&mut self.carry.peers.dirty) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let text = self.carry.peers.render().into_bytes();
        let bytes = match &self.carry.cfg.peers_seal {
            Some(seal) => match seal.seal(&text) {
                Some(sealed) => sealed,
                None => {
                    warn!("sealing the peer table failed: not written");
                    return;
                }
            },
            None => text,
        };
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)) {
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
