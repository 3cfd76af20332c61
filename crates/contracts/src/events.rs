//! Events that cross Redis streams: the envelope every entry carries, the stream names, and
//! the payload of each type. Version 1 of each is described by a JSON Schema in
//! `proto-docs/events/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every order and payment notification, in commit order.
pub const NOTIFICATIONS: &str = "notifications";
/// Work for the payment service: `payment.requested` and `payment.cancel`.
pub const PAYMENT_REQUESTS: &str = "payments.requests";
/// Entries the payment service could not handle, with the reason.
pub const PAYMENTS_DEAD: &str = "payments.dead";

/// The envelope of every stream entry (serialized as the entry's `event` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Envelope version.
    pub v: u32,
    /// Unique event id (consumers deduplicate on it).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    /// `order` or `payment`.
    pub producer: String,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub order_id: Uuid,
    /// Counts per producer and order, from 1.
    pub seq: i64,
    /// W3C trace context of the change that caused the event.
    pub traceparent: Option<String>,
    pub data: serde_json::Value,
}

/// Event type names.
pub mod types {
    pub const PAYMENT_REQUESTED: &str = "payment.requested";
    pub const PAYMENT_CANCEL: &str = "payment.cancel";
    pub const ORDER_CREATED: &str = "order.created";
    pub const ORDER_PAID: &str = "order.paid";
    pub const ORDER_FAILED: &str = "order.failed";
    pub const ORDER_CANCELLED: &str = "order.cancelled";
    pub const ORDER_SHIPPED: &str = "order.shipped";
    pub const ORDER_DELIVERED: &str = "order.delivered";
    pub const PAYMENT_ATTEMPT_FAILED: &str = "payment.attempt_failed";
    pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
    pub const PAYMENT_FAILED: &str = "payment.failed";
    pub const PAYMENT_REFUNDED: &str = "payment.refunded";
}

/// `payment.attempt_failed` data; `nextRetryAt` is null after the last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptFailed {
    pub attempt_no: i32,
    pub error: String,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// `payment.succeeded`, `payment.failed` and `payment.refunded` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSettled {
    pub attempt_no: i32,
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

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PaymentOutcome {
    Failed,
    Succeeded,
    Refunded,
}

impl PaymentOutcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentOutcome::Failed => "failed",
            PaymentOutcome::Succeeded => "succeeded",
            PaymentOutcome::Refunded => "refunded",
        }
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
}

/// One report of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentReport {
    pub order_id: Uuid,
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
}

/// What one report was answered, as the single-report route would: 200 recorded, 404 no such
/// order, 409 the order is no longer pending (a success must be refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentReportAnswer {
    pub order_id: Uuid,
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub status: u16,
    /// The order's status after the report (absent for an unknown order).
    pub order_status: Option<String>,
}
