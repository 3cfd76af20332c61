//! Request rate limits shared by every gateway instance: GCRA (the generic cell rate
//! algorithm, a sliding window without fixed-window double bursts) evaluated by one Lua script
//! on the shared pool, with a per-process limiter while Redis is away.
//!
//! A quota of `limit` requests per `period` spaces requests `period / limit` apart and allows
//! a burst of `limit`. Each key stores its theoretical arrival time (TAT) in microseconds of
//! Redis's clock; one request moves it forward by one interval, and a request is refused while
//! that would put the TAT more than one period ahead of now.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use redis::Script;

use crate::{RedisPool, RedisUnavailable};

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
}

impl Quota {
    fn period_us(self) -> u64 {
        u64::try_from(self.period.as_micros())
            .unwrap_or(u64::MAX / 4)
            .max(1)
    }

    fn interval_us(self) -> u64 {
        (self.period_us() / u64::from(self.limit.max(1))).max(1)
    }

    /// How far ahead of now the TAT may run: exactly `limit` intervals, so the burst is
    /// `limit` even when the period does not divide evenly.
    fn tolerance_us(self) -> u64 {
        self.interval_us()
            .saturating_mul(u64::from(self.limit.max(1)))
    }
}

/// One quota applied to one key (e.g. `ip:203.0.113.9` at 600 per minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub quota: Quota,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The limit of the bucket that decided (the most constrained one).
    pub limit: u32,
    /// Requests still allowed right now in that bucket.
    pub remaining: u32,
    /// Until that bucket is entirely unused again.
    pub reset: Duration,
    /// Until a refused request may be retried (zero when allowed).
    pub retry_after: Duration,
    /// Decided by this process alone because Redis was away.
    pub local: bool,
}

/// What one bucket says about one more request at `now` (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    allowed: bool,
    new_tat: u64,
    remaining: u64,
    reset_us: u64,
    retry_us: u64,
}

fn step(tat: Option<u64>, now: u64, quota: Quota) -> Step {
    let (interval, tolerance) = (quota.interval_us(), quota.tolerance_us());
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(tolerance);
    if allow_at > now {
        Step {
            allowed: false,
            new_tat: tat,
            remaining: 0,
            reset_us: tat - now,
            retry_us: allow_at - now,
        }
    } else {
        Step {
            allowed: true,
            new_tat,
            remaining: (now + tolerance - new_tat) / interval,
            reset_us: new_tat - now,
            retry_us: 0,
        }
    }
}

/// Steps every bucket; the request passes only if all allow it, and only then are the TATs
/// moved. Returns the decision and the TATs to store (empty when refused).
fn decide(tats: &[Option<u64>], now: u64, buckets: &[Bucket]) -> (Decision, Vec<u64>) {
    let steps: Vec<Step> = tats
        .iter()
        .zip(buckets)
        .map(|(tat, bucket)| step(*tat, now, bucket.quota))
        .collect();
    let refused = steps
        .iter()
        .zip(buckets)
        .filter(|(s, _)| !s.allowed)
        .max_by_key(|(s, _)| s.retry_us);
    let (deciding, bucket) = refused.unwrap_or_else(|| {
        steps
            .iter()
            .zip(buckets)
            .min_by_key(|(s, _)| s.remaining)
            .expect("at least one bucket")
    });
    let decision = Decision {
        allowed: refused.is_none(),
        limit: bucket.quota.limit,
        remaining: u32::try_from(deciding.remaining).unwrap_or(u32::MAX),
        reset: Duration::from_micros(deciding.reset_us),
        retry_after: Duration::from_micros(deciding.retry_us),
        local: false,
    };
    let store = if refused.is_none() {
        steps.iter().map(|s| s.new_tat).collect()
    } else {
        Vec::new()
    };
    (decision, store)
}

/// The same algorithm as [`decide`], atomically in Redis. `ARGV` holds (interval, tolerance)
/// in microseconds per key. Returns {allowed, index of the deciding key (1-based), remaining or
/// retry-after, reset}, times in microseconds. `string.format('%.0f')` writes TATs exactly
/// (Lua's `tostring` would round them to 14 digits).
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tats = {}
local refused, refused_wait, refused_reset = 0, -1, 0
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now and allow_at - now > refused_wait then
    refused, refused_wait, refused_reset = i, allow_at - now, tat - now
  end
  tats[i] = new_tat
end
if refused > 0 then
  return {0, refused, refused_wait, refused_reset}
end
local best, best_remaining, best_reset = 1, -1, 0
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  local remaining = math.floor((now + tolerance - tats[i]) / interval)
  if best_remaining < 0 or remaining < best_remaining then
    best, best_remaining, best_reset = i, remaining, tats[i] - now
  end
end
return {1, best, best_remaining, best_reset}
";

const MAX_LOCAL_KEYS: usize = 100_000;
/// After a Redis failure, how long requests are limited locally before Redis is tried again
/// (so an outage does not add a connection timeout to every request).
const REDIS_RETRY: Duration = Duration::from_secs(1);

/// Rate limits under `<prefix>ratelimit:<key>`.
#[derive(Debug)]
pub struct RateLimiter {
    redis: RedisPool,
    script: Script,
    epoch: Instant,
    local: Mutex<HashMap<String, u64>>,
    redis_again_at: Mutex<Option<Instant>>,
    degraded: AtomicBool,
}

impl RateLimiter {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            script: Script::new(GCRA),
            epoch: Instant::now(),
            local: Mutex::default(),
            redis_again_at: Mutex::default(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Counts one request against every bucket (it passes only if all allow it).
    pub async fn check(&self, buckets: &[Bucket]) -> Decision {
        assert!(!buckets.is_empty(), "a rate-limit check needs a bucket");
        if self.redis_due() {
            match self.check_redis(buckets).await {
                Ok(decision) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("redis is back; rate limits are shared again");
                    }
                    return decision;
                }
                Err(error) => {
                    *lock(&self.redis_again_at) = Some(Instant::now() + REDIS_RETRY);
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "redis away; rate limits are per instance until it returns");
                    }
                }
            }
        }
        metrics::counter!("shop_rate_limit_local_decisions_total").increment(1);
        self.check_local(buckets)
    }

    fn redis_due(&self) -> bool {
        let mut again_at = lock(&self.redis_again_at);
        match *again_at {
            Some(at) if Instant::now() < at => false,
            Some(_) => {
                *again_at = None;
                true
            }
            None => true,
        }
    }

    async fn check_redis(&self, buckets: &[Bucket]) -> Result<Decision, RedisUnavailable> {
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets {
            invocation
                .key(self.redis.key(&format!("ratelimit:{}", bucket.key)))
                .arg(bucket.quota.interval_us())
                .arg(bucket.quota.tolerance_us());
        }
        let mut conn = self.redis.get().await?;
        let (allowed, index, amount, reset): (u8, usize, u64, u64) =
            invocation.invoke_async(&mut *conn).await?;
        let quota = buckets
            .get(index.saturating_sub(1))
            .ok_or_else(|| RedisUnavailable(format!("rate-limit script named bucket {index}")))?
            .quota;
        let allowed = allowed == 1;
        Ok(Decision {
            allowed,
            limit: quota.limit,
            remaining: if allowed {
                u32::try_from(amount).unwrap_or(u32::MAX)
            } else {
                0
            },
            reset: Duration::from_micros(reset),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_micros(amount)
            },
            local: false,
        })
    }

    fn check_local(&self, buckets: &[Bucket]) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 4);
        let mut local = lock(&self.local);
        if local.len() >= MAX_LOCAL_KEYS {
            local.retain(|_, tat| *tat > now);
            if local.len() >= MAX_LOCAL_KEYS {
                // Bounded memory matters more than the few limits forgotten here.
                local.clear();
            }
        }
        let tats: Vec<Option<u64>> = buckets.iter().map(|b| local.get(&b.key).copied()).collect();
        let (mut decision, store) = decide(&tats, now, buckets);
        for (bucket, tat) in buckets.iter().zip(store) {
            local.insert(bucket.key.clone(), tat);
        }
        decision.local = true;
        decision
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked between two plain writes.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn bucket(key: &str, limit: u32, period_secs: u64) -> Bucket {
        Bucket {
            key: key.into(),
            quota: Quota {
                limit,
                period: Duration::from_secs(period_secs),
            },
        }
    }

    /// Feeds `count` requests at `now` through `decide`, keeping the TATs.
    fn run(
        tats: &mut Vec<Option<u64>>,
        now: u64,
        buckets: &[Bucket],
        count: usize,
    ) -> Vec<Decision> {
        (0..count)
            .map(|_| {
                let (decision, store) = decide(tats, now, buckets);
                if !store.is_empty() {
                    *tats = store.into_iter().map(Some).collect();
                }
                decision
            })
            .collect()
    }

    #[test]
    fn a_burst_of_the_limit_passes_then_requests_are_spaced() {
        let buckets = [bucket("a", 6, 60)];
        let mut tats = vec![None];
        let burst = run(&mut tats, 100 * SECOND, &buckets, 7);
        assert!(burst[..6].iter().all(|d| d.allowed));
        assert_eq!(
            burst[..6].iter().map(|d| d.remaining).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1, 0]
        );
        let refused = burst[6];
        assert!(!refused.allowed);
        // One request is earned back every 10 s.
        assert_eq!(refused.retry_after, Duration::from_secs(10));
        assert_eq!(refused.reset, Duration::from_secs(60));

        assert!(!run(&mut tats, 109 * SECOND, &buckets, 1)[0].allowed);
        let later = run(&mut tats, 110 * SECOND, &buckets, 2);
        assert!(later[0].allowed && !later[1].allowed);
    }

    #[test]
    fn the_burst_is_the_limit_when_the_period_does_not_divide() {
        // 1500 per second: an interval of 666 µs, 1 µs short of a third of the period each.
        let buckets = [Bucket {
            key: "a".into(),
            quota: Quota {
                limit: 1500,
                period: Duration::from_secs(1),
            },
        }];
        let mut tats = vec![None];
        let burst = run(&mut tats, 5 * SECOND, &buckets, 1501);
        assert_eq!(burst[0].remaining, 1499);
        assert_eq!(burst.iter().filter(|d| d.allowed).count(), 1500);
    }

    #[test]
    fn no_double_burst_across_a_window_edge() {
        // A fixed window would allow 6 at 59 s and 6 more at 61 s.
        let buckets = [bucket("a", 6, 60)];
        let mut tats = vec![None];
        let first = run(&mut tats, 59 * SECOND, &buckets, 6);
        assert!(first.iter().all(|d| d.allowed));
        let second = run(&mut tats, 61 * SECOND, &buckets, 6);
        assert_eq!(second.iter().filter(|d| d.allowed).count(), 0);
    }

    #[test]
    fn every_bucket_must_allow_and_a_refusal_moves_none() {
        let buckets = [bucket("general", 100, 60), bucket("auth", 2, 60)];
        let mut tats = vec![None, None];
        let decisions = run(&mut tats, 10 * SECOND, &buckets, 3);
        assert!(decisions[0].allowed && decisions[1].allowed);
        // The tighter bucket is the one reported.
        assert_eq!((decisions[1].limit, decisions[1].remaining), (2, 0));
        assert!(!decisions[2].allowed);
        assert_eq!(decisions[2].limit, 2);
        assert_eq!(decisions[2].retry_after, Duration::from_secs(30));
        // The refused request did not count in the general bucket: 98 left there.
        let general = run(&mut vec![tats[0]], 10 * SECOND, &buckets[..1], 1)[0];
        assert_eq!(general.remaining, 97);
    }
}
