//! Types that cross service boundaries. Serde only: no web framework; with the `diesel`
//! feature, the statuses are stored as `text`.

pub mod events;
mod ids;
mod text;

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ids::{CartId, OrderId, PaymentId, ProductId, RefundId, SessionId, UserId};

/// A user's role.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A customer.
    User,
    /// Manages products, users and order fulfilment.
    Admin,
}

impl Role {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole),
        }
    }
}

/// A role string that is neither `user` nor `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownRole;

/// A page of a listing: `{items, page, limit, total}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: u32,
    /// Page size asked for.
    pub limit: u32,
    /// Items across all pages.
    pub total: u64,
}

/// A user as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub disabled: bool,
    /// Whether the owner followed a mailed verification (or password-reset) link.
    pub email_verified: bool,
    /// Whether sign-in needs a one-time code (TOTP) besides the password.
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /internal/order-summaries` body (user → order): the orders a batch of mail tells of.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderSummariesRequest {
    /// At most [`MAX_SUMMARIES`]; unknown ids are left out of the answer.
    pub order_ids: Vec<OrderId>,
}

/// Orders asked for at once in `POST /internal/order-summaries`.
pub const MAX_SUMMARIES: usize = 200;

/// `POST /internal/order-summaries` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSummaries {
    pub orders: Vec<OrderSummary>,
}

/// What an order's mail shows of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    pub id: OrderId,
    pub total_cents: Option<i64>,
    pub currency: String,
    /// In the order's own order.
    pub items: Vec<OrderSummaryLine>,
    /// Where it goes, when the order has an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
}

/// Where an order is shipped (DESIGN.md, "Fulfilment and refunds"); the order service
/// validates it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShippingAddress {
    /// Who receives the parcel.
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    /// State, province or county, where the country uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case (`FR`, `US`).
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// One line of an [`OrderSummary`], at the price it was ordered at.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummaryLine {
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: i32,
}

/// `POST /login` and `POST /refresh` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    pub refresh_token: String,
}

/// `GET /internal/sessions/{sid}` answer, for the gateway when Redis is away.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    pub id: SessionId,
    pub user_id: UserId,
    /// False once the session is revoked or expired.
    pub active: bool,
}

/// Most lines one order (and so one cart and one reservation) may hold.
pub const MAX_LINES: usize = 50;

/// `POST /internal/reservations/{orderId}` body (order → catalog): 1 to [`MAX_LINES`] lines.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveRequest {
    pub items: Vec<ReserveLine>,
}

/// One line to reserve.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveLine {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// A reservation that holds stock: each line with the name and unit price it was reserved at.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub order_id: OrderId,
    pub items: Vec<ReservedLine>,
}

/// A reserved line.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedLine {
    pub product_id: ProductId,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: i32,
}

/// `POST /internal/reservations/{orderId}/release` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseOutcome {
    pub order_id: OrderId,
    /// Stock given back by this call (false for a repeat, or a tombstone for an unknown order).
    pub restored: bool,
}

/// Why the catalog refused a reservation: the `refusal` member of its 409 or 422 answer, and
/// what it stores so that a repeat is refused the same way.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "camelCase")]
pub enum ReserveRefusal {
    /// A line asks for more than is in stock (409).
    #[serde(rename_all = "camelCase")]
    InsufficientStock {
        product_id: ProductId,
        available: i32,
    },
    /// A line's product is deleted (409).
    #[serde(rename_all = "camelCase")]
    ProductUnavailable { product_id: ProductId },
    /// A line names no product (422); `index` counts the lines as sent.
    #[serde(rename_all = "camelCase")]
    UnknownProduct { index: usize },
}

text::text_enum! {
    /// A payment's status, in the payment service's `payments.status` and as the order service
    /// keeps it (`payment.status` of an order).
    pub enum PaymentStatus {
        /// An attempt runs or a retry is due.
        Processing = "processing",
        Succeeded = "succeeded",
        /// The last attempt failed.
        Failed = "failed",
        /// The order was cancelled or timed out before the payment settled.
        Cancelled = "cancelled",
        /// It succeeded after its order had moved on, and was given back; or every captured
        /// cent was refunded.
        Refunded = "refunded",
    }
}

text::text_enum! {
    /// Where a refund stands: accepted and under way, carried out, or refused by the payment
    /// service (`status` of a refund, in both services).
    pub enum RefundStatus {
        /// Accepted by the order service; the payment service carries it out.
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}
