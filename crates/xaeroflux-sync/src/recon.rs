//! Range-based reconciliation with coded-symbol leaves: one side of it.
//!
//! Each turn answers every open range of the peer's message. A range whose fingerprints match
//! is closed. A mismatching range is split into sub-ranges (fingerprints again) while it is
//! large or while the differences cannot be estimated; once the mismatching ranges are small
//! and the mismatch rate gives a difference estimate `d`, they are merged into one *pool* and
//! the pool's rateless coded symbols (about 1.5·d of them) go out instead: the peer subtracts
//! its own symbols over the same ranges and peels the symmetric difference out. A pool that
//! does not decode asks for more symbols. Ranges one side has nothing of are closed at once
//! ("send everything here"), which is also the bulk path of a fresh peer.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use xaeroflux_event::EventId;
use xaeroflux_event::{Accum, SetBoundary, SetKey};

use crate::error::SyncError;
use crate::riblt::{self, DecodeState, Decoder, Symbol};
use crate::view::DynView;
use crate::wire::{min_bound, Hello, Mode, MoreSymbols, PoolSymbols, Recon, FP_BYTES};
use crate::SyncConfig;

/// A half-open key range `[lo, hi)`.
pub type KeyRange = (SetKey, SetKey);

/// Ids handed to the symbol encoder at once.
const ENCODE_GROUP: usize = 256;

/// A pool this side encoded (the peer may ask for more of its symbols).
struct PoolOut {
    ranges: Vec<KeyRange>,
    /// Symbols sent so far: the peer may ask only for the ones that follow, so no symbol is
    /// coded or sent twice and a pool never yields more than `symbols_max`.
    served: u64,
}

/// A pool the peer encoded and this side decodes.
struct PoolIn {
    ranges: Vec<KeyRange>,
    decoder: Decoder,
    received: u64,
}

/// What reconciliation has found so far on this side.
#[derive(Debug, Default, Clone)]
pub struct Found {
    /// Ids this side has and the peer lacks.
    pub have: Vec<EventId>,
    /// Ids the peer has and this side lacks.
    pub need: Vec<EventId>,
    /// Ranges the peer holds nothing of: this side sends all it has there.
    pub have_ranges: Vec<KeyRange>,
    /// Ranges this side holds nothing of: the peer sends all it has there.
    pub need_ranges: Vec<KeyRange>,
    /// Ids the peer will send that this side dropped on purpose (deleted by their author, or
    /// older replaceable events): they are discarded on arrival.
    pub declined: Vec<EventId>,
}

pub(crate) struct Reconciler {
    cfg: SyncConfig,
    salt: u64,
    fp_key: [u8; 32],
    lower: SetKey,
    upper: SetKey,
    pools_out: BTreeMap<u32, PoolOut>,
    pools_in: BTreeMap<u32, PoolIn>,
    next_pool: u32,
    turns: u32,
    pub(crate) found: Found,
    ids_total: usize,
}

/// A range whose fingerprints differ, with both sides' counts.
struct Mismatch {
    lo: SetKey,
    hi: SetKey,
    theirs: u64,
    /// Summary of this side's keys below `lo`.
    lo_prefix: Accum,
    /// Summary of this side's keys in the range.
    acc: Accum,
}

/// The last prefix sum read, reused when the next range starts where the last one ended.
#[derive(Default)]
struct Prefixes {
    last: Option<(SetKey, Accum)>,
}

impl Prefixes {
    fn at(&mut self, view: &dyn DynView, key: &SetKey) -> Result<Accum, SyncError> {
        if let Some((k, acc)) = self.last {
            if k == *key {
                return Ok(acc);
            }
        }
        let acc = view.prefix(key)?;
        self.last = Some((*key, acc));
        Ok(acc)
    }
}

impl Mismatch {
    /// This side's items in the range.
    fn mine(&self) -> u64 {
        self.acc.count
    }

    /// One side holds at least twice what the other does: most of the difference is one
    /// side's surplus, which splitting isolates better than symbols.
    fn lopsided(&self) -> bool {
        self.theirs >= 2 * self.mine() || self.mine() >= 2 * self.theirs
    }
}

/// Estimated bytes of one range on the wire: a bound of a few bytes, the mode, a fingerprint
/// and count, and the skip that may fill the gap before it. Long bounds (many items in one
/// millisecond) take more; the encoded message is measured exactly before it is sent.
const RANGE_BYTES_EST: usize = 24;
/// Estimated bytes of a symbol request.
const REQUEST_BYTES_EST: usize = 16;

/// The reply being built: ranges in any order, sorted and gap-filled at the end. Everything
/// added is charged against the turn's output budget, so that what a peer's message makes
/// this side produce stays bounded whatever the message asks.
struct Reply {
    ranges: Vec<(SetKey, SetKey, Mode)>,
    pools: Vec<PoolSymbols>,
    more: Vec<MoreSymbols>,
    need: Vec<EventId>,
    give: Vec<EventId>,
    /// Estimated bytes so far.
    bytes: usize,
    /// The turn's output budget.
    budget: usize,
}

impl Reply {
    fn new(budget: usize) -> Reply {
        Reply {
            ranges: Vec::new(),
            pools: Vec::new(),
            more: Vec::new(),
            need: Vec::new(),
            give: Vec::new(),
            bytes: 0,
            budget,
        }
    }

    /// Bytes still free in the turn's budget.
    fn room(&self) -> usize {
        self.budget.saturating_sub(self.bytes)
    }

    fn spend(&mut self, bytes: usize) -> Result<(), SyncError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.budget {
            return Err(SyncError::OutputBudget {
                what: "reconciliation output of one turn",
                max: self.budget as u64,
            });
        }
        Ok(())
    }

    fn range(&mut self, lo: SetKey, hi: SetKey, mode: Mode) -> Result<(), SyncError> {
        let ids = match &mode {
            Mode::Ids(ids) => ids.len(),
            _ => 0,
        };
        self.spend(RANGE_BYTES_EST + 32 * ids)?;
        self.ranges.push((lo, hi, mode));
        Ok(())
    }

    fn symbols(&mut self, block: PoolSymbols) -> Result<(), SyncError> {
        self.spend(REQUEST_BYTES_EST + block.symbols.len() * riblt::SYMBOL_BYTES_MAX)?;
        self.pools.push(block);
        Ok(())
    }

    fn request(&mut self, more: MoreSymbols) -> Result<(), SyncError> {
        self.spend(REQUEST_BYTES_EST)?;
        self.more.push(more);
        Ok(())
    }

    fn lists(&mut self, need: Vec<EventId>, give: Vec<EventId>) -> Result<(), SyncError> {
        self.spend(32 * (need.len() + give.len()))?;
        self.need.extend(need);
        self.give.extend(give);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
            && self.pools.is_empty()
            && self.more.is_empty()
            && self.need.is_empty()
            && self.give.is_empty()
    }

    /// The message, ranges ascending with gaps skipped. Ranges answer disjoint ranges of the
    /// peer's messages; overlap means the peer reopened a range still pooled: refused.
    fn finish(mut self, lower: SetKey, upper: SetKey) -> Result<Recon, SyncError> {
        self.ranges.sort_by_key(|r| r.0);
        let mut ranges: Vec<(SetKey, Mode)> = Vec::with_capacity(self.ranges.len() * 2 + 1);
        let mut cursor = lower;
        for (lo, hi, mode) in self.ranges {
            if lo < cursor || hi <= lo {
                return Err(SyncError::Protocol("a range overlaps one still open"));
            }
            if lo > cursor {
                ranges.push((lo, Mode::Skip));
            }
            ranges.push((hi, mode));
            cursor = hi;
        }
        if !ranges.is_empty() && cursor < upper {
            ranges.push((upper, Mode::Skip));
        }
        Ok(Recon {
            hello: None,
            ranges,
            pools: self.pools,
            more: self.more,
            need: self.need,
            give: self.give,
        })
    }
}

impl Reconciler {
    pub(crate) fn new(cfg: SyncConfig, salt: u64, lower: SetKey, upper: SetKey) -> Reconciler {
        let fp_key = blake3::derive_key("xaeroflux sync fingerprint v1", &salt.to_le_bytes());
        Reconciler {
            cfg,
            salt,
            fp_key,
            lower,
            upper,
            pools_out: BTreeMap::new(),
            pools_in: BTreeMap::new(),
            next_pool: 0,
            turns: 0,
            found: Found::default(),
            ids_total: 0,
        }
    }

    pub(crate) fn salt(&self) -> u64 {
        self.salt
    }

    fn fp(&self, acc: &Accum) -> [u8; FP_BYTES] {
        let mut h = blake3::Hasher::new_keyed(&self.fp_key);
        h.update(&acc.sum_bytes());
        h.update(&acc.count.to_le_bytes());
        let mut out = [0u8; FP_BYTES];
        out.copy_from_slice(&h.finalize().as_bytes()[..FP_BYTES]);
        out
    }

    /// A fingerprint range: this side's fingerprint and count of `acc`.
    fn fp_mode(&self, acc: &Accum) -> Mode {
        Mode::Fp {
            fp: self.fp(acc),
            count: acc.count,
        }
    }

    /// The initiator's opening: one fingerprint over the whole scope.
    pub(crate) fn open(&mut self, view: &dyn DynView, hello: Hello) -> Result<Recon, SyncError> {
        let acc = view.accumulate(&self.lower, &self.upper)?;
        self.turns += 1;
        Ok(Recon {
            hello: Some(hello),
            ranges: vec![(self.upper, self.fp_mode(&acc))],
            ..Recon::default()
        })
    }

    /// Answers one message, producing at most about `budget` bytes (`OutputBudget` if the
    /// message asks for more than that). `None`: nothing left to say (this side is
    /// reconciled).
    pub(crate) fn answer(
        &mut self,
        view: &dyn DynView,
        msg: Recon,
        budget: usize,
    ) -> Result<Option<Recon>, SyncError> {
        self.turns += 1;
        if self.turns > self.cfg.rounds_max {
            return Err(SyncError::TooManyRounds {
                max: self.cfg.rounds_max,
            });
        }
        let was_open = msg.is_open();
        let mut reply = Reply::new(budget);
        self.take_lists(view, msg.need, msg.give)?;
        let (mismatches, trials) = self.walk_ranges(view, &msg.ranges, &msg.pools, &mut reply)?;
        for m in &msg.more {
            self.serve_more(view, m, &mut reply)?;
        }
        for block in msg.pools {
            self.decode_pool(view, block, &mut reply)?;
        }
        self.plan(view, mismatches, &trials, &mut reply)?;
        if reply.is_empty() && !was_open {
            return Ok(None);
        }
        reply.finish(self.lower, self.upper).map(Some)
    }

    fn count_ids(&mut self, n: usize) -> Result<(), SyncError> {
        self.ids_total += n;
        if self.ids_total > self.cfg.ids_max {
            return Err(SyncError::TooManyIds {
                max: self.cfg.ids_max,
            });
        }
        Ok(())
    }

    /// The peer's findings: what it needs from this side, what it will send.
    fn take_lists(
        &mut self,
        view: &dyn DynView,
        need: Vec<EventId>,
        give: Vec<EventId>,
    ) -> Result<(), SyncError> {
        self.count_ids(need.len() + give.len())?;
        self.found.have.extend(need);
        for id in give {
            if view.is_dropped(&id)? {
                self.found.declined.push(id);
            } else {
                self.found.need.push(id);
            }
        }
        Ok(())
    }

    fn walk_ranges(
        &mut self,
        view: &dyn DynView,
        ranges: &[(SetKey, Mode)],
        blocks: &[PoolSymbols],
        reply: &mut Reply,
    ) -> Result<(Vec<Mismatch>, Vec<Trial>), SyncError> {
        if let Some((last, _)) = ranges.last() {
            if *last != self.upper {
                return Err(SyncError::Protocol("ranges do not cover the scope"));
            }
        }
        let mut mismatches = Vec::new();
        let mut trials = Vec::new();
        let mut new_pools: BTreeMap<u32, Vec<KeyRange>> = BTreeMap::new();
        let mut lo = self.lower;
        // Neighbouring ranges share a bound: each bound's prefix sum is read once.
        let mut prefixes = Prefixes::default();
        for (hi, mode) in ranges {
            let hi = *hi;
            match mode {
                Mode::Skip => {}
                Mode::Fp { fp, count } => {
                    let lo_prefix = prefixes.at(view, &lo)?;
                    let hi_prefix = prefixes.at(view, &hi)?;
                    let mut acc = hi_prefix;
                    acc.sub(&lo_prefix);
                    let size = (acc.count + count) as f64 / 2.0;
                    let same = self.fp(&acc) == *fp;
                    trials.push(Trial {
                        size,
                        differs: !same,
                    });
                    if same {
                        // Matching fingerprints: the range is reconciled.
                    } else if acc.count == 0 {
                        self.found.need_ranges.push((lo, hi));
                        reply.range(lo, hi, Mode::NeedAll)?;
                    } else if *count == 0 {
                        self.found.have_ranges.push((lo, hi));
                        reply.range(lo, hi, Mode::HaveAll)?;
                    } else {
                        mismatches.push(Mismatch {
                            lo,
                            hi,
                            theirs: *count,
                            lo_prefix,
                            acc,
                        });
                    }
                }
                Mode::Ids(theirs) => self.answer_ids(view, lo, hi, theirs, reply)?,
                Mode::Pool { pool } => {
                    if self.pools_in.contains_key(pool) {
                        return Err(SyncError::Protocol("pool ranges sent twice"));
                    }
                    new_pools.entry(*pool).or_default().push((lo, hi));
                }
                Mode::NeedAll => self.found.have_ranges.push((lo, hi)),
                Mode::HaveAll => self.found.need_ranges.push((lo, hi)),
            }
            lo = hi;
        }
        for (pool, ranges) in new_pools {
            if !blocks.iter().any(|b| b.pool == pool && b.from == 0) {
                return Err(SyncError::Protocol("pool ranges without symbols"));
            }
            if self.pools_in.len() >= self.cfg.pools_max {
                return Err(SyncError::Protocol("too many open pools"));
            }
            self.pools_in.insert(
                pool,
                PoolIn {
                    ranges,
                    decoder: Decoder::new(self.salt, self.cfg.symbols_max),
                    received: 0,
                },
            );
        }
        Ok((mismatches, trials))
    }

    fn answer_ids(
        &mut self,
        view: &dyn DynView,
        lo: SetKey,
        hi: SetKey,
        theirs: &[EventId],
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        let theirs_set: HashSet<&EventId> = theirs.iter().collect();
        let mut mine = HashSet::new();
        let mut give = Vec::new();
        let limit = self.cfg.ids_max;
        view.for_each_in(&lo, &hi, &mut |k| {
            if !theirs_set.contains(&k.id) {
                give.push(k.id);
            }
            mine.insert(k.id);
            if mine.len() > limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        // An id list answered against more of our items than the session may hold would be
        // answered in part: refuse it rather than report half a difference.
        if mine.len() > limit {
            return Err(SyncError::TooManyIds { max: limit });
        }
        // Our side of the range is too large to list in this turn's budget (a peer can ask with
        // a short or empty list): answer with fingerprints of its parts instead, as if the
        // range had mismatched. Parts the peer holds nothing of then move in bulk.
        if 32 * (give.len() + theirs.len()) > reply.room() / 2 {
            let lo_prefix = view.prefix(&lo)?;
            let mut acc = view.prefix(&hi)?;
            acc.sub(&lo_prefix);
            let m = Mismatch {
                lo,
                hi,
                theirs: theirs.len() as u64,
                lo_prefix,
                acc,
            };
            return self.split(view, &m, f64::INFINITY, Split::Blind, reply);
        }
        let theirs_only: Vec<EventId> = theirs
            .iter()
            .filter(|id| !mine.contains(id))
            .copied()
            .collect();
        self.settle(view, &theirs_only, give, reply)
    }

    /// Records a settled difference: `theirs_only` is asked for (unless this side dropped it on
    /// purpose), `mine_only` offered; both go into the reply.
    fn settle(
        &mut self,
        view: &dyn DynView,
        theirs_only: &[EventId],
        mine_only: Vec<EventId>,
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        let mut need = Vec::with_capacity(theirs_only.len());
        for id in theirs_only {
            if !view.is_dropped(id)? {
                need.push(*id);
            }
        }
        self.count_ids(need.len() + mine_only.len())?;
        self.found.need.extend_from_slice(&need);
        self.found.have.extend_from_slice(&mine_only);
        reply.lists(need, mine_only)
    }

    /// Symbols `[from, to)` of this side's items in `ranges`.
    fn encode(
        &self,
        view: &dyn DynView,
        ranges: &[KeyRange],
        from: u64,
        to: u64,
    ) -> Result<Vec<Symbol>, SyncError> {
        let mut enc = riblt::Encoder::with_range(self.salt, from as usize, to as usize);
        // Ids go to the encoder in groups, which it codes several at a time.
        let mut group: Vec<EventId> = Vec::with_capacity(ENCODE_GROUP);
        for (lo, hi) in ranges {
            view.for_each_in(lo, hi, &mut |k| {
                group.push(k.id);
                if group.len() == ENCODE_GROUP {
                    enc.extend(group.iter());
                    group.clear();
                }
                ControlFlow::Continue(())
            })?;
        }
        enc.extend(group.iter());
        Ok(enc.into_symbols())
    }

    fn serve_more(
        &mut self,
        view: &dyn DynView,
        m: &MoreSymbols,
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        let pool = self
            .pools_out
            .get(&m.pool)
            .ok_or(SyncError::Protocol("symbols asked of an unknown pool"))?;
        if m.from != pool.served {
            // Symbols already sent, or a gap: an honest peer asks for the next ones only.
            return Err(SyncError::Protocol("symbols asked out of sequence"));
        }
        let to = m.from.saturating_add(m.count);
        if to > self.cfg.symbols_max as u64 {
            return Err(SyncError::Protocol("symbols asked beyond the pool limit"));
        }
        // A request is answered with as many of the symbols asked for as the turn's budget
        // holds; the peer asks again from where the answer ends.
        let fit = (reply.room().saturating_sub(REQUEST_BYTES_EST) / riblt::SYMBOL_BYTES_MAX) as u64;
        if fit == 0 && m.count > 0 {
            return Err(SyncError::OutputBudget {
                what: "reconciliation output of one turn",
                max: reply.budget as u64,
            });
        }
        let to = m.from + m.count.min(fit);
        let symbols = self.encode(view, &pool.ranges, m.from, to)?;
        if let Some(pool) = self.pools_out.get_mut(&m.pool) {
            pool.served = to;
        }
        reply.symbols(PoolSymbols {
            pool: m.pool,
            from: m.from,
            symbols,
        })
    }

    fn decode_pool(
        &mut self,
        view: &dyn DynView,
        block: PoolSymbols,
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        let Some(mut pool) = self.pools_in.remove(&block.pool) else {
            return Err(SyncError::Protocol("symbols for an unknown pool"));
        };
        if block.from != pool.received {
            return Err(SyncError::Protocol("symbols out of sequence"));
        }
        let to = block.from + block.symbols.len() as u64;
        let local = self.encode(view, &pool.ranges, block.from, to)?;
        for (remote, mine) in block.symbols.iter().zip(&local) {
            pool.decoder
                .push(remote.sub(mine))
                .map_err(|_| SyncError::Protocol("coded symbols beyond the pool limit"))?;
        }
        pool.received = to;
        match pool.decoder.decode() {
            Ok(DecodeState::Decoded) => {
                let local_only = pool.decoder.local_only().to_vec();
                self.settle(view, pool.decoder.remote_only(), local_only, reply)?;
            }
            Ok(DecodeState::NeedMore) if to < self.pool_symbols_max(reply) => {
                // Rateless: ask for half as many again. The first batch was sized for the
                // estimate, so a shortfall is usually small.
                let count = (to / 2).max(8).min(self.pool_symbols_max(reply) - to);
                reply.request(MoreSymbols {
                    pool: block.pool,
                    from: to,
                    count,
                })?;
                self.pools_in.insert(block.pool, pool);
            }
            // Out of symbols, or symbols that contradict each other: fall back to splitting
            // the pool's ranges by fingerprint, which needs no trust in the symbols.
            Ok(_) | Err(_) => {
                for (lo, hi) in pool.ranges {
                    let acc = view.accumulate(&lo, &hi)?;
                    reply.range(lo, hi, self.fp_mode(&acc))?;
                }
            }
        }
        Ok(())
    }

    /// Symbols one pool may reach: `symbols_max`, and no more than the turn's budget can list
    /// the ids of once decoded (a pool decodes at most as many ids as it has symbols; the
    /// lists take at most half the budget). Past it, the pool's ranges go back to
    /// fingerprints.
    fn pool_symbols_max(&self, reply: &Reply) -> u64 {
        (self.cfg.symbols_max as u64).min((reply.budget / 2 / 32) as u64)
    }

    /// Decides what to do with this turn's mismatching ranges.
    fn plan(
        &mut self,
        view: &dyn DynView,
        mismatches: Vec<Mismatch>,
        trials: &[Trial],
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        if mismatches.is_empty() {
            return Ok(());
        }
        let est = Estimate::new(trials);
        let mine_total: u64 = mismatches.iter().map(|m| m.mine()).sum();
        let d_total: f64 = mismatches.iter().map(|m| est.per_range(m)).sum();
        // Symbols cost a scan of every item in the pooled ranges, on both sides. The budget
        // grows faster than the difference: at small differences CPU matters and another turn
        // of fingerprints is cheap; at large ones a turn costs more than the scan.
        let scan_budget = (self.cfg.scan_items_per_difference as f64
            * d_total
            * (d_total / 100.0).sqrt().max(0.01))
        .max(self.cfg.scan_items_min as f64);
        // Symbols need a difference estimate: from the mismatch rate when it is informative,
        // else from the count differences once the ranges are small anyway (an estimate that
        // falls short costs one more turn of symbols, never a wrong result).
        let balanced = |m: &&Mismatch| !m.lopsided();
        let largest = mismatches
            .iter()
            .filter(balanced)
            .map(|m| m.mine())
            .max()
            .unwrap_or(0);
        let poolable =
            mine_total as f64 <= scan_budget && (est.reliable || largest <= self.cfg.wide_items);
        let mut pool_ranges = Vec::new();
        let mut pool_d = 0.0;
        for m in &mismatches {
            let d_r = est.per_range(m);
            let smaller = m.theirs >= 2 * m.mine();
            if m.mine() <= self.cfg.ids_items_max
                || (smaller && m.mine() <= self.cfg.ids_items_lopsided_max)
            {
                let mut ids = Vec::with_capacity(m.mine() as usize);
                view.for_each_in(&m.lo, &m.hi, &mut |k| {
                    ids.push(k.id);
                    ControlFlow::Continue(())
                })?;
                reply.range(m.lo, m.hi, Mode::Ids(ids))?;
            } else if smaller {
                // The peer holds most of this range (a fresh or interrupted peer catching up):
                // its split finds the parts this side lacks entirely, which then move in bulk.
                reply.range(m.lo, m.hi, self.fp_mode(&m.acc))?;
            } else if m.lopsided() {
                self.split(view, m, f64::INFINITY, Split::Saturated, reply)?;
            } else if poolable && symbols_for(pool_d + d_r) as u64 <= self.pool_symbols_max(reply) {
                pool_ranges.push((m.lo, m.hi));
                pool_d += d_r;
            } else {
                let how = match (est.reliable, est.informed) {
                    (true, _) => Split::Estimated,
                    (false, true) => Split::Saturated,
                    (false, false) => Split::Blind,
                };
                self.split(view, m, d_r, how, reply)?;
            }
        }
        if !pool_ranges.is_empty() {
            let pool = self.next_pool;
            self.next_pool += 1;
            if self.pools_out.len() >= self.cfg.pools_max {
                return Err(SyncError::Protocol("too many pools in flight"));
            }
            for (lo, hi) in &pool_ranges {
                reply.range(*lo, *hi, Mode::Pool { pool })?;
            }
            // The first batch is sized for the estimate, and cut to what the turn's budget
            // holds: symbols are rateless, so the peer asks for the rest if it needs them.
            let fit = reply.room().saturating_sub(REQUEST_BYTES_EST) / riblt::SYMBOL_BYTES_MAX;
            let m = symbols_for(pool_d).min(fit).max(1) as u64;
            let symbols = self.encode(view, &pool_ranges, 0, m)?;
            reply.symbols(PoolSymbols {
                pool,
                from: 0,
                symbols,
            })?;
            self.pools_out.insert(
                pool,
                PoolOut {
                    ranges: pool_ranges,
                    served: m,
                },
            );
        }
        Ok(())
    }

    /// Splits a mismatching range into sub-ranges of about equal counts (by this side's ranks)
    /// and sends a fingerprint for each.
    fn split(
        &mut self,
        view: &dyn DynView,
        m: &Mismatch,
        d_r: f64,
        how: Split,
        reply: &mut Reply,
    ) -> Result<(), SyncError> {
        let by_size = |items: u64| m.mine().div_ceil(items.max(1));
        let by_diff = (4.0 * d_r).ceil().max(4.0) as u64;
        let parts = match how {
            // Nothing to go on (the opening fingerprint): split wide; the next turn's mismatch
            // rate and count differences are the estimate.
            Split::Blind => by_size(self.cfg.wide_items),
            // Differences dense or unknown: head for ranges small enough to code as symbols.
            Split::Saturated => by_size(self.cfg.wide_items).min(by_diff),
            // The estimate holds: about four ranges per difference, down to leaf size, so the
            // symbols that follow scan little.
            Split::Estimated => by_size(self.cfg.leaf_items).min(by_diff),
        };
        let parts = parts.clamp(2, self.cfg.branch_max as u64).min(m.mine());
        let first = m.lo_prefix.count;
        let mut lo = m.lo;
        let mut lo_prefix = m.lo_prefix;
        for i in 1..=parts {
            let (hi, hi_prefix) = if i == parts {
                let mut end = m.lo_prefix;
                end.add(&m.acc);
                (m.hi, end)
            } else {
                // The bound between the items at ranks `rank - 1` and `rank`; every key below
                // it is below the item at `rank`, so that item's prefix is the bound's.
                let rank = first + i * m.mine() / parts;
                match view.boundary(rank)? {
                    Some(SetBoundary {
                        before: Some(before),
                        at,
                        below,
                    }) if at < m.hi && before >= lo => (min_bound(&before, &at), below),
                    _ => continue,
                }
            };
            if hi <= lo {
                continue;
            }
            let mut acc = hi_prefix;
            acc.sub(&lo_prefix);
            reply.range(lo, hi, self.fp_mode(&acc))?;
            lo = hi;
            lo_prefix = hi_prefix;
        }
        debug_assert_eq!(lo, m.hi, "sub-ranges cover the range");
        Ok(())
    }
}

/// First batch of symbols for an estimated difference `d`.
fn symbols_for(d: f64) -> usize {
    riblt::symbols_for(d.ceil().max(1.0) as usize)
}

/// How a mismatching range is split.
#[derive(Clone, Copy)]
enum Split {
    Blind,
    Saturated,
    Estimated,
}

/// One range compared by fingerprint this turn.
pub(crate) struct Trial {
    /// Items in the range (mean of both sides' counts).
    size: f64,
    differs: bool,
}

/// The difference estimate of one turn: differences per item, from which ranges mismatched.
/// A range of `s` items holds Poisson(`density`·`s`) differences if they are spread at random,
/// so the density solves `Σ (1 − e^(−density·s)) = mismatching ranges`.
struct Estimate {
    density: f64,
    /// Enough ranges were compared, and not nearly all mismatched (which says only that the
    /// density is high).
    reliable: bool,
    /// Enough ranges were compared to size the next split.
    informed: bool,
}

impl Estimate {
    fn new(trials: &[Trial]) -> Estimate {
        let failed = trials.iter().filter(|t| t.differs).count();
        let share = failed as f64 / trials.len().max(1) as f64;
        let reliable = trials.len() >= 8 && share <= 0.8;
        let expected =
            |density: f64| -> f64 { trials.iter().map(|t| 1.0 - (-density * t.size).exp()).sum() };
        let density = if failed == 0 || !reliable {
            0.0
        } else {
            // Bisection on a log scale: the expected mismatches grow with the density.
            let (mut lo, mut hi) = (1e-12f64, 1.0f64);
            for _ in 0..60 {
                let mid = (lo * hi).sqrt();
                if expected(mid) < failed as f64 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        };
        Estimate {
            density,
            reliable,
            informed: trials.len() >= 8,
        }
    }

    /// Expected differences in one mismatching range.
    fn per_range(&self, m: &Mismatch) -> f64 {
        let dc = m.mine() as f64 - m.theirs as f64;
        let floor = dc.abs().max(1.0);
        if self.reliable {
            // E[k | k >= 1] for Poisson(lambda).
            let l = (self.density * (m.mine() + m.theirs) as f64 / 2.0).max(1e-9);
            (l / (1.0 - (-l).exp())).max(floor)
        } else {
            // Each difference moves the count by one either way, so with differences split at
            // random the squared count difference estimates the range's differences (the
            // margin covers the estimator's spread); never more than both sides' items.
            (1.25 * dc * dc)
                .min((m.mine() + m.theirs) as f64)
                .max(floor)
        }
    }
}
