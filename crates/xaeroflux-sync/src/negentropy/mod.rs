//! Negentropy protocol V1 (NIP-77), computed from our own set view so a Xaeroflux node can
//! reconcile with any negentropy peer (relays, the reference implementations).
//!
//! The item timestamp is our `created_at` in milliseconds and the item id our event id, so the
//! negentropy order is exactly the [`SetKey`] order. The negentropy fingerprint is a hash of
//! the same additive accumulator the store keeps, so every range fingerprint is one
//! [`SetView::accumulate`] call (O(log n) page reads on the persistent index); only ranges sent
//! as id lists visit items. Bucket edges come from [`SetView::rank`] and [`SetView::nth`].
//!
//! The messages are byte-for-byte those of the reference implementation (`negentropy` 0.5.3)
//! for the same set and input, including its frame size cut: 16 buckets per split range,
//! ranges of fewer than 32 items sent as id lists, and a sender over its frame limit ending the
//! message with one fingerprint over everything it did not cover.
//!
//! Sans-IO: [`NegentropySession`] (the initiator) and [`NegentropyResponder`] take a message
//! and return the next one; the caller moves the bytes and fetches what the ids name.

mod wire;

use std::ops::ControlFlow;

use xaeroflux_event::EventId;
use xaeroflux_event::{Accum, SetKey};

use crate::view::{DynView, Erased, SetView, ViewError};
use wire::{fingerprint, Bound, Mode, Reader, Writer, ID_BYTES, VERSION, VERSIONS_RESERVED};

/// The protocol version byte we speak (negentropy V1).
pub const NEGENTROPY_VERSION: u8 = VERSION;
/// The smallest frame limit a sender accepts (0 means no limit), as in the reference.
pub const NEGENTROPY_FRAME_BYTES_MIN: u64 = 4096;
/// The largest message we accept. A peer without a frame limit answering a near-empty set
/// sends every id it holds in one message: 64 MiB is two million ids.
pub const NEGENTROPY_MESSAGE_BYTES_MAX: u64 = 64 << 20;
/// The most ids one id-list range may carry.
pub const NEGENTROPY_ID_LIST_IDS_MAX: u64 = 1 << 21;
/// The most ranges one message may carry. A correct peer sends at most 16 per range of ours
/// that differed, so this admits some 130,000 differing ranges per round.
pub const NEGENTROPY_RANGES_MAX: u64 = 1 << 21;

/// Buckets a differing range is split into.
const BUCKETS: u64 = 16;
/// Ranges with fewer items go out as id lists.
const ID_LIST_ITEMS_BELOW: u64 = 2 * BUCKETS;
/// Room kept below the frame limit for the range that closes a cut message.
const FRAME_SLACK_BYTES: u64 = 200;

/// Why a negentropy message could not be built or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NegentropyError {
    /// The peer answered with a negentropy version we do not speak (a responder that cannot
    /// handle ours replies with the single byte of its own). Fix: the peer needs negentropy V1
    /// (`0x61`); nothing to retry with, as V1 is the only version there is.
    #[error("peer speaks negentropy version byte {got:#04x}, we speak {supported:#04x}")]
    UnsupportedVersion {
        /// The version byte the peer sent.
        got: u8,
        /// The version byte we speak.
        supported: u8,
    },
    /// The first byte is not a negentropy version (0x60..=0x6f). Fix: the stream carries
    /// another protocol, or lost framing; check what the transport delivers.
    #[error("first byte {got:#04x} is not a negentropy version byte")]
    NotNegentropy {
        /// The first byte received.
        got: u8,
    },
    /// The message is cut short or holds something no encoder writes. Fix: the peer or the
    /// transport is broken; drop the session.
    #[error("malformed negentropy message at byte {offset}: {reason}")]
    Malformed {
        /// Where reading stopped.
        offset: u64,
        /// What was wrong there.
        reason: &'static str,
    },
    /// A range bound lies below the previous one. Fix: the peer is broken; drop the session.
    #[error("negentropy range bound at byte {offset} is below the previous bound")]
    BoundsOutOfOrder {
        /// Where the bound starts.
        offset: u64,
    },
    /// The message exceeds [`NEGENTROPY_MESSAGE_BYTES_MAX`]. Fix: the peer should set a frame
    /// size limit (NIP-77 peers commonly use 60,000 bytes or less).
    #[error("negentropy message of {got} bytes exceeds the {max}-byte limit")]
    MessageTooLarge {
        /// The message's size.
        got: u64,
        /// The largest size accepted.
        max: u64,
    },
    /// An id-list range carries more than [`NEGENTROPY_ID_LIST_IDS_MAX`] ids. Fix: the peer
    /// should set a frame size limit.
    #[error("negentropy id list of {got} ids exceeds the limit of {max}")]
    IdListTooLong {
        /// The count the peer wrote.
        got: u64,
        /// The most ids accepted.
        max: u64,
    },
    /// The message carries more than [`NEGENTROPY_RANGES_MAX`] ranges. Fix: the peer should
    /// set a frame size limit.
    #[error("negentropy message carries more than {max} ranges")]
    TooManyRanges {
        /// The most ranges accepted.
        max: u64,
    },
    /// A frame limit between 1 and [`NEGENTROPY_FRAME_BYTES_MIN`] - 1 bytes, which would leave
    /// no room for the closing range. Fix: pass 0 (no limit) or at least the minimum.
    #[error("frame limit of {got} bytes is below the minimum of {min}")]
    FrameLimitTooSmall {
        /// The limit asked for.
        got: u64,
        /// The smallest limit allowed.
        min: u64,
    },
    /// The set view contradicted itself within one message (a count that its keys do not
    /// match). Fix: answer each message from one snapshot, e.g. one read transaction.
    #[error("the set view changed while a negentropy message was built")]
    InconsistentView,
    /// The set could not be read. Fix: see the inner error.
    #[error("reading the set failed: {0}")]
    View(#[from] ViewError),
}

/// A sender's frame limit: 0 for none, else at least [`NEGENTROPY_FRAME_BYTES_MIN`].
#[derive(Clone, Copy, Debug)]
struct FrameLimit(u64);

impl FrameLimit {
    fn new(frame_bytes_max: u64) -> Result<FrameLimit, NegentropyError> {
        if frame_bytes_max != 0 && frame_bytes_max < NEGENTROPY_FRAME_BYTES_MIN {
            return Err(NegentropyError::FrameLimitTooSmall {
                got: frame_bytes_max,
                min: NEGENTROPY_FRAME_BYTES_MIN,
            });
        }
        Ok(FrameLimit(frame_bytes_max))
    }

    /// Whether a message of `len` bytes leaves too little room to close it.
    fn exceeded(self, len: usize) -> bool {
        self.0 != 0 && len as u64 > self.0 - FRAME_SLACK_BYTES
    }
}

/// The initiator of a negentropy reconciliation: sends the first message, then answers each
/// reply until it has nothing left to ask, collecting the ids only it has and the ids only the
/// peer has.
#[derive(Debug)]
pub struct NegentropySession {
    frame: FrameLimit,
    have: Vec<EventId>,
    need: Vec<EventId>,
}

impl NegentropySession {
    /// Starts a reconciliation of `view` and returns the session with the first message.
    /// `frame_bytes_max` bounds every later message this side sends (0: no bound, else at
    /// least [`NEGENTROPY_FRAME_BYTES_MIN`]); the first message is at most 16 fingerprints or
    /// 31 ids, whatever the set's size.
    pub fn initiate<V: SetView + ?Sized>(
        view: &V,
        frame_bytes_max: u64,
    ) -> Result<(NegentropySession, Vec<u8>), NegentropyError> {
        let view: &dyn DynView = &Erased(view);
        let frame = FrameLimit::new(frame_bytes_max)?;
        let mut w = Writer::new();
        let everything = view.accumulate(&SetKey::MIN, &Bound::INFINITY.key)?;
        split(view, &mut w, &SetKey::MIN, &Bound::INFINITY, &everything)?;
        let session = NegentropySession {
            frame,
            have: Vec::new(),
            need: Vec::new(),
        };
        Ok((session, w.finish()))
    }

    /// Takes the peer's reply and returns the next message, or `None` when reconciliation is
    /// complete. The ids learnt from this reply are added to [`NegentropySession::have_ids`]
    /// and [`NegentropySession::need_ids`]; on error nothing is added.
    ///
    /// With a frame limit, an id can be reported again in a later round: a cut message ends
    /// with one fingerprint over everything after the last range it wrote, id lists already
    /// settled included, and the peer answers those again. The reference does the same (the
    /// messages are identical); deduplicate before acting on the ids.
    pub fn reconcile<V: SetView + ?Sized>(
        &mut self,
        view: &V,
        msg: &[u8],
    ) -> Result<Option<Vec<u8>>, NegentropyError> {
        let view: &dyn DynView = &Erased(view);
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let out = reply(
            view,
            msg,
            self.frame,
            Role::Initiator {
                have: &mut have,
                need: &mut need,
            },
        )?;
        self.have.append(&mut have);
        self.need.append(&mut need);
        Ok((out.len() > 1).then_some(out))
    }

    /// Ids we hold that the peer lacks, learnt so far.
    pub fn have_ids(&self) -> &[EventId] {
        &self.have
    }

    /// Ids the peer holds that we lack, learnt so far.
    pub fn need_ids(&self) -> &[EventId] {
        &self.need
    }

    /// Hands over the ids we hold that the peer lacks, learnt since the last call.
    pub fn take_have_ids(&mut self) -> Vec<EventId> {
        std::mem::take(&mut self.have)
    }

    /// Hands over the ids the peer holds that we lack, learnt since the last call.
    pub fn take_need_ids(&mut self) -> Vec<EventId> {
        std::mem::take(&mut self.need)
    }
}

/// The responder of a negentropy reconciliation: answers each message on its own (no state
/// between messages), so one responder serves any number of initiators.
#[derive(Clone, Copy, Debug)]
pub struct NegentropyResponder {
    frame: FrameLimit,
}

impl NegentropyResponder {
    /// A responder whose replies stay within `frame_bytes_max` bytes (0: no bound, else at
    /// least [`NEGENTROPY_FRAME_BYTES_MIN`]).
    pub fn new(frame_bytes_max: u64) -> Result<NegentropyResponder, NegentropyError> {
        Ok(NegentropyResponder {
            frame: FrameLimit::new(frame_bytes_max)?,
        })
    }

    /// Answers one message about `view`. A message of another negentropy version gets the
    /// one-byte reply `[0x61]`, as the spec asks, so the initiator can downgrade.
    pub fn respond<V: SetView + ?Sized>(
        &self,
        view: &V,
        msg: &[u8],
    ) -> Result<Vec<u8>, NegentropyError> {
        reply(&Erased(view), msg, self.frame, Role::Responder)
    }
}

/// The side answering a message: only the initiator learns ids, only the responder answers
/// id lists with its own.
enum Role<'a> {
    Initiator {
        have: &'a mut Vec<EventId>,
        need: &'a mut Vec<EventId>,
    },
    Responder,
}

/// Checks the version byte; `Some` is the whole reply (a responder's version notice).
fn check_version(msg: &[u8], role: &Role<'_>) -> Result<Option<Vec<u8>>, NegentropyError> {
    if msg.len() as u64 > NEGENTROPY_MESSAGE_BYTES_MAX {
        return Err(NegentropyError::MessageTooLarge {
            got: msg.len() as u64,
            max: NEGENTROPY_MESSAGE_BYTES_MAX,
        });
    }
    let Some(&got) = msg.first() else {
        return Err(NegentropyError::Malformed {
            offset: 0,
            reason: "empty message",
        });
    };
    if !VERSIONS_RESERVED.contains(&got) {
        return Err(NegentropyError::NotNegentropy { got });
    }
    match (got == VERSION, role) {
        (true, _) => Ok(None),
        (false, Role::Responder) => Ok(Some(vec![VERSION])),
        (false, Role::Initiator { .. }) => Err(NegentropyError::UnsupportedVersion {
            got,
            supported: VERSION,
        }),
    }
}

/// Answers one message: walks the peer's ranges in order, skipping those whose fingerprints
/// match ours, splitting those that differ and settling id lists.
fn reply(
    view: &dyn DynView,
    msg: &[u8],
    frame: FrameLimit,
    mut role: Role<'_>,
) -> Result<Vec<u8>, NegentropyError> {
    if let Some(notice) = check_version(msg, &role)? {
        return Ok(notice);
    }
    let mut r = Reader::new(msg);
    let mut w = Writer::new();
    let mut prev = Bound::START;
    // Ranges we settled without writing: written as one Skip before the next range we write,
    // dropped if nothing follows.
    let mut skipping = false;
    // Our output covers every key below this one.
    let mut covered_to = SetKey::MIN;
    let mut ranges = 0u64;
    while !r.is_empty() {
        ranges += 1;
        if ranges > NEGENTROPY_RANGES_MAX {
            return Err(NegentropyError::TooManyRanges {
                max: NEGENTROPY_RANGES_MAX,
            });
        }
        let at = r.offset() as u64;
        let curr = r.bound()?;
        if curr.key < prev.key {
            return Err(NegentropyError::BoundsOutOfOrder { offset: at });
        }
        let mode = r.mode()?;
        let mut committed = w.len();
        match mode {
            Mode::Skip => skipping = true,
            Mode::Fingerprint => {
                let theirs = r.fingerprint()?;
                let ours = view.accumulate(&prev.key, &curr.key)?;
                if fingerprint(&ours) == theirs {
                    skipping = true;
                } else {
                    flush_skip(&mut w, &mut skipping, &prev);
                    split(view, &mut w, &prev.key, &curr, &ours)?;
                }
            }
            Mode::IdList => {
                let ids = read_id_list(&mut r)?;
                match &mut role {
                    Role::Initiator { have, need } => {
                        settle_ids(view, &prev.key, &curr.key, ids, have, need)?;
                        skipping = true;
                    }
                    Role::Responder => {
                        flush_skip(&mut w, &mut skipping, &prev);
                        // The id list stays even if it fills the frame: it is cut to fit and
                        // the closing fingerprint starts where it stopped.
                        covered_to = send_ids(view, &mut w, &prev.key, &curr, frame, committed)?;
                        committed = w.len();
                    }
                }
            }
        }
        if frame.exceeded(w.len()) {
            // Drop this range's output and close with one fingerprint over the rest, which
            // the peer reads as starting at the last bound we wrote.
            w.truncate(committed);
            let rest = if covered_to < Bound::INFINITY.key {
                view.accumulate(&covered_to, &Bound::INFINITY.key)?
            } else {
                Accum::ZERO
            };
            w.bound(&Bound::INFINITY);
            w.mode(Mode::Fingerprint);
            w.bytes(&fingerprint(&rest));
            break;
        }
        if w.len() > committed {
            covered_to = curr.key;
        }
        prev = curr;
    }
    Ok(w.finish())
}

/// Writes the pending run of settled ranges as one Skip ending at `prev`.
fn flush_skip(w: &mut Writer, skipping: &mut bool, prev: &Bound) {
    if std::mem::take(skipping) {
        w.bound(prev);
        w.mode(Mode::Skip);
    }
}

/// Reads an id list's count and ids, bounded before anything is reserved.
fn read_id_list<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], NegentropyError> {
    let at = r.offset() as u64;
    let count = r.varint()?;
    if count > NEGENTROPY_ID_LIST_IDS_MAX {
        return Err(NegentropyError::IdListTooLong {
            got: count,
            max: NEGENTROPY_ID_LIST_IDS_MAX,
        });
    }
    // count <= 2^21, so the product fits.
    let bytes = count as usize * ID_BYTES;
    if bytes > r.remaining() {
        return Err(NegentropyError::Malformed {
            offset: at,
            reason: "id list longer than the message",
        });
    }
    r.bytes(bytes)
}

/// Sends the fingerprints of `[lo, hi)` split into 16 buckets of near-equal counts, or the ids
/// themselves when there are fewer than 32. `acc` summarises the range.
fn split(
    view: &dyn DynView,
    w: &mut Writer,
    lo: &SetKey,
    hi: &Bound,
    acc: &Accum,
) -> Result<(), NegentropyError> {
    let n = acc.count;
    if n < ID_LIST_ITEMS_BELOW {
        w.bound(hi);
        w.mode(Mode::IdList);
        w.varint(n);
        let mut sent = 0u64;
        view.for_each_in(lo, &hi.key, &mut |key| {
            if sent == n {
                return ControlFlow::Break(());
            }
            w.bytes(&key.id.0);
            sent += 1;
            ControlFlow::Continue(())
        })?;
        if sent != n {
            return Err(NegentropyError::InconsistentView);
        }
        return Ok(());
    }
    let base = view.rank(lo)?;
    let (per_bucket, with_extra) = (n / BUCKETS, n % BUCKETS);
    let mut start = *lo;
    let mut taken = 0u64;
    for bucket in 0..BUCKETS {
        let size = per_bucket + u64::from(bucket < with_extra);
        taken += size;
        let (end, bound) = if taken == n {
            (hi.key, *hi)
        } else {
            let last = nth(view, base + taken - 1)?;
            let next = nth(view, base + taken)?;
            if last >= next {
                return Err(NegentropyError::InconsistentView);
            }
            (next, Bound::between(&last, &next))
        };
        let acc = view.accumulate(&start, &end)?;
        if acc.count != size {
            return Err(NegentropyError::InconsistentView);
        }
        w.bound(&bound);
        w.mode(Mode::Fingerprint);
        w.bytes(&fingerprint(&acc));
        start = end;
    }
    debug_assert_eq!(taken, n);
    Ok(())
}

fn nth(view: &dyn DynView, rank: u64) -> Result<SetKey, NegentropyError> {
    view.nth(rank)?.ok_or(NegentropyError::InconsistentView)
}

/// The initiator's side of an id list: our ids in `[lo, hi)` missing from `theirs` are ours
/// to offer, theirs missing from ours are ours to fetch.
fn settle_ids(
    view: &dyn DynView,
    lo: &SetKey,
    hi: &SetKey,
    theirs: &[u8],
    have: &mut Vec<EventId>,
    need: &mut Vec<EventId>,
) -> Result<(), NegentropyError> {
    // Borrowed from the message and sorted: 8 bytes per id, looked up by binary search.
    let mut theirs: Vec<&EventId> = theirs
        .chunks_exact(ID_BYTES)
        .filter_map(|chunk| <&[u8; ID_BYTES]>::try_from(chunk).ok())
        .map(EventId::from_ref)
        .collect();
    theirs.sort_unstable();
    theirs.dedup();
    let mut matched = vec![false; theirs.len()];
    view.for_each_in(lo, hi, &mut |key| {
        match theirs.binary_search(&&key.id) {
            Ok(i) if !matched[i] => matched[i] = true,
            _ => have.push(key.id),
        }
        ControlFlow::Continue(())
    })?;
    need.extend(
        theirs
            .iter()
            .zip(&matched)
            .filter(|(_, &seen)| !seen)
            .map(|(id, _)| **id),
    );
    Ok(())
}

/// The responder's side of an id list: every id we hold in `[lo, hi)`, cut where the frame
/// fills. Returns the key the list covers up to (`hi`, or the first id left out).
fn send_ids(
    view: &dyn DynView,
    w: &mut Writer,
    lo: &SetKey,
    hi: &Bound,
    frame: FrameLimit,
    frame_used: usize,
) -> Result<SetKey, NegentropyError> {
    let mut ids = Vec::new();
    let mut count = 0u64;
    let mut end = *hi;
    view.for_each_in(lo, &hi.key, &mut |key| {
        if frame.exceeded(frame_used + ids.len()) {
            end = Bound::exact(*key);
            return ControlFlow::Break(());
        }
        ids.extend_from_slice(&key.id.0);
        count += 1;
        ControlFlow::Continue(())
    })?;
    w.bound(&end);
    w.mode(Mode::IdList);
    w.varint(count);
    w.bytes(&ids);
    Ok(end.key)
}

#[cfg(test)]
mod tests;
