//! Reads `payments.requests` with a consumer group: a request creates the payment (once per
//! order), a cancel stops it. Each read is taken in one transaction and its entries are
//! acknowledged after that commit, in one `XACK`; a new payment is leased as it is inserted,
//! so its first attempt starts at once. Entries left
//! pending on a dead consumer are reclaimed (`XAUTOCLAIM`); unparseable entries, and entries
//! delivered too often, go to `payments.dead` with the reason. The stream is trimmed, but never
//! past its oldest pending entry.
//!
//! Blocking reads use a connection of their own without a response timeout (pooled
//! connections time out after 500 ms and would stall everything queued behind the read).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use shop_contracts::{
    PaymentStatus,
    events::{Envelope, Event, PaymentEvent, PaymentRequested},
};
use shop_db::DbError;
use shop_outbox::Written;
use shop_redis::redis::{
    self, AsyncConnectionConfig,
    aio::MultiplexedConnection,
    streams::{
        StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
        StreamReadReply,
    },
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    AppState, events,
    models::{NewPayment, Payment},
    repo,
};

const GROUP: &str = "payments";
const READ_COUNT: usize = 50;
const BLOCK_MS: usize = 1000;

/// One consumer of the group.
#[derive(Debug)]
pub struct Consumer {
    pub state: AppState,
    pub redis_url: String,
    /// Prefixed stream names.
    pub stream: String,
    pub dead: String,
    /// This consumer's name in the group.
    pub name: String,
    pub max_deliveries: usize,
    pub reclaim_idle: Duration,
    /// Entries sent to `payments.dead` by this instance.
    pub dead_letters: AtomicU64,
}

impl Consumer {
    /// Consumes until cancelled, reconnecting after failures.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match self.session(&cancel).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        consumer = %self.name,
                        "payments.requests consumer lost redis; reconnecting"
                    )
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn session(&self, cancel: &CancellationToken) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.ensure_group(&mut conn).await?;
        let maintenance_every = (self.reclaim_idle / 2).max(Duration::from_millis(500));
        let mut last_maintenance: Option<Instant> = None;
        loop {
            if last_maintenance.is_none_or(|at| at.elapsed() >= maintenance_every) {
                self.reclaim(&mut conn).await?;
                self.trim(&mut conn).await?;
                last_maintenance = Some(Instant::now());
            }
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.name)
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            let read = command.query_async::<Option<StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                reply = read => reply,
            };
            match reply {
                Ok(Some(reply)) => {
                    let entries = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                    self.process(&mut conn, entries).await?;
                }
                Ok(None) => {}
                // Redis lost its data (or the group was deleted): make it again.
                Err(error) if error.code() == Some("NOGROUP") => {
                    tracing::warn!("consumer group missing; re-creating it");
                    self.ensure_group(&mut conn).await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Creates the group (and the stream) unless it exists; reads from the beginning.
    async fn ensure_group(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
            _ => Ok(()),
        }
    }

    /// Takes a read's entries: the unparseable go to `payments.dead`, the rest into Postgres
    /// in one transaction (one at a time if that fails on its data, so that one bad entry
    /// holds up no other), and whatever was handled is acknowledged at once.
    async fn process(
        &self,
        conn: &mut MultiplexedConnection,
        entries: Vec<StreamId>,
    ) -> redis::RedisResult<()> {
        let mut handled: Vec<String> = Vec::with_capacity(entries.len());
        let mut work: Vec<(String, Work)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let raw: Option<String> = entry.get("event");
            match parse(raw.as_deref()) {
                Ok(item) => work.push((entry.id, item)),
                Err(reason) => {
                    self.dead_letter(conn, &entry.id, raw.as_deref().unwrap_or(""), &reason)
                        .await?;
                    handled.push(entry.id);
                }
            }
        }
        // A span per entry, in the trace of the request that wrote it, open while it is taken.
        let _spans: Vec<tracing::Span> = work.iter().map(|(_, w)| w.span()).collect();
        let items: Vec<&Work> = work.iter().map(|(_, w)| w).collect();
        match self.take(&items).await {
            Ok(()) => handled.extend(work.into_iter().map(|(id, _)| id)),
            Err(DbError::Query(error)) if work.len() > 1 => {
                tracing::warn!(
                    %error,
                    entries = work.len(),
                    "payment requests not stored as a batch; one at a time"
                );
                for (id, item) in work {
                    match self.take(&[&item]).await {
                        Ok(()) => handled.push(id),
                        Err(error) => {
                            tracing::warn!(
                                %error,
                                entry = %id,
                                "payment request not stored yet; it will be delivered again"
                            );
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    entries = work.len(),
                    "payment requests not stored yet; they will be delivered again"
                );
            }
        }
        self.ack(conn, &handled).await
    }

    async fn ack(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[String],
    ) -> redis::RedisResult<()> {
        #[cfg(feature = "test-hooks")]
        if self
            .state
            .hooks
            .drop_acks
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(ids)
            .query_async::<()>(conn)
            .await
    }

    async fn dead_letter(
        &self,
        conn: &mut MultiplexedConnection,
        id: &str,
        raw: &str,
        reason: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(&self.dead)
            .arg("*")
            .arg("reason")
            .arg(reason)
            .arg("source_id")
            .arg(id)
            .arg("event")
            .arg(raw)
            .query_async::<String>(conn)
            .await?;
        let total = self.dead_letters.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("shop_stream_dead_letters_total", "stream" => "payments.requests")
            .increment(1);
        tracing::warn!(
            entry = id,
            reason,
            dead_letters = total,
            "entry moved to payments.dead"
        );
        Ok(())
    }

    /// Dead-letters entries delivered too often, then claims what other (dead) consumers left.
    async fn reclaim(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let idle_ms = u64::try_from(self.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(100)
            .query_async(conn)
            .await?;
        for stuck in pending
            .ids
            .iter()
            .filter(|p| p.times_delivered >= self.max_deliveries)
        {
            let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(&stuck.id)
                .arg(&stuck.id)
                .query_async(conn)
                .await?;
            let raw: Option<String> = entries.ids.first().and_then(|e| e.get("event"));
            let reason = format!(
                "delivered {} times without being handled",
                stuck.times_delivered
            );
            self.dead_letter(conn, &stuck.id, raw.as_deref().unwrap_or(""), &reason)
                .await?;
            self.ack(conn, std::slice::from_ref(&stuck.id)).await?;
        }
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.name)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(READ_COUNT)
            .query_async(conn)
            .await?;
        for entry in &claimed.claimed {
            tracing::info!(entry = %entry.id, "reclaimed an entry another consumer left pending");
        }
        if !claimed.claimed.is_empty() {
            self.process(conn, claimed.claimed).await?;
        }
        Ok(())
    }

    /// Drops entries every consumer is done with: below the oldest pending entry, or below
    /// what the group has read when nothing is pending.
    async fn trim(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .query_async(conn)
            .await?;
        let floor = match summary {
            (count, Some(oldest), _, _) if count > 0 => Some(oldest),
            _ => {
                let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&self.stream)
                    .query_async(conn)
                    .await?;
                groups
                    .groups
                    .into_iter()
                    .find(|g| g.name == GROUP)
                    .map(|g| g.last_delivered_id)
            }
        };
        if let Some(floor) = floor.filter(|id| id != "0-0") {
            redis::cmd("XTRIM")
                .arg(&self.stream)
                .arg("MINID")
                .arg("~")
                .arg(floor)
                .query_async::<u64>(conn)
                .await?;
        }
        Ok(())
    }

    /// Stores a read's requests and cancels in one transaction, in stream order; after the
    /// commit the payments leased with their insert start their attempts.
    async fn take(&self, items: &[&Work]) -> Result<(), DbError> {
        let state = &self.state;
        let requests = items
            .iter()
            .filter(|w| matches!(w, Work::Request(..)))
            .count();
        let slots = state.attempts.free_slots(requests);
        let mut conn = shop_db::conn(&state.pool).await?;
        let (leased, waiting, written) = conn
            .transaction::<_, DbError, _>(async |conn| {
                let mut taken = Taken::default();
                let mut pending: Vec<(&Envelope, &PaymentRequested)> = Vec::new();
                for item in items {
                    match item {
                        Work::Request(envelope, data) => pending.push((envelope, data)),
                        Work::Cancel(envelope) => {
                            self.requested(conn, &pending, slots.len(), &mut taken)
                                .await?;
                            pending.clear();
                            cancelled(conn, envelope).await?;
                        }
                    }
                }
                self.requested(conn, &pending, slots.len(), &mut taken)
                    .await?;
                Ok((taken.leased, taken.waiting, taken.written))
            })
            .await?;
        for (payment, slot) in leased.into_iter().zip(slots) {
            state.attempts.start(&state.simulation, payment, slot);
        }
        if waiting {
            state.attempts.wake();
        }
        state.relay.wake(written);
        Ok(())
    }

    /// Creates the payments of `requests` (once per order), the first of them leased to this
    /// instance as far as `slots` go. A repeated request for a finished payment re-reports its
    /// outcome (the order may not have heard it) and is otherwise a no-op.
    async fn requested(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[(&Envelope, &PaymentRequested)],
        slots: usize,
        taken: &mut Taken,
    ) -> Result<(), DbError> {
        if requests.is_empty() {
            return Ok(());
        }
        let new: Vec<repo::Requested> = requests
            .iter()
            .map(|(envelope, data)| repo::Requested {
                id: Uuid::now_v7(),
                order_id: envelope.order_id,
                user_id: envelope.user_id,
                amount_cents: data.amount_cents,
                currency: data.currency.clone(),
                traceparent: envelope.traceparent.clone(),
            })
            .collect();
        let simulation = &self.state.simulation;
        let free = slots.saturating_sub(taken.leased.len());
        let inserted =
            repo::insert_requested(conn, &new, &simulation.worker, free, simulation.lease())
                .await?;
        for payment in &inserted {
            tracing::info!(
                order.id = %payment.order_id,
                amount_cents = payment.amount_cents,
                "payment requested"
            );
        }
        for request in &new {
            if !inserted.iter().any(|p| p.order_id == request.order_id) {
                taken.written |= rereport(conn, request.order_id).await?;
            }
        }
        for payment in inserted {
            if payment.lease_owner.as_deref() == Some(simulation.worker.as_str()) {
                taken.leased.push(payment);
            } else {
                taken.waiting = true;
            }
        }
        Ok(())
    }
}

/// What a read's transaction took on.
#[derive(Default)]
struct Taken {
    /// New payments leased to this instance: their attempts start after the commit.
    leased: Vec<Payment>,
    /// New payments left for the lease loop (no slot was free).
    waiting: bool,
    written: Written,
}

/// One entry of `payments.requests`, understood.
enum Work {
    Request(Envelope, PaymentRequested),
    Cancel(Envelope),
}

impl Work {
    fn envelope(&self) -> &Envelope {
        match self {
            Work::Request(envelope, _) | Work::Cancel(envelope) => envelope,
        }
    }

    fn span(&self) -> tracing::Span {
        let envelope = self.envelope();
        let span = tracing::info_span!(
            "stream entry",
            stream = shop_contracts::events::PAYMENT_REQUESTS,
            event.kind = envelope.event.name(),
            order.id = %envelope.order_id,
        );
        shop_http::continue_trace(&span, envelope.traceparent.as_deref());
        span
    }
}

/// Reads an entry; an error is the reason it can never be handled.
fn parse(raw: Option<&str>) -> Result<Work, String> {
    let raw = raw.ok_or_else(|| "entry has no event field".to_owned())?;
    let envelope: Envelope =
        serde_json::from_str(raw).map_err(|e| format!("unparseable envelope: {e}"))?;
    match &envelope.event {
        Event::PaymentRequested(data) if data.amount_cents < 0 => {
            Err(format!("payment.requested for {} cents", data.amount_cents))
        }
        Event::PaymentRequested(data) => {
            let data = data.clone();
            Ok(Work::Request(envelope, data))
        }
        Event::PaymentCancel(_) => Ok(Work::Cancel(envelope)),
        other => Err(format!("{} does not belong on this stream", other.name())),
    }
}

/// Reports a finished payment's outcome again.
async fn rereport(conn: &mut AsyncPgConnection, order_id: Uuid) -> Result<Written, DbError> {
    let Some(payment) = repo::find_by_order(conn, order_id).await? else {
        return Ok(Written::NOTHING);
    };
    let last_final = repo::attempts(conn, payment.id)
        .await?
        .into_iter()
        .rev()
        .find(|a| a.is_final);
    let Some(attempt) = last_final else {
        return Ok(Written::NOTHING);
    };
    let event = PaymentEvent {
        attempt_no: attempt.attempt_no,
        outcome: attempt.outcome,
        error: attempt.error.clone(),
        next_retry_at: None,
        is_final: true,
    };
    let report = events::report(&payment, &event).map_err(events::unserialisable)?;
    Ok(shop_outbox::enqueue(conn, &[report]).await?)
}

/// Stops a payment; a cancel that arrives first leaves a cancelled payment so a late request
/// starts nothing.
async fn cancelled(conn: &mut AsyncPgConnection, envelope: &Envelope) -> Result<(), DbError> {
    if repo::cancel(conn, envelope.order_id).await?.is_some() {
        tracing::info!(order.id = %envelope.order_id, "payment cancelled");
        return Ok(());
    }
    let tombstone = NewPayment {
        id: Uuid::now_v7(),
        order_id: envelope.order_id,
        user_id: envelope.user_id,
        amount_cents: 0,
        currency: String::new(),
        status: PaymentStatus::Cancelled,
        next_attempt_at: None,
        traceparent: envelope.traceparent.clone(),
    };
    repo::insert_if_missing(conn, &tombstone).await?;
    Ok(())
}

/// Samples the request stream for its consumer group: entries not yet delivered (lag),
/// delivered but unacknowledged (pending), and the dead-letter stream's length.
pub async fn record_stream_metrics(redis: &shop_redis::RedisPool) {
    use shop_contracts::events::{PAYMENT_REQUESTS, PAYMENTS_DEAD};
    let Ok(mut conn) = redis.get().await else {
        return;
    };
    let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(redis.key(PAYMENT_REQUESTS))
        .query_async(&mut *conn)
        .await;
    for group in groups.map(|g| g.groups).unwrap_or_default() {
        let labels = [
            ("stream", PAYMENT_REQUESTS.to_owned()),
            ("group", group.name),
        ];
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("shop_stream_pending_entries", &labels).set(group.pending as f64);
            if let Some(lag) = group.lag {
                metrics::gauge!("shop_stream_lag_entries", &labels).set(lag as f64);
            }
        }
    }
    let dead: redis::RedisResult<u64> = redis::cmd("XLEN")
        .arg(redis.key(PAYMENTS_DEAD))
        .query_async(&mut *conn)
        .await;
    if let Ok(dead) = dead {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("shop_stream_length_entries", "stream" => PAYMENTS_DEAD).set(dead as f64);
    }
}
