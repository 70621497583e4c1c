//! The identity file: the author's 32-byte ed25519 seed, readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use xaeroflux_event::Identity;

/// File name of the identity inside a data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// The file is not 32 bytes. Fix: restore it from a backup; it cannot be repaired.
    #[error("{path} is not an identity file ({got} bytes, 32 expected)")]
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
    #[error("identity file {path}: {source}")]
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
/// Returns the identity and whether it was created.
pub fn load_or_create_identity(path: &Path) -> Result<(Identity, bool), IdentityFileError> {
    let io = |source| IdentityFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            check_private(path)?;
            let seed: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityFileError::Malformed {
                        path: path.to_owned(),
                        got: bytes.len(),
                    })?;
            Ok((Identity::from_seed(&seed), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate()?;
            write_atomically(path, &identity.seed()).map_err(io)?;
            Ok((identity, true))
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
fn write_atomically(path: &Path, seed: &[u8; 32]) -> std::io::Result<()> {
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
        let (a, created) = load_or_create_identity(&path).unwrap();
        assert!(created);
        let (b, created) = load_or_create_identity(&path).unwrap();
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
            let err = load_or_create_identity(&path).unwrap_err();
            assert!(
                matches!(err, IdentityFileError::Exposed { mode: 0o644, .. }),
                "{err}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            load_or_create_identity(&path),
            Err(IdentityFileError::Malformed { got: 5, .. })
        ));
    }
}
