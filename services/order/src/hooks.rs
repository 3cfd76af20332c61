//! Fault injection for tests, compiled only with the `test-hooks` feature (never in the
//! images).

use std::sync::atomic::{AtomicBool, Ordering};

/// The variable that arms [`Hooks::abort_after_reserve`] in a test build of the binary.
pub const ABORT_AFTER_RESERVE_VAR: &str = "ORDER_TEST_ABORT_AFTER_RESERVE";

/// Switches tests flip to make the service misbehave at a precise point.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Stop placing an order right after the catalog reserved it, before the transaction that
    /// makes it pending, as if the process had died there.
    pub crash_after_reserve: AtomicBool,
    /// Abort the whole process there instead: a real crash at the worst moment, for tests
    /// that run the binary (`make chaos`).
    pub abort_after_reserve: AtomicBool,
}

impl Hooks {
    /// The hooks the environment arms: `ORDER_TEST_ABORT_AFTER_RESERVE=1`.
    pub fn from_env() -> Self {
        let hooks = Self::default();
        if std::env::var(ABORT_AFTER_RESERVE_VAR).is_ok_and(|v| v == "1") {
            tracing::warn!("test hook armed: the process aborts after its next reservation");
            hooks.abort_after_reserve.store(true, Ordering::SeqCst);
        }
        hooks
    }

    /// Where placing an order stands once the catalog answered (`reserved`: it holds the
    /// stock): aborts the process, or fails the request as if it had, when armed.
    pub fn after_reservation(&self, reserved: bool) -> anyhow::Result<()> {
        if reserved && self.abort_after_reserve.load(Ordering::SeqCst) {
            std::process::abort();
        }
        if self.crash_after_reserve.load(Ordering::SeqCst) {
            anyhow::bail!("test hook: crashed after reserving");
        }
        Ok(())
    }
}
