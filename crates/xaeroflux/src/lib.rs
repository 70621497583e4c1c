//! Xaeroflux: an embeddable storage-and-sync engine for peer-to-peer social software.
//!
//! ```no_run
//! use xaeroflux::{Node, Draft};
//! let node = Node::builder().data_dir("/tmp/xf-example").open()?;
//! let id = node.post("hello", None, None)?.id;
//! let read = node.store().read()?;
//! assert!(read.get(&id)?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Threads: the store's single writer thread, and, once the node joins a network, one network
//! thread running a current-thread runtime with the libp2p swarm and every sync session.
//! Verification of imported batches borrows the caller's thread plus scoped helpers for the
//! length of a batch. Nothing else runs in the background.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod identity;
mod ingest;
mod node;
mod portable;

pub use identity::{load_or_create_identity, IdentityFileError, IDENTITY_FILE};
pub use ingest::{IngestError, IngestReport, Rejected};
pub use node::{
    now_ms, IdPrefixError, Node, NodeBuilder, NodeError, Published, ID_PREFIX_DIGITS_MIN,
    NODE_LOCK_FILE,
};
pub use portable::{ExportWriter, ImportError, ImportReader, EXPORT_MAGIC, EXPORT_VERSION};
pub use xaeroflux_event::{
    Draft, EventId, EventRef, Identity, Kind, Profile, PublicKey, Topic, VerifiedEvent, Verifier,
    VerifyError, PAYLOAD_BYTES_MAX,
};
pub use xaeroflux_net::{
    peer_in, MemoryHub, Multiaddr, NetConfig, NetError, NetEvent, NetHandle, PeerId, Protocol,
    SyncSummary,
};
pub use xaeroflux_store::{
    Durability, Filter, OpenError, Outcome, QueryError, ReadError, ReadTxn, Store, StoreOptions,
    Ticket, WriteError, QUERY_LIMIT_MAX,
};
