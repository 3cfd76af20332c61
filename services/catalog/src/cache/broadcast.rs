//! The broadcast between catalog instances, one Redis channel:
//! - `p <id> <revision> <json>`: a product as a writer stored it (`null` once deleted);
//! - `l <generation>`: listings changed;
//! - `t`: a tick, sent by every instance three times per bound, that shows the subscription
//!   delivers (see [`super::memory::Freshness`]).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use shop_contracts::ProductId;
use shop_redis::redis;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Cache,
    memory::{Memory, ProductEntry},
};

/// The longest wait for Redis to accept a subscription.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before subscribing again after the subscription was lost.
const RETRY: Duration = Duration::from_millis(500);

/// Applies one message to the in-process level.
pub fn receive(memory: &Memory, payload: &[u8]) {
    let mut parts = payload.splitn(4, |&b| b == b' ');
    match parts.next() {
        Some(b"p") => {
            let id = parts
                .next()
                .and_then(|id| Uuid::try_parse_ascii(id).ok().map(ProductId));
            let revision = parts
                .next()
                .and_then(|r| std::str::from_utf8(r).ok()?.parse::<i64>().ok());
            if let (Some(id), Some(revision), Some(json)) = (id, revision, parts.next()) {
                let body = super::body(Bytes::copy_from_slice(json));
                let entry = ProductEntry::new(revision, body, std::time::Instant::now());
                memory.install_product(id, entry);
            }
        }
        Some(b"l") => {
            let generation = parts
                .next()
                .and_then(|g| std::str::from_utf8(g).ok()?.parse().ok());
            if let Some(generation) = generation {
                memory.learn_generation(generation);
            }
        }
        _ => {}
    }
    memory.freshness().heard();
}

/// Whether messages are applied (tests switch it off to lose the broadcast).
pub trait Listening: Send + Sync + 'static {
    fn deaf(&self) -> bool;
}

impl Listening for () {
    fn deaf(&self) -> bool {
        false
    }
}

/// Listens on the channel until cancelled, subscribing again whenever the subscription is
/// lost; meanwhile entries are trusted for the bound after their own check only.
pub async fn listen(
    cache: Arc<Cache>,
    redis_url: String,
    listening: Arc<dyn Listening>,
    cancel: CancellationToken,
) {
    loop {
        let outcome = subscribed(&cache, &redis_url, listening.as_ref(), &cancel).await;
        cache.memory().freshness().unsubscribed();
        match outcome {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(
                    %error,
                    "catalog cache broadcast lost; entries re-validate after the bound"
                );
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn subscribed(
    cache: &Cache,
    redis_url: &str,
    listening: &dyn Listening,
    cancel: &CancellationToken,
) -> redis::RedisResult<()> {
    let connect = async {
        let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
        pubsub.subscribe(cache.channel()).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| timed_out("subscribing"))??;
    let memory = cache.memory();
    memory.freshness().subscribed();
    // Ticks arrive three times per bound; a much longer silence means a dead link.
    let silence = (memory.freshness().bound() * 10).max(Duration::from_secs(1));
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            message = tokio::time::timeout(silence, messages.next()) => message,
        };
        let message = message
            .map_err(|_| timed_out("listening"))?
            .ok_or_else(|| timed_out("the subscription closed while listening"))?;
        if !listening.deaf() {
            receive(memory, message.get_payload_bytes());
        }
    }
}

fn timed_out(during: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "no answer", during.to_owned()))
}

/// Sends a tick three times per bound until cancelled.
pub async fn tick(cache: Arc<Cache>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(cache.memory().freshness().bound() / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let sent = async {
            let mut conn = cache.redis().get().await?;
            let _: i64 = redis::cmd("PUBLISH")
                .arg(cache.channel())
                .arg("t")
                .query_async(&mut *conn)
                .await?;
            Ok::<_, shop_redis::RedisUnavailable>(())
        }
        .await;
        if let Err(error) = sent {
            tracing::trace!(%error, "catalog cache tick not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::cache::memory::{Freshness, Lookup};

    #[test]
    fn announcements_install_products_and_generations() {
        let memory = Memory::new(
            Arc::new(Freshness::new(Duration::from_secs(5))),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let id = ProductId::new();
        receive(&memory, format!("p {id} 4 {{\"name\":\"a b\"}}").as_bytes());
        let Lookup::Fresh(entry) = memory.product(&id) else {
            panic!("announced products are held");
        };
        assert_eq!(entry.revision, 4);
        assert_eq!(entry.body.as_deref(), Some(&b"{\"name\":\"a b\"}"[..]));
        receive(&memory, format!("p {id} 5 null").as_bytes());
        let Lookup::Fresh(entry) = memory.product(&id) else {
            panic!("deleted products are held as gone");
        };
        assert!(entry.body.is_none());
        receive(&memory, b"l 9");
        assert_eq!(memory.generation(), 9);
        receive(&memory, b"t");
        receive(&memory, b"p not-an-id 1 {}");
        let started = Instant::now();
        assert!(memory.freshness().trusts(started));
    }
}
