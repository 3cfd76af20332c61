//! Sends outbox rows: events to Redis streams, commands to the service's handler.

use std::{sync::Arc, time::Duration};

use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Double, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{StreamExt, future::BoxFuture};
use rand::Rng;
use shop_db::{DbError, Pool};
use shop_redis::{RedisPool, redis};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::Kind;

/// Executes the service's commands (e.g. `stock.release` → the catalog). Must be idempotent:
/// a command may run again if its success could not be recorded.
pub trait CommandHandler: Send + Sync + 'static {
    /// Runs the command; an error is retried later with backoff.
    fn run<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Tuning of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The producing service (the `service` label of the backlog gauges).
    pub service: &'static str,
    /// `LISTEN` channel the producer notifies (an identifier, e.g. `orders_outbox`).
    pub channel: String,
    /// Database the listener connects to.
    pub database_url: String,
    /// The stream whose events are also appended to per-user streams.
    pub notifications_topic: String,
    /// Polling fallback when no wake-up arrives.
    pub poll_interval: Duration,
    /// Rows per transaction.
    pub batch_size: i64,
    /// Sent rows are deleted after this long.
    pub retention: Duration,
    /// Approximate cap of the notifications stream.
    pub notifications_max_len: u64,
    /// Approximate cap of each user's stream.
    pub user_stream_max_len: u64,
    /// A user's stream expires this long after its last event.
    pub user_stream_ttl: Duration,
    /// Longest wait between attempts of a failing row.
    pub max_backoff: Duration,
}

impl RelayConfig {
    /// From the `OUTBOX_*`, `NOTIFICATIONS_MAX_LEN` and `USER_STREAM_*` settings, for the
    /// producer `service` whose outbox notifies `channel`.
    pub fn from_settings(
        settings: &shop_settings::Settings,
        service: shop_settings::Service,
        channel: &str,
    ) -> Self {
        Self {
            service: service.name(),
            channel: channel.to_owned(),
            database_url: settings.database_url(service).to_owned(),
            notifications_topic: shop_contracts::events::NOTIFICATIONS.into(),
            poll_interval: settings.outbox_poll_interval,
            batch_size: 100,
            retention: settings.outbox_retention,
            notifications_max_len: settings.notifications_max_len,
            user_stream_max_len: settings.user_stream_max_len,
            user_stream_ttl: settings.user_stream_ttl,
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Appends ARGV[1] to KEYS[1] and, if KEYS[2] is not empty, to KEYS[2] with the same id.
const PUBLISH: &str = r"
local id
if tonumber(ARGV[2]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1])
end
if KEYS[2] ~= '' then
  -- The copy must never make the (already appended) original fail and be sent again.
  redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id, 'event', ARGV[1])
  redis.pcall('EXPIRE', KEYS[2], ARGV[4])
end
return id
";

/// The first unsent, due row of each (aggregate, kind) lane, for one kind. A lane whose head
/// is locked by another relay, or waiting for a retry, sends nothing, so its rows never
/// overtake each other.
const HEADS: &str = "
SELECT id, kind, topic, aggregate_id, user_id, payload, attempts FROM outbox o
WHERE sent_at IS NULL AND available_at <= now() AND kind = $2
  AND NOT EXISTS (
    SELECT 1 FROM outbox e
    WHERE e.aggregate_id = o.aggregate_id AND e.kind = o.kind AND e.sent_at IS NULL AND e.id < o.id)
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED";

#[derive(Debug, QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = SqlUuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    user_id: Option<Uuid>,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

const BACKLOG: &str = "SELECT count(*) AS unsent, \
     COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS oldest_seconds \
     FROM outbox WHERE sent_at IS NULL";

#[derive(Debug, QueryableByName)]
struct Backlog {
    #[diesel(sql_type = BigInt)]
    unsent: i64,
    #[diesel(sql_type = Double)]
    oldest_seconds: f64,
}

/// Relays one service's outbox.
pub struct Relay {
    pool: Pool,
    redis: RedisPool,
    handler: Arc<dyn CommandHandler>,
    config: RelayConfig,
    /// One per kind: events and commands are sent by separate loops, so a slow command
    /// target never holds up events and a backlog of events never starves commands.
    wake_events: Arc<Notify>,
    wake_commands: Arc<Notify>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Sent {
    Done,
    /// This row failed; retry it later.
    Failed(String),
    /// The destination is away: retry this row later and stop the batch.
    Away(String),
}

impl Relay {
    pub fn new(
        pool: Pool,
        redis: RedisPool,
        handler: Arc<dyn CommandHandler>,
        config: RelayConfig,
    ) -> Self {
        Self {
            pool,
            redis,
            handler,
            config,
            wake_events: Arc::new(Notify::new()),
            wake_commands: Arc::new(Notify::new()),
        }
    }

    /// Starts the two relay loops, the `LISTEN` task and the purge task.
    pub fn spawn(self, tasks: &TaskTracker, cancel: &CancellationToken) -> RelayHandle {
        let wakers = vec![self.wake_events.clone(), self.wake_commands.clone()];
        let (listening_tx, listening) = tokio::sync::watch::channel(false);
        let relay = Arc::new(self);
        tasks.spawn(listen(
            relay.config.database_url.clone(),
            relay.config.channel.clone(),
            wakers.clone(),
            listening_tx,
            cancel.clone(),
        ));
        tasks.spawn(relay.clone().purge_loop(cancel.clone()));
        tasks.spawn(relay.clone().metrics_loop(cancel.clone()));
        tasks.spawn(relay.clone().run(Kind::Event, cancel.clone()));
        tasks.spawn(relay.run(Kind::Command, cancel.clone()));
        RelayHandle { wakers, listening }
    }

    async fn run(self: Arc<Self>, kind: Kind, cancel: CancellationToken) {
        let wake = match kind {
            Kind::Event => self.wake_events.clone(),
            Kind::Command => self.wake_commands.clone(),
        };
        loop {
            let busy = match self.process_kind(kind).await {
                Ok((handled, stopped)) => handled > 0 && !stopped,
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: batch failed");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Sends one batch of each kind; returns how many rows were handled (sent or
    /// rescheduled).
    pub async fn process_batch(&self) -> Result<usize, DbError> {
        let (events, _) = self.process_kind(Kind::Event).await?;
        let (commands, _) = self.process_kind(Kind::Command).await?;
        Ok(events + commands)
    }

    /// One batch of one kind, in its own transaction. Returns the rows handled and whether
    /// the batch stopped early because the destination is away.
    ///
    /// Events go to Redis one after another, stopping at the first sign that Redis is away.
    /// Commands call other services, so a batch's calls run at once: each row heads its own
    /// lane, so none can overtake an earlier row of its lane.
    async fn process_kind(&self, kind: Kind) -> Result<(usize, bool), DbError> {
        let batch_size = match kind {
            Kind::Event => self.config.batch_size,
            // The rows stay locked while their calls run: keep command batches modest.
            Kind::Command => self.config.batch_size.min(32),
        };
        let mut conn = shop_db::conn(&self.pool).await?;
        conn.transaction::<_, DbError, _>(async |conn| {
            let rows: Vec<Row> = diesel::sql_query(HEADS)
                .bind::<BigInt, _>(batch_size)
                .bind::<Text, _>(kind.as_str())
                .load(conn)
                .await?;
            let outcomes = match kind {
                Kind::Event => {
                    let mut outcomes = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let sent = self.send(row).await;
                        let away = matches!(sent, Sent::Away(_));
                        outcomes.push(sent);
                        if away {
                            break;
                        }
                    }
                    outcomes
                }
                Kind::Command => {
                    futures_util::future::join_all(rows.iter().map(|row| self.send(row))).await
                }
            };
            let mut sent = Vec::with_capacity(outcomes.len());
            let mut stopped = false;
            for (row, outcome) in rows.iter().zip(&outcomes) {
                match outcome {
                    Sent::Done => sent.push(row.id),
                    Sent::Failed(error) => self.reschedule(conn, row, error).await?,
                    Sent::Away(error) => {
                        // The rest would fail the same way: they wait for the next pass.
                        self.reschedule(conn, row, error).await?;
                        stopped = true;
                    }
                }
            }
            mark_sent(conn, &sent).await?;
            Ok((outcomes.len(), stopped))
        })
        .await
    }

    /// Sends one row, in a span that continues the trace of whatever wrote it.
    async fn send(&self, row: &Row) -> Sent {
        let span = tracing::info_span!("outbox publish", outbox.kind = %row.kind, outbox.topic = %row.topic);
        shop_http::continue_trace(&span, row.payload["traceparent"].as_str());
        tracing::Instrument::instrument(self.send_row(row), span).await
    }

    async fn send_row(&self, row: &Row) -> Sent {
        if row.kind == "command" {
            // A failing command usually means its target is down: stop the batch.
            return match self.handler.run(&row.topic, &row.payload).await {
                Ok(()) => Sent::Done,
                Err(error) => Sent::Away(error),
            };
        }
        let mut conn = match self.redis.get().await {
            Ok(conn) => conn,
            Err(error) => return Sent::Away(error.to_string()),
        };
        match self.publish(&mut conn, row).await {
            Ok(()) => Sent::Done,
            Err(error)
                if error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal() =>
            {
                Sent::Away(error.to_string())
            }
            // Redis answered, but refused this row (e.g. a key of the wrong type).
            Err(error) => Sent::Failed(error.to_string()),
        }
    }

    async fn publish(
        &self,
        conn: &mut shop_redis::RedisConn<'_>,
        row: &Row,
    ) -> redis::RedisResult<()> {
        let notifications = row.topic == self.config.notifications_topic;
        let user_stream = match (notifications, row.user_id) {
            (true, Some(user)) => self.redis.key(&format!("{}:user:{user}", row.topic)),
            _ => String::new(),
        };
        let max_len = if notifications {
            self.config.notifications_max_len
        } else {
            0
        };
        let _id: String = redis::Script::new(PUBLISH)
            .key(self.redis.key(&row.topic))
            .key(user_stream)
            .arg(row.payload.to_string())
            .arg(max_len)
            .arg(self.config.user_stream_max_len)
            .arg(self.config.user_stream_ttl.as_secs().max(1))
            .invoke_async(&mut **conn)
            .await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        conn: &mut AsyncPgConnection,
        row: &Row,
        error: &str,
    ) -> Result<(), DbError> {
        let attempt = u32::try_from(row.attempts).unwrap_or(0).min(16);
        let base = Duration::from_millis(500)
            .saturating_mul(1 << attempt)
            .min(self.config.max_backoff);
        let delay = base.mul_f64(rand::rng().random_range(0.75..1.25));
        tracing::warn!(outbox.id = row.id, outbox.topic = %row.topic, aggregate.id = %row.aggregate_id, attempt = row.attempts + 1, ?delay, %error, "outbox row not sent; will retry");
        diesel::sql_query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
             available_at = now() + make_interval(secs => $3) WHERE id = $1",
        )
        .bind::<BigInt, _>(row.id)
        .bind::<Text, _>(error)
        .bind::<Double, _>(delay.as_secs_f64())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Samples the backlog: unsent rows and the age of the oldest.
    async fn metrics_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            if let Err(error) = self.record_backlog().await {
                tracing::debug!(%error, "outbox backlog not sampled");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    async fn record_backlog(&self) -> Result<(), DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        let backlog: Backlog = diesel::sql_query(BACKLOG).get_result(&mut conn).await?;
        let service = self.config.service;
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("shop_outbox_backlog", "service" => service).set(backlog.unsent as f64);
        metrics::gauge!("shop_outbox_oldest_age_seconds", "service" => service)
            .set(backlog.oldest_seconds);
        Ok(())
    }

    async fn purge_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(error) = self.purge().await {
                tracing::warn!(%error, "outbox purge failed");
            }
        }
    }

    /// Deletes rows sent longer than the retention ago; returns how many.
    pub async fn purge(&self) -> Result<usize, DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        Ok(diesel::sql_query(
            "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(self.config.retention.as_secs_f64())
        .execute(&mut conn)
        .await?)
    }
}

/// A started relay: wake it after commits; see whether its listener is subscribed.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    wakers: Vec<Arc<Notify>>,
    listening: tokio::sync::watch::Receiver<bool>,
}

impl RelayHandle {
    /// Wakes the relay loops at once.
    pub fn wake(&self) {
        for waker in &self.wakers {
            waker.notify_one();
        }
    }

    /// Resolves once `LISTEN` is active (at once if it already is).
    pub async fn listening(&self) {
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|on| *on).await;
    }
}

async fn mark_sent(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Wakes the relay on every `NOTIFY <channel>`, reconnecting when the connection drops.
async fn listen(
    url: String,
    channel: String,
    wakers: Vec<Arc<Notify>>,
    listening: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) {
    loop {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                if tx.send(()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .is_ok()
                {
                    // Rows committed before this point are found by the polling fallback.
                    listening.send_replace(true);
                    loop {
                        tokio::select! {
                            () = cancel.cancelled() => {
                                driver.abort();
                                return;
                            }
                            message = rx.recv() => match message {
                                Some(()) => wakers.iter().for_each(|w| w.notify_one()),
                                None => break,
                            },
                        }
                    }
                }
                listening.send_replace(false);
                driver.abort();
            }
            Err(error) => {
                tracing::debug!(%error, "outbox listener cannot connect; polling meanwhile")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
