//! Placing an order (DESIGN.md, saga step 1) for `POST /orders` and `POST /cart/checkout`.
//!
//! 1. One statement makes the order in `reserving` with its lines and timeline entry, and with
//!    an `Idempotency-Key` the claim (request hash, the order's id), before the catalog is
//!    called. A key already claimed is answered from its claim instead.
//! 2. The catalog reserves every line (an idempotent call: the order id is the key).
//! 3. One transaction settles the outcome through the lifecycle: `pending` with prices, total,
//!    `payment.requested` and `order.created` (and an emptied cart for checkout); or `failed`
//!    for a refusal; or `failed` with a release command when the catalog could not be reached
//!    (503).

use actix_web::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shop_client::{Idempotency, reqwest::Method};
use shop_contracts::{MAX_LINES, OrderId, ProductId, Reservation, ReserveLine, ReserveRequest};
use shop_http::{ApiError, FieldError, Identity, RequestContext};

mod claims;
mod settle;

use self::{
    claims::{Claimed, claimed},
    settle::Settle,
};

use crate::{
    AppState,
    error::OrderError,
    lifecycle::{Actor, Cause},
    models::OrderResponse,
    repo::{self, ClaimKey, NewOrder},
};

/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 1000;

/// Which endpoint places the order (claims are per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Orders,
    Checkout,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Orders => "POST /orders",
            Route::Checkout => "POST /cart/checkout",
        }
    }
}

/// Where the lines come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The request body's lines, validated and merged.
    Lines(Vec<ReserveLine>),
    /// The user's cart, read when the order is made.
    Cart,
}

/// An HTTP answer, fresh or replayed from a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub location: Option<String>,
    pub retry_after: Option<u64>,
}

impl Answer {
    fn created(order: &OrderResponse) -> Result<Self, OrderError> {
        Ok(Self {
            status: StatusCode::CREATED,
            body: serde_json::to_value(order)
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("order answer: {e}")))?,
            location: Some(format!("/orders/{}", order.id)),
            retry_after: None,
        })
    }

    fn problem(error: &ApiError) -> Self {
        Self {
            status: error.status(),
            body: error.body(),
            location: None,
            retry_after: error.retry_after(),
        }
    }

    /// The answer a claim stored.
    fn stored(status: i16, body: Value) -> Result<Self, OrderError> {
        let status = u16::try_from(status)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| {
                OrderError::Unexpected(anyhow::anyhow!("claim stored status {status}"))
            })?;
        let location = (status == StatusCode::CREATED)
            .then(|| body["id"].as_str().map(|id| format!("/orders/{id}")))
            .flatten();
        Ok(Self {
            status,
            body,
            location,
            retry_after: None,
        })
    }

    /// The status as a claim stores it.
    fn stored_status(&self) -> Result<i16, OrderError> {
        i16::try_from(self.status.as_u16())
            .map_err(|_| OrderError::Unexpected(anyhow::anyhow!("status {}", self.status)))
    }
}

/// Validates and merges request lines: 1–50 lines, quantities 1–1000, duplicates added up.
pub fn merge_lines(items: &[(ProductId, i64)]) -> Result<Vec<ReserveLine>, OrderError> {
    let mut errors = Vec::new();
    if items.is_empty() || items.len() > MAX_LINES {
        errors.push(FieldError::new(
            "items",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut merged: Vec<ReserveLine> = Vec::with_capacity(items.len());
    for (index, (product_id, quantity)) in items.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(quantity) {
            errors.push(FieldError::new(
                format!("items[{index}].quantity"),
                format!("must be 1 to {MAX_QUANTITY}"),
            ));
            continue;
        }
        let quantity = i32::try_from(*quantity).unwrap_or(0);
        match merged.iter_mut().find(|m| m.product_id == *product_id) {
            Some(line) if i64::from(line.quantity + quantity) > MAX_QUANTITY => {
                errors.push(FieldError::new(
                    format!("items[{index}].quantity"),
                    format!("lines of one product add up to more than {MAX_QUANTITY}"),
                ))
            }
            Some(line) => line.quantity += quantity,
            None => merged.push(ReserveLine {
                product_id: *product_id,
                quantity,
            }),
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(OrderError::Validation(errors))
    }
}

fn request_hash(
    route: Route,
    source: &Source,
    address: Option<&Value>,
) -> Result<Vec<u8>, OrderError> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_str());
    if let Some(address) = address {
        hasher.update(b"address");
        hasher.update(address.to_string());
    }
    match source {
        Source::Lines(lines) => hasher.update(
            serde_json::to_vec(lines)
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("request hash: {e}")))?,
        ),
        // Checkout's body is at most an address: with the same one, every repeat is "the same
        // request".
        Source::Cart => hasher.update(b"cart"),
    }
    Ok(hasher.finalize().to_vec())
}

/// The lines of a checkout: the cart's, validated like a request body's.
async fn cart_lines(state: &AppState, identity: &Identity) -> Result<Vec<ReserveLine>, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let cart = repo::cart(&mut conn, identity.user_id.into()).await?;
    if cart.is_empty() {
        return Err(OrderError::field("cart", "is empty"));
    }
    let items: Vec<(ProductId, i64)> = cart
        .iter()
        .map(|c| (c.product_id, i64::from(c.quantity)))
        .collect();
    merge_lines(&items)
}

/// What a placement asks for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub route: Route,
    pub source: Source,
    /// A validated [`shop_contracts::ShippingAddress`]; without one the user's default is used.
    pub address: Option<Value>,
    /// The `Idempotency-Key`.
    pub key: Option<&'a str>,
}

/// Places an order; the answer is final (fresh, or replayed for a repeated key).
pub async fn place(
    state: &AppState,
    identity: &Identity,
    context: &RequestContext,
    request: Request<'_>,
) -> Result<Answer, OrderError> {
    let Request {
        route,
        source,
        address,
        key,
    } = request;
    let address = address.as_ref();
    if state.require_verified_email && !identity.email_verified {
        return Err(OrderError::EmailUnverified);
    }
    let lines = match &source {
        Source::Lines(lines) => Ok(lines.clone()),
        Source::Cart => cart_lines(state, identity).await,
    };
    let claim = key.map(|key| ClaimKey {
        user_id: identity.user_id,
        route: route.as_str(),
        key,
    });
    let (order_id, lines) = match (claim, lines) {
        (None, lines) => {
            let order_id = OrderId::new();
            let lines = lines?;
            create(state, identity, order_id, &lines, None, address).await?;
            (order_id, lines)
        }
        (Some(claim), lines) => {
            let hash = request_hash(route, &source, address)?;
            match claimed(state, identity, &claim, &hash, lines, address).await? {
                Claimed::Proceed(order_id, lines) => (order_id, lines),
                Claimed::Answered(answer) => return Ok(answer),
            }
        }
    };
    let settle = Settle {
        state,
        identity,
        context,
        route,
        claim,
        order_id,
        lines: &lines,
    };
    let reply = state
        .catalog
        .call(
            Method::POST,
            &format!("/internal/reservations/{order_id}"),
            Some(&ReserveRequest {
                items: lines.clone(),
            }),
            Idempotency::Idempotent,
            context,
        )
        .await;
    #[cfg(feature = "test-hooks")]
    state
        .hooks
        .after_reservation(matches!(&reply, Ok(reply) if reply.status == 200))?;
    match reply {
        Ok(reply) if reply.status == 200 => {
            let reservation: Reservation = reply
                .json()
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("reservation answer: {e}")))?;
            settle.reserved(&reservation).await
        }
        Ok(reply) if reply.status == 409 || reply.status == 422 => {
            let status = if reply.status == 409 {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            match serde_json::from_slice::<Value>(&reply.body) {
                Ok(problem) => settle.refused(status, problem).await,
                Err(error) => {
                    settle
                        .unavailable(&format!("unreadable refusal from the catalog: {error}"))
                        .await
                }
            }
        }
        Ok(reply) => {
            settle
                .unavailable(&format!("catalog answered {}", reply.status))
                .await
        }
        Err(error) => settle.unavailable(&error.to_string()).await,
    }
}

/// Makes the order in `reserving` with its lines (and the key's claim, if one is given) in one
/// statement; false when the key was claimed already.
async fn create(
    state: &AppState,
    identity: &Identity,
    order_id: OrderId,
    lines: &[ReserveLine],
    claim: Option<(&ClaimKey<'_>, &[u8])>,
    address: Option<&Value>,
) -> Result<bool, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let new = NewOrder {
        id: order_id,
        user_id: identity.user_id,
        currency: &state.currency,
        lines,
        actor: Actor::User(identity.user_id).label(),
        cause: Cause::Placed,
        claim,
        address,
    };
    Ok(repo::create_order(&mut conn, &new).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_and_are_bounded() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let merged = merge_lines(&[(a, 2), (b, 1), (a, 3)]).expect("valid");
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].product_id, merged[0].quantity), (a, 5));
        assert!(merge_lines(&[]).is_err());
        assert!(merge_lines(&[(a, 0)]).is_err());
        assert!(merge_lines(&[(a, 1001)]).is_err());
        assert!(merge_lines(&[(a, 600), (a, 600)]).is_err());
        let many: Vec<(ProductId, i64)> = (0..51).map(|_| (ProductId::new(), 1)).collect();
        assert!(merge_lines(&many).is_err());
    }
}
