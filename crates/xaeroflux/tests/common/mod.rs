//! What several facade tests share.
#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;

use xaeroflux::{KdfParams, Passphrase};
use zeroize::Zeroizing;

/// A passphrase with cheap costs: the tests check the flow, not Argon2id's cost.
pub fn pass(secret: &str) -> Arc<Passphrase> {
    Arc::new(Passphrase::with_params(
        Zeroizing::new(secret.into()),
        KdfParams {
            memory_kib: 256,
            iterations: 1,
            lanes: 1,
        },
    ))
}
