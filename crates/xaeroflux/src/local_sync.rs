//! Reconciling with another store on the same machine: one sync session over an in-memory
//! link, each side storing what it lacked, through its own writer.

use std::time::{Duration, Instant};

use xaeroflux_store::{Accum, QueryError, ReadError, ScopedStore, SetRoot, Store, WriteError};
use xaeroflux_sync::{
    run_local, snapshot, LinkOptions, LinkReport, LocalError, Peer, Scope, SyncConfig,
};

use crate::node::{now_ms, Node};

/// Frames each side may have in flight on the in-memory link before the other reads them.
/// Larger windows open fewer read snapshots; the protocol's turns do not depend on it.
pub const LOCAL_WINDOW_FRAMES: usize = 64;

/// What a sync with another store did, and where both stores stand after it.
#[derive(Debug)]
pub struct LocalSync {
    /// Both sides' counters.
    pub report: LinkReport,
    /// The session, from the first frame to both sides finished.
    pub session: Duration,
    /// The session and the flush that made both stores durable.
    pub durable: Duration,
    /// This store's whole set afterwards.
    pub here: SetRoot,
    /// The other store's whole set afterwards.
    pub there: SetRoot,
    /// The summaries of the scope's part of each set (the whole sets' for an unscoped sync).
    pub scoped: (Accum, Accum),
}

impl LocalSync {
    /// Whether both sides now hold the same events in the scope.
    pub fn equal(&self) -> bool {
        self.scoped.0 == self.scoped.1
    }
}

/// Why a sync with another store failed. What either side stored before the failure stays
/// stored; running it again moves the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalSyncError {
    /// The scope's window is empty (`since` after `until`).
    #[error("the scope's window is empty: since is after until")]
    EmptyWindow,
    /// The other store is this store.
    #[error("the other store is this store itself")]
    SameStore,
    /// No randomness for the session salt.
    #[error("drawing a session salt: {0}")]
    Salt(String),
    /// Gathering a narrowed scope's keys failed.
    #[error("gathering the scope's keys: {0}")]
    Gather(QueryError),
    /// The session failed.
    #[error(transparent)]
    Session(#[from] LocalError),
    /// Making the received events durable failed.
    #[error("flushing a store: {0}")]
    Flush(#[from] WriteError),
    /// Reading a store's set afterwards failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A store's Merkle root and the summary of its whole set disagree: the index is damaged.
    #[error("{0}: the Merkle root and the summary of the whole set disagree (check it with `xf verify`)")]
    Inconsistent(String),
}

impl Node {
    /// Reconciles this node's store with `other` within `scope`, in one session over an
    /// in-memory link; each side verifies what it receives on this node's verifier and stores
    /// it through its own writer. Both stores are flushed before this returns.
    pub fn sync_with_store(
        &self,
        other: &Store,
        scope: &Scope,
        cfg: SyncConfig,
    ) -> Result<LocalSync, LocalSyncError> {
        if scope.lower() >= scope.upper() {
            return Err(LocalSyncError::EmptyWindow);
        }
        if other.path().canonicalize().ok() == self.store().path().canonicalize().ok() {
            return Err(LocalSyncError::SameStore);
        }
        // Clones share the writers: received events go through them like any other write.
        let mut ours = self.store().clone();
        let mut theirs = other.clone();
        let salt = getrandom::u64().map_err(|e| LocalSyncError::Salt(e.to_string()))?;
        let started = Instant::now();
        let session = |a: &mut StorePeer<'_>, b: &mut StorePeer<'_>| {
            let link = LinkOptions {
                window_frames: LOCAL_WINDOW_FRAMES,
                cut_after_frames: None,
                verifier: Some(self.verifier.clone()),
            };
            run_local(a, b, scope.clone(), cfg, salt, now_ms(), link)
        };
        let report = if scope.is_window() {
            session(&mut ours, &mut theirs)?
        } else {
            let mut a = ScopedStore::new(&ours, scope).map_err(LocalSyncError::Gather)?;
            let mut b = ScopedStore::new(&theirs, scope).map_err(LocalSyncError::Gather)?;
            session(&mut a, &mut b)?
        };
        let session = started.elapsed();
        // Received events were written with relaxed durability: make both stores durable.
        ours.sync()?;
        theirs.sync()?;
        let durable = started.elapsed();
        let (here, scoped_here) = roots(&ours, scope)?;
        let (there, scoped_there) = roots(&theirs, scope)?;
        Ok(LocalSync {
            report,
            session,
            durable,
            here,
            there,
            scoped: (scoped_here, scoped_there),
        })
    }
}

/// A store, whole or seen through a narrowed scope, as a sync peer.
type StorePeer<'s> = dyn Peer<ReadError = ReadError, WriteError = WriteError> + 's;

/// The whole set's root, and the summary of the scope's part of it (the root's own summary
/// when the scope is everything).
fn roots(store: &Store, scope: &Scope) -> Result<(SetRoot, Accum), LocalSyncError> {
    let root = store.read()?.set_root()?;
    let sum = |peer: &StorePeer<'_>| {
        snapshot(peer, |src| src.accumulate(&scope.lower(), &scope.upper()))?
    };
    let scoped = if scope.is_window() {
        sum(store)?
    } else {
        sum(&ScopedStore::new(store, scope).map_err(LocalSyncError::Gather)?)?
    };
    if *scope == Scope::all() && scoped != root.accum {
        return Err(LocalSyncError::Inconsistent(
            store.path().display().to_string(),
        ));
    }
    Ok((root, scoped))
}
