//! What the payment service reports (DESIGN.md saga step 5): each attempt and the final
//! outcome, idempotent on (order, attempt, outcome). `paid` and `failed` apply only to a
//! pending order; otherwise the answer is 409 `order-not-pending` with the order's status,
//! and a success is then refunded by the payment service.

use diesel_async::AsyncConnection;
use shop_contracts::events::{PaymentEvent, PaymentOutcome, types};
use shop_http::RequestContext;
use uuid::Uuid;

use crate::{
    AppState,
    error::OrderError,
    events,
    models::{Order, Status},
    repo,
};

/// The answer to a report: 200, or 409 with the order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Accepted(Status),
    NotPending(Status),
}

impl Reply {
    fn code(self) -> i16 {
        match self {
            Reply::Accepted(_) => 200,
            Reply::NotPending(_) => 409,
        }
    }
}

async fn apply(
    conn: &mut diesel_async::AsyncPgConnection,
    order: &Order,
    event: &PaymentEvent,
    context: &RequestContext,
) -> Result<Reply, OrderError> {
    let pending = order.status() == Status::Pending;
    let error = event.error.as_deref();
    match (event.outcome, event.is_final) {
        (PaymentOutcome::Refunded, _) => {
            repo::set_payment_summary(conn, order.id, "refunded", event.attempt_no, error).await?;
            repo::add_history(
                conn,
                order.id,
                order.status(),
                "payment",
                Some("payment_refunded"),
            )
            .await?;
            Ok(Reply::Accepted(order.status()))
        }
        _ if !pending => Ok(Reply::NotPending(order.status())),
        (PaymentOutcome::Failed, false) => {
            repo::set_payment_summary(conn, order.id, "processing", event.attempt_no, error)
                .await?;
            Ok(Reply::Accepted(Status::Pending))
        }
        (PaymentOutcome::Failed, true) => {
            let Some(failed) =
                repo::transition(conn, order.id, &[Status::Pending], Status::Failed).await?
            else {
                return Ok(Reply::NotPending(order.status()));
            };
            repo::set_payment_summary(conn, order.id, "failed", event.attempt_no, error).await?;
            repo::add_history(
                conn,
                order.id,
                Status::Failed,
                "payment",
                Some("payment_failed"),
            )
            .await?;
            let messages = vec![
                events::release(order.id),
                events::status_changed(
                    conn,
                    &failed,
                    types::ORDER_FAILED,
                    Some("payment_failed"),
                    context,
                )
                .await?,
            ];
            shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
            Ok(Reply::Accepted(Status::Failed))
        }
        (PaymentOutcome::Succeeded, _) => {
            let Some(paid) =
                repo::transition(conn, order.id, &[Status::Pending], Status::Paid).await?
            else {
                return Ok(Reply::NotPending(order.status()));
            };
            repo::set_payment_summary(conn, order.id, "succeeded", event.attempt_no, None).await?;
            repo::add_history(
                conn,
                order.id,
                Status::Paid,
                "payment",
                Some("payment_succeeded"),
            )
            .await?;
            let message =
                events::status_changed(conn, &paid, types::ORDER_PAID, None, context).await?;
            shop_outbox::enqueue(conn, events::CHANNEL, &[message]).await?;
            Ok(Reply::Accepted(Status::Paid))
        }
    }
}

/// Records a report once; a repeat gets the first answer.
pub async fn report(
    state: &AppState,
    order_id: Uuid,
    event: &PaymentEvent,
    context: &RequestContext,
) -> Result<Reply, OrderError> {
    if event.attempt_no < 1 {
        return Err(OrderError::field("attemptNo", "must be at least 1"));
    }
    let outcome = event.outcome.as_str();
    let mut conn = shop_db::conn(&state.pool).await?;
    let reply = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let order = repo::lock_order(conn, order_id)
                .await?
                .ok_or(OrderError::NotFound)?;
            if let Some(code) =
                repo::payment_event_answer(conn, order_id, event.attempt_no, outcome).await?
            {
                return Ok(if code == 200 {
                    Reply::Accepted(order.status())
                } else {
                    Reply::NotPending(order.status())
                });
            }
            let reply = apply(conn, &order, event, context).await?;
            repo::insert_payment_event(
                conn,
                order_id,
                event.attempt_no,
                outcome,
                event.error.as_deref(),
                event.next_retry_at,
                event.is_final,
                reply.code(),
            )
            .await?;
            Ok(reply)
        })
        .await?;
    state.relay.wake();
    Ok(reply)
}
