//! Fixed-window counters (failed logins, request rates) kept in Redis, with a per-process
//! fallback so a Redis outage degrades limits instead of failing requests.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis::Script;

use crate::RedisPool;

/// A counter's value and how long until its window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Hits in the current window.
    pub hits: u64,
    /// Time until the window resets.
    pub resets_in: Duration,
}

/// Counters under `<prefix><namespace>:<key>`.
#[derive(Clone, Debug)]
pub struct WindowCounter {
    redis: RedisPool,
    namespace: &'static str,
    window: Duration,
    local: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
}

/// Adds one and starts the window on the first hit; returns hits and milliseconds left.
const INCR: &str = r"
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {hits, ttl}
";

const MAX_LOCAL_KEYS: usize = 100_000;

impl WindowCounter {
    /// A counter family whose windows last `window`.
    pub fn new(redis: RedisPool, namespace: &'static str, window: Duration) -> Self {
        Self {
            redis,
            namespace,
            window,
            local: Arc::default(),
        }
    }

    fn redis_key(&self, key: &str) -> String {
        self.redis.key(&format!("{}:{key}", self.namespace))
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    async fn incr(&self, key: &str) -> Result<Count, crate::RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let (hits, ttl): (u64, u64) = Script::new(INCR)
            .key(self.redis_key(key))
            .arg(self.window_ms())
            .invoke_async(&mut *conn)
            .await?;
        Ok(Count {
            hits,
            resets_in: Duration::from_millis(ttl),
        })
    }

    /// Counts one hit and returns the count including it.
    pub async fn hit(&self, key: &str) -> Count {
        match self.incr(key).await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, counter = self.namespace, "redis away; counting in memory");
                self.local_hit(key)
            }
        }
    }

    /// Clears a key's count (e.g. after a successful login).
    pub async fn reset(&self, key: &str) {
        self.lock_local().remove(key);
        if let Ok(mut conn) = self.redis.get().await {
            let result: Result<(), _> = redis::cmd("DEL")
                .arg(self.redis_key(key))
                .query_async(&mut *conn)
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, counter = self.namespace, "could not reset counter");
            }
        }
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        // A poisoned lock only means another thread panicked mid-update of a counter.
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn local_hit(&self, key: &str) -> Count {
        let now = Instant::now();
        let mut local = self.lock_local();
        if local.len() >= MAX_LOCAL_KEYS {
            local.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        let entry = local.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
        Count {
            hits: entry.0,
            resets_in: self.window.saturating_sub(now.duration_since(entry.1)),
        }
    }
}
