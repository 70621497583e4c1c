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
//! Threads: the store's single writer thread; a verifier stage of at most one thread per core,
//! started when there is work and ended when idle, shared by ingest, sync and gossip; and,
//! once the node joins a network, one network thread running a current-thread runtime with the
//! libp2p swarm and every sync session. Nothing else runs in the background.
//!
//! Everything an app needs is here: the event format, the store's reads and queries, sync with
//! another store ([`Node::sync_with_store`]) or over the network ([`NetConfig`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convo;
mod event;
mod identity;
mod ingest;
mod local_sync;
mod node;
mod portable;
mod reseal;

pub use convo::{
    CatchUp, ConversationError, ConvoId, ConvoInfo, Message, Rejection, CONVO_LOCK_FILE,
    PENDING_MAX,
};
pub use event::{Event, OwnedThread};
pub use identity::{
    load_or_create_identity, IdentityFileError, NetworkIdentity, ANON_NETWORK_KEY_FILE,
    ANON_ONION_KEY_FILE, IDENTITY_FILE, NETWORK_KEY_FILE, ONION_KEY_FILE,
};
pub use ingest::{IngestError, IngestReport, Rejected};
pub use local_sync::{LocalSync, LocalSyncError, LOCAL_WINDOW_FRAMES};
pub use node::read_peers_file;
pub use node::{
    now_ms, IdPrefix, IdPrefixError, Node, NodeBuilder, NodeOpenError, PublishError, Published,
    ID_PREFIX_DIGITS_MIN, NODE_LOCK_FILE,
};
pub use portable::{
    ExportError, ExportWriter, ImportError, ImportReader, EXPORT_MAGIC, EXPORT_VERSION,
};
pub use reseal::{reseal, staging_dir, ResealError, Resealed};
pub use xaeroflux_event::{
    Draft, EventId, EventRef, Identity, Kind, Profile, PublicKey, Topic, VerifiedEvent, Verifier,
    VerifyError, PAYLOAD_BYTES_MAX,
};
pub use xaeroflux_net::{
    error_line, is_onion, peer_in, tor, with_peer, FileSeal, MemoryHub, Multiaddr, NetConfig,
    NetError, NetEvent, NetHandle, PeerId, Protocol, RequestId, SyncProgress, SyncRequest,
    SyncSummary, SyncWithError, TorConfig, ANON_PEERS_FILE, PEERS_FILE,
};
/// Encryption at rest: the data key, how it is wrapped (passphrase or the app's keystore),
/// and the key file.
pub use xaeroflux_store::keys::{self, KdfParams, KeyError, KeyProvider, Passphrase};
pub use xaeroflux_store::DataKey;
pub use xaeroflux_store::{
    Accum, CheckReport, Durability, Filter, FlushTicket, FollowTicket, Followed, Footprint,
    OpenError, Outcome, QueryError, ReadError, ReadTxn, SetRoot, Stats, Store, StoreOptions,
    StoredEvent, Subscription, SubscriptionError, TableStats, Thread, ThreadEntry, Ticket,
    WriteError, QUERY_LIMIT_MAX,
};
pub use xaeroflux_sync::{
    check_frame_bytes, parse_frame_bytes, LinkReport, Scope, SessionStats, SyncConfig,
    FRAME_BYTES_DEFAULT,
};
