//! A hostile peer on real sockets: garbage on a sync stream, a frame header claiming 1 GiB and a
//! forged event inside a well-formed session each end its session with a penalty and a
//! disconnect; repeat offenders are blocked and cannot come back; the victim's memory stays
//! bounded; and an honest node connected to the same victim keeps converging with it.

mod common;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use common::{events, now_ms, root, wait_until};

use crossbeam_channel::{unbounded, Receiver, Sender};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Stream, SwarmBuilder};
use xaeroflux_event::{EventId, VerifiedEvent, HEADER_BYTES};
use xaeroflux_net::{
    read_frame, write_frame, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId, SYNC_PROTOCOL,
};
use xaeroflux_store::{Accum, SetKey, Store};
use xaeroflux_sync::{MemStore, Scope, Session, SetView, SyncConfig, SyncSource};

const GIB: u32 = 1 << 30;
const MIB: u64 = 1 << 20;
/// What the victim's memory may grow by across the 1 GiB claim.
const GROWTH_MAX: u64 = 64 * MIB;
/// Bytes the hostile peer streams after its claim. More than `GROWTH_MAX`, so a reader that
/// trusted the claim and filled its buffer would show up in the resident set.
const FOLLOW_UP_BYTES: usize = 96 << 20;
/// The opening every initiator sends: version 2, tag "open", a 64 KiB frame cap, no topics
/// (all).
const OPENING: [u8; 8] = [2, 0, 0, 0, 1, 0, 0, 0];
/// The responder's acceptance of an opening for all topics, with its 64 KiB frame cap.
const ACCEPTED: [u8; 8] = [2, 1, 0, 0, 1, 0, 0, 0];

/// A field of the process status in KiB (`VmRSS`, `VmHWM`); `None` where the platform has no
/// such file.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn loopback() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        // Long enough that no anti-entropy round (which forgives a little score) falls inside
        // the test: the penalties add up exactly as sent.
        anti_entropy: Duration::from_secs(300),
        ..NetConfig::default()
    }
}

struct Node {
    store: Store,
    net: NetHandle,
    _dir: tempfile::TempDir,
}

fn node(seed: u8, initial: Vec<VerifiedEvent>) -> Node {
    node_with(seed, initial, loopback())
}

fn node_with(seed: u8, initial: Vec<VerifiedEvent>, cfg: NetConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ingest(initial).unwrap();
    let net = NetHandle::start(store.clone(), [seed; 32], cfg).unwrap();
    Node {
        store,
        net,
        _dir: dir,
    }
}

fn listen_addr(h: &NetHandle) -> Multiaddr {
    h.wait_listening("", Duration::from_secs(10)).unwrap()
}

/// Every report of the victim, kept so later checks can look back at what happened when.
struct Watch {
    rx: Receiver<NetEvent>,
    log: Vec<NetEvent>,
}

impl Watch {
    /// Waits for a report matching `f` (reports before it are kept in the log too).
    fn until(&mut self, what: &str, limit: Duration, f: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => {
                    self.log.push(ev.clone());
                    if f(&ev) {
                        return ev;
                    }
                }
                Err(_) => panic!("victim never reported {what} within {limit:?}"),
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.log.push(ev);
        }
    }

    /// Reports logged after the first `mark` ones.
    fn since(&self, mark: usize) -> impl Iterator<Item = &NetEvent> {
        self.log[mark..].iter()
    }
}

fn failed_for(peer: PeerId) -> impl Fn(&NetEvent) -> bool {
    move |e| matches!(e, NetEvent::SyncFailed { peer: p, .. } if *p == peer)
}

fn blocked(peer: PeerId) -> impl Fn(&NetEvent) -> bool {
    move |e| matches!(e, NetEvent::Blocked { peer: p } if *p == peer)
}

/// What the hostile swarm saw.
#[derive(Debug)]
enum Seen {
    Established(PeerId),
    Closed(PeerId, String),
    DialFailed(String),
}

/// A bare libp2p node that speaks only the raw stream protocol and writes whatever it likes.
struct Hostile {
    rt: tokio::runtime::Runtime,
    peer: PeerId,
    control: libp2p_stream::Control,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    seen: Receiver<Seen>,
}

impl Hostile {
    fn new() -> Hostile {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let (seen_tx, seen): (Sender<Seen>, _) = unbounded();
        let (peer, control) = rt.block_on(async {
            let mut swarm = SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .unwrap()
                .with_behaviour(|_| libp2p_stream::Behaviour::new())
                .unwrap()
                // Without a keep-alive of its own the connection would close between attacks.
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build();
            let peer = *swarm.local_peer_id();
            let control = swarm.behaviour().new_control();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(addr) = dials.recv() => {
                            if let Err(e) = swarm.dial(addr) {
                                let _ = seen_tx.send(Seen::DialFailed(e.to_string()));
                            }
                        }
                        ev = swarm.select_next_some() => {
                            let seen = match ev {
                                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                                    Seen::Established(peer_id)
                                }
                                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                                    Seen::Closed(peer_id, format!("{cause:?}"))
                                }
                                SwarmEvent::OutgoingConnectionError { error, .. } => {
                                    Seen::DialFailed(error.to_string())
                                }
                                _ => continue,
                            };
                            let _ = seen_tx.send(seen);
                        }
                    }
                }
            });
            (peer, control)
        });
        Hostile {
            rt,
            peer,
            control,
            dial,
            seen,
        }
    }

    fn next_seen(&self, limit: Duration) -> Option<Seen> {
        self.seen.recv_timeout(limit).ok()
    }

    /// Dials and waits for the connection to the victim.
    fn connect(&self, addr: &Multiaddr, victim: PeerId) {
        while self.seen.try_recv().is_ok() {}
        self.dial.send(addr.clone()).unwrap();
        loop {
            match self.next_seen(Duration::from_secs(5)) {
                Some(Seen::Established(p)) if p == victim => return,
                Some(Seen::DialFailed(e)) => panic!("hostile dial failed: {e}"),
                Some(_) => {}
                None => panic!("hostile dial timed out"),
            }
        }
    }

    /// Waits for the victim to drop the connection; the cause as the swarm saw it.
    fn closed_by(&self, victim: PeerId, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_seen(left)? {
                Seen::Closed(p, cause) if p == victim => return Some(cause),
                _ => {}
            }
        }
    }

    fn open(&self, victim: PeerId) -> Result<Stream, String> {
        let mut control = self.control.clone();
        self.rt.block_on(async move {
            tokio::time::timeout(
                Duration::from_secs(3),
                control.open_stream(victim, SYNC_PROTOCOL),
            )
            .await
            .map_err(|_| "opening timed out".to_owned())?
            .map_err(|e| e.to_string())
        })
    }

    fn write(&self, stream: &mut Stream, frame: &[u8]) {
        self.rt.block_on(write_frame(stream, frame)).unwrap();
    }

    fn read(&self, stream: &mut Stream) -> Result<Option<Vec<u8>>, String> {
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), read_frame(stream, 1 << 20))
                .await
                .map_err(|_| "read timed out".to_owned())?
                .map_err(|e| e.to_string())
        })
    }

    /// A sync stream past a well-formed opening, ready for session frames.
    fn session(&self, victim: PeerId) -> Stream {
        let mut s = self.open(victim).expect("sync stream");
        self.write(&mut s, &OPENING);
        let answer = self.read(&mut s).expect("answer").expect("an answer frame");
        assert_eq!(answer, ACCEPTED, "the victim accepts a well-formed opening");
        s
    }
}

/// An honest store whose bodies go out with one signature bit flipped: what a peer forging
/// events in someone else's name sends.
struct Forger {
    inner: MemStore,
}

impl SetView for Forger {
    type Error = Infallible;

    fn accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, Infallible> {
        self.inner.accumulate(lo, hi)
    }
    fn rank(&self, key: &SetKey) -> Result<u64, Infallible> {
        self.inner.rank(key)
    }
    fn nth(&self, rank: u64) -> Result<Option<SetKey>, Infallible> {
        self.inner.nth(rank)
    }
    fn for_each_in(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), Infallible> {
        self.inner.for_each_in(lo, hi, f)
    }
}

impl SyncSource for Forger {
    fn with_body(&self, id: &EventId, f: &mut dyn FnMut(&[u8])) -> Result<bool, Infallible> {
        self.inner.with_body(id, &mut |body| {
            let mut b = body.to_vec();
            // The body is header, signature, payload: this lands in the signature.
            b[HEADER_BYTES + 7] ^= 0x10;
            f(&b)
        })
    }
}

/// Runs a sync session as initiator from the forger's store until the victim ends it.
async fn forged_session(stream: &mut Stream, src: &Forger) -> Result<String, String> {
    let mut session = Session::initiator(SyncConfig::default(), Scope::all(), 0x5eed_f00d);
    session.start(src).map_err(|e| e.to_string())?;
    loop {
        while let Some(f) = session.poll_frame(src).map_err(|e| e.to_string())? {
            write_frame(stream, &f).await.map_err(|e| e.to_string())?;
        }
        if session.is_finished() {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(stream, 1 << 20))
            .await
            .map_err(|_| "read timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let Some(frame) = frame else {
            return Ok("the victim closed the stream".into());
        };
        if let Err(e) = session.handle_frame(src, &frame, now_ms()) {
            return Ok(format!("the victim aborted: {e}"));
        }
    }
    // The victim may have said all it had before it read the forgery: its abort comes after.
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(stream, 1 << 20))
            .await
            .map_err(|_| "read timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        match frame {
            None => return Ok("the session finished, then the victim closed".into()),
            // The abort message carries its reason as text.
            Some(f) if String::from_utf8_lossy(&f).contains("signature") => {
                return Ok(format!(
                    "the victim aborted after the session: {}",
                    String::from_utf8_lossy(&f[f.len().saturating_sub(40)..])
                ))
            }
            Some(_) => {}
        }
    }
}

#[test]
fn hostile_peers_are_cut_off_and_blocked_while_an_honest_peer_keeps_syncing() {
    let victim = node(41, events(1, 0, 100, "hostile"));
    let victim_id = victim.net.peer_id();
    let victim_addr = listen_addr(&victim.net);
    let mut watch = Watch {
        rx: victim.net.events().clone(),
        log: Vec::new(),
    };
    let honest = node(42, events(2, 0, 150, "hostile"));
    let honest_id = honest.net.peer_id();
    honest.net.dial(victim_addr.clone()).unwrap();
    let took = wait_until("first convergence", Duration::from_secs(10), || {
        let (v, h) = (root(&victim.store), root(&honest.store));
        v == h && v.1 == 250
    });
    eprintln!("victim and honest node converged on 250 events in {took:?}");
    let attack_start = Instant::now();

    // 1. Garbage where a session message belongs: a penalty and a disconnect, not yet a block.
    let h1 = Hostile::new();
    h1.connect(&victim_addr, victim_id);
    let mut s = h1.session(victim_id);
    let first_offence = Instant::now();
    h1.write(&mut s, b"\xde\xad\xbe\xef is not a sync message");
    let ev = watch.until(
        "a failure for the garbage",
        Duration::from_secs(5),
        failed_for(h1.peer),
    );
    let NetEvent::SyncFailed { error, penalty, .. } = ev else {
        unreachable!()
    };
    eprintln!("garbage frame: {error:?}, penalty {penalty}");
    assert!(penalty > 0, "garbage costs the sender score");
    let cause = h1
        .closed_by(victim_id, Duration::from_secs(5))
        .expect("the victim drops a peer that sent garbage");
    eprintln!("garbage frame: connection closed ({cause})");
    watch.drain();
    assert!(
        !watch.log.iter().any(blocked(h1.peer)),
        "one offence scores down, it does not block"
    );
    drop(s);

    // 2. A frame header claiming 1 GiB, followed by a stream of bytes: refused unread.
    h1.connect(&victim_addr, victim_id);
    let mut s = h1.session(victim_id);
    let (rss_before, hwm_before) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
    let claimed_at = Instant::now();
    let streamed = h1.rt.block_on(async {
        let chunk = vec![0x5a; 64 * 1024];
        let mut sent = 0usize;
        let push = async {
            s.write_all(&GIB.to_le_bytes()).await?;
            while sent < FOLLOW_UP_BYTES {
                s.write_all(&chunk).await?;
                sent += chunk.len();
            }
            s.flush().await
        };
        let outcome = tokio::time::timeout(Duration::from_secs(5), push).await;
        (sent, format!("{outcome:?}"))
    });
    eprintln!(
        "hostile streamed {} KiB after the claim ({})",
        streamed.0 / 1024,
        streamed.1
    );
    // Measured before waiting for the verdict: a reader that trusted the claim would still be
    // filling its buffer then, not failing.
    match (
        rss_before,
        status_kib("VmRSS:"),
        hwm_before,
        status_kib("VmHWM:"),
    ) {
        (Some(rss0), Some(rss1), Some(hwm0), Some(hwm1)) => {
            let (rss_growth, hwm_growth) = (rss1.saturating_sub(rss0), hwm1.saturating_sub(hwm0));
            eprintln!(
                "resident set {rss0} KiB -> {rss1} KiB (+{rss_growth} KiB), \
                 peak {hwm0} KiB -> {hwm1} KiB (+{hwm_growth} KiB)"
            );
            assert!(
                rss_growth * 1024 < GROWTH_MAX,
                "resident set grew {rss_growth} KiB"
            );
            assert!(
                hwm_growth * 1024 < GROWTH_MAX,
                "peak resident set grew {hwm_growth} KiB"
            );
        }
        _ => eprintln!("no process status on this platform: memory not measured"),
    }
    let ev = watch.until(
        "a failure for the claim",
        Duration::from_secs(5),
        failed_for(h1.peer),
    );
    let NetEvent::SyncFailed { error, penalty, .. } = ev else {
        unreachable!()
    };
    eprintln!(
        "1 GiB claim: {error:?}, penalty {penalty}, reported after {:?}",
        claimed_at.elapsed()
    );
    assert!(penalty > 0, "an oversized claim costs the sender score");
    assert!(
        error.contains(&GIB.to_string()),
        "the claim is named: {error}"
    );
    watch.until(
        "a block of the repeat offender",
        Duration::from_secs(5),
        blocked(h1.peer),
    );
    let blocked_mark = watch.log.len();
    let time_to_block = first_offence.elapsed();
    eprintln!("repeat offender blocked {time_to_block:?} after its first offence");
    drop(s);

    // A blocked peer cannot come back: its dial fails or is closed at once, and no stream opens.
    h1.closed_by(victim_id, Duration::from_secs(5))
        .expect("the block closes the offender's connection");
    while h1.seen.try_recv().is_ok() {}
    h1.dial.send(victim_addr.clone()).unwrap();
    let redial = match h1.next_seen(Duration::from_secs(3)) {
        Some(Seen::Established(_)) => match h1.closed_by(victim_id, Duration::from_secs(3)) {
            Some(cause) => format!("connected, then closed at once ({cause})"),
            None => panic!("a blocked peer kept its new connection"),
        },
        Some(Seen::DialFailed(e)) => format!("dial failed ({e})"),
        Some(Seen::Closed(_, cause)) => format!("closed ({cause})"),
        None => panic!("a blocked peer's dial neither failed nor closed"),
    };
    eprintln!("blocked peer redials: {redial}");
    match h1.open(victim_id) {
        Err(e) => eprintln!("blocked peer opens a sync stream: refused ({e})"),
        Ok(mut s) => {
            // A stream that opened before the close landed must at least carry nothing back.
            h1.rt
                .block_on(async { write_frame(&mut s, &OPENING).await })
                .ok();
            let answer = h1.read(&mut s);
            eprintln!("blocked peer opens a sync stream: {answer:?}");
            assert!(
                !matches!(answer, Ok(Some(_))),
                "a blocked peer got an answer on a sync stream"
            );
        }
    }

    // 3. A well-formed session carrying an event whose signature was tampered with: blocked at
    //    once, and the event is never stored.
    let h2 = Hostile::new();
    let genuine = events(9, 0, 3, "hostile");
    let forged_ids: Vec<EventId> = genuine.iter().map(|e| *e.id()).collect();
    let forger = Forger {
        inner: MemStore::from_events(genuine),
    };
    h2.connect(&victim_addr, victim_id);
    let mut s = h2.session(victim_id);
    let forged_at = Instant::now();
    let outcome = h2.rt.block_on(forged_session(&mut s, &forger));
    eprintln!("forger's session ended: {outcome:?}");
    let told = outcome.as_deref().unwrap_or_default();
    assert!(
        told.contains("aborted"),
        "the forger is told why before it is cut off: {outcome:?}"
    );
    let ev = watch.until(
        "a failure for the forgery",
        Duration::from_secs(5),
        failed_for(h2.peer),
    );
    let NetEvent::SyncFailed { error, penalty, .. } = ev else {
        unreachable!()
    };
    eprintln!("forged event: {error:?}, penalty {penalty}");
    assert!(penalty > 0, "a forged event costs the sender score");
    watch.until(
        "a block of the forger",
        Duration::from_secs(5),
        blocked(h2.peer),
    );
    eprintln!(
        "forger blocked {:?} after its session opened",
        forged_at.elapsed()
    );
    drop(s);
    {
        let r = victim.store.read().unwrap();
        for id in &forged_ids {
            assert!(r.get(id).unwrap().is_none(), "a forged event was stored");
        }
    }
    assert_eq!(
        root(&victim.store).1,
        250,
        "nothing from the attackers was stored"
    );

    // The honest node was never touched, and it keeps syncing: a live gossip batch and a batch
    // only a sync session can carry both reach the victim.
    let after_attack = Instant::now();
    watch.drain();
    let after_attack_mark = watch.log.len();
    let batch_gossip = events(2, 150, 20, "hostile");
    honest.store.ingest(batch_gossip.clone()).unwrap();
    for ev in batch_gossip {
        honest.net.publish(ev).unwrap();
    }
    honest.store.ingest(events(2, 170, 30, "hostile")).unwrap();
    honest.net.sync_now().unwrap();
    let took = wait_until(
        "convergence after the attack",
        Duration::from_secs(10),
        || {
            let (v, h) = (root(&victim.store), root(&honest.store));
            v == h && v.1 == 300
        },
    );
    watch.until(
        "a session with the honest node",
        Duration::from_secs(5),
        |e| matches!(e, NetEvent::Synced(s) if s.peer == honest_id),
    );
    watch.drain();
    let gossiped = watch
        .since(after_attack_mark)
        .filter(|e| matches!(e, NetEvent::Gossiped { from, .. } if *from == honest_id))
        .count();
    eprintln!(
        "victim converged with the honest node on 300 events {took:?} after the attack \
         ({gossiped} of 20 by gossip); attack phase took {:?}",
        after_attack.duration_since(attack_start)
    );
    for e in &watch.log {
        match e {
            NetEvent::SyncFailed { peer, penalty, .. } if *peer == honest_id => {
                assert_eq!(*penalty, 0, "the honest node was penalised: {e:?}")
            }
            NetEvent::Blocked { peer } => assert_ne!(*peer, honest_id, "honest node blocked"),
            NetEvent::Disconnected { peer } => {
                assert_ne!(*peer, honest_id, "honest node disconnected")
            }
            _ => {}
        }
    }
    assert!(
        !watch
            .since(blocked_mark)
            .any(|e| matches!(e, NetEvent::Connected { peer, .. } if *peer == h1.peer)),
        "the victim reported a connection from a blocked peer"
    );
}

#[test]
fn a_dripping_or_stalled_peer_loses_its_session_within_a_window() {
    // Windows of 2 s that must each move 16 KiB: a peer that keeps the stream alive with a
    // few bytes a second (never idle) still loses the session, and is not scored for it.
    let cfg = NetConfig {
        progress_window: Duration::from_secs(2),
        ..loopback()
    };
    let victim = node_with(51, events(1, 0, 10, "drip"), cfg);
    let victim_id = victim.net.peer_id();
    let victim_addr = listen_addr(&victim.net);
    let mut watch = Watch {
        rx: victim.net.events().clone(),
        log: Vec::new(),
    };
    let h = Hostile::new();
    h.connect(&victim_addr, victim_id);

    // Drip: one byte of a message that never ends, every 200 ms.
    let mut s = h.session(victim_id);
    let started = Instant::now();
    let mut dripped = 0;
    let ev = loop {
        h.write(&mut s, &[1, 0, b'x']);
        dripped += 1;
        watch.drain();
        if let Some(ev) = watch.log.iter().find(|e| failed_for(h.peer)(e)) {
            break ev.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a dripping peer kept its session for {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let NetEvent::SyncFailed { error, penalty, .. } = ev else {
        unreachable!()
    };
    eprintln!(
        "drip of {dripped} frames: session ended after {:?}: {error}",
        started.elapsed()
    );
    assert!(error.contains("under its minimum"), "{error}");
    assert_eq!(penalty, 0, "a slow peer is not scored");
    drop(s);

    // Stall: a session opened and then never read from or written to.
    let mark = watch.log.len();
    let s = h.session(victim_id);
    let started = Instant::now();
    watch.until(
        "the stalled session's end",
        Duration::from_secs(10),
        failed_for(h.peer),
    );
    eprintln!("stalled session ended after {:?}", started.elapsed());
    assert!(watch.since(mark).count() >= 1);
    drop(s);
}
