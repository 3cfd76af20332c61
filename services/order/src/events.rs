//! The messages this service writes to its outbox with each change.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use shop_contracts::OrderId;
use shop_contracts::events::{
    self, Envelope, Event, NoData, OrderStatusChanged, PaymentRequested, Producer,
};
use shop_http::RequestContext;
use shop_outbox::NewMessage;
use uuid::Uuid;

use crate::models::{Order, Status};

/// The command that gives an order's stock back.
pub const RELEASE: &str = "stock.release";

/// The payload of [`RELEASE`]: the catalog gives back what it holds for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStock {
    pub order_id: OrderId,
}

/// An event of `order` on `topic`, numbered `seq` in its sequence.
fn event(
    order: &Order,
    seq: i32,
    topic: &str,
    user_stream: bool,
    event: Event,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let envelope = Envelope {
        v: 1,
        id: Uuid::now_v7(),
        event,
        producer: Producer::Order,
        occurred_at: Utc::now(),
        user_id: order.user_id,
        order_id: order.id,
        seq: i64::from(seq),
        traceparent: Some(context.traceparent.header_value()),
    };
    NewMessage::event(
        topic,
        order.id,
        user_stream.then_some(order.user_id),
        &envelope,
    )
}

/// The `order.*` event that announces an order reaching `status` (`order.created` for
/// `pending`); none for `reserving`, which is never announced.
pub fn announcing(status: Status, data: OrderStatusChanged) -> Option<Event> {
    Some(match status {
        Status::Reserving => return None,
        Status::Pending => Event::OrderCreated(data),
        Status::Paid => Event::OrderPaid(data),
        Status::Failed => Event::OrderFailed(data),
        Status::Cancelled => Event::OrderCancelled(data),
        Status::Shipped => Event::OrderShipped(data),
        Status::Delivered => Event::OrderDelivered(data),
        Status::Refunded => Event::OrderRefunded(data),
    })
}

/// `order.<status>` of the order's current status, for the user's notifications.
pub fn status_changed(
    order: &Order,
    seq: i32,
    cause: Option<&str>,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let shipment = order.shipment().filter(|_| order.status == Status::Shipped);
    let data = OrderStatusChanged {
        status: order.status.as_str().to_owned(),
        cause: cause.map(str::to_owned),
        total_cents: order.total_cents,
        currency: Some(order.currency.clone()),
        carrier: shipment.as_ref().and_then(|s| s.carrier.clone()),
        tracking_number: shipment.and_then(|s| s.tracking_number),
        refunded_cents: (order.status == Status::Refunded).then_some(order.refunded_cents),
    };
    let Some(announced) = announcing(order.status, data) else {
        return Err(serde::ser::Error::custom(format!(
            "an order in {} is not announced",
            order.status.as_str()
        )));
    };
    event(order, seq, events::NOTIFICATIONS, true, announced, context)
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
        Event::PaymentRequested(data),
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
        Event::PaymentCancel(NoData {}),
        context,
    )
}

/// Gives the order's stock back through the catalog (retried until it succeeds).
pub fn release(order_id: OrderId) -> serde_json::Result<NewMessage> {
    NewMessage::command(RELEASE, order_id, &ReleaseStock { order_id })
}

/// `payment.refund` for the payment service: carry out an accepted refund.
pub fn refund_requested(
    order: &Order,
    seq: i32,
    refund_id: shop_contracts::RefundId,
    amount_cents: i64,
    context: &RequestContext,
) -> serde_json::Result<NewMessage> {
    let data = events::RefundRequested {
        refund_id,
        amount_cents,
        currency: order.currency.clone(),
    };
    event(
        order,
        seq,
        events::PAYMENT_REQUESTS,
        false,
        Event::PaymentRefund(data),
        context,
    )
}
