//! Errors of the sync protocol. Every error ends the session; events verified and handed to
//! the caller before it stay stored, nothing else changes.

use xaeroflux_event::{EventId, VerifyError};

use crate::view::ViewError;

/// Why bytes from the peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message ends early. Fix: the peer is broken or the transport cut the frame.
    #[error("truncated {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A field holds an impossible value. Fix: the peer speaks another protocol or is hostile.
    #[error("malformed {what}")]
    Malformed {
        /// The field being read.
        what: &'static str,
    },
    /// A count exceeds this session's limit. Fix: raise the limit in `SyncConfig` if the peer
    /// is trusted; otherwise the peer is hostile.
    #[error("{what}: {got} items, limit {max}")]
    TooMany {
        /// The list being read.
        what: &'static str,
        /// Items announced.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Range bounds do not ascend. Fix: the peer is broken or hostile.
    #[error("range bounds out of order")]
    OutOfOrder,
    /// A frame is larger than the agreed cap. Fix: agree on `frame_bytes_max`.
    #[error("frame of {got} bytes exceeds the cap of {max}")]
    FrameTooLarge {
        /// Frame size.
        got: usize,
        /// The cap.
        max: usize,
    },
    /// A message grew past `message_bytes_max`. Fix: the peer is hostile, or raise the cap.
    #[error("message exceeds {max} bytes")]
    MessageTooLarge {
        /// The cap.
        max: usize,
    },
    /// Unknown protocol version. Fix: upgrade the older side.
    #[error("protocol version {got} is not supported (this build speaks 1)")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// Bytes follow the end of a message. Fix: the peer is broken or hostile.
    #[error("{bytes} bytes after the end of the message")]
    Trailing {
        /// How many.
        bytes: usize,
    },
}

/// Why a sync session ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer sent bytes that are not a valid message.
    #[error("bad message from peer: {0}")]
    Wire(#[from] WireError),
    /// A valid message breaks the protocol (a pool without ranges, a reply to nothing, ...).
    /// Fix: the peer is broken or hostile; disconnect it.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The peer sent an event that fails verification with the verdict invalid (forged or
    /// broken; events this build does not understand or declines for now do not end the
    /// session). Events verified before it are kept. Fix: the peer is hostile or its store is
    /// damaged; disconnect it.
    #[error("peer sent an invalid event: {0}")]
    InvalidEvent(#[from] VerifyError),
    /// The peer sent more events this build cannot check (a newer header version) than a
    /// session exchanges ids (`ids_max`). Not proof of hostility: a much newer peer may send
    /// many. Fix: upgrade this node.
    #[error("more than {max} events this build cannot check")]
    TooManyNotUnderstood {
        /// The limit.
        max: usize,
    },
    /// The peer sent an event nobody asked for or outside the session's scope.
    #[error("peer sent unrequested event {0}")]
    Unrequested(EventId),
    /// Reconciliation went on for more turns than allowed. Fix: the peer never converges
    /// (lying fingerprints) or `rounds_max` is too low.
    #[error("reconciliation did not finish within {max} turns")]
    TooManyRounds {
        /// The limit.
        max: u32,
    },
    /// The session would hold more ids than `ids_max`. Fix: sync in narrower scopes.
    #[error("more than {max} ids to exchange in one session")]
    TooManyIds {
        /// The limit.
        max: usize,
    },
    /// Answering the peer would produce more reconciliation output than this side allows in
    /// one turn (`turn_bytes_max`) or one session (`recon_bytes_max`). Honest sessions stay
    /// well inside the defaults, which are sized from them. Fix: the peer is hostile (it asks
    /// for output far beyond what its messages carry); disconnect it. Raise the budgets only
    /// for trusted peers with differences beyond the benchmark's.
    #[error("{what} would exceed its budget of {max} bytes")]
    OutputBudget {
        /// Which budget.
        what: &'static str,
        /// The budget, in bytes.
        max: u64,
    },
    /// Reading the local set failed.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The peer ended the session.
    #[error("peer aborted (code {code}): {reason}")]
    Aborted {
        /// Its code.
        code: u8,
        /// Its reason.
        reason: String,
    },
    /// A frame arrived after the session finished. Fix: the driver is feeding a closed session.
    #[error("session already finished")]
    Finished,
    /// The driver settled results that do not belong to a batch this session handed out (a
    /// count or an id differs). Not the peer's fault. Fix: settle each batch with the results
    /// of its own items, in their order.
    #[error("settled verification results that do not match the batch")]
    Unmatched,
}
