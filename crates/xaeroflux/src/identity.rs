//! The key files of a data directory, each a 32-byte ed25519 seed readable by its owner only:
//! the author's identity, which signs events, and the node's network key, which names it to
//! peers. The two are unrelated, so the network never tells who the author is.
//!
//! In the directory of an encrypted store each file holds its seed sealed under the store's
//! data key (`keys::seal_secret`, bound to the file's name); a plaintext seed found there (a
//! store encrypted after the file was written) is sealed in place when first read.

use std::io::Write;
use std::path::{Path, PathBuf};

use xaeroflux_event::{Identity, IdentityError};
use xaeroflux_store::keys::{self, KeyError};
use xaeroflux_store::DataKey;
use zeroize::Zeroizing;

/// File name of the identity inside a data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// File name of the network key inside a data directory: the node's libp2p identity, apart
/// from the author's.
pub const NETWORK_KEY_FILE: &str = "network.key";
/// File name of the network key of anonymous mode, when it is kept (never the same key as
/// `network.key`: a peer id seen in the clear would name the onion service).
pub const ANON_NETWORK_KEY_FILE: &str = "network-anon.key";
/// File name of the onion service's key (Tor as the fallback).
pub const ONION_KEY_FILE: &str = "onion.key";
/// File name of the onion service's key in anonymous mode, when it is kept.
pub const ANON_ONION_KEY_FILE: &str = "onion-anon.key";

/// Where a node's network identity (its libp2p peer id, what mDNS announces and peers see)
/// comes from. Never from the author's key: a peer id that is the author key would tell
/// everyone on the LAN, and every peer, who the user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkIdentity {
    /// The data directory's `network.key`, created on first use: peers recognise the node
    /// across restarts (their peer tables and bootstrap addresses keep working).
    #[default]
    Stored,
    /// A new key for this start only, never stored: the node cannot be linked across starts
    /// by its peer id (its addresses and its events may still link it).
    Fresh,
    /// A new key that replaces the stored one from now on (peers that knew the old id see a
    /// new node).
    Rotate,
}

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// The file holds a seed sealed under a store's data key, and the store was opened
    /// without one (or the seal does not open under it: [`IdentityFileError::Key`]).
    #[error("{path} is sealed under the store's key: open the store with its key")]
    Sealed {
        /// The file.
        path: PathBuf,
    },
    /// A sealed key file does not open under the store's key, or could not be sealed.
    #[error("key file {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyError,
    },
    /// The file is not 32 bytes. Fix: restore it from a backup; it cannot be repaired (a
    /// network key may be deleted instead: the node makes a new one, and peers see a new id).
    #[error("{path} is not a key file ({got} bytes, 32 expected)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its size.
        got: usize,
    },
    /// Other users may read the file (as ssh refuses such a key, this refuses it): the key
    /// may have leaked already. Fix: `chmod 600` the file, and publish under a new identity if
    /// others could have copied it.
    #[error("{path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`; if others may have copied it, the key is no longer private")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No randomness for a new key.
    #[error(transparent)]
    Entropy(#[from] xaeroflux_event::IdentityError),
}

/// Loads the identity at `path`, or creates one there (mode 0600) if there is none.
/// Returns the identity and whether it was created. With `sealer` (the data key of the store
/// beside it), the file holds the seed sealed under it.
pub fn load_or_create_identity(
    path: &Path,
    sealer: Option<&DataKey>,
) -> Result<(Identity, bool), IdentityFileError> {
    let (seed, created) = load_or_create_seed(path, sealer)?;
    Ok((Identity::from_seed(&seed), created))
}

/// The seed of a network key in the key file at `path`, as `which` asks: the stored one
/// (created on first use), a fresh one for this start, or a new one that replaces the stored
/// one. Sealed under `sealer` when the store is encrypted.
pub(crate) fn network_seed_at(
    path: &Path,
    which: NetworkIdentity,
    sealer: Option<&DataKey>,
) -> Result<Zeroizing<[u8; 32]>, IdentityFileError> {
    let path = path.to_owned();
    match which {
        NetworkIdentity::Stored => Ok(load_or_create_seed(&path, sealer)?.0),
        NetworkIdentity::Fresh => random_seed(),
        NetworkIdentity::Rotate => {
            let seed = random_seed()?;
            write_seed(&path, &seed, sealer)?;
            Ok(seed)
        }
    }
}

/// The name a seed file's seal is bound to.
fn label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a seed file, sealed under `sealer` if there is one.
pub(crate) fn write_seed(
    path: &Path,
    seed: &[u8; 32],
    sealer: Option<&DataKey>,
) -> Result<(), IdentityFileError> {
    let bytes = match sealer {
        Some(key) => Zeroizing::new(keys::seal_secret(key, &label(path), seed).map_err(
            |source| IdentityFileError::Key {
                path: path.to_owned(),
                source,
            },
        )?),
        None => Zeroizing::new(seed.to_vec()),
    };
    write_atomically(path, &bytes).map_err(|source| IdentityFileError::Io {
        path: path.to_owned(),
        source,
    })
}

fn random_seed() -> Result<Zeroizing<[u8; 32]>, IdentityFileError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|e| IdentityError::Entropy(e.to_string()))?;
    Ok(seed)
}

/// Loads the seed at `path` (refusing a file others may read), or creates a random one there;
/// says whether it was created. The bytes read are zeroized once copied.
pub(crate) fn load_or_create_seed(
    path: &Path,
    sealer: Option<&DataKey>,
) -> Result<(Zeroizing<[u8; 32]>, bool), IdentityFileError> {
    let io = |source| IdentityFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut bytes = Zeroizing::new(bytes);
            check_private(path)?;
            let sealed = keys::is_sealed_secret(&bytes);
            if sealed {
                let key = sealer.ok_or_else(|| IdentityFileError::Sealed {
                    path: path.to_owned(),
                })?;
                bytes = Zeroizing::new(
                    keys::open_secret(key, &label(path), &bytes)
                        .map_err(|source| IdentityFileError::Key {
                            path: path.to_owned(),
                            source,
                        })?
                        .to_vec(),
                );
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            if bytes.len() != seed.len() {
                return Err(IdentityFileError::Malformed {
                    path: path.to_owned(),
                    got: bytes.len(),
                });
            }
            seed.copy_from_slice(&bytes);
            if !sealed && sealer.is_some() {
                // A plaintext seed beside an encrypted store: seal it now.
                write_seed(path, &seed, sealer)?;
            }
            Ok((seed, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = random_seed()?;
            write_seed(path, &seed, sealer)?;
            Ok((seed, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// Refuses a key file that group or others may read or write.
fn check_private(path: &Path) -> Result<(), IdentityFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| IdentityFileError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityFileError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes the key to a temporary file, syncs it, then renames it into place: a crash leaves
/// either no identity file or a whole one, never a torn one.
fn write_atomically(path: &Path, seed: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(seed)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let (a, created) = load_or_create_identity(&path, None).unwrap();
        assert!(created);
        let (b, created) = load_or_create_identity(&path, None).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_identity(&path, None).unwrap_err();
            assert!(
                matches!(err, IdentityFileError::Exposed { mode: 0o644, .. }),
                "{err}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // Beside an encrypted store the seed is sealed, in place, and opens only with its key.
        let key = DataKey::generate().unwrap();
        let (c, _) = load_or_create_identity(&path, Some(&key)).unwrap();
        assert_eq!(c.public_key(), a.public_key());
        let sealed = std::fs::read(&path).unwrap();
        assert!(keys::is_sealed_secret(&sealed));
        assert!(!sealed.windows(32).any(|w| w == a.seed()));
        assert!(matches!(
            load_or_create_identity(&path, None),
            Err(IdentityFileError::Sealed { .. })
        ));
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            load_or_create_identity(&path, Some(&other)),
            Err(IdentityFileError::Key {
                source: KeyError::WrongKey,
                ..
            })
        ));
        assert_eq!(
            load_or_create_identity(&path, Some(&key))
                .unwrap()
                .0
                .public_key(),
            a.public_key()
        );
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            load_or_create_identity(&path, None),
            Err(IdentityFileError::Malformed { got: 5, .. })
        ));
    }
}
