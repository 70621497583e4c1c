//! The 16 KiB page: a fixed 160-byte header, then sorted entries. Leaf entries are encoded
//! [`SetKey`]s; branch entries summarise one child page. `docs/format.md` gives every byte.
//!
//! Pages are read in place from LMDB values through [`PageRef`], which checks the length, tag,
//! level, format and count before any entry is touched, so damaged bytes give a [`PageError`]
//! and never an out-of-bounds index. Pages being edited live in a [`PageBuf`].

use xaeroflux_event::{Accum, SET_KEY_BYTES, SUM_BYTES};

/// Bytes in every page value.
pub(crate) const PAGE_BYTES: usize = 16 * 1024;
/// Bytes of the header that starts every page.
pub(crate) const HEADER_BYTES: usize = 160;
/// Page layout version written in each header.
pub(crate) const PAGE_FORMAT: u16 = 1;
/// Tag of a leaf page (level 0).
pub(crate) const TAG_LEAF: u8 = 1;
/// Tag of a branch page (level 1 and up).
pub(crate) const TAG_BRANCH: u8 = 2;
/// A leaf entry: one encoded `SetKey`.
pub(crate) const LEAF_ENTRY_BYTES: usize = SET_KEY_BYTES;
/// A branch entry: child's first key ‖ child page u32 LE ‖ child total u64 LE ‖ child sum.
pub(crate) const BRANCH_ENTRY_BYTES: usize = SET_KEY_BYTES + 4 + 8 + SUM_BYTES;
/// Entries a leaf holds at most.
pub(crate) const LEAF_CAPACITY: usize = (PAGE_BYTES - HEADER_BYTES) / LEAF_ENTRY_BYTES;
/// Entries a branch holds at most.
pub(crate) const BRANCH_CAPACITY: usize = (PAGE_BYTES - HEADER_BYTES) / BRANCH_ENTRY_BYTES;

const OFF_TAG: usize = 0;
const OFF_LEVEL: usize = 1;
const OFF_FORMAT: usize = 2;
const OFF_COUNT: usize = 4;
const OFF_RESERVED: usize = 6;
const OFF_TOTAL: usize = 8;
const OFF_SUM: usize = 16;
const OFF_FIRST: usize = OFF_SUM + SUM_BYTES;
const OFF_LAST: usize = OFF_FIRST + SET_KEY_BYTES;
const HEADER_USED: usize = OFF_LAST + SET_KEY_BYTES;

const ENTRY_OFF_PAGE: usize = SET_KEY_BYTES;
const ENTRY_OFF_TOTAL: usize = ENTRY_OFF_PAGE + 4;
const ENTRY_OFF_SUM: usize = ENTRY_OFF_TOTAL + 8;

const _: () = assert!(LEAF_CAPACITY == 405 && BRANCH_CAPACITY == 193);
const _: () = assert!(HEADER_USED == 128 && HEADER_USED <= HEADER_BYTES);
const _: () = assert!(ENTRY_OFF_SUM + SUM_BYTES == BRANCH_ENTRY_BYTES);
const _: () = assert!(HEADER_BYTES + LEAF_CAPACITY * LEAF_ENTRY_BYTES <= PAGE_BYTES);
const _: () = assert!(HEADER_BYTES + BRANCH_CAPACITY * BRANCH_ENTRY_BYTES <= PAGE_BYTES);

/// An encoded [`crate::SetKey`]: byte order is key order.
pub(crate) type Key = [u8; SET_KEY_BYTES];

/// What a page says about everything under it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Summary {
    /// Sum and count of the ids under the page.
    pub accum: Accum,
    /// Smallest key under the page.
    pub first: Key,
    /// Largest key under the page.
    pub last: Key,
}

/// A page that fails validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageError {
    /// Page number.
    pub page: u32,
    /// What is wrong.
    pub reason: String,
}

impl PageError {
    pub(crate) fn new(page: u32, reason: impl Into<String>) -> PageError {
        PageError {
            page,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "merkle page {}: {}", self.page, self.reason)
    }
}

/// Entry width and capacity of a page at `level`.
pub(crate) fn geometry(level: u8) -> (usize, usize) {
    if level == 0 {
        (LEAF_ENTRY_BYTES, LEAF_CAPACITY)
    } else {
        (BRANCH_ENTRY_BYTES, BRANCH_CAPACITY)
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    // Callers index only within the header or below `count`, which is checked against the
    // capacity when the view is made; a failure here is a bug in this module, not bad data.
    bytes[at..at + N]
        .try_into()
        .expect("offset within the page")
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(*array(bytes, at))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(*array(bytes, at))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(*array(bytes, at))
}

/// A validated view of one page, borrowed from the map or from a [`PageBuf`].
#[derive(Clone, Copy)]
pub(crate) struct PageRef<'a> {
    bytes: &'a [u8; PAGE_BYTES],
    no: u32,
    level: u8,
    count: usize,
    width: usize,
}

impl<'a> PageRef<'a> {
    /// Checks the header of page `no`, expected at `level`: length, tag, level, format,
    /// reserved field and `1 <= count <= capacity`. O(1); see [`PageRef::validate_entries`].
    pub(crate) fn parse(no: u32, bytes: &'a [u8], level: u8) -> Result<PageRef<'a>, PageError> {
        let bytes: &[u8; PAGE_BYTES] = bytes
            .try_into()
            .map_err(|_| PageError::new(no, format!("{} bytes, not {PAGE_BYTES}", bytes.len())))?;
        let tag = bytes[OFF_TAG];
        let want_tag = if level == 0 { TAG_LEAF } else { TAG_BRANCH };
        if tag != want_tag {
            return Err(PageError::new(
                no,
                format!("tag {tag}, expected {want_tag} at level {level}"),
            ));
        }
        if bytes[OFF_LEVEL] != level {
            return Err(PageError::new(
                no,
                format!("level {}, expected {level}", bytes[OFF_LEVEL]),
            ));
        }
        let format = u16_at(bytes, OFF_FORMAT);
        if format != PAGE_FORMAT {
            return Err(PageError::new(no, format!("page format {format}")));
        }
        if u16_at(bytes, OFF_RESERVED) != 0 {
            return Err(PageError::new(no, "reserved field is not zero"));
        }
        let (width, capacity) = geometry(level);
        let count = usize::from(u16_at(bytes, OFF_COUNT));
        if count == 0 || count > capacity {
            return Err(PageError::new(
                no,
                format!("{count} entries, outside 1..={capacity}"),
            ));
        }
        if u64_at(bytes, OFF_TOTAL) < count as u64 {
            return Err(PageError::new(no, "total below the entry count"));
        }
        Ok(PageRef {
            bytes,
            no,
            level,
            count,
            width,
        })
    }

    pub(crate) fn no(&self) -> u32 {
        self.no
    }

    pub(crate) fn level(&self) -> u8 {
        self.level
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.level == 0
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn summary(&self) -> Summary {
        Summary {
            accum: Accum::from_parts(array(self.bytes, OFF_SUM), u64_at(self.bytes, OFF_TOTAL)),
            first: *array(self.bytes, OFF_FIRST),
            last: *array(self.bytes, OFF_LAST),
        }
    }

    fn entry_at(&self, i: usize) -> usize {
        debug_assert!(i < self.count);
        HEADER_BYTES + i * self.width
    }

    /// Entry `i`'s key: the key itself in a leaf, the child's first key in a branch.
    pub(crate) fn key(&self, i: usize) -> &'a Key {
        array(self.bytes, self.entry_at(i))
    }

    /// Branch entry `i`'s child page.
    pub(crate) fn child(&self, i: usize) -> u32 {
        debug_assert!(!self.is_leaf());
        u32_at(self.bytes, self.entry_at(i) + ENTRY_OFF_PAGE)
    }

    /// Branch entry `i`'s child summary (sum and count).
    pub(crate) fn child_accum(&self, i: usize) -> Accum {
        debug_assert!(!self.is_leaf());
        let at = self.entry_at(i);
        Accum::from_parts(
            array(self.bytes, at + ENTRY_OFF_SUM),
            u64_at(self.bytes, at + ENTRY_OFF_TOTAL),
        )
    }

    /// Branch entry `i`'s child total.
    pub(crate) fn child_total(&self, i: usize) -> u64 {
        debug_assert!(!self.is_leaf());
        u64_at(self.bytes, self.entry_at(i) + ENTRY_OFF_TOTAL)
    }

    /// What entry `i` contributes to the page's summary.
    pub(crate) fn entry_accum(&self, i: usize) -> Accum {
        if self.is_leaf() {
            let mut a = Accum::ZERO;
            a.add_id(&id_of(self.key(i)));
            a
        } else {
            self.child_accum(i)
        }
    }

    /// Sum of entries `range`, from whichever side of the page is shorter.
    pub(crate) fn accum_of(&self, range: std::ops::Range<usize>) -> Accum {
        debug_assert!(range.end <= self.count);
        let outside = self.count - range.len();
        if range.len() <= outside || range.len() < 8 {
            let mut acc = Accum::ZERO;
            for i in range {
                acc.add(&self.entry_accum(i));
            }
            acc
        } else {
            let mut acc = self.summary().accum;
            for i in (0..range.start).chain(range.end..self.count) {
                acc.sub(&self.entry_accum(i));
            }
            acc
        }
    }

    /// Number of entries whose key is below `key`.
    pub(crate) fn lower_bound(&self, key: &Key) -> usize {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The child of a branch that may hold `key`: the last whose first key is at or below it,
    /// or the first child if `key` is below them all.
    pub(crate) fn child_for(&self, key: &Key) -> usize {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.saturating_sub(1)
    }

    /// O(count) checks: keys strictly ascending, zero bytes after the entries and in the header
    /// padding, and the header's total, sum and first key equal to the entries'. A leaf's last
    /// key must be its last entry; a branch's last key depends on its last child, which the
    /// caller checks.
    pub(crate) fn validate_entries(&self) -> Result<(), PageError> {
        for i in 1..self.count {
            if self.key(i - 1) >= self.key(i) {
                return Err(PageError::new(
                    self.no,
                    format!("entry {i} is out of order"),
                ));
            }
        }
        let used = HEADER_BYTES + self.count * self.width;
        if self.bytes[HEADER_USED..HEADER_BYTES]
            .iter()
            .chain(&self.bytes[used..])
            .any(|b| *b != 0)
        {
            return Err(PageError::new(
                self.no,
                "non-zero bytes outside the entries",
            ));
        }
        if !self.is_leaf() && (0..self.count).any(|i| self.child(i) == 0) {
            return Err(PageError::new(self.no, "a branch entry points at page 0"));
        }
        let summary = self.summary();
        // Summed entry by entry: accum_of may start from the header being checked.
        let mut sum = Accum::ZERO;
        for i in 0..self.count {
            sum.add(&self.entry_accum(i));
        }
        if sum != summary.accum {
            return Err(PageError::new(
                self.no,
                "header total or sum differs from the entries",
            ));
        }
        if summary.first != *self.key(0) {
            return Err(PageError::new(
                self.no,
                "header first key differs from the entries",
            ));
        }
        if self.is_leaf() && summary.last != *self.key(self.count - 1) {
            return Err(PageError::new(
                self.no,
                "header last key differs from the entries",
            ));
        }
        if summary.last < summary.first {
            return Err(PageError::new(self.no, "last key below first key"));
        }
        Ok(())
    }
}

/// The id part of an encoded key.
pub(crate) fn id_of(key: &Key) -> xaeroflux_event::EventId {
    xaeroflux_event::EventId(*array(key, 8))
}

/// A page being edited: owned, exactly [`PAGE_BYTES`].
#[derive(Clone)]
pub(crate) struct PageBuf {
    bytes: Box<[u8; PAGE_BYTES]>,
    no: u32,
}

impl PageBuf {
    /// An empty page at `level` (count 0: valid only once an entry is added).
    pub(crate) fn new(no: u32, level: u8) -> PageBuf {
        let bytes: Box<[u8; PAGE_BYTES]> = vec![0u8; PAGE_BYTES]
            .into_boxed_slice()
            .try_into()
            .expect("a vector of PAGE_BYTES");
        let mut page = PageBuf { bytes, no };
        page.bytes[OFF_TAG] = if level == 0 { TAG_LEAF } else { TAG_BRANCH };
        page.bytes[OFF_LEVEL] = level;
        page.bytes[OFF_FORMAT..OFF_FORMAT + 2].copy_from_slice(&PAGE_FORMAT.to_le_bytes());
        page
    }

    /// A copy of a validated page.
    pub(crate) fn copy_of(page: &PageRef<'_>) -> PageBuf {
        PageBuf {
            bytes: Box::new(*page.bytes),
            no: page.no,
        }
    }

    pub(crate) fn level(&self) -> u8 {
        self.bytes[OFF_LEVEL]
    }

    pub(crate) fn count(&self) -> usize {
        usize::from(u16_at(&self.bytes[..], OFF_COUNT))
    }

    fn width(&self) -> usize {
        geometry(self.level()).0
    }

    pub(crate) fn capacity(&self) -> usize {
        geometry(self.level()).1
    }

    pub(crate) fn bytes(&self) -> &[u8; PAGE_BYTES] {
        &self.bytes
    }

    /// The page as a view. Only for pages holding at least one entry.
    pub(crate) fn view(&self) -> PageRef<'_> {
        let (width, capacity) = geometry(self.level());
        let count = self.count();
        assert!(
            (1..=capacity).contains(&count),
            "page {} viewed with {count} entries",
            self.no
        );
        PageRef {
            bytes: &self.bytes,
            no: self.no,
            level: self.level(),
            count,
            width,
        }
    }

    fn set_count(&mut self, count: usize) {
        debug_assert!(count <= self.capacity());
        let count = u16::try_from(count).expect("capacity fits u16");
        self.bytes[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&count.to_le_bytes());
    }

    pub(crate) fn set_summary(&mut self, s: &Summary) {
        self.bytes[OFF_TOTAL..OFF_TOTAL + 8].copy_from_slice(&s.accum.count.to_le_bytes());
        self.bytes[OFF_SUM..OFF_SUM + SUM_BYTES].copy_from_slice(&s.accum.sum_bytes());
        self.bytes[OFF_FIRST..OFF_FIRST + SET_KEY_BYTES].copy_from_slice(&s.first);
        self.bytes[OFF_LAST..OFF_LAST + SET_KEY_BYTES].copy_from_slice(&s.last);
    }

    /// Inserts `entry` (one entry's bytes) before entry `at`, shifting the rest up.
    pub(crate) fn insert_entry(&mut self, at: usize, entry: &[u8]) {
        let (width, count) = (self.width(), self.count());
        assert!(entry.len() == width && at <= count && count < self.capacity());
        let start = HEADER_BYTES + at * width;
        let end = HEADER_BYTES + count * width;
        self.bytes.copy_within(start..end, start + width);
        self.bytes[start..start + width].copy_from_slice(entry);
        self.set_count(count + 1);
    }

    /// Removes entry `at`, shifting the rest down and zeroing the vacated bytes.
    pub(crate) fn remove_entry(&mut self, at: usize) {
        let (width, count) = (self.width(), self.count());
        assert!(at < count);
        let start = HEADER_BYTES + at * width;
        let end = HEADER_BYTES + count * width;
        self.bytes.copy_within(start + width..end, start);
        self.bytes[end - width..end].fill(0);
        self.set_count(count - 1);
    }

    /// Moves entries `from..` to the end of `dest` (same level), leaving this page with `from`.
    pub(crate) fn move_tail_to(&mut self, from: usize, dest: &mut PageBuf) {
        let (width, count) = (self.width(), self.count());
        let dest_count = dest.count();
        assert!(dest.level() == self.level() && from <= count);
        assert!(dest_count + (count - from) <= dest.capacity());
        let src = HEADER_BYTES + from * width..HEADER_BYTES + count * width;
        let at = HEADER_BYTES + dest_count * width;
        dest.bytes[at..at + src.len()].copy_from_slice(&self.bytes[src.clone()]);
        self.bytes[src].fill(0);
        dest.set_count(dest_count + count - from);
        self.set_count(from);
    }

    /// Rewrites branch entry `at` to describe a child.
    pub(crate) fn set_branch_entry(&mut self, at: usize, entry: &[u8; BRANCH_ENTRY_BYTES]) {
        assert!(self.level() > 0 && at < self.count());
        let start = HEADER_BYTES + at * BRANCH_ENTRY_BYTES;
        self.bytes[start..start + BRANCH_ENTRY_BYTES].copy_from_slice(entry);
    }

    /// Recomputes a leaf's summary from its entries.
    pub(crate) fn refresh_leaf(&mut self) {
        let view = self.view();
        debug_assert!(view.is_leaf());
        let mut accum = Accum::ZERO;
        for i in 0..view.count() {
            accum.add_id(&id_of(view.key(i)));
        }
        let s = Summary {
            accum,
            first: *view.key(0),
            last: *view.key(view.count() - 1),
        };
        self.set_summary(&s);
    }

    /// Recomputes a branch's summary from its entries, given its last child's last key.
    pub(crate) fn refresh_branch(&mut self, last: &Key) {
        let view = self.view();
        debug_assert!(!view.is_leaf());
        let mut accum = Accum::ZERO;
        for i in 0..view.count() {
            accum.add(&view.child_accum(i));
        }
        let s = Summary {
            accum,
            first: *view.key(0),
            last: *last,
        };
        self.set_summary(&s);
    }
}

/// The branch entry describing child page `no` with this summary.
pub(crate) fn branch_entry(no: u32, s: &Summary) -> [u8; BRANCH_ENTRY_BYTES] {
    let mut out = [0u8; BRANCH_ENTRY_BYTES];
    out[..SET_KEY_BYTES].copy_from_slice(&s.first);
    out[ENTRY_OFF_PAGE..ENTRY_OFF_TOTAL].copy_from_slice(&no.to_le_bytes());
    out[ENTRY_OFF_TOTAL..ENTRY_OFF_SUM].copy_from_slice(&s.accum.count.to_le_bytes());
    out[ENTRY_OFF_SUM..].copy_from_slice(&s.accum.sum_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: u64, b: u8) -> Key {
        crate::SetKey {
            created_at: t,
            id: xaeroflux_event::EventId([b; 32]),
        }
        .encode()
    }

    fn leaf(no: u32, keys: &[Key]) -> PageBuf {
        let mut p = PageBuf::new(no, 0);
        for (i, k) in keys.iter().enumerate() {
            p.insert_entry(i, k);
        }
        p.refresh_leaf();
        p
    }

    #[test]
    fn a_valid_leaf_round_trips_through_a_view() {
        let p = leaf(3, &[key(1, 1), key(2, 2), key(2, 3)]);
        let v = PageRef::parse(3, p.bytes(), 0).unwrap();
        v.validate_entries().unwrap();
        assert_eq!(v.count(), 3);
        assert_eq!(v.lower_bound(&key(2, 0)), 1);
        assert_eq!(v.lower_bound(&key(2, 2)), 1);
        assert_eq!(v.lower_bound(&key(9, 0)), 3);
        assert_eq!(v.summary().accum.count, 3);
        assert_eq!(v.accum_of(0..3), v.summary().accum);
    }

    #[test]
    fn damaged_headers_are_refused() {
        let p = leaf(1, &[key(1, 1)]);
        let good = p.bytes().to_vec();
        assert!(PageRef::parse(1, &good[..100], 0).is_err());
        assert!(PageRef::parse(1, &good, 1).is_err(), "level mismatch");
        let mut bad = good.clone();
        bad[OFF_TAG] = 9;
        assert!(PageRef::parse(1, &bad, 0).is_err());
        let mut bad = good.clone();
        bad[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&500u16.to_le_bytes());
        assert!(PageRef::parse(1, &bad, 0).is_err());
        let mut bad = good.clone();
        bad[OFF_COUNT..OFF_COUNT + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(PageRef::parse(1, &bad, 0).is_err());
        let garbage = vec![0xa5u8; PAGE_BYTES];
        assert!(PageRef::parse(1, &garbage, 0).is_err());
    }

    #[test]
    fn unsorted_or_mis_summed_entries_fail_validation() {
        let mut p = leaf(1, &[key(1, 1), key(2, 2)]);
        p.bytes[HEADER_BYTES..HEADER_BYTES + 40].copy_from_slice(&key(5, 5));
        let v = PageRef::parse(1, p.bytes(), 0).unwrap();
        assert!(v.validate_entries().is_err());
        let mut p = leaf(1, &[key(1, 1), key(2, 2)]);
        p.bytes[OFF_SUM] ^= 1;
        let v = PageRef::parse(1, p.bytes(), 0).unwrap();
        assert!(v.validate_entries().is_err());
    }

    #[test]
    fn entries_move_and_shift() {
        let mut a = leaf(1, &[key(1, 1), key(2, 2), key(3, 3), key(4, 4)]);
        let mut b = PageBuf::new(2, 0);
        a.move_tail_to(2, &mut b);
        assert_eq!((a.count(), b.count()), (2, 2));
        b.remove_entry(0);
        assert_eq!(b.view().key(0), &key(4, 4));
        a.refresh_leaf();
        b.refresh_leaf();
        PageRef::parse(1, a.bytes(), 0)
            .unwrap()
            .validate_entries()
            .unwrap();
        PageRef::parse(2, b.bytes(), 0)
            .unwrap()
            .validate_entries()
            .unwrap();
    }
}
