//! The named LMDB databases and their key encodings. Keys are big-endian so that byte order is
//! sort order. `docs/format.md` documents each table.

use heed::types::Bytes;
use heed::Database;

/// A table with raw byte keys and values.
pub(crate) type Table = Database<'static, Bytes, Bytes>;

/// Store format written by this build. Format 2 added the Merkle index (`merkle`,
/// `merkle_free`, `meta["merkle"]`) and `dropped`; a format-1 store is upgraded when first
/// opened for writing.
pub(crate) const STORE_FORMAT: u32 = 2;
/// Value of `meta["magic"]`: the mark that a directory is ours.
pub(crate) const MAGIC: &[u8] = b"xaeroflux-store";
pub(crate) const META_MAGIC: &[u8] = b"magic";
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_NEXT_SEQ: &[u8] = b"next_seq";
/// `meta["cipher"]`: the cipher suite of an encrypted store; absent on a plain one.
pub(crate) const META_CIPHER: &[u8] = b"cipher";
/// `meta["key_check"]`: [`KEY_CHECK`] sealed under the store's key, so that a wrong key is
/// told at open, before anything is read or written.
pub(crate) const META_KEY_CHECK: &[u8] = b"key_check";
pub(crate) const KEY_CHECK: &[u8] = b"xaeroflux-store key check";

/// Names of the tables, in the order of [`Tables::all`].
pub(crate) const NAMES: [&str; TABLES] = [
    "events",
    "ids",
    "by_author",
    "by_kind",
    "by_topic",
    "by_ref",
    "tombstones",
    "latest",
    "meta",
    "merkle",
    "merkle_free",
    "dropped",
];

/// Number of tables.
pub(crate) const TABLES: usize = 12;
/// Index of `meta` in [`NAMES`].
pub(crate) const META_INDEX: usize = 8;

/// The tables that are DUPSORT|DUPFIXED with 16-byte [`Pos`] values.
pub(crate) const DUP_TABLES: [&str; 4] = ["by_author", "by_kind", "by_topic", "by_ref"];

#[derive(Clone, Copy)]
pub(crate) struct Tables {
    /// seq (u64 BE) → encoded event. Appended: this is also the local changes log.
    pub events: Table,
    /// id (32) → seq (u64 BE).
    pub ids: Table,
    /// author (32) → Pos, sorted duplicates.
    pub by_author: Table,
    /// kind (u32 BE) → Pos, sorted duplicates. The kinds partition all events, so merging
    /// every kind's walk is the store-wide time order.
    pub by_kind: Table,
    /// topic (32) → Pos, non-zero topics only.
    pub by_topic: Table,
    /// reference (32) → Pos, non-zero references only.
    pub by_ref: Table,
    /// target id (32) ‖ author (32) → empty: a deletion by that author.
    pub tombstones: Table,
    /// author (32) ‖ kind (u32 BE) → seq of the newest replaceable event.
    pub latest: Table,
    /// Store-wide settings.
    pub meta: Table,
    /// Merkle page number (u32 BE) → one 16 KiB page.
    pub merkle: Table,
    /// Freed Merkle page number (u32 BE) → empty.
    pub merkle_free: Table,
    /// Event id (32) → why it was dropped ([`DROPPED_DELETED`] or [`DROPPED_SUPERSEDED`]).
    pub dropped: Table,
}

/// `dropped` value: deleted by its author (removed, or refused on arrival).
pub(crate) const DROPPED_DELETED: u8 = 1;
/// `dropped` value: a replaceable event superseded by a newer one (removed or refused).
pub(crate) const DROPPED_SUPERSEDED: u8 = 2;

impl Tables {
    pub(crate) fn from_array(t: [Table; TABLES]) -> Tables {
        let [events, ids, by_author, by_kind, by_topic, by_ref, tombstones, latest, meta, merkle, merkle_free, dropped] =
            t;
        Tables {
            events,
            ids,
            by_author,
            by_kind,
            by_topic,
            by_ref,
            tombstones,
            latest,
            meta,
            merkle,
            merkle_free,
            dropped,
        }
    }

    pub(crate) fn all(&self) -> [(&'static str, Table); TABLES] {
        let t = [
            self.events,
            self.ids,
            self.by_author,
            self.by_kind,
            self.by_topic,
            self.by_ref,
            self.tombstones,
            self.latest,
            self.meta,
            self.merkle,
            self.merkle_free,
            self.dropped,
        ];
        let mut i = 0;
        t.map(|table| {
            let name = NAMES[i];
            i += 1;
            (name, table)
        })
    }
}

/// The sort position of an event: `(created_at, seq)`, 16 bytes big-endian.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Pos {
    pub created_at: u64,
    pub seq: u64,
}

pub(crate) const POS_BYTES: usize = 16;

impl Pos {
    pub(crate) fn encode(self) -> [u8; POS_BYTES] {
        let mut out = [0u8; POS_BYTES];
        out[..8].copy_from_slice(&self.created_at.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// `None` if the value is not 16 bytes (a damaged file).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Pos> {
        let bytes: &[u8; POS_BYTES] = bytes.try_into().ok()?;
        Some(Pos {
            created_at: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            seq: u64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn decode_seq(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub(crate) fn kind_key(kind: u32) -> [u8; 4] {
    kind.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_orders_by_time_then_seq() {
        let a = Pos {
            created_at: 5,
            seq: 900,
        };
        let b = Pos {
            created_at: 6,
            seq: 1,
        };
        assert!(a.encode() < b.encode());
        assert_eq!(Pos::decode(&a.encode()), Some(a));
        assert_eq!(Pos::decode(&[0; 15]), None);
    }
}
