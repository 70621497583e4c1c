//! The data key of an encrypted store, wrapped: by a passphrase through Argon2id, or by the
//! host app through a [`KeyProvider`] (a platform keystore). The wrapped key lives in the data
//! directory's `data.key`; the key-encryption key never touches the disk.
//!
//! Changing the passphrase rewraps the data key ([`rewrap`]) and rewrites nothing else. Small
//! secrets that belong to the directory (the author's and the network's key seeds) are sealed
//! under the data key with [`seal_secret`].

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::seal::{Aead, DataKey, SealError, DATA_KEY_BYTES, TAG_BYTES};

/// Name of the wrapped-key file in a data directory.
pub const KEY_FILE: &str = "data.key";
const KEY_FILE_MAGIC: &[u8; 14] = b"xaeroflux-key\0";
const KEY_FILE_VERSION: u8 = 1;
/// Longest provider name and wrapped blob a key file may hold.
const KIND_BYTES_MAX: usize = 64;
const BLOB_BYTES_MAX: usize = 4096;

const NONCE_BYTES: usize = 12;

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase, or the provider's key, does not open the wrapped key.
    #[error("wrong passphrase or key")]
    WrongKey,
    /// The wrapped key or key file is damaged or not ours.
    #[error("malformed key file: {0}")]
    Malformed(String),
    /// The provider could not do its part (keystore locked, user cancelled…).
    #[error("the key provider failed: {0}")]
    Provider(String),
    /// The key file was wrapped by another kind of provider than the one given.
    #[error("the store's key is wrapped by {stored:?}, not by {given:?}")]
    OtherProvider {
        /// The kind named in the key file.
        stored: String,
        /// The kind of the provider given.
        given: String,
    },
    /// No randomness from the operating system.
    #[error("no randomness: {0}")]
    Entropy(String),
    /// Reading or writing the key file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        reason: String,
    },
}

/// Wraps and unwraps a store's data key. The host app implements it over a platform keystore
/// (iOS Keychain, Android Keystore: the key-encryption key can stay in hardware, as the trait
/// hands over only the data key and the opaque wrapped bytes); [`Passphrase`] implements it
/// with Argon2id.
///
/// Implementations must not log the data key, and should zeroize copies they make.
pub trait KeyProvider: Send + Sync {
    /// A short name stored beside the wrapped key (at most 64 bytes), so that a store is not
    /// handed to a provider that did not wrap it: "passphrase", "android-keystore"…
    fn kind(&self) -> &str;

    /// The data key wrapped, as opaque bytes (at most 4 KiB) kept in the key file.
    fn wrap(&self, key: &DataKey) -> Result<Vec<u8>, KeyError>;

    /// The data key back from what [`KeyProvider::wrap`] returned. A wrong key must be
    /// [`KeyError::WrongKey`].
    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, KeyError>;
}

impl std::fmt::Debug for dyn KeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyProvider({:?})", self.kind())
    }
}

/// Argon2id's cost parameters (RFC 9106).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// The default: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes), for
    /// machines where 2 GiB per derivation is too much (phones).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        lanes: 4,
    };
    /// The most memory a key file may ask for: a damaged or hostile file cannot make an open
    /// allocate more.
    pub const MEMORY_KIB_MAX: u32 = 1024 * 1024;
    /// The most passes a key file may ask for.
    pub const ITERATIONS_MAX: u32 = 64;
    /// The most lanes a key file may ask for.
    pub const LANES_MAX: u32 = 16;

    fn check(self) -> Result<argon2::Params, KeyError> {
        if self.memory_kib > Self::MEMORY_KIB_MAX
            || self.iterations > Self::ITERATIONS_MAX
            || self.lanes > Self::LANES_MAX
        {
            return Err(KeyError::Malformed(format!(
                "key derivation costs {self:?} are above the limits"
            )));
        }
        argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.lanes,
            Some(DATA_KEY_BYTES),
        )
        .map_err(|e| KeyError::Malformed(format!("key derivation costs {self:?}: {e}")))
    }
}

/// A passphrase as a [`KeyProvider`]: Argon2id (the `argon2` crate, RustCrypto) derives a
/// key-encryption key from the passphrase and a random 16-byte salt, which seals the data key
/// with AES-256-GCM-SIV (aws-lc-rs). The costs and the salt are kept with the wrapped key, so that they
/// can change without breaking older files.
pub struct Passphrase {
    secret: Zeroizing<Vec<u8>>,
    params: KdfParams,
}

impl Passphrase {
    /// A passphrase with the default costs ([`KdfParams::DEFAULT`]).
    pub fn new(secret: Zeroizing<String>) -> Passphrase {
        Passphrase::with_params(secret, KdfParams::DEFAULT)
    }

    /// A passphrase with other costs for new wraps (unwrapping uses the costs in the file).
    pub fn with_params(secret: Zeroizing<String>, params: KdfParams) -> Passphrase {
        Passphrase {
            secret: Zeroizing::new(secret.as_bytes().to_vec()),
            params,
        }
    }

    fn kek(&self, params: KdfParams, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params.check()?,
        );
        let mut kek = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(&self.secret, salt, kek.as_mut_slice())
            .map_err(|e| KeyError::Malformed(format!("key derivation: {e}")))?;
        Ok(kek)
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passphrase")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

const SALT_BYTES: usize = 16;
/// Associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"xaeroflux data key v1";

impl KeyProvider for Passphrase {
    fn kind(&self) -> &str {
        "passphrase"
    }

    /// `memory_kib u32 LE ‖ iterations u32 LE ‖ lanes u32 LE ‖ salt (16) ‖ nonce (12) ‖
    /// sealed key (32) ‖ tag (16)`.
    fn wrap(&self, key: &DataKey) -> Result<Vec<u8>, KeyError> {
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|e| KeyError::Entropy(e.to_string()))?;
        let kek = self.kek(self.params, &salt)?;
        let mut out = Vec::with_capacity(12 + SALT_BYTES + 60);
        for v in [
            self.params.memory_kib,
            self.params.iterations,
            self.params.lanes,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&salt);
        out.extend_from_slice(&seal_with(&kek, WRAP_AAD, key.expose())?);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let malformed = || KeyError::Malformed("the wrapped key has the wrong length".into());
        if wrapped.len() != 12 + SALT_BYTES + NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES {
            return Err(malformed());
        }
        let u32_at = |i: usize| u32::from_le_bytes(wrapped[i..i + 4].try_into().expect("4"));
        let params = KdfParams {
            memory_kib: u32_at(0),
            iterations: u32_at(4),
            lanes: u32_at(8),
        };
        let salt = &wrapped[12..12 + SALT_BYTES];
        let kek = self.kek(params, salt)?;
        let key = open_with(&kek, WRAP_AAD, &wrapped[12 + SALT_BYTES..])?;
        let key: [u8; DATA_KEY_BYTES] = key[..].try_into().map_err(|_| malformed())?;
        Ok(DataKey::from_bytes(Zeroizing::new(key)))
    }
}

/// `nonce ‖ AES-256-GCM-SIV(plain) ‖ tag` under `key`.
fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    Aead::new(key).seal(aad, plain).map_err(|e| match e {
        SealError::Entropy(e) => KeyError::Entropy(e),
        SealError::TooLong(_) => KeyError::Malformed("a secret too long to seal".into()),
    })
}

/// Opens what [`seal_with`] made.
fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(KeyError::Malformed("a sealed secret is too short".into()));
    }
    // Sized for the whole input up front, so the plaintext is never moved by a reallocation
    // that would leave an unzeroized copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
    Aead::new(key)
        .open_to_vec(aad, sealed, &mut out)
        .map_err(|_| KeyError::WrongKey)?;
    Ok(out)
}

/// The key that seals a directory's small secrets, apart from the store's own keys.
fn secret_key(key: &DataKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(
        "xaeroflux data directory 2026-11 secret file key",
        key.expose(),
    ))
}

const SECRET_MAGIC: &[u8; 8] = b"xfsealed";

/// Seals a small secret (a key seed) under the data key, bound to `label` (the file's name,
/// so that two sealed files cannot be swapped): `"xfsealed" ‖ nonce ‖ sealed ‖ tag`.
pub fn seal_secret(key: &DataKey, label: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = SECRET_MAGIC.to_vec();
    out.extend_from_slice(&seal_with(&secret_key(key), label.as_bytes(), secret)?);
    Ok(out)
}

/// True if `bytes` are a sealed secret (and not, say, a plain 32-byte seed).
pub fn is_sealed_secret(bytes: &[u8]) -> bool {
    bytes.len() > SECRET_MAGIC.len() && bytes.starts_with(SECRET_MAGIC)
}

/// Opens what [`seal_secret`] made with the same key and label.
pub fn open_secret(
    key: &DataKey,
    label: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if !is_sealed_secret(sealed) {
        return Err(KeyError::Malformed(format!(
            "{label} is not a sealed secret"
        )));
    }
    open_with(
        &secret_key(key),
        label.as_bytes(),
        &sealed[SECRET_MAGIC.len()..],
    )
}

/// What a key file holds: the provider's kind and its wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// [`KeyProvider::kind`] of the provider that wrapped the key.
    pub kind: String,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// `magic (14) ‖ version (1) ‖ kind length (1) ‖ kind ‖ wrapped length u32 LE ‖ wrapped`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = KEY_FILE_MAGIC.to_vec();
        out.push(KEY_FILE_VERSION);
        out.push(self.kind.len() as u8);
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(&(self.wrapped.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// Parses a key file, refusing anything malformed or of another version.
    pub fn decode(bytes: &[u8]) -> Result<KeyFile, KeyError> {
        let bad = |why: &str| KeyError::Malformed(why.to_owned());
        let rest = bytes
            .strip_prefix(&KEY_FILE_MAGIC[..])
            .ok_or_else(|| bad("not a Xaeroflux key file"))?;
        let (&version, rest) = rest.split_first().ok_or_else(|| bad("cut short"))?;
        if version != KEY_FILE_VERSION {
            return Err(bad(&format!("key file version {version} is not known")));
        }
        let (&kind_len, rest) = rest.split_first().ok_or_else(|| bad("cut short"))?;
        let kind_len = usize::from(kind_len);
        if rest.len() < kind_len + 4 {
            return Err(bad("cut short"));
        }
        let kind = std::str::from_utf8(&rest[..kind_len])
            .map_err(|_| bad("the provider name is not text"))?
            .to_owned();
        let rest = &rest[kind_len..];
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
        let wrapped = &rest[4..];
        if len > BLOB_BYTES_MAX || wrapped.len() != len {
            return Err(bad("the wrapped key has the wrong length"));
        }
        Ok(KeyFile {
            kind,
            wrapped: wrapped.to_vec(),
        })
    }
}

/// The key file's path in a data directory.
pub fn key_file_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

/// Reads a directory's key file; `None` if it has none.
pub fn read_key_file(dir: &Path) -> Result<Option<KeyFile>, KeyError> {
    let path = key_file_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => KeyFile::decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Io {
            path,
            reason: e.to_string(),
        }),
    }
}

/// Unwraps the data key of a directory's key file with `provider`.
pub fn unwrap_key(file: &KeyFile, provider: &dyn KeyProvider) -> Result<DataKey, KeyError> {
    if file.kind != provider.kind() {
        return Err(KeyError::OtherProvider {
            stored: file.kind.clone(),
            given: provider.kind().to_owned(),
        });
    }
    provider.unwrap(&file.wrapped)
}

/// Wraps `key` with `provider` and writes the key file, atomically (a temporary file, synced,
/// renamed over the old one, the directory synced), mode 0600.
pub fn write_key_file(
    dir: &Path,
    key: &DataKey,
    provider: &dyn KeyProvider,
) -> Result<(), KeyError> {
    let kind = provider.kind();
    if kind.is_empty() || kind.len() > KIND_BYTES_MAX {
        return Err(KeyError::Provider(format!(
            "a provider name of {} bytes (1 to {KIND_BYTES_MAX})",
            kind.len()
        )));
    }
    let wrapped = provider.wrap(key)?;
    if wrapped.len() > BLOB_BYTES_MAX {
        return Err(KeyError::Provider(format!(
            "a wrapped key of {} bytes (at most {BLOB_BYTES_MAX})",
            wrapped.len()
        )));
    }
    // What was written must open again before it replaces anything.
    let back = provider.unwrap(&wrapped)?;
    if back.expose() != key.expose() {
        return Err(KeyError::Provider(
            "the provider's unwrap does not give back the key it wrapped".into(),
        ));
    }
    let file = KeyFile {
        kind: kind.to_owned(),
        wrapped,
    };
    write_private_atomically(&key_file_path(dir), &file.encode()).map_err(|(path, e)| {
        KeyError::Io {
            path,
            reason: e.to_string(),
        }
    })
}

/// Writes `bytes` to `path` through a temporary file (mode 0600, synced) and a rename, then
/// syncs the directory.
pub fn write_private_atomically(
    path: &Path,
    bytes: &[u8],
) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = path.with_extension("tmp");
    let at = |p: &Path| {
        let p = p.to_owned();
        move |e| (p, e)
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(at(&tmp))?;
    file.write_all(bytes).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at(dir))?;
    }
    Ok(())
}

/// Changes the provider (or passphrase) a directory's data key is wrapped by: unwraps it with
/// `old`, wraps it with `new` and replaces the key file. Nothing else is rewritten.
pub fn rewrap(dir: &Path, old: &dyn KeyProvider, new: &dyn KeyProvider) -> Result<(), KeyError> {
    let file = read_key_file(dir)?.ok_or_else(|| KeyError::Io {
        path: key_file_path(dir),
        reason: "there is no key file: the store is not encrypted".into(),
    })?;
    let key = unwrap_key(&file, old)?;
    write_key_file(dir, &key, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap costs: the tests check the format, not the cost.
    fn pass(s: &str) -> Passphrase {
        Passphrase::with_params(
            Zeroizing::new(s.into()),
            KdfParams {
                memory_kib: 64,
                iterations: 1,
                lanes: 1,
            },
        )
    }

    #[test]
    fn a_passphrase_wraps_and_unwraps_and_refuses_another() {
        let key = DataKey::generate().unwrap();
        let wrapped = pass("correct horse").wrap(&key).unwrap();
        assert_eq!(
            pass("correct horse").unwrap(&wrapped).unwrap().expose(),
            key.expose()
        );
        assert_eq!(
            pass("battery staple").unwrap(&wrapped).unwrap_err(),
            KeyError::WrongKey
        );
        assert!(!wrapped.windows(32).any(|w| w == key.expose()));
        let mut flipped = wrapped.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            pass("correct horse").unwrap(&flipped).unwrap_err(),
            KeyError::WrongKey
        );
        // Costs a hostile file asks for are refused before anything is allocated.
        let mut greedy = wrapped.clone();
        greedy[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            pass("correct horse").unwrap(&greedy),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            pass("x").unwrap(&wrapped[..20]),
            Err(KeyError::Malformed(_))
        ));
        assert!(!format!("{:?}", pass("correct horse")).contains("correct"));
    }

    #[test]
    fn key_files_round_trip_and_refuse_damage() {
        let file = KeyFile {
            kind: "passphrase".into(),
            wrapped: vec![7; 88],
        };
        let bytes = file.encode();
        assert_eq!(KeyFile::decode(&bytes).unwrap(), file);
        for cut in 0..bytes.len() {
            assert!(KeyFile::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = bytes.clone();
        other[14] = 9;
        assert!(KeyFile::decode(&other).is_err());
    }

    #[test]
    fn rewrapping_changes_the_passphrase_and_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::generate().unwrap();
        write_key_file(dir.path(), &key, &pass("old")).unwrap();
        rewrap(dir.path(), &pass("old"), &pass("new")).unwrap();
        let file = read_key_file(dir.path()).unwrap().unwrap();
        assert_eq!(
            unwrap_key(&file, &pass("new")).unwrap().expose(),
            key.expose()
        );
        assert_eq!(
            unwrap_key(&file, &pass("old")).unwrap_err(),
            KeyError::WrongKey
        );
        assert_eq!(
            rewrap(dir.path(), &pass("old"), &pass("newer")).unwrap_err(),
            KeyError::WrongKey
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_file_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn sealed_secrets_open_only_under_their_key_and_label() {
        let key = DataKey::generate().unwrap();
        let sealed = seal_secret(&key, "identity.key", &[5; 32]).unwrap();
        assert!(is_sealed_secret(&sealed));
        assert!(!is_sealed_secret(&[5; 32]));
        assert_eq!(
            &open_secret(&key, "identity.key", &sealed).unwrap()[..],
            &[5; 32]
        );
        assert_eq!(
            open_secret(&key, "network.key", &sealed).unwrap_err(),
            KeyError::WrongKey
        );
        let other = DataKey::generate().unwrap();
        assert_eq!(
            open_secret(&other, "identity.key", &sealed).unwrap_err(),
            KeyError::WrongKey
        );
    }
}
