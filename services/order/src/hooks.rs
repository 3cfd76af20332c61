//! Fault injection for tests, compiled only with the `test-hooks` feature (never in the
//! images).

use std::sync::atomic::AtomicBool;

/// Switches tests flip to make the service misbehave at a precise point.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Stop placing an order right after the catalog reserved it, before the transaction that
    /// makes it pending, as if the process had died there.
    pub crash_after_reserve: AtomicBool,
}
