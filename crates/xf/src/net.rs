//! `xf node`, `xf sync ADDR`, `xf peers`: the node on the network.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use xaeroflux::{
    Draft, Multiaddr, NetConfig, NetEvent, NetworkIdentity, Node, NodeBuilder, PeerId, Store,
    SyncProgress, SyncSummary, Topic,
};

use crate::cli::{parse_topic, Args};
use crate::output::{hex, set_root_json};

/// Flags of `xf node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Addresses to listen on (default: QUIC and TCP on every IPv4 and IPv6 interface, ports
    /// chosen by the system).
    #[arg(
        long = "listen",
        value_name = "MULTIADDR",
        conflicts_with = "anonymous"
    )]
    pub listen: Vec<Multiaddr>,
    /// Listen on nothing: only dial out (as a node behind a NAT or a firewall does).
    #[arg(long, conflicts_with = "listen")]
    pub no_listen: bool,
    /// Peers to dial at start and keep redialing.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Relays to listen through, for peers behind NAT.
    #[arg(long = "relay", value_name = "MULTIADDR", conflicts_with = "anonymous")]
    pub relays: Vec<Multiaddr>,
    /// Serve as a relay for peers that cannot be reached directly (they listen through it).
    #[arg(long, conflicts_with = "anonymous")]
    pub relay_server: bool,
    /// No LAN discovery.
    #[arg(long)]
    pub no_mdns: bool,
    /// Topics to follow (names or 64 hex digits; none: all).
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<Topic>,
    /// Seconds between anti-entropy rounds with every connected peer.
    #[arg(long, default_value_t = 30.0)]
    pub anti_entropy_secs: f64,
    /// Publish this many posts of this node's own once running (a load for tests and demos).
    #[arg(long, default_value_t = 0)]
    pub publish: u64,
    /// Milliseconds between those posts.
    #[arg(long, default_value_t = 0)]
    pub publish_interval_ms: u64,
    /// Largest sync frame sent or accepted, in bytes (1024 to 16 MiB; each session uses the
    /// smaller of the two sides' caps).
    #[arg(long, default_value_t = xaeroflux::FRAME_BYTES_DEFAULT, value_parser = xaeroflux::parse_frame_bytes)]
    pub frame_bytes: usize,
    /// Replace the node's network key (`network.key`) with a new one: peers see a new peer
    /// id from now on. The network key is never the author's key.
    #[arg(long)]
    pub new_peer_id: bool,
    /// Use a new network key for this run only, never stored: peers cannot link this run to
    /// the node's other runs by its peer id.
    #[arg(long, conflicts_with = "new_peer_id")]
    pub fresh_peer_id: bool,
    /// Tor.
    #[command(flatten)]
    pub tor: crate::tor::TorArgs,
}

impl NodeArgs {
    /// The network key asked for; `None`: the default (stored, or in anonymous mode fresh).
    fn network_identity(&self) -> Option<NetworkIdentity> {
        if self.new_peer_id {
            Some(NetworkIdentity::Rotate)
        } else if self.fresh_peer_id {
            Some(NetworkIdentity::Fresh)
        } else {
            self.tor.identity()
        }
    }

    fn config(&self, dir: &std::path::Path) -> Result<NetConfig> {
        let mut cfg = NetConfig::default();
        if !self.listen.is_empty() || self.no_listen {
            cfg.listen = self.listen.clone();
        }
        cfg.bootstrap = self.bootstrap.clone();
        cfg.relays = self.relays.clone();
        cfg.relay_server = self.relay_server;
        cfg.mdns = !self.no_mdns;
        cfg.topics = self.topics.clone();
        cfg.anti_entropy = Duration::from_secs_f64(self.anti_entropy_secs.max(0.05));
        cfg.sync = xaeroflux::SyncConfig::with_frame_bytes(self.frame_bytes);
        cfg.stop_on_signals = true;
        self.tor.apply(&mut cfg, dir, true)?;
        Ok(cfg)
    }
}

/// Flags of `xf sync ADDR`.
pub struct RemoteSync<'a> {
    pub addr: &'a Multiaddr,
    pub tor: &'a crate::tor::TorArgs,
    pub scope: xaeroflux::Scope,
    pub frame_bytes: usize,
    pub timeout: Duration,
}

fn builder(args: &Args) -> Result<NodeBuilder> {
    let dir = crate::cli::data_dir(args);
    Ok(crate::cli::builder_for(args, &dir, true)?.create_identity(true))
}

fn root_line(store: &Store) -> Result<(String, u64)> {
    let root = store.read()?.set_root()?;
    Ok((hex(&root.fingerprint), root.accum.count))
}

/// The store's set as every command's JSON names it (`set`: fingerprint, events, index shape).
fn set_json(store: &Store) -> Result<serde_json::Value> {
    Ok(set_root_json(&store.read()?.set_root()?))
}

/// Logs to stderr, at the level `XF_LOG` names (error, warn, info, debug, trace; default info).
pub fn init_logging() {
    let level = std::env::var("XF_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

pub fn node(args: &Args, n: &NodeArgs) -> Result<()> {
    init_logging();
    let dir = crate::cli::data_dir(args);
    let mut b = builder(args)?.network(n.config(&dir)?);
    if let Some(which) = n.network_identity() {
        b = b.network_identity(which);
    }
    let node = b.open().context("starting the node")?;
    let net = node.net().context("the network did not start")?;
    let me = net.peer_id();
    if args.json {
        println!(
            "{}",
            json!({ "type": "started", "peer": me.to_string(), "set": set_json(node.store())? })
        );
    } else {
        let (root, count) = root_line(node.store())?;
        println!("peer id: {me}");
        println!("store: {count} events, root {root}");
    }
    let mut to_publish = n.publish;
    let mut next_post = Instant::now();
    let mut posted = 0u64;
    loop {
        let wait = if to_publish > 0 {
            next_post.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(3600)
        };
        match net.events().recv_timeout(wait) {
            Ok(NetEvent::Stopped { signal }) => {
                // The network closed its connections and saved the peer table; the store is
                // flushed when the node drops.
                drop(node);
                if args.json {
                    println!("{}", json!({ "type": "stopped", "signal": signal }));
                } else {
                    println!("stopped on {signal}");
                }
                return Ok(());
            }
            Ok(ev) => report(args.json, node.store(), me, &ev)?,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                bail!("the network thread stopped")
            }
        }
        if to_publish > 0 && Instant::now() >= next_post {
            posted += 1;
            to_publish -= 1;
            let text = format!("post {posted} from {me}");
            node.publish(Draft::post(0, &text))?;
            next_post = Instant::now() + Duration::from_millis(n.publish_interval_ms);
            if to_publish == 0 {
                if args.json {
                    println!(
                        "{}",
                        json!({ "type": "published", "posts": posted, "set": set_json(node.store())? })
                    );
                } else {
                    let (root, count) = root_line(node.store())?;
                    println!("published {posted} posts; store: {count} events, root {root}");
                }
            }
        }
    }
}

fn report(json_out: bool, store: &Store, me: PeerId, ev: &NetEvent) -> Result<()> {
    match ev {
        NetEvent::Listening(addr) => {
            // Whole, as `xf sync` takes it: the address and the peer id that answers there.
            let addr = xaeroflux::with_peer(addr.clone(), me);
            if json_out {
                println!(
                    "{}",
                    json!({ "type": "listening", "addr": addr.to_string() })
                );
            } else {
                println!("listening: {addr}");
            }
        }
        NetEvent::Connected { peer, addr } => {
            if json_out {
                println!(
                    "{}",
                    json!({ "type": "connected", "peer": peer.to_string(), "addr": addr.to_string() })
                );
            } else {
                println!("connected: {peer} at {addr}");
            }
        }
        NetEvent::Gossiped { id, from } => {
            if json_out {
                println!(
                    "{}",
                    json!({ "type": "gossiped", "id": hex(id.as_bytes()), "from": from.to_string() })
                );
            } else {
                println!("gossiped: {} from {from}", hex(id.as_bytes()));
            }
        }
        NetEvent::ListenFailed { addr, error } => {
            if json_out {
                println!(
                    "{}",
                    json!({ "type": "listen_failed", "addr": addr.to_string(), "error": error })
                );
            } else {
                println!("listening on {addr} failed (tried again later): {error}");
            }
        }
        NetEvent::Synced(s) => {
            if json_out {
                let mut line = summary_json(s, set_json(store)?);
                line["type"] = "synced".into();
                println!("{line}");
            } else {
                let (root, count) = root_line(store)?;
                println!(
                    "synced with {}: {} events in, {} out, {} round trips, {} ms; store: {count} events, root {root}",
                    s.peer,
                    s.stats.events_received,
                    s.stats.events_sent,
                    s.stats.round_trips(),
                    s.elapsed.as_millis()
                );
            }
        }
        // Everything else is in the log.
        _ => {}
    }
    Ok(())
}

/// A session's summary, with the store's set after it.
fn summary_json(s: &SyncSummary, set: serde_json::Value) -> serde_json::Value {
    json!({
        "set": set,
        "peer": s.peer.to_string(),
        "initiator": s.initiator,
        "round_trips": s.stats.round_trips(),
        "sent": {
            "bytes": s.stats.bytes_sent,
            "events": s.stats.events_sent,
            "event_bytes": s.stats.event_bytes_sent,
        },
        "received": {
            "bytes": s.stats.bytes_received,
            "events": s.stats.events_received,
            "event_bytes": s.stats.event_bytes_received,
        },
        "ms": s.elapsed.as_secs_f64() * 1e3,
    })
}

/// One-shot: dial, reconcile, transfer, print a summary.
pub fn sync_remote(args: &Args, r: &RemoteSync<'_>) -> Result<()> {
    // Quiet unless asked: a failure is one line on stderr, like every other command's.
    if std::env::var_os("XF_LOG").is_some() {
        init_logging();
    }
    let mut cfg = NetConfig {
        // Dialing needs no listener; an ephemeral QUIC endpoint is made for the dial.
        listen: Vec::new(),
        mdns: false,
        topics: r.scope.topics.clone(),
        sync: xaeroflux::SyncConfig::with_frame_bytes(r.frame_bytes),
        // One session with the address given: no rounds of its own, no other peers redialed.
        anti_entropy: Duration::from_secs(24 * 3600),
        restore_peers: false,
        ..NetConfig::default()
    };
    let dir = crate::cli::data_dir(args);
    if r.tor.wanted() {
        r.tor.apply(&mut cfg, &dir, false)?;
    } else if xaeroflux::is_onion(r.addr) {
        // An onion address needs Tor: a child tor, dialing only (no onion service).
        let mut tor = xaeroflux::TorConfig::new(r.tor.backend(&dir)?);
        tor.onion_port = None;
        cfg.tor = Some(tor);
    }
    let mut b = builder(args)?.network(cfg);
    if r.tor.anonymous {
        // A one-shot sync needs no identity to come back to.
        b = b.network_identity(NetworkIdentity::Fresh);
    }
    let node = b.open().context("starting the network")?;
    let before = node.store().read()?.set_root()?.accum.count;
    let mut request = node.sync_with(r.addr.clone(), r.scope.clone())?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar.set_message(format!("dialing {}", r.addr));
        bar
    } else {
        ProgressBar::hidden()
    };
    let deadline = Instant::now() + r.timeout;
    let mut peer: Option<PeerId> = None;
    let summary = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            match (peer, request.last_failure()) {
                (None, _) => bail!("could not dial {} within {:?}", r.addr, r.timeout),
                (Some(p), Some(why)) => bail!(
                    "the sync with {p} did not finish within {:?} (last attempt: {why})",
                    r.timeout
                ),
                (Some(p), None) => {
                    bail!("the sync with {p} did not finish within {:?}", r.timeout)
                }
            }
        }
        match request.next(left.min(Duration::from_millis(100))) {
            Some(SyncProgress::Connected(p)) => {
                peer = Some(p);
                bar.set_message(format!("connected to {p}, reconciling"));
            }
            // A busy node or a cut stream: the network opens the session again while the peer
            // stays connected, and the deadline bounds the whole.
            Some(SyncProgress::Retrying(why)) => {
                bar.set_message(format!("the peer answered: {why}; retrying"));
            }
            Some(SyncProgress::Done(outcome)) => break outcome?,
            Some(_) => {}
            None => {
                if peer.is_some() {
                    let now = node.store().read()?.set_root()?.accum.count;
                    bar.set_message(format!("received {} events", now.saturating_sub(before)));
                }
                bar.tick();
            }
        }
    };
    bar.finish_and_clear();
    node.store().sync()?;
    let s = &summary.stats;
    if args.json {
        println!("{}", summary_json(&summary, set_json(node.store())?));
    } else {
        let (root, count) = root_line(node.store())?;
        println!("synced with {}", summary.peer);
        println!("  round trips:     {}", s.round_trips());
        println!(
            "  events:          {} received ({} B), {} sent ({} B)",
            s.events_received, s.event_bytes_received, s.events_sent, s.event_bytes_sent
        );
        println!(
            "  bytes:           {} in, {} out",
            s.bytes_received, s.bytes_sent
        );
        println!(
            "  time:            {:.1} ms",
            summary.elapsed.as_secs_f64() * 1e3
        );
        println!("  store:           {count} events, root {root}");
    }
    Ok(())
}

/// Prints the peer table a node in this data directory keeps.
pub fn peers(args: &Args, anonymous: bool) -> Result<()> {
    let dir = crate::cli::data_dir(args);
    let provider = crate::secret::provider_for(&dir, false, false)?;
    let text = xaeroflux::read_peers_file(&dir, provider.as_deref(), anonymous)
        .map_err(|e| crate::cli::open_failed(&dir, e))?;
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() == 6)
        .collect();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|f| {
                json!({
                    "peer": f[0], "state": f[1],
                    "score": f[2].parse::<i64>().unwrap_or(0),
                    "syncs": f[3].parse::<u64>().unwrap_or(0),
                    "last_seen_ms": f[4].parse::<u64>().unwrap_or(0),
                    "addrs": if f[5] == "-" { vec![] } else { f[5].split(',').collect::<Vec<_>>() },
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no peers known yet (a running `xf node` on this data directory records them)");
        return Ok(());
    }
    println!(
        "{:<54} {:<10} {:>6} {:>6}  addresses",
        "peer", "state", "score", "syncs"
    );
    for f in rows {
        // Addresses come from peers: escaped like any text from others.
        println!(
            "{:<54} {:<10} {:>6} {:>6}  {}",
            f[0],
            f[1],
            f[2],
            f[3],
            crate::output::terminal_safe(f[5])
        );
    }
    Ok(())
}

/// The network part of `xf demo`: three nodes on loopback, each with its own store, publish
/// and converge to one root.
pub fn demo_network() -> Result<()> {
    const POSTS: u64 = 300;
    println!("\n== three nodes on loopback, separate stores ==");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::Builder::new().prefix("xf-demo-node-").tempdir())
        .collect::<std::io::Result<_>>()?;
    let cfg = |bootstrap: Vec<Multiaddr>| NetConfig {
        listen: vec![
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("valid"),
            "/ip4/127.0.0.1/tcp/0".parse().expect("valid"),
        ],
        bootstrap,
        mdns: false,
        anti_entropy: Duration::from_secs(2),
        ..NetConfig::default()
    };
    let open = |dir: &tempfile::TempDir, bootstrap| -> Result<Node> {
        Ok(Node::builder()
            .data_dir(dir.path())
            .store_options(crate::demo::encrypted()?)
            .create_identity(true)
            .network(cfg(bootstrap))
            .open()?)
    };
    let first = open(&dirs[0], Vec::new())?;
    let addr = quic_addr(&first)?;
    println!("  node 1 {} listens on {addr}", short_peer(&first));
    let mut nodes = vec![first];
    for dir in &dirs[1..] {
        let n = open(dir, vec![addr.clone()])?;
        println!(
            "  node {} {} bootstraps from node 1",
            nodes.len() + 1,
            short_peer(&n)
        );
        nodes.push(n);
    }
    let started = Instant::now();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..POSTS {
            n.post(&format!("post {k} from node {}", i + 1), None, None)?;
        }
    }
    println!(
        "  each node published {POSTS} posts ({:.2} s); gossip and anti-entropy spread them",
        started.elapsed().as_secs_f64()
    );
    let want = POSTS * nodes.len() as u64;
    loop {
        let roots: Vec<(String, u64)> = nodes
            .iter()
            .map(|n| root_line(n.store()))
            .collect::<Result<_>>()?;
        if roots.iter().all(|r| *r == roots[0]) && roots[0].1 == want {
            println!(
                "  converged after {:.2} s: all three hold {} events, root {}",
                started.elapsed().as_secs_f64(),
                roots[0].1,
                &roots[0].0[..16]
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            for (i, r) in roots.iter().enumerate() {
                println!("  node {}: {} events, root {}", i + 1, r.1, &r.0[..16]);
            }
            bail!("the three nodes did not converge within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn short_peer(node: &Node) -> String {
    node.net()
        .map(|n| {
            let s = n.peer_id().to_string();
            format!("{}…", &s[..16])
        })
        .unwrap_or_default()
}

fn quic_addr(node: &Node) -> Result<Multiaddr> {
    let net = node.net().context("no network")?;
    Ok(net.wait_listening("/quic-v1", Duration::from_secs(10))?)
}
