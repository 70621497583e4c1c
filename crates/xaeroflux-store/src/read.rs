//! Read transactions and zero-copy point reads.

use std::ops::{Bound, ControlFlow};

use heed::RoTxn;
use heed::WithoutTls;
use xaeroflux_event::{ArchivedFollowList, EventId, EventRef, Kind, PublicKey};

use crate::env::Shared;
use crate::error::ReadError;
use crate::merkle::{PageCache, Tree};
use crate::seal::{Cipher, Slot, StoredKey, SEAL_OVERHEAD};
use crate::tables::{decode_seq, seq_key, Tables, NAMES};
use xaeroflux_event::{Accum, SetBoundary, SetKey};

/// A consistent snapshot of the store. Views it returns live as long as it does.
///
/// On a plain store views borrow the memory map. On an encrypted one each value read is
/// opened into memory the transaction keeps until it ends (Merkle pages once each): keep
/// transactions short, or use [`ReadTxn::scan`], which opens one event at a time.
pub struct ReadTxn<'s> {
    // Dropped before `_gate`, so the gate counts only live transactions.
    pub(crate) txn: RoTxn<'s, WithoutTls>,
    pub(crate) shared: &'s Shared,
    /// Values opened by this transaction (encrypted stores only).
    opened: elsa::FrozenVec<Vec<u8>>,
    /// Merkle pages opened by this transaction (encrypted stores only).
    pub(crate) pages: PageCache,
    _gate: GateGuard<'s>,
}

struct GateGuard<'s>(&'s Shared);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.gate.leave();
    }
}

/// Size and entry count of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Table name.
    pub name: &'static str,
    /// Entries (for duplicate-sorted tables, every value).
    pub entries: u64,
    /// Bytes in the table's pages.
    pub bytes: u64,
    /// B-tree depth.
    pub depth: u32,
}

/// Store-wide figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Events stored.
    pub events: u64,
    /// Sum of the stored events' encoded sizes.
    pub event_bytes: u64,
    /// Bytes of the data file in use (pages up to the last used one).
    pub used_bytes: u64,
    /// Size of the data file on disk.
    pub file_bytes: u64,
    /// Size of the memory map.
    pub map_bytes: u64,
    /// Next local sequence number.
    pub next_seq: u64,
    /// Per-table figures.
    pub tables: Vec<TableStats>,
    /// The Merkle index: the whole set's summary and the index's size.
    pub set: SetRoot,
}

/// What a store takes on disk and in address space, read in constant time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Events stored.
    pub events: u64,
    /// Bytes of the data file in use (pages up to the last used one).
    pub used_bytes: u64,
    /// Size of the data file on disk.
    pub file_bytes: u64,
    /// Address space the memory map reserves.
    pub map_bytes: u64,
}

/// The whole reconciled set as the Merkle index names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetRoot {
    /// Sum and count of every stored event's id.
    pub accum: Accum,
    /// `accum.fingerprint()`: the set's name, equal on every peer holding the same events.
    pub fingerprint: [u8; 32],
    /// Page levels from the root to the leaves; 0 for an empty set.
    pub height: u32,
    /// Leaf pages (tier 1) in use.
    pub leaf_pages: u64,
    /// Branch pages (tier 2) in use.
    pub branch_pages: u64,
}

impl<'s> ReadTxn<'s> {
    pub(crate) fn begin(shared: &'s Shared) -> Result<ReadTxn<'s>, ReadError> {
        let mut adopted = false;
        loop {
            shared.gate.enter();
            let gate = GateGuard(shared);
            match shared.env.read_txn() {
                Ok(txn) => {
                    return Ok(ReadTxn {
                        txn,
                        shared,
                        opened: elsa::FrozenVec::new(),
                        pages: PageCache::new(),
                        _gate: gate,
                    })
                }
                // Another process grew the store past this process's map: take on its size
                // (once; LMDB does not answer this twice for one size).
                Err(heed::Error::Mdb(heed::MdbError::MapResized)) if !adopted => {
                    drop(gate);
                    crate::env::adopt_map(shared).map_err(|e| ReadError::Remap(e.to_string()))?;
                    adopted = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.shared.tables
    }

    pub(crate) fn cipher(&self) -> &'s Cipher {
        &self.shared.cipher
    }

    /// The stored form of a key of `slot`'s table.
    pub(crate) fn key(&self, slot: Slot, parts: &[&[u8]]) -> StoredKey {
        self.shared.cipher.key(slot, parts)
    }

    /// The event stored at `seq` as its bytes `stored` in the map: in place on a plain store,
    /// opened (and authenticated) into the transaction's memory on an encrypted one.
    fn open_event<'t>(&'t self, seq: u64, stored: &'t [u8]) -> Result<&'t [u8], ReadError> {
        if !self.cipher().is_sealed() {
            return Ok(stored);
        }
        Ok(self
            .opened
            .push_get(open_event_vec(self.cipher(), seq, stored)?))
    }

    /// The body stored at `seq` as `stored` in the map, borrowed on a plain store and opened
    /// into a buffer of its own (not the transaction's) on an encrypted one: for walks that
    /// look at each event once.
    pub(crate) fn event_body<'t>(
        &self,
        seq: u64,
        stored: &'t [u8],
    ) -> Result<std::borrow::Cow<'t, [u8]>, ReadError> {
        if !self.cipher().is_sealed() {
            return Ok(std::borrow::Cow::Borrowed(stored));
        }
        Ok(std::borrow::Cow::Owned(open_event_vec(
            self.cipher(),
            seq,
            stored,
        )?))
    }

    /// The body stored at `seq`, as [`ReadTxn::event_body`] gives it.
    pub(crate) fn event_owned(
        &self,
        seq: u64,
    ) -> Result<Option<std::borrow::Cow<'_, [u8]>>, ReadError> {
        match self.tables().events.get(&self.txn, &seq_key(seq))? {
            Some(stored) => self.event_body(seq, stored).map(Some),
            None => Ok(None),
        }
    }

    /// The local sequence number of a stored event.
    pub(crate) fn seq_of(&self, id: &EventId) -> Result<Option<u64>, ReadError> {
        match self
            .tables()
            .ids
            .get(&self.txn, &self.key(Slot::Ids, &[&id.0]))?
        {
            Some(v) => decode_seq(v)
                .map(Some)
                .ok_or_else(|| ReadError::Corrupt("ids value is not a seq".into())),
            None => Ok(None),
        }
    }

    /// The event with this id: viewed in place on a plain store.
    pub fn get(&self, id: &EventId) -> Result<Option<EventRef<'_>>, ReadError> {
        let Some(seq) = self.seq_of(id)? else {
            return Ok(None);
        };
        let stored = self
            .tables()
            .events
            .get(&self.txn, &seq_key(seq))?
            .ok_or_else(|| ReadError::Corrupt(format!("id {id} points at no event")))?;
        let body = self.open_event(seq, stored)?;
        let event = if self.cipher().is_sealed() {
            // The id was looked up by its keyed hash: hash the body, so that a row moved
            // under another id's entry is caught.
            let event = decode_stored(body, seq)?;
            if event.id() != id {
                return Err(ReadError::Corrupt(format!(
                    "ids entry of {id} points at another event"
                )));
            }
            event
        } else {
            // The id is the key it was found under: no hashing on a point read.
            EventRef::with_id(*id, body)
                .map_err(|e| ReadError::Corrupt(format!("event {seq}: {e}")))?
        };
        Ok(Some(event))
    }

    /// True if the event is stored.
    pub fn contains(&self, id: &EventId) -> Result<bool, ReadError> {
        Ok(self.seq_of(id)?.is_some())
    }

    /// Up to `max` stored ids from `from` on, in id order: how a short id a person typed is
    /// looked up (every id with a given prefix follows the prefix padded with zeros).
    ///
    /// An encrypted store keeps ids only as keyed hashes, so there this walks every event
    /// (one opened at a time): O(events).
    pub fn ids_from(&self, from: &EventId, max: usize) -> Result<Vec<EventId>, ReadError> {
        if self.cipher().is_sealed() {
            return self.ids_from_scan(from, max);
        }
        let mut out = Vec::new();
        for item in self
            .tables()
            .ids
            .range(&self.txn, &(Bound::Included(&from.0[..]), Bound::Unbounded))?
        {
            if out.len() >= max {
                break;
            }
            let (k, _) = item?;
            let id = <[u8; 32]>::try_from(k)
                .map_err(|_| ReadError::Corrupt("ids key is not 32 bytes".into()))?;
            out.push(EventId(id));
        }
        Ok(out)
    }

    fn ids_from_scan(&self, from: &EventId, max: usize) -> Result<Vec<EventId>, ReadError> {
        let mut smallest = std::collections::BinaryHeap::with_capacity(max.saturating_add(1));
        self.for_each_event(&mut |_, ev| {
            if ev.id() >= from {
                smallest.push(*ev.id());
                if smallest.len() > max {
                    smallest.pop();
                }
            }
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(smallest.into_sorted_vec())
    }

    /// Visits every stored event in local order, each opened into one reused buffer on an
    /// encrypted store, until `f` breaks.
    pub(crate) fn for_each_event(
        &self,
        f: &mut dyn FnMut(u64, EventRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let mut buf = Vec::new();
        for item in self.tables().events.iter(&self.txn)? {
            let (k, v) = item?;
            let seq = decode_seq(k)
                .ok_or_else(|| ReadError::Corrupt("events key is not a seq".into()))?;
            let body = if self.cipher().is_sealed() {
                buf = open_event_reusing(self.cipher(), seq, v, std::mem::take(&mut buf))?;
                &buf[..]
            } else {
                v
            };
            if f(seq, decode_stored(body, seq)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// A record written with [`crate::Store::submit_with_records`], opened: `None` if there is
    /// none. A record that does not authenticate is [`ReadError::Unauthentic`] with table
    /// `meta`.
    pub fn record(&self, name: &[u8]) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ReadError> {
        let key = crate::writer::record_key(self.cipher(), name);
        let Some(stored) = self.tables().meta.get(&self.txn, &key)? else {
            return Ok(None);
        };
        let opened = self
            .cipher()
            .open_cow(Slot::Record, &key, stored)
            .map_err(|_| ReadError::Unauthentic {
                table: "meta",
                row: String::from_utf8_lossy(name).into_owned(),
            })?;
        Ok(Some(zeroize::Zeroizing::new(opened.into_owned())))
    }

    /// The event at this local sequence number.
    pub fn by_seq(&self, seq: u64) -> Result<Option<EventRef<'_>>, ReadError> {
        match self.tables().events.get(&self.txn, &seq_key(seq))? {
            Some(bytes) => Ok(Some(decode_stored(self.open_event(seq, bytes)?, seq)?)),
            None => Ok(None),
        }
    }

    /// Events stored after local sequence number `after`, oldest first, at most `limit`.
    pub fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRef<'_>)>, ReadError> {
        let start = seq_key(after.saturating_add(1));
        let mut out = Vec::new();
        for item in self
            .tables()
            .events
            .range(&self.txn, &(Bound::Included(&start[..]), Bound::Unbounded))?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let seq = decode_seq(k)
                .ok_or_else(|| ReadError::Corrupt("events key is not a seq".into()))?;
            out.push((seq, decode_stored(self.open_event(seq, v)?, seq)?));
        }
        Ok(out)
    }

    /// True if `author` deleted the event `id`.
    pub fn is_deleted(&self, id: &EventId, author: &PublicKey) -> Result<bool, ReadError> {
        let key = self.key(Slot::Tombstone, &[&id.0, &author.0]);
        Ok(self.tables().tombstones.get(&self.txn, &key)?.is_some())
    }

    /// The newest replaceable event (profile, follow list) of an author.
    pub fn latest(
        &self,
        author: &PublicKey,
        kind: Kind,
    ) -> Result<Option<EventRef<'_>>, ReadError> {
        match self.tables().latest.get(
            &self.txn,
            &self.key(Slot::Latest, &[&author.0, &kind.0.to_be_bytes()]),
        )? {
            Some(seq) => {
                let seq = decode_seq(seq)
                    .ok_or_else(|| ReadError::Corrupt("latest value is not a seq".into()))?;
                self.by_seq(seq)?
                    .map(Some)
                    .ok_or_else(|| ReadError::Corrupt("latest points at no event".into()))
            }
            None => Ok(None),
        }
    }

    /// The authors `follower` follows, from their newest follow list.
    pub fn follows(&self, follower: &PublicKey) -> Result<Vec<PublicKey>, ReadError> {
        let Some(list) = self.latest(follower, Kind::FOLLOW_LIST)? else {
            return Ok(Vec::new());
        };
        let archived = list
            .payload_as::<ArchivedFollowList>()
            .map_err(|e| ReadError::Corrupt(format!("stored follow list: {e}")))?;
        Ok(archived.follows.iter().map(|k| PublicKey(*k)).collect())
    }

    /// True if the event was dropped here: deleted by its author, or a replaceable event
    /// superseded by a newer one (whether it was stored and then removed, or refused on
    /// arrival). Sync uses it not to fetch such events again.
    pub fn is_dropped(&self, id: &EventId) -> Result<bool, ReadError> {
        let key = self.key(Slot::Ids, &[&id.0]);
        Ok(self.tables().dropped.get(&self.txn, &key)?.is_some())
    }

    fn set_tree(&self) -> Result<Tree<'_, 's>, ReadError> {
        Ok(Tree::open(
            &self.txn,
            self.tables(),
            self.cipher(),
            &self.pages,
        )?)
    }

    /// Summary (sum of ids and count) of the stored events whose key `k` has `lo <= k < hi`.
    /// Reads O(height) index pages; never scans events.
    pub fn set_accumulate(&self, lo: &SetKey, hi: &SetKey) -> Result<Accum, ReadError> {
        if lo >= hi {
            return Ok(Accum::ZERO);
        }
        let tree = self.set_tree()?;
        let mut acc = tree.prefix(&hi.encode(), true)?;
        acc.sub(&tree.prefix(&lo.encode(), true)?);
        Ok(acc)
    }

    /// Summary of the stored events whose key is below `key`: one descent.
    pub fn set_prefix(&self, key: &SetKey) -> Result<Accum, ReadError> {
        Ok(self.set_tree()?.prefix(&key.encode(), true)?)
    }

    /// The key with `rank` keys below it, the key just before it, and the summary of every key
    /// below it, in one descent (a second only when the key opens a leaf). `None` if fewer
    /// than `rank + 1` events are stored.
    pub fn set_boundary(&self, rank: u64) -> Result<Option<SetBoundary>, ReadError> {
        let tree = self.set_tree()?;
        let Some(b) = tree.boundary(rank, true)? else {
            return Ok(None);
        };
        let before = match (b.before, rank) {
            (Some(k), _) => Some(k),
            (None, 0) => None,
            (None, r) => tree.nth(r - 1)?,
        };
        Ok(Some(SetBoundary {
            before: before.map(|k| SetKey::decode(&k)),
            at: SetKey::decode(&b.at),
            below: b.below,
        }))
    }

    /// Number of stored events whose key is below `key`.
    pub fn set_rank(&self, key: &SetKey) -> Result<u64, ReadError> {
        Ok(self.set_tree()?.prefix(&key.encode(), false)?.count)
    }

    /// The key with `rank` keys below it (0-based), or `None` if fewer events are stored.
    pub fn set_nth(&self, rank: u64) -> Result<Option<SetKey>, ReadError> {
        Ok(self.set_tree()?.nth(rank)?.map(|k| SetKey::decode(&k)))
    }

    /// Visits the keys `k` with `lo <= k < hi` in ascending order until `f` breaks.
    pub fn set_for_each(
        &self,
        lo: &SetKey,
        hi: &SetKey,
        f: &mut dyn FnMut(&SetKey) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let mut visit = |k: &crate::merkle::Key| f(&SetKey::decode(k));
        Ok(self
            .set_tree()?
            .for_each(&lo.encode(), &hi.encode(), &mut visit)?)
    }

    /// The whole set's summary and fingerprint, and the index's shape.
    pub fn set_root(&self) -> Result<SetRoot, ReadError> {
        let tree = self.set_tree()?;
        let accum = tree.root_summary()?;
        Ok(SetRoot {
            accum,
            fingerprint: accum.fingerprint(),
            height: tree.meta.height,
            leaf_pages: tree.meta.leaf_pages,
            branch_pages: tree.meta.branch_pages,
        })
    }

    /// The sequence number the next stored event will get, by whichever process: it moves
    /// whenever anything is stored, so a reader can tell that something was without asking
    /// the writer.
    pub fn next_seq(&self) -> Result<u64, ReadError> {
        self.tables()
            .meta
            .get(&self.txn, crate::tables::META_NEXT_SEQ)?
            .and_then(decode_seq)
            .ok_or_else(|| ReadError::Corrupt("meta next_seq missing".into()))
    }

    /// What the store takes, in constant time (no walk over the events, unlike
    /// [`ReadTxn::stats`]): what an app on a phone may ask at any time.
    pub fn footprint(&self) -> Result<Footprint, ReadError> {
        let info = self.shared.env.info();
        let page = crate::env::page_size() as u64;
        Ok(Footprint {
            events: self.tables().events.len(&self.txn)?,
            used_bytes: (info.last_page_number as u64 + 1) * page,
            file_bytes: std::fs::metadata(crate::data_file(&self.shared.path))
                .map(|m| m.len())
                .unwrap_or(0),
            map_bytes: info.map_size as u64,
        })
    }

    /// Counts and sizes. Reads every stored event (for `event_bytes`): O(n).
    pub fn stats(&self) -> Result<Stats, ReadError> {
        let t = self.tables();
        let mut tables = Vec::with_capacity(NAMES.len());
        for (name, table) in t.all() {
            let s = table.stat(&self.txn)?;
            let pages = (s.branch_pages + s.leaf_pages + s.overflow_pages) as u64;
            tables.push(TableStats {
                name,
                entries: s.entries as u64,
                bytes: pages * u64::from(s.page_size),
                depth: s.depth,
            });
        }
        let mut event_bytes = 0u64;
        let overhead = if self.cipher().is_sealed() {
            SEAL_OVERHEAD as u64
        } else {
            0
        };
        for item in t.events.iter(&self.txn)? {
            event_bytes += (item?.1.len() as u64).saturating_sub(overhead);
        }
        let info = self.shared.env.info();
        let page = crate::env::page_size() as u64;
        let next_seq = self.next_seq()?;
        Ok(Stats {
            events: t.events.len(&self.txn)?,
            event_bytes,
            used_bytes: (info.last_page_number as u64 + 1) * page,
            file_bytes: std::fs::metadata(crate::data_file(&self.shared.path))
                .map(|m| m.len())
                .unwrap_or(0),
            map_bytes: info.map_size as u64,
            next_seq,
            tables,
            set: self.set_root()?,
        })
    }
}

/// Opens the sealed event stored at `seq` into a new buffer.
pub(crate) fn open_event_vec(
    cipher: &Cipher,
    seq: u64,
    stored: &[u8],
) -> Result<Vec<u8>, ReadError> {
    open_event_reusing(cipher, seq, stored, Vec::new())
}

/// Opens the sealed event stored at `seq` into `buf`, reusing its allocation.
fn open_event_reusing(
    cipher: &Cipher,
    seq: u64,
    stored: &[u8],
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, ReadError> {
    let unauthentic = || ReadError::Unauthentic {
        table: "events",
        row: seq.to_string(),
    };
    buf.reserve(stored.len());
    cipher
        .open_to_vec(Slot::Events, &seq_key(seq), stored, &mut buf)
        .map_err(|_| unauthentic())?;
    Ok(buf)
}

/// A stored body, its id recomputed from the header.
pub(crate) fn decode_stored(body: &[u8], seq: u64) -> Result<EventRef<'_>, ReadError> {
    EventRef::from_body(body).map_err(|e| ReadError::Corrupt(format!("event {seq}: {e}")))
}
