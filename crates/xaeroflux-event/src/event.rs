//! Encoded events: `id ‖ header ‖ signature ‖ payload`, viewed in place.

use crate::header::{Header, HEADER_BYTES};
use crate::keys::{EventId, PublicKey, Topic};
use crate::payload::{
    decode_payload, ArchivedDeletion, ArchivedNote, ArchivedReaction, PayloadError,
};
use crate::Kind;

/// Size of an event id.
pub const ID_BYTES: usize = 32;
/// Size of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Size of an encoded event with an empty payload.
pub const ENCODED_BYTES_MIN: usize = ID_BYTES + HEADER_BYTES + SIGNATURE_BYTES;

const PAYLOAD_AT: usize = ID_BYTES + HEADER_BYTES + SIGNATURE_BYTES;
/// Size of a body (`header ‖ signature ‖ payload`) with an empty payload.
pub const BODY_BYTES_MIN: usize = HEADER_BYTES + SIGNATURE_BYTES;

/// Why bytes are not an encoded event. Structural only: signatures and ids are checked by
/// [`crate::verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than id, header and signature. Fix: the event was cut; fetch it again.
    #[error("event truncated: {got} bytes, at least {min} needed")]
    Truncated {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        min: usize,
    },
    /// The bytes after the signature do not match the header's payload length.
    #[error("payload length mismatch: header says {expected} bytes, got {got}")]
    PayloadLength {
        /// Length in the header.
        expected: u32,
        /// Bytes present.
        got: usize,
    },
}

/// A view of an event: its id (32 bytes, held by value) and its body (`header ‖ signature ‖
/// payload`) borrowed in place. Making one copies 32 bytes and allocates nothing.
///
/// Made from the portable encoding (`id ‖ body`, [`EventRef::decode`]), from a stored body
/// whose id is known ([`EventRef::with_id`]), or from a body alone, hashing the header for the
/// id ([`EventRef::from_body`]). Decoding checks structure only; a view of untrusted bytes is
/// not verified.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    id: EventId,
    body: &'a [u8],
}

impl<'a> EventRef<'a> {
    /// Views the portable encoding `id ‖ header ‖ signature ‖ payload` after checking lengths.
    pub fn decode(bytes: &'a [u8]) -> Result<EventRef<'a>, DecodeError> {
        if bytes.len() < ENCODED_BYTES_MIN {
            return Err(DecodeError::Truncated {
                got: bytes.len(),
                min: ENCODED_BYTES_MIN,
            });
        }
        let id: &[u8; ID_BYTES] = bytes[..ID_BYTES].try_into().expect("length checked");
        EventRef::with_id(EventId(*id), &bytes[ID_BYTES..])
    }

    /// Views a body (`header ‖ signature ‖ payload`) whose id the caller already knows (the key
    /// it was found under).
    pub fn with_id(id: EventId, body: &'a [u8]) -> Result<EventRef<'a>, DecodeError> {
        if body.len() < BODY_BYTES_MIN {
            return Err(DecodeError::Truncated {
                got: body.len() + ID_BYTES,
                min: ENCODED_BYTES_MIN,
            });
        }
        let view = EventRef { id, body };
        let expected = view.header().payload_len();
        let got = body.len() - (PAYLOAD_AT - ID_BYTES);
        if u64::from(expected) != got as u64 {
            return Err(DecodeError::PayloadLength { expected, got });
        }
        Ok(view)
    }

    /// Views a body, computing the id from its header (one BLAKE3 over 148 bytes).
    pub fn from_body(body: &'a [u8]) -> Result<EventRef<'a>, DecodeError> {
        let header = Header::view(body).ok_or(DecodeError::Truncated {
            got: body.len() + ID_BYTES,
            min: ENCODED_BYTES_MIN,
        })?;
        EventRef::with_id(crate::event_id(header), body)
    }

    /// The body: `header ‖ signature ‖ payload`, as stored.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
    /// The event id.
    pub fn id(&self) -> &EventId {
        &self.id
    }
    /// The header, viewed in place.
    pub fn header(&self) -> &'a Header {
        bytemuck::from_bytes(&self.body[..HEADER_BYTES])
    }
    /// The signature bytes.
    pub fn signature(&self) -> &'a [u8; SIGNATURE_BYTES] {
        self.body[HEADER_BYTES..HEADER_BYTES + SIGNATURE_BYTES]
            .try_into()
            .expect("length checked")
    }
    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.body[HEADER_BYTES + SIGNATURE_BYTES..]
    }
    /// Event kind.
    pub fn kind(&self) -> Kind {
        self.header().kind()
    }
    /// Milliseconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.header().created_at()
    }
    /// The author.
    pub fn author(&self) -> &'a PublicKey {
        self.header().author()
    }
    /// The topic (zero for public events).
    pub fn topic(&self) -> &'a Topic {
        self.header().topic()
    }
    /// The referenced event (zero if none).
    pub fn reference(&self) -> &'a EventId {
        self.header().reference()
    }
    /// The payload read in place as the archived form of `T` (validated, not deserialized).
    pub fn payload_as<T>(&self) -> Result<&'a T, PayloadError>
    where
        T: rkyv::Portable + for<'b> rkyv::bytecheck::CheckBytes<crate::payload::Validator<'b>>,
    {
        decode_payload::<T>(self.payload())
    }
    /// The text a person wrote: a post's or reply's text, a reaction's content, a deletion's
    /// reason. `None` for kinds that carry none (profiles, follow lists, kinds this build does
    /// not read); `Some(Err)` if the payload does not decode.
    pub fn text(&self) -> Option<Result<&'a str, PayloadError>> {
        Some(match self.kind() {
            Kind::POST | Kind::REPLY => self.payload_as::<ArchivedNote>().map(|n| n.text.as_str()),
            Kind::REACTION => self
                .payload_as::<ArchivedReaction>()
                .map(|r| r.content.as_str()),
            Kind::DELETION => self
                .payload_as::<ArchivedDeletion>()
                .map(|d| d.reason.as_str()),
            _ => return None,
        })
    }
    /// The portable encoding `id ‖ body`, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ID_BYTES + self.body.len());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(self.body);
        out
    }
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("id", self.id())
            .field("header", self.header())
            .finish_non_exhaustive()
    }
}

/// An event whose id, signature, bounds and payload have been checked.
///
/// Only [`crate::verify`], [`crate::verify_batch`] and [`crate::Identity::sign`] make one, so
/// holding one is proof of verification.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedEvent {
    bytes: Vec<u8>,
}

impl VerifiedEvent {
    pub(crate) fn new_unchecked(bytes: Vec<u8>) -> VerifiedEvent {
        debug_assert!(EventRef::decode(&bytes).is_ok());
        VerifiedEvent { bytes }
    }

    /// A borrowed view.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef::decode(&self.bytes).expect("verified events decode")
    }
    /// The event id.
    pub fn id(&self) -> &EventId {
        EventId::from_ref(
            self.bytes[..ID_BYTES]
                .try_into()
                .expect("verified events hold an id"),
        )
    }
    /// The body: `header ‖ signature ‖ payload`, the encoding without its id.
    pub fn body(&self) -> &[u8] {
        &self.bytes[ID_BYTES..]
    }
    /// The encoding: `id ‖ header ‖ signature ‖ payload`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The encoding, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::fmt::Debug for VerifiedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VerifiedEvent")
            .field(&self.as_ref())
            .finish()
    }
}

/// Lays out `id ‖ header ‖ signature ‖ payload`.
pub(crate) fn encode(
    id: &EventId,
    header: &Header,
    signature: &[u8; 64],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODED_BYTES_MIN + payload.len());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(signature);
    out.extend_from_slice(payload);
    out
}
