//! Concurrent misses for one key share one load instead of stampeding Postgres.
//!
//! Each load runs as its own task, so it finishes (and leaves the map) even if every request
//! waiting for it is cancelled; a half-done load is never left behind for later callers.
//! Writers [`SingleFlight::forget`] a key after committing, so a read that starts after an
//! acknowledged write never joins a load that started before it.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};

type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;
type Inflight<K, V, E> = Arc<Mutex<HashMap<K, (u64, Flight<V, E>)>>>;

/// Deduplicates concurrent loads per key within this process.
pub struct SingleFlight<K, V, E> {
    inflight: Inflight<K, V, E>,
    next_id: AtomicU64,
}

impl<K, V, E> std::fmt::Debug for SingleFlight<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingleFlight(..)")
    }
}

impl<K, V, E> Default for SingleFlight<K, V, E> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + From<tokio::task::JoinError> + 'static,
{
    /// Runs `load` unless a load for `key` is already under way, in which case its result is
    /// shared.
    pub async fn run<F>(&self, key: K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let flight = {
            let mut inflight = lock(&self.inflight);
            if let Some((_, flight)) = inflight.get(&key) {
                flight.clone()
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let map = self.inflight.clone();
                let own_key = key.clone();
                let task = tokio::spawn(async move {
                    let result = load.await;
                    let mut inflight = lock(&map);
                    // Only this flight's entry: a writer may have replaced it meanwhile.
                    if inflight
                        .get(&own_key)
                        .is_some_and(|(entry, _)| *entry == id)
                    {
                        inflight.remove(&own_key);
                    }
                    result
                });
                let flight = async move { task.await.unwrap_or_else(|e| Err(E::from(e))) }
                    .boxed()
                    .shared();
                inflight.insert(key, (id, flight.clone()));
                flight
            }
        };
        flight.await
    }

    /// Makes later callers start a new load for `key`.
    pub fn forget(&self, key: &K) {
        lock(&self.inflight).remove(key);
    }

    /// Makes later callers start new loads for every key.
    pub fn forget_all(&self) {
        lock(&self.inflight).clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Failed;

    impl From<tokio::task::JoinError> for Failed {
        fn from(_: tokio::task::JoinError) -> Self {
            Failed
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let flight: SingleFlight<u32, u32, Failed> = SingleFlight::default();
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let calls = (0..10).map(|_| {
            let (loads, gate) = (loads.clone(), gate.clone());
            flight.run(7, async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let _ = gate.acquire().await;
                Ok(42)
            })
        });
        let all = futures_util::future::join_all(calls);
        let release = async {
            tokio::task::yield_now().await;
            gate.add_permits(1);
        };
        let (results, ()) = tokio::join!(all, release);
        assert!(results.iter().all(|r| *r == Ok(42)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Finished loads leave: the next call loads afresh.
        assert_eq!(flight.run(7, async { Ok(43) }).await, Ok(43));
    }

    #[tokio::test]
    async fn forgotten_keys_load_afresh_and_the_old_flight_leaves_the_new_one_alone() {
        let flight: Arc<SingleFlight<u32, u32, Failed>> = Arc::default();
        let old_gate = Arc::new(tokio::sync::Semaphore::new(0));
        let new_gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (f, gate) = (flight.clone(), old_gate.clone());
        let old = tokio::spawn(async move {
            f.run(1, async move {
                let _ = gate.acquire().await;
                Ok(1)
            })
            .await
        });
        while lock(&flight.inflight).is_empty() {
            tokio::task::yield_now().await;
        }
        flight.forget(&1);
        let (f, gate) = (flight.clone(), new_gate.clone());
        let newer = tokio::spawn(async move {
            f.run(1, async move {
                let _ = gate.acquire().await;
                Ok(2)
            })
            .await
        });
        while lock(&flight.inflight).is_empty() {
            tokio::task::yield_now().await;
        }
        old_gate.add_permits(1);
        assert_eq!(old.await.expect("old flight"), Ok(1));
        // The old flight finished; the newer one must still be there to be shared.
        assert_eq!(lock(&flight.inflight).len(), 1);
        new_gate.add_permits(1);
        assert_eq!(newer.await.expect("newer flight"), Ok(2));
        assert!(lock(&flight.inflight).is_empty());
    }

    #[tokio::test]
    async fn a_load_whose_callers_all_left_still_finishes() {
        let flight: SingleFlight<u32, u32, Failed> = SingleFlight::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        let abandoned = flight.run(3, async move {
            tokio::task::yield_now().await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(3)
        });
        // Poll once so the load starts, then drop the only caller.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, abandoned).await;
        yield_until(|| finished.load(Ordering::SeqCst) == 1).await;
        assert!(
            lock(&flight.inflight).is_empty(),
            "the finished load left the map"
        );
    }

    async fn yield_until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the abandoned load never finished");
    }
}
