//! The Xaeroflux event store: an append-only LMDB environment (through heed) holding verified
//! events, their social indexes, tombstones and replaceable-event heads.
//!
//! - One environment per data directory; `docs/format.md` gives every table's layout.
//! - All writes go through one writer thread fed by a bounded channel. It group-commits every
//!   batch waiting in the queue into one transaction and acknowledges each batch only once that
//!   transaction is durable.
//! - Every stored event's `(created_at, id)` is also kept in a two-tier Merkle index of 16 KiB
//!   pages, updated in the same transaction, so the fingerprint, rank and members of any key
//!   range are read in O(log n) pages ([`ReadTxn::set_accumulate`] and its siblings).
//! - Reads run on any thread inside a [`ReadTxn`] and return [`EventRef`] views that borrow the
//!   memory map: a point read copies nothing and allocates nothing.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod env;
mod error;
pub mod keys;
mod merkle;
mod query;
mod read;
mod seal;
mod staged;
mod subscribe;
mod sync_view;
mod tables;
mod writer;

pub use check::CheckReport;
pub use error::{OpenError, QueryError, ReadError, WriteError};
pub use query::{
    Filter, Thread, ThreadEntry, FILTER_VALUES_MAX, QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX,
};
pub use read::{Footprint, ReadTxn, SetRoot, Stats, TableStats};
pub use seal::{DataKey, DATA_KEY_BYTES, SEAL_OVERHEAD};
pub use subscribe::{StoredEvent, Subscription, SubscriptionError};
pub use sync_view::ScopedStore;
pub use writer::{
    Durability, FlushTicket, FollowTicket, Followed, Outcome, Record, Ticket, RECORD_NAME_MAX,
};
pub use xaeroflux_event::EventRef;
pub use xaeroflux_event::{Accum, SetBoundary, SetKey, SET_KEY_BYTES, SUM_BYTES};
pub use xaeroflux_sync::Scope;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xaeroflux_event::VerifiedEvent;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Initial size of the memory map. Only address space: the file grows with the data, and the
    /// map doubles whenever a write finds it full.
    pub map_bytes_initial: usize,
    /// Batches that may wait for the writer before `submit` blocks (back-pressure).
    pub queue_batches_max: usize,
    /// Events the writer folds into one transaction at most.
    pub batch_events_max: usize,
    /// How long the writer waits for readers to finish before growing the map.
    pub resize_wait_ms: u64,
    /// Open without writing: no writer thread, every write fails with `ReadOnly`.
    pub read_only: bool,
    /// Create the directory and the store when there is none (the default). Without it, or
    /// with `read_only`, a directory holding no store is refused with [`OpenError::Missing`]
    /// and nothing is created: what read commands want.
    pub create: bool,
    /// The data key of an encrypted store: given when it is created, it makes the store
    /// encrypted; an encrypted store opens only with it (`OpenError::KeyRequired`,
    /// `OpenError::WrongKey`) and a plain one only without it (`OpenError::NotEncrypted`).
    pub key: Option<DataKey>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            map_bytes_initial: if cfg!(target_pointer_width = "64") {
                1 << 30
            } else {
                256 << 20
            },
            queue_batches_max: 1024,
            batch_events_max: 32 * 1024,
            resize_wait_ms: 30_000,
            read_only: false,
            create: true,
            key: None,
        }
    }
}

/// An open store. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<writer::Handle>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, OpenError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, OpenError> {
        let shared = env::open(dir.as_ref(), &options)?;
        let handle = writer::Handle::start(Arc::new(shared), &options)?;
        Ok(Store {
            inner: Arc::new(handle),
        })
    }

    /// True if the store is encrypted (opened with its data key).
    pub fn is_encrypted(&self) -> bool {
        self.inner.shared.cipher.is_sealed()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Queues verified events for writing and returns at once (blocking only while the queue
    /// is full). The ticket resolves when the batch is stored — durably unless `Relaxed`.
    pub fn submit(
        &self,
        events: Vec<VerifiedEvent>,
        durability: Durability,
    ) -> Result<Ticket, WriteError> {
        self.inner.submit(events, Vec::new(), durability)
    }

    /// Like [`Store::submit`], with records written in the same transaction: the events and
    /// the records are stored together or not at all.
    pub fn submit_with_records(
        &self,
        events: Vec<VerifiedEvent>,
        records: Vec<Record>,
        durability: Durability,
    ) -> Result<Ticket, WriteError> {
        self.inner.submit(events, records, durability)
    }

    /// Writes verified events durably and returns one outcome per event, in order.
    pub fn ingest(&self, events: Vec<VerifiedEvent>) -> Result<Vec<Outcome>, WriteError> {
        self.submit(events, Durability::Durable)?.wait()
    }

    /// Begins a read transaction: a consistent snapshot for as long as it lives. Keep it short:
    /// the map cannot grow while any read transaction is open.
    pub fn read(&self) -> Result<ReadTxn<'_>, ReadError> {
        ReadTxn::begin(&self.inner.shared)
    }

    /// Receives, over a channel bounded to `capacity`, every event stored from now on that
    /// matches `filter`. A slow subscriber never stalls the writer: on overflow it catches up
    /// from the store's log, so it still sees every event, in order.
    pub fn subscribe(&self, filter: Filter, capacity: usize) -> Result<Subscription, QueryError> {
        filter.validate()?;
        Ok(subscribe::Subscription::new(self.clone(), filter, capacity))
    }

    /// Events that other processes stored since the previous call (the first call only starts
    /// following), up to `events_max` of them; the rest waits for the next call. A node uses it to gossip what `xf post` stored beside it. The
    /// writer answers between transactions: wait on the ticket off latency-critical threads,
    /// or poll it with [`FollowTicket::try_wait`].
    pub fn follow(&self, events_max: usize) -> Result<FollowTicket, WriteError> {
        self.inner.follow(events_max)
    }

    /// Asks the writer thread to force everything committed so far to disk, and returns at
    /// once: the ticket resolves after the fsync (awaitable, so a network thread never waits
    /// on the disk).
    pub fn flush(&self) -> Result<FlushTicket, WriteError> {
        self.inner.flush()
    }

    /// Forces everything committed so far to disk (useful after `Relaxed` writes).
    pub fn sync(&self) -> Result<(), WriteError> {
        self.inner
            .shared
            .env
            .force_sync()
            .map_err(WriteError::from_heed)
    }

    pub(crate) fn shared(&self) -> &Arc<env::Shared> {
        &self.inner.shared
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// Files a data directory may hold besides the LMDB files before the store claims it.
pub const FOREIGN_FILES_ALLOWED: &[&str] = &[
    "identity.key",
    "identity.key.tmp",
    "node.lock",
    "node.sock",
    "convo.lock",
    keys::KEY_FILE,
    "data.tmp",
];

fn data_file(dir: &Path) -> PathBuf {
    dir.join("data.mdb")
}
