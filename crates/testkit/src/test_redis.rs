//! A random key prefix on the shared Redis, whose keys are deleted when the guard drops.

use std::time::Duration;

use shop_redis::RedisPool;

/// The shared Redis every test uses (never flushed: tests only ever touch their own prefix).
pub const SHARED_REDIS: &str = "127.0.0.1:6379";

/// A test's own slice of the shared Redis.
#[derive(Debug)]
pub struct TestRedis {
    prefix: String,
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRedis {
    /// A fresh random prefix.
    pub fn new() -> Self {
        Self {
            prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The prefix (ends with `:`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A small pool on the shared Redis using this prefix.
    pub fn pool(&self) -> RedisPool {
        RedisPool::with_url(
            &format!("redis://{SHARED_REDIS}"),
            &self.prefix,
            4,
            Duration::from_secs(2),
        )
        .unwrap()
    }
}

async fn delete_prefixed(prefix: &str) -> anyhow::Result<()> {
    let redis = RedisPool::with_url(
        &format!("redis://{SHARED_REDIS}"),
        "",
        1,
        Duration::from_secs(2),
    )?;
    let mut conn = redis.get().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = shop_redis::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut *conn)
            .await?;
        if !keys.is_empty() {
            let () = shop_redis::redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut *conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop runs outside async context; a short-lived runtime of its own does the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delete_prefixed(&prefix))
        })
        .join();
    }
}
