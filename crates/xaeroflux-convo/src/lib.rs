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

/// `Debug` helpers: ids and keys shortened, secrets and private text left out.
pub(crate) mod show {
    use std::fmt;

    /// Hex of the first bytes of an id or key.
    pub(crate) struct Hex<'a>(pub &'a [u8; 32]);

    impl fmt::Debug for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for b in self.0.iter().take(8) {
                write!(f, "{b:02x}")?;
            }
            f.write_str("…")
        }
    }

    /// A secret, present but not shown.
    pub(crate) struct Redacted;

    impl fmt::Debug for Redacted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("<redacted>")
        }
    }

    /// Private text or bytes, shown by their length only.
    pub(crate) struct Len(pub usize);

    impl fmt::Debug for Len {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "<{} bytes>", self.0)
        }
    }
}

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
