//! Identities and signing: the only way, besides verification, to make a [`VerifiedEvent`].

use ed25519_dalek::{Signer, SigningKey};

use crate::event::{encode, VerifiedEvent};
use crate::header::Header;
use crate::keys::{EventId, PublicKey, Topic};
use crate::payload::{encode_payload, Deletion, FollowList, KeyBundle, Note, Profile, Reaction};
use crate::verify::check_unsigned;
use crate::{event_id, Kind, Limits, VerifyError};

/// Why an identity could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The operating system's random source failed. Fix: retry; check the platform's entropy.
    #[error("no randomness from the operating system: {0}")]
    Entropy(String),
}

/// An author's signing key.
pub struct Identity {
    key: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Identity, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Entropy(e.to_string()))?;
        Ok(Identity::from_seed(&seed))
    }

    /// The key with this 32-byte secret seed (deterministic).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey(key.verifying_key().to_bytes());
        Identity { key, public }
    }

    /// The secret seed, for storing the identity. Keep it private.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key that names this author.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Signs a draft and checks the result against `limits` (sizes, kind rules, payload
    /// archive, clock skew) — everything but the signature, which is right by construction.
    /// Use this for drafts built from user input.
    pub fn sign_checked(
        &self,
        draft: &Draft,
        limits: &Limits,
    ) -> Result<VerifiedEvent, VerifyError> {
        let event = self.sign(draft);
        check_unsigned(event.as_bytes(), limits)?;
        Ok(event)
    }

    /// Signs a draft without checking its bounds: the caller vouches that the draft is
    /// well-formed (a generator, a test). See [`Identity::sign_checked`].
    pub fn sign(&self, draft: &Draft) -> VerifiedEvent {
        let header = Header::new(
            draft.kind,
            draft.created_at,
            self.public,
            draft.topic,
            draft.reference,
            &draft.payload,
        );
        let id = event_id(&header);
        let signature = self.key.sign(&id.0).to_bytes();
        VerifiedEvent::new_unchecked(encode(&id, &header, &signature, &draft.payload))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An event before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Event kind.
    pub kind: Kind,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Topic; zero for public.
    pub topic: Topic,
    /// Referenced event; zero for none.
    pub reference: EventId,
    /// Payload bytes (archived for built-in kinds).
    pub payload: Vec<u8>,
}

impl Draft {
    fn new(kind: Kind, created_at: u64, reference: EventId, payload: Vec<u8>) -> Draft {
        Draft {
            kind,
            created_at,
            topic: Topic::ZERO,
            reference,
            payload,
        }
    }

    /// A top-level post.
    pub fn post(created_at: u64, text: &str) -> Draft {
        Draft::new(
            Kind::POST,
            created_at,
            EventId::ZERO,
            encode_payload(&Note { text: text.into() }),
        )
    }
    /// A reply to `parent`.
    pub fn reply(created_at: u64, parent: EventId, text: &str) -> Draft {
        Draft::new(
            Kind::REPLY,
            created_at,
            parent,
            encode_payload(&Note { text: text.into() }),
        )
    }
    /// A reaction to `target`.
    pub fn reaction(created_at: u64, target: EventId, content: &str) -> Draft {
        let payload = encode_payload(&Reaction {
            content: content.into(),
        });
        Draft::new(Kind::REACTION, created_at, target, payload)
    }
    /// The full list of authors followed (replaces any earlier list).
    pub fn follow_list(created_at: u64, follows: &[PublicKey]) -> Draft {
        let payload = encode_payload(&FollowList {
            follows: follows.iter().map(|p| p.0).collect(),
        });
        Draft::new(Kind::FOLLOW_LIST, created_at, EventId::ZERO, payload)
    }
    /// A deletion of the author's own event `target`.
    pub fn deletion(created_at: u64, target: EventId, reason: &str) -> Draft {
        let payload = encode_payload(&Deletion {
            reason: reason.into(),
        });
        Draft::new(Kind::DELETION, created_at, target, payload)
    }
    /// A profile (replaces any earlier profile).
    pub fn profile(created_at: u64, profile: &Profile) -> Draft {
        Draft::new(
            Kind::PROFILE,
            created_at,
            EventId::ZERO,
            encode_payload(profile),
        )
    }
    /// An author's key bundle for private conversations (replaces any earlier one).
    pub fn key_bundle(created_at: u64, bundle: &KeyBundle) -> Draft {
        Draft::new(
            Kind::KEY_BUNDLE,
            created_at,
            EventId::ZERO,
            encode_payload(bundle),
        )
    }
    /// A private-conversation envelope: `payload` is sealed already; its time is rounded down
    /// to a whole [`crate::ENVELOPE_TIME_QUANTUM_MS`] here, and `tag` is its topic.
    pub fn envelope(created_at: u64, tag: Topic, payload: Vec<u8>) -> Draft {
        let coarse = created_at - created_at % crate::ENVELOPE_TIME_QUANTUM_MS;
        Draft::new(Kind::ENVELOPE, coarse, EventId::ZERO, payload).in_topic(tag)
    }
    /// An application event with opaque payload.
    pub fn app(kind: Kind, created_at: u64, reference: EventId, payload: Vec<u8>) -> Draft {
        Draft::new(kind, created_at, reference, payload)
    }
    /// The same draft in a topic.
    pub fn in_topic(mut self, topic: Topic) -> Draft {
        self.topic = topic;
        self
    }
}
