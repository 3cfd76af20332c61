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

/// Takes one hit back if the window still holds any (a window that ended meanwhile stays
/// ended); returns the hits left.
const UNHIT: &str = r"
local hits = tonumber(redis.call('GET', KEYS[1]) or '0')
if hits > 0 then return redis.call('DECR', KEYS[1]) end
return 0
";

const MAX_LOCAL_KEYS: usize = 100_000;

/// A hit counted before its outcome is known, given back unless [`Attempt::keep`] is called.
///
/// Counting first keeps concurrent attempts from overshooting a limit (each sees the ones in
/// flight); giving the hit back lets only some outcomes count, such as wrong passwords but
/// not a busy service. Dropping it — an early return, an error, a request cancelled when its
/// client went away — gives the hit back in the background.
#[derive(Debug)]
#[must_use = "dropping an attempt gives its hit back at once"]
pub struct Attempt {
    counter: WindowCounter,
    key: Option<String>,
    /// Counted in this process's memory (Redis was away), not in Redis.
    in_memory: bool,
}

impl Attempt {
    /// The attempt counts: its hit stays.
    pub fn keep(mut self) {
        self.key = None;
    }

    /// The attempt does not count: its hit is taken back before this returns.
    pub async fn give_back(mut self) {
        if let Some(key) = self.key.take() {
            self.counter.unhit(&key, self.in_memory).await;
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let (counter, in_memory) = (self.counter.clone(), self.in_memory);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { counter.unhit(&key, in_memory).await });
            }
            Err(_) => tracing::warn!(counter = counter.namespace, "no runtime to give a hit back"),
        }
    }
}

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

    /// Counts one hit in Redis, or in memory while Redis is away; the count including it, and
    /// whether it was counted in memory.
    async fn count_hit(&self, key: &str) -> (Count, bool) {
        match self.incr(key).await {
            Ok(count) => (count, false),
            Err(error) => {
                tracing::warn!(%error, counter = self.namespace, "redis away; counting in memory");
                (self.local_hit(key), true)
            }
        }
    }

    /// Counts one hit and returns the count including it.
    pub async fn hit(&self, key: &str) -> Count {
        self.count_hit(key).await.0
    }

    /// Counts one hit as an [`Attempt`], given back when it is dropped without
    /// [`Attempt::keep`]; returns the count including it.
    pub async fn attempt(&self, key: &str) -> (Count, Attempt) {
        let (count, in_memory) = self.count_hit(key).await;
        let attempt = Attempt {
            counter: self.clone(),
            key: Some(key.to_owned()),
            in_memory,
        };
        (count, attempt)
    }

    /// [`WindowCounter::attempt`] against `limit`: beyond it the hit is given back at once and
    /// the answer is how long until the window resets (at least a second), for `Retry-After`.
    pub async fn attempt_within(&self, key: &str, limit: u32) -> Result<Attempt, Duration> {
        let (count, attempt) = self.attempt(key).await;
        if count.hits > u64::from(limit) {
            attempt.give_back().await;
            return Err(count.resets_in.max(Duration::from_secs(1)));
        }
        Ok(attempt)
    }

    /// Takes one hit back from a key's current window, where the hit was counted.
    async fn unhit(&self, key: &str, in_memory: bool) {
        if in_memory {
            if let Some(entry) = self.lock_local().get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
            return;
        }
        let result = match self.redis.get().await {
            Ok(mut conn) => Script::new(UNHIT)
                .key(self.redis_key(key))
                .invoke_async::<u64>(&mut *conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, counter = self.namespace, "could not give a hit back");
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn counter_at(url: &str) -> WindowCounter {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "shop-test:counter:{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let redis =
            RedisPool::with_url(url, &prefix, 4, Duration::from_millis(500)).expect("a Redis URL");
        WindowCounter::new(redis, "attempts", WINDOW)
    }

    /// A counter on the machine's Redis, under a key prefix of its own.
    fn counter() -> WindowCounter {
        let settings = shop_settings::Settings::load().expect("settings load");
        counter_at(&settings.redis_url())
    }

    /// The hits now in `key`'s window (one counted and given back).
    async fn hits(counter: &WindowCounter, key: &str) -> u64 {
        let (count, attempt) = counter.attempt(key).await;
        attempt.give_back().await;
        count.hits - 1
    }

    #[tokio::test]
    async fn kept_attempts_count_and_given_back_ones_do_not() {
        let counter = counter();
        let (first, attempt) = counter.attempt("a").await;
        assert_eq!(first.hits, 1);
        assert!(first.resets_in > Duration::ZERO && first.resets_in <= WINDOW);
        attempt.keep();
        let (second, attempt) = counter.attempt("a").await;
        assert_eq!(second.hits, 2, "the kept one is still counted");
        attempt.give_back().await;
        assert_eq!(hits(&counter, "a").await, 1);
        assert_eq!(hits(&counter, "b").await, 0, "keys are counted apart");
    }

    #[tokio::test]
    async fn attempts_beyond_the_limit_are_refused_and_not_counted() {
        let counter = counter();
        counter.attempt_within("a", 2).await.expect("first").keep();
        counter.attempt_within("a", 2).await.expect("second").keep();
        let retry_after = counter
            .attempt_within("a", 2)
            .await
            .expect_err("the third is over the limit");
        assert!(
            retry_after >= Duration::from_secs(1)
                && retry_after <= WINDOW.max(Duration::from_secs(1))
        );
        assert_eq!(
            hits(&counter, "a").await,
            2,
            "the refused one was given back"
        );
    }

    #[tokio::test]
    async fn an_attempt_dropped_unsettled_is_given_back() {
        let counter = counter();
        let (count, attempt) = counter.attempt("a").await;
        assert_eq!(count.hits, 1);
        drop(attempt);
        for _ in 0..200 {
            if hits(&counter, "a").await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the dropped attempt's hit was never given back");
    }

    #[tokio::test]
    async fn concurrent_attempts_each_see_the_ones_in_flight() {
        let counter = counter();
        let attempts = futures_util::future::join_all((0..20).map(|_| counter.attempt("a"))).await;
        let mut seen: Vec<u64> = attempts.iter().map(|(count, _)| count.hits).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=20).collect::<Vec<_>>(),
            "every attempt got its own count"
        );
        futures_util::future::join_all(attempts.into_iter().map(|(_, a)| a.give_back())).await;
        assert_eq!(hits(&counter, "a").await, 0);
    }

    #[tokio::test]
    async fn giving_back_after_a_reset_leaves_the_new_window_alone() {
        let counter = counter();
        let (_, attempt) = counter.attempt("a").await;
        counter.reset("a").await;
        attempt.give_back().await;
        let (count, attempt) = counter.attempt("a").await;
        assert_eq!(count.hits, 1, "never below zero");
        attempt.keep();
    }

    #[tokio::test]
    async fn with_redis_away_attempts_count_and_are_given_back_in_memory() {
        let counter = counter_at("redis://127.0.0.1:1");
        let (first, attempt) = counter.attempt("a").await;
        assert_eq!(first.hits, 1);
        attempt.keep();
        let (second, attempt) = counter.attempt("a").await;
        assert_eq!(second.hits, 2);
        attempt.give_back().await;
        let (third, attempt) = counter.attempt("a").await;
        assert_eq!(third.hits, 2, "the given-back hit left the in-memory count");
        attempt.keep();
    }
}
