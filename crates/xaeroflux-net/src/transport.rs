//! The narrow boundary between the engine and a network: connection events, sync streams as
//! frame channels, and gossip. The libp2p swarm implements it, and so does the in-memory
//! network used by tests and benchmarks; the engine cannot tell them apart.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

/// The peer id an address ends with (`…/p2p/<id>`), if it names one.
pub fn peer_in(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The address with `peer`'s id at its end, unless it names a peer already: what another
/// node dials to reach `peer` there.
pub fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if peer_in(&addr).is_some() {
        addr
    } else {
        addr.with(Protocol::P2p(peer))
    }
}

/// Whether an address is an onion service's.
pub fn is_onion(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Onion3(_)))
}

/// The engine's name for one dial, echoed by the transport event that ends it
/// ([`TransportEvent::Connected`], [`TransportEvent::Dialed`] or
/// [`TransportEvent::DialFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialId(pub u64);

/// Frames a link buffers each way before the writer waits for the reader.
pub const LINK_FRAMES_BUFFERED: usize = 16;

/// Why a sync stream failed underneath the session.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The stream could not be opened. Fix: check that the peer runs a compatible version.
    #[error("opening a sync stream failed: {0}")]
    Open(String),
    /// Reading or writing the stream failed (connection lost, reset).
    #[error("sync stream I/O: {0}")]
    Io(String),
    /// The peer announced a frame larger than this side accepts: a protocol violation.
    #[error("peer announced a frame of {claimed} bytes, more than the {max} accepted")]
    FrameTooLarge {
        /// Length the peer claimed.
        claimed: u64,
        /// This side's cap.
        max: u64,
    },
    /// The peer sent nothing for too long.
    #[error("sync stream idle for {secs} s")]
    Idle {
        /// Seconds waited.
        secs: u64,
    },
}

/// A sync stream as the engine sees it: whole frames in, whole frames out, both bounded.
/// Dropping it closes the stream once queued frames are written.
#[derive(Debug)]
pub struct SyncLink {
    /// Frames from the peer.
    pub rx: FrameRx,
    /// Frames to the peer.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Resolves once the writer has written every frame and closed its side (byte streams only).
    flushed: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The receiving half of a [`SyncLink`].
#[derive(Debug)]
pub struct FrameRx(Inbound);

#[derive(Debug)]
enum Inbound {
    /// Frames read off a byte stream, where reading can fail.
    Stream(mpsc::Receiver<Result<Vec<u8>, LinkError>>),
    /// Frames handed over in memory.
    Memory(mpsc::Receiver<Vec<u8>>),
}

impl SyncLink {
    /// A link over a byte stream's reader task.
    pub(crate) fn from_stream(
        rx: mpsc::Receiver<Result<Vec<u8>, LinkError>>,
        tx: mpsc::Sender<Vec<u8>>,
        flushed: tokio::sync::oneshot::Receiver<()>,
    ) -> SyncLink {
        SyncLink {
            rx: FrameRx(Inbound::Stream(rx)),
            tx,
            flushed: Some(flushed),
        }
    }

    /// Closes the sending side and waits up to `limit` for what was queued to be written: a
    /// last frame (an abort naming the fault) reaches the peer before its connection is cut.
    pub async fn close(self, limit: std::time::Duration) {
        let SyncLink { tx, flushed, .. } = self;
        drop(tx);
        if let Some(flushed) = flushed {
            let _ = tokio::time::timeout(limit, flushed).await;
        }
    }

    /// Two links joined back to back (what the in-memory network hands out).
    pub fn pair() -> (SyncLink, SyncLink) {
        let (a_tx, b_rx) = mpsc::channel(LINK_FRAMES_BUFFERED);
        let (b_tx, a_rx) = mpsc::channel(LINK_FRAMES_BUFFERED);
        (
            SyncLink {
                rx: FrameRx(Inbound::Memory(a_rx)),
                tx: a_tx,
                flushed: None,
            },
            SyncLink {
                rx: FrameRx(Inbound::Memory(b_rx)),
                tx: b_tx,
                flushed: None,
            },
        )
    }
}

impl FrameRx {
    /// The next frame from the peer; `None` once the peer closed the stream. Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Vec<u8>, LinkError>> {
        match &mut self.0 {
            Inbound::Stream(rx) => rx.recv().await,
            Inbound::Memory(rx) => rx.recv().await.map(Ok),
        }
    }
}

/// A gossip message awaiting this side's verdict (gossip forwards only what was accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipToken {
    /// The peer that forwarded it.
    pub source: PeerId,
    /// The transport's own message reference.
    pub message: Vec<u8>,
}

/// This node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: do not forward, and hold it against the sender.
    Reject,
    /// Not looked at (over the sender's rate): do not forward, hold nothing against anyone.
    Ignore,
}

/// What a transport reports to the engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportEvent {
    /// Listening on a new address.
    Listening(Multiaddr),
    /// A listener failed (say, Tor could not start for the onion service); the transport
    /// tries again later.
    ListenFailed {
        /// The address it was to listen on.
        addr: Multiaddr,
        /// Why.
        error: String,
    },
    /// The first connection to a peer is up.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its address on this connection.
        addr: Multiaddr,
        /// Whether this side dialed.
        dialer: bool,
        /// The dial that made this connection, if this side dialed.
        dial: Option<DialId>,
    },
    /// A dial reached a peer this side was already connected to (its first connection was
    /// reported as [`TransportEvent::Connected`] before).
    Dialed {
        /// The dial.
        dial: DialId,
        /// The peer it reached.
        peer: PeerId,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer opened a sync stream.
    InboundSync {
        /// The peer.
        peer: PeerId,
        /// The stream.
        link: SyncLink,
    },
    /// A gossip message on a subscribed topic.
    Gossip {
        /// Topic name.
        topic: String,
        /// The event's bytes.
        data: Vec<u8>,
        /// Reference for [`Transport::validated`].
        token: GossipToken,
    },
    /// A peer and an address worth dialing were learned (LAN discovery, DHT, identify).
    Discovered {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: Multiaddr,
    },
    /// A dial failed.
    DialFailed {
        /// The peer, if known.
        peer: Option<PeerId>,
        /// Why.
        error: String,
        /// The dial, if the engine asked for it (not a transport's own redial).
        dial: Option<DialId>,
    },
}

/// A sync stream being opened.
pub type OpenFuture = Pin<Box<dyn Future<Output = Result<SyncLink, LinkError>>>>;

/// What the engine asks of a network. All calls return at once; results come back as events.
pub trait Transport {
    /// This node's peer id.
    fn local_peer(&self) -> PeerId;
    /// The next event; `Pending` registers the waker.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<TransportEvent>;
    /// Dials an address (which may carry a `/p2p/` peer id). The event that ends the dial
    /// carries `dial`; an error returned here ends it at once, with no event.
    fn dial(&mut self, addr: Multiaddr, dial: DialId) -> Result<(), String>;
    /// Opens a sync stream to a connected peer.
    fn open_sync(&mut self, peer: PeerId) -> OpenFuture;
    /// Subscribes to a gossip topic.
    fn subscribe(&mut self, topic: &str);
    /// Publishes a message on a gossip topic (best effort: anti-entropy repairs losses).
    fn publish(&mut self, topic: &str, data: Vec<u8>);
    /// Tells gossip what became of a received message (only accepted ones travel further).
    fn validated(&mut self, token: GossipToken, verdict: Verdict);
    /// Closes every connection to a peer.
    fn disconnect(&mut self, peer: PeerId);
    /// Refuses a peer's connections from now on (and closes the current ones).
    fn block(&mut self, peer: PeerId);
    /// Accepts a blocked peer again.
    fn unblock(&mut self, peer: PeerId);
    /// Addresses this node listens on.
    fn listen_addrs(&self) -> Vec<Multiaddr>;
    /// Periodic upkeep (once per anti-entropy round): DHT refresh and the like.
    fn tick(&mut self) {}
}
