//! Payloads of the built-in kinds, archived with rkyv and read in place.
//!
//! rkyv is built with `unaligned`, so archives have alignment 1 and [`decode_payload`] works on
//! any byte slice, such as an LMDB value (LMDB guarantees only 2-byte alignment).

use rkyv::rancor;
use rkyv::{Archive, Deserialize, Serialize};

use crate::Kind;

/// Largest payload accepted, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// The validator context used when reading archived payloads.
pub type Validator<'a> = rkyv::api::low::LowValidator<'a, rancor::Error>;

/// Why a payload cannot be read as the expected archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The bytes are not a valid archive of the kind's payload type.
    #[error("payload is not a valid {expected} archive: {reason}")]
    Malformed {
        /// The payload type expected.
        expected: &'static str,
        /// What the validator found.
        reason: String,
    },
}

/// A user's profile.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Free text about the user.
    pub about: String,
    /// Picture address or content hash.
    pub picture: String,
}

/// The text of a post or a reply.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct Note {
    /// The text.
    pub text: String,
}

/// A reaction: usually one emoji or `+`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct Reaction {
    /// The reaction content.
    pub content: String,
}

/// The authors someone follows.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct FollowList {
    /// Followed authors' public keys.
    pub follows: Vec<[u8; 32]>,
}

/// A deletion request for the referenced event.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct Deletion {
    /// Why the author deleted it.
    pub reason: String,
}

/// An author's public keys for private conversations, published as a [`crate::Kind::KEY_BUNDLE`]
/// event signed by the author (which binds the keys to the author). Senders use the newest.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct KeyBundle {
    /// Bundle format version: [`KEY_BUNDLE_VERSION`].
    pub version: u8,
    /// The Olm account's Curve25519 identity key.
    pub identity: [u8; 32],
    /// The Olm account's Curve25519 fallback key: the prekey a sender starts a session with.
    pub prekey: [u8; 32],
    /// The X25519 key that pairwise envelopes are sealed to with HPKE.
    pub seal: [u8; 32],
}

/// The [`KeyBundle`] version this build writes and reads.
pub const KEY_BUNDLE_VERSION: u8 = 1;

/// The envelope payload version this build writes and reads: the first payload byte.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes of an envelope payload before its ciphertext: the version byte and a 32-byte header
/// (an HPKE encapsulated key, or random bytes shaped like one).
pub const ENVELOPE_HEADER_BYTES: usize = 33;
/// Smallest envelope payload: the header and one AEAD tag.
pub const ENVELOPE_BYTES_MIN: usize = ENVELOPE_HEADER_BYTES + 16;

/// Archives a payload value.
pub fn encode_payload<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value)
        .expect("serializing into a growable buffer does not fail")
        .into_vec()
}

/// Reads a payload in place as the archived `T`, validating it first.
pub fn decode_payload<T>(bytes: &[u8]) -> Result<&T, PayloadError>
where
    T: rkyv::Portable + for<'a> rkyv::bytecheck::CheckBytes<Validator<'a>>,
{
    rkyv::api::low::access::<T, rancor::Error>(bytes).map_err(|e| PayloadError::Malformed {
        expected: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("payload"),
        reason: e.to_string(),
    })
}

/// Checks that a built-in kind's payload is a valid archive of its type. Application kinds
/// carry opaque bytes and always pass.
pub(crate) fn check_builtin(kind: Kind, payload: &[u8]) -> Result<(), PayloadError> {
    match kind {
        Kind::PROFILE => decode_payload::<ArchivedProfile>(payload).map(drop),
        Kind::POST | Kind::REPLY => decode_payload::<ArchivedNote>(payload).map(drop),
        Kind::REACTION => decode_payload::<ArchivedReaction>(payload).map(drop),
        Kind::FOLLOW_LIST => decode_payload::<ArchivedFollowList>(payload).map(drop),
        Kind::DELETION => decode_payload::<ArchivedDeletion>(payload).map(drop),
        _ => Ok(()),
    }
}

/// Checks the payload rule of a kind added after the first six; `Err` names the broken rule.
pub(crate) fn check_later_builtin(kind: Kind, payload: &[u8]) -> Result<(), String> {
    match kind {
        Kind::ENVELOPE => {
            if payload.len() < ENVELOPE_BYTES_MIN {
                return Err(format!(
                    "an envelope payload has at least {ENVELOPE_BYTES_MIN} bytes, got {}",
                    payload.len()
                ));
            }
            if payload[0] != ENVELOPE_VERSION {
                return Err(format!(
                    "envelope version {} is not {ENVELOPE_VERSION}",
                    payload[0]
                ));
            }
            Ok(())
        }
        Kind::KEY_BUNDLE => {
            let bundle = decode_payload::<ArchivedKeyBundle>(payload).map_err(|e| e.to_string())?;
            if bundle.version != KEY_BUNDLE_VERSION {
                return Err(format!(
                    "key bundle version {} is not {KEY_BUNDLE_VERSION}",
                    bundle.version
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_read_in_place_at_any_alignment() {
        let note = Note {
            text: "hello, world".into(),
        };
        let bytes = encode_payload(&note);
        // Shift by one byte to prove no alignment is needed.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let archived = decode_payload::<ArchivedNote>(&shifted[1..]).unwrap();
        assert_eq!(archived.text.as_str(), "hello, world");

        let follows = FollowList {
            follows: vec![[7; 32], [9; 32]],
        };
        let bytes = encode_payload(&follows);
        let archived = decode_payload::<ArchivedFollowList>(&bytes).unwrap();
        assert_eq!(archived.follows.len(), 2);
        assert_eq!(archived.follows[1], [9; 32]);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let err = decode_payload::<ArchivedNote>(&[0xff; 3]).unwrap_err();
        assert!(matches!(err, PayloadError::Malformed { .. }), "{err}");
        assert!(check_builtin(Kind::POST, b"\xff\xff\xff\xff\xff").is_err());
        assert!(check_builtin(Kind(70_000), b"anything").is_ok());
    }
}
