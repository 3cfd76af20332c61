//! What the payment service writes to its outbox with each attempt.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use shop_contracts::events::{self, Envelope, PaymentEvent};
use shop_outbox::{Kind, NewMessage};
use uuid::Uuid;

use crate::models::Payment;

/// The command that reports an attempt or outcome to the order service.
pub const REPORT: &str = "payment.report";

/// A `payment.*` notification for the order's owner, numbered `seq` in the order's payment
/// events.
pub fn notification(
    payment: &Payment,
    seq: i32,
    kind: &str,
    data: impl Serialize,
) -> serde_json::Result<NewMessage> {
    let envelope = Envelope {
        v: 1,
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        producer: "payment".into(),
        occurred_at: Utc::now(),
        user_id: payment.user_id,
        order_id: payment.order_id,
        seq: i64::from(seq),
        traceparent: payment.traceparent.clone(),
        data: serde_json::to_value(data)?,
    };
    Ok(NewMessage {
        kind: Kind::Event,
        topic: events::NOTIFICATIONS.into(),
        aggregate_id: payment.order_id,
        user_id: Some(payment.user_id),
        payload: serde_json::to_value(envelope)?,
    })
}

/// An event that would not serialise, as the error of the transaction writing it (a bug,
/// never bad input).
pub fn unserialisable(error: serde_json::Error) -> shop_db::DbError {
    shop_db::DbError::Query(diesel::result::Error::SerializationError(Box::new(error)))
}

/// Reports an attempt or outcome to the order service (retried until accepted).
pub fn report(payment: &Payment, event: &PaymentEvent) -> NewMessage {
    NewMessage {
        kind: Kind::Command,
        topic: REPORT.into(),
        aggregate_id: payment.order_id,
        user_id: None,
        payload: json!({
            "orderId": payment.order_id,
            "paymentId": payment.id,
            "event": event,
            "traceparent": payment.traceparent,
        }),
    }
}
