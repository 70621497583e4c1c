//! One sync session over a link. The stream opens with a short exchange that settles the
//! scope (the topics both sides follow), then carries the frames of an `xaeroflux-sync`
//! session. Received events go to the verifier stage, and what it passes to the store's
//! writer: the network thread neither verifies nor waits. A cut session leaves only whole,
//! verified events behind, and the next one moves only what is still missing.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use xaeroflux_event::{Topic, Verification, Verifier, VerifierStopped};
use xaeroflux_store::{Durability, ReadError, ScopedStore, Store, Ticket, WriteError};
use xaeroflux_sync::{
    snapshot, Claim, MemSet, Peer, Scope, Session, SessionStats, SyncConfig, SyncError, SyncSource,
    ViewError, WriteWindow,
};

use crate::transport::{LinkError, PeerId, SyncLink};

/// Version byte of the opening exchange (2: each side states its frame cap).
pub const OPEN_VERSION: u8 = 2;
/// Most topics an opening may name.
pub const OPEN_TOPICS_MAX: usize = 1024;
/// Bytes of the opening's fixed part: version, tag, frame cap, topic count.
const OPEN_HEADER_BYTES: usize = 8;
/// The largest opening: every side's link accepts it, whatever its frame cap.
pub const OPEN_BYTES_MAX: usize = OPEN_HEADER_BYTES + OPEN_TOPICS_MAX * 32;
/// How long a failing session waits for its abort frame to be written.
const ABORT_FLUSH: Duration = Duration::from_millis(200);
/// Batches a session has at the verifier stage before it stops reading.
const CHECKS_AHEAD: usize = 8;

const TAG_OPEN: u8 = 0;
const TAG_ACCEPT: u8 = 1;
const TAG_BUSY: u8 = 2;
const TAG_DISJOINT: u8 = 3;

/// What a finished session did.
#[derive(Debug, Clone)]
pub struct SyncSummary {
    /// The other side.
    pub peer: PeerId,
    /// Whether this side opened the session.
    pub initiator: bool,
    /// The topics reconciled (empty: all).
    pub topics: Vec<Topic>,
    /// This side's counters.
    pub stats: SessionStats,
    /// Wall time from opening to the last frame.
    pub elapsed: Duration,
    /// The requests this session answered (an outbound session someone asked for).
    pub requests: Vec<crate::RequestId>,
}

/// Why a session ended without finishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncFailure {
    /// The stream failed (connection lost, idle, oversized frame).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The session failed (protocol violation, invalid event, local read error).
    #[error(transparent)]
    Session(#[from] SyncError),
    /// The opening exchange was malformed.
    #[error("malformed opening: {0}")]
    Opening(&'static str),
    /// The peer already runs as many sessions as it serves. Fix: nothing; it retries later.
    #[error("the peer is busy")]
    Busy,
    /// The two sides follow no topic in common.
    #[error("no topic in common")]
    Disjoint,
    /// Received events could not be stored.
    #[error("storing received events failed: {0}")]
    Store(String),
    /// The verifier stage stopped before it answered.
    #[error(transparent)]
    Verifier(#[from] VerifierStopped),
    /// Fewer than the minimum bytes moved, either way, within one progress window: a stalled
    /// or dripping peer. Not scored (a link can be that slow), but the session's slot is
    /// freed. Fix: nothing; a later round tries again.
    #[error("the session moved {bytes} B in {secs} s, under its minimum")]
    TooSlow {
        /// Bytes moved in the window.
        bytes: u64,
        /// The window.
        secs: u64,
    },
}

/// What a session must move, in whole frames either way, per window of time, to go on. Bulk
/// transfers over slow links pass (50 KB/s moves 3 MB a minute); a peer that stalls or drips
/// bytes to hold a session slot is cut off within a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub window: Duration,
    pub bytes_min: u64,
}

/// Score a peer loses for an invalid event or a frame over the cap: one such offence and a
/// second of any kind block it.
pub const PENALTY_INVALID: i32 = 100;
/// Score a peer loses for a malformed message or a protocol violation.
pub const PENALTY_PROTOCOL: i32 = 50;
/// Score a peer loses for a session that runs past the turn limit (lying fingerprints look
/// like this, but so may a pathological pair of sets).
pub const PENALTY_TOO_MANY_ROUNDS: i32 = 20;

/// How much a failure counts against the peer that caused it (0: not its fault).
impl SyncFailure {
    /// Score to deduct from the peer.
    pub fn penalty(&self) -> i32 {
        match self {
            SyncFailure::Link(LinkError::FrameTooLarge { .. }) => PENALTY_INVALID,
            SyncFailure::Link(_) => 0,
            SyncFailure::Session(e) => match e {
                SyncError::InvalidEvent(_) => PENALTY_INVALID,
                SyncError::Wire(_)
                | SyncError::Protocol(_)
                | SyncError::Unrequested(_)
                | SyncError::OutputBudget { .. } => PENALTY_PROTOCOL,
                SyncError::TooManyRounds { .. } => PENALTY_TOO_MANY_ROUNDS,
                _ => 0,
            },
            SyncFailure::Opening(_) => PENALTY_PROTOCOL,
            SyncFailure::Busy
            | SyncFailure::Disjoint
            | SyncFailure::Store(_)
            | SyncFailure::Verifier(_)
            | SyncFailure::TooSlow { .. } => 0,
        }
    }
}

/// Which side of a session this is.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// Opens the session with this salt, over `scope`: its topics (none: the node's own) and
    /// time window (authors are not asked over the network).
    Initiator { salt: u64, scope: Scope },
    /// Answers; `busy` refuses politely.
    Responder { busy: bool },
}

/// The topics both sides follow: empty means all, so either side's list wins over "all".
pub fn common_topics(ours: &[Topic], theirs: &[Topic]) -> Option<Vec<Topic>> {
    match (ours.is_empty(), theirs.is_empty()) {
        (true, _) => Some(theirs.to_vec()),
        (_, true) => Some(ours.to_vec()),
        _ => {
            let both: Vec<Topic> = ours
                .iter()
                .filter(|t| theirs.contains(t))
                .copied()
                .collect();
            (!both.is_empty()).then_some(both)
        }
    }
}

/// An opening or its answer.
#[derive(Debug, PartialEq, Eq)]
struct Opening {
    tag: u8,
    /// The sender's frame cap: the session uses the smaller of the two.
    frame_bytes: usize,
    topics: Vec<Topic>,
}

fn encode_opening(tag: u8, frame_bytes: usize, topics: &[Topic]) -> Vec<u8> {
    // The decoder refuses more than OPEN_TOPICS_MAX: a config naming more is refused when the
    // network starts (`NetConfig::validate`), and an answer holds a subset of the question.
    debug_assert!(topics.len() <= OPEN_TOPICS_MAX);
    let mut out = Vec::with_capacity(OPEN_HEADER_BYTES + topics.len() * 32);
    out.push(OPEN_VERSION);
    out.push(tag);
    // Validated at start to at most FRAME_BYTES_MAX, which fits.
    out.extend_from_slice(&(frame_bytes as u32).to_le_bytes());
    out.extend_from_slice(&(topics.len() as u16).to_le_bytes());
    for t in topics {
        out.extend_from_slice(&t.0);
    }
    out
}

fn decode_opening(frame: &[u8]) -> Result<Opening, SyncFailure> {
    let [version, tag, f0, f1, f2, f3, a, b, rest @ ..] = frame else {
        return Err(SyncFailure::Opening("shorter than its header"));
    };
    if *version != OPEN_VERSION {
        return Err(SyncFailure::Opening("unknown version"));
    }
    let frame_bytes = u32::from_le_bytes([*f0, *f1, *f2, *f3]);
    let frame_bytes = xaeroflux_sync::check_frame_bytes(frame_bytes.into())
        .map_err(|_| SyncFailure::Opening("frame cap out of range"))?;
    let n = u16::from_le_bytes([*a, *b]) as usize;
    if n > OPEN_TOPICS_MAX {
        return Err(SyncFailure::Opening("too many topics"));
    }
    if rest.len() != n * 32 {
        return Err(SyncFailure::Opening("topic list length"));
    }
    let topics = rest
        .chunks_exact(32)
        .map(|c| Topic(c.try_into().expect("chunks of 32")))
        .collect();
    Ok(Opening {
        tag: *tag,
        frame_bytes,
        topics,
    })
}

/// This side's limits for a session whose peer stated `theirs` as its frame cap: frames no
/// larger than either side accepts, so an honest peer is never over a cap.
fn negotiated(mut cfg: SyncConfig, theirs: usize) -> SyncConfig {
    let frame = cfg.frame_bytes_max.min(theirs);
    cfg.frame_bytes_max = frame;
    cfg.events_message_bytes = cfg
        .events_message_bytes
        .min(frame.saturating_sub(64))
        .max(1);
    cfg
}

/// What every session of a node shares.
#[derive(Clone)]
pub(crate) struct Setup {
    pub store: Store,
    pub verifier: Verifier,
    pub cfg: SyncConfig,
    /// The topics this node follows (empty: all).
    pub topics: Vec<Topic>,
    pub progress: Progress,
}

/// Runs one session to its end.
pub(crate) async fn run(
    setup: Setup,
    peer: PeerId,
    mut link: SyncLink,
    start: Start,
) -> Result<SyncSummary, SyncFailure> {
    let Setup {
        store,
        verifier,
        cfg,
        topics,
        progress,
    } = setup;
    let started = Instant::now();
    let ours = cfg.frame_bytes_max;
    let initiator = matches!(start, Start::Initiator { .. });
    let (scope, mut session) = match start {
        Start::Initiator { salt, scope: asked } => {
            let topics = if asked.topics.is_empty() {
                topics
            } else {
                asked.topics
            };
            send(&link, encode_opening(TAG_OPEN, ours, &topics)).await?;
            let answer = decode_opening(&recv(&mut link).await?)?;
            match answer.tag {
                TAG_ACCEPT => {}
                TAG_BUSY => return Err(SyncFailure::Busy),
                TAG_DISJOINT => return Err(SyncFailure::Disjoint),
                _ => return Err(SyncFailure::Opening("unknown answer")),
            }
            let agreed = answer.topics;
            // The answer must not widen what this side asked for.
            if common_topics(&topics, &agreed).as_deref() != Some(&agreed[..]) {
                return Err(SyncFailure::Opening("answer outside the topics asked for"));
            }
            let scope = Scope {
                topics: agreed,
                since: asked.since,
                until: asked.until,
                authors: Vec::new(),
            };
            let cfg = negotiated(cfg, answer.frame_bytes);
            (scope.clone(), Session::initiator(cfg, scope, salt))
        }
        Start::Responder { busy } => {
            let question = decode_opening(&recv(&mut link).await?)?;
            if question.tag != TAG_OPEN {
                return Err(SyncFailure::Opening("expected an opening"));
            }
            if busy {
                send(&link, encode_opening(TAG_BUSY, ours, &[])).await?;
                return Err(SyncFailure::Busy);
            }
            let Some(agreed) = common_topics(&topics, &question.topics) else {
                send(&link, encode_opening(TAG_DISJOINT, ours, &[])).await?;
                return Err(SyncFailure::Disjoint);
            };
            send(&link, encode_opening(TAG_ACCEPT, ours, &agreed)).await?;
            let cfg = negotiated(cfg, question.frame_bytes);
            let scope = Scope {
                topics: agreed,
                ..Scope::all()
            };
            (scope, Session::responder(cfg))
        }
    };
    let mut whole = store.clone();
    let mut scoped;
    let view: &mut StorePeer<'_> = if scope.is_window() {
        &mut whole
    } else {
        let keys = gather(&store, &scope).await?;
        scoped = ScopedStore::with_keys(&store, keys);
        &mut scoped
    };
    if initiator {
        with_view(view, |src| session.start(src))?;
    }
    let ends = Ends {
        store: &store,
        verifier: &verifier,
        scope: &scope,
        progress,
    };
    let outcome = drive(&mut session, view, &mut link, ends).await;
    if let Err(e) = &outcome {
        if e.penalty() > 0 {
            // Tell the peer why, and let that frame go out before the engine cuts the
            // connection (bounded: a peer that stopped reading gets nothing).
            let _ = link.tx.try_send(session.abort_frame(1, &e.to_string()));
            link.close(ABORT_FLUSH).await;
        }
    }
    outcome?;
    Ok(SyncSummary {
        peer,
        initiator,
        topics: scope.topics,
        stats: session.stats(),
        elapsed: started.elapsed(),
        requests: Vec::new(),
    })
}

/// The keys a topic-scoped session reconciles, gathered on a short-lived thread of their own
/// (O(events in scope) reads): the network thread awaits them and serves other peers meanwhile.
async fn gather(store: &Store, scope: &Scope) -> Result<MemSet, SyncFailure> {
    let (tx, rx) = futures::channel::oneshot::channel();
    let (store, scope) = (store.clone(), scope.clone());
    std::thread::Builder::new()
        .name("xf-gather".into())
        .spawn(move || {
            let _ = tx.send(ScopedStore::gather(&store, &scope));
        })
        .map_err(|e| SyncFailure::Store(format!("starting the scope's gather: {e}")))?;
    match rx.await {
        Ok(keys) => Ok(keys.map_err(|e| SyncError::View(ViewError::new(e)))?),
        Err(_) => Err(SyncFailure::Store("the scope's gather stopped".into())),
    }
}

/// Where a session's received events go, and what it must keep to.
struct Ends<'a> {
    store: &'a Store,
    verifier: &'a Verifier,
    scope: &'a Scope,
    progress: Progress,
}

/// Moves frames until both sides are finished, reading and writing at the same time so two
/// sides streaming events at each other never wait on each other's full windows. Received
/// batches are verified by the stage and written by the writer while the session goes on;
/// with `CHECKS_AHEAD` batches at the stage or a full [`WriteWindow`] at the writer it stops
/// reading (back-pressure on the peer), never its thread.
async fn drive(
    session: &mut Session,
    view: &StorePeer<'_>,
    link: &mut SyncLink,
    ends: Ends<'_>,
) -> Result<(), SyncFailure> {
    let Ends {
        store,
        verifier,
        scope,
        progress,
    } = ends;
    let mut checks: VecDeque<(Claim, Verification)> = VecDeque::new();
    let mut writes: WriteWindow<Ticket> = WriteWindow::new();
    let mut out: Option<Vec<u8>> = None;
    let mut window_end = tokio::time::Instant::now() + progress.window;
    let mut moved: u64 = 0;
    let mut scope_checked = session.role() == xaeroflux_sync::Role::Initiator;
    let result = loop {
        if out.is_none() {
            out = with_view(view, |src| session.poll_frame(src))?;
        }
        if out.is_none() && session.is_finished() {
            break Ok(());
        }
        // What comes next may be this side's `Done`, which tells the peer its events are
        // here: a `Done` waits for every write before it.
        let hold = out.is_some() && session.is_finished() && !writes.is_empty();
        // After the peer's `Done` nothing more comes (it may close the stream while this side
        // still settles what arrived).
        let reading = !session.peer_done() && checks.len() < CHECKS_AHEAD && !writes.is_full();
        tokio::select! {
            frame = link.rx.recv(), if reading => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(LinkError::Io("the peer closed the stream".into()).into()),
                };
                moved += frame.len() as u64;
                let now = crate::now_ms();
                let unverified = match with_view(view, |src| session.handle_frame(src, &frame, now)) {
                    Ok(received) => received.unverified,
                    Err(e) => break Err(e),
                };
                // The responder learns the session's scope from its first message: once. It
                // must cover the agreed topics, and may narrow the time window (the
                // session's bounds are the window's); authors are never asked here.
                if !scope_checked {
                    if let Some(hello) = session.scope() {
                        if hello.topics != scope.topics || !hello.authors.is_empty() {
                            break Err(SyncFailure::Opening(
                                "session scope differs from the agreed one",
                            ));
                        }
                        scope_checked = true;
                    }
                }
                if let Some(batch) = unverified {
                    let (items, claim) = batch.into_parts();
                    let check = verifier.verify(items, &claim.limits());
                    checks.push_back((claim, check));
                }
            }
            checked = front(&mut checks, |c| &mut c.1), if !checks.is_empty() => {
                let (claim, _) = checks.pop_front().expect("guarded by the branch condition");
                let events = match checked.map_err(SyncFailure::from).and_then(|results| {
                    session.settle(claim, results).map_err(SyncFailure::from)
                }) {
                    Ok(events) => events,
                    Err(e) => break Err(e),
                };
                if !events.is_empty() {
                    // Relaxed: a peer can send them again; the engine flushes when the
                    // session ends. Awaited, never waited on.
                    match store.submit(events, Durability::Relaxed) {
                        Ok(ticket) => writes.push(ticket),
                        Err(e) => break Err(SyncFailure::Store(e.to_string())),
                    }
                }
            }
            written = oldest(&mut writes), if !writes.is_empty() => {
                writes.pop_oldest();
                if let Err(e) = written {
                    break Err(SyncFailure::Store(e.to_string()));
                }
            }
            permit = link.tx.reserve(), if out.is_some() && !hold => match permit {
                Ok(permit) => {
                    let frame = out.take().expect("guarded by the branch condition");
                    moved += frame.len() as u64;
                    permit.send(frame)
                }
                Err(_) => break Err(LinkError::Io("the stream's writer stopped".into()).into()),
            },
            _ = tokio::time::sleep_until(window_end) => {
                if moved < progress.bytes_min {
                    break Err(SyncFailure::TooSlow {
                        bytes: moved,
                        secs: progress.window.as_secs(),
                    });
                }
                moved = 0;
                window_end = tokio::time::Instant::now() + progress.window;
            }
        }
    };
    // Whatever ended the session, what it received and verified is stored before it reports
    // (batches still at the stage are dropped: a later session fetches them again).
    let flushed = writes.flush_async().await;
    result?;
    flushed.map_err(|e: WriteError| SyncFailure::Store(e.to_string()))
}

/// The answer of the oldest write in `window` (it stays there; the caller pops it). Never
/// ready on an empty window.
fn oldest(window: &mut WriteWindow<Ticket>) -> impl Future<Output = Result<(), WriteError>> + '_ {
    poll_fn(move |cx| match window.oldest_mut() {
        Some(ticket) => Pin::new(ticket).poll(cx).map(|r| r.map(drop)),
        None => Poll::Pending,
    })
}

/// The answer of the oldest entry of `queue`, the future `pick` finds in it (the entry stays
/// queued; the caller pops it). Never ready on an empty queue.
pub(crate) fn front<'q, T, F>(
    queue: &'q mut VecDeque<T>,
    pick: fn(&mut T) -> &mut F,
) -> impl Future<Output = F::Output> + 'q
where
    F: Future + Unpin + 'q,
{
    poll_fn(move |cx| match queue.front_mut() {
        Some(entry) => Pin::new(pick(entry)).poll(cx),
        None => Poll::Pending,
    })
}

/// What a session reads: the whole store, or the part of it a scope narrowed to topics.
type StorePeer<'s> = dyn Peer<ReadError = ReadError, WriteError = WriteError> + 's;

/// Calls `f` with a fresh read snapshot of the peer's view.
fn with_view<T>(
    view: &StorePeer<'_>,
    f: impl FnOnce(&dyn SyncSource<Error = ReadError>) -> Result<T, SyncError>,
) -> Result<T, SyncFailure> {
    snapshot(view, f)
        .map_err(|e| SyncError::View(ViewError::new(e)))?
        .map_err(SyncFailure::Session)
}

async fn send(link: &SyncLink, frame: Vec<u8>) -> Result<(), SyncFailure> {
    link.tx
        .send(frame)
        .await
        .map_err(|_| LinkError::Io("the stream's writer stopped".into()).into())
}

async fn recv(link: &mut SyncLink) -> Result<Vec<u8>, SyncFailure> {
    match link.rx.recv().await {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(e)) => Err(e.into()),
        None => Err(LinkError::Io("the peer closed the stream".into()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_topics_prefers_the_narrower_side() {
        let (a, b, c) = (Topic([1; 32]), Topic([2; 32]), Topic([3; 32]));
        assert_eq!(common_topics(&[], &[]), Some(vec![]));
        assert_eq!(common_topics(&[], &[a]), Some(vec![a]));
        assert_eq!(common_topics(&[a, b], &[]), Some(vec![a, b]));
        assert_eq!(common_topics(&[a, b], &[b, c]), Some(vec![b]));
        assert_eq!(common_topics(&[a], &[c]), None);
    }

    #[test]
    fn openings_round_trip_and_reject_malformed_input() {
        let t = [Topic([7; 32]), Topic([9; 32])];
        let bytes = encode_opening(TAG_ACCEPT, 4096, &t);
        let opening = decode_opening(&bytes).unwrap();
        assert_eq!(
            opening,
            Opening {
                tag: TAG_ACCEPT,
                frame_bytes: 4096,
                topics: t.to_vec()
            }
        );
        for cut in 0..bytes.len() {
            assert!(decode_opening(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(decode_opening(&wrong).is_err());
        let mut many = vec![OPEN_VERSION, TAG_OPEN];
        many.extend_from_slice(&65_536u32.to_le_bytes());
        many.extend_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            decode_opening(&many),
            Err(SyncFailure::Opening("too many topics"))
        ));
        for cap in [0u32, 1023, (16 << 20) + 1, u32::MAX] {
            let mut odd = vec![OPEN_VERSION, TAG_OPEN];
            odd.extend_from_slice(&cap.to_le_bytes());
            odd.extend_from_slice(&0u16.to_le_bytes());
            assert!(
                matches!(
                    decode_opening(&odd),
                    Err(SyncFailure::Opening("frame cap out of range"))
                ),
                "cap {cap}"
            );
        }
        let all = vec![Topic([1; 32]); OPEN_TOPICS_MAX];
        assert_eq!(encode_opening(TAG_OPEN, 1024, &all).len(), OPEN_BYTES_MAX);
    }

    #[test]
    fn each_side_sends_frames_no_larger_than_either_accepts() {
        let small = SyncConfig::with_frame_bytes(1024);
        let big = SyncConfig::default();
        for (ours, theirs) in [(small, big.frame_bytes_max), (big, small.frame_bytes_max)] {
            let cfg = negotiated(ours, theirs);
            assert_eq!(cfg.frame_bytes_max, 1024);
            assert!(cfg.events_message_bytes < 1024);
        }
        assert_eq!(negotiated(big, big.frame_bytes_max), big);
    }
}
