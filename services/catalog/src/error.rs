//! The catalog service's errors and their problem+json form.

use serde_json::json;
use shop_contracts::{OrderId, ProductId, ReserveRefusal};
use shop_http::{ApiError, ErrorCode, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("no such product")]
    NotFound,
    #[error("stock of {product_id} would go below zero")]
    InsufficientStock {
        product_id: ProductId,
        available: i32,
    },
    #[error("product {product_id} is no longer sold")]
    ProductUnavailable { product_id: ProductId },
    #[error("the product changed since version {given}")]
    VersionConflict { given: i32, current: i32 },
    #[error("If-Match does not match the current representation")]
    PreconditionFailed,
    #[error("{0}")]
    PreconditionRequired(&'static str),
    /// A reservation refused; its answer carries the refusal's members for the order service.
    #[error("reservation refused: {0:?}")]
    Refused(ReserveRefusal),
    #[error("order {order_id} was released; its reservation cannot be made")]
    OrderReleased { order_id: OrderId },
    /// An answer already decided (shared by every caller of one cache load).
    #[error("{0}")]
    Api(ApiError),
    #[error(transparent)]
    Db(#[from] shop_db::DbError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for CatalogError {
    fn from(error: diesel::result::Error) -> Self {
        CatalogError::Db(error.into())
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Validation(errors) => ApiError::validation(errors),
            CatalogError::NotFound => ApiError::not_found(),
            CatalogError::InsufficientStock {
                product_id,
                available,
            } => ApiError::new(
                ErrorCode::InsufficientStock,
                format!("not enough stock of product {product_id}"),
            )
            .with_extra(json!({"productId": product_id, "available": available})),
            CatalogError::ProductUnavailable { product_id } => ApiError::new(
                ErrorCode::ProductUnavailable,
                format!("product {product_id} is no longer sold"),
            )
            .with_extra(json!({"productId": product_id})),
            CatalogError::VersionConflict { given, current } => ApiError::new(
                ErrorCode::VersionConflict,
                format!(
                    "the product was edited since version {given}; it is now at version {current}"
                ),
            )
            .with_extra(json!({"currentVersion": current})),
            CatalogError::PreconditionFailed => ApiError::new(
                ErrorCode::PreconditionFailed,
                "the product changed since the ETag you sent; read it again",
            ),
            CatalogError::PreconditionRequired(detail) => {
                ApiError::new(ErrorCode::PreconditionRequired, detail)
            }
            CatalogError::Refused(refusal) => refused(refusal),
            CatalogError::OrderReleased { order_id } => ApiError::new(
                ErrorCode::OrderNotPending,
                format!("order {order_id} was released; it can no longer reserve stock"),
            )
            .with_extra(json!({"orderId": order_id})),
            CatalogError::Api(error) => error,
            CatalogError::Db(error) => error.into(),
            CatalogError::Unexpected(error) => ApiError::internal(error),
        }
    }
}

/// A refused reservation as the products' own errors say it, with the refusal's members
/// (`refusal` and its fields) beside them: the order service reads those back.
fn refused(refusal: ReserveRefusal) -> ApiError {
    let error = match refusal {
        ReserveRefusal::InsufficientStock {
            product_id,
            available,
        } => CatalogError::InsufficientStock {
            product_id,
            available,
        },
        ReserveRefusal::ProductUnavailable { product_id } => {
            CatalogError::ProductUnavailable { product_id }
        }
        ReserveRefusal::UnknownProduct { index } => {
            CatalogError::Validation(vec![FieldError::new(
                format!("items[{index}].productId"),
                "no such product",
            )])
        }
    };
    match serde_json::to_value(refusal) {
        Ok(members) => ApiError::from(error).with_extra(members),
        Err(unserialisable) => ApiError::internal(unserialisable),
    }
}
