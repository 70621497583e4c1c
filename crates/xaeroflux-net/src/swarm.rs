//! The libp2p transport: QUIC first, TCP + Noise + Yamux as the fallback, IPv4 and IPv6;
//! identify, ping, mDNS, Kademlia, relay client and DCUtR, gossipsub, and the sync protocol on
//! its own streams. Everything runs on the network thread's current-thread runtime.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{dummy::DummyTransport, Boxed};
use libp2p::core::Transport as _;
#[cfg(feature = "mdns")]
use libp2p::mdns;
#[cfg(any(feature = "relay", feature = "mdns"))]
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, ping, StreamProtocol,
    Swarm, SwarmBuilder,
};
#[cfg(feature = "relay")]
use libp2p::{dcutr, relay};
#[cfg(any(feature = "tcp", feature = "tor", feature = "relay"))]
use libp2p::{noise, yamux};
use tracing::{debug, warn};

#[cfg(feature = "tor")]
use std::sync::Arc;

use crate::link::spawn_framed;
#[cfg(feature = "quic")]
use crate::quic::QuicTransport;
#[cfg(feature = "tor")]
use crate::tor::{onion_listen_addr, DialPolicy, OnionKeyFile, OnionKeySlot, TorTransport};
use crate::transport::{
    is_onion, DialId, GossipToken, LinkError, Multiaddr, OpenFuture, PeerId, Transport,
    TransportEvent, Verdict,
};
use crate::{NetConfig, NetError};

/// The sync protocol's stream name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/xaeroflux/sync/1");
/// The Kademlia protocol name (a private DHT of Xaeroflux nodes).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/xaeroflux/kad/1");
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/xaeroflux/id/1";
/// Bytes one relayed circuit may carry when this node is a relay.
#[cfg(feature = "relay")]
pub const RELAY_CIRCUIT_BYTES_MAX: u64 = 64 << 20;
/// First wait before serving the onion service again after Tor failed.
const ONION_RETRY_MIN: Duration = Duration::from_secs(5);
/// Longest wait between such tries.
const ONION_RETRY_MAX: Duration = Duration::from_secs(300);
/// Largest gossip message: one event at its size cap plus gossip's own envelope.
const GOSSIP_BYTES_MAX: usize = 72 * 1024;

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    #[cfg(feature = "relay")]
    relay: Toggle<relay::client::Behaviour>,
    #[cfg(feature = "relay")]
    relay_server: Toggle<relay::Behaviour>,
    #[cfg(feature = "relay")]
    dcutr: Toggle<dcutr::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    #[cfg(feature = "mdns")]
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// The libp2p implementation of [`Transport`].
pub struct Libp2pTransport {
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    incoming: libp2p_stream::IncomingStreams,
    frame_cap: usize,
    idle: Duration,
    relay_server: bool,
    /// Anonymous mode: only onion addresses are kept and handed on.
    anonymous: bool,
    /// The node's onion service listener, if it serves one.
    onion: Option<OnionListen>,
    /// Each peer's connections, oldest first.
    conns: HashMap<PeerId, VecDeque<ConnectionId>>,
    /// The engine's dials still under way, by the connection each will make.
    dials: HashMap<ConnectionId, DialId>,
}

/// The onion service's listener: its id while it runs, and when to try again after it failed.
struct OnionListen {
    addr: Multiaddr,
    id: Option<libp2p::core::transport::ListenerId>,
    retry: Option<std::time::Instant>,
    backoff: Duration,
}

/// A dial (and an incoming connection's upgrade) without Tor: libp2p's default.
const DIRECT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// A dial through Tor, from waiting for Tor to start and bootstrap to the end of the upgrade
/// (Tor's own waits for an onion service's descriptor and circuits reach two minutes).
#[cfg(feature = "tor")]
const TOR_DIAL_TIMEOUT: Duration = Duration::from_secs(180);

/// The swarm's transports, one behind the other, each answering the addresses it knows.
type Transports = Boxed<(PeerId, StreamMuxerBox)>;

/// `first`, then `next` for the addresses `first` does not take.
#[cfg(any(feature = "quic", feature = "tcp", feature = "tor"))]
fn or_then<T>(first: T, next: Transports) -> Transports
where
    T: libp2p::core::Transport<Output = (PeerId, StreamMuxerBox)> + Send + Unpin + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    T::Error: Send + Sync + 'static,
{
    first
        .or_transport(next)
        .map(|either, _| either.into_inner())
        .boxed()
}

/// What dials and listens: TCP, then QUIC, then Tor (each where built and configured), under
/// DNS resolution of `/dns` names; in anonymous mode Tor alone, which resolves names itself.
fn transports(
    key: &identity::Keypair,
    cfg: &NetConfig,
) -> Result<Transports, Box<dyn std::error::Error + Send + Sync>> {
    // Which parts are built decides what is used of the two.
    let _ = (key, cfg);
    // Takes no address: the end of the chain.
    let chain: Transports = DummyTransport::new().boxed();
    #[cfg(feature = "tor")]
    let chain = match cfg.tor.as_ref() {
        Some(t) => {
            let keys = t.onion_key_file.clone().map(|path| {
                Arc::new(OnionKeyFile {
                    path,
                    seal: t.onion_key_seal.clone(),
                }) as Arc<dyn OnionKeySlot>
            });
            let policy = if cfg.anonymous {
                DialPolicy::All
            } else {
                DialPolicy::OnionOnly
            };
            let tor = TorTransport::new(t.backend.clone(), policy, keys);
            let chain = or_then(upgraded_tor(key, tor)?, chain);
            if cfg.anonymous {
                return Ok(chain);
            }
            chain
        }
        None => chain,
    };
    #[cfg(feature = "quic")]
    let chain = or_then(
        QuicTransport::new(key, &cfg.quic)?
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection))),
        chain,
    );
    #[cfg(feature = "tcp")]
    let chain = or_then(
        libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default().nodelay(true))
            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
        chain,
    );
    #[cfg(feature = "dns")]
    let chain = {
        let (config, opts) = resolver_config();
        libp2p::dns::tokio::Transport::custom(chain, config, opts).boxed()
    };
    Ok(chain)
}

/// Tor upgraded like TCP: Noise, then Yamux, within [`TOR_DIAL_TIMEOUT`].
#[cfg(feature = "tor")]
fn upgraded_tor<T>(
    key: &identity::Keypair,
    tor: T,
) -> Result<
    impl libp2p::core::Transport<
            Output = (PeerId, StreamMuxerBox),
            Dial: Send,
            ListenerUpgrade: Send,
            Error: Send + Sync,
        > + Send
        + Unpin
        + 'static,
    noise::Error,
>
where
    T: libp2p::core::Transport<Output = crate::tor::TorStream> + Send + Unpin + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    T::Error: Send + Sync + 'static,
{
    use libp2p::core::upgrade::Version;
    Ok(tor
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(TOR_DIAL_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))))
}

/// The relay client the swarm builder makes (none in anonymous mode, or without the
/// `relay` feature).
#[cfg(feature = "relay")]
type RelayClient = relay::client::Behaviour;
#[cfg(not(feature = "relay"))]
type RelayClient = std::convert::Infallible;

/// The node's behaviours; `relay` is the relay client (none in anonymous mode).
fn behaviour(
    key: &identity::Keypair,
    relay: Option<RelayClient>,
    cfg: &NetConfig,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let me = key.public().to_peer_id();
    let gossipsub = gossipsub::Behaviour::new(
        // Events carry their authors' signatures; the gossip envelope names no one, so
        // forwarding reveals nothing about who first sent a message.
        gossipsub::MessageAuthenticity::Anonymous,
        gossip_config()?,
    )?;
    #[cfg(feature = "mdns")]
    let mdns = if cfg.mdns && !cfg.anonymous {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), me)?)
    } else {
        None
    };
    let mut kad = kad::Behaviour::with_config(
        me,
        kad::store::MemoryStore::new(me),
        kad::Config::new(KAD_PROTOCOL),
    );
    // Answer DHT queries even before an external address is confirmed: on a LAN or loopback
    // none ever is, and clients alone cannot find each other.
    kad.set_mode(Some(kad::Mode::Server));
    #[cfg(feature = "relay")]
    let relay_server = (cfg.relay_server && !cfg.anonymous).then(|| {
        relay::Behaviour::new(
            me,
            relay::Config {
                // Circuits carry whole sync sessions, not just hole-punch set-ups.
                max_circuit_bytes: RELAY_CIRCUIT_BYTES_MAX,
                max_circuit_duration: Duration::from_secs(600),
                ..relay::Config::default()
            },
        )
    });
    // Hole punching tells the peer this node's IP addresses: never in anonymous mode.
    #[cfg(feature = "relay")]
    let dcutr = (!cfg.anonymous).then(|| dcutr::Behaviour::new(me));
    #[cfg(not(feature = "relay"))]
    let _ = relay;
    // In anonymous mode identify names no listen address; the onion address is added as the
    // only external one once published.
    let hide_listen_addrs = !cfg.announce_listen_addrs || cfg.anonymous;
    Ok(Behaviour {
        blocked: Default::default(),
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER as u32 + 1))
                .with_max_established_incoming(Some(256))
                .with_max_pending_incoming(Some(64)),
        ),
        #[cfg(feature = "relay")]
        relay: relay.into(),
        #[cfg(feature = "relay")]
        relay_server: relay_server.into(),
        #[cfg(feature = "relay")]
        dcutr: dcutr.into(),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_hide_listen_addrs(hide_listen_addrs),
        ),
        ping: ping::Behaviour::default(),
        #[cfg(feature = "mdns")]
        mdns: mdns.into(),
        kad,
        gossipsub,
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// Connections kept per peer: two for a simultaneous dial from both sides. A third one means
/// the peer came back while an old connection of its lingers (a process that exited without
/// closing): the oldest is closed, so a returning peer is never refused.
const CONNECTIONS_PER_PEER: usize = 2;

/// The node's libp2p key from its 32-byte seed: the node's own network key, which the facade
/// keeps apart from the author's (`network.key`), so the peer id does not name the author.
pub fn keypair_from_seed(seed: &[u8; 32]) -> identity::Keypair {
    identity::Keypair::ed25519_from_bytes(*seed).expect("any 32 bytes are an ed25519 secret key")
}

/// An error and its causes on one line, each said once: a cause whose text is already in the
/// line is left out, and so is an empty one (libp2p's transport errors print nothing
/// themselves and keep the reason in their source); reasons that span lines are joined.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        let text = text.trim();
        if !text.is_empty() && !line.contains(text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        next = cause.source();
    }
    if line.is_empty() {
        line.push_str("no reason given");
    }
    line.replace('\n', " ")
}

#[cfg(feature = "dns")]
/// The system's DNS settings for dialing `/dns`, `/dns4` and `/dns6` addresses. Without any
/// (no resolv.conf, as on Android) the node still starts, and such dials fail with the
/// resolver's error: a public resolver is never chosen in the user's stead.
fn resolver_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok(conf) => conf,
        Err(e) => {
            tracing::warn!("no DNS settings ({e}): /dns addresses will not resolve");
            (
                libp2p::dns::ResolverConfig::default(),
                libp2p::dns::ResolverOpts::default(),
            )
        }
    }
}

impl Libp2pTransport {
    /// Builds the swarm and starts listening. Must run inside the network thread's runtime.
    pub fn new(seed: &[u8; 32], cfg: &NetConfig) -> Result<Libp2pTransport, NetError> {
        cfg.validate()?;
        let keypair = keypair_from_seed(seed);
        let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
        let chain = transports(&keypair, cfg).map_err(|e| build(&e))?;
        let swarm_config =
            // Connections stay up while idle: live gossip needs them, and reconnecting costs
            // more than an idle QUIC connection.
            |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
        // The swarm bounds every dial and upgrade by one time: with Tor, Tor's (QUIC bounds its
        // handshake itself; the engine dials an onion address when direct dials have not
        // connected in 10 s).
        #[cfg(feature = "tor")]
        let connection_timeout = if cfg.tor.is_some() {
            TOR_DIAL_TIMEOUT
        } else {
            DIRECT_DIAL_TIMEOUT
        };
        #[cfg(not(feature = "tor"))]
        let connection_timeout = DIRECT_DIAL_TIMEOUT;
        let builder = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|_| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(chain))
            .map_err(|e| build(&e))?;
        // Anonymous: no relay client (a relay sees the node's address).
        #[cfg(feature = "relay")]
        let mut swarm = if cfg.anonymous {
            builder
                .with_behaviour(|key| behaviour(key, None, cfg))
                .map_err(|e| build(&e))?
                .with_swarm_config(swarm_config)
                .with_connection_timeout(connection_timeout)
                .build()
        } else {
            builder
                .with_relay_client(noise::Config::new, yamux::Config::default)
                .map_err(|e| build(&e))?
                .with_behaviour(|key, relay| behaviour(key, Some(relay), cfg))
                .map_err(|e| build(&e))?
                .with_swarm_config(swarm_config)
                .with_connection_timeout(connection_timeout)
                .build()
        };
        #[cfg(not(feature = "relay"))]
        let mut swarm = builder
            .with_behaviour(|key| behaviour(key, None, cfg))
            .map_err(|e| build(&e))?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(connection_timeout)
            .build();
        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen(addr.clone(), error_line(&e)))?;
        }
        for addr in &cfg.relays {
            let circuit = addr.clone().with(libp2p::multiaddr::Protocol::P2pCircuit);
            swarm
                .listen_on(circuit.clone())
                .map_err(|e| NetError::Listen(circuit, error_line(&e)))?;
        }
        #[cfg(feature = "tor")]
        let onion = match cfg.tor.as_ref().and_then(|t| t.onion_port) {
            Some(port) => {
                let addr = onion_listen_addr(port);
                let id = swarm
                    .listen_on(addr.clone())
                    .map_err(|e| NetError::Listen(addr.clone(), error_line(&e)))?;
                Some(OnionListen {
                    addr,
                    id: Some(id),
                    retry: None,
                    backoff: Duration::ZERO,
                })
            }
            None => None,
        };
        #[cfg(not(feature = "tor"))]
        let onion = None;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(SYNC_PROTOCOL)
            .map_err(|e| NetError::Build(e.to_string()))?;
        Ok(Libp2pTransport {
            swarm,
            control,
            incoming,
            // The session's frame limit counts the frame's header, not the length prefix. The
            // link also takes the opening, whose topic list may exceed a small cap; a session's
            // frames are held to the negotiated cap by the session itself.
            frame_cap: cfg.sync.frame_bytes_max.max(crate::runner::OPEN_BYTES_MAX),
            relay_server: cfg.relay_server,
            anonymous: cfg.anonymous,
            onion,
            idle: cfg.idle_timeout,
            conns: HashMap::new(),
            dials: HashMap::new(),
        })
    }

    /// Whether this node may keep or hand on `addr`: in anonymous mode, onion addresses only.
    fn keeps(&self, addr: &Multiaddr) -> bool {
        !self.anonymous || is_onion(addr)
    }

    fn translate(&mut self, ev: SwarmEvent<BehaviourEvent>) -> Option<TransportEvent> {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                if is_onion(&address) {
                    // Identify tells peers external addresses even when it hides listen ones.
                    self.swarm.add_external_address(address.clone());
                    if let Some(onion) = &mut self.onion {
                        onion.backoff = Duration::ZERO;
                    }
                }
                if self.relay_server {
                    // A relay hands its own addresses to the peers it reserves for; on a LAN or
                    // a server with a public address, what it listens on is what they dial.
                    self.swarm.add_external_address(address.clone());
                }
                Some(TransportEvent::Listening(address))
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let conns = self.conns.entry(peer_id).or_default();
                conns.push_back(connection_id);
                if conns.len() > CONNECTIONS_PER_PEER {
                    if let Some(stale) = conns.pop_front() {
                        debug!(peer = %peer_id, "a newer connection replaces a stale one");
                        self.swarm.close_connection(stale);
                    }
                }
                let dial = self.dials.remove(&connection_id);
                if num_established.get() == 1 {
                    Some(TransportEvent::Connected {
                        peer: peer_id,
                        addr: endpoint.get_remote_address().clone(),
                        dialer: endpoint.is_dialer(),
                        dial,
                    })
                } else {
                    dial.map(|dial| TransportEvent::Dialed {
                        dial,
                        peer: peer_id,
                    })
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if let Some(conns) = self.conns.get_mut(&peer_id) {
                    conns.retain(|c| *c != connection_id);
                    if conns.is_empty() {
                        self.conns.remove(&peer_id);
                    }
                }
                (num_established == 0).then_some(TransportEvent::Disconnected { peer: peer_id })
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason: Err(error),
                ..
            } => {
                let onion = self.onion.as_mut()?;
                if onion.id != Some(listener_id) {
                    return None;
                }
                // Tor failed to start or to serve: tried again, with backoff, on the upkeep.
                onion.id = None;
                onion.backoff =
                    crate::peers::next_backoff(onion.backoff, ONION_RETRY_MIN, ONION_RETRY_MAX);
                onion.retry = Some(std::time::Instant::now() + onion.backoff);
                Some(TransportEvent::ListenFailed {
                    addr: onion.addr.clone(),
                    error: error_line(&error),
                })
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => Some(TransportEvent::DialFailed {
                peer: peer_id,
                error: error_line(&error),
                dial: self.dials.remove(&connection_id),
            }),
            #[cfg(feature = "mdns")]
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                let mut first = None;
                for (peer, addr) in list {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if first.is_none() {
                        first = Some(TransportEvent::Discovered { peer, addr });
                    }
                }
                first
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let kept: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| self.keeps(a))
                    .take(8)
                    .collect();
                for addr in kept.iter() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                ..
            })) => {
                let addr = addresses.iter().find(|a| self.keeps(a))?.clone();
                Some(TransportEvent::Discovered { peer, addr })
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => Some(TransportEvent::Gossip {
                topic: message.topic.into_string(),
                data: message.data,
                token: GossipToken {
                    source: propagation_source,
                    message: message_id.0,
                },
            }),
            other => {
                debug!(?other, "swarm event");
                None
            }
        }
    }

    /// Asks the DHT for peers near a random key (called periodically by the node).
    pub fn discover(&mut self) {
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
    }
}

fn gossip_config() -> Result<gossipsub::Config, gossipsub::ConfigBuilderError> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(GOSSIP_BYTES_MAX)
        // Content-addressed: the same event on the same topic is one message, however many
        // peers publish it.
        .message_id_fn(|m: &gossipsub::Message| {
            let mut h = blake3::Hasher::new();
            h.update(m.topic.as_str().as_bytes());
            h.update(&m.data);
            gossipsub::MessageId::from(&h.finalize().as_bytes()[..20])
        })
        .heartbeat_interval(Duration::from_millis(700))
        .build()
}

impl Transport for Libp2pTransport {
    fn local_peer(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<TransportEvent> {
        // Local work first: a stream the peer already opened before new swarm events.
        if let Poll::Ready(Some((peer, stream))) = self.incoming.poll_next_unpin(cx) {
            let link = spawn_framed(stream, self.frame_cap, self.idle);
            return Poll::Ready(TransportEvent::InboundSync { peer, link });
        }
        while let Poll::Ready(Some(ev)) = self.swarm.poll_next_unpin(cx) {
            if let Some(out) = self.translate(ev) {
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    }

    fn dial(&mut self, addr: Multiaddr, dial: DialId) -> Result<(), String> {
        let opts = libp2p::swarm::dial_opts::DialOpts::from(addr);
        let connection = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| error_line(&e))?;
        self.dials.insert(connection, dial);
        Ok(())
    }

    fn open_sync(&mut self, peer: PeerId) -> OpenFuture {
        let mut control = self.control.clone();
        let (cap, idle) = (self.frame_cap, self.idle);
        Box::pin(async move {
            let stream = control
                .open_stream(peer, SYNC_PROTOCOL)
                .await
                .map_err(|e| LinkError::Open(e.to_string()))?;
            Ok(spawn_framed(stream, cap, idle))
        })
    }

    fn subscribe(&mut self, topic: &str) {
        let t = gossipsub::IdentTopic::new(topic);
        let _ = self.swarm.behaviour_mut().gossipsub.subscribe(&t);
    }

    fn publish(&mut self, topic: &str, data: Vec<u8>) {
        let t = gossipsub::IdentTopic::new(topic);
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(t, data) {
            // No subscribed peer yet, or a duplicate: anti-entropy carries the event.
            debug!(topic, error = %e, "gossip publish skipped");
        }
    }

    fn validated(&mut self, token: GossipToken, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        let id = gossipsub::MessageId(token.message);
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &token.source, acceptance);
    }

    fn disconnect(&mut self, peer: PeerId) {
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn block(&mut self, peer: PeerId) {
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    fn unblock(&mut self, peer: PeerId) {
        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    fn tick(&mut self) {
        self.discover();
        let now = std::time::Instant::now();
        if let Some(onion) = self.onion.as_mut() {
            if onion.id.is_none() && onion.retry.is_some_and(|t| t <= now) {
                onion.retry = None;
                match self.swarm.listen_on(onion.addr.clone()) {
                    Ok(id) => onion.id = Some(id),
                    Err(e) => warn!(error = %error_line(&e), "onion service not restarted"),
                }
            }
        }
    }
}
