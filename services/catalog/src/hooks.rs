//! Fault injection for tests, compiled only with the `test-hooks` feature (never in the
//! images).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::broadcast::Listening;

/// Switches tests flip to make the service misbehave at a precise point.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Drop everything the cache broadcast delivers (ticks included), as if the link that
    /// carries it were lost while Redis itself still answers.
    pub lose_broadcasts: AtomicBool,
}

impl Listening for Hooks {
    fn deaf(&self) -> bool {
        self.lose_broadcasts.load(Ordering::SeqCst)
    }
}
