//! The reconciled set: every stored event as a [`SetKey`] `(created_at, id)`, in the order
//! every peer agrees on, and the additive [`Accum`] that fingerprints any part of it.
//!
//! An accumulator is the sum of the ids (read as little-endian 256-bit integers) modulo 2^256
//! together with the number of ids. Sums combine in any order and subtract, so the accumulator of
//! a range is `prefix(hi) - prefix(lo)` and two peers holding the same events get the same value
//! whatever order the events arrived in. `docs/format.md` states what this does and does not
//! protect against.

use crate::keys::EventId;

/// Where an event sits in the canonical order: creation time (ms), then id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct SetKey {
    /// Milliseconds since the Unix epoch, from the event header.
    pub created_at: u64,
    /// The event id.
    pub id: EventId,
}

/// Encoded size of a [`SetKey`]: `created_at` u64 big-endian, then the 32-byte id.
pub const SET_KEY_BYTES: usize = 40;

impl SetKey {
    /// The smallest key: an inclusive lower bound that admits everything.
    pub const MIN: SetKey = SetKey {
        created_at: 0,
        id: EventId([0; 32]),
    };
    /// The largest key: an exclusive upper bound that admits every real event (no event can
    /// carry this timestamp: verification bounds `created_at` to the near future).
    pub const MAX: SetKey = SetKey {
        created_at: u64::MAX,
        id: EventId([0xff; 32]),
    };

    /// A key at the start of millisecond `created_at`: every event of that millisecond sorts at
    /// or after it.
    pub fn at_time(created_at: u64) -> SetKey {
        SetKey {
            created_at,
            id: EventId([0; 32]),
        }
    }

    /// Big-endian encoding: byte order is key order.
    pub fn encode(&self) -> [u8; SET_KEY_BYTES] {
        let mut out = [0u8; SET_KEY_BYTES];
        out[..8].copy_from_slice(&self.created_at.to_be_bytes());
        out[8..].copy_from_slice(&self.id.0);
        out
    }

    /// Inverse of [`SetKey::encode`].
    pub fn decode(bytes: &[u8; SET_KEY_BYTES]) -> SetKey {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[..8]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[8..]);
        SetKey {
            created_at: u64::from_be_bytes(ts),
            id: EventId(id),
        }
    }
}

/// Additive summary of a set of ids: their sum modulo 2^256 and their count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Accum {
    /// Sum of the ids as little-endian 256-bit integers, as four little-endian u64 limbs.
    pub sum: [u64; 4],
    /// Number of ids summed.
    pub count: u64,
}

/// Encoded size of an [`Accum`] sum.
pub const SUM_BYTES: usize = 32;

impl Accum {
    /// The empty set.
    pub const ZERO: Accum = Accum {
        sum: [0; 4],
        count: 0,
    };

    /// Adds one id.
    pub fn add_id(&mut self, id: &EventId) {
        self.add_sum(&limbs(&id.0));
        self.count += 1;
    }

    /// Removes one id previously added.
    pub fn sub_id(&mut self, id: &EventId) {
        self.sub_sum(&limbs(&id.0));
        self.count = self.count.wrapping_sub(1);
    }

    /// Adds a disjoint set's summary.
    pub fn add(&mut self, other: &Accum) {
        self.add_sum(&other.sum);
        self.count = self.count.wrapping_add(other.count);
    }

    /// Removes a subset's summary.
    pub fn sub(&mut self, other: &Accum) {
        self.sub_sum(&other.sum);
        self.count = self.count.wrapping_sub(other.count);
    }

    /// The sum as 32 little-endian bytes (the on-disk and negentropy form).
    pub fn sum_bytes(&self) -> [u8; SUM_BYTES] {
        let mut out = [0u8; SUM_BYTES];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.sum) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// Reads a sum written by [`Accum::sum_bytes`].
    pub fn from_parts(sum: &[u8; SUM_BYTES], count: u64) -> Accum {
        Accum {
            sum: limbs(sum),
            count,
        }
    }

    /// The set's name: BLAKE3 in derive-key mode over the sum and the count (u64 LE). Equal
    /// sets always get equal fingerprints; see `docs/format.md` for when unequal sets can too.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("xaeroflux set v1");
        h.update(&self.sum_bytes());
        h.update(&self.count.to_le_bytes());
        *h.finalize().as_bytes()
    }

    fn add_sum(&mut self, x: &[u64; 4]) {
        let mut carry = false;
        for (a, b) in self.sum.iter_mut().zip(x) {
            let (s1, c1) = a.overflowing_add(*b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 | c2;
        }
    }

    fn sub_sum(&mut self, x: &[u64; 4]) {
        let mut borrow = false;
        for (a, b) in self.sum.iter_mut().zip(x) {
            let (d1, b1) = a.overflowing_sub(*b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 | b2;
        }
    }
}

/// A key found by rank, with the key before it and the summary of every key below it: what
/// one descent of a set index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetBoundary {
    /// The key just before `at`; `None` for the first key.
    pub before: Option<SetKey>,
    /// The key at the rank asked for.
    pub at: SetKey,
    /// Sum and count of every key below `at`.
    pub below: Accum,
}

fn limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: [u8; 32]) -> EventId {
        EventId(b)
    }

    #[test]
    fn carries_across_limbs_and_wraps() {
        let mut a = Accum::ZERO;
        a.add_id(&id([0xff; 32]));
        a.add_id(&id({
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }));
        assert_eq!(a.sum, [0; 4], "2^256 - 1 + 1 wraps to zero");
        assert_eq!(a.count, 2);
    }

    #[test]
    fn keys_encode_in_order() {
        let a = SetKey {
            created_at: 5,
            id: id([0xff; 32]),
        };
        let b = SetKey {
            created_at: 6,
            id: id([0; 32]),
        };
        assert!(a < b && a.encode() < b.encode());
        assert_eq!(SetKey::decode(&a.encode()), a);
        assert!(SetKey::MIN < a && b < SetKey::MAX);
    }

    proptest! {
        #[test]
        fn order_free_and_subtractable(ids in proptest::collection::vec(any::<[u8; 32]>(), 0..40), split in 0usize..40) {
            let mut fwd = Accum::ZERO;
            for b in &ids { fwd.add_id(&id(*b)); }
            let mut rev = Accum::ZERO;
            for b in ids.iter().rev() { rev.add_id(&id(*b)); }
            prop_assert_eq!(fwd, rev);
            let split = split.min(ids.len());
            let mut head = Accum::ZERO;
            for b in &ids[..split] { head.add_id(&id(*b)); }
            let mut tail = fwd;
            tail.sub(&head);
            let mut expect = Accum::ZERO;
            for b in &ids[split..] { expect.add_id(&id(*b)); }
            prop_assert_eq!(tail, expect);
            prop_assert_eq!(Accum::from_parts(&fwd.sum_bytes(), fwd.count), fwd);
        }
    }
}
