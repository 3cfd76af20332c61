//! bcrypt off the async workers, behind a semaphore sized to the cores with a short queue:
//! beyond it, callers get 503 + `Retry-After` instead of an ever-growing latency.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::error::UserError;

/// Longest password bcrypt uses in full.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Shortest password accepted.
pub const MIN_PASSWORD_BYTES: usize = 8;

/// Hashes and verifies passwords.
#[derive(Debug)]
pub struct Passwords {
    cost: u32,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    /// Verified against when the email is unknown, so both cases take the same time.
    dummy_hash: String,
}

/// Decrements the waiting count however the wait ends (including cancellation).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Passwords {
    /// `cost` per `BCRYPT_COST`; `queue` callers may wait once every core is busy.
    pub async fn new(cost: u32, queue: usize) -> anyhow::Result<Self> {
        let dummy_hash = tokio::task::spawn_blocking(move || {
            bcrypt::hash("a password no account has, for timing", cost)
        })
        .await
        .context("computing the timing hash")??;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            waiting: AtomicUsize::new(0),
            queue,
            dummy_hash,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let before = self.waiting.fetch_add(1, Ordering::SeqCst);
                let _waiting = Waiting(&self.waiting);
                if before >= self.queue {
                    return Err(UserError::Busy);
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .context("password semaphore closed")?
            }
        };
        actix_web::web::block(move || {
            let _permit = permit;
            job()
        })
        .await
        .context("password job failed")
        .map_err(UserError::from)
    }

    /// A bcrypt hash of `password`.
    pub async fn hash(&self, password: String) -> Result<String, UserError> {
        let cost = self.cost;
        self.run(move || bcrypt::hash(password, cost))
            .await?
            .context("hashing a password")
            .map_err(UserError::from)
    }

    /// Whether `password` matches `hash`; with no hash (unknown email) the work is done anyway
    /// against a dummy and the answer is `false`.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, UserError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let usable = password.len() <= MAX_PASSWORD_BYTES;
        let matched = self
            .run(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await?;
        Ok(known && usable && matched)
    }
}
