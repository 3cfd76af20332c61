//! Redis access shared by the binaries: a pool whose keys all carry one prefix, a windowed
//! counter and a request rate limiter, both falling back to process memory while Redis is away,
//! and a stream consumer in a consumer group.

mod connection;
mod consumer;
mod counter;
mod ratelimit;

use std::sync::Arc;

use shop_settings::Settings;

pub use connection::{Connection, Manager};
pub use consumer::{
    BatchError, EntryHandler, GroupConfig, GroupConsumer, GroupStart, consumer_name,
};
pub use counter::{Count, WindowCounter};
pub use ratelimit::{Bucket, Decision, Quota, RateLimiter};
pub use redis;

/// A connection checked out of the pool.
pub type RedisConn<'a> = bb8::PooledConnection<'a, Manager>;

/// Redis could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisUnavailable(pub String);

impl From<redis::RedisError> for RedisUnavailable {
    fn from(error: redis::RedisError) -> Self {
        RedisUnavailable(error.to_string())
    }
}

impl From<bb8::RunError<redis::RedisError>> for RedisUnavailable {
    fn from(error: bb8::RunError<redis::RedisError>) -> Self {
        RedisUnavailable(error.to_string())
    }
}

/// The pool and the prefix every key and stream name carries.
#[derive(Clone, Debug)]
pub struct RedisPool {
    pool: bb8::Pool<Manager>,
    prefix: Arc<str>,
}

impl RedisPool {
    /// Builds the pool lazily: a binary starts while Redis is down and recovers when it returns.
    pub fn new(settings: &Settings) -> Result<Self, RedisUnavailable> {
        Self::with_url(
            &settings.redis_url(),
            &settings.redis_key_prefix,
            settings.redis_pool_size,
            settings.redis_acquire_timeout,
        )
    }

    /// Builds a pool for an explicit URL and prefix. A checkout sends nothing (no `PING`): a
    /// connection that broke fails the command that found out, and the pool drops it.
    pub fn with_url(
        url: &str,
        prefix: &str,
        size: u32,
        acquire_timeout: std::time::Duration,
    ) -> Result<Self, RedisUnavailable> {
        let manager = Manager::new(url)?;
        let pool = bb8::Pool::builder()
            .max_size(size)
            .connection_timeout(acquire_timeout)
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            prefix: prefix.into(),
        })
    }

    /// The full key for a name: `<prefix><name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks out a connection (fails fast, after `REDIS_ACQUIRE_TIMEOUT`).
    pub async fn get(&self) -> Result<RedisConn<'_>, RedisUnavailable> {
        Ok(self.pool.get().await?)
    }

    /// Records the pool's size and use as gauges (`shop_redis_pool_connections{state}`).
    pub fn record_metrics(&self, service: &'static str) {
        let state = self.pool.state();
        let idle = f64::from(state.idle_connections);
        let total = f64::from(state.connections);
        metrics::gauge!("shop_redis_pool_connections", "service" => service, "state" => "idle")
            .set(idle);
        metrics::gauge!("shop_redis_pool_connections", "service" => service, "state" => "in_use")
            .set(total - idle);
    }

    /// A round trip, for diagnostics.
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        let mut conn = self.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }
}
