//! Passphrases: from `XF_PASSPHRASE`, else asked on the terminal without echo. Read only
//! when a store needs one (an encrypted store, or a new store that is not `--plain`), held in
//! zeroizing memory, never printed.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use xaeroflux::{keys, KeyProvider, Passphrase};
use zeroize::Zeroizing;

/// The environment variable a passphrase is read from before the terminal is asked.
pub const PASSPHRASE_ENV: &str = "XF_PASSPHRASE";
/// The new passphrase of `xf passwd`, read before the terminal is asked.
pub const NEW_PASSPHRASE_ENV: &str = "XF_NEW_PASSPHRASE";
/// The passphrase of the other store of `xf sync --local`, if it differs from this one's.
pub const OTHER_PASSPHRASE_ENV: &str = "XF_OTHER_PASSPHRASE";

/// True if the directory holds an encrypted store (its wrapped key).
pub fn is_encrypted(dir: &Path) -> bool {
    keys::key_file_path(dir).exists()
}

/// True if the directory holds a store of either kind.
pub fn has_store(dir: &Path) -> bool {
    dir.join("data.mdb").exists()
}

/// Why a passphrase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// To open an existing store: asked once.
    Open,
    /// For a new store or a new passphrase: asked twice on a terminal, and never empty.
    New,
}

/// A passphrase from `env`, else from the terminal (no echo).
pub fn read(env: &str, prompt: &str, asking: Asking) -> Result<Zeroizing<String>> {
    if let Some(value) = std::env::var_os(env) {
        let value = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{env} is not UTF-8"))?,
        );
        if asking == Asking::New && value.is_empty() {
            bail!("{env} is empty: a new passphrase must not be");
        }
        return Ok(value);
    }
    // The prompt reads the controlling terminal, not standard input (which may carry a post).
    if std::fs::File::open("/dev/tty").is_err() {
        bail!("a passphrase is needed and there is no terminal to ask on: set {env}");
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("{prompt}: ")).context("reading the passphrase")?,
    );
    if asking == Asking::New {
        if first.is_empty() {
            bail!("an empty passphrase: nothing was changed");
        }
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").context("reading the passphrase")?,
        );
        if *again != *first {
            bail!("the two passphrases differ: nothing was changed");
        }
    }
    Ok(first)
}

/// The passphrase as a key provider, with the default costs for anything it wraps.
pub fn provider(secret: Zeroizing<String>) -> Arc<dyn KeyProvider> {
    Arc::new(Passphrase::new(secret))
}

/// The key provider a command opening `dir` needs: the passphrase of an encrypted store, or a
/// new one for a store it creates (unless `plain`); none for a plain store.
pub fn provider_for(
    dir: &Path,
    creates: bool,
    plain: bool,
) -> Result<Option<Arc<dyn KeyProvider>>> {
    let prompt = |what: &str| format!("{what} for {}", dir.display());
    if is_encrypted(dir) {
        let secret = read(PASSPHRASE_ENV, &prompt("Passphrase"), Asking::Open)?;
        return Ok(Some(provider(secret)));
    }
    if creates && !plain && !has_store(dir) {
        let secret = read(PASSPHRASE_ENV, &prompt("New passphrase"), Asking::New)?;
        return Ok(Some(provider(secret)));
    }
    Ok(None)
}
