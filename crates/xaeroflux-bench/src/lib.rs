//! Workloads and reference stores for measuring Xaeroflux.
//!
//! - [`generate`]: a deterministic, streamed synthetic social graph of signed events.
//! - [`PlainHeed`] and [`Sqlite`]: baselines that `xf bench` and the criterion benches run
//!   beside the real store, in the same process, on the same events.
//! - [`Layout`]: the store's tables copied in plain heed, to cost each table alone.
//! - [`CountingAlloc`]: a global allocator that counts allocations in a measured section.
//! - [`median_ns`], [`percentile`], [`Timer`]: timing summaries.
//!
//! Unsafe code is denied except in two places that need it: opening the LMDB environment and
//! the counting allocator.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod alloc_count;
mod baseline;
mod gen;
mod layout;
mod stats;

pub use alloc_count::{allocated_bytes, allocations, counting, CountingAlloc};
pub use baseline::{BaselineError, PlainHeed, Sqlite};
pub use gen::{
    generate, generate_vec, identity_for, topic_for, GenParams, START_MS_DEFAULT, TOPICS,
};
pub use layout::{Layout, LayoutTable, PutOrder};
pub use stats::{median_ns, per_second, percentile, written_bytes, Timer};
