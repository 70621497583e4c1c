//! One error type per operation, each variant with a one-line reason.

use std::path::PathBuf;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path exists but is not a directory. Fix: point `--data` at a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory holds files that are not a Xaeroflux store. Fix: use an empty or new
    /// directory; nothing there was changed.
    #[error("{path} is not a Xaeroflux store: {reason}")]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The store was written by a newer format. Fix: upgrade this program.
    #[error("store format {got} is newer than this build reads ({supported})")]
    UnsupportedFormat {
        /// The store's format.
        got: u32,
        /// Format supported.
        supported: u32,
    },
    /// The store was written in an older format that a read-only open cannot upgrade. Fix: open
    /// it once for writing (any `xf` command that writes, or `Store::open`); that upgrades it.
    #[error("{path} holds a format-{got} store; open it for writing once to upgrade it to format {current}")]
    NeedsUpgrade {
        /// The directory.
        path: PathBuf,
        /// The store's format.
        got: u32,
        /// The format this build reads.
        current: u32,
    },
    /// Upgrading an older store failed: its events are unchanged and it stays at its format.
    /// Fix: the reason names the damage; check the store with the version that wrote it.
    #[error("upgrading {path} from format {from} failed: {reason}")]
    UpgradeFailed {
        /// The directory.
        path: PathBuf,
        /// The store's format.
        from: u32,
        /// What went wrong.
        reason: String,
    },
    /// The directory or its files cannot be written. Fix: check permissions, or open read-only.
    #[error("{path} is read-only: {source}")]
    ReadOnly {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A read-only open, or one told not to create (`StoreOptions::create`), of a directory
    /// that holds no store or does not exist. Nothing was created.
    #[error("there is no store in {path}")]
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// LMDB refused the environment (corrupt file, incompatible page size…).
    #[error("LMDB could not open {path}: {source}")]
    Lmdb {
        /// The directory.
        path: PathBuf,
        /// LMDB's error.
        source: heed::Error,
    },
    /// The data file is shorter than the pages its header names: it was cut short. Nothing
    /// was read past its end. Fix: restore the store from a copy.
    #[error(
        "{path}: data.mdb is {bytes} bytes but its header names {needed}: the file was cut short"
    )]
    Truncated {
        /// The directory.
        path: PathBuf,
        /// Size of the file.
        bytes: u64,
        /// Size its header needs.
        needed: u64,
    },
    /// The store is encrypted and no key was given. Fix: give the store's key (passphrase).
    #[error("{path} holds an encrypted store: a key is needed to open it")]
    KeyRequired {
        /// The directory.
        path: PathBuf,
    },
    /// The key given does not open the store. Nothing was read or changed.
    #[error("the key does not open the encrypted store in {path}")]
    WrongKey {
        /// The directory.
        path: PathBuf,
    },
    /// A key was given for a store that is not encrypted. Fix: open it without a key, or
    /// copy it into a new encrypted store.
    #[error("{path} holds a store that is not encrypted, and a key was given")]
    NotEncrypted {
        /// The directory.
        path: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("could not start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// Why a write failed. A failed batch leaves the store exactly as it was.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The writer has stopped (store closing, or an earlier fatal error).
    #[error("the store's writer has stopped")]
    Closed,
    /// The disk is full. Fix: free space; the batch was not stored.
    #[error("no space left on device: the batch was not stored")]
    DiskFull,
    /// The map needed to grow but readers held it past the wait. Fix: keep read transactions
    /// short, then retry.
    #[error("map full and {readers} read transactions stayed open past the wait")]
    MapFullReadersBusy {
        /// Read transactions open.
        readers: usize,
    },
    /// The batch holds more events than the writer takes at once.
    #[error("batch of {got} events exceeds the limit of {max}")]
    BatchTooLarge {
        /// Events given.
        got: usize,
        /// Limit.
        max: usize,
    },
    /// A stored record failed to decode while updating it: the file is damaged.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// Any other LMDB or I/O error.
    #[error("storage error: {0}")]
    Storage(String),
    /// A value could not be sealed (no randomness for its nonce). The batch was not stored.
    #[error("could not encrypt: {0}")]
    Seal(String),
    /// A record's name is empty or too long. Nothing was submitted.
    #[error("record name of {len} bytes (1 to {max})")]
    RecordName {
        /// The name's length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
}

impl WriteError {
    pub(crate) fn from_heed(e: heed::Error) -> WriteError {
        match &e {
            heed::Error::Io(io) if io.raw_os_error() == Some(28) => WriteError::DiskFull,
            heed::Error::Mdb(heed::MdbError::Other(28)) => WriteError::DiskFull,
            heed::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                WriteError::DiskFull
            }
            _ => WriteError::Storage(e.to_string()),
        }
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A sealed value of an encrypted store fails authentication: the file was damaged or
    /// changed. Nothing wrong is returned in its place. Fix: run `xf verify`.
    #[error("stored {table} row {row} fails authentication: the file is damaged or was changed")]
    Unauthentic {
        /// The table.
        table: &'static str,
        /// The row (a sequence number, or the stored key in hex).
        row: String,
    },
    /// A stored value does not decode: the file is damaged. Fix: run `xf verify`.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A Merkle index page fails validation: the file is damaged. Fix: run `xf verify`.
    #[error("corrupt merkle page {page}: {reason}")]
    CorruptPage {
        /// Page number.
        page: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// LMDB error.
    #[error("storage error: {0}")]
    Storage(#[from] heed::Error),
    /// Another process grew the store and this process could not take on the larger map
    /// (its own read transactions stayed open past the wait). Fix: keep read transactions
    /// short, then retry.
    #[error("the store grew in another process and this process's map could not follow: {0}")]
    Remap(String),
}

/// Why a query was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A filter list is longer than allowed.
    #[error("filter field {field} has {got} values, more than {max}")]
    FilterTooLarge {
        /// The field.
        field: &'static str,
        /// Values given.
        got: usize,
        /// Limit.
        max: usize,
    },
    /// The limit is above the maximum.
    #[error("limit {got} exceeds the maximum of {max}")]
    LimitTooLarge {
        /// Limit asked.
        got: usize,
        /// Maximum.
        max: usize,
    },
    /// `since` is after `until`.
    #[error("since ({since}) is after until ({until})")]
    EmptyRange {
        /// Since.
        since: u64,
        /// Until.
        until: u64,
    },
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<heed::Error> for QueryError {
    fn from(e: heed::Error) -> Self {
        QueryError::Read(ReadError::Storage(e))
    }
}
