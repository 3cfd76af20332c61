//! What the payment service writes to its outbox with each attempt.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use shop_contracts::events::{self, Envelope, Event, PaymentEvent, Producer, RefundReport};
use shop_contracts::{OrderId, PaymentId};
use shop_outbox::NewMessage;
use uuid::Uuid;

use crate::models::Payment;

/// The command that reports an attempt or outcome to the order service.
pub const REPORT: &str = "payment.report";
/// The command that reports what became of a refund to the order service.
pub const REFUND_REPORT: &str = "refund.report";

/// Every command this service's relay runs: both report to the order service, in one call
/// per batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportCommand {
    /// [`REFUND_REPORT`] (tried first: it names a `refundId`, which attempts lack).
    Refund(RefundReport),
    /// [`REPORT`].
    Attempt(Report),
}

/// The payload of [`REPORT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub event: PaymentEvent,
    /// The trace the payment belongs to (absent in reports queued before it was recorded).
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// A `payment.*` notification for the order's owner, numbered `seq` in the order's payment
/// events.
pub fn notification(payment: &Payment, seq: i32, event: Event) -> serde_json::Result<NewMessage> {
    let envelope = Envelope {
        v: 1,
        id: Uuid::now_v7(),
        event,
        producer: Producer::Payment,
        occurred_at: Utc::now(),
        user_id: payment.user_id,
        order_id: payment.order_id,
        seq: i64::from(seq),
        traceparent: payment.traceparent.clone(),
    };
    NewMessage::event(
        events::NOTIFICATIONS,
        payment.order_id,
        Some(payment.user_id),
        &envelope,
    )
}

/// An event that would not serialise, as the error of the transaction writing it (a bug,
/// never bad input).
pub fn unserialisable(error: serde_json::Error) -> shop_db::DbError {
    shop_db::DbError::Query(diesel::result::Error::SerializationError(Box::new(error)))
}

/// Reports an attempt or outcome to the order service (retried until accepted).
pub fn report(payment: &Payment, event: &PaymentEvent) -> serde_json::Result<NewMessage> {
    let report = Report {
        order_id: payment.order_id,
        payment_id: payment.id,
        event: event.clone(),
        traceparent: payment.traceparent.clone(),
    };
    NewMessage::command(REPORT, payment.order_id, &report)
}

/// Reports what became of a refund to the order service (retried until accepted).
pub fn refund_report(report: &RefundReport) -> serde_json::Result<NewMessage> {
    NewMessage::command(REFUND_REPORT, report.order_id, report)
}
