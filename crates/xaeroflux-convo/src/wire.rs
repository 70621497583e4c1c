//! What envelopes carry, and how they are sealed.
//!
//! Two layers, both from reviewed constructions:
//!
//! - **Pairwise** envelopes (membership operations, sender keys, invitations) are an Olm
//!   message (vodozemac's Double Ratchet) from one author to another, sealed again with HPKE
//!   (RFC 9180, base mode, X25519 / HKDF-SHA256 / ChaCha20-Poly1305, the `hpke` crate) to the
//!   recipient's published seal key, so that the Olm headers (which name the sender's identity
//!   key) are not visible outside. Their tag is random.
//! - **Conversation** envelopes (messages) are a Megolm message (vodozemac's sender-key
//!   ratchet, signed by the sender's session key) sealed again with XChaCha20-Poly1305 under a
//!   key derived with BLAKE3 from the conversation's tag secret and the day. Their tag is
//!   derived from the same secret and day, so members recognise them and nobody else can.
//!
//! Every plaintext is padded to a power of two (at least 256 bytes) before sealing, so the
//! length of an envelope says only its size class.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rkyv::{Archive, Deserialize, Serialize};
use xaeroflux_event::{
    ENVELOPE_BYTES_MIN, ENVELOPE_HEADER_BYTES, ENVELOPE_TIME_QUANTUM_MS, ENVELOPE_VERSION,
    PAYLOAD_BYTES_MAX,
};
use zeroize::Zeroizing;

use crate::show::{Hex, Len, Redacted};
use crate::{Author, ConvoId, OpId};

/// Smallest padded plaintext.
pub const PAD_MIN: usize = 256;
/// Largest padded plaintext: what fits in an event payload after the envelope header and the
/// AEAD tag.
pub const PAD_MAX: usize = PAYLOAD_BYTES_MAX - ENVELOPE_BYTES_MIN;
/// Largest plaintext an envelope carries (the padding keeps a 4-byte length).
pub const PLAINTEXT_MAX: usize = PAD_MAX - 4;

const HPKE_INFO: &[u8] = b"xaeroflux pairwise envelope v1";
const TAG_CONTEXT: &str = "xaeroflux conversation tag v1";
const KEY_CONTEXT: &str = "xaeroflux conversation envelope key v1";

/// Why bytes could not be opened or read. Each is reported as a typed outcome by the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The envelope is shorter than its header and tag, or has another version.
    #[error("not an envelope of version {ENVELOPE_VERSION}")]
    NotAnEnvelope,
    /// Authenticated decryption failed: the ciphertext, its tag or its time was changed, or
    /// it was not sealed for this key.
    #[error("the envelope does not open under this key")]
    DoesNotOpen,
    /// The padding is inconsistent (opened, but not written by this format).
    #[error("bad padding")]
    BadPadding,
    /// The plaintext is not a valid archive of the expected message.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The plaintext is too large for one envelope.
    #[error("{got} bytes do not fit in one envelope (at most {PLAINTEXT_MAX})")]
    TooLarge {
        /// The plaintext's size.
        got: usize,
    },
}

/// The day number (UTC) of an envelope time: the tag epoch.
pub fn day_of(created_at: u64) -> u64 {
    created_at / (24 * ENVELOPE_TIME_QUANTUM_MS)
}

/// The envelope time for a wall-clock time: rounded down to the hour.
pub fn coarse(now_ms: u64) -> u64 {
    now_ms - now_ms % ENVELOPE_TIME_QUANTUM_MS
}

/// The tag of a conversation envelope sealed on `day` under `secret`.
pub fn conversation_tag(secret: &[u8; 32], day: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(TAG_CONTEXT);
    h.update(secret);
    h.update(&day.to_be_bytes());
    *h.finalize().as_bytes()
}

fn conversation_key(secret: &[u8; 32], day: u64) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(KEY_CONTEXT);
    h.update(secret);
    h.update(&day.to_be_bytes());
    Zeroizing::new(*h.finalize().as_bytes())
}

/// The associated data of both layers: the tag and the envelope time, so a sealed payload
/// cannot be moved under another tag or day.
fn aad(tag: &[u8; 32], created_at: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(tag);
    out[32..].copy_from_slice(&created_at.to_be_bytes());
    out
}

/// Pads `plain` to its size class: a 4-byte length, the bytes, zeros.
pub fn pad(plain: &[u8]) -> Result<Zeroizing<Vec<u8>>, WireError> {
    if plain.len() > PLAINTEXT_MAX {
        return Err(WireError::TooLarge { got: plain.len() });
    }
    let need = plain.len() + 4;
    let size = need.next_power_of_two().clamp(PAD_MIN, PAD_MAX);
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    out.extend_from_slice(plain);
    out.resize(size, 0);
    Ok(out)
}

/// Removes the padding of [`pad`].
pub fn unpad(padded: &[u8]) -> Result<&[u8], WireError> {
    let len = padded
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(WireError::BadPadding)? as usize;
    let body = padded.get(4..4 + len).ok_or(WireError::BadPadding)?;
    if padded[4 + len..].iter().any(|&b| b != 0) {
        return Err(WireError::BadPadding);
    }
    Ok(body)
}

/// An X25519 key pair that pairwise envelopes are sealed to, kept as its 32-byte seed.
pub struct SealKey {
    seed: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl SealKey {
    /// A fresh key pair.
    pub fn generate() -> Result<SealKey, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(SealKey::from_seed(seed))
    }

    /// The key pair derived from `seed` (RFC 9180 `DeriveKeyPair`).
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> SealKey {
        let (_, public) = X25519HkdfSha256::derive_keypair(seed.as_ref());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&public.to_bytes());
        SealKey {
            seed,
            public: bytes,
        }
    }

    /// The public key, published in the key bundle.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The seed, for the saved state.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Opens a pairwise envelope payload sealed to this key.
    pub fn open(
        &self,
        tag: &[u8; 32],
        created_at: u64,
        payload: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let (header, sealed) = split(payload)?;
        let (secret, _) = X25519HkdfSha256::derive_keypair(self.seed.as_ref());
        let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(header)
            .map_err(|_| WireError::DoesNotOpen)?;
        let padded = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &secret,
            &encapped,
            HPKE_INFO,
            sealed,
            &aad(tag, created_at),
        )
        .map_err(|_| WireError::DoesNotOpen)?;
        let padded = Zeroizing::new(padded);
        Ok(Zeroizing::new(unpad(&padded)?.to_vec()))
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn split(payload: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    if payload.len() < ENVELOPE_BYTES_MIN || payload[0] != ENVELOPE_VERSION {
        return Err(WireError::NotAnEnvelope);
    }
    Ok((
        &payload[1..ENVELOPE_HEADER_BYTES],
        &payload[ENVELOPE_HEADER_BYTES..],
    ))
}

/// Seals `plain` to a recipient's seal key: the payload of a pairwise envelope.
pub fn seal_pairwise(
    recipient: &[u8; 32],
    tag: &[u8; 32],
    created_at: u64,
    plain: &[u8],
) -> Result<Vec<u8>, WireError> {
    let padded = pad(plain)?;
    let key = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| WireError::DoesNotOpen)?;
    let (encapped, sealed) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &key,
            HPKE_INFO,
            &padded,
            &aad(tag, created_at),
        )
        .map_err(|_| WireError::DoesNotOpen)?;
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + sealed.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&encapped.to_bytes());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals `plain` under a conversation's tag secret: the payload of a conversation envelope,
/// and its tag.
pub fn seal_conversation(
    secret: &[u8; 32],
    created_at: u64,
    plain: &[u8],
) -> Result<([u8; 32], Vec<u8>), WireError> {
    let padded = pad(plain)?;
    let day = day_of(created_at);
    let tag = conversation_tag(secret, day);
    let key = conversation_key(secret, day);
    // The header is random, shaped like an X25519 public key (top bit clear) so that the two
    // kinds of envelope look alike; its first 24 bytes are the nonce.
    let mut header = [0u8; 32];
    getrandom::fill(&mut header).map_err(|_| WireError::DoesNotOpen)?;
    header[31] &= 0x7f;
    let cipher =
        XChaCha20Poly1305::new_from_slice(key.as_ref()).map_err(|_| WireError::DoesNotOpen)?;
    let nonce = XNonce::try_from(&header[..24]).map_err(|_| WireError::DoesNotOpen)?;
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &padded,
                aad: &aad(&tag, created_at),
            },
        )
        .map_err(|_| WireError::DoesNotOpen)?;
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + sealed.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    Ok((tag, out))
}

/// Opens a conversation envelope payload under `secret`.
pub fn open_conversation(
    secret: &[u8; 32],
    tag: &[u8; 32],
    created_at: u64,
    payload: &[u8],
) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let (header, sealed) = split(payload)?;
    let key = conversation_key(secret, day_of(created_at));
    let cipher =
        XChaCha20Poly1305::new_from_slice(key.as_ref()).map_err(|_| WireError::DoesNotOpen)?;
    let nonce = XNonce::try_from(&header[..24]).map_err(|_| WireError::DoesNotOpen)?;
    let padded = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: sealed,
                aad: &aad(tag, created_at),
            },
        )
        .map_err(|_| WireError::DoesNotOpen)?;
    let padded = Zeroizing::new(padded);
    Ok(Zeroizing::new(unpad(&padded)?.to_vec()))
}

/// The HPKE-sealed part of a pairwise envelope: who sends, and their Olm message.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Pairwise {
    /// The sending author. Authenticated by the Olm session, which is bound to the author's
    /// identity key in their signed key bundle.
    pub sender: Author,
    /// Olm message type: 0 pre-key, 1 normal.
    pub olm_type: u8,
    /// The Olm message.
    pub olm: Vec<u8>,
}

/// What one pairwise message carries: one or more controls.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PairwiseBody {
    /// The controls, applied in order.
    pub controls: Vec<Control>,
}

pub use control::{ArchivedControl, Control};

/// rkyv's derive leaves the fields of an enum's resolver undocumented; this module keeps that
/// allowance to the one type.
mod control {
    #![allow(missing_docs)]

    use rkyv::{Archive, Deserialize, Serialize};

    use crate::membership::SignedOp;
    use crate::{ConvoId, OpId};

    /// A control for a conversation, sent to one member. `Debug` leaves its secrets out.
    #[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq)]
    pub enum Control {
        /// An invitation to a group: every membership operation the inviter knows, in causal
        /// order, the genesis first.
        Welcome {
            /// The conversation.
            convo: ConvoId,
            /// Its operations.
            ops: Vec<SignedOp>,
        },
        /// Membership operations: new ones, or ones a newly added member lacks.
        Ops {
            /// The conversation.
            convo: ConvoId,
            /// The operations, in causal order.
            ops: Vec<SignedOp>,
        },
        /// The sender's current Megolm session key for a conversation.
        SessionKey {
            /// The conversation.
            convo: ConvoId,
            /// vodozemac `SessionKey` bytes.
            key: Vec<u8>,
        },
        /// The sender's tag secret for a direct conversation.
        DirectTag {
            /// The conversation.
            convo: ConvoId,
            /// The secret.
            secret: [u8; 32],
            /// When the sender started using it, ms since the Unix epoch: where to look for
            /// envelopes that arrived before it.
            since: u64,
        },
        /// The sender's new prekey and seal key, after a key update: sent ahead of the update so
        /// that the answers use them.
        Keys {
            /// The new Olm fallback key.
            prekey: [u8; 32],
            /// The new HPKE seal key.
            seal: [u8; 32],
        },
        /// Notice to a removed member, from the member who removed them.
        Removed {
            /// The conversation.
            convo: ConvoId,
            /// The removal operation's id.
            op: OpId,
        },
    }
}

/// The Megolm-sealed part of a conversation envelope.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConvoSealed {
    /// The conversation.
    pub convo: ConvoId,
    /// The sender's Megolm session id (its Ed25519 public key).
    pub session: [u8; 32],
    /// The Megolm message.
    pub megolm: Vec<u8>,
}

/// A message's plaintext, inside Megolm. `Debug` shows the text's length only.
#[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct MessageBody {
    /// The conversation (checked against the envelope's).
    pub convo: ConvoId,
    /// The membership operations the sender had seen (their heads).
    pub deps: Vec<OpId>,
    /// The sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Welcome { convo, ops } => f
                .debug_struct("Welcome")
                .field("convo", &Hex(convo))
                .field("ops", &ops.len())
                .finish(),
            Control::Ops { convo, ops } => f
                .debug_struct("Ops")
                .field("convo", &Hex(convo))
                .field("ops", &ops.len())
                .finish(),
            Control::SessionKey { convo, .. } => f
                .debug_struct("SessionKey")
                .field("convo", &Hex(convo))
                .field("key", &Redacted)
                .finish(),
            Control::DirectTag { convo, since, .. } => f
                .debug_struct("DirectTag")
                .field("convo", &Hex(convo))
                .field("secret", &Redacted)
                .field("since", since)
                .finish(),
            Control::Keys { prekey, seal } => f
                .debug_struct("Keys")
                .field("prekey", &Hex(prekey))
                .field("seal", &Hex(seal))
                .finish(),
            Control::Removed { convo, op } => f
                .debug_struct("Removed")
                .field("convo", &Hex(convo))
                .field("op", &Hex(op))
                .finish(),
        }
    }
}

impl std::fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBody")
            .field("convo", &Hex(&self.convo))
            .field("deps", &self.deps.len())
            .field("sent_at", &self.sent_at)
            .field("text", &Len(self.text.len()))
            .finish()
    }
}

/// Archives a wire value.
pub(crate) fn encode<T>(value: &T) -> Zeroizing<Vec<u8>>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    Zeroizing::new(xaeroflux_event::encode_payload(value))
}

/// Reads a wire value, validating the archive.
pub(crate) fn decode<T>(bytes: &[u8], what: &'static str) -> Result<T, WireError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    rkyv::from_bytes::<T, rkyv::rancor::Error>(bytes).map_err(|_| WireError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_and_hides_length_within_a_class() {
        for n in [0usize, 1, 100, 252, 253, 1000, 40_000, PLAINTEXT_MAX] {
            let plain = vec![7u8; n];
            let padded = pad(&plain).unwrap();
            assert!(padded.len() >= PAD_MIN && padded.len() <= PAD_MAX, "{n}");
            assert!(padded.len() == PAD_MAX || padded.len().is_power_of_two());
            assert_eq!(unpad(&padded).unwrap(), &plain[..]);
        }
        assert_eq!(pad(&[1; 10]).unwrap().len(), pad(&[1; 200]).unwrap().len());
        assert!(matches!(
            pad(&vec![0; PLAINTEXT_MAX + 1]),
            Err(WireError::TooLarge { .. })
        ));
        assert_eq!(unpad(&[9, 0, 0, 0, 1]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[1, 0, 0, 0, 1, 1]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[1, 0]), Err(WireError::BadPadding));
    }

    #[test]
    fn debug_output_leaves_secrets_and_text_out() {
        let key = Control::SessionKey {
            convo: [1; 32],
            key: vec![0xab; 40],
        };
        let tag = Control::DirectTag {
            convo: [1; 32],
            secret: [0xcd; 32],
            since: 5,
        };
        let body = MessageBody {
            convo: [1; 32],
            deps: Vec::new(),
            sent_at: 5,
            text: "a private word".into(),
        };
        let shown = format!("{key:?} {tag:?} {body:?}");
        assert!(
            !shown.contains("ab, ab") && !shown.contains("171"),
            "{shown}"
        );
        assert!(
            !shown.contains("cd, cd") && !shown.contains("205"),
            "{shown}"
        );
        assert!(!shown.contains("private word"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("<14 bytes>"),
            "{shown}"
        );
    }

    #[test]
    fn pairwise_seal_opens_only_for_its_key_tag_and_time() {
        let bob = SealKey::generate().unwrap();
        let eve = SealKey::generate().unwrap();
        let tag = [5u8; 32];
        let t = coarse(1_700_000_000_000);
        let sealed = seal_pairwise(&bob.public(), &tag, t, b"hello bob").unwrap();
        assert_eq!(&bob.open(&tag, t, &sealed).unwrap()[..], b"hello bob");
        assert_eq!(eve.open(&tag, t, &sealed), Err(WireError::DoesNotOpen));
        assert_eq!(bob.open(&[6; 32], t, &sealed), Err(WireError::DoesNotOpen));
        assert_eq!(
            bob.open(&tag, t + ENVELOPE_TIME_QUANTUM_MS, &sealed),
            Err(WireError::DoesNotOpen)
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(bob.open(&tag, t, &flipped), Err(WireError::DoesNotOpen));
        assert_eq!(
            bob.open(&tag, t, &sealed[..40]),
            Err(WireError::NotAnEnvelope)
        );
        // A key derived again from its seed opens what the first one could.
        let again = SealKey::from_seed(Zeroizing::new(*bob.seed()));
        assert_eq!(again.public(), bob.public());
        assert!(again.open(&tag, t, &sealed).is_ok());
    }

    #[test]
    fn conversation_seal_needs_the_secret_and_rotates_its_tag_daily() {
        let secret = [3u8; 32];
        let t = coarse(1_700_000_000_000);
        let (tag, sealed) = seal_conversation(&secret, t, b"to the group").unwrap();
        assert_eq!(tag, conversation_tag(&secret, day_of(t)));
        assert_ne!(tag, conversation_tag(&secret, day_of(t) + 1));
        assert_eq!(
            &open_conversation(&secret, &tag, t, &sealed).unwrap()[..],
            b"to the group"
        );
        assert_eq!(
            open_conversation(&[4; 32], &tag, t, &sealed),
            Err(WireError::DoesNotOpen)
        );
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert_eq!(
            open_conversation(&secret, &tag, t, &flipped),
            Err(WireError::DoesNotOpen)
        );
        assert_eq!(sealed[32] & 0x80, 0);
        assert_eq!(sealed.len(), ENVELOPE_HEADER_BYTES + PAD_MIN + 16);
    }
}
