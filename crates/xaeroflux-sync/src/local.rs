//! Two sessions joined by an in-memory link: what `xf sync --local`, the tests and the
//! benchmark drive. The network layer moves the same frames over streams.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::time::{Duration, Instant};

use xaeroflux_event::{verify_batch, VerifiedEvent, Verifier, VerifierStopped};

use crate::error::SyncError;
use crate::memory::MemStore;
use crate::recon::Found;
use crate::session::{Session, SessionStats};
use crate::view::{SyncSource, ViewError};
use crate::window::WriteWindow;
use crate::{Scope, SyncConfig};

/// One end of a local sync: a snapshot to read from and somewhere to store what arrives.
pub trait Peer {
    /// Why a snapshot could not be opened or read ([`Infallible`] in memory).
    type ReadError: StdError + Send + Sync + 'static;
    /// Why received events could not be stored ([`Infallible`] in memory).
    type WriteError: StdError + Send + Sync + 'static;
    /// Opens a fresh read snapshot and calls `f` with it, once (see [`snapshot`] for a
    /// closure that returns a value).
    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource<Error = Self::ReadError>),
    ) -> Result<(), Self::ReadError>;
    /// Starts storing verified events that arrived. A write still in flight comes back as a
    /// handle; the link waits on it later, so verification and writing overlap.
    #[allow(clippy::type_complexity)]
    fn store(
        &mut self,
        events: Vec<VerifiedEvent>,
    ) -> Result<Option<PendingWrite<Self::WriteError>>, Self::WriteError>;
}

/// Calls `f` with a fresh read snapshot of `peer` and returns what `f` returns.
///
/// # Panics
///
/// If the peer's [`Peer::with_source`] returns `Ok` without calling `f` (a broken `Peer`).
pub fn snapshot<P: Peer + ?Sized, T>(
    peer: &P,
    f: impl FnOnce(&dyn SyncSource<Error = P::ReadError>) -> T,
) -> Result<T, P::ReadError> {
    let mut f = Some(f);
    let mut out = None;
    peer.with_source(&mut |src| {
        if let Some(f) = f.take() {
            out = Some(f(src));
        }
    })?;
    Ok(out.expect("Peer::with_source calls its closure when it succeeds"))
}

/// A write still in flight: calling it waits for the write and says how it ended.
pub type PendingWrite<E = PeerError> = Box<dyn FnOnce() -> Result<(), E> + Send>;

/// A peer failed to store events: its own error ([`Peer::WriteError`]), boxed so one link
/// carries both peers' writes. The original error is the [`source`](StdError::source) and
/// comes back typed through [`PeerError::downcast_ref`] (for the LMDB store: its
/// `WriteError`).
#[derive(Debug, thiserror::Error)]
#[error("storing received events failed: {source}")]
pub struct PeerError {
    /// The peer's error. Fix: see it; for the LMDB store, a full disk or a stopped writer.
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl PeerError {
    /// Wraps a peer's error (a `PeerError` is kept as it is, not wrapped twice).
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> PeerError {
        let boxed: Box<dyn StdError + Send + Sync + 'static> = Box::new(error);
        match boxed.downcast::<PeerError>() {
            Ok(peer) => *peer,
            Err(source) => PeerError { source },
        }
    }

    /// The peer's error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }

    /// The peer's error, boxed.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.source
    }
}

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
pub fn run_local<A: Peer + ?Sized, B: Peer + ?Sized>(
    a: &mut A,
    b: &mut B,
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
    snapshot(a, |src| ends[0].session.start(src))
        .map_err(ViewError::new)?
        .map_err(LocalError::Initiator)?;
    ends[0].busy += started.elapsed();
    let mut link = Link {
        window: link.window_frames.max(1),
        cut_after: link.cut_after_frames,
        delivered: 0,
        now_ms,
        verifier: link.verifier,
        frames: VecDeque::new(),
        writes: WriteWindow::new(),
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
    let flushed = link.writes.flush(|write| write());
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
    writes: WriteWindow<PendingWrite>,
}

impl Link {
    /// Moves up to a window of frames from `from` to `to`; true if any moved.
    fn pump<F: Peer + ?Sized, T: Peer + ?Sized>(
        &mut self,
        from_peer: &F,
        to_peer: &mut T,
        from: &mut End,
        to: &mut End,
    ) -> Result<bool, LocalError> {
        let frames = &mut self.frames;
        let window = self.window;
        let started = Instant::now();
        snapshot(from_peer, |src| {
            while frames.len() < window {
                match from.session.poll_frame(src).map_err(|e| from.fail(e))? {
                    Some(f) => frames.push_back(f),
                    None => break,
                }
            }
            Ok::<_, LocalError>(())
        })
        .map_err(ViewError::new)??;
        from.busy += started.elapsed();
        let moved = !self.frames.is_empty();
        while let Some(frame) = self.frames.pop_front() {
            if self.cut_after.is_some_and(|c| self.delivered >= c) {
                return Err(LocalError::Cut {
                    frames: self.delivered,
                });
            }
            self.delivered += 1;
            let now_ms = self.now_ms;
            let started = Instant::now();
            let unverified = snapshot(to_peer, |src| to.session.handle_frame(src, &frame, now_ms))
                .map_err(ViewError::new)?
                .map_err(|e| to.fail(e))?
                .unverified;
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
                if let Some(write) = to_peer.store(events).map_err(PeerError::new)? {
                    self.writes
                        .push(Box::new(move || write().map_err(PeerError::new)));
                    self.writes.wait_over_bound(|write| write())?;
                }
            }
        }
        Ok(moved)
    }
}

impl Peer for MemStore {
    type ReadError = Infallible;
    type WriteError = Infallible;

    fn with_source(
        &self,
        f: &mut dyn FnMut(&dyn SyncSource<Error = Infallible>),
    ) -> Result<(), Infallible> {
        f(self);
        Ok(())
    }

    fn store(
        &mut self,
        events: Vec<VerifiedEvent>,
    ) -> Result<Option<PendingWrite<Infallible>>, Infallible> {
        for e in &events {
            self.insert(e);
        }
        Ok(None)
    }
}
