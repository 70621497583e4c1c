//! Commands a caller can follow: each gets a [`RequestId`] that the reports it causes carry,
//! and a sync asked for with [`NetHandle::sync_with`](crate::NetHandle::sync_with) reports to
//! its caller alone, so that nobody has to read (and take away) the app's
//! [`NetEvent`](crate::NetEvent)s to learn how it ended.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::runner::SyncSummary;
use crate::transport::{Multiaddr, PeerId};

/// A caller's name for one network command ([`NetHandle::dial`](crate::NetHandle::dial),
/// [`NetHandle::sync_now`](crate::NetHandle::sync_now),
/// [`NetHandle::sync_with`](crate::NetHandle::sync_with)), echoed by the reports the command
/// causes. Unique within one [`NetHandle`](crate::NetHandle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the network tells the caller of `sync_with` about its request.
#[derive(Debug, Clone)]
#[non_exhaustive]
// A request gets a few reports at most: boxing the summary would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum SyncProgress {
    /// The address answered: a session with this peer opens (or waits for the one running).
    Connected(PeerId),
    /// A session failed through no fault of the peer (it was busy, the stream was cut): the
    /// network opens another while the peer stays connected. What was stored stays stored.
    Retrying(String),
    /// The request ended.
    Done(Result<SyncSummary, SyncWithError>),
}

/// Why a sync asked for with `sync_with` did not finish. What either side stored before the
/// failure stays stored; asking again moves only what is still missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncWithError {
    /// The scope names authors. A network session is narrowed by topics and time only (the
    /// peer answers from its topic index). Fix: leave authors out, or sync with a store on
    /// this machine, where any scope works.
    #[error("a network sync is narrowed by topics and time, not by authors")]
    AuthorsScope,
    /// The scope's window is empty. Fix: `since` must not be after `until`.
    #[error("the scope's window is empty: since is after until")]
    EmptyWindow,
    /// The address could not be dialed. Fix: check the address and that the peer runs.
    #[error("dialing {addr} failed: {error}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        error: String,
    },
    /// The session failed and is not retried (a protocol violation, no topic in common).
    #[error("the sync with {peer} failed: {error}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: String,
    },
    /// The peer disconnected before a session finished.
    #[error("{peer} disconnected before the sync finished")]
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// The node was opened without a network. Fix: give its builder a network
    /// configuration, or sync with a store on this machine.
    #[error("this node did not join a network")]
    NoNetwork,
    /// The network was paused (or is): nothing is dialed while paused. Fix: resume it first.
    #[error("the network is paused")]
    Paused,
    /// The network thread has stopped.
    #[error("the network thread has stopped")]
    Stopped,
    /// The network's command queue is full. Fix: retry later.
    #[error("the network's command queue is full")]
    Busy,
    /// No outcome within the time the caller allowed; the network may still finish it.
    #[error("the sync did not finish within {:.1} s{}", waited.as_secs_f64(),
        last.as_ref().map(|l| format!(" (last attempt: {l})")).unwrap_or_default())]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
        /// Why the last attempt failed, if one did.
        last: Option<String>,
    },
}

/// A sync under way, asked for with `sync_with`: its id, and the reports meant for its
/// caller. Dropping it does not cancel the sync.
#[derive(Debug)]
pub struct SyncRequest {
    id: RequestId,
    progress: Receiver<SyncProgress>,
    last_failure: Option<String>,
    ended: bool,
}

impl SyncRequest {
    pub(crate) fn new(id: RequestId, progress: Receiver<SyncProgress>) -> SyncRequest {
        SyncRequest {
            id,
            progress,
            last_failure: None,
            ended: false,
        }
    }

    /// The request's id, as the [`NetEvent`](crate::NetEvent)s it causes carry it.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Why the last attempt failed, if one did and the request goes on.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// The next report, waiting up to `limit`; `None` if none came in time (or the request
    /// has already ended). A network that stops reports `Done(Err(Stopped))`.
    pub fn next(&mut self, limit: Duration) -> Option<SyncProgress> {
        if self.ended {
            return None;
        }
        let report = match self.progress.recv_timeout(limit) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => SyncProgress::Done(Err(SyncWithError::Stopped)),
        };
        match &report {
            SyncProgress::Retrying(why) => self.last_failure = Some(why.clone()),
            SyncProgress::Done(_) => self.ended = true,
            SyncProgress::Connected(_) => {}
        }
        Some(report)
    }

    /// Waits up to `limit` for the outcome.
    pub fn wait(mut self, limit: Duration) -> Result<SyncSummary, SyncWithError> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(SyncProgress::Done(outcome)) => return outcome,
                Some(_) => {}
                None => {
                    return Err(SyncWithError::Timeout {
                        waited: limit,
                        last: self.last_failure,
                    })
                }
            }
        }
    }
}
