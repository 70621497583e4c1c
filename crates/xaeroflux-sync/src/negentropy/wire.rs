//! The byte layer of negentropy protocol V1: varints, bounds with delta-coded timestamps,
//! modes and fingerprints. Decoding is strict where the reference is lenient (a varint cut
//! short or wider than 64 bits is an error, not a silently shortened number), so anything we
//! accept is something a correct encoder could have written.

use sha2::{Digest, Sha256};
use xaeroflux_event::EventId;
use xaeroflux_event::{Accum, SetKey};

use super::NegentropyError;

/// The protocol version byte of negentropy V1.
pub const VERSION: u8 = 0x61;
/// Version bytes reserved for negentropy; anything else is not a negentropy message.
pub const VERSIONS_RESERVED: std::ops::RangeInclusive<u8> = 0x60..=0x6f;
/// Bytes in an id.
pub const ID_BYTES: usize = 32;
/// Bytes in a range fingerprint.
pub const FINGERPRINT_BYTES: usize = 16;
/// The widest varint a u64 needs: ceil(64 / 7).
const VARINT_BYTES_MAX: usize = 10;

/// What a range's payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the sender is done with this range.
    Skip = 0,
    /// A 16-byte fingerprint of the sender's ids in the range.
    Fingerprint = 1,
    /// A count and every id the sender holds in the range.
    IdList = 2,
}

/// A range's exclusive upper bound as written on the wire: a key whose id is a prefix of
/// `id_len` bytes padded with zeros. The prefix length is kept so a bound we echo back (the
/// start of a skipped run) is written exactly as the peer wrote it, as the reference does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub key: SetKey,
    pub id_len: u8,
}

impl Bound {
    /// Where the first range of every message starts: timestamp 0, empty prefix.
    pub const START: Bound = Bound {
        key: SetKey::MIN,
        id_len: 0,
    };
    /// The end of the key space: the reserved timestamp `u64::MAX`, empty prefix. Keys at that
    /// timestamp lie outside every range, as the spec reserves it.
    pub const INFINITY: Bound = Bound {
        key: SetKey {
            created_at: u64::MAX,
            id: EventId([0; ID_BYTES]),
        },
        id_len: 0,
    };

    /// A bound naming exactly this key.
    pub fn exact(key: SetKey) -> Bound {
        Bound {
            key,
            id_len: ID_BYTES as u8,
        }
    }

    /// The shortest bound above `prev` and at or below `next` (`prev < next`): the bare
    /// timestamp if they differ there, else the common id prefix plus one byte.
    pub fn between(prev: &SetKey, next: &SetKey) -> Bound {
        debug_assert!(prev < next, "bounds split adjacent keys in order");
        if prev.created_at != next.created_at {
            return Bound {
                key: SetKey::at_time(next.created_at),
                id_len: 0,
            };
        }
        let shared = prev
            .id
            .0
            .iter()
            .zip(&next.id.0)
            .take_while(|(a, b)| a == b)
            .count();
        // Equal keys (a view that repeats a key) would ask for 33 bytes: clamp.
        let id_len = (shared + 1).min(ID_BYTES);
        let mut id = [0u8; ID_BYTES];
        id[..id_len].copy_from_slice(&next.id.0[..id_len]);
        let bound = Bound {
            key: SetKey {
                created_at: next.created_at,
                id: EventId(id),
            },
            id_len: id_len as u8,
        };
        debug_assert!(*prev < bound.key && bound.key <= *next);
        bound
    }

    fn prefix(&self) -> &[u8] {
        &self.key.id.0[..usize::from(self.id_len)]
    }
}

/// The negentropy fingerprint of a range: the first 16 bytes of
/// SHA-256(sum of ids mod 2^256, 32 bytes LE ‖ varint(count)). This is the additive
/// accumulator the store already keeps, so any range's fingerprint costs one `accumulate`.
pub fn fingerprint(acc: &Accum) -> [u8; FINGERPRINT_BYTES] {
    let mut count = [0u8; VARINT_BYTES_MAX];
    let count_len = put_varint(&mut count, acc.count);
    let mut h = Sha256::new();
    h.update(acc.sum_bytes());
    h.update(&count[..count_len]);
    let digest = h.finalize();
    let mut out = [0u8; FINGERPRINT_BYTES];
    out.copy_from_slice(&digest[..FINGERPRINT_BYTES]);
    out
}

/// Writes `n` as base-128 digits, most significant first, high bit set on all but the last;
/// returns the length used.
fn put_varint(out: &mut [u8; VARINT_BYTES_MAX], mut n: u64) -> usize {
    let mut digits = [0u8; VARINT_BYTES_MAX];
    let mut len = 0;
    loop {
        digits[len] = (n & 0x7f) as u8;
        len += 1;
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    for (i, slot) in out[..len].iter_mut().enumerate() {
        let digit = digits[len - 1 - i];
        *slot = if i + 1 < len { digit | 0x80 } else { digit };
    }
    len
}

/// Builds one message. Timestamps are written as deltas from the previous bound in the same
/// message, so the writer carries the last timestamp it wrote.
pub struct Writer {
    out: Vec<u8>,
    last_timestamp: u64,
}

impl Writer {
    /// A message holding only the version byte.
    pub fn new() -> Writer {
        Writer {
            out: vec![VERSION],
            last_timestamp: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Drops everything after `len` bytes. The timestamp state is not rewound: callers only
    /// cut before writing [`Bound::INFINITY`], whose encoding does not depend on it.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(len >= 1, "the version byte stays");
        self.out.truncate(len);
    }

    pub fn varint(&mut self, n: u64) {
        let mut buf = [0u8; VARINT_BYTES_MAX];
        let len = put_varint(&mut buf, n);
        self.out.extend_from_slice(&buf[..len]);
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn mode(&mut self, mode: Mode) {
        self.varint(mode as u64);
    }

    /// Infinity is 0; any other timestamp is 1 + its distance from the previous one
    /// (saturating, as the reference does, though ascending bounds never need it).
    pub fn bound(&mut self, bound: &Bound) {
        let ts = bound.key.created_at;
        if ts == u64::MAX {
            self.last_timestamp = u64::MAX;
            self.varint(0);
        } else {
            let delta = ts.saturating_sub(self.last_timestamp);
            self.last_timestamp = ts;
            self.varint(delta + 1);
        }
        self.varint(u64::from(bound.id_len));
        self.out.extend_from_slice(bound.prefix());
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads one message's ranges after its version byte.
pub struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
    last_timestamp: u64,
}

impl<'a> Reader<'a> {
    /// Reads the ranges of `msg`, whose version byte has been checked.
    pub fn new(msg: &'a [u8]) -> Reader<'a> {
        debug_assert_eq!(msg.first(), Some(&VERSION));
        Reader {
            buf: msg,
            offset: 1,
            last_timestamp: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.offset >= self.buf.len()
    }

    /// Byte offset of the next unread byte, for error reports.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.offset)
    }

    fn malformed(&self, reason: &'static str) -> NegentropyError {
        NegentropyError::Malformed {
            offset: self.offset as u64,
            reason,
        }
    }

    pub fn varint(&mut self) -> Result<u64, NegentropyError> {
        let mut n: u64 = 0;
        for _ in 0..VARINT_BYTES_MAX {
            let Some(&byte) = self.buf.get(self.offset) else {
                return Err(self.malformed("message ends inside a varint"));
            };
            if n >> 57 != 0 {
                return Err(self.malformed("varint wider than 64 bits"));
            }
            self.offset += 1;
            n = (n << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], NegentropyError> {
        if self.remaining() < n {
            return Err(self.malformed("message ends inside a field"));
        }
        let out = &self.buf[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    pub fn mode(&mut self) -> Result<Mode, NegentropyError> {
        match self.varint()? {
            0 => Ok(Mode::Skip),
            1 => Ok(Mode::Fingerprint),
            2 => Ok(Mode::IdList),
            _ => Err(self.malformed("unknown range mode")),
        }
    }

    pub fn fingerprint(&mut self) -> Result<[u8; FINGERPRINT_BYTES], NegentropyError> {
        let mut out = [0u8; FINGERPRINT_BYTES];
        out.copy_from_slice(self.bytes(FINGERPRINT_BYTES)?);
        Ok(out)
    }

    pub fn bound(&mut self) -> Result<Bound, NegentropyError> {
        let encoded = self.varint()?;
        let ts = match encoded {
            0 => u64::MAX,
            n => (n - 1).saturating_add(self.last_timestamp),
        };
        self.last_timestamp = ts;
        let id_len = self.varint()?;
        if id_len > ID_BYTES as u64 {
            return Err(self.malformed("bound id prefix longer than 32 bytes"));
        }
        let prefix = self.bytes(id_len as usize)?;
        let mut id = [0u8; ID_BYTES];
        id[..prefix.len()].copy_from_slice(prefix);
        Ok(Bound {
            key: SetKey {
                created_at: ts,
                id: EventId(id),
            },
            id_len: id_len as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(created_at: u64, id: [u8; 32]) -> SetKey {
        SetKey {
            created_at,
            id: EventId(id),
        }
    }

    fn message(w: Writer) -> Vec<u8> {
        w.finish()
    }

    #[test]
    fn varints_match_the_spec_examples() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (300, &[0x82, 0x2c]),
            (
                u64::MAX,
                &[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            ),
        ];
        for (n, bytes) in cases {
            let mut w = Writer::new();
            w.varint(n);
            assert_eq!(&message(w)[1..], bytes, "varint({n})");
        }
    }

    #[test]
    fn rejects_cut_and_overwide_varints() {
        for bad in [&[VERSION, 0x80][..], &[VERSION, 0x82, 0x80]] {
            let mut r = Reader::new(bad);
            assert!(matches!(r.varint(), Err(NegentropyError::Malformed { .. })));
        }
        // 2^64 needs 65 bits.
        let wide = [
            VERSION, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert!(Reader::new(&wide).varint().is_err());
        let long = [
            VERSION, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert!(Reader::new(&long).varint().is_err());
    }

    #[test]
    fn minimal_bounds_separate_neighbours() {
        let a = key(5, [7; 32]);
        let b = key(9, [1; 32]);
        assert_eq!(
            Bound::between(&a, &b),
            Bound {
                key: SetKey::at_time(9),
                id_len: 0
            }
        );
        let mut c = [7; 32];
        c[3] = 8;
        let bound = Bound::between(&a, &key(5, c));
        assert_eq!(bound.id_len, 4);
        assert_eq!(&bound.key.id.0[..4], &[7, 7, 7, 8]);
        assert!(bound.key.id.0[4..].iter().all(|&x| x == 0));
    }

    #[test]
    fn rejects_long_prefixes_and_unknown_modes() {
        let msg = [VERSION, 0x01, 33];
        assert!(Reader::new(&msg).bound().is_err());
        let msg = [VERSION, 0x03];
        assert!(Reader::new(&msg).mode().is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip(ns in proptest::collection::vec(any::<u64>(), 0..20)) {
            let mut w = Writer::new();
            for &n in &ns { w.varint(n); }
            let msg = message(w);
            let mut r = Reader::new(&msg);
            for &n in &ns { prop_assert_eq!(r.varint().unwrap(), n); }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn ascending_bounds_round_trip(
            mut raw in proptest::collection::vec((0u64..u64::MAX, any::<[u8; 32]>(), 0u8..=32), 0..20),
            infinity_last in any::<bool>(),
        ) {
            raw.sort();
            let mut bounds: Vec<Bound> = raw.into_iter().map(|(ts, id, len)| {
                let mut padded = [0u8; 32];
                padded[..usize::from(len)].copy_from_slice(&id[..usize::from(len)]);
                Bound { key: key(ts, padded), id_len: len }
            }).collect();
            if infinity_last { bounds.push(Bound::INFINITY); }
            let mut w = Writer::new();
            for b in &bounds { w.bound(b); w.mode(Mode::Skip); }
            let msg = message(w);
            let mut r = Reader::new(&msg);
            for b in &bounds {
                prop_assert_eq!(&r.bound().unwrap(), b);
                prop_assert_eq!(r.mode().unwrap(), Mode::Skip);
            }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn between_is_minimal_and_separates(
            ts in 0u64..4, a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), ts2 in 0u64..4,
        ) {
            let (x, y) = (key(ts, a), key(ts2, b));
            prop_assume!(x != y);
            let (lo, hi) = if x < y { (x, y) } else { (y, x) };
            let bound = Bound::between(&lo, &hi);
            prop_assert!(lo < bound.key && bound.key <= hi);
            if bound.id_len > 0 {
                // One byte shorter would no longer separate them.
                let mut shorter = bound.key;
                shorter.id.0[usize::from(bound.id_len) - 1] = 0;
                prop_assert!(shorter <= lo);
            }
        }
    }
}
