//! Verification: the boundary where untrusted bytes become [`VerifiedEvent`]s.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::event::{DecodeError, EventRef, VerifiedEvent};
use crate::payload::{check_builtin, check_later_builtin, PayloadError, PAYLOAD_BYTES_MAX};
use crate::{event_id, EventId, Kind, ENVELOPE_TIME_QUANTUM_MS, FORMAT_VERSION};

/// How far in the future an event's timestamp may be: 10 minutes.
pub const FUTURE_SKEW_MS_DEFAULT: u64 = 10 * 60 * 1000;

/// Bounds applied on verification. Time is an argument: this crate has no clock.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The verifier's current time, ms since the Unix epoch.
    pub now_ms: u64,
    /// Largest accepted `created_at - now_ms`.
    pub future_skew_ms: u64,
    /// Largest accepted payload, at most [`PAYLOAD_BYTES_MAX`].
    pub payload_bytes_max: usize,
}

impl Limits {
    /// Default bounds at time `now_ms`.
    pub fn at(now_ms: u64) -> Limits {
        Limits {
            now_ms,
            future_skew_ms: FUTURE_SKEW_MS_DEFAULT,
            payload_bytes_max: PAYLOAD_BYTES_MAX,
        }
    }
}

/// How a verification failure counts against whoever sent the event. An event can fail
/// because it is broken, or because this build or this node cannot take it yet: only the
/// first is the sender's fault, so that a newer build (a new kind, a new header version) or
/// a clock that runs a little ahead never gets an honest peer blocked. `docs/format.md`,
/// "Verdicts", lists every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Broken or forged: no honest node sends it. Rejected, and the sender is penalised.
    Invalid,
    /// This build cannot check it (a header version newer than [`FORMAT_VERSION`]): neither
    /// stored nor forwarded, and nobody is penalised. A newer build accepts it.
    NotUnderstood,
    /// Authentic (id and signature checked) but outside this node's bounds for now: dated
    /// beyond the allowed clock skew, or a payload over a cap set below the format's. Neither
    /// stored nor forwarded, nobody is penalised; a later sync fetches it again.
    Declined,
}

impl Verdict {
    /// Whether the sender is to blame (and scored down).
    pub fn is_invalid(self) -> bool {
        self == Verdict::Invalid
    }
}

/// Why an event was rejected. Each variant names one reason; nothing is stored for a
/// rejected event. [`VerifyError::verdict`] says whether the sender is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Structurally broken (truncated, wrong payload length).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A header version this build does not know. Newer than this build: not understood (the
    /// id and signature cannot be checked either), fix: upgrade the reader. Older than any
    /// version: invalid.
    #[error("unsupported event format version {got} (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the header.
        got: u16,
        /// Version supported.
        supported: u16,
    },
    /// Reserved flag bits are set.
    #[error("reserved header flags set: {got:#06x}")]
    ReservedFlags {
        /// The flags value.
        got: u16,
    },
    /// A kind in the reserved range that this build does not define, in a draft signed here
    /// ([`crate::Identity::sign_checked`]). Received events of such kinds verify (a newer
    /// build defined the kind; this one stores and relays it). Fix: use a kind at or above
    /// 65536 for application events, or upgrade.
    #[error("unknown kind {kind} in the reserved range (application kinds start at 65536)")]
    UnknownKind {
        /// The kind.
        kind: u32,
    },
    /// A reply, reaction or deletion without a reference.
    #[error("a {kind} must reference an event")]
    ReferenceMissing {
        /// The kind.
        kind: Kind,
    },
    /// A post, profile or follow list with a reference.
    #[error("a {kind} must not reference an event")]
    ReferenceNotAllowed {
        /// The kind.
        kind: Kind,
    },
    /// Payload over the size bound: invalid over [`PAYLOAD_BYTES_MAX`], declined (reported
    /// only once the signature checked out) over a lower cap in [`Limits`]. Fix: split the
    /// payload, or raise `payload_bytes_max`.
    #[error("payload of {got} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Payload length.
        got: usize,
        /// Limit.
        max: usize,
    },
    /// Timestamp too far in the future. Reported only once the id and signature checked out,
    /// and declined rather than invalid: an honest clock can run ahead. Fix: check the
    /// author's clock (or this node's); the event is accepted once it is no longer early.
    #[error("created_at {created_at} is more than {skew_ms} ms ahead of now ({now_ms})")]
    FromTheFuture {
        /// The event's time.
        created_at: u64,
        /// The verifier's time.
        now_ms: u64,
        /// Allowed skew.
        skew_ms: u64,
    },
    /// The payload does not hash to the header's payload hash.
    #[error("payload does not match the header's payload hash")]
    PayloadHashMismatch,
    /// The carried id is not the hash of the header.
    #[error("wrong id: carried {carried}, header hashes to {computed}")]
    IdMismatch {
        /// Id carried with the event.
        carried: EventId,
        /// Id computed from the header.
        computed: EventId,
    },
    /// The author field is not a usable ed25519 public key.
    #[error("author is not a valid ed25519 public key")]
    InvalidAuthorKey,
    /// The signature does not verify against the author's key.
    #[error("signature does not verify")]
    BadSignature,
    /// A built-in kind's payload is not a valid archive of its type.
    #[error(transparent)]
    MalformedPayload(#[from] PayloadError),
    /// A rule of a kind added after the first six (an envelope, a key bundle) is broken: its
    /// reference, topic, time or payload. Not understood rather than invalid, because older
    /// builds relay these kinds without checking them (`docs/format.md`, "Verdicts").
    #[error("a {kind} breaks its kind's rule: {rule}")]
    KindRule {
        /// The kind.
        kind: Kind,
        /// The rule broken.
        rule: String,
    },
}

impl VerifyError {
    /// How this failure counts against the sender of the event.
    pub fn verdict(&self) -> Verdict {
        match self {
            VerifyError::UnsupportedVersion { got, supported } if got > supported => {
                Verdict::NotUnderstood
            }
            VerifyError::UnknownKind { .. } | VerifyError::KindRule { .. } => {
                Verdict::NotUnderstood
            }
            VerifyError::FromTheFuture { .. } => Verdict::Declined,
            VerifyError::PayloadTooLarge { got, .. } if *got <= PAYLOAD_BYTES_MAX => {
                Verdict::Declined
            }
            // The reference and payload rules are those of the kinds every version-1 build
            // defines. A kind added later must grade its own rules' failures as not
            // understood: older relays store and forward it without being able to check them.
            _ => Verdict::Invalid,
        }
    }
}

/// An event that passed every check but the signature, and a bound it breaks that is reported
/// only once the signature holds (so that only authentic events are graded declined).
struct Checked<'a> {
    event: EventRef<'a>,
    key: VerifyingKey,
    deferred: Option<VerifyError>,
}

/// Everything but the signature: the checked view, the author's key, and a deferred bound.
fn check_all_but_signature<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    keys: &mut HashMap<[u8; 32], VerifyingKey>,
) -> Result<Checked<'a>, VerifyError> {
    let event = EventRef::decode(bytes)?;
    let header = event.header();
    if header.version() != FORMAT_VERSION {
        return Err(VerifyError::UnsupportedVersion {
            got: header.version(),
            supported: FORMAT_VERSION,
        });
    }
    if header.flags() != 0 {
        return Err(VerifyError::ReservedFlags {
            got: header.flags(),
        });
    }
    // A reserved kind this build does not define passes: the header format is the same, so
    // id and signature are checked as for any kind, and its rules are the newer build's.
    let kind = header.kind();
    if kind.is_later_builtin() {
        check_later_rules(kind, &event)?;
    }
    match (kind.needs_reference(), event.reference().is_zero()) {
        (Some(true), true) => return Err(VerifyError::ReferenceMissing { kind }),
        (Some(false), false) => return Err(VerifyError::ReferenceNotAllowed { kind }),
        _ => {}
    }
    if event.payload().len() > PAYLOAD_BYTES_MAX {
        return Err(VerifyError::PayloadTooLarge {
            got: event.payload().len(),
            max: PAYLOAD_BYTES_MAX,
        });
    }
    let max = limits.payload_bytes_max.min(PAYLOAD_BYTES_MAX);
    let deferred = if event.payload().len() > max {
        Some(VerifyError::PayloadTooLarge {
            got: event.payload().len(),
            max,
        })
    } else if event.created_at() > limits.now_ms.saturating_add(limits.future_skew_ms) {
        Some(VerifyError::FromTheFuture {
            created_at: event.created_at(),
            now_ms: limits.now_ms,
            skew_ms: limits.future_skew_ms,
        })
    } else {
        None
    };
    if blake3::hash(event.payload()).as_bytes() != &header.payload_hash {
        return Err(VerifyError::PayloadHashMismatch);
    }
    let computed = event_id(header);
    if &computed != event.id() {
        return Err(VerifyError::IdMismatch {
            carried: *event.id(),
            computed,
        });
    }
    check_builtin(kind, event.payload())?;
    if kind.is_later_builtin() {
        check_later_builtin(kind, event.payload())
            .map_err(|rule| VerifyError::KindRule { kind, rule })?;
    }
    let key = match keys.get(&header.author) {
        Some(key) => *key,
        None => {
            let key = VerifyingKey::from_bytes(&header.author)
                .map_err(|_| VerifyError::InvalidAuthorKey)?;
            // A small-order key lets anyone forge signatures that verify.
            if key.is_weak() {
                return Err(VerifyError::InvalidAuthorKey);
            }
            if keys.len() >= KEY_CACHE_MAX {
                keys.clear();
            }
            keys.insert(header.author, key);
            key
        }
    };
    Ok(Checked {
        event,
        key,
        deferred,
    })
}

/// The header rules of the kinds added after the first six: no reference; an envelope has a
/// non-zero topic (its tag) and a time in whole [`ENVELOPE_TIME_QUANTUM_MS`]; a key bundle has
/// a zero topic. Their payload rules are checked with the other payload checks.
fn check_later_rules(kind: Kind, event: &EventRef<'_>) -> Result<(), VerifyError> {
    let rule = |rule: &str| {
        Err(VerifyError::KindRule {
            kind,
            rule: rule.to_string(),
        })
    };
    if !event.reference().is_zero() {
        return rule("no reference");
    }
    match kind {
        Kind::ENVELOPE if event.topic().is_zero() => rule("an envelope has a tag as its topic"),
        Kind::ENVELOPE if !event.created_at().is_multiple_of(ENVELOPE_TIME_QUANTUM_MS) => {
            rule("an envelope's time is a whole hour")
        }
        Kind::KEY_BUNDLE if !event.topic().is_zero() => rule("a key bundle has no topic"),
        _ => Ok(()),
    }
}

/// Every check but the signature, for events this process just signed. Stricter than
/// verification on one point: a local author may not create a reserved kind this build does
/// not define.
pub(crate) fn check_unsigned(bytes: &[u8], limits: &Limits) -> Result<(), VerifyError> {
    let checked = check_all_but_signature(bytes, limits, &mut HashMap::new())?;
    let kind = checked.event.kind();
    if !kind.is_known() {
        return Err(VerifyError::UnknownKind { kind: kind.0 });
    }
    checked.deferred.map_or(Ok(()), Err)
}

/// Decompressed keys kept per batch, so a prolific author is decompressed once.
const KEY_CACHE_MAX: usize = 4096;

/// Decompressed author keys kept across batches. Decompressing an ed25519 key costs a square
/// root in the field, a sizeable share of one verification; social traffic comes from a
/// limited set of authors, so most batches find their keys here. Bounded: when full, it is
/// emptied and refilled (about 200 bytes per key).
pub struct KeyCache {
    keys: std::sync::Mutex<HashMap<[u8; 32], VerifyingKey>>,
    capacity: usize,
}

impl KeyCache {
    /// A cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            keys: std::sync::Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The cached keys of the authors of `items` (one lock).
    fn known(&self, items: &[Vec<u8>]) -> HashMap<[u8; 32], VerifyingKey> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for item in items {
            let author = item
                .get(AUTHOR_AT..AUTHOR_AT + 32)
                .and_then(|a| <[u8; 32]>::try_from(a).ok());
            if let Some(key) = author.and_then(|a| keys.get(&a).map(|k| (a, *k))) {
                out.insert(key.0, key.1);
            }
        }
        out
    }

    /// Keeps the keys a batch decompressed (one lock).
    fn absorb(&self, new: HashMap<[u8; 32], VerifyingKey>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() + new.len() > self.capacity {
            keys.clear();
        }
        keys.extend(new.into_iter().take(self.capacity));
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Offset of the author key in the portable encoding: id, then version, flags, kind, created_at.
const AUTHOR_AT: usize = crate::ID_BYTES + 16;

fn verify_one_signature(event: &EventRef<'_>, key: &VerifyingKey) -> Result<(), VerifyError> {
    let signature = Signature::from_bytes(event.signature());
    key.verify_strict(&event.id().0, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Verifies one encoded event (`id ‖ header ‖ signature ‖ payload`). A failure's
/// [`VerifyError::verdict`] says whether the sender is to blame.
pub fn verify(bytes: Vec<u8>, limits: &Limits) -> Result<VerifiedEvent, VerifyError> {
    let mut keys = HashMap::new();
    let checked = check_all_but_signature(&bytes, limits, &mut keys)?;
    verify_one_signature(&checked.event, &checked.key)?;
    if let Some(e) = checked.deferred {
        return Err(e);
    }
    Ok(VerifiedEvent::new_unchecked(bytes))
}

/// Verifies many events, checking signatures with one ed25519 batch equation. If the batch
/// fails, each signature is checked alone so that only the bad events are rejected. Results
/// are in input order.
pub fn verify_batch(
    items: Vec<Vec<u8>>,
    limits: &Limits,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    verify_batch_with(items, limits, None)
}

/// [`verify_batch`], taking decompressed author keys from `cache` and leaving new ones there.
pub fn verify_batch_cached(
    items: Vec<Vec<u8>>,
    limits: &Limits,
    cache: &KeyCache,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    verify_batch_with(items, limits, Some(cache))
}

fn verify_batch_with(
    items: Vec<Vec<u8>>,
    limits: &Limits,
    cache: Option<&KeyCache>,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    let mut keys = cache.map(|c| c.known(&items)).unwrap_or_default();
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(items.len());
    // Bounds reported once the signature holds, by position in `passed`.
    let mut deferred = Vec::with_capacity(items.len());
    let mut passed = Vec::with_capacity(items.len());
    let mut messages: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut verifying_keys = Vec::with_capacity(items.len());
    for (i, bytes) in items.iter().enumerate() {
        match check_all_but_signature(bytes, limits, &mut keys) {
            Ok(checked) => {
                passed.push(i);
                // The carried id, already checked equal to the header hash.
                messages.push(&bytes[..crate::ID_BYTES]);
                signatures.push(Signature::from_bytes(checked.event.signature()));
                verifying_keys.push(checked.key);
                deferred.push(checked.deferred);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    // One multiscalar equation for the whole batch; on failure, find the culprits one by one.
    let batch_ok = !passed.is_empty()
        && ed25519_dalek::verify_batch(&messages, &signatures, &verifying_keys).is_ok();
    if !batch_ok {
        for (slot, &i) in passed.iter().enumerate() {
            let event = EventRef::decode(&items[i]).expect("decoded above");
            results[i] = verify_one_signature(&event, &verifying_keys[slot]);
        }
    }
    for (slot, later) in deferred.into_iter().enumerate() {
        let i = passed[slot];
        if let (Ok(()), Some(e)) = (&results[i], later) {
            results[i] = Err(e);
        }
    }
    drop(messages);
    if let Some(cache) = cache {
        cache.absorb(keys);
    }
    items
        .into_iter()
        .zip(results)
        .map(|(bytes, r)| r.map(|()| VerifiedEvent::new_unchecked(bytes)))
        .collect()
}

/// [`verify_batch`] split across `threads` scoped threads (the caller's thread is one of
/// them). Results are in input order.
pub fn verify_batch_parallel(
    items: Vec<Vec<u8>>,
    limits: &Limits,
    threads: usize,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    verify_batch_parallel_with(items, limits, threads, None)
}

/// [`verify_batch_parallel`] with a key cache shared by the threads and kept across calls.
pub fn verify_batch_parallel_cached(
    items: Vec<Vec<u8>>,
    limits: &Limits,
    threads: usize,
    cache: &KeyCache,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    verify_batch_parallel_with(items, limits, threads, Some(cache))
}

fn verify_batch_parallel_with(
    mut items: Vec<Vec<u8>>,
    limits: &Limits,
    threads: usize,
    cache: Option<&KeyCache>,
) -> Vec<Result<VerifiedEvent, VerifyError>> {
    let threads = threads.max(1);
    // Below this, thread start-up costs more than it saves.
    const PER_THREAD_MIN: usize = 64;
    if threads == 1 || items.len() < 2 * PER_THREAD_MIN {
        return verify_batch_with(items, limits, cache);
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    while items.len() > chunk {
        let tail = items.split_off(items.len() - chunk);
        chunks.push(tail);
    }
    chunks.push(items);
    chunks.reverse();
    std::thread::scope(|scope| {
        let mut iter = chunks.into_iter();
        let first = iter.next().expect("at least one chunk");
        let handles: Vec<_> = iter
            .map(|c| scope.spawn(move || verify_batch_with(c, limits, cache)))
            .collect();
        let mut out = verify_batch_with(first, limits, cache);
        for h in handles {
            out.extend(h.join().expect("verification does not panic"));
        }
        out
    })
}
