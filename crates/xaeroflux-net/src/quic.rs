//! QUIC for the swarm: quinn endpoints under libp2p's TLS handshake (`libp2p-tls`: the peer id
//! is proved by the certificate each side presents), with loss recovery set for the links a phone
//! meets rather than for a data centre.
//!
//! libp2p's own QUIC transport fixes quinn's recovery settings, and with them a path that
//! reorders datagrams looks like one that loses them: after three later packets are acknowledged
//! an earlier one counts as lost, the congestion window is cut, and the cut repeats on every
//! round trip. Here the caller chooses ([`QuicConfig`]): loss is declared by time alone, a packet
//! is given one and a half round trips before it is called lost, and the congestion controller may be
//! BBR, which paces by measured bandwidth and does not halve its rate on random loss.
//!
//! Everything else follows libp2p's QUIC transport, so peers on either interoperate: QUIC v1
//! addresses (`/ip4|ip6/…/udp/…/quic-v1`), one bidirectional stream per substream, no datagrams,
//! no connection migration, and a dialer that reuses a listener's port (its address is what
//! peers observe) and punches holes for DCUtR.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{BoxFuture, Either};
use futures::stream::SelectAll;
use futures::{AsyncRead, AsyncWrite, FutureExt, Stream, StreamExt};
use libp2p::core::multiaddr::Protocol;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::{Endpoint, Multiaddr, Transport};
use libp2p::identity::{Keypair, PeerId};

pub use crate::quic_config::{Congestion, QuicConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls::pki_types::CertificateDer;

/// Bytes a peer may send on one stream beyond what we have read: quinn's default (100 Mbit/s
/// at a 100 ms round trip), not libp2p's 10 MB. quinn closes a connection whose stream buffer
/// holds more than 1,024 separate pieces (data beyond holes left by lost or late datagrams);
/// with 1.25 MB at most in flight per stream and full-size datagrams, that takes a hole after
/// nearly every datagram, while 10 MB reaches it on a link that reorders by a tenth of a second.
const STREAM_WINDOW: u32 = 1_250_000;
/// Bytes a peer may send on all of a connection's streams beyond what we have read (libp2p's
/// value: several streams at full speed at once).
const CONNECTION_WINDOW: u32 = 15_000_000;
/// Streams a peer may have open at once.
const STREAMS_MAX: u32 = 256;
/// The server name the client presents: libp2p authenticates by certificate, not by name, but
/// rustls needs a syntactically valid one.
const SERVER_NAME: &str = "l";

/// What can go wrong in the QUIC transport.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// A socket could not be bound, cloned or written.
    #[error("QUIC socket: {0}")]
    Io(#[from] io::Error),
    /// The configuration is not one quinn accepts.
    #[error("QUIC configuration: {0}")]
    Config(String),
    /// quinn refused to start a connection.
    #[error("QUIC connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake did not finish in time.
    #[error("QUIC handshake timed out")]
    HandshakeTimedOut,
    /// The peer's certificate is not a valid libp2p certificate.
    #[error("QUIC peer certificate: {0}")]
    Certificate(&'static str),
    /// A hole punch needs a listener of the remote's address family.
    #[error("no QUIC listener to punch a hole from")]
    NoListener,
    /// A hole punch towards this address is already under way.
    #[error("a hole punch towards {0} is already under way")]
    PunchInProgress(SocketAddr),
}

type Handshake = BoxFuture<'static, Result<(PeerId, QuicConnection), QuicError>>;

/// The libp2p transport: listeners, dialers and hole punches over quinn endpoints.
pub struct QuicTransport {
    client: quinn::ClientConfig,
    server: quinn::ServerConfig,
    endpoint: quinn::EndpointConfig,
    handshake_timeout: Duration,
    listeners: SelectAll<Listener>,
    /// One endpoint per address family for dials that reuse a port when no listener fits.
    dialers: HashMap<bool, quinn::Endpoint>,
    /// Hole punches waiting for the remote's connection from the address they punch towards.
    punches: HashMap<SocketAddr, oneshot::Sender<Handshake>>,
    waker: Option<Waker>,
}

impl QuicTransport {
    /// A transport for the node with this identity.
    pub fn new(keypair: &Keypair, cfg: &QuicConfig) -> Result<Self, QuicError> {
        let bad = |e: &dyn std::fmt::Display| QuicError::Config(e.to_string());
        if cfg.packet_threshold < 3 || cfg.time_threshold.is_nan() || cfg.time_threshold < 1.0 {
            return Err(QuicError::Config(format!(
                "packet threshold {} (at least 3) or time threshold {} (at least 1)",
                cfg.packet_threshold, cfg.time_threshold
            )));
        }
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_uni_streams(0u32.into())
            .max_concurrent_bidi_streams(STREAMS_MAX.into())
            .datagram_receive_buffer_size(None)
            .allow_spin(false)
            .stream_receive_window(STREAM_WINDOW.into())
            .receive_window(CONNECTION_WINDOW.into())
            .keep_alive_interval(Some(cfg.keep_alive))
            .max_idle_timeout(Some(cfg.idle_timeout.try_into().map_err(|e| bad(&e))?))
            .packet_threshold(cfg.packet_threshold)
            .time_threshold(cfg.time_threshold);
        match cfg.congestion {
            Congestion::Cubic => {}
            Congestion::Bbr => {
                transport.congestion_controller_factory(Arc::new(
                    quinn::congestion::BbrConfig::default(),
                ));
            }
            Congestion::NewReno => {
                transport.congestion_controller_factory(Arc::new(
                    quinn::congestion::NewRenoConfig::default(),
                ));
            }
        }
        let transport = Arc::new(transport);

        let mut client_tls = libp2p::tls::make_client_config(keypair, None).map_err(|e| bad(&e))?;
        let mut server_tls = libp2p::tls::make_server_config(keypair).map_err(|e| bad(&e))?;
        // libp2p's TLS configurations write session secrets to the file named by
        // SSLKEYLOGFILE when it is set; a node's traffic secrets go nowhere.
        client_tls.key_log = Arc::new(quinn::rustls::NoKeyLog);
        server_tls.key_log = Arc::new(quinn::rustls::NoKeyLog);
        let client_tls = QuicClientConfig::try_from(client_tls).map_err(|e| bad(&e))?;
        let server_tls = QuicServerConfig::try_from(server_tls).map_err(|e| bad(&e))?;

        let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
        client.transport_config(Arc::clone(&transport));
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(transport);
        // A connection whose peer changes address is not followed: the swarm keys connections
        // by address.
        server.migration(false);

        // Stateless resets keyed by the node's identity stay valid across restarts, so a peer
        // of a restarted node learns at once that its old connection is gone.
        // The derived secret is wiped once the HMAC key holds it.
        let secret = keypair
            .derive_secret(b"xaeroflux quic stateless reset key")
            .map(zeroize::Zeroizing::new);
        let mut endpoint = match &secret {
            Some(secret) => quinn::EndpointConfig::new(Arc::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                secret.as_slice(),
            ))),
            None => quinn::EndpointConfig::default(),
        };
        drop(secret);
        endpoint.supported_versions(vec![1]);

        Ok(QuicTransport {
            client,
            server,
            endpoint,
            handshake_timeout: cfg.handshake_timeout,
            listeners: SelectAll::new(),
            dialers: HashMap::new(),
            punches: HashMap::new(),
            waker: None,
        })
    }

    fn endpoint_on(&self, socket: UdpSocket, server: bool) -> Result<quinn::Endpoint, QuicError> {
        let server = server.then(|| self.server.clone());
        Ok(quinn::Endpoint::new(
            self.endpoint.clone(),
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?)
    }

    /// A listener of the remote's family to dial or punch from: one that can reach loopback if
    /// the remote is on loopback, and the same one for the same remote.
    fn listener_for(&self, remote: &SocketAddr) -> Option<&Listener> {
        let fits: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| !l.closed && l.local.is_ipv6() == remote.is_ipv6())
            .filter(|l| !remote.ip().is_loopback() || l.ips.iter().any(|ip| ip.is_loopback()))
            .collect();
        if fits.is_empty() {
            return None;
        }
        let pick = blake3::hash(remote.to_string().as_bytes()).as_bytes()[0] as usize;
        Some(fits[pick % fits.len()])
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A UDP socket bound to `addr`, IPv6 sockets for IPv6 only (so that an IPv4 listener on the
/// same port is a separate socket).
fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The UDP address and the optional peer id of a QUIC v1 multiaddr.
fn parse(addr: &Multiaddr) -> Option<(SocketAddr, Option<PeerId>)> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Udp(port) = parts.next()? else {
        return None;
    };
    let Protocol::QuicV1 = parts.next()? else {
        return None;
    };
    let peer = match parts.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((SocketAddr::new(ip, port), peer))
}

fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// Waits for a connection's handshake, then reads the peer id from its certificate.
async fn handshake(
    connecting: quinn::Connecting,
    timeout: Duration,
) -> Result<(PeerId, QuicConnection), QuicError> {
    let connection = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| QuicError::HandshakeTimedOut)??;
    let identity = connection
        .peer_identity()
        .ok_or(QuicError::Certificate("none presented"))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| QuicError::Certificate("not an X.509 chain"))?;
    let leaf = chain.first().ok_or(QuicError::Certificate("empty chain"))?;
    let cert = libp2p::tls::certificate::parse(leaf)
        .map_err(|_| QuicError::Certificate("not a libp2p certificate"))?;
    Ok((cert.peer_id(), QuicConnection::new(connection)))
}

/// Sends datagrams of random bytes towards `remote` from the listener's socket until the caller
/// stops polling, so that the NAT in front of us lets the remote's handshake in (DCUtR).
async fn punch(socket: UdpSocket, remote: SocketAddr) -> QuicError {
    let socket = match socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UdpSocket::from_std(socket))
    {
        Ok(s) => s,
        Err(e) => return QuicError::Io(e),
    };
    loop {
        let mut noise = [0u8; 64];
        let mut gap = [0u8; 1];
        if let Err(e) = getrandom::fill(&mut noise).and_then(|()| getrandom::fill(&mut gap)) {
            return QuicError::Io(io::Error::other(e.to_string()));
        }
        if let Err(e) = socket.send_to(&noise, remote).await {
            return QuicError::Io(e);
        }
        // 10 to 200 ms apart, so that the two sides' bursts are not in lockstep.
        let ms = 10 + u64::from(gap[0]) * 190 / 255;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl Transport for QuicTransport {
    type Output = (PeerId, QuicConnection);
    type Error = QuicError;
    type ListenerUpgrade = Handshake;
    type Dial = Handshake;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<QuicError>> {
        let Some((local, None)) = parse(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let socket = bind(local).map_err(|e| TransportError::Other(e.into()))?;
        let punch_socket = socket
            .try_clone()
            .map_err(|e| TransportError::Other(e.into()))?;
        let local = socket
            .local_addr()
            .map_err(|e| TransportError::Other(e.into()))?;
        let endpoint = self
            .endpoint_on(socket, true)
            .map_err(TransportError::Other)?;
        let listener = Listener::new(id, endpoint, punch_socket, local, self.handshake_timeout)
            .map_err(TransportError::Other)?;
        self.listeners.push(listener);
        // Dials of this family now leave from the listener's port; the dialer's endpoint ends
        // when its last connection does.
        self.dialers.remove(&local.is_ipv6());
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        match self.listeners.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                l.close();
                true
            }
            None => false,
        }
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Handshake, TransportError<QuicError>> {
        let Some((remote, peer)) = parse(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let timeout = self.handshake_timeout;
        if opts.role == Endpoint::Listener && opts.port_use == PortUse::New {
            // A hole punch: we are to be the listener of the connection the remote opens, so
            // we open the path from our listener's port and wait for it.
            if peer.is_none() {
                return Err(TransportError::MultiaddrNotSupported(addr));
            }
            let socket = self
                .listener_for(&remote)
                .ok_or(TransportError::Other(QuicError::NoListener))?
                .socket
                .try_clone()
                .map_err(|e| TransportError::Other(e.into()))?;
            if self.punches.get(&remote).is_some_and(|s| !s.is_canceled()) {
                return Err(TransportError::Other(QuicError::PunchInProgress(remote)));
            }
            let (tx, rx) = oneshot::channel::<Handshake>();
            self.punches.insert(remote, tx);
            return Ok(async move {
                let punching = tokio::time::timeout(timeout, punch(socket, remote));
                match futures::future::select(rx, Box::pin(punching)).await {
                    Either::Left((Ok(inbound), _)) => inbound.await,
                    Either::Left((Err(_), _)) => Err(QuicError::HandshakeTimedOut),
                    Either::Right((Ok(e), _)) => Err(e),
                    Either::Right((Err(_), _)) => Err(QuicError::HandshakeTimedOut),
                }
            }
            .boxed());
        }
        let endpoint = match opts.port_use {
            PortUse::Reuse => match self.listener_for(&remote) {
                Some(l) => l.endpoint.clone(),
                None => match self.dialers.get(&remote.is_ipv6()) {
                    Some(e) => e.clone(),
                    None => {
                        let e = self.dial_endpoint(remote).map_err(TransportError::Other)?;
                        self.dialers.insert(remote.is_ipv6(), e.clone());
                        self.wake();
                        e
                    }
                },
            },
            PortUse::New => self.dial_endpoint(remote).map_err(TransportError::Other)?,
        };
        let client = self.client.clone();
        Ok(async move {
            let connecting = endpoint.connect_with(client, remote, SERVER_NAME)?;
            handshake(connecting, timeout).await
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Handshake, QuicError>> {
        while let Poll::Ready(Some(event)) = self.listeners.poll_next_unpin(cx) {
            let TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            } = event
            else {
                return Poll::Ready(event);
            };
            // The connection a hole punch waits for goes to it, not to the swarm as a new one.
            let from = parse(&send_back_addr).map(|(a, _)| a);
            let upgrade = match from.and_then(|a| self.punches.remove(&a)) {
                Some(waiting) => match waiting.send(upgrade) {
                    Ok(()) => continue,
                    Err(upgrade) => upgrade,
                },
                None => upgrade,
            };
            return Poll::Ready(TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl QuicTransport {
    /// A client-only endpoint on a fresh port of the remote's family.
    fn dial_endpoint(&self, remote: SocketAddr) -> Result<quinn::Endpoint, QuicError> {
        let any: IpAddr = if remote.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let socket = bind(SocketAddr::new(any, 0))?;
        self.endpoint_on(socket, false)
    }
}

/// One listening endpoint, as a stream of transport events: its addresses (every interface's,
/// followed as they come and go, when bound to an unspecified address) and incoming connections.
struct Listener {
    id: ListenerId,
    endpoint: quinn::Endpoint,
    /// The endpoint's socket, cloned, to punch holes from.
    socket: UdpSocket,
    local: SocketAddr,
    handshake_timeout: Duration,
    accept: BoxFuture<'static, Option<quinn::Incoming>>,
    interfaces: Option<if_watch::tokio::IfWatcher>,
    /// The addresses reported so far.
    ips: HashSet<IpAddr>,
    pending: VecDeque<TransportEvent<Handshake, QuicError>>,
    closed: bool,
    waker: Option<Waker>,
}

impl Listener {
    fn new(
        id: ListenerId,
        endpoint: quinn::Endpoint,
        socket: UdpSocket,
        local: SocketAddr,
        handshake_timeout: Duration,
    ) -> Result<Self, QuicError> {
        let mut pending = VecDeque::new();
        let mut ips = HashSet::new();
        let interfaces = if local.ip().is_unspecified() {
            Some(if_watch::tokio::IfWatcher::new()?)
        } else {
            ips.insert(local.ip());
            pending.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: to_multiaddr(local),
            });
            None
        };
        let accept = next_incoming(&endpoint);
        Ok(Listener {
            id,
            endpoint,
            socket,
            local,
            handshake_timeout,
            accept,
            interfaces,
            ips,
            pending,
            closed: false,
            waker: None,
        })
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.endpoint.close(0u32.into(), b"");
        self.pending.push_back(TransportEvent::ListenerClosed {
            listener_id: self.id,
            reason: Ok(()),
        });
        self.closed = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The next change of an interface address of our family, as a transport event.
    fn poll_interfaces(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Handshake, QuicError>> {
        let Some(watcher) = self.interfaces.as_mut() else {
            return Poll::Pending;
        };
        loop {
            let (up, net) = match watcher.poll_if_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error: error.into(),
                    });
                }
                Poll::Ready(Ok(if_watch::IfEvent::Up(net))) => (true, net),
                Poll::Ready(Ok(if_watch::IfEvent::Down(net))) => (false, net),
            };
            let ip = net.addr();
            if ip.is_ipv6() != self.local.is_ipv6() {
                continue;
            }
            let listen_addr = to_multiaddr(SocketAddr::new(ip, self.local.port()));
            if up {
                self.ips.insert(ip);
                return Poll::Ready(TransportEvent::NewAddress {
                    listener_id: self.id,
                    listen_addr,
                });
            }
            self.ips.remove(&ip);
            return Poll::Ready(TransportEvent::AddressExpired {
                listener_id: self.id,
                listen_addr,
            });
        }
    }
}

/// The endpoint's next incoming connection (`None` once the endpoint is closed).
fn next_incoming(endpoint: &quinn::Endpoint) -> BoxFuture<'static, Option<quinn::Incoming>> {
    let endpoint = endpoint.clone();
    async move { endpoint.accept().await }.boxed()
}

impl Stream for Listener {
    type Item = TransportEvent<Handshake, QuicError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.pending.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(event) = self.poll_interfaces(cx) {
            return Poll::Ready(Some(event));
        }
        loop {
            match self.accept.poll_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    // The endpoint is gone: nothing more will arrive.
                    self.close();
                    return Poll::Ready(self.pending.pop_front());
                }
                Poll::Ready(Some(incoming)) => {
                    self.accept = next_incoming(&self.endpoint);
                    let remote = incoming.remote_address();
                    let connecting = match incoming.accept() {
                        Ok(c) => c,
                        // A handshake quinn refused (a bad first packet, a full endpoint) is
                        // that peer's loss; the listener goes on.
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "QUIC handshake refused");
                            continue;
                        }
                    };
                    let timeout = self.handshake_timeout;
                    return Poll::Ready(Some(TransportEvent::Incoming {
                        listener_id: self.id,
                        upgrade: handshake(connecting, timeout).boxed(),
                        local_addr: to_multiaddr(self.local),
                        send_back_addr: to_multiaddr(remote),
                    }));
                }
            }
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

type StreamPair = (quinn::SendStream, quinn::RecvStream);

/// An established connection, as libp2p's stream muxer: every substream is one bidirectional
/// QUIC stream.
pub struct QuicConnection {
    connection: quinn::Connection,
    inbound: PendingStream,
    outbound: PendingStream,
    closing: Option<BoxFuture<'static, quinn::ConnectionError>>,
}

impl QuicConnection {
    fn new(connection: quinn::Connection) -> Self {
        QuicConnection {
            connection,
            inbound: None,
            outbound: None,
            closing: None,
        }
    }
}

type PendingStream = Option<BoxFuture<'static, Result<StreamPair, quinn::ConnectionError>>>;

/// Polls the stream being accepted or opened in `slot`, starting it with `start` if none is.
fn poll_stream(
    slot: &mut PendingStream,
    cx: &mut Context<'_>,
    start: impl FnOnce() -> BoxFuture<'static, Result<StreamPair, quinn::ConnectionError>>,
) -> Poll<Result<QuicStream, QuicError>> {
    let result = futures::ready!(slot.get_or_insert_with(start).poll_unpin(cx));
    *slot = None;
    let (send, recv) = result?;
    Poll::Ready(Ok(QuicStream::new(send, recv)))
}

impl StreamMuxer for QuicConnection {
    type Substream = QuicStream;
    type Error = QuicError;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<QuicStream, QuicError>> {
        let this = &mut *self;
        let c = &this.connection;
        poll_stream(&mut this.inbound, cx, || {
            let c = c.clone();
            async move { c.accept_bi().await }.boxed()
        })
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<QuicStream, QuicError>> {
        let this = &mut *self;
        let c = &this.connection;
        poll_stream(&mut this.outbound, cx, || {
            let c = c.clone();
            async move { c.open_bi().await }.boxed()
        })
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QuicError>> {
        let this = &mut *self;
        let connection = &this.connection;
        let closing = this.closing.get_or_insert_with(|| {
            connection.close(0u32.into(), b"");
            let c = connection.clone();
            async move { c.closed().await }.boxed()
        });
        match futures::ready!(closing.poll_unpin(cx)) {
            quinn::ConnectionError::LocallyClosed => Poll::Ready(Ok(())),
            other => Poll::Ready(Err(other.into())),
        }
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, QuicError>> {
        // Without migration a connection's address never changes: nothing to report.
        Poll::Pending
    }
}

/// One substream: a bidirectional QUIC stream.
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// How closing the sending side ended: closing again reports the same.
    closed: Option<Result<(), io::ErrorKind>>,
}

impl QuicStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        QuicStream {
            send,
            recv,
            closed: None,
        }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(done) = self.closed {
            return Poll::Ready(done.map_err(io::Error::from));
        }
        let done = futures::ready!(AsyncWrite::poll_close(Pin::new(&mut self.send), cx));
        self.closed = Some(done.as_ref().map(|_| ()).map_err(io::Error::kind));
        Poll::Ready(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_addresses_parse_and_others_do_not() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let a: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(parse(&a), Some(("127.0.0.1:4001".parse().unwrap(), None)));
        let b = a.clone().with(Protocol::P2p(peer));
        assert_eq!(
            parse(&b),
            Some(("127.0.0.1:4001".parse().unwrap(), Some(peer)))
        );
        let c: Multiaddr = "/ip6/::1/udp/9/quic-v1".parse().unwrap();
        assert_eq!(parse(&c), Some(("[::1]:9".parse().unwrap(), None)));
        for other in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/udp/4001/quic",
            "/ip4/127.0.0.1/udp/4001",
            "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport",
            "/dns/example.org/udp/4001/quic-v1",
        ] {
            assert_eq!(parse(&other.parse().unwrap()), None, "{other}");
        }
        assert_eq!(to_multiaddr("[::1]:9".parse().unwrap()), c);
    }

    #[test]
    fn thresholds_below_the_rfc_minimum_are_refused() {
        let key = Keypair::generate_ed25519();
        for cfg in [
            QuicConfig {
                packet_threshold: 2,
                ..QuicConfig::default()
            },
            QuicConfig {
                time_threshold: 0.5,
                ..QuicConfig::default()
            },
            QuicConfig {
                time_threshold: f32::NAN,
                ..QuicConfig::default()
            },
        ] {
            assert!(matches!(
                QuicTransport::new(&key, &cfg),
                Err(QuicError::Config(_))
            ));
        }
        for congestion in [Congestion::Cubic, Congestion::Bbr, Congestion::NewReno] {
            let cfg = QuicConfig {
                congestion,
                ..QuicConfig::default()
            };
            assert!(QuicTransport::new(&key, &cfg).is_ok());
        }
    }
}
