//! The store's key from the host app: its platform keystore behind a foreign trait.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::XfError;

/// Wraps and unwraps the store's data key (32 random bytes made by the library when the store
/// is created), implemented by the host app over its platform keystore: the iOS Keychain with
/// a Secure Enclave key, the Android Keystore with a hardware-backed AES key. The key that
/// wraps never leaves the keystore; the library keeps only the wrapped bytes (in `data.key`).
///
/// The data key reaches the host in `wrap` and comes back from `unwrap`: the host must not
/// log or keep it, and should clear its copies. (The library wipes its own copies; the
/// buffers UniFFI carries it across in are freed, not wiped.) `unwrap` of bytes it cannot open (another
/// key, tampered bytes) must throw [`XfError::WrongKey`], so that the app can tell a wrong key
/// from a broken keystore ([`XfError::KeyProvider`]).
#[uniffi::export(foreign)]
pub trait KeyProvider: Send + Sync {
    /// A short name stored beside the wrapped key (at most 64 bytes), such as
    /// "android-keystore", so that a store is not handed to another kind of provider.
    fn kind(&self) -> String;

    /// The data key wrapped, as opaque bytes (at most 4 KiB).
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, XfError>;

    /// The data key back from what `wrap` returned.
    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, XfError>;
}

/// The host's provider as the store's [`xaeroflux::KeyProvider`].
pub(crate) struct HostKeys {
    host: Arc<dyn KeyProvider>,
    /// Asked once: the store's trait hands out a borrowed name.
    kind: String,
}

impl HostKeys {
    pub(crate) fn new(host: Arc<dyn KeyProvider>) -> HostKeys {
        let kind = host.kind();
        HostKeys { host, kind }
    }
}

fn key_error(e: XfError) -> xaeroflux::KeyError {
    match e {
        XfError::WrongKey { .. } => xaeroflux::KeyError::WrongKey,
        e => xaeroflux::KeyError::Provider(e.to_string()),
    }
}

impl xaeroflux::KeyProvider for HostKeys {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn wrap(&self, key: &xaeroflux::DataKey) -> Result<Vec<u8>, xaeroflux::KeyError> {
        // The copy handed over is the host's; UniFFI's own buffer is freed by the host side.
        self.host.wrap(key.expose().to_vec()).map_err(key_error)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<xaeroflux::DataKey, xaeroflux::KeyError> {
        let plain = Zeroizing::new(self.host.unwrap(wrapped.to_vec()).map_err(key_error)?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        if plain.len() != bytes.len() {
            return Err(xaeroflux::KeyError::Provider(format!(
                "the key provider returned {} bytes, not the 32 of a data key",
                plain.len()
            )));
        }
        bytes.copy_from_slice(&plain);
        Ok(xaeroflux::DataKey::from_bytes(bytes))
    }
}
