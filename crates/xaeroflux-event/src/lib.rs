//! The Xaeroflux event format.
//!
//! An event is a fixed 148-byte little-endian [`Header`], a 64-byte ed25519 signature over the
//! event id, and a payload of at most 64 KiB. The id is a domain-separated BLAKE3 hash of the
//! header; the header commits to the payload through its BLAKE3 hash, so headers can be verified
//! and reconciled without payloads. `docs/format.md` gives every byte.
//!
//! This crate is pure: no I/O, no async, no unsafe code. Bytes from anywhere become a
//! [`VerifiedEvent`] only through [`verify`] or [`verify_batch`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod event;
mod header;
mod keys;
mod kind;
mod payload;
mod set;
mod sign;
mod stage;
mod verify;

pub use event::{
    DecodeError, EventRef, VerifiedEvent, BODY_BYTES_MIN, ENCODED_BYTES_MIN, ID_BYTES,
    SIGNATURE_BYTES,
};
pub use header::{Header, FORMAT_VERSION, HEADER_BYTES};
pub use keys::{EventId, HexError, PublicKey, Topic};
pub use kind::{Kind, ENVELOPE_TIME_QUANTUM_MS};
pub use payload::{
    decode_payload, encode_payload, ArchivedDeletion, ArchivedFollowList, ArchivedKeyBundle,
    ArchivedNote, ArchivedProfile, ArchivedReaction, Deletion, FollowList, KeyBundle, Note,
    PayloadError, Profile, Reaction, ENVELOPE_BYTES_MIN, ENVELOPE_HEADER_BYTES, ENVELOPE_VERSION,
    KEY_BUNDLE_VERSION, PAYLOAD_BYTES_MAX,
};
pub use set::{Accum, SetBoundary, SetKey, SET_KEY_BYTES, SUM_BYTES};
pub use sign::{Draft, Identity, IdentityError};
pub use stage::{block_on, Verification, Verified, Verifier, VerifierStopped, IDLE_EXIT};
pub use verify::{
    verify, verify_batch, verify_batch_cached, verify_batch_parallel, verify_batch_parallel_cached,
    KeyCache, Limits, Verdict, VerifyError, FUTURE_SKEW_MS_DEFAULT,
};

/// Domain-separation context for event ids (BLAKE3 `derive_key` mode).
pub const ID_CONTEXT: &str = "xaeroflux event v1";

/// Computes the id of a header: `BLAKE3 derive_key("xaeroflux event v1", header bytes)`.
pub fn event_id(header: &Header) -> EventId {
    let mut hasher = blake3::Hasher::new_derive_key(ID_CONTEXT);
    hasher.update(bytemuck::bytes_of(header));
    EventId(*hasher.finalize().as_bytes())
}
