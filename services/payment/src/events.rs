//! What the payment service writes to its outbox with each attempt.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use shop_contracts::events::{self, Envelope, PaymentEvent};
use shop_outbox::{Kind, NewMessage};
use uuid::Uuid;

use crate::{models::Payment, repo};

/// The outbox's NOTIFY channel.
pub const CHANNEL: &str = "payments_outbox";
/// The command that reports an attempt or outcome to the order service.
pub const REPORT: &str = "payment.report";

/// A `payment.*` notification for the order's owner.
pub async fn notification(
    conn: &mut AsyncPgConnection,
    payment: &Payment,
    kind: &str,
    data: Value,
) -> diesel::QueryResult<NewMessage> {
    let seq = repo::next_seq(conn, payment.id).await?;
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
        data,
    };
    Ok(NewMessage {
        kind: Kind::Event,
        topic: events::NOTIFICATIONS.into(),
        aggregate_id: payment.order_id,
        user_id: Some(payment.user_id),
        payload: serde_json::to_value(envelope).unwrap_or_default(),
    })
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
