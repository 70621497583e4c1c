//! A copy of the store's table layout in plain heed (`docs/format.md`: `events` keyed by
//! sequence, `ids`, and the four DUPSORT|DUPFIXED indexes with 16-byte `(created_at, seq)`
//! values), written with only the tables asked for. Appending the same events with one table
//! at a time says what each table costs per event at scale, which the store itself cannot
//! show: it always writes all of them, and its Merkle index besides.
//!
//! Only the inserts of newly stored events are copied: no duplicate checks, deletions or
//! replaceable heads (a few percent of the generator's events).

use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, DatabaseFlags, Env, PutFlags, WithoutTls};
use xaeroflux_event::EventRef;

use crate::baseline::{open_env, BaselineError};

type Table = Database<'static, Bytes, Bytes>;

/// One table of the store's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutTable {
    /// seq (u64 BE) → body, appended.
    Events,
    /// id (32) → seq: random keys.
    Ids,
    /// author (32) → `(created_at, seq)`, sorted duplicates.
    ByAuthor,
    /// kind (u32 BE) → `(created_at, seq)`.
    ByKind,
    /// topic (32) → `(created_at, seq)`, non-zero topics only.
    ByTopic,
    /// reference (32) → `(created_at, seq)`, non-zero references only: random keys.
    ByRef,
}

impl LayoutTable {
    /// Every table, in the store's order.
    pub const ALL: [LayoutTable; 6] = [
        LayoutTable::Events,
        LayoutTable::Ids,
        LayoutTable::ByAuthor,
        LayoutTable::ByKind,
        LayoutTable::ByTopic,
        LayoutTable::ByRef,
    ];

    /// The store's name for it.
    pub fn name(self) -> &'static str {
        match self {
            LayoutTable::Events => "events",
            LayoutTable::Ids => "ids",
            LayoutTable::ByAuthor => "by_author",
            LayoutTable::ByKind => "by_kind",
            LayoutTable::ByTopic => "by_topic",
            LayoutTable::ByRef => "by_ref",
        }
    }

    fn dupsort(self) -> bool {
        !matches!(self, LayoutTable::Events | LayoutTable::Ids)
    }

    /// The `(key, value)` this table holds for an event stored at `seq`, if any.
    fn row(self, ev: &EventRef<'_>, seq: u64, pos: &[u8; 16]) -> Option<(Vec<u8>, Vec<u8>)> {
        let seq = seq.to_be_bytes().to_vec();
        match self {
            LayoutTable::Events => Some((seq, ev.body().to_vec())),
            LayoutTable::Ids => Some((ev.id().0.to_vec(), seq)),
            LayoutTable::ByAuthor => Some((ev.author().0.to_vec(), pos.to_vec())),
            LayoutTable::ByKind => Some((ev.kind().0.to_be_bytes().to_vec(), pos.to_vec())),
            LayoutTable::ByTopic => {
                (!ev.topic().is_zero()).then(|| (ev.topic().0.to_vec(), pos.to_vec()))
            }
            LayoutTable::ByRef => {
                (!ev.reference().is_zero()).then(|| (ev.reference().0.to_vec(), pos.to_vec()))
            }
        }
    }
}

/// How a transaction's rows are put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOrder {
    /// In event order, table after table per event, as the store's writer did.
    Event,
    /// Each table's rows sorted by key and value, one table after the other.
    Sorted,
}

/// The store's layout with only some of its tables (see the module docs).
pub struct Layout {
    env: Env<WithoutTls>,
    tables: Vec<(LayoutTable, Table)>,
    next_seq: u64,
}

impl Layout {
    /// Opens a new layout in `dir` holding `tables`.
    pub fn open(dir: impl AsRef<Path>, tables: &[LayoutTable]) -> Result<Layout, BaselineError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let env = open_env(dir)?;
        let wtxn = env.write_txn()?;
        let created = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let mut out = [None, None, None, None, None, None];
                for (slot, t) in out.iter_mut().zip(LayoutTable::ALL) {
                    if !tables.contains(&t) {
                        continue;
                    }
                    let mut options = opener.database_options().types::<Bytes, Bytes>();
                    options.name(t.name());
                    if t.dupsort() {
                        options.flags(DatabaseFlags::DUP_SORT | DatabaseFlags::DUP_FIXED);
                    }
                    *slot = Some(options.create(wtxn)?);
                }
                Ok(CommitOrAbort::<_, ()>::Commit(out))
            })?
            .unwrap_commit();
        let tables = LayoutTable::ALL
            .into_iter()
            .zip(created)
            .filter_map(|(t, db)| Some((t, db?)))
            .collect();
        Ok(Layout {
            env,
            tables,
            next_seq: 1,
        })
    }

    /// Appends `events` in one durable transaction, giving them the next sequence numbers.
    pub fn append(
        &mut self,
        events: &[EventRef<'_>],
        order: PutOrder,
    ) -> Result<(), BaselineError> {
        let mut wtxn = self.env.write_txn()?;
        let first = self.next_seq;
        let row = |t: LayoutTable, i: usize, ev: &EventRef<'_>| {
            let seq = first + i as u64;
            let mut pos = [0u8; 16];
            pos[..8].copy_from_slice(&ev.created_at().to_be_bytes());
            pos[8..].copy_from_slice(&seq.to_be_bytes());
            t.row(ev, seq, &pos)
        };
        match order {
            PutOrder::Event => {
                for (i, ev) in events.iter().enumerate() {
                    for (t, db) in &self.tables {
                        if let Some((k, v)) = row(*t, i, ev) {
                            put(db, &mut wtxn, *t, &k, &v)?;
                        }
                    }
                }
            }
            PutOrder::Sorted => {
                for (t, db) in &self.tables {
                    let mut rows: Vec<_> = (events.iter().enumerate())
                        .filter_map(|(i, ev)| row(*t, i, ev))
                        .collect();
                    rows.sort_unstable();
                    for (k, v) in rows {
                        put(db, &mut wtxn, *t, &k, &v)?;
                    }
                }
            }
        }
        wtxn.commit()?;
        self.next_seq += events.len() as u64;
        Ok(())
    }

    /// Size of the data file.
    pub fn disk_bytes(&self) -> Result<u64, BaselineError> {
        Ok(self.env.real_disk_size()?)
    }
}

fn put(db: &Table, wtxn: &mut heed::RwTxn, t: LayoutTable, k: &[u8], v: &[u8]) -> heed::Result<()> {
    if t == LayoutTable::Events {
        db.put_with_flags(wtxn, PutFlags::APPEND, k, v)
    } else {
        db.put(wtxn, k, v)
    }
}
