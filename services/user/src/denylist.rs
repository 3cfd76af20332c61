//! Revoked sessions in Redis, checked by the gateway in one round trip. Postgres holds the
//! durable revocation; this is its cache. A write that fails (Redis away) is repaired by
//! [`Denylist::republish`], which a background task runs periodically.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shop_contracts::SessionId;
use shop_redis::{RedisPool, redis};

/// Writes `denylist:sid:<id>` entries that outlive every access token of the session.
#[derive(Debug, Clone)]
pub struct Denylist {
    redis: RedisPool,
    ttl: Duration,
}

impl Denylist {
    /// `access_lifetime`: after it, every token of a revoked session has expired anyway.
    pub fn new(redis: RedisPool, access_lifetime: Duration) -> Self {
        Self {
            redis,
            ttl: access_lifetime + Duration::from_secs(60),
        }
    }

    /// How far back revocations still matter.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn write(
        &self,
        entries: &[(SessionId, Duration)],
    ) -> Result<(), shop_redis::RedisUnavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (sid, ttl) in entries {
            pipe.set_ex(
                self.redis.key(&shop_auth::denylist::session_key(*sid)),
                1,
                ttl.as_secs().max(1),
            )
            .ignore();
        }
        let mut conn = self.redis.get().await?;
        pipe.query_async::<()>(&mut *conn).await?;
        Ok(())
    }

    /// Denies every token of these sessions. A failure is logged, not returned: the sessions
    /// are already revoked in Postgres and the periodic republish repairs the cache.
    pub async fn deny_sessions(&self, ids: &[SessionId]) {
        let entries: Vec<(SessionId, Duration)> = ids.iter().map(|id| (*id, self.ttl)).collect();
        if let Err(error) = self.write(&entries).await {
            tracing::warn!(
                %error,
                sessions = ids.len(),
                "denylist write failed; republish will repair it"
            );
        }
    }

    /// Re-writes recent revocations with their remaining lifetimes.
    pub async fn republish(
        &self,
        revoked: &[(SessionId, DateTime<Utc>)],
    ) -> Result<(), shop_redis::RedisUnavailable> {
        let now = Utc::now();
        let entries: Vec<(SessionId, Duration)> = revoked
            .iter()
            .filter_map(|(id, at)| {
                let age = (now - *at).to_std().unwrap_or_default();
                self.ttl.checked_sub(age).map(|left| (*id, left))
            })
            .collect();
        self.write(&entries).await
    }
}
