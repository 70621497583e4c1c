//! Set reconciliation and event transfer between two Xaeroflux peers, as sans-IO state
//! machines: each side takes a frame and returns the frames to send, the ids it has that the
//! other lacks and the ids it needs. No threads, no clock, no sockets: time and randomness come
//! in as arguments, and the caller moves the bytes. `docs/protocol.md` documents every message.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod local;
mod memory;
mod negentropy;
mod recon;
mod riblt;
mod scope;
mod session;
mod view;
mod window;
mod wire;

pub use error::{SyncError, WireError};
pub use local::{
    run_local, snapshot, LinkOptions, LinkReport, LocalError, Peer, PeerError, PendingWrite,
};
pub use memory::MemStore;
pub use negentropy::{
    NegentropyError, NegentropyResponder, NegentropySession, NEGENTROPY_FRAME_BYTES_MIN,
    NEGENTROPY_ID_LIST_IDS_MAX, NEGENTROPY_MESSAGE_BYTES_MAX, NEGENTROPY_RANGES_MAX,
    NEGENTROPY_VERSION,
};
pub use recon::{Found, KeyRange};
pub use riblt::{
    encode_range, item_hash, symbols_for, DecodeState, Decoder, Encoder, IndexIter, RibltError,
    Symbol, SYMBOL_BYTES_MAX,
};
pub use scope::Scope;
pub use session::{Claim, Received, Role, Session, SessionStats, Unverified};
pub use view::{MemSet, SetView, SyncSource, ViewError};
pub use window::{WriteWindow, WRITES_AHEAD};
pub use wire::{FP_BYTES, PROTOCOL_VERSION};

/// Limits and tuning of a session. Both sides may use different values; every limit bounds
/// what this side accepts or holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Largest frame sent or accepted, header included (at least 1 KiB).
    pub frame_bytes_max: usize,
    /// Largest message (the frames of one turn together) accepted.
    pub message_bytes_max: usize,
    /// Event bytes packed into one events message.
    pub events_message_bytes: usize,
    /// Coded symbols one pool may reach (bounds decoder memory: about 48 bytes each).
    pub symbols_max: usize,
    /// Pools open at once, each way.
    pub pools_max: usize,
    /// Ids exchanged in one session (each way together).
    pub ids_max: usize,
    /// Ranges in one message.
    pub ranges_max: usize,
    /// Authors or topics in a scope.
    pub scope_values_max: usize,
    /// A mismatching range with at most this many items of ours is sent as a plain id list.
    pub ids_items_max: u64,
    /// A mismatching range where the peer holds at least twice our items is sent as an id
    /// list when we hold at most this many.
    pub ids_items_lopsided_max: u64,
    /// Items scanned to encode symbols, per estimated difference `d`, scaled by `√(d/100)`:
    /// mismatching ranges are split until the pooled ranges fit this budget.
    pub scan_items_per_difference: u64,
    /// Items per range a split aims for while the difference is unknown or dense.
    pub wide_items: u64,
    /// Items per range a split aims for once the difference estimate holds (fewer items per
    /// range: less scanning for symbols, more fingerprints).
    pub leaf_items: u64,
    /// Items that may always be scanned for symbols, whatever the estimate.
    pub scan_items_min: u64,
    /// Most sub-ranges one range is split into in one turn.
    pub branch_max: usize,
    /// Reconciliation turns (both sides) before the session gives up.
    pub rounds_max: u32,
    /// Reconciliation bytes this side produces in one turn (fingerprints, id lists, coded
    /// symbols, requests; headers included). What is chosen here (the first batch of a pool's
    /// symbols, an id-list answer) is cut to fit, and symbol requests are answered in part;
    /// a message that asks for more than fits all the same (thousands of ranges to split)
    /// ends the session with `OutputBudget`. Default 16 MiB: the largest turn of the
    /// benchmark's honest sessions (1M vs 1M events, 100,000 differences, all on one side) is
    /// 11.4 MB, a pool of `symbols_max` symbols with its lists; and half of a default peer's
    /// `message_bytes_max`, so a turn never grows past what the peer accepts.
    pub turn_bytes_max: usize,
    /// Reconciliation bytes this side produces over the whole session. Default 128 MiB: about
    /// four times the heaviest honest session measured (34 MB, the same benchmark case), so a
    /// peer that keeps a session going cannot make this side produce without end.
    pub recon_bytes_max: u64,
}

/// Default frame cap: 64 KiB.
pub const FRAME_BYTES_DEFAULT: usize = 64 * 1024;
/// Smallest frame cap a node may be configured with: a frame must hold a message header and
/// some progress.
pub const FRAME_BYTES_MIN: usize = 1024;
/// Largest frame cap a node may be configured with (a frame is buffered whole, and must fit
/// the smallest message cap).
pub const FRAME_BYTES_MAX: usize = 16 << 20;

/// Checks a configured frame cap, for command lines and app settings.
pub fn check_frame_bytes(frame_bytes: u64) -> Result<usize, String> {
    let range = FRAME_BYTES_MIN as u64..=FRAME_BYTES_MAX as u64;
    if range.contains(&frame_bytes) {
        Ok(frame_bytes as usize)
    } else {
        Err(format!(
            "a frame cap must be between {FRAME_BYTES_MIN} and {FRAME_BYTES_MAX} bytes, not {frame_bytes}"
        ))
    }
}

/// Reads a frame cap in bytes from text (a command-line flag) and checks it.
pub fn parse_frame_bytes(text: &str) -> Result<usize, String> {
    let n: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    check_frame_bytes(n)
}

/// Default reconciliation output of one turn: 16 MiB (see [`SyncConfig::turn_bytes_max`]).
pub const TURN_BYTES_DEFAULT: usize = 16 << 20;
/// Default reconciliation output of one session: 128 MiB (see
/// [`SyncConfig::recon_bytes_max`]).
pub const RECON_BYTES_DEFAULT: u64 = 128 << 20;
/// Smallest turn budget: room for a split of a range and a few symbols.
const TURN_BYTES_MIN: usize = 16 * 1024;

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            frame_bytes_max: FRAME_BYTES_DEFAULT,
            message_bytes_max: 32 << 20,
            events_message_bytes: FRAME_BYTES_DEFAULT - 64,
            symbols_max: 1 << 18,
            pools_max: 64,
            ids_max: 1 << 21,
            ranges_max: 1 << 20,
            scope_values_max: 1024,
            ids_items_max: 2,
            ids_items_lopsided_max: 256,
            scan_items_per_difference: 250,
            wide_items: 1000,
            leaf_items: 256,
            scan_items_min: 8192,
            branch_max: 64,
            rounds_max: 64,
            turn_bytes_max: TURN_BYTES_DEFAULT,
            recon_bytes_max: RECON_BYTES_DEFAULT,
        }
    }
}

impl SyncConfig {
    /// The default configuration with another frame cap.
    pub fn with_frame_bytes(frame_bytes_max: usize) -> SyncConfig {
        SyncConfig {
            frame_bytes_max,
            events_message_bytes: frame_bytes_max.saturating_sub(64),
            ..SyncConfig::default()
        }
    }

    /// Clamps values that would make no progress.
    pub(crate) fn sanitized(mut self) -> SyncConfig {
        self.frame_bytes_max = self.frame_bytes_max.max(1024);
        self.message_bytes_max = self.message_bytes_max.max(self.frame_bytes_max);
        self.events_message_bytes = self.events_message_bytes.max(1);
        self.symbols_max = self.symbols_max.max(64);
        self.pools_max = self.pools_max.max(1);
        self.branch_max = self.branch_max.max(2);
        self.rounds_max = self.rounds_max.max(2);
        self.scan_items_per_difference = self.scan_items_per_difference.max(1);
        self.leaf_items = self.leaf_items.max(1);
        self.wide_items = self.wide_items.max(1);
        self.turn_bytes_max = self.turn_bytes_max.max(TURN_BYTES_MIN);
        self.recon_bytes_max = self.recon_bytes_max.max(self.turn_bytes_max as u64);
        self
    }
}
