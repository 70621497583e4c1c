//! Private conversations for Xaeroflux: end-to-end encrypted direct messages and groups whose
//! messages travel as opaque envelope events.
//!
//! Sans-IO: the [`Engine`] takes envelopes and key bundles in and returns what was read and the
//! envelopes to publish. It has no clock, no store and no network; time comes in as an argument
//! and state goes out as bytes for the caller to keep in its (encrypted) store.
//!
//! `docs/privacy.md`, "Private conversations", gives the design, what each party learns and
//! which security properties hold after which step.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod membership;

/// An author: a 32-byte ed25519 public key, as in event headers.
pub type Author = [u8; 32];
/// A conversation's id: random for groups, derived from the two members for direct messages.
pub type ConvoId = [u8; 32];
/// A membership operation's id: a BLAKE3 hash of its signed body.
pub type OpId = [u8; 32];
pub mod engine;
pub mod wire;

pub use engine::{
    direct_id, Change, ConvoError, ConvoInfo, Engine, Message, Outcome, Rejection, Waiting,
};
