//! The fixed event header, viewable in place from any byte slice.

use bytemuck::{Pod, Zeroable};

use crate::keys::{PublicKey, Topic};
use crate::{EventId, Kind};

/// The header format version this build writes and accepts.
pub const FORMAT_VERSION: u16 = 1;

/// Size of [`Header`] in bytes.
pub const HEADER_BYTES: usize = 148;

/// The canonical event header: 148 bytes, little-endian, alignment 1.
///
/// Every field is a byte array, so the struct has no padding and can be cast from any
/// `&[u8]` of the right length (an LMDB value, a network frame) without copying.
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Header {
    /// Format version, u16 LE. Must be [`FORMAT_VERSION`].
    pub version: [u8; 2],
    /// Reserved flags, u16 LE. Must be zero in version 1.
    pub flags: [u8; 2],
    /// Event kind, u32 LE.
    pub kind: [u8; 4],
    /// Creation time, u64 LE, milliseconds since the Unix epoch.
    pub created_at: [u8; 8],
    /// The author's ed25519 public key.
    pub author: [u8; 32],
    /// Group or feed namespace; zero for public events.
    pub topic: [u8; 32],
    /// The event replied to, reacted to or deleted; zero if none.
    pub reference: [u8; 32],
    /// Payload length, u32 LE.
    pub payload_len: [u8; 4],
    /// BLAKE3 hash of the payload.
    pub payload_hash: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_BYTES);
const _: () = assert!(std::mem::align_of::<Header>() == 1);

impl Header {
    /// Builds a version-1 header.
    pub fn new(
        kind: Kind,
        created_at: u64,
        author: PublicKey,
        topic: Topic,
        reference: EventId,
        payload: &[u8],
    ) -> Header {
        let payload_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        Header {
            version: FORMAT_VERSION.to_le_bytes(),
            flags: [0; 2],
            kind: kind.0.to_le_bytes(),
            created_at: created_at.to_le_bytes(),
            author: author.0,
            topic: topic.0,
            reference: reference.0,
            payload_len: payload_len.to_le_bytes(),
            payload_hash: *blake3::hash(payload).as_bytes(),
        }
    }

    /// Views the first [`HEADER_BYTES`] of `bytes` in place; `None` if too short.
    pub fn view(bytes: &[u8]) -> Option<&Header> {
        bytes.get(..HEADER_BYTES).map(bytemuck::from_bytes)
    }

    /// The header's canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// Format version.
    pub fn version(&self) -> u16 {
        u16::from_le_bytes(self.version)
    }
    /// Reserved flags.
    pub fn flags(&self) -> u16 {
        u16::from_le_bytes(self.flags)
    }
    /// Event kind.
    pub fn kind(&self) -> Kind {
        Kind(u32::from_le_bytes(self.kind))
    }
    /// Milliseconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        u64::from_le_bytes(self.created_at)
    }
    /// The author's key.
    pub fn author(&self) -> &PublicKey {
        PublicKey::from_ref(&self.author)
    }
    /// The topic (zero for public).
    pub fn topic(&self) -> &Topic {
        Topic::from_ref(&self.topic)
    }
    /// The referenced event (zero for none).
    pub fn reference(&self) -> &EventId {
        EventId::from_ref(&self.reference)
    }
    /// Declared payload length.
    pub fn payload_len(&self) -> u32 {
        u32::from_le_bytes(self.payload_len)
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("version", &self.version())
            .field("kind", &self.kind())
            .field("created_at", &self.created_at())
            .field("author", self.author())
            .field("topic", self.topic())
            .field("reference", self.reference())
            .field("payload_len", &self.payload_len())
            .finish()
    }
}
