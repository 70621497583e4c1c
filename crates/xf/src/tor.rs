//! The Tor flags of `xf node` and `xf sync`: where Tor comes from, and whether the node is
//! anonymous or uses Tor as its fallback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use xaeroflux::tor::{TorAttach, TorBackend, TorDaemon, ONION_PORT};
use xaeroflux::{NetConfig, NetworkIdentity, TorConfig};

/// Environment variable holding the control port's password, for a Tor that asks for one
/// (never a flag: a command line is visible to every user of the machine).
pub const TOR_PASSWORD_ENV: &str = "XF_TOR_CONTROL_PASSWORD";

/// Tor flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TorArgs {
    /// Tor as the fallback: serve an onion service, and dial a peer's onion address when its
    /// direct addresses (QUIC, then TCP) fail. This is reachability, not anonymity: the node
    /// still uses and announces its IP addresses.
    #[arg(long)]
    pub tor: bool,
    /// Anonymous mode: every connection goes through Tor; no IP address is listened on,
    /// announced or dialed directly; no LAN discovery, relay or hole punching; a new peer id
    /// and onion address for every run unless --keep-onion.
    #[arg(long)]
    pub anonymous: bool,
    /// Anonymous mode: keep this node's anonymous peer id and onion address across runs (kept
    /// apart from the ones it uses in the clear), so that peers reach it again there.
    #[arg(long, requires = "anonymous")]
    pub keep_onion: bool,
    /// Use a running Tor by its control port (default: start `tor` as a child process with
    /// its data in DIR/tor). Its password, if it asks for one, is read from
    /// XF_TOR_CONTROL_PASSWORD.
    #[arg(long, value_name = "ADDR")]
    pub tor_control: Option<SocketAddr>,
    /// The running Tor's SOCKS port (default: the one its control port names).
    #[arg(long, value_name = "ADDR", requires = "tor_control")]
    pub tor_socks: Option<SocketAddr>,
    /// More torrc lines for the child tor, from this file (say, a private Tor network's).
    #[arg(long, value_name = "FILE", conflicts_with = "tor_control")]
    pub tor_torrc: Option<PathBuf>,
    /// The tor program to start (default: `tor` on PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "tor_control")]
    pub tor_binary: Option<PathBuf>,
    /// The onion service's port.
    #[arg(long, default_value_t = ONION_PORT)]
    pub onion_port: u16,
    /// Serve no onion service: dial through Tor only.
    #[arg(long)]
    pub no_onion: bool,
    /// Seconds to wait for Tor to start and bootstrap.
    #[arg(long, default_value_t = 120)]
    pub tor_timeout_secs: u64,
}

impl TorArgs {
    /// Whether any flag asks for Tor.
    pub fn wanted(&self) -> bool {
        self.tor || self.anonymous || self.tor_control.is_some()
    }

    /// The backend the flags name: a child `tor` with its data in `dir/tor`, or a running one.
    pub fn backend(&self, dir: &Path) -> Result<Arc<dyn TorBackend>> {
        let timeout = Duration::from_secs(self.tor_timeout_secs.max(1));
        if let Some(control) = self.tor_control {
            let mut attach = TorAttach::new(control);
            attach.socks = self.tor_socks;
            attach.password = std::env::var(TOR_PASSWORD_ENV).ok().map(Into::into);
            attach.bootstrap_timeout = timeout;
            return Ok(Arc::new(attach));
        }
        let mut daemon = TorDaemon::new(dir.join("tor"));
        if let Some(bin) = &self.tor_binary {
            daemon.binary = bin.clone();
        }
        if let Some(file) = &self.tor_torrc {
            let file = std::fs::canonicalize(file)
                .with_context(|| format!("the torrc file {}", file.display()))?;
            daemon.torrc.push(format!("%include {}", file.display()));
        }
        daemon.bootstrap_timeout = timeout;
        Ok(Arc::new(daemon))
    }

    /// Applies the flags to a network configuration: Tor (with an onion service unless
    /// `serve` is off or --no-onion), and anonymous mode.
    pub fn apply(&self, cfg: &mut NetConfig, dir: &Path, serve: bool) -> Result<()> {
        if !self.wanted() {
            return Ok(());
        }
        let mut tor = TorConfig::new(self.backend(dir)?);
        tor.onion_port = (serve && !self.no_onion).then_some(self.onion_port);
        cfg.tor = Some(tor);
        if self.anonymous {
            cfg.anonymous = true;
            cfg.listen = Vec::new();
            cfg.mdns = false;
        }
        Ok(())
    }

    /// The network identity the flags ask for in anonymous mode (`None`: the builder's
    /// default, a fresh one in anonymous mode).
    pub fn identity(&self) -> Option<NetworkIdentity> {
        self.keep_onion.then_some(NetworkIdentity::Stored)
    }
}
