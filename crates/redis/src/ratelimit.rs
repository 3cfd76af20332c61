//! Request rate limits shared by every gateway instance: GCRA (the generic cell rate
//! algorithm, a sliding window without fixed-window double bursts) evaluated by one Lua script
//! on the shared pool, with a per-process limiter while Redis is away.
//!
//! A quota of `limit` requests per `period` spaces requests `period / limit` apart and allows
//! a burst of `limit`. Each key stores its theoretical arrival time (TAT) in microseconds of
//! Redis's clock; one request moves it forward by one interval, and a request is refused while
//! that would put the TAT more than one period ahead of now.
//!
//! Tokens are leased in blocks: a request that finds no token of its own asks Redis for up to
//! [`Quota::block`] at once (a fiftieth of the limit, 1 to 1000) and the instance spends them
//! on the following requests of that key, for at most [`LEASE_LIFETIME`]. Only what Redis
//! granted is ever spent, so the tolerance across `n` instances is one block each way: a
//! client may be refused up to `(n − 1) × (block − 1)` requests early (tokens other instances
//! hold and have not spent), and over any window it may be admitted up to `n × block` beyond
//! the limit (a lease spent up to a second after it was taken). Limits under 100 have a block
//! of one: every request asks Redis, and the limit is exact.

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

    /// Tokens leased from Redis at once: a fiftieth of the limit, 1 to 1000.
    pub fn block(self) -> u32 {
        (self.limit / 50).clamp(1, 1000)
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

/// The same algorithm as [`decide`], atomically in Redis, taking up to a block of tokens per
/// key. `ARGV` holds (interval, tolerance, tokens wanted) per key, times in microseconds.
/// Every key must have room for one token, or nothing moves. Returns {0, index of the deciding
/// key (1-based), retry-after, reset} when refused, else 1 and, per key, {tokens granted,
/// remaining after them, reset}. `string.format('%.0f')` writes TATs exactly (Lua's `tostring`
/// would round them to 14 digits).
const LEASE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tats, grants = {}, {}
local refused, refused_wait, refused_reset = 0, -1, 0
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local room = math.floor((now + tolerance - tat) / interval)
  if room < 1 then
    local wait = tat + interval - tolerance - now
    if wait > refused_wait then
      refused, refused_wait, refused_reset = i, wait, tat - now
    end
  end
  grants[i] = math.min(tonumber(ARGV[3 * i]), room)
  tats[i] = tat + grants[i] * interval
end
if refused > 0 then
  return {0, refused, refused_wait, refused_reset}
end
local answer = {1}
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  answer[#answer + 1] = grants[i]
  answer[#answer + 1] = math.floor((now + tolerance - tats[i]) / interval)
  answer[#answer + 1] = tats[i] - now
end
return answer
";

/// How long leased tokens may be spent.
pub const LEASE_LIFETIME: Duration = Duration::from_secs(1);

/// Tokens of one key this instance was granted and has not spent.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    /// What the shared bucket had left once they were taken.
    shared_remaining: u32,
    /// When the shared bucket is entirely unused again, as of the grant.
    reset_at: Instant,
    expires: Instant,
}

impl Lease {
    fn usable(&self, now: Instant) -> bool {
        self.tokens > 0 && now < self.expires
    }
}

/// What Redis said to a lease request.
enum Leased {
    /// Per key asked for: tokens granted, remaining after them, reset.
    Granted(Vec<(u32, u32, Duration)>),
    Refused(Decision),
}

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
    leases: Mutex<HashMap<String, Lease>>,
    redis_again_at: Mutex<Option<Instant>>,
    degraded: AtomicBool,
}

impl RateLimiter {
    pub fn new(redis: RedisPool) -> Self {
        // Exported at zero from the start, so that the first local decision is a change.
        metrics::counter!("shop_rate_limit_local_decisions_total").increment(0);
        Self {
            redis,
            script: Script::new(LEASE),
            epoch: Instant::now(),
            local: Mutex::default(),
            leases: Mutex::default(),
            redis_again_at: Mutex::default(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Counts one request against every bucket (it passes only if all allow it).
    pub async fn check(&self, buckets: &[Bucket]) -> Decision {
        assert!(!buckets.is_empty(), "a rate-limit check needs a bucket");
        // Leased tokens first; Redis for the buckets without one (a concurrent request may
        // spend a token meanwhile, so this can take another round).
        for _ in 0..3 {
            let missing = match self.spend_leased(buckets) {
                Ok(decision) => return decision,
                Err(missing) => missing,
            };
            if !self.redis_due() {
                break;
            }
            match self.lease(buckets, &missing).await {
                Ok(Leased::Granted(grants)) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("redis is back; rate limits are shared again");
                    }
                    self.keep(buckets, &missing, &grants);
                }
                Ok(Leased::Refused(decision)) => return decision,
                Err(error) => {
                    *lock(&self.redis_again_at) = Some(Instant::now() + REDIS_RETRY);
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            %error,
                            "redis away; rate limits are per instance until it returns"
                        );
                    }
                    break;
                }
            }
        }
        metrics::counter!("shop_rate_limit_local_decisions_total").increment(1);
        self.check_local(buckets)
    }

    /// Spends one leased token of every bucket, or returns (spending nothing) the indexes of
    /// the buckets without one.
    fn spend_leased(&self, buckets: &[Bucket]) -> Result<Decision, Vec<usize>> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        let missing: Vec<usize> = buckets
            .iter()
            .enumerate()
            .filter(|(_, bucket)| !leases.get(&bucket.key).is_some_and(|l| l.usable(now)))
            .map(|(index, _)| index)
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        let mut tightest: Option<Decision> = None;
        for bucket in buckets {
            let Some(lease) = leases.get_mut(&bucket.key) else {
                continue;
            };
            lease.tokens -= 1;
            let remaining = lease.shared_remaining.saturating_add(lease.tokens);
            if tightest.is_none_or(|d| remaining < d.remaining) {
                tightest = Some(Decision {
                    allowed: true,
                    limit: bucket.quota.limit,
                    remaining,
                    reset: lease.reset_at.saturating_duration_since(now),
                    retry_after: Duration::ZERO,
                    local: false,
                });
            }
        }
        tightest.ok_or_else(|| (0..buckets.len()).collect())
    }

    /// Adds what Redis granted to this instance's leases.
    fn keep(&self, buckets: &[Bucket], missing: &[usize], grants: &[(u32, u32, Duration)]) {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        if leases.len() >= MAX_LOCAL_KEYS {
            leases.retain(|_, lease| lease.usable(now));
        }
        for (&index, &(granted, shared_remaining, reset)) in missing.iter().zip(grants) {
            let lease = leases.entry(buckets[index].key.clone()).or_insert(Lease {
                tokens: 0,
                shared_remaining,
                reset_at: now,
                expires: now,
            });
            if now >= lease.expires {
                lease.tokens = 0;
            }
            lease.tokens = lease.tokens.saturating_add(granted);
            lease.shared_remaining = shared_remaining;
            lease.reset_at = now + reset;
            lease.expires = now + LEASE_LIFETIME;
        }
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

    /// Asks Redis for a block of tokens of each of `missing`'s buckets.
    async fn lease(
        &self,
        buckets: &[Bucket],
        missing: &[usize],
    ) -> Result<Leased, RedisUnavailable> {
        let mut invocation = self.script.prepare_invoke();
        for &index in missing {
            let bucket = &buckets[index];
            invocation
                .key(self.redis.key(&format!("ratelimit:{}", bucket.key)))
                .arg(bucket.quota.interval_us())
                .arg(bucket.quota.tolerance_us())
                .arg(bucket.quota.block());
        }
        let mut conn = self.redis.get().await?;
        let answer: Vec<u64> = invocation.invoke_async(&mut *conn).await?;
        let unexpected = || RedisUnavailable(format!("rate-limit script answered {answer:?}"));
        match answer.as_slice() {
            [0, index, retry, reset] => {
                let deciding = usize::try_from(*index).unwrap_or(0).saturating_sub(1);
                let quota = missing
                    .get(deciding)
                    .and_then(|&i| buckets.get(i))
                    .ok_or_else(unexpected)?
                    .quota;
                Ok(Leased::Refused(Decision {
                    allowed: false,
                    limit: quota.limit,
                    remaining: 0,
                    reset: Duration::from_micros(*reset),
                    retry_after: Duration::from_micros(*retry),
                    local: false,
                }))
            }
            [1, grants @ ..] if grants.len() == 3 * missing.len() => Ok(Leased::Granted(
                grants
                    .chunks_exact(3)
                    .map(|grant| {
                        (
                            u32::try_from(grant[0]).unwrap_or(u32::MAX),
                            u32::try_from(grant[1]).unwrap_or(u32::MAX),
                            Duration::from_micros(grant[2]),
                        )
                    })
                    .collect(),
            )),
            _ => Err(unexpected()),
        }
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
    fn blocks_are_a_fiftieth_of_the_limit_and_small_limits_stay_exact() {
        let block = |limit| {
            Quota {
                limit,
                period: Duration::from_secs(60),
            }
            .block()
        };
        assert_eq!(
            [
                block(0),
                block(10),
                block(99),
                block(600),
                block(1_000_000_000)
            ],
            [1, 1, 1, 12, 1000]
        );
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
        // Each allowed request's bucket is unused again one interval per request later.
        assert_eq!(burst[0].reset, Duration::from_secs(10));
        assert_eq!(burst[5].reset, Duration::from_secs(60));

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

    /// Against the machine's Redis, each test under a prefix of its own.
    mod shared {
        use std::sync::atomic::AtomicU32;

        use super::*;

        fn pool(url: &str) -> RedisPool {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let prefix = format!(
                "shop-test:ratelimit:{}-{}-{}:",
                std::process::id(),
                Instant::now().elapsed().as_nanos(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            RedisPool::with_url(url, &prefix, 4, Duration::from_millis(500)).expect("a Redis URL")
        }

        fn redis() -> RedisPool {
            let settings = shop_settings::Settings::load().expect("settings load");
            pool(&settings.redis_url())
        }

        fn minute(key: &str, limit: u32) -> Bucket {
            bucket(key, limit, 60)
        }

        fn tokens(limiter: &RateLimiter, key: &str) -> u32 {
            lock(&limiter.leases)
                .get(key)
                .map_or(0, |lease| lease.tokens)
        }

        #[tokio::test]
        async fn a_small_limit_is_exact_across_instances() {
            let redis = redis();
            let (a, b) = (RateLimiter::new(redis.clone()), RateLimiter::new(redis));
            let buckets = [minute("ip:203.0.113.9", 5)];
            let mut decisions = Vec::new();
            for n in 0..6 {
                let limiter = if n % 2 == 0 { &a } else { &b };
                decisions.push(limiter.check(&buckets).await);
            }
            assert!(
                decisions.iter().all(|d| !d.local && d.limit == 5),
                "{decisions:?}"
            );
            assert!(decisions[..5].iter().all(|d| d.allowed));
            assert_eq!(
                decisions[..5]
                    .iter()
                    .map(|d| d.remaining)
                    .collect::<Vec<_>>(),
                [4, 3, 2, 1, 0]
            );
            let refused = decisions[5];
            assert!(!refused.allowed);
            // One request is earned back every 12 s; the bucket is unused a minute on.
            assert!(refused.retry_after > Duration::from_secs(11), "{refused:?}");
            assert!(
                refused.retry_after <= Duration::from_secs(12),
                "{refused:?}"
            );
            assert!(refused.reset > Duration::from_secs(59), "{refused:?}");
        }

        #[tokio::test]
        async fn a_block_is_leased_once_and_spent_here() {
            let redis = redis();
            let (a, b) = (RateLimiter::new(redis.clone()), RateLimiter::new(redis));
            // 500 a minute: blocks of 10.
            let buckets = [minute("user:1", 500)];
            let first = a.check(&buckets).await;
            assert!(first.allowed && !first.local);
            assert_eq!(tokens(&a, "user:1"), 9, "a block of 10, one spent");
            assert_eq!(first.remaining, 499, "490 shared plus 9 held here");
            assert!(first.reset > Duration::ZERO && first.reset <= Duration::from_secs(60));
            let rest: Vec<Decision> = checks(&a, &buckets, 9).await;
            assert_eq!(
                rest.iter().map(|d| d.remaining).collect::<Vec<_>>(),
                (490..499).rev().collect::<Vec<u32>>()
            );
            assert!(rest.iter().all(|d| d.allowed && d.reset > Duration::ZERO));
            assert_eq!(tokens(&a, "user:1"), 0);
            // The other instance finds the first block taken in Redis.
            let other = b.check(&buckets).await;
            assert_eq!(other.remaining, 489, "480 shared plus 9 held there");
        }

        async fn checks(limiter: &RateLimiter, buckets: &[Bucket], count: usize) -> Vec<Decision> {
            let mut decisions = Vec::with_capacity(count);
            for _ in 0..count {
                decisions.push(limiter.check(buckets).await);
            }
            decisions
        }

        #[tokio::test]
        async fn the_tightest_bucket_decides_and_reports() {
            let limiter = RateLimiter::new(redis());
            let buckets = [minute("ip:a", 1000), minute("auth:a", 3)];
            let decisions = checks(&limiter, &buckets, 4).await;
            assert!(decisions[..3].iter().all(|d| d.allowed && d.limit == 3));
            assert_eq!(
                decisions[..3]
                    .iter()
                    .map(|d| d.remaining)
                    .collect::<Vec<_>>(),
                [2, 1, 0]
            );
            assert!(!decisions[3].allowed && decisions[3].limit == 3);
            assert!(!decisions[3].local);
        }

        #[tokio::test]
        async fn without_redis_each_instance_limits_alone_and_waits_before_asking_again() {
            // Nothing listens on port 1: every connection is refused at once.
            let limiter = RateLimiter::new(pool("redis://127.0.0.1:1"));
            let buckets = [minute("ip:b", 3)];
            let decisions = checks(&limiter, &buckets, 4).await;
            assert!(decisions.iter().all(|d| d.local), "{decisions:?}");
            assert!(decisions[..3].iter().all(|d| d.allowed));
            assert!(!decisions[3].allowed);
            assert!(!limiter.redis_due(), "Redis is not asked again at once");
        }

        #[tokio::test]
        async fn redis_is_asked_again_once_the_pause_is_over() {
            let limiter = RateLimiter::new(pool("redis://127.0.0.1:1"));
            assert!(limiter.redis_due(), "no failure yet");
            *lock(&limiter.redis_again_at) = Some(Instant::now() + Duration::from_secs(60));
            assert!(!limiter.redis_due());
            *lock(&limiter.redis_again_at) = Some(Instant::now() - Duration::from_millis(1));
            assert!(limiter.redis_due());
            assert_eq!(*lock(&limiter.redis_again_at), None, "the pause is over");
        }

        #[test]
        fn a_lease_is_usable_while_it_has_tokens_and_time() {
            let now = Instant::now();
            let lease = |tokens, expires| Lease {
                tokens,
                shared_remaining: 0,
                reset_at: now,
                expires,
            };
            let later = now + Duration::from_secs(1);
            assert!(lease(1, later).usable(now));
            assert!(!lease(0, later).usable(now));
            assert!(!lease(1, now).usable(now));
            assert!(!lease(1, now).usable(later));
        }

        #[tokio::test]
        async fn tokens_of_an_expired_lease_are_not_kept_with_new_ones() {
            let limiter = RateLimiter::new(pool("redis://127.0.0.1:1"));
            let buckets = [minute("user:2", 500)];
            let past = Instant::now() - Duration::from_secs(5);
            lock(&limiter.leases).insert(
                "user:2".into(),
                Lease {
                    tokens: 7,
                    shared_remaining: 100,
                    reset_at: past,
                    expires: past,
                },
            );
            let before = Instant::now();
            limiter.keep(&buckets, &[0], &[(10, 480, Duration::from_secs(2))]);
            let lease = lock(&limiter.leases)["user:2"];
            assert_eq!((lease.tokens, lease.shared_remaining), (10, 480));
            assert!(lease.reset_at >= before + Duration::from_secs(2));
            assert!(lease.expires >= before + LEASE_LIFETIME);
        }

        #[tokio::test]
        async fn the_local_table_forgets_what_has_passed_when_full() {
            let limiter = RateLimiter::new(pool("redis://127.0.0.1:1"));
            // A TAT an hour ahead is live; one at zero has passed.
            let live =
                u64::try_from(limiter.epoch.elapsed().as_micros()).unwrap_or(0) + 3600 * SECOND;
            {
                let mut local = lock(&limiter.local);
                for n in 0..MAX_LOCAL_KEYS {
                    let tat = if n % 5 < 3 { live } else { 0 };
                    local.insert(format!("k{n}"), tat);
                }
            }
            assert!(limiter.check_local(&[minute("fresh", 10)]).allowed);
            assert_eq!(lock(&limiter.local).len(), MAX_LOCAL_KEYS * 3 / 5 + 1);

            // All live and still full: the table starts again.
            {
                let mut local = lock(&limiter.local);
                for n in 0..MAX_LOCAL_KEYS {
                    local.insert(format!("k{n}"), live);
                }
            }
            assert!(limiter.check_local(&[minute("fresh", 10)]).local);
            assert_eq!(lock(&limiter.local).len(), 1);
        }
    }
}
