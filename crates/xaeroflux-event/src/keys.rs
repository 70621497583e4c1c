//! 32-byte names: event ids, author keys, topics. Shown and parsed as lowercase hex.

use std::fmt;
use std::str::FromStr;

/// Why a hex string is not a 32-byte name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// The string does not have 64 hex digits. Fix: pass the full 64-digit form.
    #[error("expected 64 hex digits, got {got} characters")]
    Length {
        /// Characters given.
        got: usize,
    },
    /// A character is not a hex digit. Fix: use only 0-9 and a-f.
    #[error("character {index} is not a hex digit")]
    Digit {
        /// Position of the first bad character.
        index: usize,
    },
}

fn parse_hex32(s: &str) -> Result<[u8; 32], HexError> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(HexError::Length {
            got: s.chars().count(),
        });
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(HexError::Digit { index: 2 * i })?;
        let lo = hex_val(pair[1]).ok_or(HexError::Digit { index: 2 * i + 1 })?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! name32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(transparent)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The all-zero value, meaning "none".
            pub const ZERO: Self = Self([0; 32]);

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// True for the all-zero value.
            pub fn is_zero(&self) -> bool {
                self.0 == [0; 32]
            }

            /// Views 32 bytes in place (alignment 1, no copy).
            pub fn from_ref(bytes: &[u8; 32]) -> &Self {
                bytemuck::cast_ref(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0[..8])?;
                write!(f, "…)")
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex32(s).map(Self)
            }
        }
    };
}

name32!(
    /// An event id: `BLAKE3 derive_key("xaeroflux event v1", header)`.
    EventId
);
name32!(
    /// An author: a compressed ed25519 public key.
    PublicKey
);
name32!(
    /// A topic: a group or feed namespace. Zero for public events.
    Topic
);

impl Topic {
    /// The topic named by a human-readable string: `BLAKE3 derive_key("xaeroflux topic v1", name)`.
    pub fn named(name: &str) -> Self {
        Topic(blake3::derive_key("xaeroflux topic v1", name.as_bytes()))
    }

    /// A topic as a person or an app writes it: 64 hex digits are the topic's id, anything
    /// else is a name ([`Topic::named`]).
    pub fn from_text(text: &str) -> Self {
        match text.parse::<Topic>() {
            Ok(t) if text.len() == 64 => t,
            _ => Topic::named(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = EventId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<EventId>().unwrap(), id);
        assert_eq!("abc".parse::<EventId>(), Err(HexError::Length { got: 3 }));
        let mut bad = s.clone();
        bad.replace_range(5..6, "g");
        assert_eq!(bad.parse::<EventId>(), Err(HexError::Digit { index: 5 }));
    }

    #[test]
    fn named_topics_are_distinct_and_stable() {
        assert_eq!(Topic::named("rust"), Topic::named("rust"));
        assert_ne!(Topic::named("rust"), Topic::named("go"));
        assert!(!Topic::named("").is_zero());
    }
}
