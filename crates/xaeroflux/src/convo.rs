//! Private conversations on a node: the conversation engine (`xaeroflux-convo`) fed from the
//! store, its state kept in the store beside the events, its envelopes published like any event.
//!
//! Every call takes the data directory's conversation lock (so two processes on one directory
//! never move the same ratchets), brings the engine up to date with the envelopes and key
//! bundles stored since the last call, does what was asked, and writes the new envelopes and the
//! engine's state in one transaction: either both are stored or neither is, so a ratchet step
//! is never reused.

use std::sync::Mutex;

use xaeroflux_convo::{Change, ConvoError, Engine, Outcome as ConvoOutcome};
use xaeroflux_event::{EventId, Identity, Kind, PublicKey, Topic, VerifiedEvent};
use xaeroflux_store::{Durability, Filter, ReadError, ReadTxn, Record, Store, WriteError};
use xaeroflux_sync::Scope;
use zeroize::Zeroizing;

use crate::node::{now_ms, Node};

pub use xaeroflux_convo::{ConvoId, ConvoInfo, Message, Rejection};

/// The file a process holds an exclusive lock on while it works on the conversations of a
/// data directory.
pub const CONVO_LOCK_FILE: &str = "convo.lock";
/// The store record holding the conversation state.
const RECORD: &[u8] = b"conversations";
const RECORD_VERSION: u8 = 1;
/// Events read from the log per step of a catch-up.
const CATCH_UP_STEP: usize = 1024;
/// Envelopes kept waiting for something (a key bundle, a session key); the oldest are dropped
/// beyond it (they stay in the store, relayed for others).
pub const PENDING_MAX: usize = 10_000;

/// Why a conversation call failed. What was stored before stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConversationError {
    /// The node has no author identity.
    #[error("this node has no identity")]
    NoIdentity,
    /// The engine refused the action (not a member, no key bundle for someone, …).
    #[error(transparent)]
    Convo(#[from] ConvoError),
    /// Reading the store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the store failed; nothing of this call was stored.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The conversation lock could not be taken.
    #[error("conversation lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The stored conversation state does not decode.
    #[error("stored conversation state is damaged: {0}")]
    State(String),
}

/// What a catch-up did: envelopes taken, refused and still waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Envelopes read for the first time that changed something.
    pub accepted: usize,
    /// Envelopes meant for this author and refused, with why.
    pub rejected: Vec<(EventId, Rejection)>,
    /// Envelopes waiting for a key bundle or a session key.
    pub pending: usize,
    /// Key bundles newer than the ones held.
    pub bundles: usize,
    /// New messages, conversations and membership changes.
    pub changes: Vec<Change>,
}

/// The in-memory copy of the stored state, kept between calls.
struct Loaded {
    generation: u64,
    engine: Engine,
    cursor: u64,
    pending: Vec<EventId>,
}

/// The node's conversation state, loaded on first use.
#[derive(Default)]
pub(crate) struct ConvoSlot(Mutex<Option<Loaded>>);

impl Loaded {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, ConvoError> {
        let engine = self.engine.save()?;
        let mut out = Zeroizing::new(Vec::with_capacity(
            21 + 32 * self.pending.len() + engine.len(),
        ));
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.cursor.to_le_bytes());
        out.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
        for id in &self.pending {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&engine);
        Ok(out)
    }
}

/// The generation of a stored record, read without restoring the engine.
fn generation_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?))
}

fn decode(identity: &Identity, bytes: &[u8]) -> Result<Loaded, ConversationError> {
    let bad = |what: &str| ConversationError::State(what.to_string());
    if bytes.first() != Some(&RECORD_VERSION) {
        return Err(bad("unknown record version"));
    }
    let generation = generation_of(bytes).ok_or_else(|| bad("truncated"))?;
    let cursor = u64::from_le_bytes(
        bytes
            .get(9..17)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("truncated"))?,
    );
    let n = u32::from_le_bytes(
        bytes
            .get(17..21)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("truncated"))?,
    ) as usize;
    let ids_end = 21usize
        .checked_add(n.checked_mul(32).ok_or_else(|| bad("pending count"))?)
        .ok_or_else(|| bad("pending count"))?;
    let ids = bytes.get(21..ids_end).ok_or_else(|| bad("truncated"))?;
    let pending = ids
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok().map(EventId))
        .collect();
    let engine = Engine::restore(identity, &bytes[ids_end..])?;
    Ok(Loaded {
        generation,
        engine,
        cursor,
        pending,
    })
}

/// Offers one stored envelope or bundle to the engine and records what became of it.
fn offer(
    loaded: &mut Loaded,
    event: xaeroflux_event::EventRef<'_>,
    now: u64,
    report: &mut CatchUp,
) -> bool {
    match event.kind() {
        Kind::KEY_BUNDLE => {
            let learned = matches!(loaded.engine.learn_bundle(event, now), Ok(true));
            report.bundles += usize::from(learned);
            learned
        }
        Kind::ENVELOPE => match loaded.engine.receive(event, now) {
            ConvoOutcome::Accepted(changes) => {
                report.accepted += 1;
                report.changes.extend(changes);
                true
            }
            ConvoOutcome::Pending(_) => {
                if !loaded.pending.contains(event.id()) {
                    if loaded.pending.len() >= PENDING_MAX {
                        loaded.pending.remove(0);
                    }
                    loaded.pending.push(*event.id());
                }
                false
            }
            ConvoOutcome::Rejected(why) => {
                report.rejected.push((*event.id(), why));
                false
            }
            _ => false,
        },
        _ => false,
    }
}

/// Offers the pending envelopes and those under newly learned tags again, until nothing more
/// is taken.
fn settle(
    loaded: &mut Loaded,
    read: &ReadTxn<'_>,
    now: u64,
    report: &mut CatchUp,
) -> Result<(), ConversationError> {
    loop {
        let mut progress = false;
        for id in std::mem::take(&mut loaded.pending) {
            // An envelope no longer stored (its store was re-encrypted, say) is dropped.
            if let Some(event) = read.get(&id)? {
                progress |= offer(loaded, event, now, report);
            }
        }
        let tags = loaded.engine.drain_rescan(now);
        for chunk in tags.chunks(xaeroflux_store::FILTER_VALUES_MAX) {
            let filter = Filter {
                kinds: vec![Kind::ENVELOPE],
                scope: Scope {
                    topics: chunk.iter().map(|t| Topic(*t)).collect(),
                    ..Scope::default()
                },
                limit: Some(xaeroflux_store::QUERY_LIMIT_MAX),
                ..Filter::default()
            };
            let found = read
                .query(&filter)
                .map_err(|e| ConversationError::State(e.to_string()))?;
            for event in found {
                progress |= offer(loaded, event, now, report);
            }
        }
        if !progress {
            return Ok(());
        }
    }
}

impl Node {
    /// Runs `f` on the up-to-date conversation engine, then stores the envelopes it made and
    /// the new state together, and gossips the envelopes. `f` only reads unless `mutates`: then
    /// nothing is written when the catch-up took nothing either.
    fn with_conversations<T>(
        &self,
        mutates: bool,
        f: impl FnOnce(&mut Engine, &ReadTxn<'_>, u64) -> Result<T, ConvoError>,
    ) -> Result<(T, CatchUp), ConversationError> {
        let identity = self.identity().ok_or(ConversationError::NoIdentity)?;
        let store = self.store();
        let path = store.path().join(CONVO_LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ConversationError::Lock {
                path: path.clone(),
                source,
            })?;
        lock.lock()
            .map_err(|source| ConversationError::Lock { path, source })?;
        let mut slot = self.convo.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let mut fresh_bundle = None;
        let mut report = CatchUp::default();
        let result;
        let before;
        let mut loaded = {
            let read = store.read()?;
            let stored = read.record(RECORD)?;
            let mut loaded = match (slot.take(), stored) {
                // Another process moved the state on (or this is the first call): restore it.
                (Some(l), Some(bytes)) if generation_of(&bytes) == Some(l.generation) => l,
                (_, Some(bytes)) => decode(identity, &bytes)?,
                (_, None) => {
                    let engine = Engine::new(identity)?;
                    fresh_bundle = Some(engine.key_bundle(identity, now));
                    // Envelopes already stored were sealed before this author had keys:
                    // none is for it. Bundles already stored are read on demand.
                    let cursor = read.stats()?.next_seq.saturating_sub(1);
                    Loaded {
                        generation: 0,
                        engine,
                        cursor,
                        pending: Vec::new(),
                    }
                }
            };
            before = (loaded.cursor, loaded.pending.clone());
            catch_up(&mut loaded, &read, now, &mut report)?;
            result = f(&mut loaded.engine, &read, now);
            // What the action made may unblock nothing here, but bundles it looked up may.
            settle(&mut loaded, &read, now, &mut report)?;
            loaded
        };
        let mut events: Vec<VerifiedEvent> = fresh_bundle.into_iter().collect();
        events.extend(loaded.engine.drain_outbox());
        // Whatever changed the engine (an envelope taken or refused, a bundle learned, the
        // action itself) or what it has seen must be stored; a read with nothing new need not.
        let changed = mutates
            || !events.is_empty()
            || report.accepted > 0
            || !report.rejected.is_empty()
            || report.bundles > 0
            || (loaded.cursor, &loaded.pending) != (before.0, &before.1);
        if !changed {
            *slot = Some(loaded);
            return Ok((result?, report));
        }
        loaded.generation = loaded.generation.wrapping_add(1);
        let record = Record::put(RECORD, loaded.encode()?);
        store
            .submit_with_records(events.clone(), vec![record], Durability::Durable)?
            .wait()?;
        if let Some(net) = self.net() {
            for event in events {
                // A full queue only delays it: the next anti-entropy round carries it.
                let _ = net.publish(event);
            }
        }
        *slot = Some(loaded);
        Ok((result?, report))
    }

    /// Brings the conversations up to date with what the store holds (envelopes and key bundles
    /// that arrived by sync or gossip) and says what changed.
    pub fn conversations_catch_up(&self) -> Result<CatchUp, ConversationError> {
        Ok(self.with_conversations(false, |_, _, _| Ok(()))?.1)
    }

    /// The conversations this author is in or was in, direct and group.
    pub fn conversations(&self) -> Result<Vec<ConvoInfo>, ConversationError> {
        Ok(self
            .with_conversations(false, |e, _, _| Ok(e.conversations()))?
            .0)
    }

    /// Sends `text` to `peer` in the direct conversation between the two (started if new; the
    /// peer may be offline: its published key bundle is enough).
    pub fn dm(&self, peer: &PublicKey, text: &str) -> Result<ConvoId, ConversationError> {
        Ok(self
            .with_conversations(true, |e, read, now| {
                learn_bundles(e, read, &[*peer], now);
                e.dm(&peer.0, text, now)
            })?
            .0)
    }

    /// Creates a group with this author as its only member and admin.
    pub fn group_create(&self, name: &str) -> Result<ConvoId, ConversationError> {
        Ok(self
            .with_conversations(true, |e, _, now| e.create_group(name, now))?
            .0)
    }

    /// Adds authors to a group (as admins if `admin`).
    pub fn group_add(
        &self,
        group: &ConvoId,
        members: &[PublicKey],
        admin: bool,
    ) -> Result<(), ConversationError> {
        self.with_conversations(true, |e, read, now| {
            learn_bundles(e, read, members, now);
            let members: Vec<[u8; 32]> = members.iter().map(|m| m.0).collect();
            e.add(group, &members, admin, now).map(drop)
        })?;
        Ok(())
    }

    /// Removes authors from a group.
    pub fn group_remove(
        &self,
        group: &ConvoId,
        members: &[PublicKey],
    ) -> Result<(), ConversationError> {
        self.with_conversations(true, |e, _, now| {
            let members: Vec<[u8; 32]> = members.iter().map(|m| m.0).collect();
            e.remove(group, &members, now).map(drop)
        })?;
        Ok(())
    }

    /// Leaves a group.
    pub fn group_leave(&self, group: &ConvoId) -> Result<(), ConversationError> {
        self.with_conversations(true, |e, _, now| e.leave(group, now).map(drop))?;
        Ok(())
    }

    /// Sends `text` to a conversation (a group or a direct one).
    pub fn group_send(&self, group: &ConvoId, text: &str) -> Result<(), ConversationError> {
        self.with_conversations(true, |e, read, now| {
            // Members whose bundles are stored but not yet read (added by someone else).
            let members: Vec<PublicKey> = e.members(group)?.into_iter().map(PublicKey).collect();
            learn_bundles(e, read, &members, now);
            e.send(group, text, now).map(drop)
        })?;
        Ok(())
    }

    /// The readable messages of a conversation, oldest first.
    pub fn group_read(&self, group: &ConvoId) -> Result<Vec<Message>, ConversationError> {
        Ok(self
            .with_conversations(false, |e, _, _| e.messages(group))?
            .0)
    }

    /// The conversation engine's secrets, for tests that search files for them
    /// ([`xaeroflux_convo::Engine::secret_material`]). Not for anything else.
    #[doc(hidden)]
    pub fn conversation_secrets(&self) -> Result<Vec<Zeroizing<Vec<u8>>>, ConversationError> {
        Ok(self
            .with_conversations(false, |e, _, _| Ok(e.secret_material()))?
            .0)
    }

    /// Renews this author's conversation keys after a suspected compromise of its state
    /// (`docs/privacy.md`, "A stolen device").
    pub fn conversations_update_keys(&self) -> Result<(), ConversationError> {
        let identity = self.identity().ok_or(ConversationError::NoIdentity)?;
        self.with_conversations(true, |e, _, now| e.update(identity, now))?;
        Ok(())
    }
}

/// Feeds the engine every envelope and bundle stored since its cursor.
fn catch_up(
    loaded: &mut Loaded,
    read: &ReadTxn<'_>,
    now: u64,
    report: &mut CatchUp,
) -> Result<(), ConversationError> {
    loop {
        let batch = read.changes_since(loaded.cursor, CATCH_UP_STEP)?;
        let Some(last) = batch.last().map(|(seq, _)| *seq) else {
            break;
        };
        let mut progress = false;
        for (_, event) in batch {
            progress |= offer(loaded, event, now, report);
        }
        loaded.cursor = last;
        if progress {
            settle(loaded, read, now, report)?;
        }
    }
    settle(loaded, read, now, report)?;
    report.pending = loaded.pending.len();
    Ok(())
}

/// Gives the engine the newest stored key bundle of each author it has none of.
fn learn_bundles(engine: &mut Engine, read: &ReadTxn<'_>, authors: &[PublicKey], now: u64) {
    for a in authors {
        if engine.knows(&a.0) {
            continue;
        }
        if let Ok(Some(bundle)) = read.latest(a, Kind::KEY_BUNDLE) {
            let _ = engine.learn_bundle(bundle, now);
        }
    }
}

/// Carries the conversation state from one store to its re-encrypted copy. Sequence numbers
/// differ in the copy, so the cursor starts over: the catch-up reads the copy's log once, and
/// what was taken before is a duplicate.
pub(crate) fn carry(from: &Store, to: &Store) -> Result<(), ConversationError> {
    let Some(mut bytes) = from.read()?.record(RECORD)? else {
        return Ok(());
    };
    let cursor = bytes
        .get_mut(9..17)
        .ok_or_else(|| ConversationError::State("truncated".into()))?;
    cursor.copy_from_slice(&0u64.to_le_bytes());
    to.submit_with_records(
        Vec::new(),
        vec![Record::put(RECORD, bytes)],
        Durability::Durable,
    )?
    .wait()?;
    Ok(())
}
