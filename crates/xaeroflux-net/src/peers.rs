//! What the node knows of other peers: addresses to redial, connection state, score, and
//! backoff. Bounded: a node learns at most `PEERS_MAX` peers and `ADDRS_PER_PEER_MAX` addresses
//! of each, so discovery traffic from hostile peers cannot grow it without limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::transport::{Multiaddr, PeerId};

/// Peers remembered at most.
pub const PEERS_MAX: usize = 4096;
/// Addresses remembered per peer at most.
pub const ADDRS_PER_PEER_MAX: usize = 8;
/// Score at or below which a peer is blocked.
pub const SCORE_BLOCK: i32 = -100;
/// How long a blocked peer stays blocked.
pub const BLOCK_FOR: Duration = Duration::from_secs(600);
/// A connection that lasted this long resets the redial backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One peer as the node knows it.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    /// Addresses to dial, newest first.
    pub addrs: Vec<Multiaddr>,
    /// Connected now.
    pub connected: bool,
    /// When the current connection came up.
    pub connected_at: Option<Instant>,
    /// Misbehaviour score (0 is clean, lower is worse).
    pub score: i32,
    /// Whether to redial this peer when it drops.
    pub redial: bool,
    /// Current redial backoff.
    pub backoff: Duration,
    /// When to dial next, if a redial is due.
    pub next_dial: Option<Instant>,
    /// Blocked until then.
    pub blocked_until: Option<Instant>,
    /// Last time this peer was connected (ms since the epoch).
    pub last_seen_ms: u64,
    /// Sessions finished with this peer.
    pub syncs: u64,
}

impl PeerEntry {
    fn new() -> PeerEntry {
        PeerEntry {
            addrs: Vec::new(),
            connected: false,
            connected_at: None,
            score: 0,
            redial: false,
            backoff: Duration::ZERO,
            next_dial: None,
            blocked_until: None,
            last_seen_ms: 0,
            syncs: 0,
        }
    }
}

/// The peer table.
#[derive(Debug)]
pub struct Peers {
    map: HashMap<PeerId, PeerEntry>,
    redial_min: Duration,
    redial_max: Duration,
    /// Keep onion addresses only (anonymous mode).
    onion_only: bool,
    /// Changed since the last persist.
    pub dirty: bool,
}

impl Peers {
    /// An empty table with the given redial backoff bounds.
    pub fn new(redial_min: Duration, redial_max: Duration) -> Peers {
        Peers {
            map: HashMap::new(),
            redial_min,
            redial_max: redial_max.max(redial_min),
            onion_only: false,
            dirty: false,
        }
    }

    /// From now on keeps onion addresses only, learned or loaded (anonymous mode: the table
    /// names no IP address of any peer, so it cannot lead to a direct dial or tell one).
    pub fn onion_only(&mut self) {
        self.onion_only = true;
    }

    fn keeps(&self, addr: &Multiaddr) -> bool {
        !self.onion_only || crate::transport::is_onion(addr)
    }

    /// The entry of a peer, created if there is room.
    fn entry(&mut self, peer: PeerId) -> Option<&mut PeerEntry> {
        if !self.map.contains_key(&peer) && self.map.len() >= PEERS_MAX {
            return None;
        }
        self.dirty = true;
        Some(self.map.entry(peer).or_insert_with(PeerEntry::new))
    }

    /// A peer's entry.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.map.get(peer)
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerEntry)> {
        self.map.iter()
    }

    /// Remembers an address of a peer; `redial` marks a peer worth keeping connected.
    pub fn learn(&mut self, peer: PeerId, addr: Multiaddr, redial: bool) {
        if !self.keeps(&addr) {
            return;
        }
        if let Some(e) = self.entry(peer) {
            e.redial |= redial;
            if let Some(pos) = e.addrs.iter().position(|a| *a == addr) {
                e.addrs.remove(pos);
            }
            e.addrs.insert(0, addr);
            e.addrs.truncate(ADDRS_PER_PEER_MAX);
        }
    }

    /// A connection to the peer came up.
    pub fn connected(&mut self, peer: PeerId, addr: Multiaddr, dialer: bool, now_ms: u64) {
        let dialer = dialer && self.keeps(&addr);
        if let Some(e) = self.entry(peer) {
            e.connected = true;
            e.connected_at = Some(Instant::now());
            e.next_dial = None;
            e.last_seen_ms = now_ms;
            // Only an address this side dialed is known to be reachable.
            if dialer && !e.addrs.contains(&addr) {
                e.addrs.insert(0, addr);
                e.addrs.truncate(ADDRS_PER_PEER_MAX);
            }
            e.redial |= dialer;
        }
    }

    /// The last connection to the peer closed; schedules a redial if it is wanted.
    pub fn disconnected(&mut self, peer: PeerId, now_ms: u64) {
        let (min, max) = (self.redial_min, self.redial_max);
        if let Some(e) = self.entry(peer) {
            e.connected = false;
            e.last_seen_ms = now_ms;
            let stable = e
                .connected_at
                .take()
                .is_some_and(|t| t.elapsed() >= STABLE_AFTER);
            e.backoff = if stable {
                min
            } else {
                next_backoff(e.backoff, min, max)
            };
            if e.redial && !e.addrs.is_empty() {
                e.next_dial = Some(Instant::now() + jitter(e.backoff, &peer));
            }
        }
    }

    /// A dial to the peer failed: try again later, backing off.
    pub fn dial_failed(&mut self, peer: PeerId) {
        let (min, max) = (self.redial_min, self.redial_max);
        if let Some(e) = self.map.get_mut(&peer) {
            if e.connected {
                return;
            }
            e.backoff = next_backoff(e.backoff, min, max);
            if e.redial && !e.addrs.is_empty() {
                e.next_dial = Some(Instant::now() + jitter(e.backoff, &peer));
            }
            self.dirty = true;
        }
    }

    /// Peers whose redial is due, with their addresses; their schedule is cleared.
    pub fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for (peer, e) in self.map.iter_mut() {
            let blocked = e.blocked_until.is_some_and(|t| t > now);
            if !e.connected && !blocked && e.next_dial.is_some_and(|t| t <= now) {
                e.next_dial = None;
                out.push((*peer, e.addrs.clone()));
            }
        }
        out
    }

    /// Deducts `penalty` from a peer's score; true if it is now to be blocked.
    pub fn penalize(&mut self, peer: PeerId, penalty: i32) -> bool {
        let Some(e) = self.entry(peer) else {
            return true;
        };
        e.score = e.score.saturating_sub(penalty);
        if e.score <= SCORE_BLOCK {
            e.blocked_until = Some(Instant::now() + BLOCK_FOR);
            e.next_dial = None;
            return true;
        }
        false
    }

    /// Peers whose block expired: their score restarts at half the block threshold, so a
    /// second offence blocks them again sooner.
    pub fn unblock_expired(&mut self, now: Instant) -> Vec<PeerId> {
        let mut out = Vec::new();
        for (peer, e) in self.map.iter_mut() {
            if e.blocked_until.is_some_and(|t| t <= now) {
                e.blocked_until = None;
                e.score = SCORE_BLOCK / 2;
                out.push(*peer);
            }
        }
        out
    }

    /// Good behaviour slowly earns back score.
    pub fn forgive(&mut self, step: i32) {
        for e in self.map.values_mut() {
            if e.blocked_until.is_none() && e.score < 0 {
                e.score = (e.score + step).min(0);
            }
        }
    }

    /// Whether a peer is blocked now.
    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.map
            .get(peer)
            .and_then(|e| e.blocked_until)
            .is_some_and(|t| t > Instant::now())
    }

    /// Counts a finished session.
    pub fn synced(&mut self, peer: PeerId) {
        if let Some(e) = self.map.get_mut(&peer) {
            e.syncs += 1;
            self.dirty = true;
        }
    }

    /// Schedules a dial of a known peer at the next tick (unless it is connected or blocked).
    pub fn dial_soon(&mut self, peer: PeerId) {
        if let Some(e) = self.map.get_mut(&peer) {
            if !e.connected && e.blocked_until.is_none() && !e.addrs.is_empty() {
                e.next_dial = Some(Instant::now());
            }
        }
    }

    /// Restores a table written by [`Peers::render`]: addresses, scores and counts come back,
    /// and every peer with an address is dialed at once. Malformed lines are skipped (the file
    /// is this node's own, but a torn or edited file must not stop it from starting).
    pub fn load(&mut self, text: &str) -> usize {
        let mut loaded = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [peer, _state, score, syncs, seen, addrs] = f[..] else {
                continue;
            };
            let (Ok(peer), Ok(score), Ok(syncs), Ok(seen)) = (
                peer.parse::<PeerId>(),
                score.parse::<i32>(),
                syncs.parse::<u64>(),
                seen.parse::<u64>(),
            ) else {
                continue;
            };
            let addrs: Vec<Multiaddr> = addrs
                .split(',')
                .filter_map(|a| a.parse().ok())
                .filter(|a| self.keeps(a))
                .take(ADDRS_PER_PEER_MAX)
                .collect();
            let Some(e) = self.entry(peer) else {
                break;
            };
            e.score = score.max(SCORE_BLOCK + 1);
            e.syncs = syncs;
            e.last_seen_ms = seen;
            e.redial = !addrs.is_empty();
            e.next_dial = e.redial.then(Instant::now);
            e.addrs = addrs;
            loaded += 1;
        }
        self.dirty = false;
        loaded
    }

    /// Marks every peer disconnected (the node is stopping).
    pub fn all_disconnected(&mut self, now_ms: u64) {
        for e in self.map.values_mut() {
            if e.connected {
                e.connected = false;
                e.last_seen_ms = now_ms;
                self.dirty = true;
            }
        }
    }

    /// Connected peers.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.map
            .iter()
            .filter(|(_, e)| e.connected)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The table as text, one peer per line:
    /// `peer-id state score syncs last-seen-ms addr,addr,...` (state: connected, blocked, known).
    pub fn render(&self) -> String {
        let mut lines: Vec<String> = self
            .map
            .iter()
            .map(|(p, e)| {
                let state = if e.connected {
                    "connected"
                } else if e.blocked_until.is_some() {
                    "blocked"
                } else {
                    "known"
                };
                let addrs: Vec<String> = e.addrs.iter().map(|a| a.to_string()).collect();
                format!(
                    "{p} {state} {} {} {} {}",
                    e.score,
                    e.syncs,
                    e.last_seen_ms,
                    if addrs.is_empty() {
                        "-".to_owned()
                    } else {
                        addrs.join(",")
                    }
                )
            })
            .collect();
        lines.sort();
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

/// A token bucket: `rate` per second, up to `burst` at once. Gossip from one peer beyond it is
/// dropped before verification, so a flood costs this node next to nothing.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, now: Instant) -> RateLimit {
        let rate = rate_per_sec.max(1) as f64;
        RateLimit {
            tokens: rate * 2.0,
            last: now,
            rate,
            burst: rate * 2.0,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The next delay of a backoff that starts at `min` and doubles up to `max` (zero: not
/// started).
pub fn next_backoff(current: Duration, min: Duration, max: Duration) -> Duration {
    if current.is_zero() {
        min
    } else {
        (current * 2).min(max)
    }
}

/// Spreads redials of many peers dropped at once over up to a quarter of the backoff,
/// deterministically per peer, so they do not all dial in the same instant.
fn jitter(backoff: Duration, peer: &PeerId) -> Duration {
    let h = blake3::hash(&peer.to_bytes());
    let frac = u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) as u32;
    backoff + backoff / 4 * frac / u16::MAX as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn redial_backs_off_until_a_connection_holds() {
        let mut peers = Peers::new(Duration::from_millis(100), Duration::from_millis(800));
        let p = PeerId::random();
        peers.learn(p, addr(1), true);
        peers.connected(p, addr(1), true, 1);
        peers.disconnected(p, 2);
        assert_eq!(peers.get(&p).unwrap().backoff, Duration::from_millis(100));
        for expected in [200, 400, 800, 800] {
            peers.dial_failed(p);
            assert_eq!(
                peers.get(&p).unwrap().backoff,
                Duration::from_millis(expected)
            );
        }
        assert!(peers.due(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_secs(2);
        let due = peers.due(later);
        assert_eq!(due, vec![(p, vec![addr(1)])]);
        assert!(peers.due(later).is_empty(), "a due dial is handed out once");
    }

    #[test]
    fn scores_block_and_blocks_expire() {
        let mut peers = Peers::new(Duration::from_millis(100), Duration::from_secs(1));
        let p = PeerId::random();
        assert!(!peers.penalize(p, 50));
        assert!(peers.penalize(p, 50));
        assert!(peers.is_blocked(&p));
        assert!(peers.unblock_expired(Instant::now()).is_empty());
        let unblocked = peers.unblock_expired(Instant::now() + BLOCK_FOR);
        assert_eq!(unblocked, vec![p]);
        assert!(!peers.is_blocked(&p));
        assert_eq!(peers.get(&p).unwrap().score, SCORE_BLOCK / 2);
        peers.forgive(10);
        assert_eq!(peers.get(&p).unwrap().score, SCORE_BLOCK / 2 + 10);
    }

    #[test]
    fn a_rendered_table_loads_back_and_bad_lines_are_skipped() {
        let mut peers = Peers::new(Duration::from_millis(1), Duration::from_millis(1));
        let (p, q) = (PeerId::random(), PeerId::random());
        peers.learn(p, addr(7), true);
        peers.penalize(p, 30);
        peers.learn(q, addr(8), false);
        peers.connected(q, addr(8), false, 5);
        let text = format!("{}garbage line\n{} known x 0 0 -\n", peers.render(), p);
        let mut back = Peers::new(Duration::from_millis(1), Duration::from_millis(1));
        assert_eq!(back.load(&text), 2);
        let e = back.get(&p).unwrap();
        assert_eq!(
            (e.score, e.addrs.clone(), e.redial),
            (-30, vec![addr(7)], true)
        );
        assert!(
            !back.get(&q).unwrap().connected,
            "connection state is not restored"
        );
        let due: Vec<PeerId> = back
            .due(Instant::now())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            due.len(),
            2,
            "every peer with an address is dialed at start"
        );
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, t0);
        assert_eq!(
            (0..30).filter(|_| r.take(t0)).count(),
            20,
            "burst of twice the rate"
        );
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            (0..30).filter(|_| r.take(t1)).count(),
            5,
            "half a second refills 5"
        );
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(
            (0..30).filter(|_| r.take(t2)).count(),
            20,
            "never more than the burst"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut peers = Peers::new(Duration::from_millis(1), Duration::from_millis(1));
        for i in 0..PEERS_MAX + 10 {
            peers.learn(PeerId::random(), addr(i as u16), false);
        }
        assert_eq!(peers.iter().count(), PEERS_MAX);
        let p = *peers.iter().next().unwrap().0;
        for i in 0..ADDRS_PER_PEER_MAX * 2 {
            peers.learn(p, addr(i as u16), false);
        }
        assert_eq!(peers.get(&p).unwrap().addrs.len(), ADDRS_PER_PEER_MAX);
    }
}
