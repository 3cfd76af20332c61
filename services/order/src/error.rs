//! The order service's errors and their problem+json form.

use serde_json::json;
use shop_http::{ApiError, ErrorCode, FieldError};

use crate::models::Status;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("no such order")]
    NotFound,
    #[error("the account's email is not verified")]
    EmailUnverified,
    #[error("unknown, merged or expired cart token")]
    InvalidCartToken,
    #[error("the catalog is unavailable")]
    CatalogUnavailable,
    #[error("an order {status:?} cannot change that way")]
    IllegalTransition { status: Status },
    #[error("the order is {status:?}, no longer pending")]
    NotPending { status: Status },
    #[error("the order has no shipping address")]
    AddressRequired,
    #[error("the refund exceeds what is left to refund ({refundable_cents} cents)")]
    RefundExceedsCaptured { refundable_cents: i64 },
    #[error("the Idempotency-Key was used with another request")]
    IdempotencyKeyReused,
    #[error("the request with this Idempotency-Key is still running")]
    IdempotencyInProgress,
    #[error(transparent)]
    Db(#[from] shop_db::DbError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for OrderError {
    fn from(error: diesel::result::Error) -> Self {
        OrderError::Db(error.into())
    }
}

impl OrderError {
    /// One invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        OrderError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Validation(errors) => ApiError::validation(errors),
            OrderError::NotFound => ApiError::not_found(),
            OrderError::EmailUnverified => ApiError::new(
                ErrorCode::EmailUnverified,
                "verify your email address (follow the mailed link, then sign in again) before placing an order",
            ),
            OrderError::InvalidCartToken => ApiError::new(
                ErrorCode::InvalidToken,
                "the cart token is unknown, merged already or expired (30 days unused): start a new guest cart",
            ),
            OrderError::CatalogUnavailable => {
                ApiError::unavailable("the catalog is unavailable; try again shortly", 1)
            }
            OrderError::IllegalTransition { status } => ApiError::new(
                ErrorCode::IllegalTransition,
                format!(
                    "an order that is {} cannot change that way",
                    status.as_str()
                ),
            )
            .with_extra(json!({"orderStatus": status})),
            OrderError::NotPending { status } => ApiError::new(
                ErrorCode::OrderNotPending,
                format!("the order is {}, no longer pending", status.as_str()),
            )
            .with_extra(json!({"orderStatus": status})),
            OrderError::AddressRequired => ApiError::new(
                ErrorCode::AddressRequired,
                "the order has no shipping address: it cannot be shipped",
            ),
            OrderError::RefundExceedsCaptured { refundable_cents } => ApiError::new(
                ErrorCode::RefundExceedsCaptured,
                format!(
                    "at most {refundable_cents} cents are left to refund (captured, less refunds made or under way)"
                ),
            )
            .with_extra(json!({"refundableCents": refundable_cents})),
            OrderError::IdempotencyKeyReused => ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with another request body",
            ),
            OrderError::IdempotencyInProgress => ApiError::new(
                ErrorCode::IdempotencyInProgress,
                "the first request with this Idempotency-Key is still running",
            )
            .with_retry_after(1),
            OrderError::Db(error) => error.into(),
            OrderError::Unexpected(error) => ApiError::internal(error),
        }
    }
}
