//! The network as the binding shows it: options, reports, peers, sync outcomes.

use std::path::Path;
#[cfg(feature = "tor")]
use std::sync::Arc;
use std::time::Duration;

use xaeroflux::{Multiaddr, NetConfig, Topic};

use crate::error::XfError;

/// How the node joins the network. The defaults: QUIC and TCP on every interface (IPv4 and
/// IPv6, ports chosen by the system), mDNS on the LAN, every topic.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NetOptions {
    /// Multiaddrs to listen on (`/ip4/0.0.0.0/udp/0/quic-v1`, `/ip4/127.0.0.1/tcp/4001`);
    /// empty: the default set.
    #[uniffi(default)]
    pub listen: Vec<String>,
    /// Peers to dial at start (multiaddrs ending in `/p2p/<peer id>`).
    #[uniffi(default)]
    pub bootstrap: Vec<String>,
    /// Relays to reserve a slot on, for peers behind NAT.
    #[uniffi(default)]
    pub relays: Vec<String>,
    /// Find peers on the LAN with mDNS (it announces the node there), where this build has
    /// it (feature `mdns`, in the default set).
    #[uniffi(default = true)]
    pub mdns: bool,
    /// Topics followed (names or 64 hex digits); empty: all.
    #[uniffi(default)]
    pub topics: Vec<String>,
    /// Seconds between anti-entropy rounds with connected peers; unset: 30.
    #[uniffi(default)]
    pub anti_entropy_secs: Option<u32>,
    /// Tor: the fallback after QUIC and TCP, or with `anonymous` the only transport.
    #[uniffi(default)]
    pub tor: Option<TorOptions>,
    /// Anonymous mode: Tor only, from the first dial; no IP listen address, no mDNS, no
    /// relays, a fresh network identity each start (docs/privacy.md says what it hides).
    #[uniffi(default)]
    pub anonymous: bool,
}

impl Default for NetOptions {
    fn default() -> NetOptions {
        NetOptions {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            topics: Vec::new(),
            anti_entropy_secs: None,
            tor: None,
            anonymous: false,
        }
    }
}

/// Where Tor comes from: a `tor` the node starts (the default) or one already running.
/// `Debug` leaves the control port's password out.
#[derive(Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct TorOptions {
    /// The control port of a running tor (`127.0.0.1:9051`); unset: start one.
    #[uniffi(default)]
    pub control: Option<String>,
    /// Its SOCKS port; unset: the first one it reports.
    #[uniffi(default)]
    pub socks: Option<String>,
    /// The control port's password, if it wants one.
    #[uniffi(default)]
    pub control_password: Option<String>,
    /// The `tor` program to start; unset: `tor` on the PATH.
    #[uniffi(default)]
    pub binary: Option<String>,
    /// Serve an onion service on this virtual port (7464 when unset), unless `no_onion`.
    #[uniffi(default)]
    pub onion_port: Option<u16>,
    /// Dial through Tor but serve no onion service.
    #[uniffi(default)]
    pub no_onion: bool,
    /// Seconds to wait for Tor to bootstrap; unset: 120.
    #[uniffi(default)]
    pub bootstrap_timeout_secs: Option<u32>,
}

impl std::fmt::Debug for TorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorOptions")
            .field("control", &self.control)
            .field("socks", &self.socks)
            .field(
                "control_password",
                &self.control_password.as_ref().map(|_| "(set)"),
            )
            .field("binary", &self.binary)
            .field("onion_port", &self.onion_port)
            .field("no_onion", &self.no_onion)
            .field("bootstrap_timeout_secs", &self.bootstrap_timeout_secs)
            .finish()
    }
}

fn addrs(list: &[String]) -> Result<Vec<Multiaddr>, XfError> {
    list.iter().map(|s| multiaddr(s)).collect()
}

pub(crate) fn multiaddr(s: &str) -> Result<Multiaddr, XfError> {
    s.parse().map_err(|e| {
        XfError::invalid(format!(
            "{s:?} is not a multiaddr ({e}), such as /ip4/192.0.2.1/udp/4001/quic-v1/p2p/<peer id>"
        ))
    })
}

impl NetOptions {
    /// The engine's configuration; `dir` is where a started tor keeps its data.
    pub(crate) fn to_config(&self, dir: &Path) -> Result<NetConfig, XfError> {
        let mut cfg = NetConfig::default();
        if !self.listen.is_empty() {
            cfg.listen = addrs(&self.listen)?;
        }
        cfg.bootstrap = addrs(&self.bootstrap)?;
        cfg.relays = addrs(&self.relays)?;
        cfg.mdns = self.mdns && cfg!(feature = "mdns");
        cfg.topics = self.topics.iter().map(|t| Topic::from_text(t)).collect();
        if let Some(secs) = self.anti_entropy_secs {
            cfg.anti_entropy = Duration::from_secs(u64::from(secs.max(1)));
        }
        if let Some(tor) = &self.tor {
            cfg.tor = Some(tor.to_config(dir)?);
        }
        if self.anonymous {
            if cfg.tor.is_none() {
                cfg.tor = Some(TorOptions::default().to_config(dir)?);
            }
            cfg.anonymous = true;
            if self.listen.is_empty() {
                // Only the onion service; listen addresses given are refused by validation.
                cfg.listen = Vec::new();
            }
            cfg.mdns = false;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl TorOptions {
    #[cfg(not(feature = "tor"))]
    fn to_config(&self, _dir: &Path) -> Result<xaeroflux::TorConfig, XfError> {
        Err(XfError::Unsupported {
            detail: "this build of the library leaves Tor out: build it with the `tor` feature"
                .into(),
        })
    }

    #[cfg(feature = "tor")]
    fn to_config(&self, dir: &Path) -> Result<xaeroflux::TorConfig, XfError> {
        use xaeroflux::tor::{TorAttach, TorBackend, TorDaemon, ONION_PORT};
        let timeout =
            Duration::from_secs(u64::from(self.bootstrap_timeout_secs.unwrap_or(120).max(1)));
        let socket = |s: &str| {
            s.parse::<std::net::SocketAddr>().map_err(|_| {
                XfError::invalid(format!("{s:?} is not an address such as 127.0.0.1:9051"))
            })
        };
        let backend: Arc<dyn TorBackend> = match &self.control {
            Some(control) => {
                let mut attach = TorAttach::new(socket(control)?);
                attach.socks = self.socks.as_deref().map(socket).transpose()?;
                attach.password = self.control_password.clone().map(Into::into);
                attach.bootstrap_timeout = timeout;
                Arc::new(attach)
            }
            None => {
                let mut daemon = TorDaemon::new(dir.join("tor"));
                if let Some(bin) = &self.binary {
                    daemon.binary = bin.into();
                }
                daemon.bootstrap_timeout = timeout;
                Arc::new(daemon)
            }
        };
        let mut tor = xaeroflux::TorConfig::new(backend);
        tor.onion_port = (!self.no_onion).then_some(self.onion_port.unwrap_or(ONION_PORT));
        Ok(tor)
    }
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Peer {
    /// Its peer id (its network key, not an author's).
    pub peer_id: String,
    /// The addresses it is connected at.
    pub addresses: Vec<String>,
}

/// What a finished sync session did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    /// The other side's peer id.
    pub peer_id: String,
    /// Whether this side opened the session.
    pub initiator: bool,
    /// Events received and stored.
    pub events_received: u64,
    /// Events sent.
    pub events_sent: u64,
    /// Bytes received, framing included.
    pub bytes_received: u64,
    /// Bytes sent, framing included.
    pub bytes_sent: u64,
    /// From opening to the last frame, in ms.
    pub elapsed_ms: u64,
}

impl From<&xaeroflux::SyncSummary> for SyncSummary {
    fn from(s: &xaeroflux::SyncSummary) -> SyncSummary {
        SyncSummary {
            peer_id: s.peer.to_string(),
            initiator: s.initiator,
            events_received: s.stats.events_received,
            events_sent: s.stats.events_sent,
            bytes_received: s.stats.bytes_received,
            bytes_sent: s.stats.bytes_sent,
            elapsed_ms: s.elapsed.as_millis() as u64,
        }
    }
}

/// A report of the network.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum NetEvent {
    /// Listening on an address (with this node's peer id at its end: what others dial).
    Listening {
        /// The address.
        address: String,
    },
    /// A listener failed; it is tried again later.
    ListenFailed {
        /// The address.
        address: String,
        /// Why, with the time spent.
        error: String,
    },
    /// A peer connected.
    Connected {
        /// The peer.
        peer_id: String,
        /// Its address.
        address: String,
    },
    /// A peer's last connection closed.
    Disconnected {
        /// The peer.
        peer_id: String,
    },
    /// A sync session finished.
    Synced {
        /// What it did.
        summary: SyncSummary,
    },
    /// A sync session failed.
    SyncFailed {
        /// The peer.
        peer_id: String,
        /// Why.
        error: String,
        /// It is opened again, with backoff, while the peer stays connected.
        retrying: bool,
    },
    /// A gossiped event was verified and is being stored.
    Gossiped {
        /// The event.
        id: String,
        /// The peer that forwarded it.
        from_peer: String,
    },
    /// A peer misbehaved past the threshold and is blocked.
    Blocked {
        /// The peer.
        peer_id: String,
    },
    /// A dial failed.
    DialFailed {
        /// The peer, if known.
        peer_id: Option<String>,
        /// Why.
        error: String,
    },
    /// The network paused: no connection, no timer, no socket until it resumes.
    Paused,
    /// The network resumed.
    Resumed,
}

impl NetEvent {
    /// The report, if it is one the host hears (request bookkeeping is not).
    pub(crate) fn from_core(e: &xaeroflux::NetEvent) -> Option<NetEvent> {
        use xaeroflux::NetEvent as E;
        Some(match e {
            E::Listening(a) => NetEvent::Listening {
                address: a.to_string(),
            },
            E::ListenFailed { addr, error } => NetEvent::ListenFailed {
                address: addr.to_string(),
                error: error.clone(),
            },
            E::Connected { peer, addr } => NetEvent::Connected {
                peer_id: peer.to_string(),
                address: addr.to_string(),
            },
            E::Disconnected { peer } => NetEvent::Disconnected {
                peer_id: peer.to_string(),
            },
            E::Synced(summary) => NetEvent::Synced {
                summary: summary.into(),
            },
            E::SyncFailed {
                peer,
                error,
                retrying,
                ..
            } => NetEvent::SyncFailed {
                peer_id: peer.to_string(),
                error: error.clone(),
                retrying: *retrying,
            },
            E::Gossiped { id, from } => NetEvent::Gossiped {
                id: id.to_string(),
                from_peer: from.to_string(),
            },
            E::Blocked { peer } => NetEvent::Blocked {
                peer_id: peer.to_string(),
            },
            E::DialFailed { peer, error, .. } => NetEvent::DialFailed {
                peer_id: peer.map(|p| p.to_string()),
                error: error.clone(),
            },
            E::Paused => NetEvent::Paused,
            E::Resumed => NetEvent::Resumed,
            _ => return None,
        })
    }
}

/// Receives the network's reports on the binding's callback thread, in order. Throwing does
/// not stop them (the error is logged).
#[uniffi::export(foreign)]
pub trait NetListener: Send + Sync {
    /// A report.
    fn on_net_event(&self, event: NetEvent) -> Result<(), XfError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_the_tor_password_out() {
        let options = NetOptions {
            tor: Some(TorOptions {
                control: Some("127.0.0.1:9051".into()),
                control_password: Some("correct horse battery".into()),
                ..TorOptions::default()
            }),
            ..NetOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("127.0.0.1:9051"), "{shown}");
        assert!(
            shown.contains("control_password: Some(\"(set)\")"),
            "{shown}"
        );
        assert!(!shown.contains("correct horse"), "{shown}");
    }
}
