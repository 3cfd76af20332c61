//! The sockets of one instance and the tail of `notifications` that feeds them.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use shop_contracts::UserId;
use shop_redis::{RedisPool, redis};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Open sockets on this instance.
fn record_connections(count: usize) {
    metrics::gauge!("shop_websocket_connections").set(count as f64);
}

/// A stream entry id, compared numerically.
pub(super) fn entry_id(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

struct Subscriber {
    user_id: UserId,
    all: bool,
    tx: mpsc::Sender<(String, Arc<str>)>,
}

/// How this instance keeps its sockets.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Events waiting for one socket (`WS_QUEUE`); past it, the socket is closed with 4408.
    pub queue: usize,
    /// A socket silent this long is closed (`WS_IDLE_TIMEOUT`); it is pinged every third.
    pub idle_timeout: Duration,
    /// How often a socket checks its session (`WS_CHECK_INTERVAL`).
    pub check_interval: Duration,
}

impl SocketLimits {
    pub fn from_settings(settings: &shop_settings::Settings) -> Self {
        Self {
            queue: settings.ws_queue,
            idle_timeout: settings.ws_idle_timeout,
            check_interval: settings.ws_check_interval,
        }
    }
}

/// The sockets of this instance and the tail of `notifications`.
pub struct Hub {
    redis: RedisPool,
    redis_url: String,
    limits: SocketLimits,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(redis: RedisPool, redis_url: String, limits: SocketLimits) -> Self {
        // Exported from the start, before the first socket and the first overflow.
        record_connections(0);
        metrics::counter!("shop_websocket_overflows_total").increment(0);
        Self {
            redis,
            redis_url,
            limits,
            subscribers: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The Redis pool shared with the rest of the gateway.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    /// How its sockets are kept.
    pub(super) fn limits(&self) -> SocketLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn subscribe(
        &self,
        user_id: UserId,
        all: bool,
    ) -> (u64, mpsc::Receiver<(String, Arc<str>)>) {
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.lock();
        subscribers.insert(id, Subscriber { user_id, all, tx });
        record_connections(subscribers.len());
        (id, rx)
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.lock();
        subscribers.remove(&id);
        record_connections(subscribers.len());
    }

    /// Pushes one entry to every interested socket; a full queue drops that subscriber
    /// (its socket then closes), a slow client never holds up the others.
    fn dispatch(&self, id: &str, raw: &str) {
        let Ok(event) = serde_json::from_str::<Value>(raw) else {
            return;
        };
        let span = tracing::info_span!("notification", stream.entry = id);
        shop_http::continue_trace(&span, event["traceparent"].as_str());
        let _entered = span.enter();
        let user: Option<UserId> = event["userId"].as_str().and_then(|u| u.parse().ok());
        let text: Arc<str> = json!({"type": "event", "id": id, "event": event})
            .to_string()
            .into();
        let mut subscribers = self.lock();
        subscribers.retain(|_, sub| {
            if !(sub.all || Some(sub.user_id) == user) {
                return true;
            }
            let sent = sub.tx.try_send((id.to_owned(), text.clone())).is_ok();
            if !sent {
                metrics::counter!("shop_websocket_overflows_total").increment(1);
            }
            sent
        });
        record_connections(subscribers.len());
    }

    /// Tails `notifications` from now on until cancelled, reconnecting after failures.
    pub async fn tail(self: Arc<Self>, cancel: CancellationToken) {
        let stream = self.redis.key(shop_contracts::events::NOTIFICATIONS);
        let mut last = "$".to_owned();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                result = self.follow(&stream, &mut last) => {
                    let Err(error) = result;
                    tracing::warn!(%error, "notifications tail lost redis; reconnecting");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Dispatches the entries of `stream` after `last` on a connection of its own, moving
    /// `last` on, until Redis fails.
    async fn follow(&self, stream: &str, last: &mut String) -> redis::RedisResult<Infallible> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        loop {
            let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(5000)
                .arg("STREAMS")
                .arg(stream)
                .arg(&*last)
                .query_async(&mut conn)
                .await?;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                if let Some(raw) = entry.get::<String>("event") {
                    self.dispatch(&entry.id, &raw);
                }
                *last = entry.id;
            }
        }
    }

    /// Entries after `since` in `stream` (`None`: older than what is kept, resync).
    pub(super) async fn replay(
        &self,
        stream: &str,
        since: &str,
    ) -> Result<Option<Vec<(String, String)>>, shop_redis::RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let key = self.redis.key(stream);
        let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *conn)
            .await?;
        let Some(first) = first.ids.first() else {
            return Ok(None);
        };
        if entry_id(&first.id) > entry_id(since) && first.id != since {
            // Entries between `since` and the oldest kept one may be gone.
            let follows_directly =
                entry_id(since).is_some_and(|(ms, seq)| entry_id(&first.id) == Some((ms, seq + 1)));
            if !follows_directly {
                return Ok(None);
            }
        }
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({since}"))
            .arg("+")
            .query_async(&mut *conn)
            .await?;
        Ok(Some(
            entries
                .ids
                .into_iter()
                .filter_map(|e| {
                    let raw: Option<String> = e.get("event");
                    raw.map(|raw| (e.id, raw))
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::entry_id;

    #[test]
    fn entry_ids_compare_numerically() {
        assert!(entry_id("1700-10") > entry_id("1700-9"));
        assert!(entry_id("1701-0") > entry_id("1700-99"));
        assert_eq!(entry_id("nope"), None);
    }
}
