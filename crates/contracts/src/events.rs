//! Events that cross Redis streams: the envelope every entry carries, the stream names, and
//! the payload of each type. Version 1 of each is described by a JSON Schema in
//! `proto-docs/events/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{OrderId, RefundId, UserId};

/// Every order and payment notification, in commit order.
pub const NOTIFICATIONS: &str = "notifications";
/// Work for the payment service: `payment.requested`, `payment.cancel` and `payment.refund`.
pub const PAYMENT_REQUESTS: &str = "payments.requests";
/// Entries the payment service could not handle, with the reason.
pub const PAYMENTS_DEAD: &str = "payments.dead";

/// The envelope of every stream entry (serialized as the entry's `event` field): the
/// event's `type` and `data` sit beside the envelope's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Envelope version.
    pub v: u32,
    /// Unique event id (consumers deduplicate on it).
    pub id: Uuid,
    /// `type` and `data`.
    #[serde(flatten)]
    pub event: Event,
    pub producer: Producer,
    pub occurred_at: DateTime<Utc>,
    pub user_id: UserId,
    pub order_id: OrderId,
    /// Counts per producer and order, from 1.
    pub seq: i64,
    /// W3C trace context of the change that caused the event.
    pub traceparent: Option<String>,
}

/// The service that wrote an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Producer {
    Order,
    Payment,
}

/// Every event type, with its data: `{"type": "order.paid", "data": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// On `payments.requests`: take the order's payment.
    #[serde(rename = "payment.requested")]
    PaymentRequested(PaymentRequested),
    /// On `payments.requests`: start no further attempt.
    #[serde(rename = "payment.cancel")]
    PaymentCancel(NoData),
    /// On `payments.requests`: give back part or all of a captured payment.
    #[serde(rename = "payment.refund")]
    PaymentRefund(RefundRequested),
    #[serde(rename = "order.created")]
    OrderCreated(OrderStatusChanged),
    #[serde(rename = "order.paid")]
    OrderPaid(OrderStatusChanged),
    #[serde(rename = "order.failed")]
    OrderFailed(OrderStatusChanged),
    #[serde(rename = "order.cancelled")]
    OrderCancelled(OrderStatusChanged),
    #[serde(rename = "order.shipped")]
    OrderShipped(OrderStatusChanged),
    #[serde(rename = "order.delivered")]
    OrderDelivered(OrderStatusChanged),
    #[serde(rename = "order.refunded")]
    OrderRefunded(OrderStatusChanged),
    #[serde(rename = "payment.attempt_failed")]
    PaymentAttemptFailed(AttemptFailed),
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded(PaymentSettled),
    #[serde(rename = "payment.failed")]
    PaymentFailed(PaymentSettled),
    #[serde(rename = "payment.refunded")]
    PaymentRefunded(PaymentSettled),
}

impl Event {
    /// The event's `type`, as its schema in `proto-docs/events/` is named.
    pub fn name(&self) -> &'static str {
        match self {
            Event::PaymentRequested(_) => "payment.requested",
            Event::PaymentCancel(_) => "payment.cancel",
            Event::PaymentRefund(_) => "payment.refund",
            Event::OrderCreated(_) => "order.created",
            Event::OrderPaid(_) => "order.paid",
            Event::OrderFailed(_) => "order.failed",
            Event::OrderCancelled(_) => "order.cancelled",
            Event::OrderShipped(_) => "order.shipped",
            Event::OrderDelivered(_) => "order.delivered",
            Event::OrderRefunded(_) => "order.refunded",
            Event::PaymentAttemptFailed(_) => "payment.attempt_failed",
            Event::PaymentSucceeded(_) => "payment.succeeded",
            Event::PaymentFailed(_) => "payment.failed",
            Event::PaymentRefunded(_) => "payment.refunded",
        }
    }
}

/// The data of an event that carries none: `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoData {}

/// `payment.attempt_failed` data; `nextRetryAt` is null after the last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptFailed {
    pub attempt_no: i32,
    pub error: String,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// `payment.succeeded`, `payment.failed` and `payment.refunded` data. A refund an
/// administrator asked for names it (`refundId`) and carries the amount given back; the
/// refund of a success that came too late (the order was no longer pending) names none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSettled {
    pub attempt_no: i32,
    pub amount_cents: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<RefundId>,
}

/// `payment.refund` data: the order service accepted a refund of `amountCents` (never more
/// than captured minus refunded); the payment service carries it out once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequested {
    pub refund_id: RefundId,
    pub amount_cents: i64,
    pub currency: String,
}

/// `payment.requested` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequested {
    pub amount_cents: i64,
    pub currency: String,
}

/// `order.*` data: the order's new status and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChanged {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `order.shipped`: the carrier, when the administrator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// `order.shipped`: the parcel's tracking number, when the administrator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// `order.refunded`: everything given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_cents: Option<i64>,
}

/// `POST /internal/orders/{id}/payment-events` body (payment → order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentEvent {
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The payment's last word: no further event for this order follows.
    #[serde(rename = "final")]
    pub is_final: bool,
}

crate::text::text_enum! {
    /// What an attempt came to.
    pub enum PaymentOutcome {
        Failed = "failed",
        Succeeded = "succeeded",
        Refunded = "refunded",
    }
}

/// `POST /internal/payment-reports` body (payment → order): many reports in one call, each
/// order's in the order they happened. Each is idempotent on (order, attempt, outcome), as at
/// `POST /internal/orders/{id}/payment-events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentReports {
    pub reports: Vec<PaymentReport>,
    /// Refunds carried out (or refused) since, answered in `refunds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundReport>,
}

/// What became of a refund the order service asked for. Idempotent on the refund's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundReport {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    pub outcome: RefundOutcome,
    /// Why it was refused.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub traceparent: Option<String>,
}

crate::text::text_enum! {
    /// A refund's last word.
    pub enum RefundOutcome {
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

/// The answer to one [`RefundReport`]: 200 recorded (or recorded before), 404 no such refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefundReportAnswer {
    pub refund_id: RefundId,
    pub status: u16,
}

/// One report of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentReport {
    pub order_id: OrderId,
    pub event: PaymentEvent,
    /// W3C trace context of the payment: the order service records the report in that trace.
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// The answer to a batch: one per report, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentReportAnswers {
    pub answers: Vec<PaymentReportAnswer>,
    /// One per refund report, in the batch's order.
    #[serde(default)]
    pub refunds: Vec<RefundReportAnswer>,
}

/// What one report was answered, as the single-report route would: 200 recorded, 404 no such
/// order, 409 the order is no longer pending (a success must be refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentReportAnswer {
    pub order_id: OrderId,
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub status: u16,
    /// The order's status after the report (absent for an unknown order).
    pub order_status: Option<String>,
}
