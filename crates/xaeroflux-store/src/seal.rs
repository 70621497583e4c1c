//! Encryption at rest: sealed values and keyed index keys (`docs/privacy.md`, "Stolen device").
//!
//! An encrypted store keeps LMDB's released file format and seals what it puts in it:
//!
//! - **Values** that carry content (event bodies, Merkle pages, the Merkle summary) are sealed
//!   with AES-256-GCM-SIV (RFC 8452, from aws-lc-rs): a fresh random 96-bit nonce
//!   per value, stored before the ciphertext and its 128-bit tag. The associated data is the
//!   table's tag and the row's key, so a value moved to another row or table fails to open.
//!   GCM-SIV is nonce-misuse resistant: were two nonces ever to collide, what leaks is only
//!   whether the two plaintexts are equal, not the key stream.
//! - **Keys** that name content (ids, authors, kinds, topics, references, tombstones, the
//!   newest replaceable event of an author) are replaced by a keyed BLAKE3 hash of the table's
//!   tag and the key (BLAKE3's keyed mode is a PRF). Lookups hash the same way; ranges over
//!   such keys are not possible, which no query needs except the typed-short-id lookup.
//! - Positions (`created_at`, local sequence number), sequence numbers and Merkle page numbers
//!   stay in the clear: the indexes are ordered by them. That is what the store leaks: see
//!   `docs/privacy.md`.
//!
//! Both keys come from the one random data key through BLAKE3's key derivation with distinct
//! contexts. Every key is zeroized when the store closes.

use std::borrow::Cow;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV};
use zeroize::Zeroizing;

/// Bytes of a data key.
pub const DATA_KEY_BYTES: usize = 32;
/// Bytes a sealed value adds to its plaintext: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_BYTES + TAG_BYTES;
const NONCE_BYTES: usize = 12;
/// Bytes of an authentication tag.
pub(crate) const TAG_BYTES: usize = 16;

/// Name of the cipher suite, kept in `meta["cipher"]` of an encrypted store.
pub(crate) const SUITE: &[u8] = b"aes-256-gcm-siv+blake3-keyed/1";

/// The random 256-bit key an encrypted store's values and index keys are sealed under.
///
/// Zeroized when dropped; `Debug` shows nothing of it. The store never writes it: the app keeps
/// it wrapped (see the key file of the facade), and hands it to [`crate::StoreOptions`].
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_BYTES]>);

impl DataKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<DataKey, getrandom::Error> {
        let mut key = Zeroizing::new([0u8; DATA_KEY_BYTES]);
        getrandom::fill(key.as_mut_slice())?;
        Ok(DataKey(key))
    }

    /// A key from its bytes (as unwrapped from where the app keeps it).
    pub fn from_bytes(bytes: Zeroizing<[u8; DATA_KEY_BYTES]>) -> DataKey {
        DataKey(bytes)
    }

    /// The key's bytes, to wrap it. Keep the borrow short and copy only into zeroizing memory.
    pub fn expose(&self) -> &[u8; DATA_KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Which table (and so which domain) a sealed value or keyed key belongs to. The tag is bound
/// into every seal and every keyed hash. `dropped` is keyed like `ids` (both by event id), so
/// that the integrity check can tell a dropped id that is also stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Events,
    Merkle,
    Meta,
    Ids,
    Author,
    Kind,
    Topic,
    Ref,
    Tombstone,
    Latest,
    Record,
}

impl Slot {
    fn tag(self) -> u8 {
        match self {
            Slot::Events => 1,
            Slot::Merkle => 2,
            Slot::Meta => 3,
            Slot::Ids => 16,
            Slot::Author => 17,
            Slot::Kind => 18,
            Slot::Topic => 19,
            Slot::Ref => 20,
            Slot::Tombstone => 21,
            Slot::Latest => 22,
            Slot::Record => 23,
        }
    }
}

/// A table key as stored: the raw key on a plain store, its keyed hash on an encrypted one.
#[derive(Clone, Copy)]
pub(crate) struct StoredKey {
    len: u8,
    buf: [u8; 64],
}

impl StoredKey {
    fn of(parts: &[&[u8]]) -> StoredKey {
        let mut key = StoredKey {
            len: 0,
            buf: [0; 64],
        };
        for part in parts {
            let at = usize::from(key.len);
            key.buf[at..at + part.len()].copy_from_slice(part);
            key.len += part.len() as u8;
        }
        key
    }
}

impl std::ops::Deref for StoredKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({:02x?})", &**self)
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
impl Eq for StoredKey {}
impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for StoredKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SealError {
    #[error("no randomness for a nonce: {0}")]
    Entropy(String),
    #[error("a value of {0} bytes is too long to seal")]
    TooLong(usize),
}

/// A sealed value that does not open: damaged, or sealed under another key.
#[derive(Debug)]
pub(crate) struct Unauthentic;

/// How a store's rows are written: as they are, or sealed.
pub(crate) enum Cipher {
    Plain,
    Sealed(Box<Sealer>),
}

pub(crate) struct Sealer {
    aead: Aead,
    prf: Zeroizing<[u8; 32]>,
}

/// AES-256-GCM-SIV under one key, with detached nonces and tags (aws-lc-rs keeps the key in its
/// own context and cleanses it when dropped).
pub(crate) struct Aead(LessSafeKey);

impl Aead {
    pub(crate) fn new(key: &[u8; 32]) -> Aead {
        let key = UnboundKey::new(&AES_256_GCM_SIV, key).expect("a 32-byte AES-256 key");
        Aead(LessSafeKey::new(key))
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plain`, under a fresh random nonce.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Entropy(e.to_string()))?;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_BYTES..],
            )
            .map_err(|_| SealError::TooLong(plain.len()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` into `out` (cleared first): one copy, no zeroing;
    /// `out` ends as long as the plaintext.
    pub(crate) fn open_to_vec(
        &self,
        aad: &[u8],
        stored: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Unauthentic> {
        if stored.len() < SEAL_OVERHEAD {
            return Err(Unauthentic);
        }
        let nonce: [u8; NONCE_BYTES] = stored[..NONCE_BYTES].try_into().expect("12 bytes");
        out.clear();
        out.extend_from_slice(&stored[NONCE_BYTES..]);
        let len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), out)
            .map_err(|_| Unauthentic)?
            .len();
        out.truncate(len);
        Ok(())
    }
}

impl Cipher {
    pub(crate) fn new(key: Option<&DataKey>) -> Cipher {
        match key {
            None => Cipher::Plain,
            Some(key) => {
                let aead_key = Zeroizing::new(blake3::derive_key(
                    "xaeroflux store 2026-11 value sealing key",
                    key.expose(),
                ));
                let prf = Zeroizing::new(blake3::derive_key(
                    "xaeroflux store 2026-11 index key hashing key",
                    key.expose(),
                ));
                Cipher::Sealed(Box::new(Sealer {
                    aead: Aead::new(&aead_key),
                    prf,
                }))
            }
        }
    }

    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self, Cipher::Sealed(_))
    }

    /// The stored form of a key made of `parts` (fixed lengths per slot, 64 bytes at most).
    pub(crate) fn key(&self, slot: Slot, parts: &[&[u8]]) -> StoredKey {
        match self {
            Cipher::Plain => StoredKey::of(parts),
            Cipher::Sealed(s) => {
                let mut h = blake3::Hasher::new_keyed(&s.prf);
                h.update(&[slot.tag()]);
                for part in parts {
                    h.update(part);
                }
                StoredKey::of(&[h.finalize().as_bytes()])
            }
        }
    }

    /// The stored form of `value`, put under `key` in `slot`'s table.
    pub(crate) fn seal<'v>(
        &self,
        slot: Slot,
        key: &[u8],
        value: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, SealError> {
        let Cipher::Sealed(s) = self else {
            return Ok(Cow::Borrowed(value));
        };
        s.aead.seal(&aad(slot, key), value).map(Cow::Owned)
    }

    /// Opens a sealed value into `out` (cleared first; it ends as long as the plaintext).
    pub(crate) fn open_to_vec(
        &self,
        slot: Slot,
        key: &[u8],
        stored: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Unauthentic> {
        let Cipher::Sealed(s) = self else {
            return Err(Unauthentic);
        };
        s.aead.open_to_vec(&aad(slot, key), stored, out)
    }

    /// A stored value as written: borrowed on a plain store, opened into a new buffer on a
    /// sealed one.
    pub(crate) fn open_cow<'v>(
        &self,
        slot: Slot,
        key: &[u8],
        stored: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, Unauthentic> {
        match self {
            Cipher::Plain => Ok(Cow::Borrowed(stored)),
            Cipher::Sealed(_) => self.open_vec(slot, key, stored).map(Cow::Owned),
        }
    }

    /// Opens a sealed value into a new buffer.
    pub(crate) fn open_vec(
        &self,
        slot: Slot,
        key: &[u8],
        stored: &[u8],
    ) -> Result<Vec<u8>, Unauthentic> {
        let mut out = Vec::with_capacity(stored.len());
        self.open_to_vec(slot, key, stored, &mut out)?;
        Ok(out)
    }
}

fn aad(slot: Slot, key: &[u8]) -> StoredKey {
    let mut out = StoredKey::of(&[&[slot.tag()]]);
    let take = key.len().min(63);
    out.buf[1..1 + take].copy_from_slice(&key[..take]);
    out.len = 1 + take as u8;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Cipher {
        Cipher::new(Some(&DataKey::from_bytes(Zeroizing::new([7; 32]))))
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_row() {
        let c = sealed();
        let stored = c.seal(Slot::Events, b"row-1", b"hello world").unwrap();
        assert_eq!(stored.len(), 11 + SEAL_OVERHEAD);
        assert!(!stored.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            c.open_vec(Slot::Events, b"row-1", &stored).unwrap(),
            b"hello world"
        );
        assert!(c.open_vec(Slot::Events, b"row-2", &stored).is_err());
        assert!(c.open_vec(Slot::Merkle, b"row-1", &stored).is_err());
        for bit in [0, 8 * 12 + 3, 8 * (stored.len() - 1)] {
            let mut flipped = stored.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(c.open_vec(Slot::Events, b"row-1", &flipped).is_err());
        }
        assert!(c.open_vec(Slot::Events, b"row-1", &stored[..27]).is_err());
        let other = Cipher::new(Some(&DataKey::from_bytes(Zeroizing::new([8; 32]))));
        assert!(other.open_vec(Slot::Events, b"row-1", &stored).is_err());
    }

    /// RFC 8452, Appendix C.2, the second AEAD_AES_256_GCM_SIV vector: the format the docs
    /// name is the one written.
    #[test]
    fn the_cipher_is_rfc_8452_aes_256_gcm_siv() {
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut stored = vec![3u8];
        stored.extend_from_slice(&[0; 11]);
        for b in [
            0xc2, 0xef, 0x32, 0x8e, 0x5c, 0x71, 0xc8, 0x3b, 0x84, 0x31, 0x22, 0x13, 0x0f, 0x73,
            0x64, 0xb7, 0x61, 0xe0, 0xb9, 0x74, 0x27, 0xe3, 0xdf, 0x28,
        ] {
            stored.push(b);
        }
        let mut out = Vec::new();
        Aead::new(&key).open_to_vec(b"", &stored, &mut out).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let c = sealed();
        let a = c.seal(Slot::Events, b"k", b"same").unwrap();
        let b = c.seal(Slot::Events, b"k", b"same").unwrap();
        assert_ne!(a, b, "a fresh nonce per seal");
    }

    #[test]
    fn keyed_keys_are_stable_per_slot_and_hide_the_key() {
        let c = sealed();
        let author = [0xAB; 32];
        let k1 = c.key(Slot::Author, &[&author]);
        assert_eq!(k1, c.key(Slot::Author, &[&author]));
        assert_ne!(k1, c.key(Slot::Ref, &[&author]), "one hash per table");
        assert_ne!(&*k1, &author[..]);
        assert_eq!(k1.len(), 32);
        let plain = Cipher::Plain;
        assert_eq!(&*plain.key(Slot::Latest, &[&author, &[0, 0, 0, 5]]), {
            let mut v = author.to_vec();
            v.extend_from_slice(&[0, 0, 0, 5]);
            v
        });
        assert_eq!(
            format!("{:?}", DataKey::from_bytes(Zeroizing::new([9; 32]))),
            "DataKey(..)"
        );
    }
}
