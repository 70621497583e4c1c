//! Tor for the node: streams to onion services (and, in anonymous mode, to any host) through
//! Tor's SOCKS port, and an onion service of the node's own through its control port.
//!
//! Where Tor comes from is a [`TorBackend`]: [`TorDaemon`] starts Debian's `tor` as a child
//! process with a data directory of its own, [`TorAttach`] uses one already running. An
//! embedded Tor can implement the same two traits later without touching the transport or
//! the engine. The transport ([`TorTransport`]) speaks to a backend only through them.
//!
//! Neither the SOCKS nor the control protocol uses cryptography of its own: Tor does all of
//! it (circuits, onion keys, descriptors). The node keeps the onion service's key, which Tor
//! generates and hands over once, and gives it back to Tor to serve the same address again.

#[cfg(feature = "tor")]
mod client;
#[cfg(feature = "tor")]
mod control;
#[cfg(feature = "tor")]
mod socks;
#[cfg(feature = "tor")]
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use libp2p::Multiaddr;
use zeroize::Zeroizing;

#[cfg(feature = "tor")]
pub(crate) use client::{OnionKeyFile, Pinned};
#[cfg(feature = "tor")]
pub use socks::SocksReply;
#[cfg(feature = "tor")]
pub use transport::{onion_listen_addr, DialPolicy, OnionKeySlot, ReadyStream, TorTransport};

/// How long a backend waits, by default, for Tor to start and bootstrap.
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);
/// The virtual port of the node's onion service unless told otherwise.
pub const ONION_PORT: u16 = 7464;

/// Why Tor could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TorError {
    /// The `tor` program could not be run. Fix: install Tor (Debian: `apt install tor`), give
    /// the path of its binary, or attach to a running Tor by its control and SOCKS ports.
    #[error("cannot run {binary}: {error} (install Tor, e.g. `apt install tor`, or attach to a running Tor)")]
    NotInstalled {
        /// The program tried.
        binary: String,
        /// The operating system's answer.
        error: String,
    },
    /// The `tor` child process exited.
    #[error("tor exited ({status}) after {waited_ms} ms; its log ends: {log}")]
    Exited {
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log: String,
        /// Milliseconds since it was started.
        waited_ms: u64,
    },
    /// Tor's control port could not be reached or broke the protocol.
    #[error("Tor's control port: {0}")]
    Control(String),
    /// Tor refused to authenticate this controller. Fix: give the control password, or make
    /// the cookie file readable by this user.
    #[error("Tor refused authentication: {0}")]
    Auth(String),
    /// Tor refused a command.
    #[error("Tor refused {command}: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// Tor's reply.
        reply: String,
    },
    /// Tor did not finish bootstrapping in time. Fix: check that it can reach the Tor network
    /// (or that the private network it is configured for is up); its log says more.
    #[error("Tor did not bootstrap in {waited_ms} ms (it is at {progress}%: {summary})")]
    NotBootstrapped {
        /// Bootstrap progress reached, in percent.
        progress: u8,
        /// Tor's summary of the phase it is in.
        summary: String,
        /// Milliseconds waited.
        waited_ms: u64,
    },
    /// Tor could not connect a stream to the target.
    #[cfg(feature = "tor")]
    #[error("{target} is unreachable through Tor ({reply}) after {waited_ms} ms")]
    Unreachable {
        /// The host and port.
        target: String,
        /// Tor's reason.
        reply: SocksReply,
        /// Milliseconds from asking to the refusal.
        waited_ms: u64,
    },
    /// Tor's SOCKS port could not be reached or broke the protocol.
    #[error("Tor's SOCKS port: {0}")]
    Socks(String),
    /// A local file or socket could not be used.
    #[error("{0}")]
    Io(String),
    /// The address cannot be reached through Tor (not TCP, or not allowed by the policy).
    #[error("{0} cannot be dialed through Tor")]
    Unsupported(String),
}

/// A byte stream through Tor.
pub trait TorIo: futures::AsyncRead + futures::AsyncWrite + Send + Unpin {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin> TorIo for T {}
/// A byte stream through Tor, boxed.
pub type TorStream = Box<dyn TorIo>;

/// Where a stream through Tor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorTarget {
    /// A host name (an onion address or a DNS name), resolved by Tor, never on this machine.
    Name(String, u16),
    /// An IP address and port (reached through an exit).
    Ip(SocketAddr),
}

impl std::fmt::Display for TorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TorTarget::Name(host, port) => write!(f, "{host}:{port}"),
            TorTarget::Ip(addr) => write!(f, "{addr}"),
        }
    }
}

/// An onion service's secret key as Tor writes it (`ED25519-V3:<base64>`). Whoever holds it
/// can serve the address: keep it like a private key. Zeroized when dropped; never printed.
#[derive(Clone)]
pub struct OnionKey(Zeroizing<String>);

impl OnionKey {
    /// A key read back from where it was kept; `None` unless it has Tor's form.
    pub fn parse(text: &str) -> Option<OnionKey> {
        let text = text.trim();
        let b64 = text.strip_prefix("ED25519-V3:")?;
        let ok = !b64.is_empty()
            && b64.len() <= 128
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        ok.then(|| OnionKey(Zeroizing::new(text.to_owned())))
    }

    /// The key as Tor writes it, to be kept (sealed) by the caller.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnionKey(..)")
    }
}

/// An onion service being served: its address, its key, and the streams that reach it.
/// Dropping it takes the service down.
pub struct OnionService {
    /// `/onion3/<service id>:<port>`.
    pub address: Multiaddr,
    /// Its key (the one given, or the one Tor made for a new service).
    pub key: OnionKey,
    /// Whether Tor made the key just now.
    pub new_key: bool,
    /// Streams from clients, as they arrive.
    pub incoming: BoxStream<'static, std::io::Result<TorStream>>,
    /// Resolves once the service's descriptor was first published (clients can reach it).
    pub published: BoxFuture<'static, Result<(), TorError>>,
    /// Takes the service down when dropped.
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for OnionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionService")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A started Tor: what the transport asks of it.
pub trait TorClient: Send + Sync {
    /// Opens a stream to `target`. Streams with different `isolation` never share a circuit.
    fn connect(
        &self,
        target: TorTarget,
        isolation: &str,
    ) -> BoxFuture<'static, Result<TorStream, TorError>>;
    /// Serves an onion service on `port`: with `key`, at that key's address; without, at a
    /// new one.
    fn serve(
        &self,
        key: Option<OnionKey>,
        port: u16,
    ) -> BoxFuture<'static, Result<OnionService, TorError>>;
}

/// Where Tor comes from: started on the network thread each time the network starts or
/// resumes, and stopped (for a child process: ended) when the transport is dropped.
pub trait TorBackend: Send + Sync + std::fmt::Debug {
    /// Starts Tor (or attaches to it) and resolves once it has bootstrapped.
    fn start(&self) -> BoxFuture<'static, Result<Arc<dyn TorClient>, TorError>>;
}

/// Runs Debian's `tor` as a child process with a data directory of its own. The child is
/// owned by the control connection (`TAKEOWNERSHIP`): it exits when the transport drops it,
/// and, should this process die, as soon as its control connection closes.
#[derive(Debug, Clone)]
pub struct TorDaemon {
    /// The `tor` program (found on `PATH` unless a path is given).
    pub binary: PathBuf,
    /// Tor's data directory (created, mode 0700). Tor keeps its consensus cache there, so a
    /// restart bootstraps in seconds.
    pub data_dir: PathBuf,
    /// Further torrc lines (say, a private network's `DirAuthority` lines, or `%include`).
    pub torrc: Vec<String>,
    /// How long to wait for it to bootstrap.
    pub bootstrap_timeout: Duration,
}

impl TorDaemon {
    /// A daemon from `tor` on `PATH`, with its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> TorDaemon {
        TorDaemon {
            binary: PathBuf::from("tor"),
            data_dir: data_dir.into(),
            torrc: Vec::new(),
            bootstrap_timeout: BOOTSTRAP_TIMEOUT,
        }
    }
}

/// Uses a Tor that is already running, by its control port (and its SOCKS port, asked of
/// the control port unless given).
#[derive(Clone)]
pub struct TorAttach {
    /// The control port.
    pub control: SocketAddr,
    /// The SOCKS port; `None`: the first one Tor reports.
    pub socks: Option<SocketAddr>,
    /// The control password, for a port with `HashedControlPassword`; the cookie file or no
    /// authentication are used when offered.
    pub password: Option<Zeroizing<String>>,
    /// How long to wait for it to have bootstrapped.
    pub bootstrap_timeout: Duration,
}

impl std::fmt::Debug for TorAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorAttach")
            .field("control", &self.control)
            .field("socks", &self.socks)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

impl TorAttach {
    /// Attaches by the control port alone.
    pub fn new(control: SocketAddr) -> TorAttach {
        TorAttach {
            control,
            socks: None,
            password: None,
            bootstrap_timeout: BOOTSTRAP_TIMEOUT,
        }
    }
}
