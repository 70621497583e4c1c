//! Set reconciliation and event transfer between two Xaeroflux peers, as sans-IO state
//! machines: each side takes a frame and returns the frames to send, the ids it has that the
//! other lacks and the ids it needs. No threads, no clock, no sockets: time and randomness come
//! in as arguments, and the caller moves the bytes. `docs/protocol.md` documents every message.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod view;

pub use view::{MemSet, SetView, ViewError};
