//! The persistent two-tier Merkle index over the reconciled set: every stored event's
//! [`SetKey`](crate::SetKey) in `(created_at, id)` order, kept in 16 KiB pages inside the same
//! LMDB transaction as the events.
//!
//! - Tier 1: leaf pages, each a sorted run of up to 405 keys with its summary (count, sum of
//!   ids, first and last key).
//! - Tier 2: branch pages (B+tree levels) whose entries carry each child's first key, page
//!   number, count and sum, so the accumulator of any key range, the rank of a key and the key
//!   at a rank take O(height × fanout) work over O(height) pages, never a scan.
//!
//! The writer collects a transaction's set changes and applies them, sorted, through an
//! [`Edit`] that reads each touched page once and writes it once. `docs/format.md` gives the
//! byte layout; `verify` walks the whole index for `ReadTxn::check`.

mod page;
mod query;
mod update;
mod verify;

pub(crate) use page::{Key, PageError};
pub(crate) use query::Tree;
pub(crate) use update::{apply, rebuild};
pub(crate) use verify::verify;

use crate::error::ReadError;

/// `meta` key of the index's [`TreeMeta`].
pub(crate) const META_MERKLE: &[u8] = b"merkle";
/// Deepest index this build reads or writes: far above need (193^15 leaves), low enough that a
/// damaged height cannot send a descent far.
pub(crate) const HEIGHT_MAX: u32 = 16;
/// Bytes of an encoded [`TreeMeta`].
const TREE_META_BYTES: usize = 32;

/// Where the index starts and how big it is: `meta["merkle"]`, 32 bytes, integers LE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TreeMeta {
    /// Root page; 0 when the set is empty.
    pub root: u32,
    /// Page levels from the root to the leaves (1 = the root is a leaf); 0 when empty.
    pub height: u32,
    /// The lowest page number never allocated. Page numbers start at 1.
    pub next_page: u32,
    /// Leaf pages in use.
    pub leaf_pages: u64,
    /// Branch pages in use.
    pub branch_pages: u64,
}

impl TreeMeta {
    /// The index of an empty set.
    pub(crate) const EMPTY: TreeMeta = TreeMeta {
        root: 0,
        height: 0,
        next_page: 1,
        leaf_pages: 0,
        branch_pages: 0,
    };

    pub(crate) fn encode(&self) -> [u8; TREE_META_BYTES] {
        let mut out = [0u8; TREE_META_BYTES];
        out[0..4].copy_from_slice(&self.root.to_le_bytes());
        out[4..8].copy_from_slice(&self.height.to_le_bytes());
        out[8..12].copy_from_slice(&self.next_page.to_le_bytes());
        // 12..16 reserved, zero.
        out[16..24].copy_from_slice(&self.leaf_pages.to_le_bytes());
        out[24..32].copy_from_slice(&self.branch_pages.to_le_bytes());
        out
    }

    /// Decodes and checks the fields against each other.
    pub(crate) fn decode(bytes: &[u8]) -> Result<TreeMeta, MerkleError> {
        let bad = |why: &str| MerkleError::Corrupt(format!("meta merkle: {why}"));
        let bytes: &[u8; TREE_META_BYTES] = bytes
            .try_into()
            .map_err(|_| bad(&format!("{} bytes, not {TREE_META_BYTES}", bytes.len())))?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let meta = TreeMeta {
            root: u32_at(0),
            height: u32_at(4),
            next_page: u32_at(8),
            leaf_pages: u64_at(16),
            branch_pages: u64_at(24),
        };
        if u32_at(12) != 0 {
            return Err(bad("reserved field is not zero"));
        }
        if (meta.root == 0) != (meta.height == 0) || meta.height > HEIGHT_MAX {
            return Err(bad(&format!(
                "root {} with height {}",
                meta.root, meta.height
            )));
        }
        if meta.next_page == 0 || meta.root >= meta.next_page {
            return Err(bad(&format!(
                "root {} not below next page {}",
                meta.root, meta.next_page
            )));
        }
        Ok(meta)
    }

    /// Level of the root page.
    pub(crate) fn root_level(&self) -> u8 {
        debug_assert!(self.height >= 1 && self.height <= HEIGHT_MAX);
        (self.height - 1) as u8
    }
}

/// A failure while reading or editing the index.
#[derive(Debug)]
pub(crate) enum MerkleError {
    /// LMDB failed.
    Heed(heed::Error),
    /// A page failed validation.
    Page(PageError),
    /// Anything else that shows damage (meta, a key missing or present twice…).
    Corrupt(String),
}

impl From<heed::Error> for MerkleError {
    fn from(e: heed::Error) -> Self {
        MerkleError::Heed(e)
    }
}

impl From<PageError> for MerkleError {
    fn from(e: PageError) -> Self {
        MerkleError::Page(e)
    }
}

impl std::fmt::Display for MerkleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MerkleError::Heed(e) => write!(f, "storage error: {e}"),
            MerkleError::Page(e) => e.fmt(f),
            MerkleError::Corrupt(why) => write!(f, "merkle index: {why}"),
        }
    }
}

impl From<MerkleError> for ReadError {
    fn from(e: MerkleError) -> Self {
        match e {
            MerkleError::Heed(e) => ReadError::Storage(e),
            MerkleError::Page(PageError { page, reason }) => {
                ReadError::CorruptPage { page, reason }
            }
            MerkleError::Corrupt(why) => ReadError::Corrupt(format!("merkle index: {why}")),
        }
    }
}

/// Reads the index's meta record; a format-2 store always has one.
pub(crate) fn read_meta(
    txn: &heed::RoTxn,
    meta: crate::tables::Table,
    cipher: &Cipher,
) -> Result<TreeMeta, MerkleError> {
    let Some(bytes) = meta.get(txn, META_MERKLE)? else {
        return Err(MerkleError::Corrupt("meta merkle is missing".into()));
    };
    if !cipher.is_sealed() {
        return TreeMeta::decode(bytes);
    }
    let plain = cipher
        .open_vec(Slot::Meta, META_MERKLE, bytes)
        .map_err(|_| MerkleError::Corrupt("meta merkle fails authentication".into()))?;
    TreeMeta::decode(&plain)
}

/// The stored form of the meta record.
pub(crate) fn seal_meta(meta: &TreeMeta, cipher: &Cipher) -> Result<Vec<u8>, MerkleError> {
    cipher
        .seal(Slot::Meta, META_MERKLE, &meta.encode())
        .map(|v| v.into_owned())
        .map_err(|e| MerkleError::Corrupt(e.to_string()))
}

/// Decrypted pages kept for the life of one transaction, by number: each is opened once.
pub(crate) type PageCache = elsa::FrozenMap<u32, Box<[u8; page::PAGE_BYTES]>>;

/// Page `no` as stored, `None` if there is none: in place on a plain store; on a sealed one
/// opened (and authenticated) into `cache`, or found there.
pub(crate) fn load_page<'a>(
    txn: &'a heed::RoTxn,
    merkle: crate::tables::Table,
    cipher: &Cipher,
    cache: &'a PageCache,
    no: u32,
) -> Result<Option<&'a [u8]>, MerkleError> {
    if !cipher.is_sealed() {
        return Ok(merkle.get(txn, &page_key(no))?);
    }
    if let Some(page) = cache.get(&no) {
        return Ok(Some(&page[..]));
    }
    let Some(stored) = merkle.get(txn, &page_key(no))? else {
        return Ok(None);
    };
    let page = open_page(cipher, no, stored)?;
    Ok(Some(&cache.insert(no, page)[..]))
}

/// Opens the sealed page `no` into a new buffer.
pub(crate) fn open_page(
    cipher: &Cipher,
    no: u32,
    stored: &[u8],
) -> Result<Box<[u8; page::PAGE_BYTES]>, MerkleError> {
    let unauthentic = || {
        MerkleError::Page(PageError::new(
            no,
            "fails authentication: the file is damaged or was changed",
        ))
    };
    let opened = cipher
        .open_vec(Slot::Merkle, &page_key(no), stored)
        .map_err(|_| unauthentic())?;
    let page: Box<[u8; page::PAGE_BYTES]> = opened
        .into_boxed_slice()
        .try_into()
        .map_err(|_| unauthentic())?;
    Ok(page)
}

use crate::seal::{Cipher, Slot};

/// The LMDB key of page `no`: u32 BE, so pages sort by number.
pub(crate) fn page_key(no: u32) -> [u8; 4] {
    no.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_nonsense() {
        let m = TreeMeta {
            root: 7,
            height: 2,
            next_page: 9,
            leaf_pages: 5,
            branch_pages: 1,
        };
        assert_eq!(TreeMeta::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            TreeMeta::decode(&TreeMeta::EMPTY.encode()).unwrap(),
            TreeMeta::EMPTY
        );
        let mut bad = m;
        bad.height = 0;
        assert!(TreeMeta::decode(&bad.encode()).is_err());
        bad = m;
        bad.height = HEIGHT_MAX + 1;
        assert!(TreeMeta::decode(&bad.encode()).is_err());
        bad = m;
        bad.next_page = 7;
        assert!(TreeMeta::decode(&bad.encode()).is_err());
        assert!(TreeMeta::decode(&[0; 31]).is_err());
    }
}
