//! Workloads and reference stores for measuring Xaeroflux.
//!
//! - [`generate`]: a deterministic, streamed synthetic social graph of signed events.
//! - [`PlainHeed`] and [`Sqlite`]: baselines that `xf-bench` and the criterion benches run
//!   beside the real store, in the same process, on the same events.
//! - [`Layout`]: the store's tables copied in plain heed, to cost each table alone.
//! - [`CountingAlloc`]: a global allocator that counts allocations in a measured section.
//! - [`median_ns`], [`percentile`], [`Timer`]: timing summaries.
//! - [`netsim`]: the seeded loss-and-delay relay that network tests put between nodes.
//! - [`procfs`]: a node's child processes, from `/proc`.
//!
//! The baselines and the table layout need the `baselines` feature (on by default): without it
//! the crate holds neither SQLite nor a second LMDB binding, as `xf` uses it (the generator).
//!
//! Unsafe code is denied except in two places that need it: opening the LMDB environment and
//! the counting allocator.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod alloc_count;
#[cfg(feature = "baselines")]
mod baseline;
mod gen;
#[cfg(feature = "baselines")]
mod layout;
pub mod netsim;
pub mod procfs;
mod stats;

pub use alloc_count::{allocated_bytes, allocations, counting, CountingAlloc};
#[cfg(feature = "baselines")]
pub use baseline::{BaselineError, PlainHeed, Sqlite};
pub use gen::{
    generate, generate_vec, identity_for, topic_for, GenParams, START_MS_DEFAULT, TOPICS,
};
#[cfg(feature = "baselines")]
pub use layout::{Layout, LayoutTable, PutOrder};
pub use stats::{median_ns, per_second, percentile, written_bytes, Timer};

/// A randomised test's seed: the variable `var` from the environment if it is set (to replay a
/// run), else drawn from the clock. The caller prints it, with the variable that replays it.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
