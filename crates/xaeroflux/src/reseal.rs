//! A store copied under a new data key: `xf rekey` (a new key for an encrypted store) and
//! `xf encrypt` (a plain store, such as one written by an earlier release, made encrypted).
//!
//! The copy is made beside the data directory (`DIR.reseal`), checked, and then swapped with
//! it in one atomic rename (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames). The old
//! store is removed last. A crash before the swap leaves the old store in place and a partial
//! copy that the next run removes; a crash after it leaves the new store in place and the old
//! one beside it, which the next run removes.

use std::path::{Path, PathBuf};

use xaeroflux_store::keys::{self, KeyError, KeyProvider};
use xaeroflux_store::{DataKey, OpenError, ReadError, Store, StoreOptions};

use crate::identity::{
    load_or_create_seed, write_seed, IdentityFileError, ANON_NETWORK_KEY_FILE, ANON_ONION_KEY_FILE,
    IDENTITY_FILE, NETWORK_KEY_FILE, ONION_KEY_FILE,
};
use crate::ingest::IngestError;
use crate::node::{Node, NodeOpenError};

/// What a reseal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Events copied.
    pub events: u64,
    /// The set's fingerprint, the same before and after.
    pub fingerprint: [u8; 32],
    /// True if the store was encrypted before.
    pub was_encrypted: bool,
}

/// Why a reseal failed. The store in the data directory is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResealError {
    /// The store, or its copy, could not be opened.
    #[error(transparent)]
    Open(#[from] NodeOpenError),
    /// The old key could not be unwrapped (a wrong passphrase is [`KeyError::WrongKey`]), or
    /// the new one could not be made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store is encrypted and no provider for its key was given.
    #[error("{path} holds an encrypted store: its passphrase or key is needed")]
    KeyRequired {
        /// The data directory.
        path: PathBuf,
    },
    /// Reading the old store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Copying the events failed.
    #[error(transparent)]
    Copy(#[from] IngestError),
    /// A key file could not be carried over.
    #[error(transparent)]
    Identity(#[from] IdentityFileError),
    /// The copy does not hold the same set as the original: it was not put in place.
    #[error("the copy holds {copied} events with fingerprint {copied_fp}, the store {events} with {fp}: nothing was changed")]
    Mismatch {
        /// Events in the store.
        events: u64,
        /// Its fingerprint, hex.
        fp: String,
        /// Events in the copy.
        copied: u64,
        /// The copy's fingerprint, hex.
        copied_fp: String,
    },
    /// The conversation state could not be carried over: nothing was changed.
    #[error("conversation state: {0}")]
    Conversations(String),
    /// Files could not be moved or removed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResealError + '_ {
    move |source| ResealError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The directory a copy of `dir` is built in.
pub fn staging_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".reseal");
    dir.with_file_name(name)
}

/// Copies the store in `dir` under a new random data key wrapped by `new`, and puts the copy
/// in its place. `old` unwraps the current key of an encrypted store (it is not used for a
/// plain one). Every event is copied (and verified again), the set's fingerprint is checked
/// equal, and the author's and the network's keys are carried over, sealed under the new key.
/// No node may run on `dir` meanwhile (its lock is taken).
///
/// Not carried over: the record of events dropped as deleted or superseded before they
/// arrived (a peer may offer them again; they are refused again). The peer table and the
/// conversation state are carried over, sealed under the new key.
pub fn reseal(
    dir: &Path,
    old: Option<&dyn KeyProvider>,
    new: &dyn KeyProvider,
    mut progress: impl FnMut(u64),
) -> Result<Resealed, ResealError> {
    let staging = staging_dir(dir);
    if staging.exists() {
        // A copy left by a run that stopped (before or after its swap): the store in `dir`
        // is the one to keep.
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let _lock = crate::node::lock_node(dir)?;
    let old_key = crate::node::existing_key(dir, old).map_err(|e| match e {
        NodeOpenError::KeyRequired { path } => ResealError::KeyRequired { path },
        NodeOpenError::Key(e) => ResealError::Key(e),
        other => ResealError::Open(other),
    })?;
    let was_encrypted = old_key.is_some();
    let source = Store::open_with(
        dir,
        StoreOptions {
            create: false,
            key: old_key.clone(),
            ..StoreOptions::default()
        },
    )
    .map_err(NodeOpenError::from)?;
    let before = source.read()?.set_root()?;

    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let new_key = DataKey::generate().map_err(|e| KeyError::Entropy(e.to_string()))?;
    keys::write_key_file(&staging, &new_key, new)?;
    let copy = Node::builder()
        .data_dir(&staging)
        .store_options(StoreOptions {
            key: Some(new_key.clone()),
            ..StoreOptions::default()
        })
        .open()?;
    let mut failure = None;
    let report = copy.ingest_stream(EventPages::new(&source, &mut failure), 1000, |r| {
        progress(r.stored + r.duplicates)
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    copy.store().sync().map_err(IngestError::from)?;
    let after = copy.store().read()?.set_root()?;
    if after.fingerprint != before.fingerprint || after.accum.count != before.accum.count {
        return Err(ResealError::Mismatch {
            events: before.accum.count,
            fp: hex(&before.fingerprint),
            copied: after.accum.count,
            copied_fp: hex(&after.fingerprint),
        });
    }
    debug_assert_eq!(report.rejected_total, 0);
    crate::convo::carry(&source, copy.store())
        .map_err(|e| ResealError::Conversations(e.to_string()))?;
    drop(copy);
    drop(source);
    carry_key(dir, &staging, IDENTITY_FILE, old_key.as_ref(), &new_key)?;
    carry_key(dir, &staging, NETWORK_KEY_FILE, old_key.as_ref(), &new_key)?;
    carry_key(
        dir,
        &staging,
        ANON_NETWORK_KEY_FILE,
        old_key.as_ref(),
        &new_key,
    )?;
    for name in [
        xaeroflux_net::PEERS_FILE,
        xaeroflux_net::ANON_PEERS_FILE,
        ONION_KEY_FILE,
        ANON_ONION_KEY_FILE,
    ] {
        carry_sealed(dir, &staging, name, old_key.as_ref(), &new_key)?;
    }
    swap(dir, &staging)?;
    // `staging` now holds the old store.
    std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    Ok(Resealed {
        events: before.accum.count,
        fingerprint: before.fingerprint,
        was_encrypted,
    })
}

/// Copies a key seed file, opened under the old key (or in the clear) and sealed under the new;
/// the copy is read back under the new key before the swap.
fn carry_key(
    dir: &Path,
    staging: &Path,
    name: &str,
    old: Option<&DataKey>,
    new: &DataKey,
) -> Result<(), ResealError> {
    let from = dir.join(name);
    if !from.exists() {
        return Ok(());
    }
    // The file exists: this only reads it.
    let (seed, _) = load_or_create_seed(&from, old)?;
    let to = staging.join(name);
    write_seed(&to, &seed, Some(new))?;
    let (back, _) = load_or_create_seed(&to, Some(new))?;
    debug_assert_eq!(*back, *seed);
    Ok(())
}

/// Copies a file the network keeps (a peer table, an onion key), opened under the old key (or
/// in the clear) and sealed under the new.
fn carry_sealed(
    dir: &Path,
    staging: &Path,
    name: &str,
    old: Option<&DataKey>,
    new: &DataKey,
) -> Result<(), ResealError> {
    let bytes = match std::fs::read(dir.join(name)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&dir.join(name))(e)),
    };
    let plain = match old {
        Some(key) => keys::open_secret(key, name, &bytes)?,
        None => zeroize::Zeroizing::new(bytes),
    };
    let to = staging.join(name);
    let sealed = keys::seal_secret(new, name, &plain)?;
    keys::write_private_atomically(&to, &sealed)
        .map_err(|(path, source)| ResealError::Io { path, source })
}

/// Exchanges `dir` and `staging` atomically where the system can, else with two renames.
fn swap(dir: &Path, staging: &Path) -> Result<(), ResealError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, dir, CWD, staging, RenameFlags::EXCHANGE) {
            Ok(()) => return sync_parent(dir),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(io(dir)(e.into())),
        }
    }
    // Two renames: a crash between them leaves the old store at `DIR.old` and the new one
    // at `DIR.reseal`; said in the docs.
    let mut old_name = dir.file_name().unwrap_or_default().to_os_string();
    old_name.push(".old");
    let old = dir.with_file_name(old_name);
    std::fs::rename(dir, &old).map_err(io(dir))?;
    std::fs::rename(staging, dir).map_err(io(staging))?;
    std::fs::rename(&old, staging).map_err(io(&old))?;
    sync_parent(dir)
}

fn sync_parent(dir: &Path) -> Result<(), ResealError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io(&parent))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The events of a store in local order, read a page at a time, each page in a read
/// transaction of its own (an encrypted store's transaction keeps what it opened).
struct EventPages<'a> {
    store: &'a Store,
    after: u64,
    page: std::vec::IntoIter<Vec<u8>>,
    done: bool,
    failure: &'a mut Option<ReadError>,
}

const PAGE_EVENTS: usize = 1000;

impl<'a> EventPages<'a> {
    fn new(store: &'a Store, failure: &'a mut Option<ReadError>) -> EventPages<'a> {
        EventPages {
            store,
            after: 0,
            page: Vec::new().into_iter(),
            done: false,
            failure,
        }
    }

    fn fill(&mut self) -> Result<(), ReadError> {
        let read = self.store.read()?;
        let page = read.changes_since(self.after, PAGE_EVENTS)?;
        match page.last() {
            Some(&(last, _)) => self.after = last,
            None => self.done = true,
        }
        self.page = page
            .into_iter()
            .map(|(_, ev)| ev.to_vec())
            .collect::<Vec<_>>()
            .into_iter();
        Ok(())
    }
}

impl Iterator for EventPages<'_> {
    type Item = Result<Vec<u8>, crate::ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ev) = self.page.next() {
                return Some(Ok(ev));
            }
            if self.done || self.failure.is_some() {
                return None;
            }
            if let Err(e) = self.fill() {
                *self.failure = Some(e);
                return None;
            }
        }
    }
}

// An `OpenError` of the copy reads as the node's.
impl From<OpenError> for ResealError {
    fn from(e: OpenError) -> Self {
        ResealError::Open(NodeOpenError::Open(e))
    }
}
