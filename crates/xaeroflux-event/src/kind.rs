//! Event kinds: the built-in social kinds and the application range above them.

use std::fmt;

/// What an event is. Kinds below [`Kind::APP_MIN`] are reserved for Xaeroflux: the built-in
/// ones listed here, and kinds a newer build defines, which this one verifies, stores and
/// relays like application kinds without interpreting them (but does not let a local author
/// create). Kinds from [`Kind::APP_MIN`] up belong to applications and carry opaque payloads.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(pub u32);

impl Kind {
    /// A user's profile (replaceable: the newest per author wins). Payload: [`crate::Profile`].
    pub const PROFILE: Kind = Kind(0);
    /// A top-level post. Payload: [`crate::Note`]. No reference.
    pub const POST: Kind = Kind(1);
    /// A reply; the reference is the event replied to. Payload: [`crate::Note`].
    pub const REPLY: Kind = Kind(2);
    /// A reaction; the reference is the event reacted to. Payload: [`crate::Reaction`].
    pub const REACTION: Kind = Kind(3);
    /// The authors someone follows (replaceable). Payload: [`crate::FollowList`].
    pub const FOLLOW_LIST: Kind = Kind(4);
    /// A deletion of the referenced event, honoured only for the same author. Payload:
    /// [`crate::Deletion`].
    pub const DELETION: Kind = Kind(5);
    /// A private-conversation envelope: an opaque, padded ciphertext under a one-time author
    /// key, with the conversation's rotating tag as topic and a time rounded down to
    /// [`ENVELOPE_TIME_QUANTUM_MS`]. No reference. Payload: version byte 1, a 32-byte
    /// header, then at least 16 bytes of ciphertext (`docs/format.md`, "Envelopes").
    pub const ENVELOPE: Kind = Kind(6);
    /// An author's key bundle for private conversations (replaceable: the newest per author
    /// wins). Zero topic, no reference. Payload: [`crate::KeyBundle`].
    pub const KEY_BUNDLE: Kind = Kind(7);
    /// The first application kind. Kinds from here up are not interpreted by the engine.
    pub const APP_MIN: Kind = Kind(0x0001_0000);

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// True for the kinds this version of the engine defines.
    pub fn is_builtin(self) -> bool {
        self.0 <= Self::KEY_BUNDLE.0
    }

    /// True for application kinds.
    pub fn is_app(self) -> bool {
        self >= Self::APP_MIN
    }

    /// True for the kinds this build can interpret or needs not interpret: built-in and
    /// application kinds. False for a reserved kind only a newer build defines.
    pub fn is_known(self) -> bool {
        self.is_builtin() || self.is_app()
    }

    /// True where a newer event of the same author and kind replaces the older one.
    pub fn is_replaceable(self) -> bool {
        self == Self::PROFILE || self == Self::FOLLOW_LIST || self == Self::KEY_BUNDLE
    }

    /// True for the built-in kinds added after the first six (envelopes, key bundles). Builds
    /// older than them store and relay them without checking their rules, so a broken rule of
    /// one of these kinds is graded not understood, never invalid.
    pub fn is_later_builtin(self) -> bool {
        self.is_builtin() && self > Self::DELETION
    }

    /// True where the event must reference another; false where it must not. `None` for
    /// application kinds, which may do either.
    pub fn needs_reference(self) -> Option<bool> {
        match self {
            Self::REPLY | Self::REACTION | Self::DELETION => Some(true),
            Self::PROFILE | Self::POST | Self::FOLLOW_LIST | Self::ENVELOPE | Self::KEY_BUNDLE => {
                Some(false)
            }
            _ => None,
        }
    }

    /// A short lowercase name for built-in kinds.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PROFILE => "profile",
            Self::POST => "post",
            Self::REPLY => "reply",
            Self::REACTION => "reaction",
            Self::FOLLOW_LIST => "follow-list",
            Self::DELETION => "deletion",
            Self::ENVELOPE => "envelope",
            Self::KEY_BUNDLE => "key-bundle",
            _ => return None,
        })
    }

    /// Parses a built-in kind name or a decimal number.
    pub fn parse(s: &str) -> Option<Kind> {
        let builtin = [
            Self::PROFILE,
            Self::POST,
            Self::REPLY,
            Self::REACTION,
            Self::FOLLOW_LIST,
            Self::DELETION,
            Self::ENVELOPE,
            Self::KEY_BUNDLE,
        ];
        builtin
            .into_iter()
            .find(|k| k.name() == Some(s))
            .or_else(|| s.parse::<u32>().ok().map(Kind))
    }
}

/// Envelope times are multiples of this (one hour, in milliseconds): the outer time of a
/// private message says only which hour it was sealed in.
pub const ENVELOPE_TIME_QUANTUM_MS: u64 = 3_600_000;

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for k in 0..=7 {
            let kind = Kind(k);
            assert_eq!(Kind::parse(kind.name().unwrap()), Some(kind));
        }
        assert_eq!(Kind::parse("70000"), Some(Kind(70000)));
        assert_eq!(Kind::parse("nope"), None);
        assert!(!Kind(8).is_builtin() && !Kind(8).is_app() && !Kind(8).is_known());
        assert!(Kind::ENVELOPE.is_later_builtin() && !Kind::DELETION.is_later_builtin());
        assert!(Kind::KEY_BUNDLE.is_replaceable() && !Kind::ENVELOPE.is_replaceable());
        assert!(Kind::POST.is_known() && Kind::APP_MIN.is_known());
    }
}
