//! Rows of the `orders` schema and their API forms.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::{FromSql, FromSqlRow},
    expression::AsExpression,
    pg::{Pg, PgValue},
    prelude::*,
    serialize::{Output, ToSql},
    sql_types::Text,
};
use serde::{Deserialize, Serialize};
use shop_contracts::{
    OrderId, PaymentStatus, ProductId, RefundId, RefundStatus, ShippingAddress, UserId,
};

use crate::schema::{cart_items, order_lines, order_status_history, orders, refunds};

/// Order statuses, stored in `orders.status` as their lowercase names (the table's CHECK lists
/// them). Which may become which is [`crate::lifecycle`]'s business.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    AsExpression,
    FromSqlRow,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Reserving,
    Pending,
    Paid,
    Failed,
    Cancelled,
    Shipped,
    Delivered,
    /// Every captured cent given back (final).
    Refunded,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 8] = [
        Status::Reserving,
        Status::Pending,
        Status::Paid,
        Status::Failed,
        Status::Cancelled,
        Status::Shipped,
        Status::Delivered,
        Status::Refunded,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserving => "reserving",
            Status::Pending => "pending",
            Status::Paid => "paid",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Refunded => "refunded",
        }
    }

    /// Parses the stored (and wire) spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl ToSql<Text, Pg> for Status {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for Status {
    fn from_sql(value: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
        Status::parse(&text).ok_or_else(|| format!("unknown order status {text:?}").into())
    }
}

/// The columns of [`Order`], for statements written in SQL that return orders.
macro_rules! order_columns {
    () => {
        "id, user_id, status, total_cents, currency, payment_status, payment_attempts, \
         payment_last_error, event_seq, created_at, updated_at, shipping_address, shipment, \
         refunded_cents, refund_pending_cents"
    };
}
pub(crate) use order_columns;

/// An order as stored.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = orders, check_for_backend(Pg))]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: Status,
    pub total_cents: Option<i64>,
    pub currency: String,
    pub payment_status: Option<PaymentStatus>,
    pub payment_attempts: i32,
    pub payment_last_error: Option<String>,
    /// The sequence number of the last event published for the order.
    pub event_seq: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A [`ShippingAddress`], as validated when the order was placed.
    pub shipping_address: Option<serde_json::Value>,
    /// A [`Shipment`], once shipped.
    pub shipment: Option<serde_json::Value>,
    /// Refunds carried out.
    pub refunded_cents: i64,
    /// Refunds accepted and not yet carried out.
    pub refund_pending_cents: i64,
}

impl Order {
    /// The address it was placed with (an unreadable stored one counts as none).
    pub fn address(&self) -> Option<ShippingAddress> {
        stored(self.shipping_address.as_ref())
    }

    /// How it travels, once shipped (an unreadable stored one counts as none).
    pub fn shipment(&self) -> Option<Shipment> {
        stored(self.shipment.as_ref())
    }

    /// What its payment captured: the total once paid (and after), nothing before.
    pub fn captured_cents(&self) -> i64 {
        match self.status {
            Status::Paid | Status::Shipped | Status::Delivered | Status::Refunded => {
                self.total_cents.unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// What may still be refunded: the captured total less refunds made or under way.
    pub fn refundable_cents(&self) -> i64 {
        (self.captured_cents() - self.refunded_cents - self.refund_pending_cents).max(0)
    }
}

/// A JSON document stored with an order, read as `T`; one that does not read is none.
fn stored<T: serde::de::DeserializeOwned>(value: Option<&serde_json::Value>) -> Option<T> {
    value.and_then(|v| T::deserialize(v).ok())
}

/// A line as stored.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = order_lines, check_for_backend(Pg))]
pub struct Line {
    pub order_id: OrderId,
    pub position: i16,
    pub product_id: ProductId,
    pub quantity: i32,
    pub name: Option<String>,
    pub unit_price_cents: Option<i64>,
}

/// A line to write.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = order_lines)]
pub struct NewLine {
    pub order_id: OrderId,
    pub position: i16,
    pub product_id: ProductId,
    pub quantity: i32,
}

/// A status change as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_status_history, check_for_backend(Pg))]
pub struct HistoryEntry {
    pub status: Status,
    pub actor: String,
    pub cause: Option<String>,
    pub at: DateTime<Utc>,
}

/// A cart line as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cart_items, check_for_backend(Pg))]
pub struct CartItem {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// An order line as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: ProductId,
    /// As reserved (absent while the order is still reserving).
    pub name: Option<String>,
    pub unit_price_cents: Option<i64>,
    pub quantity: i32,
}

/// The payment summary of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSummary {
    /// Absent before the payment service has reported.
    pub status: Option<PaymentStatus>,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: Status,
    pub total_cents: Option<i64>,
    pub currency: String,
    pub items: Vec<OrderItem>,
    pub payment: PaymentSummary,
    /// Where it is shipped (absent: none was given and the user had no default).
    pub shipping_address: Option<ShippingAddress>,
    /// Once shipped.
    pub shipment: Option<Shipment>,
    /// Given back so far (refunds carried out).
    pub refunded_cents: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a shipped order travels (stored as `orders.shipment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub shipped_at: DateTime<Utc>,
}

impl OrderResponse {
    /// Joins an order with its lines (in their original order).
    pub fn new(order: &Order, mut lines: Vec<Line>) -> Self {
        lines.sort_by_key(|l| l.position);
        Self {
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            items: lines
                .into_iter()
                .map(|l| OrderItem {
                    product_id: l.product_id,
                    name: l.name,
                    unit_price_cents: l.unit_price_cents,
                    quantity: l.quantity,
                })
                .collect(),
            payment: PaymentSummary {
                status: order.payment_status,
                attempts: order.payment_attempts,
                last_error: order.payment_last_error.clone(),
            },
            shipping_address: order.address(),
            shipment: order.shipment(),
            refunded_cents: order.refunded_cents,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// A timeline entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub status: Status,
    pub at: DateTime<Utc>,
    /// `user:<id>`, `admin:<id>`, `payment` or `system`.
    pub actor: String,
    /// Why: `placed`, `reserved`, `insufficient_stock`, `payment_timeout`, ...
    pub cause: Option<String>,
}

impl From<HistoryEntry> for TimelineEntry {
    fn from(h: HistoryEntry) -> Self {
        Self {
            status: h.status,
            at: h.at,
            actor: h.actor,
            cause: h.cause,
        }
    }
}

/// A refund as stored.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = refunds, check_for_backend(Pg))]
pub struct Refund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub amount_cents: i64,
    pub reason: String,
    pub status: RefundStatus,
    pub error: Option<String>,
    pub requested_by: UserId,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A refund as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    pub id: RefundId,
    pub order_id: OrderId,
    pub amount_cents: i64,
    pub reason: String,
    pub status: RefundStatus,
    /// Why the payment service refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The administrator who asked for it.
    pub requested_by: UserId,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<Refund> for RefundResponse {
    fn from(r: Refund) -> Self {
        Self {
            id: r.id,
            order_id: r.order_id,
            amount_cents: r.amount_cents,
            reason: r.reason,
            status: r.status,
            error: r.error,
            requested_by: r.requested_by,
            created_at: r.created_at,
            completed_at: r.completed_at,
        }
    }
}

/// An order's refunds, with what is left to refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundList {
    /// Oldest first.
    pub items: Vec<RefundResponse>,
    /// What the payment captured (0 before the order is paid).
    pub captured_cents: i64,
    /// Refunds carried out.
    pub refunded_cents: i64,
    /// Captured less refunds carried out or under way.
    pub refundable_cents: i64,
}
