//! Refunds the order service asked for (`payment.refund` on `payments.requests`), carried out
//! once each (simulated: `PAYMENT_DURATION`).
//!
//! The request is taken in the consumer's transaction ([`accept`]): under the payment's row
//! lock, a refund within what the payment captured less the refunds accepted before is kept
//! `pending` and leased to this instance; one beyond it (or without a captured payment) is
//! kept `failed` and reported at once. A redelivered request finds its row and does nothing.
//! After the commit the refund runs ([`Refunds::start`]); it completes in one guarded statement
//! (`pending` → `succeeded`) with its `payment.refunded` notification and its report, so a
//! refund whose worker died mid-way is finished once by whoever takes its expired lease
//! ([`run`]), never twice.

use std::time::Duration;

use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{BigInt, Double, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shop_contracts::{
    PaymentId, PaymentStatus, RefundId, RefundStatus,
    events::{Envelope, Event, PaymentSettled, RefundOutcome, RefundReport, RefundRequested},
};
use shop_db::{DbError, prepared};
use shop_outbox::{NewMessage, Written};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{AppState, events, models::Payment};

/// How often expired leases are looked for (a refund's own worker starts it at once).
const LEASE_POLL: Duration = Duration::from_secs(5);
/// Most expired refunds taken in one pass.
const LEASE_BATCH: i64 = 32;

/// This instance's running refunds.
#[derive(Debug, Clone, Default)]
pub struct Refunds {
    running: TaskTracker,
}

/// A refund leased to this instance, to carry out.
#[derive(Debug, Clone, QueryableByName)]
pub struct Leased {
    #[diesel(sql_type = SqlUuid)]
    id: RefundId,
    #[diesel(sql_type = SqlUuid)]
    payment_id: PaymentId,
}

impl Refunds {
    /// Carries out a leased refund: the simulated processor's time, then its completion.
    pub fn start(&self, state: &AppState, refund: Leased) {
        let state = state.clone();
        self.running.spawn(async move {
            tokio::time::sleep(state.simulation.duration).await;
            if let Err(error) = complete(&state, &refund).await {
                tracing::warn!(
                    %error,
                    refund.id = %refund.id,
                    "refund not completed; its lease will expire and it runs again"
                );
            }
        });
    }
}

#[derive(QueryableByName)]
struct Captured {
    #[diesel(sql_type = SqlUuid)]
    id: PaymentId,
    #[diesel(sql_type = BigInt)]
    amount_cents: i64,
    #[diesel(sql_type = BigInt)]
    refunded_cents: i64,
    #[diesel(sql_type = Text)]
    status: PaymentStatus,
}

const LOCK_PAYMENT: &str = "SELECT id, amount_cents, refunded_cents, status FROM payments \
     WHERE order_id = $1 FOR UPDATE";

const INSERT: &str = "
INSERT INTO refunds (id, payment_id, amount_cents, status, error, idempotency_key, lease_owner,
    lease_until, traceparent, completed_at)
VALUES ($1, $2, $3, $4, $5, $6,
    CASE WHEN $4 = 'pending' THEN $7 END,
    CASE WHEN $4 = 'pending' THEN now() + make_interval(secs => $8) END,
    $9,
    CASE WHEN $4 = 'pending' THEN NULL ELSE now() END)
ON CONFLICT (id) DO NOTHING
RETURNING id, payment_id";

const ADD_REFUNDED: &str =
    "UPDATE payments SET refunded_cents = refunded_cents + $2, updated_at = now() WHERE id = $1";

/// Takes refund requests in the consumer's transaction (see the module's description): the
/// refunds leased to this instance, to start after the commit, and what went to the outbox.
pub async fn accept(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    requests: &[(&Envelope, &RefundRequested)],
) -> Result<(Vec<Leased>, Written), DbError> {
    let mut leased = Vec::new();
    let mut refused = Vec::new();
    for (envelope, request) in requests {
        let captured: Option<Captured> = prepared(LOCK_PAYMENT)
            .bind::<SqlUuid, _>(envelope.order_id)
            .get_result(conn)
            .await
            .optional()?;
        let Some(payment) = captured else {
            // No payment to refund: nothing can be kept here (a refund row needs one).
            tracing::warn!(order.id = %envelope.order_id, "refund of an order with no payment");
            refused.push(report(envelope, request, Some("no payment for this order")));
            continue;
        };
        let refusal = match payment.status {
            PaymentStatus::Succeeded | PaymentStatus::Refunded
                if payment.refunded_cents + request.amount_cents <= payment.amount_cents =>
            {
                None
            }
            PaymentStatus::Succeeded | PaymentStatus::Refunded => {
                Some("exceeds what the payment captured less its refunds")
            }
            _ => Some("the payment captured nothing"),
        };
        let status = if refusal.is_some() {
            RefundStatus::Failed
        } else {
            RefundStatus::Pending
        };
        let inserted: Option<Leased> = prepared(INSERT)
            .bind::<SqlUuid, _>(request.refund_id)
            .bind::<SqlUuid, _>(payment.id)
            .bind::<BigInt, _>(request.amount_cents)
            .bind::<Text, _>(status)
            .bind::<Nullable<Text>, _>(refusal)
            .bind::<Text, _>(format!("{}:refund:{}", payment.id, request.refund_id))
            .bind::<Text, _>(&state.simulation.worker)
            .bind::<Double, _>(state.simulation.lease().as_secs_f64())
            .bind::<Nullable<Text>, _>(envelope.traceparent.as_deref())
            .get_result(conn)
            .await
            .optional()?;
        let Some(inserted) = inserted else {
            // Delivered before: its row says what became of it.
            continue;
        };
        if let Some(reason) = refusal {
            tracing::warn!(order.id = %envelope.order_id, reason, "refund refused");
            refused.push(report(envelope, request, Some(reason)));
            continue;
        }
        prepared(ADD_REFUNDED)
            .bind::<SqlUuid, _>(payment.id)
            .bind::<BigInt, _>(request.amount_cents)
            .execute(conn)
            .await?;
        tracing::info!(
            order.id = %envelope.order_id,
            amount_cents = request.amount_cents,
            "refund accepted"
        );
        leased.push(inserted);
    }
    let messages = refused
        .iter()
        .map(events::refund_report)
        .collect::<Result<Vec<NewMessage>, _>>()
        .map_err(events::unserialisable)?;
    let written = shop_outbox::enqueue(conn, &messages).await?;
    Ok((leased, written))
}

fn report(envelope: &Envelope, request: &RefundRequested, error: Option<&str>) -> RefundReport {
    RefundReport {
        order_id: envelope.order_id,
        refund_id: request.refund_id,
        outcome: if error.is_some() {
            RefundOutcome::Failed
        } else {
            RefundOutcome::Succeeded
        },
        error: error.map(str::to_owned),
        traceparent: envelope.traceparent.clone(),
    }
}

const COMPLETE: &str = "
UPDATE refunds SET status = $2, completed_at = now(), lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND status = $3
RETURNING amount_cents, traceparent";

#[derive(QueryableByName)]
struct Completed {
    #[diesel(sql_type = BigInt)]
    amount_cents: i64,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

/// The payment after a refund: its next event number taken, and `refunded` once every
/// captured cent went back.
const AFTER_REFUND: &str = "
UPDATE payments p SET event_seq = p.event_seq + 1, updated_at = now(),
    status = CASE WHEN (SELECT sum(r.amount_cents) FROM refunds r
                        WHERE r.payment_id = p.id AND r.status = $2) >= p.amount_cents
             THEN $3 ELSE p.status END
WHERE p.id = $1
RETURNING p.id, p.order_id, p.user_id, p.amount_cents, p.currency, p.status, p.attempt_no,
    p.next_attempt_at, p.lease_owner, p.event_seq, p.created_at, p.updated_at, p.traceparent";

/// Completes a refund once: the guarded change, the payment's status, the `payment.refunded`
/// notification and the report, in one transaction. Already completed: nothing.
async fn complete(state: &AppState, refund: &Leased) -> Result<(), DbError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let written = conn
        .transaction::<_, DbError, _>(async |conn| {
            let completed: Option<Completed> = prepared(COMPLETE)
                .bind::<SqlUuid, _>(refund.id)
                .bind::<Text, _>(RefundStatus::Succeeded)
                .bind::<Text, _>(RefundStatus::Pending)
                .get_result(conn)
                .await
                .optional()?;
            let Some(completed) = completed else {
                return Ok(Written::NOTHING);
            };
            let payment: Payment = prepared(AFTER_REFUND)
                .bind::<SqlUuid, _>(refund.payment_id)
                .bind::<Text, _>(RefundStatus::Succeeded)
                .bind::<Text, _>(PaymentStatus::Refunded)
                .get_result(conn)
                .await?;
            let data = PaymentSettled {
                attempt_no: payment.attempt_no,
                amount_cents: completed.amount_cents,
                currency: payment.currency.clone(),
                refund_id: Some(refund.id),
            };
            let report = RefundReport {
                order_id: payment.order_id,
                refund_id: refund.id,
                outcome: RefundOutcome::Succeeded,
                error: None,
                traceparent: completed.traceparent,
            };
            let messages = [
                events::notification(&payment, payment.event_seq, Event::PaymentRefunded(data)),
                events::refund_report(&report),
            ]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(events::unserialisable)?;
            tracing::info!(
                order.id = %payment.order_id,
                refund.id = %refund.id,
                amount_cents = completed.amount_cents,
                "refunded"
            );
            Ok(shop_outbox::enqueue(conn, &messages).await?)
        })
        .await?;
    state.relay.wake(written);
    Ok(())
}

const LEASE_EXPIRED: &str = "
UPDATE refunds SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM refunds
    WHERE status = $3 AND (lease_until IS NULL OR lease_until < now())
    ORDER BY created_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED)
RETURNING id, payment_id";

/// Takes over refunds whose lease expired (their worker died) and carries them out, until
/// cancelled.
pub async fn run(state: AppState, cancel: CancellationToken) {
    loop {
        match lease_expired(&state).await {
            Ok(leased) => {
                for refund in leased {
                    tracing::info!(refund.id = %refund.id, "refund taken over");
                    state.refunds.start(&state, refund);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot lease expired refunds"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(LEASE_POLL) => {}
        }
    }
}

async fn lease_expired(state: &AppState) -> Result<Vec<Leased>, DbError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    Ok(prepared(LEASE_EXPIRED)
        .bind::<Text, _>(&state.simulation.worker)
        .bind::<Double, _>(state.simulation.lease().as_secs_f64())
        .bind::<Text, _>(RefundStatus::Pending)
        .bind::<BigInt, _>(LEASE_BATCH)
        .load(&mut conn)
        .await?)
}
