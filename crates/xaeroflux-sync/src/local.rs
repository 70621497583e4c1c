//! Two sessions joined by an in-memory link: what `xf sync --local`, the tests and the
//! benchmark drive. The network layer moves the same frames over streams.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xaeroflux_event::{verify_batch, VerifiedEvent, Verifier, VerifierStopped};

use crate::error::SyncError;
use crate::memory::MemStore;
use crate::recon::Found;
use crate::session::{Session, SessionStats};
use crate::view::{SyncSource, ViewError};
use crate::{Scope, SyncConfig};

/// One end of a local sync: a snapshot to read from and somewhere to store what arrives.
pub trait Peer {
    /// Calls `f` with a fresh read snapshot.
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError>;
    /// Starts storing verified events that arrived. A write still in flight comes back as a
    /// handle; the link waits on it later, so verification and writing overlap.
    fn store(&mut self, events: Vec<VerifiedEvent>) -> Result<Option<PendingWrite>, PeerError>;
}

/// A write still in flight: calling it waits for the write and says how it ended.
pub type PendingWrite = Box<dyn FnOnce() -> Result<(), PeerError> + Send>;

/// Writes a link lets run ahead of the session before it waits for the oldest.
const WRITES_AHEAD: usize = 8;

/// A peer failed to store events.
#[derive(Debug, thiserror::Error)]
#[error("storing received events failed: {0}")]
pub struct PeerError(pub String);

/// Why a local sync ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The initiator's session failed.
    #[error("initiator: {0}")]
    Initiator(SyncError),
    /// The responder's session failed.
    #[error("responder: {0}")]
    Responder(SyncError),
    /// A peer could not store events.
    #[error(transparent)]
    Store(#[from] PeerError),
    /// A peer could not be read.
    #[error("reading a peer failed: {0}")]
    View(#[from] ViewError),
    /// The verifier stage stopped before it answered.
    #[error(transparent)]
    Verifier(#[from] VerifierStopped),
    /// Neither side had anything to send, yet the session is not finished.
    #[error("the session stalled")]
    Stalled,
    /// The link was cut on purpose after this many frames.
    #[error("link cut after {frames} frames")]
    Cut {
        /// Frames delivered before the cut.
        frames: u64,
    },
}

/// What a finished local sync did, from both sides.
#[derive(Debug, Clone)]
pub struct LinkReport {
    /// The initiator's counters.
    pub initiator: SessionStats,
    /// The responder's counters.
    pub responder: SessionStats,
    /// Time spent inside the initiator's session calls (reading its store included, storing
    /// received events excluded).
    pub initiator_busy: Duration,
    /// Time spent inside the responder's session calls, likewise.
    pub responder_busy: Duration,
    /// What the initiator found: ids it had that the responder lacked, ids it needed.
    pub initiator_found: Found,
    /// What the responder found.
    pub responder_found: Found,
}

/// How the link behaves.
#[derive(Debug, Clone, Default)]
pub struct LinkOptions {
    /// Frames each side may have in flight before the other side reads them.
    pub window_frames: usize,
    /// Cut the link after this many delivered frames (tests of resumption).
    pub cut_after_frames: Option<u64>,
    /// Where received events are verified: a verifier stage (its threads, its key cache), or
    /// with `None` one batch at a time on the calling thread.
    pub verifier: Option<Verifier>,
}

/// Runs one session between `a` (initiator) and `b` until both sides are finished.
pub fn run_local(
    a: &mut dyn Peer,
    b: &mut dyn Peer,
    scope: Scope,
    cfg: SyncConfig,
    salt: u64,
    now_ms: u64,
    link: LinkOptions,
) -> Result<LinkReport, LocalError> {
    let mut ends = [
        End {
            session: Session::initiator(cfg, scope, salt),
            initiator: true,
            busy: Duration::ZERO,
        },
        End {
            session: Session::responder(cfg),
            initiator: false,
            busy: Duration::ZERO,
        },
    ];
    let started = Instant::now();
    a.with_source(&mut |src| ends[0].session.start(src).map_err(LocalError::Initiator))?;
    ends[0].busy += started.elapsed();
    let mut link = Link {
        window: link.window_frames.max(1),
        cut_after: link.cut_after_frames,
        delivered: 0,
        now_ms,
        verifier: link.verifier,
        frames: VecDeque::new(),
        writes: VecDeque::new(),
    };
    let mut run = || -> Result<(), LocalError> {
        while !(ends[0].session.is_finished() && ends[1].session.is_finished()) {
            let [ea, eb] = &mut ends;
            let mut progress = link.pump(&*a, b, ea, eb)?;
            progress |= link.pump(&*b, a, eb, ea)?;
            if !progress {
                return Err(LocalError::Stalled);
            }
        }
        Ok(())
    };
    let outcome = run();
    // Whatever ended the session, every write it started finishes before this returns: a
    // caller that resumes later sees all that was stored.
    let flushed = link.wait_writes(0);
    outcome?;
    flushed?;
    Ok(LinkReport {
        initiator: ends[0].session.stats(),
        responder: ends[1].session.stats(),
        initiator_busy: ends[0].busy,
        responder_busy: ends[1].busy,
        initiator_found: ends[0].session.found().clone(),
        responder_found: ends[1].session.found().clone(),
    })
}

struct End {
    session: Session,
    initiator: bool,
    busy: Duration,
}

impl End {
    fn fail(&self, e: SyncError) -> LocalError {
        if self.initiator {
            LocalError::Initiator(e)
        } else {
            LocalError::Responder(e)
        }
    }
}

struct Link {
    window: usize,
    cut_after: Option<u64>,
    delivered: u64,
    now_ms: u64,
    verifier: Option<Verifier>,
    frames: VecDeque<Vec<u8>>,
    writes: VecDeque<PendingWrite>,
}

impl Link {
    /// Moves up to a window of frames from `from` to `to`; true if any moved.
    fn pump(
        &mut self,
        from_peer: &dyn Peer,
        to_peer: &mut dyn Peer,
        from: &mut End,
        to: &mut End,
    ) -> Result<bool, LocalError> {
        let frames = &mut self.frames;
        let window = self.window;
        let started = Instant::now();
        from_peer.with_source(&mut |src| {
            while frames.len() < window {
                match from.session.poll_frame(src).map_err(|e| from.fail(e))? {
                    Some(f) => frames.push_back(f),
                    None => break,
                }
            }
            Ok(())
        })?;
        from.busy += started.elapsed();
        let moved = !self.frames.is_empty();
        while let Some(frame) = self.frames.pop_front() {
            if self.cut_after.is_some_and(|c| self.delivered >= c) {
                return Err(LocalError::Cut {
                    frames: self.delivered,
                });
            }
            self.delivered += 1;
            let mut unverified = None;
            let now_ms = self.now_ms;
            let started = Instant::now();
            to_peer.with_source(&mut |src| {
                unverified = to
                    .session
                    .handle_frame(src, &frame, now_ms)
                    .map_err(|e| to.fail(e))?
                    .unverified;
                Ok(())
            })?;
            let events = match unverified {
                Some(batch) => {
                    let (items, claim) = batch.into_parts();
                    let results = match &self.verifier {
                        Some(stage) => stage
                            .verify_here(items, &claim.limits())
                            .map_err(LocalError::Verifier)?,
                        None => verify_batch(items, &claim.limits()),
                    };
                    to.session.settle(claim, results).map_err(|e| to.fail(e))?
                }
                None => Vec::new(),
            };
            to.busy += started.elapsed();
            if !events.is_empty() {
                if let Some(write) = to_peer.store(events)? {
                    self.writes.push_back(write);
                    self.wait_writes(WRITES_AHEAD)?;
                }
            }
        }
        Ok(moved)
    }
}

impl Link {
    /// Waits for the oldest writes until at most `left` are in flight; the first failure wins.
    fn wait_writes(&mut self, left: usize) -> Result<(), LocalError> {
        let mut first_error = None;
        while self.writes.len() > left {
            if let Some(write) = self.writes.pop_front() {
                if let Err(e) = write() {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }
}

impl Peer for MemStore {
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource) -> Result<(), LocalError>,
    ) -> Result<(), LocalError> {
        f(self)
    }

    fn store(&mut self, events: Vec<VerifiedEvent>) -> Result<Option<PendingWrite>, PeerError> {
        for e in &events {
            self.insert(e);
        }
        Ok(None)
    }
}
