//! The conversation engine: one author's conversations, their keys and their messages.
//!
//! The engine is a state machine. Envelope events go in through [`Engine::receive`] (in any
//! order, with duplicates); the author's actions ([`Engine::send`], [`Engine::add`], …) and
//! the engine's own reactions put new envelope events in an outbox that the caller drains with
//! [`Engine::drain_outbox`] and publishes like any event. [`Engine::save`] gives the whole state
//! as bytes for the caller's (encrypted) store, [`Engine::restore`] takes it back.
//!
//! Keys: an Olm account (vodozemac) whose identity and fallback (pre)key are published in the
//! author's signed [`KeyBundle`], with an HPKE seal key; pairwise Olm sessions with each peer;
//! one outbound Megolm session per conversation, rotated after every removal or key update,
//! and the peers' inbound Megolm sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ed25519_dalek::SigningKey;
use rkyv::{Archive, Deserialize, Serialize};
use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
    MegolmMessage, SessionConfig as MegolmConfig, SessionKey,
};
use vodozemac::olm::{
    Account, AccountPickle, OlmMessage, Session, SessionConfig as OlmConfig, SessionPickle,
};
use vodozemac::Curve25519PublicKey;
use xaeroflux_event::{
    ArchivedKeyBundle, Draft, EventRef, Identity, KeyBundle, Kind, Topic, VerifiedEvent,
    KEY_BUNDLE_VERSION,
};
use zeroize::Zeroizing;

use crate::membership::{Action, Group, Inserted, OpBody, Seen, SendCheck, SignedOp, MAX_SEEN};
use crate::show::{Hex, Len};
use crate::wire::{
    self, coarse, conversation_tag, day_of, open_conversation, seal_conversation, seal_pairwise,
    Control, ConvoSealed, MessageBody, Pairwise, PairwiseBody, SealKey, WireError,
};
use crate::{Author, ConvoId, OpId};

/// Largest text of one message, in bytes.
pub const TEXT_MAX: usize = 16 * 1024;
/// Controls for conversations this engine does not know yet (a session key that arrived
/// before its invitation), kept until the invitation comes; the oldest go first.
pub const ORPHANS_MAX: usize = 4096;
/// Controls held per author while its key bundle has not arrived.
pub const HELD_MAX: usize = 1024;
/// How far back [`Engine::drain_rescan`] looks, in days.
pub const RESCAN_DAYS: u64 = 400;
/// Largest group: members, the author included.
pub const MEMBERS_MAX: usize = 1000;
/// Format version of [`Engine::save`].
const STATE_VERSION: u8 = 1;
const DIRECT_CONTEXT: &str = "xaeroflux direct conversation v1";

/// What became of an envelope handed to [`Engine::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Taken: it was for this author and changed something.
    Accepted(Vec<Change>),
    /// For this author, but it needs something that has not arrived: keep the envelope and
    /// offer it again once something else was accepted.
    Pending(Waiting),
    /// Not for this author (or for a conversation it is not in). A relay keeps it for others.
    Ignored,
    /// For this author, but refused. Nothing already held changed.
    Rejected(Rejection),
    /// Already taken.
    Duplicate,
}

/// A change an accepted envelope made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A message to read (shown once the membership operations it depends on are known).
    Message {
        /// The conversation.
        convo: ConvoId,
        /// The message's id.
        id: [u8; 32],
    },
    /// This author was added to a group.
    Invited {
        /// The group.
        convo: ConvoId,
    },
    /// A direct conversation was started by its other member.
    Direct {
        /// The conversation.
        convo: ConvoId,
        /// The other member.
        peer: Author,
    },
    /// Membership operations were applied.
    Membership {
        /// The group.
        convo: ConvoId,
    },
    /// This author was removed from a group.
    Removed {
        /// The group.
        convo: ConvoId,
    },
    /// A membership operation was refused: its signature, its encoding or its conversation is
    /// wrong. Nothing changed for it.
    Refused {
        /// The conversation.
        convo: ConvoId,
        /// Why.
        reason: String,
    },
    /// A member's sender key (or new prekeys) arrived.
    Keys {
        /// The conversation, if the keys are for one.
        convo: Option<ConvoId>,
        /// The member.
        from: Author,
    },
}

/// What a pending envelope waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// The sender's key bundle.
    KeyBundle(Author),
    /// The sender's Megolm session key for the conversation.
    SessionKey(ConvoId),
}

/// Why an envelope meant for this author was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Its tag is one of ours but it does not open: changed or truncated on the way.
    #[error("tampered: {0}")]
    Tampered(WireError),
    /// It opened, but what is inside is not well formed.
    #[error("malformed: {0}")]
    Malformed(WireError),
    /// A signature, MAC or ratchet check failed: not from who it claims.
    #[error("forged: {0}")]
    Forged(String),
    /// A message already read, in another envelope.
    #[error("replayed message")]
    Replay,
    /// Its sender is not a member where the message says it was written.
    #[error("sender {} is not a member", hex8(.0))]
    NotMember(Author),
    /// Its sender was removed, and the removal did not see it.
    #[error("sender {} was removed", hex8(.0))]
    RemovedSender(Author),
    /// Not an envelope event.
    #[error("not an envelope")]
    NotAnEnvelope,
}

fn hex8(a: &Author) -> String {
    a[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an action failed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvoError {
    /// No conversation with this id.
    #[error("no such conversation")]
    UnknownConversation,
    /// The action needs the author's key bundle, which has not arrived. Fix: sync with a peer
    /// that has it, or ask them to publish one (any node of theirs does on start).
    #[error(
        "no key bundle for {}: sync with a peer that has it (an author publishes one with its \
         first conversation command)",
        hex8(.0)
    )]
    NoKeyBundle(Author),
    /// This author is not (or no longer) a member.
    #[error("not a member of this conversation")]
    NotMember,
    /// Only admins add and remove, and only more junior members are removed.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A direct conversation has exactly two members.
    #[error("a direct conversation cannot change members")]
    Direct,
    /// The text is empty or too long.
    #[error("text of {0} bytes (1 to {TEXT_MAX})")]
    Text(usize),
    /// The group would exceed [`MEMBERS_MAX`].
    #[error("a group has at most {MEMBERS_MAX} members")]
    TooManyMembers,
    /// A cryptographic step failed (randomness, a session).
    #[error("crypto: {0}")]
    Crypto(String),
    /// The saved state does not decode.
    #[error("saved conversation state is damaged: {0}")]
    State(String),
}

/// Why a key bundle event was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The event is not a key bundle.
    #[error("not a key bundle event")]
    NotABundle,
    /// Its payload does not decode, or its keys are not usable.
    #[error("malformed key bundle: {0}")]
    Malformed(String),
}

/// A conversation as listed. `Debug` shows the name's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct ConvoInfo {
    /// Its id.
    pub id: ConvoId,
    /// The group's name; empty for a direct conversation.
    pub name: String,
    /// The other member of a direct conversation.
    pub direct: Option<Author>,
    /// The current members (this author included while it is one).
    pub members: Vec<Author>,
    /// The admins among them.
    pub admins: Vec<Author>,
    /// Whether this author is a member.
    pub member: bool,
    /// Messages readable.
    pub messages: usize,
}

/// A message as read. `Debug` shows the text's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id: a hash of the sender's session and message index.
    pub id: [u8; 32],
    /// The conversation.
    pub convo: ConvoId,
    /// Who wrote it.
    pub author: Author,
    /// The sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for ConvoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvoInfo")
            .field("id", &Hex(&self.id))
            .field("name", &Len(self.name.len()))
            .field("direct", &self.direct.as_ref().map(Hex))
            .field("members", &self.members.len())
            .field("admins", &self.admins.len())
            .field("member", &self.member)
            .field("messages", &self.messages)
            .finish()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &Hex(&self.id))
            .field("convo", &Hex(&self.convo))
            .field("author", &Hex(&self.author))
            .field("sent_at", &self.sent_at)
            .field("text", &Len(self.text.len()))
            .finish()
    }
}

struct PeerKeys {
    identity: [u8; 32],
    prekey: [u8; 32],
    seal: [u8; 32],
    /// The bundle event's time, to keep the newest.
    at: u64,
}

struct Channel {
    session: Session,
    id: String,
    /// The peer's prekey when the session was made: a session made before the peer's last key
    /// update is not used to send (post-compromise security for them).
    peer_prekey: [u8; 32],
    /// This engine's key epoch when the session was made: likewise for this author.
    epoch: u64,
    /// Last use, for picking the most recent session.
    active: u64,
}

struct Outbound {
    session: GroupSession,
    shared_with: BTreeSet<Author>,
}

struct Inbound {
    author: Author,
    session: InboundGroupSession,
}

#[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq)]
struct StoredMessage {
    id: [u8; 32],
    author: Author,
    session: [u8; 32],
    index: u32,
    deps: Vec<OpId>,
    sent_at: u64,
    text: String,
}

enum Membership {
    Group(Box<Group>),
    Direct { peer: Author },
}

struct Convo {
    id: ConvoId,
    membership: Membership,
    /// Direct conversations: the tag secrets of both members (each sends under its own).
    direct_tags: Vec<[u8; 32]>,
    my_direct_tag: Option<[u8; 32]>,
    outbound: Option<Outbound>,
    /// Rotate the outbound session before the next message (after a removal or an update).
    stale: bool,
    inbound: HashMap<[u8; 32], Inbound>,
    messages: Vec<StoredMessage>,
    seen: HashSet<([u8; 32], u32)>,
    removed: bool,
}

impl Convo {
    fn new(id: ConvoId, membership: Membership) -> Convo {
        Convo {
            id,
            membership,
            direct_tags: Vec::new(),
            my_direct_tag: None,
            outbound: None,
            stale: false,
            inbound: HashMap::new(),
            messages: Vec::new(),
            seen: HashSet::new(),
            removed: false,
        }
    }

    fn group(&self) -> Option<&Group> {
        match &self.membership {
            Membership::Group(g) => Some(g),
            Membership::Direct { .. } => None,
        }
    }

    fn members(&self, me: &Author) -> Vec<Author> {
        match &self.membership {
            Membership::Group(g) => g.members().into_keys().collect(),
            Membership::Direct { peer } => {
                let mut v = vec![*me, *peer];
                v.sort();
                v
            }
        }
    }

    fn is_member(&self, who: &Author, me: &Author) -> bool {
        match &self.membership {
            Membership::Group(g) => g.is_member(who),
            Membership::Direct { peer } => who == peer || who == me,
        }
    }

    fn tag_secrets(&self) -> Vec<[u8; 32]> {
        match &self.membership {
            Membership::Group(g) => g.tag_secrets(),
            Membership::Direct { .. } => self.direct_tags.clone(),
        }
    }

    fn send_secret(&self) -> Option<[u8; 32]> {
        match &self.membership {
            Membership::Group(g) => g.current_tag_secret(),
            Membership::Direct { .. } => self.my_direct_tag,
        }
    }

    fn message_check(&self, m: &StoredMessage, me: &Author) -> SendCheck {
        match &self.membership {
            Membership::Group(g) => match g.may_send(&m.author, &m.deps) {
                // Strong removal for messages: void unless every removal that did not see the
                // message's past read it (its session, below the index it had reached).
                SendCheck::RemovedConcurrently => {
                    let covered = g.removals_unseen(&m.author, &m.deps).iter().all(|r| {
                        g.body(r).is_some_and(|b| {
                            b.seen
                                .iter()
                                .any(|s| s.session == m.session && m.index < s.next)
                        })
                    });
                    if covered {
                        SendCheck::Valid
                    } else {
                        SendCheck::RemovedConcurrently
                    }
                }
                other => other,
            },
            Membership::Direct { peer } => {
                if (&m.author == peer || &m.author == me) && m.deps.is_empty() {
                    SendCheck::Valid
                } else {
                    SendCheck::NotMember
                }
            }
        }
    }
}

/// One author's private conversations. See the module documentation.
pub struct Engine {
    me: Author,
    signer: SigningKey,
    account: Account,
    prekey: [u8; 32],
    /// Current seal key first, then the previous one (envelopes in flight).
    seal: Vec<SealKey>,
    epoch: u64,
    peers: HashMap<Author, PeerKeys>,
    channels: HashMap<Author, Vec<Channel>>,
    convos: BTreeMap<ConvoId, Convo>,
    orphans: Vec<(Author, Control)>,
    taken: HashSet<[u8; 32]>,
    counter: u64,
    /// Tag secrets learned since the last [`Engine::drain_rescan`], with the time they were
    /// first used: envelopes under them may have been ignored before they were known.
    rescan: Vec<([u8; 32], u64)>,
    /// Controls for authors whose key bundle has not arrived, sealed when it does (the oldest
    /// dropped beyond [`HELD_MAX`] per author).
    held: BTreeMap<Author, Vec<Control>>,
    /// Controls to send, per recipient, sealed at the end of each call.
    queued: BTreeMap<Author, Vec<Control>>,
    outbox: Vec<VerifiedEvent>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("me", &Hex(&self.me))
            .field("conversations", &self.convos.len())
            .finish_non_exhaustive()
    }
}

fn random32() -> Result<[u8; 32], ConvoError> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out).map_err(|e| ConvoError::Crypto(e.to_string()))?;
    Ok(out)
}

fn b64_32(s: &str) -> Option<[u8; 32]> {
    vodozemac::base64_decode(s).ok()?.try_into().ok()
}

fn message_id(session: &[u8; 32], index: u32) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("xaeroflux conversation message v1");
    h.update(session);
    h.update(&index.to_be_bytes());
    *h.finalize().as_bytes()
}

/// The id of the direct conversation between two authors (the same on both sides).
pub fn direct_id(a: &Author, b: &Author) -> ConvoId {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = blake3::Hasher::new_derive_key(DIRECT_CONTEXT);
    h.update(lo);
    h.update(hi);
    *h.finalize().as_bytes()
}

impl Engine {
    /// A new engine for `identity`, with fresh keys. Publish [`Engine::key_bundle`] so that
    /// others can start conversations with this author.
    pub fn new(identity: &Identity) -> Result<Engine, ConvoError> {
        let mut account = Account::new();
        account.generate_fallback_key();
        let prekey = account
            .fallback_key()
            .into_values()
            .next()
            .ok_or_else(|| ConvoError::Crypto("no fallback key".into()))?
            .to_bytes();
        account.mark_keys_as_published();
        let seal = SealKey::generate().map_err(|e| ConvoError::Crypto(e.to_string()))?;
        Ok(Engine::with_parts(identity, account, prekey, vec![seal], 0))
    }

    fn with_parts(
        identity: &Identity,
        account: Account,
        prekey: [u8; 32],
        seal: Vec<SealKey>,
        epoch: u64,
    ) -> Engine {
        let seed = Zeroizing::new(identity.seed());
        Engine {
            me: identity.public_key().0,
            signer: SigningKey::from_bytes(&seed),
            account,
            prekey,
            seal,
            epoch,
            peers: HashMap::new(),
            channels: HashMap::new(),
            convos: BTreeMap::new(),
            orphans: Vec::new(),
            taken: HashSet::new(),
            counter: 0,
            rescan: Vec::new(),
            held: BTreeMap::new(),
            queued: BTreeMap::new(),
            outbox: Vec::new(),
        }
    }

    /// This author.
    pub fn me(&self) -> Author {
        self.me
    }

    /// This author's current key bundle, as an event signed by `identity` (which must be this
    /// engine's author) at `now_ms`.
    pub fn key_bundle(&self, identity: &Identity, now_ms: u64) -> VerifiedEvent {
        let bundle = KeyBundle {
            version: KEY_BUNDLE_VERSION,
            identity: self.account.curve25519_key().to_bytes(),
            prekey: self.prekey,
            seal: self.seal.first().map(SealKey::public).unwrap_or_default(),
        };
        identity.sign(&Draft::key_bundle(now_ms, &bundle))
    }

    /// Takes a peer's key bundle event (verified by the caller). `Ok(true)` if it is newer
    /// than the one held; this author's own bundles are skipped.
    pub fn learn_bundle(&mut self, event: EventRef<'_>, now_ms: u64) -> Result<bool, BundleError> {
        if event.kind() != Kind::KEY_BUNDLE {
            return Err(BundleError::NotABundle);
        }
        let author = event.author().0;
        if author == self.me {
            return Ok(false);
        }
        let bundle = event
            .payload_as::<ArchivedKeyBundle>()
            .map_err(|e| BundleError::Malformed(e.to_string()))?;
        if bundle.version != KEY_BUNDLE_VERSION {
            return Err(BundleError::Malformed(format!(
                "version {}",
                bundle.version
            )));
        }
        let at = event.created_at();
        if self.peers.get(&author).is_some_and(|p| p.at >= at) {
            return Ok(false);
        }
        self.peers.insert(
            author,
            PeerKeys {
                identity: bundle.identity,
                prekey: bundle.prekey,
                seal: bundle.seal,
                at,
            },
        );
        // What was held back for want of this bundle goes out now.
        if let Some(held) = self.held.remove(&author) {
            self.queued.entry(author).or_default().extend(held);
            self.flush(now_ms);
        }
        Ok(true)
    }

    /// Whether this engine holds a key bundle for `author`.
    pub fn knows(&self, author: &Author) -> bool {
        self.peers.contains_key(author)
    }

    /// Envelope events to publish, from every call since the last drain.
    pub fn drain_outbox(&mut self) -> Vec<VerifiedEvent> {
        std::mem::take(&mut self.outbox)
    }

    /// Tags to look for among envelopes already held: those of tag secrets learned since the
    /// last call, for every day from the secret's first use to `now_ms` (plus one day of clock
    /// skew), at most [`RESCAN_DAYS`] days back. Envelopes under them were ignored when they
    /// arrived before their secret; offer them again.
    pub fn drain_rescan(&mut self, now_ms: u64) -> Vec<[u8; 32]> {
        let today = day_of(now_ms);
        let mut tags = Vec::new();
        for (secret, since) in std::mem::take(&mut self.rescan) {
            let first = day_of(since)
                .saturating_sub(1)
                .max(today.saturating_sub(RESCAN_DAYS));
            for day in first..=today + 1 {
                tags.push(conversation_tag(&secret, day));
            }
        }
        tags
    }

    // ----- conversations -----

    /// Creates a group named `name` with this author as its only member and admin.
    pub fn create_group(&mut self, name: &str, now_ms: u64) -> Result<ConvoId, ConvoError> {
        let convo = random32()?;
        let body = OpBody {
            convo,
            author: self.me,
            deps: Vec::new(),
            seen: Vec::new(),
            created_at: now_ms,
            action: Action::Create {
                name: name.to_string(),
            },
            tag_secret: Some(random32()?),
        };
        let genesis = SignedOp::sign(&body, &self.signer);
        let group = Group::new(genesis).map_err(|e| ConvoError::State(e.to_string()))?;
        self.convos
            .insert(convo, Convo::new(convo, Membership::Group(Box::new(group))));
        Ok(convo)
    }

    /// Adds `members` to a group (as admins if `admin`): each gets an invitation with the
    /// group's operations; the other members get the operations.
    pub fn add(
        &mut self,
        convo: &ConvoId,
        members: &[Author],
        admin: bool,
        now_ms: u64,
    ) -> Result<Vec<OpId>, ConvoError> {
        let me = self.me;
        {
            let g = self.my_group(convo)?;
            if !g.is_admin(&me) {
                return Err(ConvoError::NotAllowed("only admins add members"));
            }
            if let Some(m) = members
                .iter()
                .find(|m| !self.peers.contains_key(*m) && **m != me)
            {
                return Err(ConvoError::NoKeyBundle(*m));
            }
            if g.members().len() + members.len() > MEMBERS_MAX {
                return Err(ConvoError::TooManyMembers);
            }
        }
        let mut ids = Vec::new();
        for m in members {
            if *m == me {
                continue;
            }
            let op = self.author_op(convo, Action::Add { member: *m, admin }, None, now_ms)?;
            ids.push(op.id());
            let c = self
                .convos
                .get(convo)
                .ok_or(ConvoError::UnknownConversation)?;
            let Some(g) = c.group() else { continue };
            let others: Vec<Author> = g
                .members()
                .into_keys()
                .filter(|a| *a != me && a != m)
                .collect();
            let welcome = Control::Welcome {
                convo: *convo,
                ops: g.ops(),
            };
            self.queue(*m, welcome);
            self.announce(convo, &op, others);
        }
        self.flush(now_ms);
        Ok(ids)
    }

    /// Removes `members` from a group. Every member rotates its sender key before its next
    /// message, so the removed cannot read what follows once each sender has seen the removal.
    pub fn remove(
        &mut self,
        convo: &ConvoId,
        members: &[Author],
        now_ms: u64,
    ) -> Result<Vec<OpId>, ConvoError> {
        let me = self.me;
        {
            let roles = self.my_group(convo)?.members();
            let mine = roles.get(&me).copied();
            for m in members {
                let Some(role) = roles.get(m) else { continue };
                let allowed = match mine {
                    Some(r) if r.admin && *m != me => !role.admin || role.rank > r.rank,
                    _ => false,
                };
                if !allowed {
                    return Err(ConvoError::NotAllowed(
                        "only admins remove, and only members or more junior admins",
                    ));
                }
            }
        }
        let mut ids = Vec::new();
        for m in members {
            let is_member = self.convos.get(convo).is_some_and(|c| c.is_member(m, &me));
            if !is_member {
                continue;
            }
            let op = self.author_op(
                convo,
                Action::Remove { member: *m },
                Some(random32()?),
                now_ms,
            )?;
            ids.push(op.id());
            let remaining = self.others(convo);
            self.announce(convo, &op, remaining);
            self.queue(
                *m,
                Control::Removed {
                    convo: *convo,
                    op: op.id(),
                },
            );
        }
        if let Some(c) = self.convos.get_mut(convo) {
            c.stale = true;
        }
        self.flush(now_ms);
        Ok(ids)
    }

    /// Leaves a group.
    pub fn leave(&mut self, convo: &ConvoId, now_ms: u64) -> Result<OpId, ConvoError> {
        self.my_group(convo)?;
        let others = self.others(convo);
        let op = self.author_op(convo, Action::Leave, None, now_ms)?;
        self.announce(convo, &op, others);
        if let Some(c) = self.convos.get_mut(convo) {
            c.outbound = None;
        }
        self.flush(now_ms);
        Ok(op.id())
    }

    /// Renews this author's keys after a suspected compromise of its state: a new seal key and
    /// prekey (sent to every peer in a conversation, and in a new key bundle that the caller
    /// publishes), new Olm sessions for everything sent from now on, a new sender key and tag
    /// secret in every conversation, and an update operation that makes every other member
    /// rotate its sender key too. See `docs/privacy.md` for what this restores.
    pub fn update(&mut self, identity: &Identity, now_ms: u64) -> Result<(), ConvoError> {
        self.account.generate_fallback_key();
        let prekey = self
            .account
            .fallback_key()
            .into_values()
            .next()
            .ok_or_else(|| ConvoError::Crypto("no fallback key".into()))?
            .to_bytes();
        self.account.mark_keys_as_published();
        let seal = SealKey::generate().map_err(|e| ConvoError::Crypto(e.to_string()))?;
        self.prekey = prekey;
        self.seal.insert(0, seal);
        self.seal.truncate(2);
        self.epoch += 1;
        let ids: Vec<ConvoId> = self.convos.keys().copied().collect();
        let mut peers = BTreeSet::new();
        for id in ids {
            let me = self.me;
            let Some(c) = self.convos.get(&id) else {
                continue;
            };
            if !c.is_member(&me, &me) || c.removed {
                continue;
            }
            let others = self.others(&id);
            peers.extend(others.iter().copied());
            if matches!(c.membership, Membership::Group(_)) {
                let op = self.author_op(&id, Action::Update, Some(random32()?), now_ms)?;
                self.announce(&id, &op, others);
            } else {
                let secret = random32()?;
                if let Some(c) = self.convos.get_mut(&id) {
                    c.my_direct_tag = Some(secret);
                    c.direct_tags.push(secret);
                }
                for o in others {
                    self.queue(
                        o,
                        Control::DirectTag {
                            convo: id,
                            secret,
                            since: now_ms,
                        },
                    );
                }
            }
            if let Some(c) = self.convos.get_mut(&id) {
                c.stale = true;
            }
        }
        // The new keys go first in each pairwise message, so the peer holds them before it
        // answers the update.
        for p in peers {
            let keys = self.keys_control();
            self.queued.entry(p).or_default().insert(0, keys);
        }
        self.outbox.push(self.key_bundle(identity, now_ms));
        self.flush(now_ms);
        Ok(())
    }

    fn keys_control(&self) -> Control {
        Control::Keys {
            prekey: self.prekey,
            seal: self.seal.first().map(SealKey::public).unwrap_or_default(),
        }
    }

    /// Sends `text` to a conversation.
    pub fn send(
        &mut self,
        convo: &ConvoId,
        text: &str,
        now_ms: u64,
    ) -> Result<[u8; 32], ConvoError> {
        if text.is_empty() || text.len() > TEXT_MAX {
            return Err(ConvoError::Text(text.len()));
        }
        let me = self.me;
        let (recipients, deps) = {
            let c = self
                .convos
                .get(convo)
                .ok_or(ConvoError::UnknownConversation)?;
            if !c.is_member(&me, &me) || c.removed {
                return Err(ConvoError::NotMember);
            }
            let deps = c.group().map(Group::heads).unwrap_or_default();
            (self.others(convo), deps)
        };
        // Rotate when stale, share with every member not holding the current session.
        let c = self
            .convos
            .get_mut(convo)
            .ok_or(ConvoError::UnknownConversation)?;
        if c.stale || c.outbound.is_none() {
            c.outbound = Some(Outbound {
                session: GroupSession::new(MegolmConfig::version_1()),
                shared_with: BTreeSet::new(),
            });
            c.stale = false;
        }
        let Some(out) = c.outbound.as_mut() else {
            return Err(ConvoError::Crypto("no outbound session".into()));
        };
        let session_id = b64_32(&out.session.session_id())
            .ok_or_else(|| ConvoError::Crypto("session id".into()))?;
        let key = out.session.session_key().to_bytes();
        // A member whose key bundle has not arrived gets the key (from this message on) when
        // it does: `flush` holds what cannot be sealed yet.
        let need: Vec<Author> = recipients
            .iter()
            .filter(|r| !out.shared_with.contains(*r))
            .copied()
            .collect();
        out.shared_with.extend(need.iter().copied());
        let body = MessageBody {
            convo: *convo,
            deps: deps.clone(),
            sent_at: now_ms,
            text: text.to_string(),
        };
        let plain = wire::encode(&body);
        let megolm = out.session.encrypt(plain.as_slice());
        let index = megolm.message_index();
        let sealed = ConvoSealed {
            convo: *convo,
            session: session_id,
            megolm: megolm.to_bytes(),
        };
        let secret = c
            .send_secret()
            .ok_or_else(|| ConvoError::State("conversation has no tag secret".into()))?;
        // Our own message is read back from the state like anyone's.
        let id = message_id(&session_id, index);
        c.seen.insert((session_id, index));
        c.messages.push(StoredMessage {
            id,
            author: me,
            session: session_id,
            index,
            deps,
            sent_at: now_ms,
            text: text.to_string(),
        });
        let key = Zeroizing::new(key);
        for r in need {
            self.queue(
                r,
                Control::SessionKey {
                    convo: *convo,
                    key: key.to_vec(),
                },
            );
        }
        // Session keys go out before the message that needs them.
        self.flush(now_ms);
        let t = coarse(now_ms);
        let (tag, payload) = seal_conversation(&secret, t, &wire::encode(&sealed))
            .map_err(|e| ConvoError::Crypto(e.to_string()))?;
        self.push_envelope(tag, t, payload)?;
        Ok(id)
    }

    /// Sends `text` to `peer` in the direct conversation between the two (started if new).
    pub fn dm(&mut self, peer: &Author, text: &str, now_ms: u64) -> Result<ConvoId, ConvoError> {
        if *peer == self.me {
            return Err(ConvoError::NotAllowed(
                "a direct conversation needs another author",
            ));
        }
        if !self.peers.contains_key(peer) {
            return Err(ConvoError::NoKeyBundle(*peer));
        }
        let id = self.ensure_direct(peer, now_ms)?;
        self.send(&id, text, now_ms)?;
        Ok(id)
    }

    fn ensure_direct(&mut self, peer: &Author, now_ms: u64) -> Result<ConvoId, ConvoError> {
        let id = direct_id(&self.me, peer);
        self.convos
            .entry(id)
            .or_insert_with(|| Convo::new(id, Membership::Direct { peer: *peer }));
        let needs_tag = self
            .convos
            .get(&id)
            .is_some_and(|c| c.my_direct_tag.is_none());
        if needs_tag {
            let secret = random32()?;
            if let Some(c) = self.convos.get_mut(&id) {
                c.my_direct_tag = Some(secret);
                c.direct_tags.push(secret);
            }
            self.queue(
                *peer,
                Control::DirectTag {
                    convo: id,
                    secret,
                    since: now_ms,
                },
            );
        }
        Ok(id)
    }

    /// The conversations this author knows, direct and group.
    pub fn conversations(&self) -> Vec<ConvoInfo> {
        self.convos
            .values()
            .map(|c| {
                let (name, direct, admins) = match &c.membership {
                    Membership::Group(g) => (
                        g.name().to_string(),
                        None,
                        g.members()
                            .into_iter()
                            .filter(|(_, r)| r.admin)
                            .map(|(a, _)| a)
                            .collect(),
                    ),
                    Membership::Direct { peer } => (String::new(), Some(*peer), Vec::new()),
                };
                ConvoInfo {
                    id: c.id,
                    name,
                    direct,
                    members: c.members(&self.me),
                    admins,
                    member: c.is_member(&self.me, &self.me) && !c.removed,
                    messages: c
                        .messages
                        .iter()
                        .filter(|m| c.message_check(m, &self.me) == SendCheck::Valid)
                        .count(),
                }
            })
            .collect()
    }

    /// The readable messages of a conversation, oldest first (sender's time, then id). A
    /// message is readable once the operations it depends on are known, if its sender was a
    /// member where it was written and no removal of the sender missed it.
    pub fn messages(&self, convo: &ConvoId) -> Result<Vec<Message>, ConvoError> {
        let c = self
            .convos
            .get(convo)
            .ok_or(ConvoError::UnknownConversation)?;
        let mut out: Vec<Message> = c
            .messages
            .iter()
            .filter(|m| c.message_check(m, &self.me) == SendCheck::Valid)
            .map(|m| Message {
                id: m.id,
                convo: c.id,
                author: m.author,
                sent_at: m.sent_at,
                text: m.text.clone(),
            })
            .collect();
        out.sort_by_key(|m| (m.sent_at, m.id));
        Ok(out)
    }

    /// This engine's secrets, for tests that search files and traffic for them: the seal key
    /// seeds, every tag secret, and the current Megolm session keys. Not for anything else.
    #[doc(hidden)]
    pub fn secret_material(&self) -> Vec<Zeroizing<Vec<u8>>> {
        let mut out: Vec<Zeroizing<Vec<u8>>> = self
            .seal
            .iter()
            .map(|k| Zeroizing::new(k.seed().to_vec()))
            .collect();
        for c in self.convos.values() {
            out.extend(c.tag_secrets().iter().map(|s| Zeroizing::new(s.to_vec())));
            if let Some(o) = &c.outbound {
                out.push(Zeroizing::new(o.session.session_key().to_bytes()));
            }
        }
        out
    }

    /// The current members of a conversation (this author included while it is one).
    pub fn members(&self, convo: &ConvoId) -> Result<Vec<Author>, ConvoError> {
        let c = self
            .convos
            .get(convo)
            .ok_or(ConvoError::UnknownConversation)?;
        Ok(c.members(&self.me))
    }

    /// The membership of a group, for inspection.
    pub fn group(&self, convo: &ConvoId) -> Option<&Group> {
        self.convos.get(convo).and_then(Convo::group)
    }

    /// The group `convo`, if this author is a member of it.
    fn my_group(&self, convo: &ConvoId) -> Result<&Group, ConvoError> {
        let c = self
            .convos
            .get(convo)
            .ok_or(ConvoError::UnknownConversation)?;
        let g = c.group().ok_or(ConvoError::Direct)?;
        if g.is_member(&self.me) {
            Ok(g)
        } else {
            Err(ConvoError::NotMember)
        }
    }

    /// Queues `op` to each of `to`.
    fn announce(&mut self, convo: &ConvoId, op: &SignedOp, to: Vec<Author>) {
        for o in to {
            self.queue(
                o,
                Control::Ops {
                    convo: *convo,
                    ops: vec![op.clone()],
                },
            );
        }
    }

    fn others(&self, convo: &ConvoId) -> Vec<Author> {
        self.convos
            .get(convo)
            .map(|c| {
                c.members(&self.me)
                    .into_iter()
                    .filter(|a| *a != self.me)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn author_op(
        &mut self,
        convo: &ConvoId,
        action: Action,
        tag_secret: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<SignedOp, ConvoError> {
        let c = self
            .convos
            .get_mut(convo)
            .ok_or(ConvoError::UnknownConversation)?;
        // A removal keeps readable what its author read of the removed member; a leave, what
        // its author wrote.
        let seen = match &action {
            Action::Remove { member } => seen_of(&c.messages, member),
            Action::Leave => seen_of(&c.messages, &self.me),
            _ => Vec::new(),
        };
        let Membership::Group(g) = &mut c.membership else {
            return Err(ConvoError::Direct);
        };
        let body = OpBody {
            convo: *convo,
            author: self.me,
            deps: g.heads(),
            seen,
            created_at: now_ms,
            action,
            tag_secret,
        };
        let op = SignedOp::sign(&body, &self.signer);
        g.insert(op.clone())
            .map_err(|e| ConvoError::State(e.to_string()))?;
        Ok(op)
    }

    // ----- sealing -----

    fn queue(&mut self, to: Author, control: Control) {
        self.queued.entry(to).or_default().push(control);
    }

    fn push_envelope(&mut self, tag: [u8; 32], t: u64, payload: Vec<u8>) -> Result<(), ConvoError> {
        // A one-time author key: the envelope names no one.
        let one_time = Identity::generate().map_err(|e| ConvoError::Crypto(e.to_string()))?;
        let event = one_time.sign(&Draft::envelope(t, Topic(tag), payload));
        self.taken.insert(event.id().0);
        self.outbox.push(event);
        Ok(())
    }

    /// Seals every queued control: one pairwise envelope per recipient (more if large).
    fn flush(&mut self, now_ms: u64) {
        let queued = std::mem::take(&mut self.queued);
        for (to, controls) in queued {
            if !self.peers.contains_key(&to) {
                let held = self.held.entry(to).or_default();
                held.extend(controls);
                let over = held.len().saturating_sub(HELD_MAX);
                held.drain(..over);
                continue;
            }
            let mut batch: Vec<Control> = Vec::new();
            let mut size = 0usize;
            for control in controls {
                let n = wire::encode(&control).len();
                if !batch.is_empty() && size + n > wire::PLAINTEXT_MAX / 2 {
                    let _ = self.seal_to(&to, std::mem::take(&mut batch), now_ms);
                    size = 0;
                }
                size += n;
                batch.push(control);
            }
            if !batch.is_empty() {
                let _ = self.seal_to(&to, batch, now_ms);
            }
        }
    }

    fn seal_to(
        &mut self,
        to: &Author,
        controls: Vec<Control>,
        now_ms: u64,
    ) -> Result<(), ConvoError> {
        let peer = self.peers.get(to).ok_or(ConvoError::NoKeyBundle(*to))?;
        let (identity, prekey, seal) = (peer.identity, peer.prekey, peer.seal);
        let plain = wire::encode(&PairwiseBody { controls });
        self.counter += 1;
        let counter = self.counter;
        let epoch = self.epoch;
        let list = self.channels.entry(*to).or_default();
        let usable = list
            .iter_mut()
            .filter(|c| c.peer_prekey == prekey && c.epoch == epoch)
            .max_by_key(|c| c.active);
        let channel = match usable {
            Some(c) => c,
            None => {
                let session = self
                    .account
                    .create_outbound_session(
                        OlmConfig::version_1(),
                        Curve25519PublicKey::from_bytes(identity),
                        Curve25519PublicKey::from_bytes(prekey),
                    )
                    .map_err(|e| ConvoError::Crypto(e.to_string()))?;
                let id = session.session_id();
                list.push(Channel {
                    session,
                    id,
                    peer_prekey: prekey,
                    epoch,
                    active: counter,
                });
                list.last_mut()
                    .ok_or_else(|| ConvoError::Crypto("channel".into()))?
            }
        };
        channel.active = counter;
        let message = channel
            .session
            .encrypt(plain.as_slice())
            .map_err(|e| ConvoError::Crypto(e.to_string()))?;
        let (olm_type, olm) = message.to_parts();
        let sealed = wire::encode(&Pairwise {
            sender: self.me,
            olm_type: olm_type as u8,
            olm,
        });
        let tag = random32()?;
        let t = coarse(now_ms);
        let payload = seal_pairwise(&seal, &tag, t, &sealed)
            .map_err(|e| ConvoError::Crypto(e.to_string()))?;
        self.push_envelope(tag, t, payload)
    }

    // ----- receiving -----

    /// Takes one envelope event (verified by the caller). See [`Outcome`].
    pub fn receive(&mut self, event: EventRef<'_>, now_ms: u64) -> Outcome {
        if event.kind() != Kind::ENVELOPE {
            return Outcome::Rejected(Rejection::NotAnEnvelope);
        }
        let id = event.id().0;
        if self.taken.contains(&id) {
            return Outcome::Duplicate;
        }
        let tag = event.topic().0;
        let t = event.created_at();
        let outcome = match self.match_tag(&tag, t) {
            Some((convo, secret)) => {
                self.receive_conversation(&convo, &secret, &tag, t, event.payload())
            }
            None => self.receive_pairwise(&tag, t, event.payload(), now_ms),
        };
        if matches!(outcome, Outcome::Accepted(_) | Outcome::Rejected(_)) {
            self.taken.insert(id);
        }
        self.flush(now_ms);
        outcome
    }

    fn match_tag(&self, tag: &[u8; 32], t: u64) -> Option<(ConvoId, [u8; 32])> {
        let day = day_of(t);
        self.convos.values().find_map(|c| {
            c.tag_secrets()
                .into_iter()
                .find(|s| conversation_tag(s, day) == *tag)
                .map(|s| (c.id, s))
        })
    }

    fn receive_conversation(
        &mut self,
        convo: &ConvoId,
        secret: &[u8; 32],
        tag: &[u8; 32],
        t: u64,
        payload: &[u8],
    ) -> Outcome {
        let plain = match open_conversation(secret, tag, t, payload) {
            Ok(p) => p,
            Err(e @ WireError::BadPadding) => return Outcome::Rejected(Rejection::Malformed(e)),
            Err(e) => return Outcome::Rejected(Rejection::Tampered(e)),
        };
        let sealed: ConvoSealed = match wire::decode(&plain, "conversation envelope") {
            Ok(s) => s,
            Err(e) => return Outcome::Rejected(Rejection::Malformed(e)),
        };
        if sealed.convo != *convo {
            return Outcome::Rejected(Rejection::Forged(
                "conversation id does not match its tag".into(),
            ));
        }
        let me = self.me;
        let Some(c) = self.convos.get_mut(convo) else {
            return Outcome::Ignored;
        };
        let Some(inbound) = c.inbound.get_mut(&sealed.session) else {
            return Outcome::Pending(Waiting::SessionKey(*convo));
        };
        let megolm = match MegolmMessage::from_bytes(&sealed.megolm) {
            Ok(m) => m,
            Err(_) => {
                return Outcome::Rejected(Rejection::Malformed(WireError::Malformed(
                    "Megolm message",
                )))
            }
        };
        let decrypted = match inbound.session.decrypt(&megolm) {
            Ok(d) => d,
            Err(e) => return Outcome::Rejected(Rejection::Forged(e.to_string())),
        };
        let author = inbound.author;
        let index = decrypted.message_index;
        let plaintext = Zeroizing::new(decrypted.plaintext);
        let body: MessageBody = match wire::decode(&plaintext, "message") {
            Ok(b) => b,
            Err(e) => return Outcome::Rejected(Rejection::Malformed(e)),
        };
        if body.convo != *convo {
            return Outcome::Rejected(Rejection::Forged(
                "message names another conversation".into(),
            ));
        }
        if body.text.len() > TEXT_MAX {
            return Outcome::Rejected(Rejection::Malformed(WireError::TooLarge {
                got: body.text.len(),
            }));
        }
        if !c.seen.insert((sealed.session, index)) {
            return Outcome::Rejected(Rejection::Replay);
        }
        let stored = StoredMessage {
            id: message_id(&sealed.session, index),
            author,
            session: sealed.session,
            index,
            deps: body.deps,
            sent_at: body.sent_at,
            text: body.text,
        };
        match c.message_check(&stored, &me) {
            SendCheck::NotMember => return Outcome::Rejected(Rejection::NotMember(author)),
            SendCheck::RemovedConcurrently => {
                return Outcome::Rejected(Rejection::RemovedSender(author))
            }
            // Valid, or waiting for operations: kept, and shown once they arrive.
            _ => {}
        }
        let id = stored.id;
        c.messages.push(stored);
        Outcome::Accepted(vec![Change::Message { convo: *convo, id }])
    }

    fn receive_pairwise(&mut self, tag: &[u8; 32], t: u64, payload: &[u8], now_ms: u64) -> Outcome {
        let opened = self.seal.iter().find_map(|k| k.open(tag, t, payload).ok());
        let Some(opened) = opened else {
            return Outcome::Ignored;
        };
        let sealed: Pairwise = match wire::decode(&opened, "pairwise envelope") {
            Ok(s) => s,
            Err(e) => return Outcome::Rejected(Rejection::Malformed(e)),
        };
        let sender = sealed.sender;
        let Some(peer) = self.peers.get(&sender) else {
            return Outcome::Pending(Waiting::KeyBundle(sender));
        };
        let (identity, prekey) = (peer.identity, peer.prekey);
        let message = match OlmMessage::from_parts(usize::from(sealed.olm_type), &sealed.olm) {
            Ok(m) => m,
            Err(_) => {
                return Outcome::Rejected(Rejection::Malformed(WireError::Malformed("Olm message")))
            }
        };
        self.counter += 1;
        let counter = self.counter;
        let epoch = self.epoch;
        let list = self.channels.entry(sender).or_default();
        let plain = match &message {
            OlmMessage::PreKey(pre) => {
                if pre.identity_key().to_bytes() != identity {
                    return Outcome::Rejected(Rejection::Forged(
                        "pre-key message from another identity key than the sender's bundle".into(),
                    ));
                }
                let sid = pre.session_id();
                if let Some(ch) = list.iter_mut().find(|c| c.id == sid) {
                    match ch.session.decrypt(&message) {
                        Ok(p) => {
                            ch.active = counter;
                            p
                        }
                        Err(e) => return Outcome::Rejected(Rejection::Forged(e.to_string())),
                    }
                } else {
                    match self.account.create_inbound_session(
                        OlmConfig::version_1(),
                        Curve25519PublicKey::from_bytes(identity),
                        pre,
                    ) {
                        Ok(r) => {
                            list.push(Channel {
                                id: r.session.session_id(),
                                session: r.session,
                                peer_prekey: prekey,
                                epoch,
                                active: counter,
                            });
                            r.plaintext
                        }
                        Err(e) => return Outcome::Rejected(Rejection::Forged(e.to_string())),
                    }
                }
            }
            OlmMessage::Normal(_) => {
                list.sort_by_key(|c| std::cmp::Reverse(c.active));
                let mut found = None;
                for ch in list.iter_mut() {
                    if let Ok(p) = ch.session.decrypt(&message) {
                        ch.active = counter;
                        found = Some(p);
                        break;
                    }
                }
                match found {
                    Some(p) => p,
                    None => {
                        return Outcome::Rejected(Rejection::Forged(
                            "no Olm session opens it".into(),
                        ))
                    }
                }
            }
        };
        let plain = Zeroizing::new(plain);
        let body: PairwiseBody = match wire::decode(&plain, "pairwise message") {
            Ok(b) => b,
            Err(e) => return Outcome::Rejected(Rejection::Malformed(e)),
        };
        let mut changes = Vec::new();
        for control in body.controls {
            self.apply_control(sender, control, now_ms, &mut changes);
        }
        // An envelope that brought nothing but refused operations is a forgery.
        if let Some(Change::Refused { reason, .. }) = changes.first() {
            if changes.iter().all(|c| matches!(c, Change::Refused { .. })) {
                return Outcome::Rejected(Rejection::Forged(format!(
                    "membership operation: {reason}"
                )));
            }
        }
        Outcome::Accepted(changes)
    }

    fn apply_control(
        &mut self,
        sender: Author,
        control: Control,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) {
        let me = self.me;
        match control {
            Control::Keys { prekey, seal } => {
                if let Some(p) = self.peers.get_mut(&sender) {
                    if p.prekey != prekey || p.seal != seal {
                        p.prekey = prekey;
                        p.seal = seal;
                        changes.push(Change::Keys {
                            convo: None,
                            from: sender,
                        });
                    }
                }
            }
            Control::DirectTag {
                convo,
                secret,
                since,
            } => {
                if convo != direct_id(&me, &sender) {
                    return;
                }
                let new = !self.convos.contains_key(&convo);
                if new {
                    self.convos.insert(
                        convo,
                        Convo::new(convo, Membership::Direct { peer: sender }),
                    );
                    changes.push(Change::Direct {
                        convo,
                        peer: sender,
                    });
                }
                if let Some(c) = self.convos.get_mut(&convo) {
                    if !c.direct_tags.contains(&secret) {
                        c.direct_tags.push(secret);
                        self.rescan.push((secret, since));
                    }
                }
                if new {
                    self.replay_orphans(&convo, now_ms, changes);
                }
            }
            Control::SessionKey { convo, key } => {
                let Some(c) = self.convos.get_mut(&convo) else {
                    self.orphan(sender, Control::SessionKey { convo, key });
                    return;
                };
                // A sender not (yet) a member in what this author knows may be added by an
                // operation still on its way: the key is kept, and its messages are checked
                // against the membership when read.
                let Ok(key) = SessionKey::from_bytes(&key) else {
                    return;
                };
                let session = InboundGroupSession::new(&key, MegolmConfig::version_1());
                let Some(sid) = b64_32(&session.session_id()) else {
                    return;
                };
                // A session belongs to whoever shared it first: a second share is a repeat, or
                // a member claiming another's session, and is dropped either way.
                if c.inbound.contains_key(&sid) {
                    return;
                }
                c.inbound.insert(
                    sid,
                    Inbound {
                        author: sender,
                        session,
                    },
                );
                changes.push(Change::Keys {
                    convo: Some(convo),
                    from: sender,
                });
            }
            Control::Welcome { convo, ops } => {
                if !self.convos.contains_key(&convo) {
                    let Some(genesis) = ops
                        .iter()
                        .find(|op| {
                            op.open().is_ok_and(|b| {
                                b.deps.is_empty()
                                    && b.convo == convo
                                    && matches!(b.action, Action::Create { .. })
                            })
                        })
                        .cloned()
                    else {
                        changes.push(Change::Refused {
                            convo,
                            reason: "an invitation without the group's creation".into(),
                        });
                        return;
                    };
                    let group = match Group::from_ops(genesis, ops) {
                        Ok(g) => g,
                        Err(e) => {
                            changes.push(Change::Refused {
                                convo,
                                reason: e.to_string(),
                            });
                            return;
                        }
                    };
                    let secrets = group_secrets(&group, &group.ids());
                    self.rescan.extend(secrets);
                    self.convos
                        .insert(convo, Convo::new(convo, Membership::Group(Box::new(group))));
                    changes.push(Change::Invited { convo });
                    self.replay_orphans(&convo, now_ms, changes);
                } else {
                    self.apply_ops(&convo, ops, changes);
                }
            }
            Control::Ops { convo, ops } => {
                if !self.convos.contains_key(&convo) {
                    self.orphan(sender, Control::Ops { convo, ops });
                    return;
                }
                self.apply_ops(&convo, ops, changes);
            }
            Control::Removed { convo, .. } => {
                // Advisory: the removal itself (which carries the new tag secret) is not sent to
                // the removed member. Believed only from a member of the group.
                if let Some(c) = self.convos.get_mut(&convo) {
                    if c.is_member(&sender, &me) && c.group().is_some() {
                        c.removed = true;
                        c.outbound = None;
                        changes.push(Change::Removed { convo });
                    }
                }
            }
        }
    }

    fn orphan(&mut self, sender: Author, control: Control) {
        if self.orphans.len() >= ORPHANS_MAX {
            self.orphans.remove(0);
        }
        self.orphans.push((sender, control));
    }

    fn replay_orphans(&mut self, convo: &ConvoId, now_ms: u64, changes: &mut Vec<Change>) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|(_, c)| control_convo(c) == Some(*convo));
        self.orphans = rest;
        for (sender, control) in mine {
            self.apply_control(sender, control, now_ms, changes);
        }
    }

    fn apply_ops(&mut self, convo: &ConvoId, ops: Vec<SignedOp>, changes: &mut Vec<Change>) {
        let me = self.me;
        let Some(c) = self.convos.get_mut(convo) else {
            return;
        };
        let Membership::Group(g) = &mut c.membership else {
            return;
        };
        let before = g.members();
        let was_member = g.is_member(&me);
        let mut applied: Vec<OpId> = Vec::new();
        for op in ops {
            match g.insert(op) {
                Ok(Inserted::Applied(ids)) => applied.extend(ids),
                Ok(_) => {}
                Err(e) => changes.push(Change::Refused {
                    convo: *convo,
                    reason: e.to_string(),
                }),
            }
        }
        if applied.is_empty() {
            return;
        }
        let after = g.members();
        let secrets = group_secrets(g, &applied);
        let lost_someone = before.keys().any(|a| !after.contains_key(a));
        let updated = applied.iter().any(|id| {
            g.op_valid(id) == Some(true)
                && g.body(id)
                    .is_some_and(|b| matches!(b.action, Action::Update) && b.author != me)
        });
        // Members this author added, and the operations they may lack: the newly applied ones
        // that are not in the past of their addition (the invitation had everything before),
        // except their own.
        let mut forward: Vec<(Author, Vec<SignedOp>)> = Vec::new();
        for add in g.ids() {
            let Some(Action::Add { member, .. }) =
                g.body(&add).filter(|b| b.author == me).map(|b| &b.action)
            else {
                continue;
            };
            if !after.contains_key(member) {
                continue;
            }
            let lacking: Vec<SignedOp> = applied
                .iter()
                .filter(|o| **o != add && !g.ancestors_contains(&add, o))
                .filter(|o| g.body(o).is_some_and(|b| b.author != *member))
                .filter_map(|o| g.op(o).cloned())
                .collect();
            if !lacking.is_empty() {
                forward.push((*member, lacking));
            }
        }
        let is_member = g.is_member(&me);
        if lost_someone || updated {
            c.stale = true;
        }
        changes.push(Change::Membership { convo: *convo });
        if !was_member && is_member {
            c.removed = false;
            changes.push(Change::Invited { convo: *convo });
        }
        if was_member && !is_member {
            c.removed = true;
            c.outbound = None;
            changes.push(Change::Removed { convo: *convo });
        }
        self.rescan.extend(secrets);
        for (member, ops) in forward {
            self.queue(member, Control::Ops { convo: *convo, ops });
        }
    }

    // ----- state -----

    /// The whole state, to keep in the caller's encrypted store. It holds secrets: keep it
    /// only where the data key protects it.
    pub fn save(&self) -> Result<Zeroizing<Vec<u8>>, ConvoError> {
        let json = |r: Result<Vec<u8>, serde_json::Error>| {
            r.map(Zeroizing::new)
                .map_err(|e| ConvoError::State(e.to_string()))
        };
        let account = json(serde_json::to_vec(&self.account.pickle()))?;
        let mut channels = Vec::new();
        for (peer, list) in &self.channels {
            for ch in list {
                channels.push(SavedChannel {
                    peer: *peer,
                    pickle: json(serde_json::to_vec(&ch.session.pickle()))?.to_vec(),
                    id: ch.id.clone(),
                    peer_prekey: ch.peer_prekey,
                    epoch: ch.epoch,
                    active: ch.active,
                });
            }
        }
        let mut convos = Vec::new();
        for c in self.convos.values() {
            let mut inbound = Vec::new();
            for (sid, i) in &c.inbound {
                inbound.push(SavedInbound {
                    session: *sid,
                    author: i.author,
                    pickle: json(serde_json::to_vec(&i.session.pickle()))?.to_vec(),
                });
            }
            let outbound = match &c.outbound {
                Some(o) => Some(SavedOutbound {
                    pickle: json(serde_json::to_vec(&o.session.pickle()))?.to_vec(),
                    shared_with: o.shared_with.iter().copied().collect(),
                }),
                None => None,
            };
            let (peer, ops) = match &c.membership {
                Membership::Group(g) => (None, g.ops()),
                Membership::Direct { peer } => (Some(*peer), Vec::new()),
            };
            convos.push(SavedConvo {
                id: c.id,
                peer,
                ops,
                direct_tags: c.direct_tags.clone(),
                my_direct_tag: c.my_direct_tag,
                outbound,
                stale: c.stale,
                inbound,
                messages: c.messages.clone(),
                removed: c.removed,
            });
        }
        let state = SavedState {
            version: STATE_VERSION,
            account: account.to_vec(),
            prekey: self.prekey,
            seal: self.seal.iter().map(|k| *k.seed()).collect(),
            epoch: self.epoch,
            peers: self
                .peers
                .iter()
                .map(|(a, p)| SavedPeer {
                    author: *a,
                    identity: p.identity,
                    prekey: p.prekey,
                    seal: p.seal,
                    at: p.at,
                })
                .collect(),
            channels,
            convos,
            orphans: self
                .orphans
                .iter()
                .map(|(a, c)| SavedOrphan {
                    sender: *a,
                    control: c.clone(),
                })
                .collect(),
            taken: self.taken.iter().copied().collect(),
            counter: self.counter,
            rescan: self.rescan.clone(),
            held: self
                .held
                .iter()
                .flat_map(|(a, cs)| {
                    cs.iter().map(|c| SavedOrphan {
                        sender: *a,
                        control: c.clone(),
                    })
                })
                .collect(),
        };
        Ok(wire::encode(&state))
    }

    /// An engine from [`Engine::save`]'s bytes, for `identity` (the same author).
    pub fn restore(identity: &Identity, bytes: &[u8]) -> Result<Engine, ConvoError> {
        let state: SavedState = wire::decode(bytes, "conversation state")
            .map_err(|e| ConvoError::State(e.to_string()))?;
        let state = Zeroizing::new(state);
        if state.version != STATE_VERSION {
            return Err(ConvoError::State(format!(
                "state version {}",
                state.version
            )));
        }
        let bad = |e: serde_json::Error| ConvoError::State(e.to_string());
        let account: AccountPickle = serde_json::from_slice(&state.account).map_err(bad)?;
        let seal = state
            .seal
            .iter()
            .map(|s| SealKey::from_seed(Zeroizing::new(*s)))
            .collect();
        let mut engine = Engine::with_parts(
            identity,
            Account::from_pickle(account),
            state.prekey,
            seal,
            state.epoch,
        );
        for p in &state.peers {
            engine.peers.insert(
                p.author,
                PeerKeys {
                    identity: p.identity,
                    prekey: p.prekey,
                    seal: p.seal,
                    at: p.at,
                },
            );
        }
        for ch in &state.channels {
            let pickle: SessionPickle = serde_json::from_slice(&ch.pickle).map_err(bad)?;
            engine.channels.entry(ch.peer).or_default().push(Channel {
                session: Session::from_pickle(pickle),
                id: ch.id.clone(),
                peer_prekey: ch.peer_prekey,
                epoch: ch.epoch,
                active: ch.active,
            });
        }
        for sc in &state.convos {
            let membership = match sc.peer {
                Some(peer) => Membership::Direct { peer },
                None => {
                    let genesis = sc
                        .ops
                        .first()
                        .cloned()
                        .ok_or_else(|| ConvoError::State("group without operations".into()))?;
                    let group = Group::from_ops(genesis, sc.ops.clone())
                        .map_err(|e| ConvoError::State(e.to_string()))?;
                    Membership::Group(Box::new(group))
                }
            };
            let mut c = Convo::new(sc.id, membership);
            c.direct_tags = sc.direct_tags.clone();
            c.my_direct_tag = sc.my_direct_tag;
            c.stale = sc.stale;
            c.removed = sc.removed;
            if let Some(o) = &sc.outbound {
                let pickle: GroupSessionPickle = serde_json::from_slice(&o.pickle).map_err(bad)?;
                c.outbound = Some(Outbound {
                    session: GroupSession::from_pickle(pickle),
                    shared_with: o.shared_with.iter().copied().collect(),
                });
            }
            for i in &sc.inbound {
                let pickle: InboundGroupSessionPickle =
                    serde_json::from_slice(&i.pickle).map_err(bad)?;
                c.inbound.insert(
                    i.session,
                    Inbound {
                        author: i.author,
                        session: InboundGroupSession::from_pickle(pickle),
                    },
                );
            }
            for m in &sc.messages {
                c.seen.insert((m.session, m.index));
            }
            c.messages = sc.messages.clone();
            engine.convos.insert(sc.id, c);
        }
        engine.orphans = state
            .orphans
            .iter()
            .map(|o| (o.sender, o.control.clone()))
            .collect();
        engine.taken = state.taken.iter().copied().collect();
        engine.counter = state.counter;
        engine.rescan = state.rescan.clone();
        for h in &state.held {
            engine
                .held
                .entry(h.sender)
                .or_default()
                .push(h.control.clone());
        }
        Ok(engine)
    }
}

/// How far each of `author`'s sessions was read in `messages`: the newest [`MAX_SEEN`] sessions
/// (by their latest message).
fn seen_of(messages: &[StoredMessage], author: &Author) -> Vec<Seen> {
    let mut by_session: BTreeMap<[u8; 32], (u64, u32)> = BTreeMap::new();
    for m in messages.iter().filter(|m| &m.author == author) {
        let e = by_session.entry(m.session).or_insert((0, 0));
        e.0 = e.0.max(m.sent_at);
        e.1 = e.1.max(m.index.saturating_add(1));
    }
    let mut list: Vec<(u64, Seen)> = by_session
        .into_iter()
        .map(|(session, (at, next))| (at, Seen { session, next }))
        .collect();
    list.sort_by_key(|(at, s)| (std::cmp::Reverse(*at), s.session));
    list.truncate(MAX_SEEN);
    list.into_iter().map(|(_, s)| s).collect()
}

/// The valid tag secrets brought by the operations `ids` of a group, each with the time of its
/// operation.
fn group_secrets(g: &Group, ids: &[OpId]) -> Vec<([u8; 32], u64)> {
    let valid: HashSet<[u8; 32]> = g.tag_secrets().into_iter().collect();
    ids.iter()
        .filter_map(|id| {
            let b = g.body(id)?;
            let s = b.tag_secret?;
            valid.contains(&s).then_some((s, b.created_at))
        })
        .collect()
}

fn control_convo(c: &Control) -> Option<ConvoId> {
    match c {
        Control::Welcome { convo, .. }
        | Control::Ops { convo, .. }
        | Control::SessionKey { convo, .. }
        | Control::DirectTag { convo, .. }
        | Control::Removed { convo, .. } => Some(*convo),
        Control::Keys { .. } => None,
    }
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedState {
    version: u8,
    account: Vec<u8>,
    prekey: [u8; 32],
    seal: Vec<[u8; 32]>,
    epoch: u64,
    peers: Vec<SavedPeer>,
    channels: Vec<SavedChannel>,
    convos: Vec<SavedConvo>,
    orphans: Vec<SavedOrphan>,
    taken: Vec<[u8; 32]>,
    counter: u64,
    rescan: Vec<([u8; 32], u64)>,
    held: Vec<SavedOrphan>,
}

impl zeroize::Zeroize for SavedState {
    fn zeroize(&mut self) {
        self.account.zeroize();
        self.seal.zeroize();
        self.rescan.zeroize();
        for c in &mut self.channels {
            c.pickle.zeroize();
        }
        for c in &mut self.convos {
            c.direct_tags.zeroize();
            if let Some(o) = &mut c.outbound {
                o.pickle.zeroize();
            }
            for i in &mut c.inbound {
                i.pickle.zeroize();
            }
        }
        for o in self.orphans.iter_mut().chain(self.held.iter_mut()) {
            wipe(&mut o.control);
        }
    }
}

/// Wipes the secrets a control carries.
fn wipe(c: &mut Control) {
    use zeroize::Zeroize;
    match c {
        Control::SessionKey { key, .. } => key.zeroize(),
        Control::DirectTag { secret, .. } => secret.zeroize(),
        Control::Welcome { ops, .. } | Control::Ops { ops, .. } => {
            for op in ops {
                op.body.zeroize();
            }
        }
        Control::Keys { .. } | Control::Removed { .. } => {}
    }
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedPeer {
    author: Author,
    identity: [u8; 32],
    prekey: [u8; 32],
    seal: [u8; 32],
    at: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedChannel {
    peer: Author,
    pickle: Vec<u8>,
    id: String,
    peer_prekey: [u8; 32],
    epoch: u64,
    active: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedInbound {
    session: [u8; 32],
    author: Author,
    pickle: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedOutbound {
    pickle: Vec<u8>,
    shared_with: Vec<Author>,
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedConvo {
    id: ConvoId,
    peer: Option<Author>,
    ops: Vec<SignedOp>,
    direct_tags: Vec<[u8; 32]>,
    my_direct_tag: Option<[u8; 32]>,
    outbound: Option<SavedOutbound>,
    stale: bool,
    inbound: Vec<SavedInbound>,
    messages: Vec<StoredMessage>,
    removed: bool,
}

#[derive(Archive, Serialize, Deserialize)]
struct SavedOrphan {
    sender: Author,
    control: Control,
}
