//! Xaeroflux for apps in Swift, Kotlin and Python: UniFFI bindings over the `xaeroflux`
//! facade, which stays the one door to the engine.
//!
//! What crosses the boundary is owned and plain: records of strings (ids, keys and topics as
//! 64 hex digits), numbers and bytes; one object, [`Node`], and the handle of a subscription;
//! three traits the host implements ([`KeyProvider`] over its platform keystore,
//! [`EventListener`], [`NetListener`]); and one flat error, [`XfError`]. No borrowed view,
//! channel or libp2p type crosses, and no panic: every failure is an `XfError`.
//!
//! Generate the bindings from the built library with the workspace's `uniffi-bindgen`
//! (crate `xaeroflux-bindgen`, at this crate's exact UniFFI version); docs/mobile.md says how
//! to build for iOS and Android.
#![warn(missing_docs)]

uniffi::setup_scaffolding!("xaeroflux");

mod dispatch;
mod error;
mod keys;
mod net;
mod node;
mod types;

pub use dispatch::EventListener;
pub use error::XfError;
pub use keys::KeyProvider;
pub use net::{NetEvent, NetListener, NetOptions, Peer, SyncSummary, TorOptions};
pub use node::{CatchUp, Conversation, Message, Node, OpenOptions, StoreStats, SubscriptionHandle};
pub use types::{topic_id, Event, Filter, ImportReport, Profile, Published, Thread, ThreadEntry};
