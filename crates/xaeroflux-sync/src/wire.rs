//! Byte layouts of the native protocol's messages and frames (`docs/protocol.md`). Decoding
//! never trusts a length: every count is checked against the bytes left and against a limit
//! before anything is allocated.

use xaeroflux_event::EventId;
use xaeroflux_event::SetKey;

use crate::error::WireError;
use crate::riblt::Symbol;

/// Protocol version carried by every frame.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of a frame header: version, flags.
pub const FRAME_HEADER_BYTES: usize = 2;
/// Frame flag: the last frame of a message.
const FLAG_LAST: u8 = 1;
/// Smallest encoded symbol: sum, check, one-byte count.
const SYMBOL_BYTES_MIN: usize = 32 + 8 + 1;
/// Bytes of a range fingerprint on the wire.
pub const FP_BYTES: usize = 6;

/// One frame: a chunk of one message. Frames of a message go out back to back.
pub(crate) fn frames(message: &[u8], frame_bytes_max: usize, out: &mut Vec<Vec<u8>>) {
    let chunk = frame_bytes_max.saturating_sub(FRAME_HEADER_BYTES).max(1);
    let mut parts = message.chunks(chunk).peekable();
    if parts.peek().is_none() {
        out.push(vec![PROTOCOL_VERSION, FLAG_LAST]);
        return;
    }
    while let Some(part) = parts.next() {
        let flags = if parts.peek().is_none() { FLAG_LAST } else { 0 };
        let mut f = Vec::with_capacity(FRAME_HEADER_BYTES + part.len());
        f.push(PROTOCOL_VERSION);
        f.push(flags);
        f.extend_from_slice(part);
        out.push(f);
    }
}

/// Reassembles messages from frames, holding at most `message_bytes_max` bytes.
#[derive(Debug)]
pub(crate) struct Assembler {
    buf: Vec<u8>,
    message_bytes_max: usize,
    frame_bytes_max: usize,
}

impl Assembler {
    pub(crate) fn new(frame_bytes_max: usize, message_bytes_max: usize) -> Assembler {
        Assembler {
            buf: Vec::new(),
            message_bytes_max,
            frame_bytes_max,
        }
    }

    /// Adds a frame; returns the whole message when this frame completes one.
    pub(crate) fn push(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
        if frame.len() > self.frame_bytes_max {
            return Err(WireError::FrameTooLarge {
                got: frame.len(),
                max: self.frame_bytes_max,
            });
        }
        let [version, flags, body @ ..] = frame else {
            return Err(WireError::Truncated {
                what: "frame header",
            });
        };
        if *version != PROTOCOL_VERSION {
            return Err(WireError::Version { got: *version });
        }
        if self.buf.len() + body.len() > self.message_bytes_max {
            return Err(WireError::MessageTooLarge {
                max: self.message_bytes_max,
            });
        }
        self.buf.extend_from_slice(body);
        if flags & FLAG_LAST != 0 {
            Ok(Some(std::mem::take(&mut self.buf)))
        } else {
            Ok(None)
        }
    }

    /// Bytes held for an incomplete message.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.buf.len()
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or(WireError::Truncated { what })?;
        self.bytes = rest;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated { what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(WireError::Malformed { what });
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Malformed { what })
    }

    /// A count that must not exceed `max` nor promise more items of `item_bytes` than remain.
    pub(crate) fn count(
        &mut self,
        max: usize,
        item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, WireError> {
        let n = self.varint(what)?;
        let n = usize::try_from(n).map_err(|_| WireError::Malformed { what })?;
        if n > max {
            return Err(WireError::TooMany { what, got: n, max });
        }
        if n.saturating_mul(item_bytes) > self.bytes.len() {
            return Err(WireError::Truncated { what });
        }
        Ok(n)
    }

    pub(crate) fn id(&mut self, what: &'static str) -> Result<EventId, WireError> {
        Ok(EventId(self.array::<32>(what)?))
    }
}

/// Encodes bounds relative to the previous one: timestamp delta (+1; 0 = the end of the key
/// space), then the shortest id prefix that keeps the bound above the previous key.
pub(crate) struct BoundWriter {
    prev_ts: u64,
}

impl BoundWriter {
    pub(crate) fn new(lower: &SetKey) -> BoundWriter {
        BoundWriter {
            prev_ts: lower.created_at,
        }
    }

    pub(crate) fn put(&mut self, out: &mut Vec<u8>, bound: &SetKey) {
        if *bound == SetKey::MAX {
            put_varint(out, 0);
            self.prev_ts = u64::MAX;
            return;
        }
        debug_assert!(bound.created_at >= self.prev_ts, "bounds ascend");
        put_varint(out, bound.created_at - self.prev_ts + 1);
        self.prev_ts = bound.created_at;
        let len = 32 - bound.id.0.iter().rev().take_while(|b| **b == 0).count();
        out.push(len as u8);
        out.extend_from_slice(&bound.id.0[..len]);
    }
}

pub(crate) struct BoundReader {
    prev: SetKey,
}

impl BoundReader {
    pub(crate) fn new(lower: &SetKey) -> BoundReader {
        BoundReader { prev: *lower }
    }

    /// The next bound; it must be above the previous one (ranges are never empty of key space).
    pub(crate) fn get(&mut self, r: &mut Reader<'_>) -> Result<SetKey, WireError> {
        let delta = r.varint("bound timestamp")?;
        let bound = if delta == 0 {
            SetKey::MAX
        } else {
            let created_at = self
                .prev
                .created_at
                .checked_add(delta - 1)
                .filter(|t| *t != u64::MAX)
                .ok_or(WireError::Malformed {
                    what: "bound timestamp",
                })?;
            let len = usize::from(r.u8("bound prefix length")?);
            if len > 32 {
                return Err(WireError::Malformed {
                    what: "bound prefix length",
                });
            }
            let mut id = [0u8; 32];
            id[..len].copy_from_slice(r.take(len, "bound prefix")?);
            SetKey {
                created_at,
                id: EventId(id),
            }
        };
        if bound <= self.prev {
            return Err(WireError::OutOfOrder);
        }
        self.prev = bound;
        Ok(bound)
    }
}

/// The shortest bound `b` with `prev < b <= next`: the start of `next`'s millisecond if the
/// timestamps differ, else the shortest id prefix of `next` that exceeds `prev`.
pub(crate) fn min_bound(prev: &SetKey, next: &SetKey) -> SetKey {
    debug_assert!(prev < next);
    if prev.created_at != next.created_at {
        return SetKey::at_time(next.created_at);
    }
    let common = prev
        .id
        .0
        .iter()
        .zip(next.id.0.iter())
        .take_while(|(a, b)| a == b)
        .count();
    let mut id = [0u8; 32];
    let take = (common + 1).min(32);
    id[..take].copy_from_slice(&next.id.0[..take]);
    SetKey {
        created_at: next.created_at,
        id: EventId(id),
    }
}

/// What a range of a reconciliation message asks of the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing to do here.
    Skip,
    /// The sender's fingerprint and count: compare and answer.
    Fp { fp: [u8; FP_BYTES], count: u64 },
    /// The sender's complete id list: answer with what each side lacks.
    Ids(Vec<EventId>),
    /// Part of symbol pool `pool`: the pool's coded symbols cover the sender's items in all of
    /// the pool's ranges together.
    Pool { pool: u32 },
    /// The sender holds nothing here: send it everything.
    NeedAll,
    /// The receiver holds nothing here (it said so): the sender will send everything.
    HaveAll,
}

impl Mode {
    /// Whether the receiver must answer this range.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self, Mode::Fp { .. } | Mode::Ids(_) | Mode::Pool { .. })
    }
}

const MODE_SKIP: u8 = 0;
const MODE_FP: u8 = 1;
const MODE_IDS: u8 = 2;
const MODE_POOL: u8 = 3;
const MODE_NEED_ALL: u8 = 4;
const MODE_HAVE_ALL: u8 = 5;

/// A batch of coded symbols `[from, from + symbols.len())` of a pool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolSymbols {
    pub pool: u32,
    pub from: u64,
    pub symbols: Vec<Symbol>,
}

/// A request for more symbols of a pool the receiver encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MoreSymbols {
    pub pool: u32,
    pub from: u64,
    pub count: u64,
}

/// The opening of a session, sent once by the initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub salt: u64,
    pub scope: crate::Scope,
}

/// One reconciliation turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Recon {
    pub hello: Option<Hello>,
    /// `(upper bound, mode)`, ascending, covering the scope from its lower bound.
    pub ranges: Vec<(SetKey, Mode)>,
    pub pools: Vec<PoolSymbols>,
    pub more: Vec<MoreSymbols>,
    /// Ids the sender lacks and asks the receiver to send.
    pub need: Vec<EventId>,
    /// Ids the sender has, the receiver lacks; the sender sends them.
    pub give: Vec<EventId>,
}

impl Recon {
    /// Whether the receiver must answer: an open range, symbols to decode or a request.
    pub(crate) fn is_open(&self) -> bool {
        !self.pools.is_empty()
            || !self.more.is_empty()
            || self.ranges.iter().any(|(_, m)| m.is_open())
    }
}

/// Every message of a session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    Recon(Recon),
    /// Event bodies (`header ‖ signature ‖ payload`; the receiver recomputes each id).
    Events(Vec<Vec<u8>>),
    /// The sender has sent every event it owes.
    Done,
    /// The sender ends the session: a code and a short reason.
    Abort {
        code: u8,
        reason: String,
    },
}

const MSG_RECON: u8 = 1;
const MSG_EVENTS: u8 = 2;
const MSG_DONE: u8 = 3;
const MSG_ABORT: u8 = 4;
const RECON_HELLO: u8 = 1;

/// Limits applied while decoding, so a message cannot make the receiver allocate more than the
/// session allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub ranges_max: usize,
    /// Symbol requests in one message: one per pool this side may have open.
    pub requests_max: usize,
    pub ids_max: usize,
    pub symbols_max: usize,
    pub filter_values_max: usize,
    pub event_bytes_max: usize,
}

impl Message {
    pub(crate) fn encode(&self, lower: &SetKey) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Recon(r) => {
                out.push(MSG_RECON);
                encode_recon(r, lower, &mut out);
            }
            Message::Events(events) => {
                out.push(MSG_EVENTS);
                put_varint(&mut out, events.len() as u64);
                for e in events {
                    put_varint(&mut out, e.len() as u64);
                    out.extend_from_slice(e);
                }
            }
            Message::Done => out.push(MSG_DONE),
            Message::Abort { code, reason } => {
                out.push(MSG_ABORT);
                out.push(*code);
                let reason = &reason.as_bytes()[..reason.len().min(200)];
                put_varint(&mut out, reason.len() as u64);
                out.extend_from_slice(reason);
            }
        }
        out
    }

    /// `lower` is the scope's lower bound, known to both sides (from the hello for the
    /// responder's first message: pass `SetKey::MIN` and the hello's own scope is used).
    pub(crate) fn decode(
        bytes: &[u8],
        lower: Option<&SetKey>,
        limits: &DecodeLimits,
    ) -> Result<Message, WireError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8("message type")? {
            MSG_RECON => Message::Recon(decode_recon(&mut r, lower, limits)?),
            MSG_EVENTS => {
                let n = r.count(limits.ids_max, 1, "event count")?;
                let mut events = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.count(limits.event_bytes_max, 1, "event length")?;
                    events.push(r.take(len, "event")?.to_vec());
                }
                Message::Events(events)
            }
            MSG_DONE => Message::Done,
            MSG_ABORT => {
                let code = r.u8("abort code")?;
                let len = r.count(200, 1, "abort reason")?;
                let reason = String::from_utf8_lossy(r.take(len, "abort reason")?).into_owned();
                Message::Abort { code, reason }
            }
            _ => {
                return Err(WireError::Malformed {
                    what: "message type",
                })
            }
        };
        if !r.is_empty() {
            return Err(WireError::Trailing {
                bytes: r.remaining(),
            });
        }
        Ok(msg)
    }
}

fn encode_recon(r: &Recon, lower: &SetKey, out: &mut Vec<u8>) {
    let mut lower = *lower;
    match &r.hello {
        Some(h) => {
            out.push(RECON_HELLO);
            out.extend_from_slice(&h.salt.to_le_bytes());
            h.scope.encode(out);
            lower = h.scope.lower();
        }
        None => out.push(0),
    }
    put_varint(out, r.ranges.len() as u64);
    let mut bounds = BoundWriter::new(&lower);
    for (bound, mode) in &r.ranges {
        bounds.put(out, bound);
        match mode {
            Mode::Skip => out.push(MODE_SKIP),
            Mode::Fp { fp, count } => {
                out.push(MODE_FP);
                out.extend_from_slice(fp);
                put_varint(out, *count);
            }
            Mode::Ids(ids) => {
                out.push(MODE_IDS);
                put_varint(out, ids.len() as u64);
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            Mode::Pool { pool } => {
                out.push(MODE_POOL);
                put_varint(out, u64::from(*pool));
            }
            Mode::NeedAll => out.push(MODE_NEED_ALL),
            Mode::HaveAll => out.push(MODE_HAVE_ALL),
        }
    }
    put_varint(out, r.pools.len() as u64);
    for p in &r.pools {
        put_varint(out, u64::from(p.pool));
        put_varint(out, p.from);
        put_varint(out, p.symbols.len() as u64);
        for s in &p.symbols {
            s.encode_into(out);
        }
    }
    put_varint(out, r.more.len() as u64);
    for m in &r.more {
        put_varint(out, u64::from(m.pool));
        put_varint(out, m.from);
        put_varint(out, m.count);
    }
    for list in [&r.need, &r.give] {
        put_varint(out, list.len() as u64);
        for id in list {
            out.extend_from_slice(&id.0);
        }
    }
}

fn decode_recon(
    r: &mut Reader<'_>,
    lower: Option<&SetKey>,
    limits: &DecodeLimits,
) -> Result<Recon, WireError> {
    let mut recon = Recon::default();
    let mut lower = lower.copied();
    match r.u8("hello flag")? {
        0 => {}
        RECON_HELLO => {
            let salt = u64::from_le_bytes(r.array::<8>("salt")?);
            let scope = crate::Scope::decode(r, limits.filter_values_max)?;
            lower = Some(scope.lower());
            recon.hello = Some(Hello { salt, scope });
        }
        _ => return Err(WireError::Malformed { what: "hello flag" }),
    }
    let lower = lower.ok_or(WireError::Malformed {
        what: "first message without hello",
    })?;
    let n = r.count(limits.ranges_max, 2, "range count")?;
    recon.ranges.reserve(n);
    let mut bounds = BoundReader::new(&lower);
    let mut ids_total = 0usize;
    for _ in 0..n {
        let bound = bounds.get(r)?;
        let mode = match r.u8("range mode")? {
            MODE_SKIP => Mode::Skip,
            MODE_FP => Mode::Fp {
                fp: r.array::<FP_BYTES>("fingerprint")?,
                count: r.varint("range count")?,
            },
            MODE_IDS => {
                let k = r.count(limits.ids_max - ids_total, 32, "id list")?;
                ids_total += k;
                let mut ids = Vec::with_capacity(k);
                for _ in 0..k {
                    ids.push(r.id("id list")?);
                }
                Mode::Ids(ids)
            }
            MODE_POOL => Mode::Pool {
                pool: u32::try_from(r.varint("pool")?)
                    .map_err(|_| WireError::Malformed { what: "pool" })?,
            },
            MODE_NEED_ALL => Mode::NeedAll,
            MODE_HAVE_ALL => Mode::HaveAll,
            _ => return Err(WireError::Malformed { what: "range mode" }),
        };
        recon.ranges.push((bound, mode));
    }
    let pools = r.count(limits.ranges_max, 3, "pool count")?;
    let mut symbols_total = 0usize;
    for _ in 0..pools {
        let pool =
            u32::try_from(r.varint("pool")?).map_err(|_| WireError::Malformed { what: "pool" })?;
        let from = r.varint("symbol offset")?;
        let k = r.count(
            limits.symbols_max.saturating_sub(symbols_total),
            SYMBOL_BYTES_MIN,
            "symbols",
        )?;
        symbols_total += k;
        let mut symbols = Vec::with_capacity(k);
        let mut rest = r.take(r.remaining(), "symbols")?;
        for _ in 0..k {
            symbols.push(Symbol::decode(&mut rest).ok_or(WireError::Truncated { what: "symbol" })?);
        }
        *r = Reader::new(rest);
        recon.pools.push(PoolSymbols {
            pool,
            from,
            symbols,
        });
    }
    let more = r.count(limits.requests_max, 3, "symbol requests")?;
    for _ in 0..more {
        let pool =
            u32::try_from(r.varint("pool")?).map_err(|_| WireError::Malformed { what: "pool" })?;
        recon.more.push(MoreSymbols {
            pool,
            from: r.varint("symbol offset")?,
            count: r.varint("symbol count")?,
        });
    }
    let k = r.count(limits.ids_max, 32, "need list")?;
    recon.need = (0..k)
        .map(|_| r.id("need list"))
        .collect::<Result<_, _>>()?;
    let k = r.count(limits.ids_max, 32, "give list")?;
    recon.give = (0..k)
        .map(|_| r.id("give list"))
        .collect::<Result<_, _>>()?;
    Ok(recon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ts: u64, first: u8) -> SetKey {
        let mut id = [7u8; 32];
        id[0] = first;
        SetKey {
            created_at: ts,
            id: EventId(id),
        }
    }

    #[test]
    fn min_bound_separates() {
        let a = key(10, 1);
        let b = key(10, 2);
        let m = min_bound(&a, &b);
        assert!(a < m && m <= b);
        assert_eq!(m.id.0[1..], [0u8; 31]);
        let c = key(11, 0);
        assert_eq!(min_bound(&b, &c), SetKey::at_time(11));
    }

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Reader::new(&out).varint("v").unwrap(), v);
        }
        let too_long = [0xffu8; 11];
        assert!(Reader::new(&too_long).varint("v").is_err());
    }

    #[test]
    fn frames_split_and_reassemble() {
        let msg: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        frames(&msg, 100, &mut out);
        assert!(out.iter().all(|f| f.len() <= 100));
        let mut asm = Assembler::new(100, 2000);
        let mut got = None;
        for f in &out {
            got = asm.push(f).unwrap();
        }
        assert_eq!(got.unwrap(), msg);
        let mut small = Assembler::new(100, 500);
        let err = out.iter().try_for_each(|f| small.push(f).map(|_| ()));
        assert!(matches!(err, Err(WireError::MessageTooLarge { .. })));
    }
}
