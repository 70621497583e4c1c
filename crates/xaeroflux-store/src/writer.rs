//! The single writer: a thread that folds queued batches into one transaction each turn
//! (group commit), commits, and only then acknowledges.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::{Bound, Range};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use futures_channel::oneshot;
use heed::{PutFlags, RwTxn};
use xaeroflux_event::{block_on, EventId, EventRef, Header, Kind, PublicKey, VerifiedEvent};

use crate::env::{self, Shared};
use crate::error::{OpenError, WriteError};
use crate::merkle::{self, MerkleError};
use crate::seal::{Cipher, Slot, StoredKey};
use crate::staged::Staged;
use crate::subscribe::StoredEvent;
use crate::tables::{
    self, decode_seq, kind_key, seq_key, Pos, Tables, DROPPED_DELETED, DROPPED_SUPERSEDED,
};
use crate::StoreOptions;
use xaeroflux_event::SetKey;

/// How hard a batch insists on reaching the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// fsync before the acknowledgement (the default).
    Durable,
    /// Acknowledge after commit without fsync (LMDB's `MDB_NOSYNC`). The batch survives a crash
    /// of this process. After an operating-system crash or a power loss, LMDB promises less
    /// than "the last transactions are lost": unless the file system keeps writes in order,
    /// the file itself may be damaged. Use it for what can be fetched again (sync, gossip),
    /// and call [`crate::Store::sync`] at the end of a burst; a later durable commit flushes
    /// it too.
    Relaxed,
}

/// What happened to one submitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Newly stored at this local sequence number.
    Stored {
        /// Local sequence number (position in the changes log).
        seq: u64,
    },
    /// Already stored; nothing changed.
    Duplicate,
    /// Its author deleted it earlier; it stays dropped.
    Deleted,
    /// A newer replaceable event (profile, follow list) of the same author is stored.
    Superseded,
}

/// A pending answer of the writer: by default a write (its outcomes), or a
/// [`FollowTicket`] or [`FlushTicket`]. [`Ticket::wait`] blocks until the answer is in; an
/// async caller (the network thread) awaits the ticket itself instead, which never blocks its
/// thread.
#[must_use = "the writer's answer arrives only through its ticket"]
pub struct Ticket<T = Vec<Outcome>> {
    rx: oneshot::Receiver<Result<T, WriteError>>,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

fn answer<T>() -> (Reply<T>, Ticket<T>) {
    let (tx, rx) = oneshot::channel();
    (tx, Ticket { rx })
}

impl<T> Ticket<T> {
    /// Waits for the answer: a write's transaction committed (and reached the disk, if
    /// durable), a follow's events, a flush done.
    pub fn wait(self) -> Result<T, WriteError> {
        block_on(self)
    }

    /// The answer if it is decided, without waiting; `None` while the command is still queued
    /// or being carried out. Once it returned `Some`, the ticket is spent.
    pub fn try_wait(&mut self) -> Option<Result<T, WriteError>> {
        match self.rx.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(oneshot::Canceled) => Some(Err(WriteError::Closed)),
        }
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, WriteError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WriteError::Closed)))
    }
}

/// Events other processes stored, handed out by [`crate::Store::follow`].
#[derive(Debug, Default)]
pub struct Followed {
    /// The events, in store order, with their local sequence numbers.
    pub events: Vec<StoredEvent>,
    /// Events written by other processes that will not be handed out: more ranges piled up
    /// than the writer keeps between calls. Whoever follows should reconcile with its peers
    /// to carry them. (Events beyond `events_max` are not skipped: the next call hands them
    /// out.)
    pub skipped: u64,
}

/// A pending [`crate::Store::follow`]: the events other processes stored.
pub type FollowTicket = Ticket<Followed>;

/// A pending [`crate::Store::flush`]: resolves once everything committed before the flush was
/// asked for is on disk.
pub type FlushTicket = Ticket<()>;

enum Command {
    Write {
        events: Vec<VerifiedEvent>,
        records: Vec<Record>,
        durability: Durability,
        ack: Reply<Vec<Outcome>>,
    },
    Follow {
        events_max: usize,
        ack: Reply<Followed>,
    },
    Flush {
        ack: Reply<()>,
    },
}

/// Ranges of sequence numbers other processes wrote, kept once somebody follows: at most this
/// many (the oldest are counted as skipped beyond).
const EXTERNAL_RANGES_MAX: usize = 4096;

pub(crate) struct Handle {
    pub shared: Arc<Shared>,
    tx: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    batch_events_max: usize,
}

impl Handle {
    pub(crate) fn start(shared: Arc<Shared>, options: &StoreOptions) -> Result<Handle, OpenError> {
        let batch_events_max = options.batch_events_max.max(1);
        if shared.read_only {
            return Ok(Handle {
                shared,
                tx: None,
                thread: None,
                batch_events_max,
            });
        }
        let (tx, rx) = bounded(options.queue_batches_max.max(1));
        let mut writer = Writer::new(shared.clone(), options).map_err(|e| match e {
            WriteError::Storage(msg) | WriteError::Corrupt(msg) => OpenError::NotOurs {
                path: shared.path.clone(),
                reason: format!("cannot read the store's state: {msg}"),
            },
            other => OpenError::Io {
                path: shared.path.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        let thread = std::thread::Builder::new()
            .name("xaeroflux-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(OpenError::Thread)?;
        Ok(Handle {
            shared,
            tx: Some(tx),
            thread: Some(thread),
            batch_events_max,
        })
    }

    pub(crate) fn submit(
        &self,
        events: Vec<VerifiedEvent>,
        records: Vec<Record>,
        durability: Durability,
    ) -> Result<Ticket, WriteError> {
        let tx = self.tx.as_ref().ok_or(WriteError::ReadOnly)?;
        if events.len() > self.batch_events_max {
            return Err(WriteError::BatchTooLarge {
                got: events.len(),
                max: self.batch_events_max,
            });
        }
        if let Some(r) = records.iter().find(|r| !Record::name_ok(&r.name)) {
            return Err(WriteError::RecordName {
                len: r.name.len(),
                max: RECORD_NAME_MAX,
            });
        }
        let (ack, ticket) = answer();
        tx.send(Command::Write {
            events,
            records,
            durability,
            ack,
        })
        .map_err(|_| WriteError::Closed)?;
        Ok(ticket)
    }

    pub(crate) fn follow(&self, events_max: usize) -> Result<FollowTicket, WriteError> {
        let tx = self.tx.as_ref().ok_or(WriteError::ReadOnly)?;
        let (ack, ticket) = answer();
        tx.send(Command::Follow { events_max, ack })
            .map_err(|_| WriteError::Closed)?;
        Ok(ticket)
    }

    pub(crate) fn flush(&self) -> Result<FlushTicket, WriteError> {
        let tx = self.tx.as_ref().ok_or(WriteError::ReadOnly)?;
        let (ack, ticket) = answer();
        tx.send(Command::Flush { ack })
            .map_err(|_| WriteError::Closed)?;
        Ok(ticket)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    /// The next sequence number as this writer last saw it. Another process may have moved it
    /// since: every transaction reads the stored one, and what lies between was written there.
    known_next: u64,
    /// Sequence numbers other processes wrote, not handed out yet (kept once followed).
    external: VecDeque<Range<u64>>,
    following: bool,
    /// External events forgotten over `EXTERNAL_RANGES_MAX` (or before anyone followed).
    external_skipped: u64,
    relaxed: bool,
    batch_events_max: usize,
    resize_wait: Duration,
}

/// A failure inside a write transaction.
enum Fail {
    MapFull,
    /// An I/O error, which LMDB also reports for a short write on a full disk.
    Io(WriteError),
    Other(WriteError),
}

/// Free bytes below which an I/O error on commit is taken for a full disk: LMDB turns the
/// short `pwrite` of a full disk into EIO, and a disk that just filled has next to nothing
/// left.
const DISK_FULL_BYTES: u64 = 1 << 20;

/// Whether the file system holding `dir` is (almost) out of space.
fn disk_full(dir: &std::path::Path) -> bool {
    rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize) < DISK_FULL_BYTES)
        .unwrap_or(false)
}

impl From<heed::Error> for Fail {
    fn from(e: heed::Error) -> Fail {
        match e {
            // Another process grew the map past ours: growing ours adopts it.
            heed::Error::Mdb(heed::MdbError::MapFull | heed::MdbError::MapResized) => Fail::MapFull,
            io @ (heed::Error::Io(_) | heed::Error::Mdb(heed::MdbError::Other(5))) => {
                Fail::Io(WriteError::from_heed(io))
            }
            other => Fail::Other(WriteError::from_heed(other)),
        }
    }
}

impl From<MerkleError> for Fail {
    fn from(e: MerkleError) -> Fail {
        match e {
            MerkleError::Heed(e) => Fail::from(e),
            other => Fail::Other(WriteError::Corrupt(other.to_string())),
        }
    }
}

impl Writer {
    fn new(shared: Arc<Shared>, options: &StoreOptions) -> Result<Writer, WriteError> {
        let rtxn = shared.env.read_txn().map_err(WriteError::from_heed)?;
        let t = shared.tables;
        let next_seq = read_next_seq(&t, &rtxn)?;
        let last_event = t.events.last(&rtxn).map_err(WriteError::from_heed)?;
        if let Some((k, _)) = last_event {
            let last = decode_seq(k).ok_or_else(|| WriteError::Corrupt("bad events key".into()))?;
            if last >= next_seq {
                return Err(WriteError::Corrupt(format!(
                    "next_seq {next_seq} not above last event {last}"
                )));
            }
        }
        drop(rtxn);
        env::set_relaxed(&shared.env, false).map_err(WriteError::from_heed)?;
        Ok(Writer {
            shared,
            known_next: next_seq,
            external: VecDeque::new(),
            following: false,
            external_skipped: 0,
            relaxed: false,
            batch_events_max: options.batch_events_max.max(1),
            resize_wait: Duration::from_millis(options.resize_wait_ms),
        })
    }

    fn run(&mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut writes = Vec::new();
            let mut acks = Vec::new();
            let mut follows = Vec::new();
            let mut flushes = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Write {
                        events: evs,
                        records,
                        durability,
                        ack,
                    } => {
                        events += evs.len();
                        writes.push(Write {
                            events: evs,
                            records,
                            durability,
                        });
                        acks.push(ack);
                    }
                    Command::Follow { events_max, ack } => follows.push((events_max, ack)),
                    Command::Flush { ack } => flushes.push(ack),
                }
                if events < self.batch_events_max {
                    next = rx.try_recv().ok();
                }
            }
            if !writes.is_empty() {
                self.write_group(&writes, acks);
            }
            for (events_max, ack) in follows {
                let _ = ack.send(self.follow(events_max));
            }
            if !flushes.is_empty() {
                // One fsync answers every flush asked for before it ran.
                let synced = self.shared.env.force_sync().map_err(WriteError::from_heed);
                for ack in flushes {
                    let _ = ack.send(synced.clone());
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Write], acks: Vec<Reply<Vec<Outcome>>>) {
        debug_assert_eq!(group.len(), acks.len());
        match self.commit_group(group) {
            Ok((outcomes, stored, external)) => {
                if external {
                    // Subscribers read the log from where they are: it holds both processes'
                    // events in order.
                    self.shared.subscribers.lag_all();
                }
                self.shared.subscribers.publish(&stored);
                for (ack, out) in acks.into_iter().zip(outcomes) {
                    let _ = ack.send(Ok(out));
                }
            }
            Err(e) => {
                for ack in acks {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }

    /// Records that `known_next..stored_next` was written by another process. Returns whether
    /// anything was.
    fn note_external(&mut self, stored_next: u64) -> Result<bool, WriteError> {
        if stored_next < self.known_next {
            return Err(WriteError::Corrupt(format!(
                "next_seq went back from {} to {stored_next}",
                self.known_next
            )));
        }
        if stored_next == self.known_next {
            return Ok(false);
        }
        let range = self.known_next..stored_next;
        self.known_next = stored_next;
        if !self.following {
            self.external_skipped += range.end - range.start;
            return Ok(true);
        }
        if self.external.len() >= EXTERNAL_RANGES_MAX {
            if let Some(old) = self.external.pop_front() {
                self.external_skipped += old.end - old.start;
            }
        }
        self.external.push_back(range);
        Ok(true)
    }

    /// Hands out up to `events_max` events other processes wrote since the last call.
    fn follow(&mut self, events_max: usize) -> Result<Followed, WriteError> {
        if !self.following {
            // What came before the first follow is history, as for a subscription.
            self.following = true;
            self.external_skipped = 0;
        }
        let shared = self.shared.clone();
        // The resize lock keeps a reader of this process from remapping under this one.
        let mut writing = shared.resize_lock.lock().unwrap_or_else(|p| p.into_inner());
        let rtxn = match shared.env.read_txn() {
            Err(heed::Error::Mdb(heed::MdbError::MapResized)) => {
                drop(writing);
                env::grow_map(&shared, self.resize_wait)?;
                writing = shared.resize_lock.lock().unwrap_or_else(|p| p.into_inner());
                shared.env.read_txn().map_err(WriteError::from_heed)?
            }
            r => r.map_err(WriteError::from_heed)?,
        };
        let _writing = writing;
        let t = shared.tables;
        let stored_next = read_next_seq(&t, &rtxn)?;
        if self.note_external(stored_next)? {
            shared.subscribers.lag_all();
        }
        let mut out = Followed {
            events: Vec::new(),
            skipped: std::mem::take(&mut self.external_skipped),
        };
        while let Some(range) = self.external.pop_front() {
            if out.events.len() >= events_max {
                self.external.push_front(range);
                break;
            }
            let lo = seq_key(range.start);
            let hi = seq_key(range.end);
            let mut last = None;
            for item in t
                .events
                .range(&rtxn, &(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
                .map_err(WriteError::from_heed)?
            {
                if out.events.len() >= events_max {
                    break;
                }
                let (k, v) = item.map_err(WriteError::from_heed)?;
                let seq =
                    decode_seq(k).ok_or_else(|| WriteError::Corrupt("bad events key".into()))?;
                let v = shared.cipher.open_cow(Slot::Events, k, v).map_err(|_| {
                    WriteError::Corrupt(format!("event {seq} fails authentication"))
                })?;
                let ev = EventRef::from_body(&v)
                    .map_err(|e| WriteError::Corrupt(format!("event {seq}: {e}")))?;
                out.events.push(StoredEvent {
                    seq,
                    bytes: ev.to_vec().into(),
                });
                last = Some(seq);
            }
            // Events of the range deleted since are simply gone; the rest waits for the next call.
            let resume = last.map_or(range.end, |s| s + 1);
            if out.events.len() >= events_max && resume < range.end {
                self.external.push_front(resume..range.end);
                break;
            }
        }
        Ok(out)
    }

    /// Writes every command of the group in one transaction, growing the map and retrying if
    /// LMDB runs out of map. Returns outcomes per command and the newly stored events.
    fn commit_group<'g>(&mut self, group: &'g [Write]) -> Result<Committed<'g>, WriteError> {
        let relaxed = group.iter().all(|c| c.durability == Durability::Relaxed);
        if relaxed != self.relaxed {
            env::set_relaxed(&self.shared.env, relaxed).map_err(WriteError::from_heed)?;
            self.relaxed = relaxed;
        }
        loop {
            match self.try_commit(group) {
                Ok(done) => return Ok(done),
                Err(Fail::MapFull) => {
                    env::grow_map(&self.shared, self.resize_wait)?;
                }
                Err(Fail::Other(e)) => return Err(e),
                Err(Fail::Io(e @ WriteError::Storage(_))) if disk_full(&self.shared.path) => {
                    debug_assert!(!matches!(e, WriteError::DiskFull));
                    return Err(WriteError::DiskFull);
                }
                Err(Fail::Io(e)) => return Err(e),
            }
        }
    }

    fn try_commit<'g>(&mut self, group: &'g [Write]) -> Result<Committed<'g>, Fail> {
        let t = self.shared.tables;
        let shared = self.shared.clone();
        let _writing = shared.resize_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut txn = shared.env.write_txn()?;
        // Another process may have written since this writer's last commit: the stored
        // counter is the truth, and what lies before it is theirs.
        let stored_next = read_next_seq(&t, &txn).map_err(Fail::Other)?;
        let external = self.note_external(stored_next).map_err(Fail::Other)?;
        let mut seq = stored_next;
        let mut all = Vec::with_capacity(group.len());
        let mut stored = Vec::new();
        let mut set_changes = Vec::new();
        let mut staged = Staged::new(stored_next);
        for cmd in group {
            let mut outcomes = Vec::with_capacity(cmd.events.len());
            for event in &cmd.events {
                let mut apply = Apply {
                    t: &t,
                    cipher: &self.shared.cipher,
                    txn: &mut txn,
                    set_changes: &mut set_changes,
                    staged: &mut staged,
                };
                let outcome = apply.event(event.as_ref(), seq)?;
                if let Outcome::Stored { seq: s } = outcome {
                    stored.push((s, event));
                    seq += 1;
                }
                outcomes.push(outcome);
            }
            all.push(outcomes);
        }
        staged.put(&t, &self.shared.cipher, &mut txn)?;
        // Records go in the same transaction as the events of their write, in order.
        for cmd in group {
            for record in &cmd.records {
                let key = record_key(&self.shared.cipher, &record.name);
                match &record.value {
                    Some(value) => {
                        let sealed = self
                            .shared
                            .cipher
                            .seal(Slot::Record, &key, value)
                            .map_err(|e| Fail::Other(WriteError::Seal(e.to_string())))?;
                        t.meta.put(&mut txn, &key, &sealed)?;
                    }
                    None => {
                        t.meta.delete(&mut txn, &key)?;
                    }
                }
            }
        }
        // The index sees the transaction's net changes, sorted: each page touched is read and
        // written once.
        merkle::apply(&t, &self.shared.cipher, &mut txn, &mut set_changes)?;
        t.meta
            .put(&mut txn, tables::META_NEXT_SEQ, &seq.to_be_bytes())?;
        txn.commit()?;
        self.known_next = seq;
        Ok((all, stored, external))
    }
}

/// One queued write.
struct Write {
    events: Vec<VerifiedEvent>,
    records: Vec<Record>,
    durability: Durability,
}

/// Longest record name, in bytes.
pub const RECORD_NAME_MAX: usize = 56;
const RECORD_PREFIX: &[u8] = b"record/";

/// A private record kept beside the events, written in the same transaction as the events it
/// is submitted with: the state of a component built on the store (the conversation engine's
/// keys and sessions). On an encrypted store its value is sealed under the data key and its
/// name is a keyed hash, like every index key; on a plain store both are as given.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Its name: 1 to [`RECORD_NAME_MAX`] bytes.
    pub name: Vec<u8>,
    /// Its value, or `None` to delete it.
    pub value: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl Record {
    /// A record to write.
    pub fn put(name: &[u8], value: zeroize::Zeroizing<Vec<u8>>) -> Record {
        Record {
            name: name.to_vec(),
            value: Some(value),
        }
    }

    /// A record to delete.
    pub fn delete(name: &[u8]) -> Record {
        Record {
            name: name.to_vec(),
            value: None,
        }
    }

    fn name_ok(name: &[u8]) -> bool {
        (1..=RECORD_NAME_MAX).contains(&name.len())
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("bytes", &self.value.as_ref().map(|v| v.len()))
            .finish()
    }
}

/// Where a record lives in `meta`.
pub(crate) fn record_key(cipher: &Cipher, name: &[u8]) -> StoredKey {
    cipher.key(Slot::Record, &[RECORD_PREFIX, name])
}

/// Outcomes per write, the newly stored events, and whether another process had written.
type Committed<'g> = (Vec<Vec<Outcome>>, Vec<(u64, &'g VerifiedEvent)>, bool);

fn read_next_seq(t: &Tables, txn: &heed::RoTxn) -> Result<u64, WriteError> {
    t.meta
        .get(txn, tables::META_NEXT_SEQ)
        .map_err(WriteError::from_heed)?
        .and_then(decode_seq)
        .ok_or_else(|| WriteError::Corrupt("meta next_seq missing".into()))
}

/// The fields of a stored event needed to remove it, copied out of the map.
struct StoredHeader {
    id: EventId,
    header: Header,
}

struct Apply<'a, 'e> {
    t: &'a Tables,
    cipher: &'a Cipher,
    txn: &'a mut RwTxn<'e>,
    /// Set keys stored (+1) and removed (-1) by this transaction, for the Merkle index.
    set_changes: &'a mut Vec<(merkle::Key, i8)>,
    /// The `ids` and index rows of the events this transaction stores, put at its end.
    staged: &'a mut Staged,
}

impl Apply<'_, '_> {
    /// The stored key of an event id (in `ids` and `dropped`).
    fn id_key(&self, id: &EventId) -> StoredKey {
        self.cipher.key(Slot::Ids, &[&id.0])
    }

    fn latest_key(&self, author: &PublicKey, kind: Kind) -> StoredKey {
        self.cipher
            .key(Slot::Latest, &[&author.0, &kind.0.to_be_bytes()])
    }

    fn event(&mut self, ev: EventRef<'_>, seq: u64) -> Result<Outcome, Fail> {
        let t = self.t;
        let id = ev.id();
        let author = ev.author();
        if self.seq_of(&id.0)?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        let tombstone = self.cipher.key(Slot::Tombstone, &[&id.0, &author.0]);
        if t.tombstones.get(self.txn, &tombstone)?.is_some() {
            t.dropped
                .put(self.txn, &self.id_key(id), &[DROPPED_DELETED])?;
            return Ok(Outcome::Deleted);
        }
        let kind = ev.kind();
        if kind.is_replaceable() {
            let key = self.latest_key(author, kind);
            if let Some(old_seq) = t.latest.get(self.txn, &key)?.map(decode_seq) {
                let old_seq = old_seq.ok_or_else(|| corrupt("latest value is not a seq"))?;
                let old = self.load(old_seq)?;
                if (old.header.created_at(), old.id) > (ev.created_at(), *id) {
                    t.dropped
                        .put(self.txn, &self.id_key(id), &[DROPPED_SUPERSEDED])?;
                    return Ok(Outcome::Superseded);
                }
                self.remove(old_seq, &old)?;
                t.dropped
                    .put(self.txn, &self.id_key(&old.id), &[DROPPED_SUPERSEDED])?;
            }
            t.latest.put(self.txn, &key, &seq_key(seq))?;
            // A version refused earlier is stored once the newer one has been deleted.
            t.dropped.delete(self.txn, &self.id_key(id))?;
        }
        if kind == Kind::DELETION {
            self.delete_target(ev)?;
        }
        self.insert(ev, seq)?;
        Ok(Outcome::Stored { seq })
    }

    /// Records the tombstone and drops the target if it is stored and has the same author.
    fn delete_target(&mut self, deletion: EventRef<'_>) -> Result<(), Fail> {
        let t = self.t;
        let target = deletion.reference();
        let author = deletion.author();
        let tombstone = self.cipher.key(Slot::Tombstone, &[&target.0, &author.0]);
        t.tombstones.put(self.txn, &tombstone, &[])?;
        let Some(target_seq) = self.seq_of(&target.0)? else {
            return Ok(());
        };
        let old = self.load(target_seq)?;
        // Deletions themselves are not deletable: that would let an event come back.
        if old.header.author() != author || old.header.kind() == Kind::DELETION {
            return Ok(());
        }
        if old.header.kind().is_replaceable() {
            let key = self.latest_key(author, old.header.kind());
            if t.latest.get(self.txn, &key)?.and_then(decode_seq) == Some(target_seq) {
                t.latest.delete(self.txn, &key)?;
            }
        }
        self.remove(target_seq, &old)?;
        t.dropped
            .put(self.txn, &self.id_key(&old.id), &[DROPPED_DELETED])?;
        Ok(())
    }

    /// The sequence number of a stored event, staged in this transaction or put before.
    fn seq_of(&self, id: &[u8; 32]) -> Result<Option<u64>, Fail> {
        if let Some(seq) = self.staged.seq_of(id) {
            return Ok(Some(seq));
        }
        match self.t.ids.get(self.txn, &self.id_key(&EventId(*id)))? {
            Some(v) => Ok(Some(
                decode_seq(v).ok_or_else(|| corrupt("ids value is not a seq"))?,
            )),
            None => Ok(None),
        }
    }

    fn load(&self, seq: u64) -> Result<StoredHeader, Fail> {
        let key = seq_key(seq);
        let stored = self
            .t
            .events
            .get(self.txn, &key)?
            .ok_or_else(|| corrupt("index points at no event"))?;
        let bytes = self
            .cipher
            .open_cow(Slot::Events, &key, stored)
            .map_err(|_| corrupt(&format!("event {seq} fails authentication")))?;
        let ev = EventRef::from_body(&bytes).map_err(|e| corrupt(&format!("event {seq}: {e}")))?;
        Ok(StoredHeader {
            id: *ev.id(),
            header: *ev.header(),
        })
    }

    fn insert(&mut self, ev: EventRef<'_>, seq: u64) -> Result<(), Fail> {
        let t = self.t;
        let key = seq_key(seq);
        let stored = self
            .cipher
            .seal(Slot::Events, &key, ev.body())
            .map_err(|e| Fail::Other(WriteError::Seal(e.to_string())))?;
        t.events
            .put_with_flags(self.txn, PutFlags::APPEND, &key, &stored)?;
        self.staged.stage(ev, seq);
        self.set_changes
            .push((set_key(ev.created_at(), ev.id()), 1));
        Ok(())
    }

    fn remove(&mut self, seq: u64, old: &StoredHeader) -> Result<(), Fail> {
        let mut gone = self.t.events.delete(self.txn, &seq_key(seq))?;
        if self.staged.holds(seq) {
            // Stored earlier in this transaction: its other rows were never put.
            gone &= self.staged.unstage(seq, &old.id.0);
        } else {
            gone &= self.remove_rows(seq, old)?;
        }
        if !gone {
            return Err(corrupt(&format!(
                "event {seq} was missing from an index on removal"
            )));
        }
        self.set_changes
            .push((set_key(old.header.created_at(), &old.id), -1));
        Ok(())
    }

    /// Deletes the `ids` and index rows of an event put by an earlier transaction. False if
    /// any is missing.
    fn remove_rows(&mut self, seq: u64, old: &StoredHeader) -> Result<bool, Fail> {
        let t = self.t;
        let h = &old.header;
        let pos = Pos {
            created_at: h.created_at(),
            seq,
        }
        .encode();
        let c = self.cipher;
        let mut gone = t.ids.delete(self.txn, &self.id_key(&old.id))?;
        gone &=
            t.by_author
                .delete_one_duplicate(self.txn, &c.key(Slot::Author, &[&h.author]), &pos)?;
        let kind = kind_key(h.kind().0);
        gone &= t
            .by_kind
            .delete_one_duplicate(self.txn, &c.key(Slot::Kind, &[&kind]), &pos)?;
        if !h.topic().is_zero() {
            gone &= t.by_topic.delete_one_duplicate(
                self.txn,
                &c.key(Slot::Topic, &[&h.topic]),
                &pos,
            )?;
        }
        if !h.reference().is_zero() {
            gone &= t.by_ref.delete_one_duplicate(
                self.txn,
                &c.key(Slot::Ref, &[&h.reference]),
                &pos,
            )?;
        }
        Ok(gone)
    }
}

fn set_key(created_at: u64, id: &EventId) -> merkle::Key {
    SetKey {
        created_at,
        id: *id,
    }
    .encode()
}

fn corrupt(what: &str) -> Fail {
    Fail::Other(WriteError::Corrupt(what.to_owned()))
}
