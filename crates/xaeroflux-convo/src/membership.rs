//! Group membership as a CRDT over a DAG of signed membership operations.
//!
//! A group has no server and no total order. Each membership change is a [`SignedOp`]: an
//! [`OpBody`] archived with rkyv and signed by its author with ed25519. An op names the ops its
//! author had seen last (its `deps`), so the ops form a DAG rooted at the group's genesis op (a
//! [`Action::Create`]). Ops arrive in any order and more than once; a [`Group`] holds back an op
//! until all its deps have arrived, and its state is a deterministic function of the *set* of
//! ops it holds, so every member holding the same ops sees the same members. The ops travel
//! inside the conversation's encrypted channels; this module only signs, verifies, tracks
//! dependencies and applies the rules below.
//!
//! # Ops
//!
//! An op's id is `blake3::derive_key("xaeroflux convo op v1", body)` over its archived body,
//! and its signature is an ed25519 signature by `body.author` over that id, checked with
//! `verify_strict`. [`SignedOp::open`] also checks that the deps are sorted and unique, that
//! there are at most [`MAX_DEPS`] of them, that a group name has at most [`MAX_NAME_BYTES`]
//! bytes and that the body has at most [`MAX_OP_BYTES`] bytes. [`Group::insert`] further
//! rejects ops of another conversation, any Create other than the genesis, and non-Create ops
//! without deps (such an op could never be valid: its past is empty).
//!
//! # Rules
//!
//! Let S be the set of applied ops. An op is applied only once all its deps are applied, so S
//! is causally closed. `past(o)` is the set of strict ancestors of `o` (its transitive deps).
//! Two distinct ops are *concurrent* if neither is in the other's past.
//!
//! **Linearization** `L(T)` of a causally closed set T: Kahn's algorithm, repeatedly taking,
//! among the ops whose deps have all been taken, the one with the smallest [`OpId`] (byte
//! order). Positions in `L(T)` are 0-based. The order of two ops in `L(T)` is the same in
//! `L(T')` for every causally closed `T' ⊇ T`, so ranks (below) compare the same way in every
//! such set.
//!
//! **Causal validity** of an op `o` depends only on `past(o)`, so it is computed once, when `o`
//! is applied. Let `P = state(past(o))` (the full rules applied to the set `past(o)`) and `a`
//! the author of `o`:
//! - `Create`: `o` is the genesis (no other Create is ever accepted).
//! - `Add { member: m, .. }`: `a` is an admin in P and `m ≠ a`.
//! - `Remove { member: m }`: `a` is an admin in P, `m` is a member in P, `m ≠ a`, and `m` is
//!   not an admin or `m`'s rank is greater (more junior) than `a`'s.
//! - `Leave`: `a` is a member in P.
//! - `Update`: `a` is a member in P.
//!
//! A **removal of X** is a causally valid op that is `Remove { member: X }`, or a `Leave`
//! authored by X.
//!
//! **state(T)** of a causally closed set T folds over `L(T)` with a map from authors to
//! [`Role`]s, starting empty. For each op `o` at position `i`, authored by `a`:
//! 1. skip `o` if it is not causally valid;
//! 2. *strong removal*: skip `o` if T holds a removal of `a` concurrent with `o` (the ops of a
//!    removed member that the remover had not seen are void, including removals by `a`, so a
//!    removed admin cannot retaliate by backdating);
//! 3. *remove wins*: skip an `Add { member: m, .. }` if T holds a removal of `m` concurrent
//!    with it;
//! 4. apply `o`:
//!    - `Create` makes `{a: Role { admin: true, rank: i }}` the members;
//!    - `Add { member: m, admin }` inserts `m` with `Role { admin, rank: i }` if `m` is absent,
//!      and if `m` is present, not an admin, and `admin` is set, makes `m` an admin with rank
//!      `i`;
//!    - `Remove { member: m }` deletes `m`;
//!    - `Leave` deletes `a`;
//!    - `Update` changes nothing.
//!
//! An op is **valid** ([`Group::op_valid`]) if the fold of `state(S)` does not skip it. The
//! group's members are those of `state(S)`. The envelope-tag secrets of the conversation are
//! those carried by valid ops, in the order of `L(S)`; the current one is the last.
//!
//! **Application messages** ([`Group::may_send`]): a message written by `author` having seen
//! the op heads `deps` is valid if all of `deps` are applied, `author` is a member of
//! `state(D)` where D is `deps` and all their ancestors, and S holds no removal of `author`
//! outside D (a removal the message's author had not seen).
//!
//! Seniority is a position in the linearization and only a more senior admin may remove an
//! admin, so two admins can never validly remove each other and the rules have no cycles.
//!
//! # Costs
//!
//! Every applied op gets a dense local index and a bitset of its ancestors, so an ancestry test
//! is O(1), and authors get dense indices too. `L(S)` is kept up to date: a new op goes after
//! its last ancestor, before the first later op with a greater id. So `L(T)` for any causally
//! closed T is `L(S)` filtered by T's bitset, and applying an op, which computes
//! `state(past(o))`, costs O(n) for n applied ops (plus O(deps · n/64) for its bitset). The
//! state of S is computed on first use after a change and cached. The bitsets take about
//! n²/16 bytes for n applied ops: half a MiB for 3,000 ops, but hundreds of MiB near
//! [`MAX_OPS`], which is a hard cap rather than a size to plan for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::OnceLock;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::show::{Hex, Redacted};
use crate::{Author, ConvoId, OpId};

/// Most ops (applied and pending together) one [`Group`] holds; beyond it inserts fail with
/// [`OpError::TooManyOps`].
pub const MAX_OPS: usize = 10_000;
/// Most ops one [`Group`] holds back while their deps are missing; beyond it inserts of ops
/// with missing deps fail with [`OpError::TooManyOps`].
pub const MAX_PENDING: usize = 2_000;
/// Most deps one op may name.
pub const MAX_DEPS: usize = 64;
/// Longest group name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest archived op body, in bytes. Bodies within the other limits are far smaller.
pub const MAX_OP_BYTES: usize = 16 * 1024;

/// The BLAKE3 key-derivation context of op ids.
const OP_ID_CONTEXT: &str = "xaeroflux convo op v1";

pub use action::{Action, ArchivedAction};

// rkyv derives a resolver enum whose variant fields carry no docs; keeping the enum in its
// own module scopes the allowance to it.
#[allow(missing_docs)]
mod action {
    use crate::Author;

    /// What a membership op does.
    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
    pub enum Action {
        /// Creates the group; only its genesis op may be a Create.
        Create {
            /// The group's name, at most [`MAX_NAME_BYTES`](super::MAX_NAME_BYTES) bytes.
            name: String,
        },
        /// Adds a member, or makes a member an admin.
        Add {
            /// The member added.
            member: Author,
            /// Whether the member is (or becomes) an admin.
            admin: bool,
        },
        /// Removes a member.
        Remove {
            /// The member removed.
            member: Author,
        },
        /// The author leaves the group.
        Leave,
        /// Changes no membership; carries a new tag secret (a key update).
        Update,
    }
}

/// How far a member's Megolm session had been read: its messages with an index below
/// `next` were seen. A removal lists them for the member it removes (and a leave for its
/// author), so that messages the removal saw stay readable and later ones do not.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The session's id (its Ed25519 public key).
    pub session: [u8; 32],
    /// One past the highest message index seen.
    pub next: u32,
}

/// Most [`Seen`] entries one op carries.
pub const MAX_SEEN: usize = 200;

/// The signed content of a membership op.
///
/// `Debug` does not show [`OpBody::tag_secret`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, PartialEq, Eq)]
pub struct OpBody {
    /// The conversation the op belongs to.
    pub convo: ConvoId,
    /// The op's author; must be the signer.
    pub author: Author,
    /// The ops the author had seen last (its heads), sorted and unique.
    pub deps: Vec<OpId>,
    /// For a `Remove`, the removed member's sessions as far as the author had read them; for a
    /// `Leave`, the author's own. Empty otherwise. At most [`MAX_SEEN`].
    pub seen: Vec<Seen>,
    /// The author's clock when writing the op. Informational: the rules do not use it, so a
    /// backdated or future time changes nothing.
    pub created_at: u64,
    /// What the op does.
    pub action: Action,
    /// A new envelope-tag secret for the conversation, introduced by Create, Remove, Leave or
    /// Update ops. Secret material.
    pub tag_secret: Option<[u8; 32]>,
}

impl fmt::Debug for OpBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpBody")
            .field("convo", &Hex(&self.convo))
            .field("author", &Hex(&self.author))
            .field("deps", &self.deps.iter().map(Hex).collect::<Vec<_>>())
            .field("seen", &self.seen.len())
            .field("created_at", &self.created_at)
            .field("action", &self.action)
            .field("tag_secret", &self.tag_secret.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// A membership op as it travels: an archived [`OpBody`] and its author's signature over the
/// op's id.
///
/// `Debug` shows the id and the body's length, not the body (which may carry a tag secret).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// The rkyv archive of the [`OpBody`].
    pub body: Vec<u8>,
    /// The author's ed25519 signature over [`SignedOp::id`].
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOp")
            .field("id", &Hex(&self.id()))
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why an op was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The body is not a valid archive of an [`OpBody`]. (The validator's own message is not
    /// kept: it names memory addresses, which must not leave the process and differ between
    /// runs.)
    #[error("membership op is not a valid archive")]
    Malformed,
    /// The body is larger than [`MAX_OP_BYTES`].
    #[error("membership op body has {len} bytes, more than {MAX_OP_BYTES}")]
    TooLarge {
        /// The body's length.
        len: usize,
    },
    /// The op names more than [`MAX_DEPS`] deps.
    #[error("membership op has {count} deps, more than {MAX_DEPS}")]
    TooManyDeps {
        /// How many deps the op names.
        count: usize,
    },
    /// The op lists more than [`MAX_SEEN`] sessions.
    #[error("membership op lists {count} sessions, more than {MAX_SEEN}")]
    TooManySeen {
        /// How many it lists.
        count: usize,
    },
    /// The deps are not sorted in increasing byte order without repeats.
    #[error("membership op deps are not sorted and unique")]
    UnsortedDeps,
    /// The group name is longer than [`MAX_NAME_BYTES`].
    #[error("group name has {len} bytes, more than {MAX_NAME_BYTES}")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The author is not a valid ed25519 public key.
    #[error("membership op author is not a valid public key")]
    InvalidAuthor,
    /// The signature is not the author's signature over the op id.
    #[error("membership op signature is invalid")]
    BadSignature,
    /// The op belongs to another conversation.
    #[error("membership op belongs to another conversation")]
    WrongConversation,
    /// The op given as a genesis is not a Create without deps.
    #[error("a group's genesis must be a Create op without deps")]
    NotGenesis,
    /// A Create op other than the group's genesis.
    #[error("a group has a single Create op, its genesis")]
    SecondCreate,
    /// A non-Create op without deps.
    #[error("membership op other than the genesis has no deps")]
    NoDeps,
    /// The group holds [`MAX_OPS`] ops, or [`MAX_PENDING`] ops waiting for deps.
    #[error("group holds too many membership ops")]
    TooManyOps,
}

impl SignedOp {
    /// Signs `body` with `key`.
    ///
    /// Signs a normalised copy: its deps sorted and deduplicated, and its author set to `key`'s
    /// public key (whatever `body.author` was). Other limits ([`MAX_DEPS`], [`MAX_NAME_BYTES`])
    /// are not checked here: an op breaking them is signed as given and refused by
    /// [`SignedOp::open`] and [`Group::insert`]. A body that cannot be archived at all (only
    /// possible for gigabytes of name) is signed as an empty body, which `open` refuses as
    /// malformed.
    pub fn sign(body: &OpBody, key: &SigningKey) -> SignedOp {
        let mut body = body.clone();
        body.author = key.verifying_key().to_bytes();
        body.deps.sort_unstable();
        body.deps.dedup();
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&body)
            .map(|b| b.into_vec())
            .unwrap_or_default();
        let id = op_id(&bytes);
        SignedOp {
            body: bytes,
            signature: key.sign(&id).to_bytes(),
        }
    }

    /// The op's id: a domain-separated BLAKE3 hash of its archived body.
    pub fn id(&self) -> OpId {
        op_id(&self.body)
    }

    /// Decodes and checks the op: a valid archive of at most [`MAX_OP_BYTES`] bytes, deps
    /// sorted and unique and at most [`MAX_DEPS`], a name of at most [`MAX_NAME_BYTES`] bytes,
    /// and a valid signature by `body.author` over the id (`verify_strict`).
    pub fn open(&self) -> Result<OpBody, OpError> {
        if self.body.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge {
                len: self.body.len(),
            });
        }
        let body = rkyv::from_bytes::<OpBody, rkyv::rancor::Error>(&self.body)
            .map_err(|_| OpError::Malformed)?;
        if body.deps.len() > MAX_DEPS {
            return Err(OpError::TooManyDeps {
                count: body.deps.len(),
            });
        }
        if body.seen.len() > MAX_SEEN {
            return Err(OpError::TooManySeen {
                count: body.seen.len(),
            });
        }
        if body.deps.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(OpError::UnsortedDeps);
        }
        if let Action::Create { name } = &body.action {
            if name.len() > MAX_NAME_BYTES {
                return Err(OpError::NameTooLong { len: name.len() });
            }
        }
        let key = VerifyingKey::from_bytes(&body.author).map_err(|_| OpError::InvalidAuthor)?;
        key.verify_strict(&self.id(), &Signature::from_bytes(&self.signature))
            .map_err(|_| OpError::BadSignature)?;
        Ok(body)
    }
}

fn op_id(body: &[u8]) -> OpId {
    blake3::derive_key(OP_ID_CONTEXT, body)
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Role {
    /// Whether the member is an admin.
    pub admin: bool,
    /// Seniority: the position, in the linearization, of the op that added the member (or made
    /// it an admin). Lower is more senior. Positions shift as ops arrive, but their order does
    /// not.
    pub rank: u64,
}

/// What [`Group::insert`] did with an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The op was applied, and so were these ops: the op itself first, then every held-back op
    /// it unblocked, in the order they were applied.
    Applied(Vec<OpId>),
    /// Some deps are missing: the op is held back and applied once they arrive.
    Pending,
    /// The op was already applied or held back.
    Duplicate,
}

/// Whether an application message may be accepted, from [`Group::may_send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendCheck {
    /// The author was a member in the message's past and no removal of the author is missing
    /// from it.
    Valid,
    /// The author was not a member in the message's past.
    NotMember,
    /// The group holds a removal of the author that the message's past does not contain.
    RemovedConcurrently,
    /// These deps of the message are not applied yet (sorted).
    MissingDeps(Vec<OpId>),
}

/// An applied op.
#[derive(Clone)]
struct Node {
    id: OpId,
    op: SignedOp,
    body: OpBody,
    /// The author, as an index into [`Group::authors`].
    author: usize,
    /// The member an Add or Remove names, as an index into [`Group::authors`].
    target: Option<usize>,
    /// Ancestors (strict), as a bitset over local indices, which are all smaller than this
    /// op's own.
    past: Vec<u64>,
    /// Causal validity, decided from the past alone.
    causal_valid: bool,
}

/// An op held back until its deps arrive.
#[derive(Clone)]
struct Held {
    op: SignedOp,
    body: OpBody,
    /// How many of its deps are not applied yet.
    missing: usize,
}

/// The state of all applied ops, cached until the next apply.
#[derive(Clone)]
struct Current {
    /// Validity by local index.
    valid: Vec<bool>,
    members: BTreeMap<Author, Role>,
}

/// A causally closed set of applied ops.
#[derive(Clone, Copy)]
enum Set<'a> {
    All,
    Bits(&'a [u64]),
}

impl Set<'_> {
    fn contains(self, i: usize) -> bool {
        match self {
            Set::All => true,
            Set::Bits(bits) => bit(bits, i),
        }
    }
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
}

fn set_bit(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Roles by author index: a state while folding.
type Roles = Vec<Option<Role>>;

/// The membership state of one group conversation: the applied ops, the ops held back for
/// missing deps, and the state the rules (see the module docs) give.
#[derive(Clone)]
pub struct Group {
    convo: ConvoId,
    genesis: OpId,
    name: String,
    /// Applied ops by local index, in the order they were applied.
    nodes: Vec<Node>,
    index: HashMap<OpId, usize>,
    /// `L(S)`: local indices in linear order, kept up to date on every apply.
    order: Vec<usize>,
    heads: BTreeSet<OpId>,
    /// Every author or member named by an applied op, by author index.
    authors: Vec<Author>,
    author_index: HashMap<Author, usize>,
    /// Causally valid removals of each author (by author index), as local indices.
    removals: Vec<Vec<usize>>,
    held: HashMap<OpId, Held>,
    /// For each missing dep, the held ops waiting for it.
    waiting: HashMap<OpId, Vec<OpId>>,
    current: OnceLock<Current>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("convo", &Hex(&self.convo))
            .field("genesis", &Hex(&self.genesis))
            .field("name", &self.name)
            .field("applied", &self.nodes.len())
            .field("pending", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Group {
    /// Starts a group from its genesis op: a valid Create without deps. The conversation id is
    /// the genesis's `convo`.
    pub fn new(genesis: SignedOp) -> Result<Group, OpError> {
        let id = genesis.id();
        let body = genesis.open()?;
        let Action::Create { name } = &body.action else {
            return Err(OpError::NotGenesis);
        };
        if !body.deps.is_empty() {
            return Err(OpError::NotGenesis);
        }
        let mut group = Group {
            convo: body.convo,
            genesis: id,
            name: name.clone(),
            nodes: Vec::new(),
            index: HashMap::new(),
            order: Vec::new(),
            heads: BTreeSet::new(),
            authors: Vec::new(),
            author_index: HashMap::new(),
            removals: Vec::new(),
            held: HashMap::new(),
            waiting: HashMap::new(),
            current: OnceLock::new(),
        };
        group.apply(id, genesis, body);
        Ok(group)
    }

    /// Rebuilds a group from its genesis and its other ops, given in any order (the genesis
    /// may appear among `ops` too). Ops are checked once and inserted deps first; ops whose
    /// deps are absent are held back as by [`Group::insert`]. Fails on the first op that
    /// `insert` would refuse.
    pub fn from_ops(genesis: SignedOp, ops: Vec<SignedOp>) -> Result<Group, OpError> {
        let mut group = Group::new(genesis)?;
        let mut opened: HashMap<OpId, (SignedOp, OpBody)> = HashMap::new();
        for op in ops {
            let id = op.id();
            if group.knows(&id) || opened.contains_key(&id) {
                continue;
            }
            let body = op.open()?;
            opened.insert(id, (op, body));
        }
        let mut roots: Vec<OpId> = opened.keys().copied().collect();
        roots.sort_unstable();
        let mut visited: HashSet<OpId> = HashSet::new();
        // Depth-first, deps before the ops naming them, so that little is held back.
        for root in roots {
            let mut stack = vec![(root, false)];
            while let Some((id, expanded)) = stack.pop() {
                if expanded {
                    if let Some((op, body)) = opened.remove(&id) {
                        group.insert_opened(id, op, body)?;
                    }
                    continue;
                }
                if !visited.insert(id) {
                    continue;
                }
                let Some((_, body)) = opened.get(&id) else {
                    continue;
                };
                stack.push((id, true));
                for dep in body.deps.iter().rev() {
                    if opened.contains_key(dep) && !visited.contains(dep) {
                        stack.push((*dep, false));
                    }
                }
            }
        }
        Ok(group)
    }

    /// The conversation id.
    pub fn convo(&self) -> ConvoId {
        self.convo
    }

    /// The genesis op's id.
    pub fn genesis(&self) -> OpId {
        self.genesis
    }

    /// The group's name, from its genesis.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies an op and adds it.
    ///
    /// Refuses ops that fail [`SignedOp::open`], ops of another conversation, Create ops other
    /// than the genesis, non-Create ops without deps, and ops beyond [`MAX_OPS`] or
    /// [`MAX_PENDING`]. An op already held gives [`Inserted::Duplicate`] (without checking its
    /// signature again); an op with deps not yet applied is held back ([`Inserted::Pending`])
    /// and applied as soon as they are.
    pub fn insert(&mut self, op: SignedOp) -> Result<Inserted, OpError> {
        let id = op.id();
        if self.knows(&id) {
            return Ok(Inserted::Duplicate);
        }
        let body = op.open()?;
        self.insert_opened(id, op, body)
    }

    /// Whether the op is applied (not merely held back).
    pub fn has(&self, id: &OpId) -> bool {
        self.index.contains_key(id)
    }

    /// How many ops are held back for missing deps.
    pub fn pending(&self) -> usize {
        self.held.len()
    }

    /// The deps named by held-back ops that are neither applied nor held back themselves:
    /// what to ask peers for. Sorted.
    pub fn missing(&self) -> Vec<OpId> {
        let mut missing: Vec<OpId> = self
            .waiting
            .keys()
            .filter(|id| !self.held.contains_key(*id))
            .copied()
            .collect();
        missing.sort_unstable();
        missing
    }

    /// The applied ops that no applied op names as a dep, sorted: the deps of the next op or
    /// message written here.
    pub fn heads(&self) -> Vec<OpId> {
        self.heads.iter().copied().collect()
    }

    /// The current members and their roles.
    pub fn members(&self) -> BTreeMap<Author, Role> {
        self.current().members.clone()
    }

    /// Whether `author` is a current member.
    pub fn is_member(&self, author: &Author) -> bool {
        self.current().members.contains_key(author)
    }

    /// Whether `author` is a current admin.
    pub fn is_admin(&self, author: &Author) -> bool {
        self.current()
            .members
            .get(author)
            .is_some_and(|role| role.admin)
    }

    /// Whether an applied op is valid under the rules with the ops held now (which later ops
    /// can change: a concurrent removal voids an op). `None` if the op is not applied.
    pub fn op_valid(&self, id: &OpId) -> Option<bool> {
        let i = *self.index.get(id)?;
        self.current().valid.get(i).copied()
    }

    /// Checks an application message written by `author` after seeing the op heads `deps`
    /// (see the module docs). Costs O(n) for n applied ops (a cached lookup when `deps` cover
    /// all applied ops).
    pub fn may_send(&self, author: &Author, deps: &[OpId]) -> SendCheck {
        let mut deps: Vec<OpId> = deps.to_vec();
        deps.sort_unstable();
        deps.dedup();
        let missing: Vec<OpId> = deps
            .iter()
            .filter(|d| !self.index.contains_key(*d))
            .copied()
            .collect();
        if !missing.is_empty() {
            return SendCheck::MissingDeps(missing);
        }
        // Only authors some op names can be members.
        let Some(&who) = self.author_index.get(author) else {
            return SendCheck::NotMember;
        };
        let n = self.nodes.len();
        let seen = self.closure(&deps);
        let count: usize = seen.iter().map(|w| w.count_ones() as usize).sum();
        let member = if count == n {
            self.is_member(author)
        } else {
            self.fold(Set::Bits(&seen), None)
                .get(who)
                .is_some_and(Option::is_some)
        };
        if !member {
            return SendCheck::NotMember;
        }
        let unseen_removal = self
            .removals
            .get(who)
            .is_some_and(|rs| rs.iter().any(|&r| !bit(&seen, r)));
        if unseen_removal {
            return SendCheck::RemovedConcurrently;
        }
        SendCheck::Valid
    }

    /// The removals of `author` (causally valid `Remove`s of it, and its own `Leave`s) that are
    /// not in the past of `deps` (applied deps only): the removals a message written after
    /// seeing `deps` could not know of.
    pub fn removals_unseen(&self, author: &Author, deps: &[OpId]) -> Vec<OpId> {
        let Some(&who) = self.author_index.get(author) else {
            return Vec::new();
        };
        let seen = self.closure(deps);
        self.removals
            .get(who)
            .map(|rs| {
                rs.iter()
                    .filter(|&&r| !bit(&seen, r))
                    .filter_map(|&r| self.nodes.get(r).map(|node| node.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The applied ops among `deps` and all their ancestors, as a bitset over local indices.
    fn closure(&self, deps: &[OpId]) -> Vec<u64> {
        let mut seen = vec![0u64; self.nodes.len().div_ceil(64)];
        for dep in deps {
            if let Some(&i) = self.index.get(dep) {
                set_bit(&mut seen, i);
                if let Some(node) = self.nodes.get(i) {
                    for (w, p) in seen.iter_mut().zip(&node.past) {
                        *w |= p;
                    }
                }
            }
        }
        seen
    }

    /// All applied ops in linear (hence causal) order, deps before the ops naming them: what a
    /// new member needs.
    pub fn ops(&self) -> Vec<SignedOp> {
        self.order
            .iter()
            .filter_map(|&i| self.nodes.get(i))
            .map(|node| node.op.clone())
            .collect()
    }

    /// The ids of all applied ops, in the order of [`Group::ops`], without copying the ops.
    pub fn ids(&self) -> Vec<OpId> {
        self.order
            .iter()
            .filter_map(|&i| self.nodes.get(i))
            .map(|node| node.id)
            .collect()
    }

    /// The applied op with this id.
    pub fn op(&self, id: &OpId) -> Option<&SignedOp> {
        let &i = self.index.get(id)?;
        self.nodes.get(i).map(|node| &node.op)
    }

    /// The applied ops that are neither `id` nor among its ancestors, in causal order: what a
    /// member added by op `id` is missing. All applied ops if `id` is not applied.
    pub fn ops_not_in_past_of(&self, id: &OpId) -> Vec<SignedOp> {
        let Some(&k) = self.index.get(id) else {
            return self.ops();
        };
        let Some(past) = self.nodes.get(k).map(|node| &node.past) else {
            return self.ops();
        };
        self.order
            .iter()
            .filter(|&&i| i != k && !bit(past, i))
            .filter_map(|&i| self.nodes.get(i))
            .map(|node| node.op.clone())
            .collect()
    }

    /// The tag secrets carried by valid ops, in linear order.
    pub fn tag_secrets(&self) -> Vec<[u8; 32]> {
        let current = self.current();
        self.order
            .iter()
            .filter(|&&i| current.valid.get(i).copied().unwrap_or(false))
            .filter_map(|&i| self.nodes.get(i))
            .filter_map(|node| node.body.tag_secret)
            .collect()
    }

    /// The last of [`Group::tag_secrets`]: the conversation's current tag secret.
    pub fn current_tag_secret(&self) -> Option<[u8; 32]> {
        let current = self.current();
        self.order
            .iter()
            .rev()
            .filter(|&&i| current.valid.get(i).copied().unwrap_or(false))
            .filter_map(|&i| self.nodes.get(i))
            .find_map(|node| node.body.tag_secret)
    }

    /// An applied op's body. `None` if the op is not applied.
    pub fn body(&self, id: &OpId) -> Option<&OpBody> {
        let i = *self.index.get(id)?;
        self.nodes.get(i).map(|node| &node.body)
    }

    /// Whether `ancestor` is a strict ancestor of `descendant`; false if either is not applied.
    pub fn ancestors_contains(&self, descendant: &OpId, ancestor: &OpId) -> bool {
        match (self.index.get(descendant), self.index.get(ancestor)) {
            (Some(&d), Some(&a)) => self.nodes.get(d).is_some_and(|node| bit(&node.past, a)),
            _ => false,
        }
    }

    /// Whether the op is applied or held back.
    fn knows(&self, id: &OpId) -> bool {
        self.index.contains_key(id) || self.held.contains_key(id)
    }

    /// Inserts an op already opened (signature checked).
    fn insert_opened(&mut self, id: OpId, op: SignedOp, body: OpBody) -> Result<Inserted, OpError> {
        if self.knows(&id) {
            return Ok(Inserted::Duplicate);
        }
        if body.convo != self.convo {
            return Err(OpError::WrongConversation);
        }
        if matches!(body.action, Action::Create { .. }) {
            return Err(OpError::SecondCreate);
        }
        if body.deps.is_empty() {
            return Err(OpError::NoDeps);
        }
        if self.nodes.len() + self.held.len() >= MAX_OPS {
            return Err(OpError::TooManyOps);
        }
        let missing: Vec<OpId> = body
            .deps
            .iter()
            .filter(|d| !self.index.contains_key(*d))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(Inserted::Applied(self.apply_cascade(id, op, body)));
        }
        if self.held.len() >= MAX_PENDING {
            return Err(OpError::TooManyOps);
        }
        for dep in &missing {
            self.waiting.entry(*dep).or_default().push(id);
        }
        self.held.insert(
            id,
            Held {
                op,
                body,
                missing: missing.len(),
            },
        );
        Ok(Inserted::Pending)
    }

    /// Applies an op whose deps are all applied, then every held op this unblocks.
    fn apply_cascade(&mut self, id: OpId, op: SignedOp, body: OpBody) -> Vec<OpId> {
        let mut applied = Vec::new();
        let mut queue = VecDeque::from([(id, op, body)]);
        while let Some((id, op, body)) = queue.pop_front() {
            self.apply(id, op, body);
            applied.push(id);
            let Some(waiters) = self.waiting.remove(&id) else {
                continue;
            };
            for waiter in waiters {
                let ready = match self.held.get_mut(&waiter) {
                    Some(held) => {
                        held.missing = held.missing.saturating_sub(1);
                        held.missing == 0
                    }
                    None => false,
                };
                if ready {
                    if let Some(held) = self.held.remove(&waiter) {
                        queue.push_back((waiter, held.op, held.body));
                    }
                }
            }
        }
        applied
    }

    /// The author index of `author`, adding it if new.
    fn intern(&mut self, author: Author) -> usize {
        if let Some(&i) = self.author_index.get(&author) {
            return i;
        }
        let i = self.authors.len();
        self.authors.push(author);
        self.author_index.insert(author, i);
        self.removals.push(Vec::new());
        i
    }

    /// Applies an op whose deps are all applied: indexes it, records its past, decides its
    /// causal validity and places it in the linear order.
    fn apply(&mut self, id: OpId, op: SignedOp, body: OpBody) {
        let i = self.nodes.len();
        let author = self.intern(body.author);
        let target = match &body.action {
            Action::Add { member, .. } | Action::Remove { member } => Some(self.intern(*member)),
            _ => None,
        };
        let mut past = vec![0u64; i.div_ceil(64)];
        for dep in &body.deps {
            let Some(&d) = self.index.get(dep) else {
                continue;
            };
            set_bit(&mut past, d);
            if let Some(node) = self.nodes.get(d) {
                for (w, p) in past.iter_mut().zip(&node.past) {
                    *w |= p;
                }
            }
            self.heads.remove(dep);
        }
        let causal_valid = if id == self.genesis {
            true
        } else {
            let state = self.fold(Set::Bits(&past), None);
            let role = |who: Option<usize>| state.get(who?).copied().flatten();
            let (by, named) = (role(Some(author)), role(target));
            match &body.action {
                Action::Create { .. } => false,
                Action::Add { .. } => by.is_some_and(|r| r.admin) && target != Some(author),
                Action::Remove { .. } => match (by, named) {
                    (Some(a), Some(m)) => {
                        a.admin && target != Some(author) && (!m.admin || m.rank > a.rank)
                    }
                    _ => false,
                },
                Action::Leave | Action::Update => by.is_some(),
            }
        };
        if causal_valid {
            let removed = match &body.action {
                Action::Remove { .. } => target,
                Action::Leave => Some(author),
                _ => None,
            };
            if let Some(list) = removed.and_then(|who| self.removals.get_mut(who)) {
                list.push(i);
            }
        }
        // L(S ∪ {o}) is L(S) with o placed after its last ancestor, before the first later op
        // with a greater id: until its deps are taken o is not available, and from then on
        // the smallest available op is the smaller of o and the op L(S) takes.
        let start = self
            .order
            .iter()
            .rposition(|&j| bit(&past, j))
            .map_or(0, |p| p + 1);
        let at = self
            .order
            .iter()
            .skip(start)
            .position(|&j| self.nodes.get(j).is_some_and(|node| node.id > id))
            .map_or(self.order.len(), |k| start + k);
        self.order.insert(at, i);
        self.heads.insert(id);
        self.index.insert(id, i);
        self.nodes.push(Node {
            id,
            op,
            body,
            author,
            target,
            past,
            causal_valid,
        });
        self.current = OnceLock::new();
    }

    fn current(&self) -> &Current {
        self.current.get_or_init(|| {
            let mut valid = vec![false; self.nodes.len()];
            let roles = self.fold(Set::All, Some(&mut valid));
            let members = roles
                .iter()
                .zip(&self.authors)
                .filter_map(|(role, author)| role.map(|role| (*author, role)))
                .collect();
            Current { valid, members }
        })
    }

    /// `state(T)` for the ops of `set`: folds over `L(S)` restricted to the set (which is
    /// `L(T)`), returning roles by author index and, if asked, recording by local index
    /// whether each op was applied rather than skipped.
    fn fold(&self, set: Set<'_>, mut valid: Option<&mut Vec<bool>>) -> Roles {
        let mut roles: Roles = vec![None; self.authors.len()];
        let mut position: u64 = 0;
        for &i in &self.order {
            if !set.contains(i) {
                continue;
            }
            let rank = position;
            position += 1;
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            let ok = node.causal_valid
                && !self.removed_concurrently(node.author, i, set)
                && match (&node.body.action, node.target) {
                    (Action::Add { .. }, Some(member)) => {
                        !self.removed_concurrently(member, i, set)
                    }
                    _ => true,
                };
            if let Some(v) = valid.as_deref_mut().and_then(|v| v.get_mut(i)) {
                *v = ok;
            }
            if !ok {
                continue;
            }
            match (&node.body.action, node.target) {
                (Action::Create { .. }, _) => {
                    roles.iter_mut().for_each(|r| *r = None);
                    if let Some(r) = roles.get_mut(node.author) {
                        *r = Some(Role { admin: true, rank });
                    }
                }
                (Action::Add { admin, .. }, Some(member)) => {
                    if let Some(slot) = roles.get_mut(member) {
                        match slot {
                            None => {
                                *slot = Some(Role {
                                    admin: *admin,
                                    rank,
                                })
                            }
                            Some(role) if *admin && !role.admin => {
                                *role = Role { admin: true, rank };
                            }
                            Some(_) => {}
                        }
                    }
                }
                (Action::Remove { .. }, Some(member)) => {
                    if let Some(slot) = roles.get_mut(member) {
                        *slot = None;
                    }
                }
                (Action::Leave, _) => {
                    if let Some(slot) = roles.get_mut(node.author) {
                        *slot = None;
                    }
                }
                _ => {}
            }
        }
        roles
    }

    /// Whether `set` holds a removal of author `who` (an author index) concurrent with op `i`.
    fn removed_concurrently(&self, who: usize, i: usize, set: Set<'_>) -> bool {
        let Some(removals) = self.removals.get(who) else {
            return false;
        };
        removals
            .iter()
            .any(|&r| r != i && set.contains(r) && self.concurrent(r, i))
    }

    fn concurrent(&self, x: usize, y: usize) -> bool {
        let in_past = |of: usize, which: usize| {
            self.nodes
                .get(of)
                .is_some_and(|node| bit(&node.past, which))
        };
        !in_past(x, y) && !in_past(y, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_outside_the_set_are_absent() {
        let mut bits = vec![0u64; 2];
        set_bit(&mut bits, 3);
        set_bit(&mut bits, 127);
        set_bit(&mut bits, 128);
        assert!(bit(&bits, 3));
        assert!(bit(&bits, 127));
        assert!(!bit(&bits, 4));
        assert!(!bit(&bits, 128), "beyond the words: ignored and absent");
        assert!(!bit(&[], 0));
        assert_eq!(bits, vec![1 << 3, 1 << 63]);
    }

    /// `L(T)` computed from scratch: Kahn's algorithm with a heap.
    fn kahn(group: &Group, set: Set<'_>) -> Vec<usize> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let n = group.nodes.len();
        let mut children = vec![Vec::new(); n];
        let mut remaining = vec![0usize; n];
        let mut ready = BinaryHeap::new();
        for (i, node) in group.nodes.iter().enumerate() {
            if !set.contains(i) {
                continue;
            }
            remaining[i] = node.body.deps.len();
            for dep in &node.body.deps {
                children[group.index[dep]].push(i);
            }
            if remaining[i] == 0 {
                ready.push(Reverse((node.id, i)));
            }
        }
        let mut order = Vec::new();
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            for &c in &children[i] {
                remaining[c] -= 1;
                if remaining[c] == 0 {
                    ready.push(Reverse((group.nodes[c].id, c)));
                }
            }
        }
        order
    }

    /// The kept linear order is Kahn's from scratch, and restricting it to an op's past gives
    /// the linearization of that past (which the rules rely on), on a DAG with many concurrent
    /// branches (a fixed pseudo-random shape) inserted in two different orders.
    #[test]
    fn kept_order_is_the_linearization_and_restricts_to_pasts() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let author = key.verifying_key().to_bytes();
        let body = |deps: Vec<OpId>, action: Action, created_at: u64| OpBody {
            convo: [3; 32],
            author,
            deps,
            seen: Vec::new(),
            created_at,
            action,
            tag_secret: None,
        };
        let genesis = SignedOp::sign(
            &body(Vec::new(), Action::Create { name: "n".into() }, 0),
            &key,
        );
        let mut group = Group::new(genesis.clone()).unwrap();
        let mut ids = vec![genesis.id()];
        let mut ops = Vec::new();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for step in 1..=80 {
            let mut deps = Vec::new();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let recent = ids.len().min(6);
                deps.push(ids[ids.len() - 1 - (state as usize % recent)]);
            }
            let op = SignedOp::sign(&body(deps, Action::Update, step), &key);
            assert!(matches!(group.insert(op.clone()), Ok(Inserted::Applied(_))));
            ids.push(op.id());
            ops.push(op);
        }
        assert!(group.heads().len() > 1);
        assert_eq!(group.order, kahn(&group, Set::All));
        for node in &group.nodes {
            let restricted: Vec<usize> = group
                .order
                .iter()
                .copied()
                .filter(|&i| bit(&node.past, i))
                .collect();
            assert_eq!(kahn(&group, Set::Bits(&node.past)), restricted);
        }
        ops.reverse();
        let rebuilt = Group::from_ops(genesis, ops).unwrap();
        assert_eq!(rebuilt.order, kahn(&rebuilt, Set::All));
        assert_eq!(
            rebuilt.ops().iter().map(SignedOp::id).collect::<Vec<_>>(),
            group.ops().iter().map(SignedOp::id).collect::<Vec<_>>()
        );
    }
}
