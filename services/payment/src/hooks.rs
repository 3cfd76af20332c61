//! Fault injection for tests, compiled only with the `test-hooks` feature (never in the
//! images).

use std::sync::atomic::AtomicBool;

/// Switches tests flip to make the service misbehave at a precise point.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Store what a read of `payments.requests` brought, then never acknowledge it: as if the
    /// process died between the commit and the `XACK`.
    pub drop_acks: AtomicBool,
}
