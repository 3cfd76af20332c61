//! Sends outbox rows: events to Redis streams, commands to the service's handler.

use std::{collections::HashMap, sync::Arc, time::Duration};

use diesel::{
    QueryableByName,
    sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, de::DeserializeOwned};
use shop_db::{DbError, Pool, prepared};
use shop_redis::{RedisPool, redis};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use crate::{
    Kind,
    wake::{RelayHandle, Signals, subscribe},
};

/// A command row handed to a [`CommandHandler`], its payload decoded.
#[derive(Debug, Clone)]
pub struct Command<C> {
    /// The row's id: commands of one aggregate come in id order.
    pub id: i64,
    /// The command's name (e.g. `stock.release`).
    pub topic: String,
    /// Its ordering lane.
    pub aggregate_id: Uuid,
    pub payload: C,
}

/// What became of one row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<E = String> {
    /// Sent (or executed): never again.
    Done,
    /// Not sent: retried later, with backoff.
    Failed(E),
    /// Not tried, because an earlier row of its lane failed: it waits for that row.
    Skipped,
}

/// Executes the service's commands (e.g. `stock.release` → the catalog). Must be idempotent: a
/// command may run again if its success could not be recorded.
pub trait CommandHandler: Send + Sync + 'static {
    /// The payload of its commands, as [`crate::NewMessage::command`] wrote it. A row that does
    /// not decode fails (and holds up its lane) without reaching the handler.
    type Command: DeserializeOwned + Send + Sync;
    /// Why a command failed (kept on its row as text, and retried).
    type Error: std::fmt::Display + Send;

    /// Runs a batch (in id order; each aggregate's commands in order) and returns one outcome
    /// per command. A failed command must stop the later commands of its aggregate
    /// ([`run_lanes`] does that for handlers that run commands one at a time).
    ///
    /// `conn` is the relay's transaction, which commits with the rows' sent marks and does not
    /// wait for its WAL flush: only bookkeeping that running the command again restores may be
    /// written there. Anything that must not be lost commits on its own connection before this
    /// returns.
    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        commands: &'a [Command<Self::Command>],
    ) -> BoxFuture<'a, Vec<Outcome<Self::Error>>>;
}

/// Runs each aggregate's commands in order with `run`, the aggregates at once; after a failure
/// the rest of that aggregate's commands are skipped.
pub async fn run_lanes<'a, C, E, F, Fut>(commands: &'a [Command<C>], run: F) -> Vec<Outcome<E>>
where
    F: Fn(&'a Command<C>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_of: HashMap<Uuid, usize> = HashMap::new();
    for (index, command) in commands.iter().enumerate() {
        let lane = *lane_of.entry(command.aggregate_id).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push(index);
    }
    let run = &run;
    let ran = futures_util::future::join_all(lanes.into_iter().map(|lane| async move {
        let mut outcomes = Vec::with_capacity(lane.len());
        let mut failed = false;
        for index in lane {
            let outcome = if failed {
                Outcome::Skipped
            } else {
                match run(&commands[index]).await {
                    Ok(()) => Outcome::Done,
                    Err(error) => {
                        failed = true;
                        Outcome::Failed(error)
                    }
                }
            };
            outcomes.push((index, outcome));
        }
        outcomes
    }))
    .await;
    let mut outcomes: Vec<Outcome<E>> = (0..commands.len()).map(|_| Outcome::Skipped).collect();
    for (index, outcome) in ran.into_iter().flatten() {
        outcomes[index] = outcome;
    }
    outcomes
}

/// A [`CommandHandler`] behind its payload type: decodes the rows, runs the ones that decode,
/// and gives the relay each row's outcome with its error as text.
trait RawHandler: Send + Sync {
    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        rows: &'a [Row],
    ) -> BoxFuture<'a, Vec<Outcome>>;
}

struct Decoding<H>(Arc<H>);

impl<H: CommandHandler> RawHandler for Decoding<H> {
    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        rows: &'a [Row],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut outcomes: Vec<Outcome> = vec![Outcome::Skipped; rows.len()];
            let mut commands = Vec::with_capacity(rows.len());
            let mut positions = Vec::with_capacity(rows.len());
            // A lane stops at its first row that does not decode.
            let mut stopped: Vec<Uuid> = Vec::new();
            for (index, row) in rows.iter().enumerate() {
                if stopped.contains(&row.aggregate_id) {
                    continue;
                }
                match H::Command::deserialize(&row.payload) {
                    Ok(payload) => {
                        commands.push(Command {
                            id: row.id,
                            topic: row.topic.clone(),
                            aggregate_id: row.aggregate_id,
                            payload,
                        });
                        positions.push(index);
                    }
                    Err(error) => {
                        outcomes[index] = Outcome::Failed(format!(
                            "command {} does not decode: {error}",
                            row.topic
                        ));
                        stopped.push(row.aggregate_id);
                    }
                }
            }
            if commands.is_empty() {
                return outcomes;
            }
            let ran = self.0.run(conn, &commands).await;
            for (index, outcome) in positions.into_iter().zip(ran) {
                outcomes[index] = match outcome {
                    Outcome::Done => Outcome::Done,
                    Outcome::Failed(error) => Outcome::Failed(error.to_string()),
                    Outcome::Skipped => Outcome::Skipped,
                };
            }
            outcomes
        })
    }
}

/// Tuning of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The producing service (the `service` label of the backlog gauges, and the name of its
    /// wake-up channel).
    pub service: &'static str,
    /// Redis for other instances' wake-ups (a subscription needs a connection of its own).
    pub redis_url: String,
    /// The stream whose events are also appended to per-user streams.
    pub notifications_topic: String,
    /// Polling fallback when no wake-up arrives.
    pub poll_interval: Duration,
    /// Lanes (aggregates) per batch.
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
    /// How long Redis remembers the last event published per aggregate, so that a batch sent
    /// again after its answer was lost publishes nothing twice.
    pub dedup_window: Duration,
    /// Other instances are told of new rows at most this often per kind.
    pub wake_throttle: Duration,
}

impl RelayConfig {
    /// From the `OUTBOX_*`, `NOTIFICATIONS_MAX_LEN` and `USER_STREAM_*` settings, for the
    /// producer `service`.
    pub fn from_settings(
        settings: &shop_settings::Settings,
        service: shop_settings::Service,
    ) -> Self {
        Self {
            service: service.name(),
            redis_url: settings.redis_url(),
            notifications_topic: shop_contracts::events::NOTIFICATIONS.into(),
            poll_interval: settings.outbox_poll_interval,
            batch_size: 100,
            retention: settings.outbox_retention,
            notifications_max_len: settings.notifications_max_len,
            user_stream_max_len: settings.user_stream_max_len,
            user_stream_ttl: settings.user_stream_ttl,
            max_backoff: Duration::from_secs(60),
            dedup_window: Duration::from_secs(300),
            wake_throttle: Duration::from_millis(100),
        }
    }
}

/// Publishes one event: appends ARGV[3] to KEYS[1] and, if KEYS[2] is not empty, to KEYS[2]
/// with the same id, unless its lane (KEYS[3], the last row id published for the aggregate)
/// says it went out already, or that the lane's previous row of this batch (ARGV[2]) did not.
/// Row ids stay far below 2^53, so Lua's numbers compare them exactly.
const PUBLISH: &str = r"
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if last >= tonumber(ARGV[1]) then
  return 'duplicate'
end
if ARGV[2] ~= '' and last < tonumber(ARGV[2]) then
  return 'blocked'
end
local id
if tonumber(ARGV[4]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[3])
else
  id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[3])
end
if KEYS[2] ~= '' then
  -- The copy must never make the (already appended) original fail and be sent again.
  redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], id, 'event', ARGV[3])
  redis.pcall('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[7])
return id
";

/// The due lanes of one kind, their heads locked (the lock holds the lane: another relay skips
/// the head and, finding an earlier unsent row, every row behind it), with each head's
/// followers, in id order. A lane whose head waits for a retry sends nothing, so its rows
/// never overtake each other.
const LANES: &str = "
WITH heads AS (
    SELECT o.id, o.aggregate_id FROM outbox o
    WHERE o.sent_at IS NULL AND o.available_at <= now() AND o.kind = $2
      AND NOT EXISTS (
        SELECT 1 FROM outbox e
        WHERE e.aggregate_id = o.aggregate_id AND e.kind = o.kind AND e.sent_at IS NULL
          AND e.id < o.id)
    ORDER BY o.id
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED)
SELECT o.id, o.topic, o.aggregate_id, o.user_id, o.payload, o.attempts, o.id = h.id AS head
FROM heads h
JOIN outbox o ON o.aggregate_id = h.aggregate_id AND o.kind = $2 AND o.sent_at IS NULL
    AND o.id >= h.id
ORDER BY o.id";

/// Whether a pass would find anything: what a poll asks first, so a quiet outbox costs one
/// read and no transaction.
const DUE: &str = "SELECT EXISTS (SELECT 1 FROM outbox \
     WHERE sent_at IS NULL AND available_at <= now() AND kind = $1) AS due";

const MARK_SENT: &str = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1)";

const RESCHEDULE: &str = "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error, \
     available_at = now() + make_interval(secs => f.delay) \
     FROM unnest($1::int8[], $2::text[], $3::float8[]) AS f(id, error, delay) WHERE o.id = f.id";

#[derive(Debug, QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
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
    #[diesel(sql_type = Bool)]
    head: bool,
}

#[derive(Debug, QueryableByName)]
struct Due {
    #[diesel(sql_type = Bool)]
    due: bool,
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

/// What one pass did.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    /// Rows sent or rescheduled.
    handled: usize,
    /// Whether every lane it could take was taken: there may be more.
    full: bool,
}

/// Relays one service's outbox.
pub struct Relay {
    pool: Pool,
    redis: RedisPool,
    handler: Arc<dyn RawHandler>,
    config: RelayConfig,
    script: redis::Script,
    /// One per kind: events and commands are sent by separate loops, so a slow command target
    /// never holds up events and a backlog of events never starves commands.
    signals: Arc<Signals>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new<H: CommandHandler>(
        pool: Pool,
        redis: RedisPool,
        handler: Arc<H>,
        config: RelayConfig,
    ) -> Self {
        let signals = Arc::new(Signals::new(
            redis.clone(),
            config.service,
            config.wake_throttle,
        ));
        Self {
            pool,
            redis,
            handler: Arc::new(Decoding(handler)),
            config,
            script: redis::Script::new(PUBLISH),
            signals,
        }
    }

    /// A handle that wakes other instances' relays (and this one's, once spawned) without
    /// starting any loop: for a writer that leaves the relaying to others.
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            signals: self.signals.clone(),
            subscribed: tokio::sync::watch::channel(false).1,
        }
    }

    /// Starts the two relay loops, the subscription to other instances' wake-ups, the purge
    /// and the backlog sampler.
    pub fn spawn(self, tasks: &TaskTracker, cancel: &CancellationToken) -> RelayHandle {
        let (subscribed_tx, subscribed) = tokio::sync::watch::channel(false);
        let relay = Arc::new(self);
        tasks.spawn(subscribe(
            relay.config.redis_url.clone(),
            relay.signals.clone(),
            subscribed_tx,
            cancel.clone(),
        ));
        tasks.spawn(relay.clone().purge_loop(cancel.clone()));
        tasks.spawn(relay.clone().metrics_loop(cancel.clone()));
        tasks.spawn(relay.clone().run(Kind::Event, cancel.clone()));
        tasks.spawn(relay.clone().run(Kind::Command, cancel.clone()));
        RelayHandle {
            signals: relay.signals.clone(),
            subscribed,
        }
    }

    /// One kind's loop: a pass after every wake-up (and at start, for rows left from before),
    /// again while passes come back full; when nothing wakes it, a poll that asks first whether
    /// anything is due.
    async fn run(self: Arc<Self>, kind: Kind, cancel: CancellationToken) {
        let signal = self.signals.of(kind);
        let mut look = true;
        loop {
            if look {
                signal.take();
                match self.pass(kind).await {
                    Ok(pass) if pass.full => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "outbox relay: batch failed"),
                }
            }
            look = tokio::select! {
                () = cancel.cancelled() => return,
                woken = signal.wait(self.config.poll_interval) => woken || self.due(kind).await,
            };
        }
    }

    async fn due(&self, kind: Kind) -> bool {
        let due = async {
            let mut conn = shop_db::conn(&self.pool).await?;
            let due: Due = prepared(DUE)
                .bind::<Text, _>(kind.as_str())
                .get_result(&mut conn)
                .await?;
            Ok::<_, DbError>(due.due)
        };
        // Unknown (the database is away): a pass will say so.
        due.await.unwrap_or(true)
    }

    /// Sends one batch of each kind; returns how many rows were handled (sent or
    /// rescheduled).
    pub async fn process_batch(&self) -> Result<usize, DbError> {
        let events = self.pass(Kind::Event).await?;
        let commands = self.pass(Kind::Command).await?;
        Ok(events.handled + commands.handled)
    }

    /// One batch of one kind, in one transaction.
    async fn pass(&self, kind: Kind) -> Result<Pass, DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        // The transaction only marks rows sent (or when to try again): lost in a crash, its
        // rows go out again and the readers see nothing twice (events are deduplicated per
        // aggregate in Redis, commands are idempotent). So its commit need not wait for disk.
        shop_db::transaction_unflushed(&mut conn, async |conn| {
            let rows: Vec<Row> = prepared(LANES)
                .bind::<BigInt, _>(self.config.batch_size)
                .bind::<Text, _>(kind.as_str())
                .load(conn)
                .await?;
            if rows.is_empty() {
                return Ok(Pass::default());
            }
            let heads = rows.iter().filter(|r| r.head).count();
            let outcomes = match kind {
                Kind::Event => self.publish(&rows).await,
                Kind::Command => {
                    let span = tracing::info_span!("outbox commands", outbox.rows = rows.len());
                    tracing::Instrument::instrument(self.handler.run(conn, &rows), span).await
                }
            };
            let handled = self.record(conn, &rows, &outcomes).await?;
            Ok(Pass {
                handled,
                full: i64::try_from(heads).unwrap_or(i64::MAX) >= self.config.batch_size
                    && !outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))),
            })
        })
        .await
    }

    /// Publishes a batch of events in one pipeline, each lane in order. An answer lost after
    /// Redis ran the pipeline leaves every row to be sent again, and the lanes' marks make that
    /// harmless.
    async fn publish(&self, rows: &[Row]) -> Vec<Outcome> {
        // A span per event, in the trace of whatever wrote it, open until Redis answers.
        let _spans: Vec<tracing::Span> = rows
            .iter()
            .map(|row| {
                let span = tracing::info_span!(
                    "outbox publish",
                    outbox.topic = %row.topic,
                    outbox.id = row.id
                );
                shop_http::continue_trace(&span, row.payload["traceparent"].as_str());
                span
            })
            .collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.load_script(&self.script);
        let mut previous: HashMap<Uuid, i64> = HashMap::new();
        let notifications_max_len = self.config.notifications_max_len;
        for row in rows {
            let notifications = row.topic == self.config.notifications_topic;
            let user_stream = match (notifications, row.user_id) {
                (true, Some(user)) => self.redis.key(&format!("{}:user:{user}", row.topic)),
                _ => String::new(),
            };
            let after = previous
                .insert(row.aggregate_id, row.id)
                .map(|id| id.to_string())
                .unwrap_or_default();
            let mut invocation = self.script.prepare_invoke();
            invocation
                .key(self.redis.key(&row.topic))
                .key(user_stream)
                .key(self.redis.key(&format!(
                    "outbox:{}:lane:{}",
                    self.config.service, row.aggregate_id
                )))
                .arg(row.id)
                .arg(after)
                .arg(row.payload.to_string())
                .arg(if notifications {
                    notifications_max_len
                } else {
                    0
                })
                .arg(self.config.user_stream_max_len)
                .arg(self.config.user_stream_ttl.as_secs().max(1))
                .arg(self.config.dedup_window.as_secs().max(1));
            pipe.invoke_script(&invocation);
        }
        let answers: redis::RedisResult<Vec<redis::RedisResult<String>>> = async {
            let mut conn = self.redis.get().await.map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Io, "no connection", e.0))
            })?;
            pipe.query_async(&mut *conn).await
        }
        .await;
        match answers {
            // The first answer is the script's load.
            Ok(answers) if answers.len() == rows.len() + 1 => answers
                .into_iter()
                .skip(1)
                .map(|answer| match answer {
                    Ok(answer) if answer == "blocked" => Outcome::Skipped,
                    Ok(_) => Outcome::Done,
                    // Redis ran it and refused (e.g. a key of the wrong type).
                    Err(error) => Outcome::Failed(error.to_string()),
                })
                .collect(),
            Ok(answers) => {
                let error = format!("{} answers to {} events", answers.len(), rows.len());
                vec![Outcome::Failed(error); rows.len()]
            }
            // Redis away, or the answer lost: all again later.
            Err(error) => vec![Outcome::Failed(error.to_string()); rows.len()],
        }
    }

    /// Marks what was sent and reschedules what failed (a lane's later rows wait behind it),
    /// pipelined. Returns how many rows it changed.
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        rows: &[Row],
        outcomes: &[Outcome],
    ) -> Result<usize, DbError> {
        let mut sent = Vec::new();
        let (mut failed, mut errors, mut delays) = (Vec::new(), Vec::new(), Vec::new());
        let mut blocked: Vec<Uuid> = Vec::new();
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Outcome::Done => sent.push(row.id),
                // Only the first failure of a lane is rescheduled; the rows behind it wait.
                Outcome::Failed(_) | Outcome::Skipped if blocked.contains(&row.aggregate_id) => {}
                Outcome::Failed(error) => {
                    blocked.push(row.aggregate_id);
                    failed.push(row.id);
                    errors.push(error.as_str());
                    delays.push(self.backoff(row.attempts).as_secs_f64());
                }
                Outcome::Skipped => blocked.push(row.aggregate_id),
            }
        }
        if let Some(error) = errors.as_slice().first() {
            tracing::warn!(
                outbox.rows = failed.len(),
                outbox.first_id = failed[0],
                %error,
                "outbox rows not sent; will retry"
            );
        }
        let conn: &AsyncPgConnection = conn;
        let mark = async {
            if sent.is_empty() {
                return Ok(0);
            }
            prepared(MARK_SENT)
                .bind::<Array<BigInt>, _>(&sent)
                .execute(&mut &*conn)
                .await
        };
        let reschedule = async {
            if failed.is_empty() {
                return Ok(0);
            }
            prepared(RESCHEDULE)
                .bind::<Array<BigInt>, _>(&failed)
                .bind::<Array<Text>, _>(&errors)
                .bind::<Array<Double>, _>(&delays)
                .execute(&mut &*conn)
                .await
        };
        let (sent, rescheduled) = futures_util::future::try_join(mark, reschedule).await?;
        Ok(sent + rescheduled)
    }

    /// 0.5 s doubling per attempt, up to `max_backoff`, with ±25% jitter.
    fn backoff(&self, attempts: i32) -> Duration {
        let attempt = u32::try_from(attempts).unwrap_or(0).min(16);
        let base = Duration::from_millis(500)
            .saturating_mul(1 << attempt)
            .min(self.config.max_backoff);
        base.mul_f64(rand::rng().random_range(0.75..1.25))
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
        let backlog: Backlog = prepared(BACKLOG).get_result(&mut conn).await?;
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
        Ok(
            prepared("DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)")
                .bind::<Double, _>(self.config.retention.as_secs_f64())
                .execute(&mut conn)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(aggregate: Uuid, id: i64) -> Command<()> {
        Command {
            id,
            topic: "t".into(),
            aggregate_id: aggregate,
            payload: (),
        }
    }

    #[tokio::test]
    async fn lanes_run_in_order_and_stop_at_their_first_failure() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let commands = [command(a, 1), command(b, 2), command(a, 3), command(a, 4)];
        let outcomes = run_lanes(&commands, |c| async move {
            if c.id == 3 {
                Err("down".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(
            outcomes,
            [
                Outcome::Done,
                Outcome::Done,
                Outcome::Failed("down".into()),
                Outcome::Skipped
            ]
        );
    }
}
