//! The messages this service writes to its outbox with each change.

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use shop_contracts::events::{self, Envelope, OrderStatusChanged, PaymentRequested, types};
use shop_http::RequestContext;
use shop_outbox::{Kind, NewMessage};
use uuid::Uuid;

use crate::models::Order;

/// The command that gives an order's stock back.
pub const RELEASE: &str = "stock.release";

/// An event of `order`, numbered `seq` in its sequence.
fn event(
    order: &Order,
    seq: i32,
    topic: &str,
    user_stream: bool,
    kind: &str,
    data: impl Serialize,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let envelope = Envelope {
        v: 1,
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        producer: "order".into(),
        occurred_at: Utc::now(),
        user_id: order.user_id,
        order_id: order.id,
        seq: i64::from(seq),
        traceparent: Some(context.traceparent.header_value()),
        data: serde_json::to_value(data)?,
    };
    Ok(NewMessage {
        kind: Kind::Event,
        topic: topic.into(),
        aggregate_id: order.id,
        user_id: user_stream.then_some(order.user_id),
        payload: serde_json::to_value(envelope)?,
    })
}

/// `order.<status>` for the user's notifications.
pub fn status_changed(
    order: &Order,
    seq: i32,
    kind: &str,
    cause: Option<&str>,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let data = OrderStatusChanged {
        status: order.status.as_str().to_owned(),
        cause: cause.map(str::to_owned),
        total_cents: order.total_cents,
        currency: Some(order.currency.clone()),
    };
    event(order, seq, events::NOTIFICATIONS, true, kind, data, context)
}

/// `payment.requested` for the payment service.
pub fn payment_requested(
    order: &Order,
    seq: i32,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let data = PaymentRequested {
        amount_cents: order.total_cents.unwrap_or(0),
        currency: order.currency.clone(),
    };
    event(
        order,
        seq,
        events::PAYMENT_REQUESTS,
        false,
        types::PAYMENT_REQUESTED,
        data,
        context,
    )
}

/// `payment.cancel`: the payment service stops before its next attempt.
pub fn payment_cancel(
    order: &Order,
    seq: i32,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    event(
        order,
        seq,
        events::PAYMENT_REQUESTS,
        false,
        types::PAYMENT_CANCEL,
        json!({}),
        context,
    )
}

/// Gives the order's stock back through the catalog (retried until it succeeds).
pub fn release(order_id: Uuid) -> NewMessage {
    NewMessage {
        kind: Kind::Command,
        topic: RELEASE.into(),
        aggregate_id: order_id,
        user_id: None,
        payload: json!({"orderId": order_id}),
    }
}
