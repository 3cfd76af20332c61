//! bcrypt on threads of its own, one per core, fed from one queue: a thread that finishes a
//! hash takes the next job at once, so no core waits for the async runtime to hand it work
//! (measured: with a semaphore around `spawn_blocking`, each handoff left a core idle for a
//! moment, about 5% of the machine under a stream of logins). At most `queue` callers wait
//! once every thread is busy; beyond that, callers get 503 + `Retry-After` instead of an
//! ever-growing latency. A job whose caller has gone (the client hung up) is skipped.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
    mpsc,
};

use anyhow::Context;
use tokio::sync::oneshot;

use crate::error::UserError;

/// Longest password bcrypt uses in full.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Shortest password accepted.
pub const MIN_PASSWORD_BYTES: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords.
#[derive(Debug)]
pub struct Passwords {
    cost: u32,
    /// The threads' queue; they stop when it is dropped.
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running.
    in_flight: Arc<AtomicUsize>,
    /// Most jobs queued or running: the threads, and the callers that may wait.
    capacity: usize,
    /// Verified against when the email is unknown, so both cases take the same time.
    dummy_hash: String,
}

/// Counts a job out of [`Passwords::in_flight`] however it ends (run, skipped or dropped).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Passwords {
    /// `cost` per `BCRYPT_COST`; `queue` callers may wait once every thread is busy.
    pub async fn new(cost: u32, queue: usize) -> anyhow::Result<Self> {
        let dummy_hash = tokio::task::spawn_blocking(move || {
            bcrypt::hash("a password no account has, for timing", cost)
        })
        .await
        .context("computing the timing hash")??;
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .context("starting a bcrypt thread")?;
        }
        Ok(Self {
            cost,
            jobs,
            in_flight: Arc::default(),
            capacity: threads + queue,
            dummy_hash,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let taken = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.in_flight.clone());
        if taken >= self.capacity {
            return Err(UserError::Busy);
        }
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = slot;
            if !answer.is_closed() {
                let _ = answer.send(job());
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password threads stopped"))?;
        answered
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failure should fail the test loudly.
mod tests {
    use std::{
        sync::atomic::AtomicBool,
        time::{Duration, Instant},
    };

    use super::*;

    /// A gate the jobs of a test wait at until it opens.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Gate {
        fn wait(&self) {
            let (open, opened) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }

        fn open(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn beyond_the_threads_and_the_queue_callers_are_told_busy() {
        let passwords = Arc::new(Passwords::new(4, 2).await.unwrap());
        let full = passwords.capacity;
        let gate = Gate::default();
        let waiting: Vec<_> = (0..full)
            .map(|_| {
                let (passwords, gate) = (passwords.clone(), gate.clone());
                tokio::spawn(async move { passwords.run(move || gate.wait()).await })
            })
            .collect();
        until("every thread busy and the queue full", || {
            passwords.in_flight.load(Ordering::SeqCst) == full
        })
        .await;
        assert!(matches!(passwords.run(|| ()).await, Err(UserError::Busy)));
        assert_eq!(
            passwords.in_flight.load(Ordering::SeqCst),
            full,
            "refused, not counted"
        );
        gate.open();
        for job in waiting {
            assert!(job.await.unwrap().is_ok());
        }
        until("every job counted out", || {
            passwords.in_flight.load(Ordering::SeqCst) == 0
        })
        .await;
        assert!(passwords.run(|| ()).await.is_ok(), "room again");
    }

    #[tokio::test]
    async fn a_job_whose_caller_hung_up_is_not_run() {
        let passwords = Arc::new(Passwords::new(4, 4).await.unwrap());
        let threads = passwords.capacity - 4;
        let gate = Gate::default();
        let busy: Vec<_> = (0..threads)
            .map(|_| {
                let (passwords, gate) = (passwords.clone(), gate.clone());
                tokio::spawn(async move { passwords.run(move || gate.wait()).await })
            })
            .collect();
        until("every thread busy", || {
            passwords.in_flight.load(Ordering::SeqCst) == threads
        })
        .await;
        let ran = Arc::new(AtomicBool::new(false));
        let abandoned = {
            let (passwords, ran) = (passwords.clone(), ran.clone());
            tokio::spawn(async move {
                passwords
                    .run(move || ran.store(true, Ordering::SeqCst))
                    .await
            })
        };
        until("the job queued", || {
            passwords.in_flight.load(Ordering::SeqCst) == threads + 1
        })
        .await;
        // The client hangs up: the request's future is dropped while its job waits.
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        gate.open();
        for job in busy {
            assert!(job.await.unwrap().is_ok());
        }
        until("every job counted out", || {
            passwords.in_flight.load(Ordering::SeqCst) == 0
        })
        .await;
        assert!(!ran.load(Ordering::SeqCst), "nobody waits for it: not run");
    }

    #[tokio::test]
    async fn hashes_verify_and_an_unknown_email_costs_a_verification_too() {
        let passwords = Passwords::new(4, 2).await.unwrap();
        let hash = passwords.hash("a good password".into()).await.unwrap();
        assert!(
            passwords
                .verify("a good password".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("a bad password".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("a good password".into(), None)
                .await
                .unwrap()
        );
    }
}
