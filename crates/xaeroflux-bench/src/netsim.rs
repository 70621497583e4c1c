//! `xf-netsim`: a seeded loss-and-delay relay for network tests and `xf-bench lossy`.
//!
//! Tests that need a lossy or slow link put this relay between two nodes
//! instead of shaping traffic in the kernel, so they behave the same on hosts
//! where kernel traffic shaping is missing or needs privileges. Every random
//! choice comes from one seed, printed at start, so a failing run can be
//! replayed with the same pattern of losses.
//!
//! UDP datagrams are dropped or delayed independently of each other. TCP cannot
//! lose bytes without breaking the stream, so a "lost" TCP chunk is held back by
//! a retransmission-timeout-like penalty instead, and chunks travelling in one
//! direction never overtake each other.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// NAT-like mappings kept at once; a flood of spoofed sources must not exhaust
/// file descriptors, so the least recently active mapping makes room.
const UDP_MAX_MAPPINGS: usize = 1024;
/// A mapping idle this long is forgotten, as a home router would.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// How often idle mappings are looked for.
const UDP_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Bytes of delayed datagrams held at once; beyond this a sender outruns the
/// simulated link and its datagrams are dropped, as a full router queue would.
const UDP_MAX_IN_FLIGHT: usize = 64 << 20;
/// Large enough for any UDP payload, so no datagram is truncated.
const MAX_DATAGRAM: usize = 1 << 16;
/// Datagrams read from one upstream socket per pass, so one busy peer cannot
/// starve the others.
const UDP_POLL_BURST: usize = 64;
/// Sleep of the upstream poller after a pass that found nothing. Standard
/// sockets cannot wait on many sockets at once, so the poller sweeps them; this
/// bounds the latency it adds to the return path and the CPU it burns idle.
const UDP_POLL_IDLE: Duration = Duration::from_millis(1);
/// Poller sleep when there is no mapping at all: nothing can come back before
/// a datagram has gone out, and that first datagram is delayed anyway.
const UDP_POLL_EMPTY: Duration = Duration::from_millis(5);

/// Largest read from a TCP socket: the unit that loss and delay apply to.
const TCP_CHUNK: usize = 64 << 10;
/// Bytes held per TCP direction before the relay stops reading, so a slow
/// simulated link pushes back on the sender instead of buffering without end.
const TCP_MAX_QUEUED: usize = 8 << 20;
/// Connections relayed at once; each costs two threads.
const TCP_MAX_CONNECTIONS: usize = 256;
/// A target that does not answer must not hold a connection thread forever.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects are tried in slices this long so a stop is noticed while a silent
/// target keeps a connect pending; still longer than any test link's round trip.
const TCP_CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// Smallest retransmission timeout real stacks use.
const TCP_MIN_RTO: Duration = Duration::from_millis(200);
/// A lost chunk waits this many timeouts, standing for detection and resend.
const TCP_RTO_FACTOR: u32 = 3;
/// Sleep between non-blocking accepts; std has no way to wake a blocked accept.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Longest blocking wait of any relay thread: how soon it notices a stop.
const POLL: Duration = Duration::from_millis(50);
/// Upper bound on `--delay-ms` and `--jitter-ms`, so deadlines cannot overflow.
const MAX_DELAY_MS: u64 = 3_600_000;
/// Tries to find one ephemeral port free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 32;
/// How often `run` reports counters, so a run that is killed still left them.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Random streams, one per direction, so that one direction's traffic does not
/// shift the other's draws and a single sender's run replays exactly.
const STREAM_UDP_TO_TARGET: u64 = 0;
const STREAM_UDP_TO_CLIENT: u64 = 1;
/// TCP connection `i` uses streams `STREAM_TCP + 2i` (to target) and `+ 1`.
const STREAM_TCP: u64 = 2;

/// Flags of `xf-netsim`.
#[derive(clap::Args, Debug, Clone)]
pub struct NetsimArgs {
    /// Address to listen on; with both --udp and --tcp the same port serves both.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address to relay to.
    #[arg(long, value_name = "ADDR")]
    pub target: SocketAddr,
    /// Relay UDP datagrams.
    #[arg(long)]
    pub udp: bool,
    /// Relay TCP connections.
    #[arg(long)]
    pub tcp: bool,
    /// Loss probability, 0 to 1: a UDP datagram is dropped; a TCP chunk is held back as if retransmitted.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_loss)]
    pub loss: f64,
    /// One-way delay added to every datagram or chunk, in each direction.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = delay_parser())]
    pub delay_ms: u64,
    /// Extra delay drawn uniformly from 0 to N ms for every datagram or chunk.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = delay_parser())]
    pub jitter_ms: u64,
    /// Seed of every random choice (default: drawn at random); printed at start so a run can be replayed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Exit after this many seconds (default: run until killed).
    #[arg(long, value_name = "N")]
    pub duration_secs: Option<u64>,
}

/// Bounded so that no deadline computed from it can overflow.
fn delay_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=MAX_DELAY_MS)
}

/// A loss probability from 0 to 1.
pub fn parse_loss(s: &str) -> std::result::Result<f64, String> {
    let loss: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&loss) {
        Ok(loss)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// Runs the relay, printing the seed and bound addresses first, until
/// `--duration-secs` have passed (or forever), then prints its counters.
pub fn run(args: &NetsimArgs) -> Result<()> {
    let relay = spawn(args)?;
    let seed = relay.seed();
    say(format_args!(
        "netsim seed {seed} (pass --seed {seed} to replay)"
    ));
    for (proto, addr) in [("udp", relay.udp_addr()), ("tcp", relay.tcp_addr())] {
        if let Some(addr) = addr {
            say(format_args!("netsim {proto} {addr} -> {}", args.target));
        }
    }
    say(format_args!(
        "netsim loss {} delay {} ms jitter {} ms",
        args.loss, args.delay_ms, args.jitter_ms
    ));
    let deadline = args
        .duration_secs
        .and_then(|s| Instant::now().checked_add(Duration::from_secs(s)));
    let mut reported = Stats::default();
    loop {
        let nap = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(REPORT_EVERY)
            }
            None => REPORT_EVERY,
        };
        thread::sleep(nap);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let now = relay.stats();
        if now != reported {
            complain(format_args!("netsim {now}"));
            reported = now;
        }
    }
    say(format_args!("netsim {}", relay.stop()));
    Ok(())
}

/// Prints a line to stdout. A test harness may close the pipe once it has read
/// the addresses; that must not take the relay down, so errors are ignored.
fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

/// Prints a line to stderr, ignoring errors for the same reason as [`say`].
fn complain(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// A snapshot of a relay's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// UDP datagrams delivered, both directions.
    pub udp_forwarded: u64,
    /// UDP payload bytes delivered, both directions: the link's goodput over a run.
    pub udp_bytes: u64,
    /// UDP datagrams dropped by the simulated loss.
    pub udp_dropped: u64,
    /// UDP datagrams dropped because too many bytes were already in flight.
    pub udp_overflow: u64,
    /// UDP datagrams the operating system refused to send.
    pub udp_send_failed: u64,
    /// UDP client addresses given their own upstream socket.
    pub udp_mappings: u64,
    /// TCP connections relayed.
    pub tcp_connections: u64,
    /// TCP chunks delivered, both directions.
    pub tcp_chunks: u64,
    /// TCP bytes delivered, both directions.
    pub tcp_bytes: u64,
    /// TCP chunks held back by the retransmission penalty.
    pub tcp_chunks_delayed: u64,
    /// Network errors met (and logged); the relay carried on.
    pub errors: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp: forwarded {} ({} B) dropped {} overflow {} send-failed {} mappings {}; \
             tcp: connections {} chunks {} bytes {} delayed {}; errors {}",
            self.udp_forwarded,
            self.udp_bytes,
            self.udp_dropped,
            self.udp_overflow,
            self.udp_send_failed,
            self.udp_mappings,
            self.tcp_connections,
            self.tcp_chunks,
            self.tcp_bytes,
            self.tcp_chunks_delayed,
            self.errors,
        )
    }
}

/// A running relay. Dropping it stops it, as does [`Relay::stop`]; either way
/// every thread it started has ended when that returns.
pub struct Relay {
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    seed: u64,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// The bound UDP address, if relaying UDP (the real port when 0 was asked for).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound TCP address, if relaying TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The seed in use; passing it again replays the same random choices.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops the relay, waits for its threads and returns the final counters.
    /// Data still held back by the simulated delay is discarded.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                complain(format_args!("netsim: a relay thread panicked"));
            }
        }
    }

    fn start(&mut self, name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
        let handle = thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .with_context(|| format!("starting thread {name}"))?;
        self.threads.push(handle);
        Ok(())
    }
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("udp_addr", &self.udp_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("seed", &self.seed)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Binds the listening sockets and starts relaying in background threads.
/// `duration_secs` is ignored: the caller decides when to stop.
pub fn spawn(args: &NetsimArgs) -> Result<Relay> {
    if !args.udp && !args.tcp {
        bail!("nothing to relay: pass --udp, --tcp or both");
    }
    // Checked again here because library callers build the flags without clap.
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be between 0 and 1, not {}", args.loss);
    }
    if args.delay_ms > MAX_DELAY_MS || args.jitter_ms > MAX_DELAY_MS {
        bail!("--delay-ms and --jitter-ms must be at most {MAX_DELAY_MS}");
    }
    let seed = match args.seed {
        Some(seed) => seed,
        None => getrandom::u64().map_err(|e| anyhow::anyhow!("drawing a seed: {e}"))?,
    };
    let shape = Shape::new(args);
    let (udp, tcp) = bind(args)?;
    let shared = Arc::new(Shared::default());
    let mut relay = Relay {
        udp_addr: udp.as_ref().map(UdpSocket::local_addr).transpose()?,
        tcp_addr: tcp.as_ref().map(TcpListener::local_addr).transpose()?,
        seed,
        shared: shared.clone(),
        threads: Vec::new(),
    };
    // From here on an early return drops `relay`, which stops what already runs.
    if let Some(socket) = udp {
        socket.set_read_timeout(Some(POLL))?;
        let udp = Arc::new(UdpRelay {
            listen: socket,
            target: args.target,
            shape,
            epoch: Instant::now(),
            table: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let (u, s) = (udp.clone(), shared.clone());
        let rng = SplitMix64::stream(seed, STREAM_UDP_TO_TARGET);
        relay.start("netsim-udp-in", move || u.listen_loop(&s, rng))?;
        let (u, s) = (udp.clone(), shared.clone());
        let rng = SplitMix64::stream(seed, STREAM_UDP_TO_CLIENT);
        relay.start("netsim-udp-back", move || u.poll_loop(&s, rng))?;
        let s = shared.clone();
        relay.start("netsim-udp-out", move || udp.deliver_loop(&s))?;
    }
    if let Some(listener) = tcp {
        listener.set_nonblocking(true)?;
        let ctx = TcpCtx {
            target: args.target,
            shape,
            seed,
            shared,
        };
        relay.start("netsim-tcp-accept", move || ctx.accept_loop(&listener))?;
    }
    Ok(relay)
}

/// Binds what `args` asks for. With both protocols on port 0, one ephemeral
/// port is found that both can use, so callers can name a single address.
fn bind(args: &NetsimArgs) -> Result<(Option<UdpSocket>, Option<TcpListener>)> {
    let listen = args.listen;
    let bind_tcp = |addr| TcpListener::bind(addr).with_context(|| format!("tcp listen on {addr}"));
    let bind_udp = |addr| UdpSocket::bind(addr).with_context(|| format!("udp listen on {addr}"));
    if !(args.udp && args.tcp) {
        let udp = args.udp.then(|| bind_udp(listen)).transpose()?;
        let tcp = args.tcp.then(|| bind_tcp(listen)).transpose()?;
        return Ok((udp, tcp));
    }
    if listen.port() != 0 {
        return Ok((Some(bind_udp(listen)?), Some(bind_tcp(listen)?)));
    }
    for _ in 0..BIND_ATTEMPTS {
        let tcp = bind_tcp(listen)?;
        let mut addr = listen;
        addr.set_port(tcp.local_addr()?.port());
        match UdpSocket::bind(addr) {
            Ok(udp) => return Ok((Some(udp), Some(tcp))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("udp listen on {addr}")),
        }
    }
    bail!("found no port free for both udp and tcp on {listen}")
}

/// SplitMix64: tiny, fast and fully determined by its seed, which is all a
/// replayable loss pattern needs (no cryptographic strength is wanted here).
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// An independent-looking stream per (seed, stream) pair.
    fn stream(seed: u64, stream: u64) -> Self {
        let salt = SplitMix64(stream).next_u64();
        SplitMix64(seed ^ salt)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (0 never, 1 always).
    fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// Uniform in `0..=n`.
    fn upto(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * (u128::from(n) + 1)) >> 64) as u64
    }
}

/// What happens to every datagram or chunk.
#[derive(Clone, Copy, Debug)]
struct Shape {
    loss: f64,
    delay: Duration,
    jitter_us: u64,
    /// The extra wait of a "lost" TCP chunk.
    penalty: Duration,
}

/// One draw of the dice for one datagram or chunk.
struct Fate {
    lost: bool,
    delay: Duration,
}

impl Shape {
    fn new(args: &NetsimArgs) -> Self {
        let delay = Duration::from_millis(args.delay_ms);
        Shape {
            loss: args.loss,
            delay,
            jitter_us: args.jitter_ms * 1000,
            penalty: delay.max(TCP_MIN_RTO) * TCP_RTO_FACTOR,
        }
    }

    /// Always the same number of draws per item for a given shape, so item n's
    /// fate depends only on the seed and n.
    fn draw(&self, rng: &mut SplitMix64) -> Fate {
        let lost = rng.chance(self.loss);
        let jitter = if self.jitter_us > 0 {
            Duration::from_micros(rng.upto(self.jitter_us))
        } else {
            Duration::ZERO
        };
        Fate {
            lost,
            delay: self.delay + jitter,
        }
    }
}

#[derive(Default)]
struct Counters {
    udp_forwarded: AtomicU64,
    udp_bytes: AtomicU64,
    udp_dropped: AtomicU64,
    udp_overflow: AtomicU64,
    udp_send_failed: AtomicU64,
    udp_mappings: AtomicU64,
    tcp_connections: AtomicU64,
    tcp_chunks: AtomicU64,
    tcp_bytes: AtomicU64,
    tcp_chunks_delayed: AtomicU64,
    errors: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            udp_forwarded: get(&self.udp_forwarded),
            udp_bytes: get(&self.udp_bytes),
            udp_dropped: get(&self.udp_dropped),
            udp_overflow: get(&self.udp_overflow),
            udp_send_failed: get(&self.udp_send_failed),
            udp_mappings: get(&self.udp_mappings),
            tcp_connections: get(&self.tcp_connections),
            tcp_chunks: get(&self.tcp_chunks),
            tcp_bytes: get(&self.tcp_bytes),
            tcp_chunks_delayed: get(&self.tcp_chunks_delayed),
            errors: get(&self.errors),
        }
    }
}

/// State every relay thread sees.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    counters: Counters,
    log: Mutex<LogState>,
}

/// A dead target answers every datagram with an error; without a limit the
/// log would drown whatever the test prints.
#[derive(Default)]
struct LogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts an error and logs it, at most one line a second.
    fn error(&self, what: fmt::Arguments<'_>) {
        bump(&self.counters.errors, 1);
        let mut log = lock(&self.log);
        let now = Instant::now();
        if log
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            log.suppressed += 1;
            return;
        }
        if log.suppressed > 0 {
            complain(format_args!(
                "netsim: ({} more errors not shown)",
                log.suppressed
            ));
        }
        complain(format_args!("netsim: {what}"));
        log.last = Some(now);
        log.suppressed = 0;
    }
}

/// A poisoned lock only means another relay thread panicked; its data (queues,
/// tables) is still usable, and the relay must keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read and write timeouts surface as either kind depending on the platform.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One client address and the socket that stands for it towards the target, so
/// the target sees a distinct peer per client and replies can be routed back.
struct Mapping {
    client: SocketAddr,
    upstream: UdpSocket,
    /// Milliseconds since the relay's epoch; atomic so both directions can
    /// refresh it without taking the table lock.
    last_active: AtomicU64,
}

/// Where a delayed datagram goes.
enum Dest {
    Target(Arc<Mapping>),
    Client(SocketAddr),
}

/// A datagram waiting for its due time.
struct Pending {
    due: Instant,
    /// Breaks ties so equal deadlines leave in arrival order.
    seq: u64,
    dest: Dest,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Pending>>,
    bytes: usize,
    seq: u64,
}

/// The UDP half: one thread receives from clients, one sweeps the upstream
/// sockets for replies, and one sends whatever is due, so a long delay never
/// holds up receiving.
struct UdpRelay {
    listen: UdpSocket,
    target: SocketAddr,
    shape: Shape,
    epoch: Instant,
    table: Mutex<HashMap<SocketAddr, Arc<Mapping>>>,
    /// Bumped on every table change, so the poller re-reads the table only then.
    generation: AtomicU64,
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl UdpRelay {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, mapping: &Mapping) {
        mapping.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Receives from clients; runs on its own thread.
    fn listen_loop(&self, shared: &Shared, mut rng: SplitMix64) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut next_sweep = Instant::now() + UDP_SWEEP_EVERY;
        while !shared.stopped() {
            if Instant::now() >= next_sweep {
                self.expire_idle();
                next_sweep = Instant::now() + UDP_SWEEP_EVERY;
            }
            let (len, from) = match self.listen.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => {
                    shared.error(format_args!(
                        "udp receive on {:?}: {e}",
                        self.listen.local_addr()
                    ));
                    // A socket that keeps failing must not spin a core.
                    thread::sleep(UDP_POLL_IDLE);
                    continue;
                }
            };
            let Some(mapping) = self.mapping_for(from, shared) else {
                continue;
            };
            self.touch(&mapping);
            self.offer(&mut rng, Dest::Target(mapping), &buf[..len], shared);
        }
    }

    /// The client's mapping, made on its first datagram.
    fn mapping_for(&self, client: SocketAddr, shared: &Shared) -> Option<Arc<Mapping>> {
        let mut table = lock(&self.table);
        if let Some(mapping) = table.get(&client) {
            return Some(mapping.clone());
        }
        if table.len() >= UDP_MAX_MAPPINGS {
            let oldest = table
                .values()
                .min_by_key(|m| m.last_active.load(Ordering::Relaxed))
                .map(|m| m.client);
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        let upstream = match self.open_upstream() {
            Ok(socket) => socket,
            Err(e) => {
                shared.error(format_args!(
                    "udp socket towards {} for {client}: {e}",
                    self.target
                ));
                return None;
            }
        };
        let mapping = Arc::new(Mapping {
            client,
            upstream,
            last_active: AtomicU64::new(self.now_ms()),
        });
        table.insert(client, mapping.clone());
        self.generation.fetch_add(1, Ordering::Release);
        bump(&shared.counters.udp_mappings, 1);
        Some(mapping)
    }

    fn open_upstream(&self) -> io::Result<UdpSocket> {
        let any: SocketAddr = match self.target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any)?;
        // Connected, so only the target's replies arrive on it.
        socket.connect(self.target)?;
        // The poller sweeps many of these from one thread.
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    fn expire_idle(&self) {
        let now = self.now_ms();
        let idle_ms = u64::try_from(UDP_IDLE.as_millis()).unwrap_or(u64::MAX);
        let mut table = lock(&self.table);
        let before = table.len();
        table.retain(|_, m| now.saturating_sub(m.last_active.load(Ordering::Relaxed)) < idle_ms);
        if table.len() != before {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Receives the target's replies on every mapping; runs on its own thread.
    fn poll_loop(&self, shared: &Shared, mut rng: SplitMix64) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut seen = None;
        let mut mappings: Vec<Arc<Mapping>> = Vec::new();
        while !shared.stopped() {
            let generation = self.generation.load(Ordering::Acquire);
            if seen != Some(generation) {
                mappings = lock(&self.table).values().cloned().collect();
                seen = Some(generation);
            }
            let mut busy = false;
            for mapping in &mappings {
                for _ in 0..UDP_POLL_BURST {
                    match mapping.upstream.recv(&mut buf) {
                        Ok(len) => {
                            busy = true;
                            self.touch(mapping);
                            let dest = Dest::Client(mapping.client);
                            self.offer(&mut rng, dest, &buf[..len], shared);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // Typically the target is not listening (yet).
                            shared.error(format_args!(
                                "udp receive from {} for {}: {e}",
                                self.target, mapping.client
                            ));
                            break;
                        }
                    }
                }
            }
            if !busy {
                let nap = if mappings.is_empty() {
                    UDP_POLL_EMPTY
                } else {
                    UDP_POLL_IDLE
                };
                thread::sleep(nap);
            }
        }
    }

    /// Rolls the dice for one datagram and queues it if it survives.
    fn offer(&self, rng: &mut SplitMix64, dest: Dest, bytes: &[u8], shared: &Shared) {
        let fate = self.shape.draw(rng);
        if fate.lost {
            bump(&shared.counters.udp_dropped, 1);
            return;
        }
        let due = Instant::now() + fate.delay;
        let mut queue = lock(&self.queue);
        if queue.bytes.saturating_add(bytes.len()) > UDP_MAX_IN_FLIGHT {
            bump(&shared.counters.udp_overflow, 1);
            return;
        }
        queue.bytes += bytes.len();
        queue.seq += 1;
        let seq = queue.seq;
        queue.heap.push(Reverse(Pending {
            due,
            seq,
            dest,
            bytes: bytes.to_vec(),
        }));
        drop(queue);
        self.wake.notify_one();
    }

    /// Sends datagrams when due; runs on its own thread.
    fn deliver_loop(&self, shared: &Shared) {
        let mut ready = Vec::new();
        loop {
            let mut queue = lock(&self.queue);
            loop {
                if shared.stopped() {
                    return;
                }
                let now = Instant::now();
                let wait = match queue.heap.peek() {
                    Some(Reverse(next)) if next.due <= now => break,
                    Some(Reverse(next)) => (next.due - now).min(POLL),
                    None => POLL,
                };
                queue = self
                    .wake
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let now = Instant::now();
            while queue.heap.peek().is_some_and(|Reverse(p)| p.due <= now) {
                if let Some(Reverse(pending)) = queue.heap.pop() {
                    queue.bytes -= pending.bytes.len();
                    ready.push(pending);
                }
            }
            // Sending without the lock keeps the receiving threads unblocked.
            drop(queue);
            for pending in ready.drain(..) {
                self.send(pending, shared);
            }
        }
    }

    fn send(&self, pending: Pending, shared: &Shared) {
        let sent = match &pending.dest {
            Dest::Target(mapping) => mapping.upstream.send(&pending.bytes),
            Dest::Client(client) => self.listen.send_to(&pending.bytes, client),
        };
        match sent {
            Ok(n) => {
                bump(&shared.counters.udp_forwarded, 1);
                bump(&shared.counters.udp_bytes, n as u64);
            }
            Err(e) => {
                // A full send buffer ends up here too: a drop, as on a real link.
                bump(&shared.counters.udp_send_failed, 1);
                let to = match &pending.dest {
                    Dest::Target(_) => self.target,
                    Dest::Client(client) => *client,
                };
                shared.error(format_args!("udp send to {to}: {e}"));
            }
        }
    }
}

/// What every TCP connection thread needs.
#[derive(Clone)]
struct TcpCtx {
    target: SocketAddr,
    shape: Shape,
    seed: u64,
    shared: Arc<Shared>,
}

impl TcpCtx {
    /// Accepts clients; runs on its own thread. Each connection gets two
    /// threads, one per direction, joined before this returns.
    fn accept_loop(&self, listener: &TcpListener) {
        let mut conns: Vec<JoinHandle<()>> = Vec::new();
        let mut next_id = 0u64;
        while !self.shared.stopped() {
            conns.retain(|handle| !handle.is_finished());
            let (client, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if is_timeout(&e) => {
                    thread::sleep(ACCEPT_POLL);
                    continue;
                }
                Err(e) => {
                    self.shared.error(format_args!("tcp accept: {e}"));
                    thread::sleep(ACCEPT_POLL);
                    continue;
                }
            };
            if conns.len() >= TCP_MAX_CONNECTIONS {
                self.shared.error(format_args!(
                    "tcp: refusing {peer}, {TCP_MAX_CONNECTIONS} connections open"
                ));
                continue;
            }
            let id = next_id;
            next_id += 1;
            let ctx = self.clone();
            let spawned = thread::Builder::new()
                .name("netsim-tcp-up".into())
                .spawn(move || ctx.connection(client, peer, id));
            match spawned {
                Ok(handle) => conns.push(handle),
                Err(e) => self
                    .shared
                    .error(format_args!("tcp: no thread for {peer}: {e}")),
            }
        }
        for handle in conns {
            let _ = handle.join();
        }
    }

    /// Relays one connection until both directions have ended.
    fn connection(&self, client: TcpStream, peer: SocketAddr, id: u64) {
        if let Err(e) = self.relay_connection(client, id) {
            if !self.shared.stopped() {
                self.shared.error(format_args!("tcp {peer}: {e:#}"));
            }
        }
    }

    fn relay_connection(&self, client: TcpStream, id: u64) -> Result<()> {
        // Accepted sockets may inherit the listener's non-blocking mode.
        client.set_nonblocking(false)?;
        // Nagle would add its own delays on top of the simulated ones.
        client.set_nodelay(true)?;
        let upstream = self
            .connect()
            .with_context(|| format!("connecting to {}", self.target))?;
        upstream.set_nodelay(true)?;
        bump(&self.shared.counters.tcp_connections, 1);
        let stream = STREAM_TCP.wrapping_add(id.wrapping_mul(2));
        let (down_src, down_dst) = (upstream.try_clone()?, client.try_clone()?);
        let down_rng = SplitMix64::stream(self.seed, stream.wrapping_add(1));
        let ctx = self.clone();
        let down = thread::Builder::new()
            .name("netsim-tcp-down".into())
            .spawn(move || ctx.pump(&down_src, &down_dst, down_rng))?;
        let up = self.pump(&client, &upstream, SplitMix64::stream(self.seed, stream));
        let down = down
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("relay thread panicked")));
        up.context("client to target")?;
        down.context("target to client")?;
        Ok(())
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let deadline = Instant::now() + TCP_CONNECT_TIMEOUT;
        loop {
            match TcpStream::connect_timeout(&self.target, TCP_CONNECT_ATTEMPT) {
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && Instant::now() < deadline
                        && !self.shared.stopped() => {}
                other => return other,
            }
        }
    }

    /// Copies one direction, holding each chunk until it is due. Reading and
    /// writing share one thread: the read waits at most until the next chunk is
    /// due, and a slow writer stops the reading, which is the backpressure a
    /// real link gives.
    fn pump(&self, src: &TcpStream, dst: &TcpStream, rng: SplitMix64) -> io::Result<()> {
        let result = self.pump_inner(src, dst, rng);
        if result.is_err() {
            // Wake the other direction's thread: the connection is over.
            let _ = src.shutdown(Shutdown::Both);
            let _ = dst.shutdown(Shutdown::Both);
        }
        result
    }

    fn pump_inner(
        &self,
        mut src: &TcpStream,
        dst: &TcpStream,
        mut rng: SplitMix64,
    ) -> io::Result<()> {
        let counters = &self.shared.counters;
        dst.set_write_timeout(Some(POLL))?;
        let mut buf = vec![0u8; TCP_CHUNK];
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut queued = 0usize;
        let mut last_due: Option<Instant> = None;
        let mut eof = false;
        loop {
            if self.shared.stopped() {
                return Ok(());
            }
            let now = Instant::now();
            while queue.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, chunk)) = queue.pop_front() {
                    queued -= chunk.len();
                    self.write_all(dst, &chunk)?;
                    bump(&counters.tcp_chunks, 1);
                    bump(&counters.tcp_bytes, chunk.len() as u64);
                }
            }
            if eof && queue.is_empty() {
                // Pass the half-close on; the other direction may still carry data.
                let _ = dst.shutdown(Shutdown::Write);
                return Ok(());
            }
            let wait = queue
                .front()
                .map_or(POLL, |(due, _)| {
                    due.saturating_duration_since(Instant::now())
                })
                .clamp(Duration::from_millis(1), POLL);
            if eof || queued >= TCP_MAX_QUEUED {
                thread::sleep(wait);
                continue;
            }
            src.set_read_timeout(Some(wait))?;
            match src.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(len) => {
                    let fate = self.shape.draw(&mut rng);
                    let mut delay = fate.delay;
                    if fate.lost {
                        delay += self.shape.penalty;
                        bump(&counters.tcp_chunks_delayed, 1);
                    }
                    // A chunk never overtakes the one before it: the stream is ordered.
                    let due = last_due.map_or(Instant::now() + delay, |prev| {
                        prev.max(Instant::now() + delay)
                    });
                    last_due = Some(due);
                    queued += len;
                    queue.push_back((due, buf[..len].to_vec()));
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `write_all` that gives up when the relay stops, even if the receiver
    /// never reads again.
    fn write_all(&self, mut dst: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.shared.stopped() {
                return Err(io::Error::other("relay stopping"));
            }
            match dst.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    const LOCAL: &str = "127.0.0.1:0";

    fn flags(target: SocketAddr) -> NetsimArgs {
        NetsimArgs {
            listen: LOCAL.parse().unwrap(),
            target,
            udp: false,
            tcp: false,
            loss: 0.0,
            delay_ms: 0,
            jitter_ms: 0,
            seed: Some(7),
            duration_secs: None,
        }
    }

    /// A UDP server on its own thread that counts what arrives and, if asked,
    /// echoes it.
    struct UdpServer {
        addr: SocketAddr,
        received: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl UdpServer {
        fn start(echo: bool) -> Self {
            let socket = UdpSocket::bind(LOCAL).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let addr = socket.local_addr().unwrap();
            let received = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let (r, s) = (received.clone(), stop.clone());
            let thread = thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        r.fetch_add(1, Ordering::SeqCst);
                        if echo {
                            socket.send_to(&buf[..n], from).unwrap();
                        }
                    }
                }
            });
            UdpServer {
                addr,
                received,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for UdpServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    fn udp_client(relay: &Relay) -> UdpSocket {
        let socket = UdpSocket::bind(LOCAL).unwrap();
        socket.connect(relay.udp_addr().unwrap()).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket
    }

    /// Polls `done` for up to ten seconds.
    fn wait_for(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        done()
    }

    #[test]
    fn udp_without_loss_echoes_everything() {
        let server = UdpServer::start(true);
        let relay = spawn(&NetsimArgs {
            udp: true,
            ..flags(server.addr)
        })
        .unwrap();
        let client = udp_client(&relay);
        let mut buf = [0u8; 2048];
        for i in 0u64..500 {
            let mut msg = i.to_le_bytes().to_vec();
            msg.resize(100 + (i as usize % 900), i as u8);
            client.send(&msg).unwrap();
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg[..], "datagram {i}");
        }
        let stats = relay.stop();
        assert_eq!(stats.udp_forwarded, 1000, "{stats}");
        assert_eq!(stats.udp_dropped, 0);
        assert_eq!(stats.udp_mappings, 1);
    }

    /// Sends 1000 datagrams one way through a relay losing half, and returns
    /// how many reached the server.
    fn one_way_survivors(seed: u64) -> u64 {
        let server = UdpServer::start(false);
        let relay = spawn(&NetsimArgs {
            udp: true,
            loss: 0.5,
            seed: Some(seed),
            ..flags(server.addr)
        })
        .unwrap();
        let client = udp_client(&relay);
        for i in 0u64..1000 {
            client.send(&i.to_le_bytes()).unwrap();
            // Paced so no socket buffer overflows: only the relay may drop.
            thread::sleep(Duration::from_micros(100));
        }
        assert!(
            wait_for(|| {
                let s = relay.stats();
                s.udp_forwarded + s.udp_dropped == 1000
                    && server.received.load(Ordering::SeqCst) == s.udp_forwarded
            }),
            "{} / {} received",
            server.received.load(Ordering::SeqCst),
            relay.stats()
        );
        let stats = relay.stop();
        assert_eq!(stats.udp_overflow + stats.udp_send_failed, 0, "{stats}");
        server.received.load(Ordering::SeqCst)
    }

    #[test]
    fn udp_loss_follows_the_seed() {
        let first = one_way_survivors(42);
        let again = one_way_survivors(42);
        assert!((300..700).contains(&first), "{first} of 1000 arrived");
        assert_eq!(first, again, "same seed, same losses");
        // And exactly the datagrams the seed's stream says survive.
        let shape = Shape::new(&NetsimArgs {
            loss: 0.5,
            ..flags(LOCAL.parse().unwrap())
        });
        let mut rng = SplitMix64::stream(42, STREAM_UDP_TO_TARGET);
        let expected = (0..1000).filter(|_| !shape.draw(&mut rng).lost).count();
        assert_eq!(first, expected as u64);
    }

    #[test]
    fn udp_delay_lengthens_the_round_trip() {
        let server = UdpServer::start(true);
        let relay = spawn(&NetsimArgs {
            udp: true,
            delay_ms: 100,
            ..flags(server.addr)
        })
        .unwrap();
        let client = udp_client(&relay);
        let mut buf = [0u8; 64];
        for i in 0u8..3 {
            let start = Instant::now();
            client.send(&[i]).unwrap();
            let n = client.recv(&mut buf).unwrap();
            let rtt = start.elapsed();
            assert_eq!(&buf[..n], &[i]);
            assert!(rtt >= Duration::from_millis(200), "rtt {rtt:?}");
            assert!(rtt < Duration::from_secs(3), "rtt {rtt:?}");
        }
    }

    /// Accepts one connection and echoes it until the client half-closes.
    fn tcp_echo_server() -> (SocketAddr, JoinHandle<u64>) {
        let listener = TcpListener::bind(LOCAL).unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut echoed = 0u64;
            let mut buf = vec![0u8; 32 << 10];
            loop {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                conn.write_all(&buf[..n]).unwrap();
                echoed += n as u64;
            }
            conn.shutdown(Shutdown::Write).unwrap();
            echoed
        });
        (addr, thread)
    }

    #[test]
    fn tcp_with_loss_stays_intact_and_ordered() {
        let (server, echo) = tcp_echo_server();
        let relay = spawn(&NetsimArgs {
            tcp: true,
            loss: 0.2,
            delay_ms: 5,
            jitter_ms: 5,
            seed: Some(3),
            ..flags(server)
        })
        .unwrap();
        let mut rng = SplitMix64(99);
        let data: Vec<u8> = (0..1 << 20).map(|_| rng.next_u64() as u8).collect();
        let mut conn = TcpStream::connect(relay.tcp_addr().unwrap()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let writer = {
            let mut conn = conn.try_clone().unwrap();
            let data = data.clone();
            thread::spawn(move || {
                conn.write_all(&data).unwrap();
                conn.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(echo.join().unwrap(), 1 << 20);
        assert_eq!(back.len(), data.len());
        assert!(back == data, "stream corrupted or reordered");
        let stats = relay.stop();
        assert_eq!(stats.tcp_connections, 1, "{stats}");
        assert_eq!(stats.tcp_bytes, 2 << 20, "{stats}");
        assert!(stats.tcp_chunks > 0, "{stats}");
    }

    #[test]
    fn stop_ends_open_tcp_connections() {
        let listener = TcpListener::bind(LOCAL).unwrap();
        let relay = spawn(&NetsimArgs {
            tcp: true,
            delay_ms: 10_000,
            ..flags(listener.local_addr().unwrap())
        })
        .unwrap();
        let mut conn = TcpStream::connect(relay.tcp_addr().unwrap()).unwrap();
        conn.write_all(b"held back").unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let start = Instant::now();
        relay.stop();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn udp_and_tcp_share_one_port() {
        let relay = spawn(&NetsimArgs {
            udp: true,
            tcp: true,
            ..flags("127.0.0.1:9".parse().unwrap())
        })
        .unwrap();
        assert_eq!(
            relay.udp_addr().unwrap().port(),
            relay.tcp_addr().unwrap().port()
        );
    }

    #[test]
    fn unreachable_udp_target_is_survived() {
        // Nothing listens at the target: errors are counted, the relay goes on.
        let dead = UdpSocket::bind(LOCAL).unwrap().local_addr().unwrap();
        let relay = spawn(&NetsimArgs {
            udp: true,
            ..flags(dead)
        })
        .unwrap();
        let client = udp_client(&relay);
        for _ in 0..20 {
            client.send(b"anyone?").unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        assert!(wait_for(|| relay.stats().udp_forwarded
            + relay.stats().udp_send_failed
            == 20));
        relay.stop();
    }

    #[test]
    fn run_returns_after_its_duration() {
        let start = Instant::now();
        run(&NetsimArgs {
            udp: true,
            tcp: true,
            duration_secs: Some(0),
            seed: None,
            ..flags("127.0.0.1:9".parse().unwrap())
        })
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn silent_tcp_target_does_not_delay_stop_for_long() {
        // A documentation-range address: the connect hangs rather than failing.
        let relay = spawn(&NetsimArgs {
            tcp: true,
            ..flags("192.0.2.1:9".parse().unwrap())
        })
        .unwrap();
        let _conn = TcpStream::connect(relay.tcp_addr().unwrap()).unwrap();
        thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        relay.stop();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        netsim: NetsimArgs,
    }

    #[test]
    fn flags_parse_and_validate() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "netsim",
            "--listen",
            "127.0.0.1:7000",
            "--target",
            "[::1]:7001",
            "--udp",
            "--tcp",
            "--loss",
            "0.25",
            "--delay-ms",
            "40",
            "--jitter-ms",
            "10",
            "--seed",
            "123",
            "--duration-secs",
            "5",
        ])
        .unwrap();
        let a = cli.netsim;
        assert_eq!(a.listen, "127.0.0.1:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(a.target, "[::1]:7001".parse::<SocketAddr>().unwrap());
        assert!(a.udp && a.tcp);
        assert_eq!((a.loss, a.delay_ms, a.jitter_ms), (0.25, 40, 10));
        assert_eq!((a.seed, a.duration_secs), (Some(123), Some(5)));

        let base = [
            "netsim",
            "--listen",
            "127.0.0.1:1",
            "--target",
            "127.0.0.1:2",
        ];
        let defaults = Cli::try_parse_from(base).unwrap().netsim;
        assert_eq!(
            (defaults.loss, defaults.delay_ms, defaults.seed),
            (0.0, 0, None)
        );
        for bad in [
            ["--loss", "1.5"],
            ["--loss", "NaN"],
            ["--loss", "-0.1"],
            ["--delay-ms", "99999999"],
        ] {
            assert!(
                Cli::try_parse_from(base.iter().chain(&bad)).is_err(),
                "{bad:?}"
            );
        }
        // Neither protocol chosen: nothing to do.
        assert!(spawn(&defaults).is_err());
        let nan = NetsimArgs {
            udp: true,
            loss: f64::NAN,
            ..defaults
        };
        assert!(spawn(&nan).is_err());
    }

    #[test]
    fn random_draws_hit_their_bounds() {
        let mut rng = SplitMix64::stream(1, 2);
        assert!((0..1000).all(|_| !rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
        assert!((0..1000).all(|_| rng.upto(0) == 0));
        let draws: Vec<u64> = (0..10_000).map(|_| rng.upto(3)).collect();
        for v in 0..=3 {
            let n = draws.iter().filter(|&&d| d == v).count();
            assert!((2000..3000).contains(&n), "{v} drawn {n} times");
        }
        assert_ne!(
            SplitMix64::stream(5, 0).next_u64(),
            SplitMix64::stream(5, 1).next_u64()
        );
    }
}
