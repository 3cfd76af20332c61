//! Concurrent misses for one key share one load instead of stampeding Postgres.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};

type Inflight<K, V, E> = Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, Result<V, E>>>>>>;

/// Deduplicates concurrent loads per key within this process.
pub struct SingleFlight<K, V, E> {
    inflight: Inflight<K, V, E>,
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
        }
    }
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// Runs `load` unless a load for `key` is already under way, in which case its result is
    /// shared. The entry leaves the map when the load finishes, whoever drives it.
    pub async fn run<F>(&self, key: K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let future = {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(future) = inflight.get(&key) {
                future.clone()
            } else {
                let map = self.inflight.clone();
                let own_key = key.clone();
                let future = async move {
                    let result = load.await;
                    map.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&own_key);
                    result
                }
                .boxed()
                .shared();
                inflight.insert(key, future.clone());
                future
            }
        };
        future.await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let flight: SingleFlight<u32, u32, ()> = SingleFlight::default();
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let calls = (0..10).map(|_| {
            let (loads, gate) = (loads.clone(), gate.clone());
            flight.run(7, async move {
                loads.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(42)
            })
        });
        let all = futures_util::future::join_all(calls);
        let release = async {
            tokio::task::yield_now().await;
            gate.notify_waiters();
        };
        let (results, ()) = tokio::join!(all, release);
        assert!(results.iter().all(|r| *r == Ok(42)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Finished loads leave: the next call loads afresh.
        assert_eq!(flight.run(7, async { Ok(43) }).await, Ok(43));
    }
}
