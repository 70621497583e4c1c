//! Opening the LMDB environment and growing its map: the only unsafe code in the store.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use heed::types::Bytes;
use heed::{CommitOrAbort, DatabaseFlags, Env, EnvOpenOptions, WithoutTls};

use crate::error::{OpenError, WriteError};
use crate::merkle;
use crate::seal::{Cipher, Slot, SUITE};
use crate::subscribe::Subscribers;
use crate::tables::{self, Tables, DUP_TABLES, MAGIC, META_INDEX, NAMES, STORE_FORMAT, TABLES};
use crate::{data_file, StoreOptions, FOREIGN_FILES_ALLOWED};

/// Everything the writer and the readers share.
pub(crate) struct Shared {
    pub env: Env<WithoutTls>,
    pub tables: Tables,
    /// Plain, or the keys rows are sealed and looked up with.
    pub cipher: Cipher,
    pub path: PathBuf,
    pub gate: ReaderGate,
    pub subscribers: Subscribers,
    pub read_only: bool,
    /// Held by the writer through each write transaction and by whoever changes the map
    /// size: a reader adopting a map another process grew must not remap under a writer.
    pub resize_lock: Mutex<()>,
    /// How long a map change waits for readers to finish.
    pub resize_wait: Duration,
}

/// Counts open read transactions so the writer can grow the map only when none is open: LMDB
/// unmaps the old region on resize, which would leave readers' views dangling.
#[derive(Default)]
pub(crate) struct ReaderGate {
    readers: Mutex<usize>,
    idle: Condvar,
}

impl ReaderGate {
    pub(crate) fn enter(&self) {
        *self.readers.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    pub(crate) fn leave(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        *readers -= 1;
        if *readers == 0 {
            self.idle.notify_all();
        }
    }
}

/// Whether an open may create the directory and the store.
fn creates(options: &StoreOptions) -> bool {
    options.create && !options.read_only
}

fn check_dir(dir: &Path, options: &StoreOptions) -> Result<bool, OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_owned(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(OpenError::NotADirectory {
                path: dir.to_owned(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && creates(options) => {
            std::fs::create_dir_all(dir).map_err(|source| classify_io(dir, source))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::Missing {
                path: dir.to_owned(),
            });
        }
        Err(e) => return Err(io(e)),
    }
    let exists = data_file(dir).exists();
    if !exists {
        if !creates(options) {
            return Err(OpenError::Missing {
                path: dir.to_owned(),
            });
        }
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if name != "lock.mdb" && !FOREIGN_FILES_ALLOWED.contains(&name.as_ref()) {
                return Err(OpenError::NotOurs {
                    path: dir.to_owned(),
                    reason: format!("it already holds {name:?} and no store"),
                });
            }
        }
    }
    Ok(exists)
}

fn classify_io(dir: &Path, source: std::io::Error) -> OpenError {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => OpenError::ReadOnly {
            path: dir.to_owned(),
            source,
        },
        _ => OpenError::Io {
            path: dir.to_owned(),
            source,
        },
    }
}

fn classify_heed(dir: &Path, e: heed::Error) -> OpenError {
    match e {
        heed::Error::Io(source) => classify_io(dir, source),
        heed::Error::Mdb(heed::MdbError::Invalid)
        | heed::Error::Mdb(heed::MdbError::VersionMismatch) => OpenError::NotOurs {
            path: dir.to_owned(),
            reason: "data.mdb is not an LMDB file we can read".into(),
        },
        heed::Error::Mdb(heed::MdbError::Other(code)) if code == 13 || code == 30 || code == 1 => {
            OpenError::ReadOnly {
                path: dir.to_owned(),
                source: std::io::Error::from_raw_os_error(code),
            }
        }
        other => OpenError::Lmdb {
            path: dir.to_owned(),
            source: other,
        },
    }
}

pub(crate) fn open(dir: &Path, options: &StoreOptions) -> Result<Shared, OpenError> {
    let existed = check_dir(dir, options)?;
    // LMDB creates its lock file before anything tells the file is not ours: a refused
    // directory keeps no trace of the attempt.
    let lock = dir.join("lock.mdb");
    let lock_existed = lock.exists();
    let opened = open_env(dir, options, existed);
    if matches!(opened, Err(OpenError::NotOurs { .. })) && !lock_existed {
        let _ = std::fs::remove_file(&lock);
    }
    opened
}

/// Opens the LMDB environment of a directory `check_dir` accepted, and its tables.
fn open_env(dir: &Path, options: &StoreOptions, existed: bool) -> Result<Shared, OpenError> {
    let page = page_size();
    let map = options.map_bytes_initial.max(page).div_ceil(page) * page;
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder
        .map_size(map)
        .max_dbs(NAMES.len() as u32 + 2)
        .max_readers(512);
    if options.read_only {
        // SAFETY: READ_ONLY only restricts what this environment may do.
        unsafe { builder.flags(heed::EnvFlags::READ_ONLY) };
    }
    // SAFETY: heed's requirement is that the same file is not opened twice by this process
    // without going through heed (which would break LMDB's lock table) and that the file is
    // not truncated under us. Stores are opened only here, one environment per directory.
    let env = unsafe { builder.open(dir) }.map_err(|e| classify_heed(dir, e))?;
    // The file may already be larger than the requested map: the map must cover it.
    let file_bytes = std::fs::metadata(data_file(dir))
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    // A file cut short (a copy that stopped, a damaged disk) still has its meta pages, which
    // name pages past its end: reading one through the map would kill the process (SIGBUS).
    // LMDB reads only the meta pages before this point.
    let page = env.unnamed_database_stat().page_size as usize;
    let needed = (env.info().last_page_number + 1).saturating_mul(page);
    if existed && file_bytes < needed {
        return Err(OpenError::Truncated {
            path: dir.to_owned(),
            bytes: file_bytes as u64,
            needed: needed as u64,
        });
    }
    if file_bytes > env.info().map_size {
        grow_unchecked(&env, file_bytes.next_power_of_two()).map_err(|e| classify_heed(dir, e))?;
    }
    // A process killed between LMDB creating data.mdb and our first commit leaves a file with
    // no tables at all: nothing to lose, so it is finished as a new store, not refused.
    let existed = existed && env.unnamed_database_stat().entries > 0;
    let cipher = Cipher::new(options.key.as_ref());
    let tables = if options.read_only {
        open_tables(&env, dir)?
    } else {
        create_tables(&env, dir, existed, &cipher)?
    };
    let format = check_meta(&env, &tables, dir, existed)?;
    check_cipher(&env, &tables, dir, &cipher)?;
    if format < STORE_FORMAT {
        // Read-only opens of older formats were refused by open_tables.
        debug_assert!(!options.read_only);
        upgrade(&env, &tables, dir, format)?;
    }
    Ok(Shared {
        env,
        tables,
        cipher,
        path: dir.to_owned(),
        gate: ReaderGate::default(),
        subscribers: Subscribers::default(),
        read_only: options.read_only,
        resize_lock: Mutex::new(()),
        resize_wait: Duration::from_millis(options.resize_wait_ms),
    })
}

fn flags_of(name: &str) -> DatabaseFlags {
    if DUP_TABLES.contains(&name) {
        DatabaseFlags::DUP_SORT | DatabaseFlags::DUP_FIXED
    } else {
        DatabaseFlags::empty()
    }
}

fn create_tables(
    env: &Env<WithoutTls>,
    dir: &Path,
    existed: bool,
    cipher: &Cipher,
) -> Result<Tables, OpenError> {
    let wtxn = env.write_txn().map_err(|e| classify_heed(dir, e))?;
    let tables = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
            if existed {
                // Refuse an LMDB file that lacks our marker before creating anything in it.
                let meta = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("meta")
                    .open(wtxn)?;
                let ours = match meta {
                    Some(meta) => meta.get(wtxn, tables::META_MAGIC)? == Some(MAGIC),
                    None => false,
                };
                if !ours {
                    return Ok(CommitOrAbort::Abort(()));
                }
            }
            let mut out = Vec::with_capacity(NAMES.len());
            for name in NAMES {
                let table: heed::Database<'_, Bytes, Bytes> = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name(name)
                    .flags(flags_of(name))
                    .create(wtxn)?;
                out.push(table);
            }
            let Ok(arr) = <[heed::Database<'_, Bytes, Bytes>; TABLES]>::try_from(out) else {
                unreachable!("one table per name")
            };
            if !existed {
                let meta = arr[META_INDEX];
                meta.put(wtxn, tables::META_MAGIC, MAGIC)?;
                meta.put(wtxn, tables::META_FORMAT, &STORE_FORMAT.to_le_bytes())?;
                meta.put(wtxn, tables::META_NEXT_SEQ, &1u64.to_be_bytes())?;
                let seal = |key: &[u8], value: &[u8]| {
                    cipher
                        .seal(Slot::Meta, key, value)
                        .map(|v| v.into_owned())
                        .map_err(|e| heed::Error::Io(std::io::Error::other(e.to_string())))
                };
                let merkle_meta = seal(merkle::META_MERKLE, &merkle::TreeMeta::EMPTY.encode())?;
                meta.put(wtxn, merkle::META_MERKLE, &merkle_meta)?;
                if cipher.is_sealed() {
                    meta.put(wtxn, tables::META_CIPHER, SUITE)?;
                    let check = seal(tables::META_KEY_CHECK, tables::KEY_CHECK)?;
                    meta.put(wtxn, tables::META_KEY_CHECK, &check)?;
                }
            }
            Ok(CommitOrAbort::Commit(arr))
        })
        .map_err(|e| classify_heed(dir, e))?;
    match tables {
        CommitOrAbort::Commit(arr) => Ok(Tables::from_array(arr)),
        CommitOrAbort::Abort(()) => Err(not_ours(dir)),
    }
}

fn not_ours(dir: &Path) -> OpenError {
    OpenError::NotOurs {
        path: dir.to_owned(),
        reason: "data.mdb is an LMDB file without the Xaeroflux marker".into(),
    }
}

/// Why a read-only open found no usable tables.
enum Unusable {
    NotOurs,
    NeedsUpgrade(u32),
}

fn open_tables(env: &Env<WithoutTls>, dir: &Path) -> Result<Tables, OpenError> {
    let rtxn = env.read_txn().map_err(|e| classify_heed(dir, e))?;
    let opened = env
        .open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_, heed::Error> {
            let open = |name: &str| {
                opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name(name)
                    .flags(flags_of(name))
                    .open(rtxn)
            };
            // An older store lacks tables a read-only open cannot create: say so, rather
            // than calling it foreign.
            let Some(meta) = open("meta")? else {
                return Ok(CommitOrAbort::Abort(Unusable::NotOurs));
            };
            let format = meta
                .get(rtxn, tables::META_FORMAT)?
                .and_then(|f| <[u8; 4]>::try_from(f).ok())
                .map(u32::from_le_bytes);
            if let Some(format) = format.filter(|f| (1..STORE_FORMAT).contains(f)) {
                return Ok(CommitOrAbort::Abort(Unusable::NeedsUpgrade(format)));
            }
            let mut out = Vec::with_capacity(NAMES.len());
            for name in NAMES {
                match open(name)? {
                    Some(t) => out.push(t),
                    None => return Ok(CommitOrAbort::Abort(Unusable::NotOurs)),
                }
            }
            let Ok(arr) = <[heed::Database<'_, Bytes, Bytes>; TABLES]>::try_from(out) else {
                unreachable!("one table per name")
            };
            Ok(CommitOrAbort::Commit(arr))
        })
        .map_err(|e| classify_heed(dir, e))?;
    match opened {
        CommitOrAbort::Commit(arr) => Ok(Tables::from_array(arr)),
        CommitOrAbort::Abort(Unusable::NotOurs) => Err(not_ours(dir)),
        CommitOrAbort::Abort(Unusable::NeedsUpgrade(got)) => Err(OpenError::NeedsUpgrade {
            path: dir.to_owned(),
            got,
            current: STORE_FORMAT,
        }),
    }
}

/// Times the upgrade grows the map and retries before giving up.
const UPGRADE_GROWTHS_MAX: u32 = 16;

/// Brings a format-1 store to the current format in one transaction: builds the Merkle index
/// from the stored events and records the new format. The tables it needs were created empty
/// by `create_tables`; a crash before the commit leaves format 1, and the next open redoes it.
fn upgrade(
    env: &Env<WithoutTls>,
    tables: &Tables,
    dir: &Path,
    format: u32,
) -> Result<(), OpenError> {
    debug_assert_eq!((format, STORE_FORMAT), (1, 2));
    let failed = |reason: String| OpenError::UpgradeFailed {
        path: dir.to_owned(),
        from: format,
        reason,
    };
    for _ in 0..UPGRADE_GROWTHS_MAX {
        let mut wtxn = env.write_txn().map_err(|e| classify_heed(dir, e))?;
        let done = merkle::rebuild(tables, &Cipher::Plain, &mut wtxn).and_then(|_| {
            tables
                .meta
                .put(&mut wtxn, tables::META_FORMAT, &STORE_FORMAT.to_le_bytes())?;
            Ok(wtxn.commit()?)
        });
        match done {
            Ok(()) => return Ok(()),
            Err(merkle::MerkleError::Heed(heed::Error::Mdb(heed::MdbError::MapFull))) => {
                // No transaction is open: the map may move.
                let size = env.info().map_size.saturating_mul(2);
                grow_unchecked(env, size).map_err(|e| classify_heed(dir, e))?;
            }
            Err(merkle::MerkleError::Heed(e)) => return Err(classify_heed(dir, e)),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Err(failed("the map could not grow enough".into()))
}

/// Checks the marker and returns the store's format.
fn check_meta(
    env: &Env<WithoutTls>,
    tables: &Tables,
    dir: &Path,
    existed: bool,
) -> Result<u32, OpenError> {
    let rtxn = env.read_txn().map_err(|e| classify_heed(dir, e))?;
    let magic = tables
        .meta
        .get(&rtxn, tables::META_MAGIC)
        .map_err(|e| classify_heed(dir, e))?;
    if magic != Some(MAGIC) {
        debug_assert!(existed);
        return Err(not_ours(dir));
    }
    let format = tables
        .meta
        .get(&rtxn, tables::META_FORMAT)
        .map_err(|e| classify_heed(dir, e))?;
    let format = format
        .and_then(|f| f.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| OpenError::NotOurs {
            path: dir.to_owned(),
            reason: "store format marker is missing".into(),
        })?;
    if format > STORE_FORMAT {
        return Err(OpenError::UnsupportedFormat {
            got: format,
            supported: STORE_FORMAT,
        });
    }
    if format == 0 {
        return Err(OpenError::NotOurs {
            path: dir.to_owned(),
            reason: "store format 0 does not exist".into(),
        });
    }
    Ok(format)
}

/// Checks that the store is sealed exactly when a key was given, and with that key: before
/// anything is written to it.
fn check_cipher(
    env: &Env<WithoutTls>,
    tables: &Tables,
    dir: &Path,
    cipher: &Cipher,
) -> Result<(), OpenError> {
    let rtxn = env.read_txn().map_err(|e| classify_heed(dir, e))?;
    let get = |key: &[u8]| {
        tables
            .meta
            .get(&rtxn, key)
            .map_err(|e| classify_heed(dir, e))
    };
    let path = || dir.to_owned();
    match (get(tables::META_CIPHER)?, cipher.is_sealed()) {
        (None, false) => Ok(()),
        (None, true) => Err(OpenError::NotEncrypted { path: path() }),
        (Some(_), false) => Err(OpenError::KeyRequired { path: path() }),
        (Some(suite), true) if suite != SUITE => Err(OpenError::NotOurs {
            path: path(),
            reason: format!(
                "it is encrypted with {:?}, which this build does not know",
                String::from_utf8_lossy(suite)
            ),
        }),
        (Some(_), true) => {
            let stored = get(tables::META_KEY_CHECK)?.ok_or_else(|| OpenError::NotOurs {
                path: path(),
                reason: "its key check is missing".into(),
            })?;
            match cipher.open_vec(Slot::Meta, tables::META_KEY_CHECK, stored) {
                Ok(plain) if plain == tables::KEY_CHECK => Ok(()),
                _ => Err(OpenError::WrongKey { path: path() }),
            }
        }
    }
}

/// The system page size: map sizes must be a multiple of it (16 KiB on Apple silicon).
pub(crate) fn page_size() -> usize {
    page_size::get()
}

fn grow_unchecked(env: &Env<WithoutTls>, bytes: usize) -> Result<(), heed::Error> {
    let page = page_size();
    let bytes = bytes.div_ceil(page) * page;
    // SAFETY: called only before any transaction exists (open), or holding the resize lock
    // (no write transaction runs: the writer holds it through each) and the reader gate at
    // zero readers (grow_map, adopt_map), so no view into the old map survives the remap.
    unsafe { env.resize(bytes) }
}

/// Doubles the map once no read transaction is open. Called by the writer thread, between
/// transactions, after LMDB answered MDB_MAP_FULL (or MDB_MAP_RESIZED: another process grew
/// the file past this process's map).
pub(crate) fn grow_map(shared: &Shared, wait: Duration) -> Result<usize, WriteError> {
    let _resizing = shared.resize_lock.lock().unwrap_or_else(|p| p.into_inner());
    let new_size = shared.env.info().map_size.saturating_mul(2);
    remap(shared, wait, new_size)?;
    Ok(new_size)
}

/// Takes on the map size another process grew the store to, once no read transaction of this
/// process is open and no write transaction runs. Called by a reader that LMDB answered
/// MDB_MAP_RESIZED.
pub(crate) fn adopt_map(shared: &Shared) -> Result<(), WriteError> {
    let _resizing = shared.resize_lock.lock().unwrap_or_else(|p| p.into_inner());
    // Zero asks LMDB for the size the file's meta page records.
    remap(shared, shared.resize_wait, 0)
}

fn remap(shared: &Shared, wait: Duration, bytes: usize) -> Result<(), WriteError> {
    let deadline = Instant::now() + wait;
    let mut readers = shared
        .gate
        .readers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    while *readers > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WriteError::MapFullReadersBusy { readers: *readers });
        }
        readers = shared
            .gate
            .idle
            .wait_timeout(readers, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    grow_unchecked(&shared.env, bytes).map_err(WriteError::from_heed)?;
    drop(readers);
    Ok(())
}

/// Switches commit-time fsync on or off. Called by the writer thread between transactions.
pub(crate) fn set_relaxed(env: &Env<WithoutTls>, relaxed: bool) -> Result<(), heed::Error> {
    let mode = if relaxed {
        heed::FlagSetMode::Enable
    } else {
        heed::FlagSetMode::Disable
    };
    // SAFETY: mdb_env_set_flags with MDB_NOSYNC is allowed on an open environment; the writer
    // calls it with no write transaction open, and it does not touch the map.
    unsafe { env.set_flags(heed::EnvFlags::NO_SYNC, mode) }
}
