//! One side of a sync session: reconciliation, then (interleaved with its last turn) the
//! transfer of missing events in both directions. Sans-IO: the caller feeds received frames
//! in and sends the frames [`Session::poll_frame`] hands out. Received events come out of
//! [`Session::handle_frame`] unverified; the caller has them verified by whatever policy and
//! on whatever thread it chooses (a verifier stage, a batch on its own thread), hands the
//! results to [`Session::settle`], and stores the events that returns. The session does not
//! say `Done` while a batch it handed out is unsettled.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::ControlFlow;

use xaeroflux_event::SetKey;
use xaeroflux_event::{
    EventId, EventRef, Limits, Verdict, Verified, VerifiedEvent, BODY_BYTES_MIN, PAYLOAD_BYTES_MAX,
};

use crate::error::SyncError;
use crate::recon::{Found, KeyRange, Reconciler};
use crate::view::{DynSource, Erased, SyncSource};
use crate::wire::{self, Assembler, DecodeLimits, Hello, Message, Recon};
use crate::{Scope, SyncConfig};

/// Which side of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the session and chooses its scope and salt.
    Initiator,
    /// Answers.
    Responder,
}

/// Counters of one session, from this side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Reconciliation messages sent.
    pub recon_messages_sent: u64,
    /// Reconciliation messages received.
    pub recon_messages_received: u64,
    /// Bytes of reconciliation frames sent (headers included).
    pub recon_bytes_sent: u64,
    /// Bytes of reconciliation frames received.
    pub recon_bytes_received: u64,
    /// Bytes of the largest reconciliation message sent (frame headers included): at most
    /// `turn_bytes_max`.
    pub recon_message_bytes_max: u64,
    /// All bytes sent.
    pub bytes_sent: u64,
    /// All bytes received.
    pub bytes_received: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Events sent.
    pub events_sent: u64,
    /// Events received and verified.
    pub events_received: u64,
    /// Bytes of the events sent, in their portable form (`id ‖ header ‖ signature ‖ payload`).
    pub event_bytes_sent: u64,
    /// Bytes of the events received and verified, in the same form.
    pub event_bytes_received: u64,
    /// Events this side found the peer lacks.
    pub have: u64,
    /// Events this side found it lacks (by id; whole ranges count as they arrive).
    pub need: u64,
    /// Ids promised by the peer that never came (deleted there meanwhile, or a lying peer).
    pub missing: u64,
    /// Events the peer sent that this side had dropped on purpose, discarded.
    pub declined: u64,
    /// Events the peer sent that this build cannot check (a newer header version): not
    /// stored, not held against the peer (`docs/format.md`, "Verdicts").
    pub declined_not_understood: u64,
    /// Authentic events the peer sent that are outside this side's bounds for now (dated
    /// beyond the allowed clock skew): not stored, not held against the peer; a later session
    /// fetches them again.
    pub declined_out_of_bounds: u64,
}

impl SessionStats {
    /// Round trips of reconciliation: message turns of both sides, paired.
    pub fn round_trips(&self) -> u64 {
        (self.recon_messages_sent + self.recon_messages_received).div_ceil(2)
    }
}

/// What a received frame produced.
#[derive(Debug, Default)]
pub struct Received {
    /// Events to verify, then to hand back with [`Session::settle`].
    pub unverified: Option<Unverified>,
}

/// Events received and not yet verified. [`Unverified::into_parts`] gives the bytes to verify
/// and the claim that settles them.
#[derive(Debug)]
pub struct Unverified {
    items: Vec<Vec<u8>>,
    claim: Claim,
}

impl Unverified {
    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty (never, as handed out).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bounds to verify them against (the session's time).
    pub fn limits(&self) -> Limits {
        self.claim.limits
    }

    /// The events' bytes (`id ‖ header ‖ signature ‖ payload` each) for the verifier, and the
    /// claim to hand to [`Session::settle`] with the results, in the same order.
    pub fn into_parts(self) -> (Vec<Vec<u8>>, Claim) {
        (self.items, self.claim)
    }

    /// Verifies on this thread with `policy` (for example `xaeroflux_event::verify_batch`) and
    /// settles: the events to store.
    pub fn verify_with(
        self,
        session: &mut Session,
        policy: impl FnOnce(Vec<Vec<u8>>, &Limits) -> Verified,
    ) -> Result<Vec<VerifiedEvent>, SyncError> {
        let (items, claim) = self.into_parts();
        let results = policy(items, &claim.limits);
        session.settle(claim, results)
    }
}

/// Where each event of an [`Unverified`] batch sits; what [`Session::settle`] needs.
#[derive(Debug)]
pub struct Claim {
    places: Vec<Place>,
    limits: Limits,
}

impl Claim {
    /// The bounds to verify the batch against (the session's time).
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// One side of a sync session.
pub struct Session {
    role: Role,
    cfg: SyncConfig,
    scope: Option<Scope>,
    recon: Option<Reconciler>,
    assembler: Assembler,
    outbox: VecDeque<Vec<u8>>,
    /// This side has nothing more to say in reconciliation.
    recon_done: bool,
    send_ids: VecDeque<EventId>,
    send_ranges: VecDeque<KeyRange>,
    /// Every id queued to send by id: an id asked for again is not sent again, nor sent a
    /// second time as part of a range.
    owed_ids: HashSet<EventId>,
    /// Every range queued to send whole, `lo → hi`, disjoint: a part asked for again is not
    /// sent again.
    owed_ranges: BTreeMap<SetKey, SetKey>,
    want_ids: HashSet<EventId>,
    want_ranges: Vec<KeyRange>,
    /// Offered ids this side dropped on purpose: discarded when they arrive.
    declined: HashSet<EventId>,
    sent_done: bool,
    peer_done: bool,
    /// Batches handed out by `handle_frame` and not yet settled.
    unsettled: usize,
    stats: SessionStats,
    found: Found,
    now_ms: u64,
}

impl Session {
    /// The initiating side of a session over `scope`. `salt` must be fresh randomness: it keys
    /// the session's fingerprints and symbol hashes.
    pub fn initiator(cfg: SyncConfig, scope: Scope, salt: u64) -> Session {
        let mut s = Session::new(Role::Initiator, cfg);
        s.recon = Some(Reconciler::new(cfg, salt, scope.lower(), scope.upper()));
        s.scope = Some(scope);
        s
    }

    /// The answering side; the scope and salt come with the initiator's first message.
    pub fn responder(cfg: SyncConfig) -> Session {
        Session::new(Role::Responder, cfg)
    }

    fn new(role: Role, cfg: SyncConfig) -> Session {
        let cfg = cfg.sanitized();
        Session {
            role,
            cfg,
            scope: None,
            recon: None,
            assembler: Assembler::new(cfg.frame_bytes_max, cfg.message_bytes_max),
            outbox: VecDeque::new(),
            recon_done: false,
            send_ids: VecDeque::new(),
            send_ranges: VecDeque::new(),
            owed_ids: HashSet::new(),
            owed_ranges: BTreeMap::new(),
            want_ids: HashSet::new(),
            want_ranges: Vec::new(),
            declined: HashSet::new(),
            sent_done: false,
            peer_done: false,
            unsettled: 0,
            stats: SessionStats::default(),
            found: Found::default(),
            now_ms: 0,
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session's scope (known to a responder once the first message arrived).
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            have: self.found.have.len() as u64,
            need: self.found.need.len() as u64,
            // Known once the peer said it sent everything and all of it is settled.
            missing: if self.peer_done && self.unsettled == 0 {
                self.want_ids.len() as u64
            } else {
                0
            },
            ..self.stats
        }
    }

    /// What reconciliation has found so far: the ids this side has that the peer lacks, the
    /// ids it needs, and the ranges that move whole (one side held nothing there). Complete
    /// once [`Session::is_reconciled`].
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// Whether both sides have finished: everything owed was sent, received and settled.
    pub fn is_finished(&self) -> bool {
        self.sent_done && self.peer_done && self.unsettled == 0
    }

    /// Batches handed out by [`Session::handle_frame`] and not yet settled.
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Whether the peer said it has sent everything it owes (`Done`).
    pub fn peer_done(&self) -> bool {
        self.peer_done
    }

    /// Whether reconciliation is over on this side.
    pub fn is_reconciled(&self) -> bool {
        self.recon_done
    }

    /// Initiator: queues the first message. `view` must cover the session's scope.
    pub fn start<V: SyncSource + ?Sized>(&mut self, view: &V) -> Result<(), SyncError> {
        self.start_dyn(&Erased(view))
    }

    fn start_dyn(&mut self, view: &dyn DynSource) -> Result<(), SyncError> {
        let (Some(recon), Some(scope)) = (self.recon.as_mut(), self.scope.as_ref()) else {
            return Err(SyncError::Protocol("only an initiator starts a session"));
        };
        let hello = Hello {
            salt: recon.salt(),
            scope: scope.clone(),
        };
        let msg = recon.open(view, hello)?;
        self.queue_recon(msg)
    }

    /// Takes one frame from the peer. `now_ms` bounds the timestamps of received events.
    pub fn handle_frame<V: SyncSource + ?Sized>(
        &mut self,
        view: &V,
        frame: &[u8],
        now_ms: u64,
    ) -> Result<Received, SyncError> {
        self.handle_frame_dyn(&Erased(view), frame, now_ms)
    }

    fn handle_frame_dyn(
        &mut self,
        view: &dyn DynSource,
        frame: &[u8],
        now_ms: u64,
    ) -> Result<Received, SyncError> {
        if self.is_finished() {
            return Err(SyncError::Finished);
        }
        self.now_ms = now_ms;
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let pending = self.assembler.pending_bytes();
        let Some(bytes) = self.assembler.push(frame)? else {
            return Ok(Received::default());
        };
        let lower = self.scope.as_ref().map(Scope::lower);
        let msg = Message::decode(&bytes, lower.as_ref(), &self.decode_limits())?;
        match msg {
            Message::Recon(r) => {
                self.stats.recon_messages_received += 1;
                self.stats.recon_bytes_received += (pending + frame.len()) as u64;
                self.on_recon(view, r)?;
                Ok(Received::default())
            }
            Message::Events(bodies) => self.on_events(bodies),
            Message::Done => {
                if !self.recon_done {
                    return Err(SyncError::Protocol("done before reconciliation ended"));
                }
                self.peer_done = true;
                Ok(Received::default())
            }
            Message::Abort { code, reason } => Err(SyncError::Aborted { code, reason }),
        }
    }

    /// The next frame to send, if any: reconciliation first, then events, then `Done`.
    pub fn poll_frame<V: SyncSource + ?Sized>(
        &mut self,
        view: &V,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        self.poll_frame_dyn(&Erased(view))
    }

    fn poll_frame_dyn(&mut self, view: &dyn DynSource) -> Result<Option<Vec<u8>>, SyncError> {
        if let Some(f) = self.outbox.pop_front() {
            return Ok(Some(self.count_out(f)));
        }
        if self.recon.is_none() || self.sent_done {
            return Ok(None);
        }
        let events = self.next_events(view)?;
        if !events.is_empty() {
            self.queue(&Message::Events(events));
        } else if self.recon_done
            && (self.role() == Role::Initiator || (self.peer_done && self.unsettled == 0))
        {
            // The initiator's `Done` says only "I sent everything" (it finishes once what it
            // received is settled). The responder answers it, once everything received is
            // settled: its own `Done` then says "and I have everything you sent", so an
            // initiator that finishes knows its events arrived (its driver holds this frame
            // until they are stored, too).
            self.sent_done = true;
            self.queue(&Message::Done);
        }
        Ok(self.outbox.pop_front().map(|f| self.count_out(f)))
    }

    /// A frame telling the peer why this side gives up.
    pub fn abort_frame(&self, code: u8, reason: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::frames(
            &Message::Abort {
                code,
                reason: reason.to_owned(),
            }
            .encode(&SetKey::MIN),
            self.cfg.frame_bytes_max,
            &mut out,
        );
        out.swap_remove(0)
    }

    fn count_out(&mut self, f: Vec<u8>) -> Vec<u8> {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += f.len() as u64;
        f
    }

    fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            ranges_max: self.cfg.ranges_max,
            requests_max: self.cfg.pools_max,
            ids_max: self.cfg.ids_max,
            symbols_max: self.cfg.symbols_max,
            filter_values_max: self.cfg.scope_values_max,
            event_bytes_max: BODY_BYTES_MIN + PAYLOAD_BYTES_MAX,
        }
    }

    /// Frames a message into the outbox.
    fn queue(&mut self, msg: &Message) {
        let frames = self.frame(msg);
        self.outbox.extend(frames);
    }

    fn frame(&self, msg: &Message) -> Vec<Vec<u8>> {
        let lower = self.scope.as_ref().map_or(SetKey::MIN, Scope::lower);
        let bytes = msg.encode(&lower);
        let mut frames = Vec::new();
        wire::frames(&bytes, self.cfg.frame_bytes_max, &mut frames);
        frames
    }

    /// What the next reconciliation turn may produce: the turn's budget, or what is left of
    /// the session's if less.
    fn turn_budget(&self) -> usize {
        let left = self
            .cfg
            .recon_bytes_max
            .saturating_sub(self.stats.recon_bytes_sent);
        self.cfg
            .turn_bytes_max
            .min(usize::try_from(left).unwrap_or(usize::MAX))
    }

    /// Queues a reconciliation message after measuring it against the output budgets (the
    /// reconciler plans with estimates; this is the exact check).
    fn queue_recon(&mut self, r: Recon) -> Result<(), SyncError> {
        let open = r.is_open();
        let frames = self.frame(&Message::Recon(r));
        let queued = frames.iter().map(Vec::len).sum::<usize>() as u64;
        if queued > self.cfg.turn_bytes_max as u64 {
            return Err(SyncError::OutputBudget {
                what: "reconciliation output of one turn",
                max: self.cfg.turn_bytes_max as u64,
            });
        }
        if self.stats.recon_bytes_sent + queued > self.cfg.recon_bytes_max {
            return Err(SyncError::OutputBudget {
                what: "reconciliation output of the session",
                max: self.cfg.recon_bytes_max,
            });
        }
        self.recon_done = !open;
        self.outbox.extend(frames);
        self.stats.recon_messages_sent += 1;
        self.stats.recon_bytes_sent += queued;
        self.stats.recon_message_bytes_max = self.stats.recon_message_bytes_max.max(queued);
        Ok(())
    }

    fn on_recon(&mut self, view: &dyn DynSource, r: Recon) -> Result<(), SyncError> {
        if let Some(hello) = &r.hello {
            if self.role == Role::Initiator || self.recon.is_some() {
                return Err(SyncError::Protocol("unexpected hello"));
            }
            self.recon = Some(Reconciler::new(
                self.cfg,
                hello.salt,
                hello.scope.lower(),
                hello.scope.upper(),
            ));
            self.scope = Some(hello.scope.clone());
        }
        if self.recon_done && r.is_open() {
            return Err(SyncError::Protocol("reconciliation message after the end"));
        }
        let budget = self.turn_budget();
        let recon = self
            .recon
            .as_mut()
            .ok_or(SyncError::Protocol("first message without hello"))?;
        match recon.answer(view, r, budget)? {
            Some(reply) => self.queue_recon(reply)?,
            None => self.recon_done = true,
        }
        self.absorb_found();
        Ok(())
    }

    /// Moves what reconciliation found into the transfer queues (and the record of it). What
    /// the peer asks for again is queued once.
    fn absorb_found(&mut self) {
        let Some(recon) = self.recon.as_mut() else {
            return;
        };
        let found = std::mem::take(&mut recon.found);
        self.found.need.extend_from_slice(&found.need);
        self.found.need_ranges.extend_from_slice(&found.need_ranges);
        self.found.declined.extend_from_slice(&found.declined);
        self.declined.extend(found.declined);
        for id in found.have {
            if self.owed_ids.insert(id) {
                self.found.have.push(id);
                self.send_ids.push_back(id);
            }
        }
        for (lo, hi) in found.have_ranges {
            for part in uncovered(&self.owed_ranges, lo, hi) {
                self.owed_ranges.insert(part.0, part.1);
                self.found.have_ranges.push(part);
                self.send_ranges.push_back(part);
            }
        }
        self.want_ids.extend(found.need);
        self.want_ranges.extend(found.need_ranges);
    }

    /// Up to one message's worth of events owed to the peer.
    fn next_events(&mut self, view: &dyn DynSource) -> Result<Vec<Vec<u8>>, SyncError> {
        let budget = self.cfg.events_message_bytes;
        let mut batch = Batch::default();
        while batch.bytes < budget {
            let Some(id) = self.send_ids.pop_front() else {
                break;
            };
            // An id the peer asked for that is gone (deleted meanwhile) is skipped; the peer
            // counts it as missing.
            view.with_body(&id, &mut |body| batch.take(body))?;
        }
        while batch.bytes < budget {
            let Some((lo, hi)) = self.send_ranges.pop_front() else {
                break;
            };
            let mut resume: Option<SetKey> = None;
            let mut failed = None;
            let owed_ids = &self.owed_ids;
            view.for_each_in(&lo, &hi, &mut |k| {
                if batch.bytes >= budget {
                    resume = Some(*k);
                    return ControlFlow::Break(());
                }
                if owed_ids.contains(&k.id) {
                    // Asked for by id as well: it goes out once, by id.
                    return ControlFlow::Continue(());
                }
                if let Err(e) = view.with_body(&k.id, &mut |body| batch.take(body)) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            if let Some(k) = resume {
                self.send_ranges.push_front((k, hi));
            }
        }
        self.stats.events_sent += batch.out.len() as u64;
        self.stats.event_bytes_sent += batch.out.iter().map(|b| b.len() as u64 + 32).sum::<u64>();
        Ok(batch.out)
    }

    fn on_events(&mut self, bodies: Vec<Vec<u8>>) -> Result<Received, SyncError> {
        let scope = self
            .scope
            .clone()
            .ok_or(SyncError::Protocol("events before hello"))?;
        if bodies.is_empty() {
            return Ok(Received::default());
        }
        let mut items = Vec::with_capacity(bodies.len());
        // What the session needs of an event that fails verification without blame: where it
        // sits in the set and whether the scope holds it (trusted only once authentic).
        let mut places = Vec::with_capacity(bodies.len());
        for body in bodies {
            // A body too short to hold a header gets a zero id; verification names the fault.
            let place = EventRef::from_body(&body).map_or(
                Place {
                    key: SetKey {
                        created_at: 0,
                        id: EventId::ZERO,
                    },
                    in_scope: false,
                },
                |ev| Place {
                    key: SetKey {
                        created_at: ev.created_at(),
                        id: *ev.id(),
                    },
                    in_scope: scope.contains(&ev),
                },
            );
            let mut bytes = Vec::with_capacity(32 + body.len());
            bytes.extend_from_slice(&place.key.id.0);
            bytes.extend_from_slice(&body);
            items.push(bytes);
            places.push(place);
        }
        self.unsettled += 1;
        Ok(Received {
            unverified: Some(Unverified {
                items,
                claim: Claim {
                    places,
                    limits: Limits::at(self.now_ms),
                },
            }),
        })
    }

    /// Takes the verification results of a batch [`Session::handle_frame`] handed out (in its
    /// order) and returns the events to store. An invalid event, or an authentic one nobody
    /// asked for, fails the session; events this build cannot check and events outside this
    /// side's bounds are left out without blame. Batches may be settled in any order.
    pub fn settle(
        &mut self,
        claim: Claim,
        results: Verified,
    ) -> Result<Vec<VerifiedEvent>, SyncError> {
        if self.unsettled == 0 || results.len() != claim.places.len() {
            return Err(SyncError::Unmatched);
        }
        self.unsettled -= 1;
        let mut events = Vec::with_capacity(results.len());
        for (result, place) in results.into_iter().zip(claim.places) {
            let error = match result {
                Ok(event) => {
                    if event.id() != &place.key.id {
                        return Err(SyncError::Unmatched);
                    }
                    if self.accept(&place)? {
                        events.push(event);
                    }
                    continue;
                }
                Err(e) => e,
            };
            match error.verdict() {
                Verdict::Invalid => return Err(SyncError::InvalidEvent(error)),
                Verdict::Declined => {
                    // Authentic, so its place is true: it must have been asked for like any
                    // other; then it is left for a later session (not stored, no blame).
                    if self.accept(&place)? {
                        self.stats.declined_out_of_bounds += 1;
                    }
                }
                _ => self.decline_unchecked(&place)?,
            }
        }
        self.stats.events_received += events.len() as u64;
        self.stats.event_bytes_received += events
            .iter()
            .map(|e| e.as_bytes().len() as u64)
            .sum::<u64>();
        Ok(events)
    }

    /// Whether an authentic event is to be kept: false if this side dropped it on purpose;
    /// an error if nobody asked for it or the scope does not hold it.
    fn accept(&mut self, place: &Place) -> Result<bool, SyncError> {
        let id = &place.key.id;
        if self.declined.remove(id) {
            // Offered, verified, and not wanted here: the store would drop it again.
            self.stats.declined += 1;
            return Ok(false);
        }
        let wanted = self.want_ids.remove(id)
            || self
                .want_ranges
                .iter()
                .any(|(lo, hi)| place.key >= *lo && place.key < *hi);
        if !wanted || !place.in_scope {
            return Err(SyncError::Unrequested(*id));
        }
        Ok(true)
    }

    /// An event this build cannot check (a newer header version): nothing in it can be
    /// trusted, not even its id, so it is neither stored nor held against the peer. A newer
    /// peer answering what was asked sends at most as many as the session exchanges ids.
    fn decline_unchecked(&mut self, place: &Place) -> Result<(), SyncError> {
        self.stats.declined_not_understood += 1;
        if self.stats.declined_not_understood > self.cfg.ids_max as u64 {
            return Err(SyncError::TooManyNotUnderstood {
                max: self.cfg.ids_max,
            });
        }
        // If the newer version derives ids as this one does, the id was asked for: it is not
        // missing, only unreadable here.
        self.want_ids.remove(&place.key.id);
        Ok(())
    }
}

/// The parts of `[lo, hi)` that no range of `owed` (disjoint, `lo → hi`) covers.
fn uncovered(owed: &BTreeMap<SetKey, SetKey>, lo: SetKey, hi: SetKey) -> Vec<KeyRange> {
    let mut parts = Vec::new();
    let mut cursor = lo;
    // The owed range that starts at or before `lo` may reach into it.
    let first = owed
        .range(..=lo)
        .next_back()
        .map_or(lo, |(start, _)| *start);
    for (start, end) in owed.range(first..hi) {
        if *end <= cursor {
            continue;
        }
        if *start > cursor {
            parts.push((cursor, *start));
        }
        cursor = *end;
        if cursor >= hi {
            break;
        }
    }
    if cursor < hi {
        parts.push((cursor, hi));
    }
    parts
}

/// Where a received event sits, read from its header before verification.
#[derive(Debug)]
struct Place {
    key: SetKey,
    in_scope: bool,
}

/// Event bodies gathered for one message.
#[derive(Default)]
struct Batch {
    out: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn take(&mut self, body: &[u8]) {
        // Each body costs its bytes and a length prefix of at most three bytes.
        self.bytes += body.len() + 3;
        self.out.push(body.to_vec());
    }
}
