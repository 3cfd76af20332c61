//! What the payment service does with `payments.requests`, read by a
//! [`shop_redis::GroupConsumer`] in the group `payments` (reclaims, dead letters to
//! `payments.dead`, trimming): a request creates the payment (once per order), a cancel stops
//! it. Each read is taken in one transaction and its entries are acknowledged after that
//! commit; a new payment is leased as it is inserted, so its first attempt starts at once.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use shop_contracts::{OrderId, PaymentId};
use shop_contracts::{
    PaymentStatus,
    events::{Envelope, Event, PaymentEvent, PaymentRequested, RefundRequested},
};
use shop_db::DbError;
use shop_outbox::Written;
use shop_redis::{BatchError, EntryHandler, redis};

use crate::{
    AppState, events,
    models::{NewPayment, Payment},
    refunds, repo,
};

/// The consumer group of the payment service's instances.
pub const GROUP: &str = "payments";

/// Takes `payments.requests` entries into Postgres (see the module's description).
#[derive(Debug)]
pub struct Intake {
    pub state: AppState,
}

impl EntryHandler for Intake {
    type Item = Work;

    fn parse(&self, raw: Option<&str>) -> Result<Work, String> {
        parse(raw)
    }

    fn span(&self, item: &Work) -> tracing::Span {
        item.span()
    }

    async fn handle(&self, items: &[&Work]) -> Result<(), BatchError> {
        self.take(items).await.map_err(|error| match error {
            DbError::Query(error) => BatchError::Data(error.to_string()),
            other => BatchError::Unavailable(other.to_string()),
        })
    }

    #[cfg(feature = "test-hooks")]
    fn acknowledges(&self) -> bool {
        !self
            .state
            .hooks
            .drop_acks
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Intake {
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
        let (leased, waiting, refunds, written) = conn
            .transaction::<_, DbError, _>(async |conn| {
                let mut taken = Taken::default();
                let mut pending: Vec<(&Envelope, &PaymentRequested)> = Vec::new();
                let mut refunds: Vec<(&Envelope, &RefundRequested)> = Vec::new();
                for item in items {
                    match item {
                        Work::Request(envelope, data) => pending.push((envelope, data)),
                        Work::Cancel(envelope) => {
                            self.requested(conn, &pending, slots.len(), &mut taken)
                                .await?;
                            pending.clear();
                            cancelled(conn, envelope).await?;
                        }
                        // A refund follows its payment's success, so it never overtakes a
                        // request of the same order in this read.
                        Work::Refund(envelope, data) => refunds.push((envelope, data)),
                    }
                }
                self.requested(conn, &pending, slots.len(), &mut taken)
                    .await?;
                let (refunds, written) = refunds::accept(conn, state, &refunds).await?;
                Ok((
                    taken.leased,
                    taken.waiting,
                    refunds,
                    taken.written | written,
                ))
            })
            .await?;
        for (payment, slot) in leased.into_iter().zip(slots) {
            state.attempts.start(&state.simulation, payment, slot);
        }
        for refund in refunds {
            state.refunds.start(state, refund);
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
                id: PaymentId::new(),
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
#[derive(Debug)]
pub enum Work {
    Request(Envelope, PaymentRequested),
    Cancel(Envelope),
    Refund(Envelope, RefundRequested),
}

impl Work {
    fn envelope(&self) -> &Envelope {
        match self {
            Work::Request(envelope, _) | Work::Cancel(envelope) | Work::Refund(envelope, _) => {
                envelope
            }
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
        Event::PaymentRefund(data) if data.amount_cents < 1 => {
            Err(format!("payment.refund for {} cents", data.amount_cents))
        }
        Event::PaymentRefund(data) => {
            let data = data.clone();
            Ok(Work::Refund(envelope, data))
        }
        other => Err(format!("{} does not belong on this stream", other.name())),
    }
}

/// Reports a finished payment's outcome again.
async fn rereport(conn: &mut AsyncPgConnection, order_id: OrderId) -> Result<Written, DbError> {
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
        id: PaymentId::new(),
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
