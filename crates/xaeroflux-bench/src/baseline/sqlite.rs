//! The same store as most applications would write it on SQLite: one row per event, an index
//! per query shape, WAL journal, `synchronous=FULL` so a commit is durable.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use xaeroflux_event::EventRef;

use super::{distinct, BaselineError};

/// A rowid table, not `WITHOUT ROWID`: rows of ~500 bytes are far above the size where SQLite
/// recommends `WITHOUT ROWID`, and secondary indexes then carry an 8-byte rowid instead of the
/// 32-byte id. Each index ends in `id`, like the LMDB baseline's keys: that gives the same
/// newest-first order with ties broken by id, and makes the feed query covering (without it,
/// `ORDER BY created_at DESC, id DESC` sorts every row of the followed authors: ~90 ms instead
/// of ~0.25 ms per feed on 100,000 events). Zero topics and references are stored as NULL and
/// left out of their indexes, as in the LMDB baseline.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    author BLOB NOT NULL,
    kind INTEGER NOT NULL,
    topic BLOB,
    reference BLOB,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created_at ON events(created_at, id);
CREATE INDEX IF NOT EXISTS events_author ON events(author, created_at, id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, created_at, id);
CREATE INDEX IF NOT EXISTS events_topic ON events(topic, created_at, id) WHERE topic IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_reference ON events(reference, created_at, id) WHERE reference IS NOT NULL;
";

const INSERT: &str =
    "INSERT OR IGNORE INTO events (id, created_at, author, kind, topic, reference, raw)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SELECT_RAW: &str = "SELECT raw FROM events WHERE id = ?1";
/// Prepared feed statements kept per distinct author count.
const STATEMENT_CACHE_MAX: usize = 64;

/// An SQLite event store.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) the store `events.sqlite3` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Sqlite, BaselineError> {
        std::fs::create_dir_all(dir.as_ref())?;
        let path = dir.as_ref().join("events.sqlite3");
        let conn = Connection::open(&path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        assert_eq!(mode.to_ascii_lowercase(), "wal", "SQLite refused WAL mode");
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_MAX);
        Ok(Sqlite { conn, path })
    }

    /// Stores encoded events (already verified by the caller) in one durable transaction.
    /// Events already present are skipped.
    pub fn ingest(&mut self, events: &[&[u8]]) -> Result<(), BaselineError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for bytes in events {
                let event = EventRef::decode(bytes)?;
                let created_at = i64::try_from(event.created_at()).unwrap_or(i64::MAX);
                let topic = Some(&event.topic().0).filter(|_| !event.topic().is_zero());
                let reference = Some(&event.reference().0).filter(|_| !event.reference().is_zero());
                insert.execute(params![
                    &event.id().0,
                    created_at,
                    &event.author().0,
                    event.kind().get(),
                    topic,
                    reference,
                    bytes,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A copy of the event with this id.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, BaselineError> {
        let mut select = self.conn.prepare_cached(SELECT_RAW)?;
        Ok(select.query_row([id], |row| row.get(0)).optional()?)
    }

    /// Calls `f` on the event with this id, borrowed from SQLite's row buffer: no copy.
    pub fn get_with<R>(
        &self,
        id: &[u8; 32],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, BaselineError> {
        let mut select = self.conn.prepare_cached(SELECT_RAW)?;
        let mut rows = select.query([id])?;
        match rows.next()? {
            Some(row) => Ok(Some(f(row
                .get_ref(0)?
                .as_blob()
                .map_err(rusqlite::Error::from)?))),
            None => Ok(None),
        }
    }

    /// Ids of the newest `limit` events by any of `authors`, newest first (ties: larger id
    /// first).
    ///
    /// One statement, `author IN (…) ORDER BY created_at DESC, id DESC LIMIT ?`, prepared once
    /// per author count. It is the faster of the two obvious forms: on 100,000 generated events
    /// (1,000 authors, feeds of real follow lists, limit 50) its median was ~0.26 ms against
    /// ~2.4 ms for a `UNION ALL` of per-author `ORDER BY … LIMIT` subqueries.
    pub fn feed(&self, authors: &[[u8; 32]], limit: usize) -> Result<Vec<[u8; 32]>, BaselineError> {
        let authors = distinct(authors);
        if authors.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; authors.len()].join(",");
        let sql = format!(
            "SELECT id FROM events WHERE author IN ({placeholders}) ORDER BY created_at DESC, id DESC LIMIT ?"
        );
        let mut select = self.conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params = authors
            .iter()
            .map(|a| a as &dyn rusqlite::ToSql)
            .chain([&limit as &dyn rusqlite::ToSql]);
        let ids = select.query_map(rusqlite::params_from_iter(params), |row| {
            row.get::<_, [u8; 32]>(0)
        })?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Size of the database file plus its write-ahead log.
    pub fn disk_bytes(&self) -> u64 {
        let wal = self.path.with_extension("sqlite3-wal");
        [&self.path, &wal]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
