//! The layout a careful engineer would write first on LMDB, much like strfry's: the event bytes
//! under their id, and one index per query shape whose keys are plain big-endian composites
//! ending in `created_at ‖ id`, with empty values.

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, WithoutTls};
use xaeroflux_event::EventRef;

use super::{distinct, BaselineError};

/// Address space reserved for the map; the file only grows with the data.
const MAP_BYTES: usize = if cfg!(target_pointer_width = "64") {
    64 << 30
} else {
    1 << 30
};
const DATABASES: u32 = 6;
/// `created_at BE ‖ id`: the common suffix of every index key.
const SUFFIX_BYTES: usize = 8 + 32;
/// Longest index key: a 32-byte prefix and the suffix.
const KEY_BYTES_MAX: usize = 32 + SUFFIX_BYTES;

type Table = Database<'static, Bytes, Bytes>;

/// A plain LMDB event store (see the module docs for the layout).
pub struct PlainHeed {
    env: Env<WithoutTls>,
    dir: PathBuf,
    /// id → encoded event.
    events: Table,
    /// `created_at ‖ id` → ().
    by_time: Table,
    /// `author ‖ created_at ‖ id` → ().
    by_author: Table,
    /// `kind BE4 ‖ created_at ‖ id` → ().
    by_kind: Table,
    /// `topic ‖ created_at ‖ id` → (), for events in a topic.
    by_topic: Table,
    /// `reference ‖ created_at ‖ id` → (), for events that reference another.
    by_reference: Table,
}

/// Opens an LMDB environment (this one and the layout copy's): the crate's only unsafe call
/// besides the counting allocator.
#[allow(unsafe_code)]
pub(crate) fn open_env(dir: &Path) -> heed::Result<Env<WithoutTls>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_BYTES).max_dbs(DATABASES);
    // SAFETY: the map is only unsound if the file is changed behind LMDB's back. The directory
    // belongs to this benchmark store alone, nothing else in the process opens it, and LMDB's
    // lock file keeps other processes in step. No unsafe flags (NO_LOCK, NO_SYNC) are set.
    unsafe { options.open(dir) }
}

impl PlainHeed {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<PlainHeed, BaselineError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let env = open_env(dir)?;
        let wtxn = env.write_txn()?;
        let tables = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let mut create = |name| opener.create_database::<Bytes, Bytes>(wtxn, Some(name));
                let tables = (
                    create("events")?,
                    create("time")?,
                    create("author")?,
                    create("kind")?,
                    create("topic")?,
                    create("reference")?,
                );
                Ok(CommitOrAbort::<_, ()>::Commit(tables))
            })?
            .unwrap_commit();
        let (events, by_time, by_author, by_kind, by_topic, by_reference) = tables;
        Ok(PlainHeed {
            env,
            dir: dir.to_path_buf(),
            events,
            by_time,
            by_author,
            by_kind,
            by_topic,
            by_reference,
        })
    }

    /// Stores encoded events (already verified by the caller) in one durable transaction.
    /// Storing an event again rewrites the same keys and changes nothing.
    pub fn ingest(&mut self, events: &[&[u8]]) -> Result<(), BaselineError> {
        let mut wtxn = self.env.write_txn()?;
        let mut key = [0u8; KEY_BYTES_MAX];
        for bytes in events {
            let event = EventRef::decode(bytes)?;
            let id = &event.id().0;
            let suffix = suffix(&event);
            self.events.put(&mut wtxn, id, bytes)?;
            self.by_time.put(&mut wtxn, &suffix, &[])?;
            self.by_author.put(
                &mut wtxn,
                compose(&mut key, &event.author().0, &suffix),
                &[],
            )?;
            let kind = event.kind().get().to_be_bytes();
            self.by_kind
                .put(&mut wtxn, compose(&mut key, &kind, &suffix), &[])?;
            if !event.topic().is_zero() {
                self.by_topic
                    .put(&mut wtxn, compose(&mut key, &event.topic().0, &suffix), &[])?;
            }
            if !event.reference().is_zero() {
                self.by_reference.put(
                    &mut wtxn,
                    compose(&mut key, &event.reference().0, &suffix),
                    &[],
                )?;
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// A copy of the event with this id.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, BaselineError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.get_in(&rtxn, id)?.map(<[u8]>::to_vec))
    }

    /// Begins a read transaction for [`PlainHeed::get_in`].
    pub fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>, BaselineError> {
        Ok(self.env.read_txn()?)
    }

    /// The event with this id, borrowed from the map for as long as `rtxn` lives: no copy.
    pub fn get_in<'t>(
        &self,
        rtxn: &'t RoTxn<'_, WithoutTls>,
        id: &[u8; 32],
    ) -> Result<Option<&'t [u8]>, BaselineError> {
        Ok(self.events.get(rtxn, id)?)
    }

    /// Calls `f` on the event with this id, borrowed in place inside a fresh read transaction.
    pub fn get_with<R>(
        &self,
        id: &[u8; 32],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, BaselineError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.get_in(&rtxn, id)?.map(f))
    }

    /// Ids of the newest `limit` events by any of `authors`, newest first (ties: larger id
    /// first). A k-way merge over one reverse prefix scan per author.
    pub fn feed(&self, authors: &[[u8; 32]], limit: usize) -> Result<Vec<[u8; 32]>, BaselineError> {
        let authors = distinct(authors);
        let rtxn = self.env.read_txn()?;
        let mut scans = Vec::with_capacity(authors.len());
        // Max-heap of each scan's current key suffix; the scan index breaks no real ties
        // because suffixes end in the event id.
        let mut heads = BinaryHeap::with_capacity(authors.len());
        for (source, author) in authors.iter().enumerate() {
            let mut scan = self.by_author.rev_prefix_iter(&rtxn, author)?;
            if let Some((key, _)) = scan.next().transpose()? {
                heads.push((key_suffix(key), source));
            }
            scans.push(scan);
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let Some((suffix, source)) = heads.pop() else {
                break;
            };
            out.push(suffix[8..].try_into().expect("suffix ends in a 32-byte id"));
            if let Some((key, _)) = scans[source].next().transpose()? {
                heads.push((key_suffix(key), source));
            }
        }
        Ok(out)
    }

    /// Size of the data file (the lock file holds no data and is not counted).
    pub fn disk_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("data.mdb")).map_or(0, |m| m.len())
    }
}

impl std::fmt::Debug for PlainHeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainHeed")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// `created_at BE ‖ id`, the shared tail of every index key.
fn suffix(event: &EventRef<'_>) -> [u8; SUFFIX_BYTES] {
    let mut out = [0u8; SUFFIX_BYTES];
    out[..8].copy_from_slice(&event.created_at().to_be_bytes());
    out[8..].copy_from_slice(&event.id().0);
    out
}

/// Writes `prefix ‖ suffix` into `buf` and returns the key.
fn compose<'b>(
    buf: &'b mut [u8; KEY_BYTES_MAX],
    prefix: &[u8],
    suffix: &[u8; SUFFIX_BYTES],
) -> &'b [u8] {
    let len = prefix.len() + SUFFIX_BYTES;
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..len].copy_from_slice(suffix);
    &buf[..len]
}

/// The `created_at ‖ id` tail of an author index key.
fn key_suffix(key: &[u8]) -> [u8; SUFFIX_BYTES] {
    assert_eq!(
        key.len(),
        KEY_BYTES_MAX,
        "author index key of unexpected length"
    );
    key[32..].try_into().expect("length checked")
}
