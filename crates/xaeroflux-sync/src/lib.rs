//! Set reconciliation and event transfer between two Xaeroflux peers, as sans-IO state
//! machines: each side takes a frame and returns the frames to send, the ids it has that the
//! other lacks and the ids it needs. No threads, no clock, no sockets: time and randomness come
//! in as arguments, and the caller moves the bytes. `docs/protocol.md` documents every message.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod negentropy;
mod view;

pub use negentropy::{
    NegentropyError, NegentropyResponder, NegentropySession, NEGENTROPY_FRAME_BYTES_MIN,
    NEGENTROPY_ID_LIST_IDS_MAX, NEGENTROPY_MESSAGE_BYTES_MAX, NEGENTROPY_RANGES_MAX,
    NEGENTROPY_VERSION,
};
pub use view::{MemSet, SetView, ViewError};
