//! Reports to the order service, run by the outbox relay until accepted. When the order is no
//! longer pending (409 `order-not-pending`), a success is refunded (simulated) and reported as
//! such, and a payment still retrying stops.

use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;
use shop_client::{Idempotency, ServiceClient, reqwest::Method};
use shop_contracts::events::{PaymentEvent, PaymentOutcome, PaymentSettled, types};
use shop_db::Pool;
use shop_http::RequestContext;
use shop_outbox::CommandHandler;
use uuid::Uuid;

use crate::{
    events,
    models::{NewAttempt, status},
    repo,
};

/// Sends `payment.report` commands.
#[derive(Debug)]
pub struct Reporter {
    pub order: ServiceClient,
    pub pool: Pool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    order_id: Uuid,
    /// The trace the payment belongs to (absent in reports queued before it was recorded).
    #[serde(default)]
    traceparent: Option<String>,
    payment_id: Uuid,
    event: PaymentEvent,
}

impl Report {
    /// The report continues the payment's trace.
    fn context(&self) -> RequestContext {
        let background = RequestContext::background();
        RequestContext {
            traceparent: self
                .traceparent
                .as_deref()
                .and_then(shop_http::TraceParent::parse)
                // The relay's span for this report is the call's parent.
                .map(|trace| trace.within(&tracing::Span::current()))
                .unwrap_or_else(|| background.traceparent.clone()),
            ..background
        }
    }
}

impl CommandHandler for Reporter {
    fn run<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if topic != events::REPORT {
                return Err(format!("unknown command {topic}"));
            }
            let report: Report =
                serde_json::from_value(payload.clone()).map_err(|e| format!("bad report: {e}"))?;
            let reply = self
                .order
                .call(
                    Method::POST,
                    &format!("/internal/orders/{}/payment-events", report.order_id),
                    Some(&report.event),
                    Idempotency::Idempotent,
                    &report.context(),
                )
                .await
                .map_err(|e| e.to_string())?;
            match reply.status.as_u16() {
                200 => {}
                409 => self
                    .order_moved_on(&report)
                    .await
                    .map_err(|e| e.to_string())?,
                404 => {
                    tracing::warn!(order.id = %report.order_id, "the order service does not know this order")
                }
                other => return Err(format!("order service answered {other}")),
            }
            let mut conn = shop_db::conn(&self.pool).await.map_err(|e| e.to_string())?;
            repo::mark_reported(
                &mut conn,
                report.payment_id,
                report.event.attempt_no,
                report.event.outcome.as_str(),
            )
            .await
            .map_err(|e| e.to_string())
        })
    }
}

impl Reporter {
    /// The order is no longer pending: refund a success, stop a payment still retrying.
    async fn order_moved_on(&self, report: &Report) -> Result<(), shop_db::DbError> {
        let mut conn = shop_db::conn(&self.pool).await?;
        conn.transaction::<_, shop_db::DbError, _>(async |conn| {
            let Some(payment) = repo::lock(conn, report.payment_id).await? else {
                return Ok(());
            };
            match (report.event.outcome, payment.status.as_str()) {
                (PaymentOutcome::Succeeded, status::SUCCEEDED) => {
                    let payment = repo::set_status(conn, payment.id, status::REFUNDED).await?;
                    let attempt_no = report.event.attempt_no;
                    repo::insert_attempt(
                        conn,
                        &NewAttempt {
                            payment_id: payment.id,
                            attempt_no,
                            outcome: PaymentOutcome::Refunded.as_str(),
                            idempotency_key: format!("{}:{attempt_no}:refund", payment.id),
                            error: None,
                            next_retry_at: None,
                            is_final: true,
                        },
                    )
                    .await?;
                    let data = PaymentSettled { attempt_no, amount_cents: payment.amount_cents, currency: payment.currency.clone() };
                    let refund = PaymentEvent {
                        attempt_no,
                        outcome: PaymentOutcome::Refunded,
                        error: None,
                        next_retry_at: None,
                        is_final: true,
                    };
                    let messages = vec![
                        events::notification(conn, &payment, types::PAYMENT_REFUNDED, serde_json::to_value(data).unwrap_or_default()).await?,
                        events::report(&payment, &refund),
                    ];
                    shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
                    tracing::warn!(order.id = %payment.order_id, "success for an order no longer pending: refunded");
                }
                (PaymentOutcome::Failed, status::PROCESSING) => {
                    repo::cancel(conn, payment.order_id).await?;
                }
                _ => {}
            }
            Ok(())
        })
        .await
    }
}
