//! Rows of the `payments` schema and their API forms.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use serde::Serialize;
use shop_contracts::{
    OrderId, PaymentId, PaymentStatus, RefundId, RefundStatus, UserId, events::PaymentOutcome,
};

use crate::schema::{payment_attempts, payments};

/// A payment as stored.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = payments, check_for_backend(Pg))]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_cents: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub attempt_no: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The instance running its attempt, while one runs.
    pub lease_owner: Option<String>,
    /// The sequence number of the last event published for the payment's order.
    pub event_seq: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The trace of the request that asked for this payment.
    pub traceparent: Option<String>,
}

/// A new payment.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_cents: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
}

/// An attempt (or refund) as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payment_attempts, check_for_backend(Pg))]
pub struct Attempt {
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub idempotency_key: String,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub is_final: bool,
    pub at: DateTime<Utc>,
    pub reported_at: Option<DateTime<Utc>>,
}

/// A new attempt row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = payment_attempts)]
pub struct NewAttempt {
    pub payment_id: PaymentId,
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub idempotency_key: String,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub is_final: bool,
}

/// An attempt as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptResponse {
    pub attempt_no: i32,
    pub outcome: PaymentOutcome,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// `{paymentId}:{attemptNo}`.
    pub idempotency_key: String,
    /// When the order service accepted the report of this attempt.
    pub reported_at: Option<DateTime<Utc>>,
}

/// A payment as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub status: PaymentStatus,
    pub amount_cents: i64,
    pub currency: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptResponse>,
    /// Refunds an administrator asked for, oldest first.
    pub refunds: Vec<PaymentRefund>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A refund as the payment service carried it out (or refused it).
#[derive(Debug, Clone, Serialize, QueryableByName, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefund {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: RefundId,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub amount_cents: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: RefundStatus,
    /// Why it was refused.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub error: Option<String>,
    /// `{paymentId}:refund:{refundId}`: what a real processor would deduplicate it on.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub idempotency_key: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub completed_at: Option<DateTime<Utc>>,
    /// When the order service accepted the report of its outcome.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub reported_at: Option<DateTime<Utc>>,
}

impl PaymentResponse {
    pub fn new(payment: &Payment, attempts: Vec<Attempt>, refunds: Vec<PaymentRefund>) -> Self {
        Self {
            id: payment.id,
            order_id: payment.order_id,
            status: payment.status,
            amount_cents: payment.amount_cents,
            currency: payment.currency.clone(),
            next_attempt_at: payment.next_attempt_at,
            attempts: attempts
                .into_iter()
                .map(|a| AttemptResponse {
                    attempt_no: a.attempt_no,
                    outcome: a.outcome,
                    error: a.error,
                    next_retry_at: a.next_retry_at,
                    at: a.at,
                    idempotency_key: a.idempotency_key,
                    reported_at: a.reported_at,
                })
                .collect(),
            refunds,
            created_at: payment.created_at,
            updated_at: payment.updated_at,
        }
    }
}
