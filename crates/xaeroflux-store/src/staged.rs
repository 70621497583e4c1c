//! The `ids` and index rows of the events one write transaction stores, held until the end of
//! the transaction and then put table by table in key order.
//!
//! Put in arrival order, the random keys of `ids` and `by_ref` (and the many authors of
//! `by_author`) each descend to a different leaf of a large tree. Put in key order, one
//! table at a time, consecutive puts land in the same or the next leaf, whose path is still in
//! the CPU's cache. The rows put are the same either way, so the tables after commit hold the
//! same entries. Until then, a lookup of an id asks here first: an event stored earlier in the
//! same transaction is a duplicate, or the target of a deletion or of a replacement, exactly
//! as if its rows had been put at once.

use std::collections::HashMap;

use heed::RwTxn;
use xaeroflux_event::EventRef;

use crate::seal::{Cipher, Slot, StoredKey};
use crate::tables::{kind_key, seq_key, Pos, Table, Tables, POS_BYTES};

/// What the deferred rows of one stored event are made of.
struct Row {
    id: [u8; 32],
    author: [u8; 32],
    kind: u32,
    topic: Option<[u8; 32]>,
    reference: Option<[u8; 32]>,
    created_at: u64,
}

/// The rows of the events stored so far in one transaction (see the module docs).
pub(crate) struct Staged {
    /// The sequence number of the transaction's first stored event; the events it stores
    /// take the numbers from here on, one after the other.
    first_seq: u64,
    /// By `seq - first_seq`; `None` once the event was removed again in the same transaction.
    rows: Vec<Option<Row>>,
    /// id → seq of every row still staged.
    ids: HashMap<[u8; 32], u64>,
}

impl Staged {
    pub(crate) fn new(first_seq: u64) -> Staged {
        Staged {
            first_seq,
            rows: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// The sequence number of a staged event with this id.
    pub(crate) fn seq_of(&self, id: &[u8; 32]) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// Whether `seq` was given out by this transaction (its rows are here, not in the tables).
    pub(crate) fn holds(&self, seq: u64) -> bool {
        seq >= self.first_seq
    }

    /// Stages the rows of `ev`, stored at `seq`: the next number after the last staged one.
    pub(crate) fn stage(&mut self, ev: EventRef<'_>, seq: u64) {
        assert_eq!(
            seq,
            self.first_seq + self.rows.len() as u64,
            "sequence numbers of one transaction follow each other"
        );
        let nonzero = |bytes: [u8; 32]| (bytes != [0; 32]).then_some(bytes);
        let previous = self.ids.insert(ev.id().0, seq);
        assert!(previous.is_none(), "an id is staged once");
        self.rows.push(Some(Row {
            id: ev.id().0,
            author: ev.author().0,
            kind: ev.kind().0,
            topic: nonzero(ev.topic().0),
            reference: nonzero(ev.reference().0),
            created_at: ev.created_at(),
        }));
    }

    /// Drops the staged rows of the event at `seq` with this id. False if none are staged.
    pub(crate) fn unstage(&mut self, seq: u64, id: &[u8; 32]) -> bool {
        let Some(slot) = seq
            .checked_sub(self.first_seq)
            .and_then(|i| self.rows.get_mut(usize::try_from(i).ok()?))
        else {
            return false;
        };
        if slot.as_ref().is_none_or(|row| row.id != *id) || self.ids.remove(id) != Some(seq) {
            return false;
        }
        *slot = None;
        true
    }

    /// Puts every staged row, each table's in key order (the stored keys' order: on an
    /// encrypted store, that of their keyed hashes).
    pub(crate) fn put(self, t: &Tables, cipher: &Cipher, txn: &mut RwTxn) -> heed::Result<()> {
        let live: Vec<(u64, Row)> = (self.first_seq..)
            .zip(self.rows)
            .filter_map(|(seq, row)| Some((seq, row?)))
            .collect();
        debug_assert_eq!(
            live.len(),
            self.ids.len(),
            "every live row is findable by id"
        );
        let mut ids: Vec<(StoredKey, [u8; 8])> = self
            .ids
            .into_iter()
            .map(|(id, seq)| (cipher.key(Slot::Ids, &[&id]), seq_key(seq)))
            .collect();
        put_sorted(&t.ids, txn, &mut ids)?;
        let pos = |seq: u64, row: &Row| {
            Pos {
                created_at: row.created_at,
                seq,
            }
            .encode()
        };
        let index = |slot: Slot,
                     key: fn(&Row) -> Option<[u8; 32]>|
         -> Vec<(StoredKey, [u8; POS_BYTES])> {
            live.iter()
                .filter_map(|(seq, row)| Some((cipher.key(slot, &[&key(row)?]), pos(*seq, row))))
                .collect()
        };
        put_sorted(
            &t.by_author,
            txn,
            &mut index(Slot::Author, |r| Some(r.author)),
        )?;
        put_sorted(&t.by_topic, txn, &mut index(Slot::Topic, |r| r.topic))?;
        put_sorted(&t.by_ref, txn, &mut index(Slot::Ref, |r| r.reference))?;
        let mut kinds: Vec<(StoredKey, [u8; POS_BYTES])> = live
            .iter()
            .map(|(seq, row)| {
                (
                    cipher.key(Slot::Kind, &[&kind_key(row.kind)]),
                    pos(*seq, row),
                )
            })
            .collect();
        put_sorted(&t.by_kind, txn, &mut kinds)
    }
}

fn put_sorted<const V: usize>(
    table: &Table,
    txn: &mut RwTxn,
    rows: &mut [(StoredKey, [u8; V])],
) -> heed::Result<()> {
    rows.sort_unstable();
    for (k, v) in rows.iter() {
        table.put(txn, k, v)?;
    }
    Ok(())
}
