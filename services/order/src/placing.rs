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
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shop_client::{Idempotency, reqwest::Method};
use shop_contracts::{MAX_LINES, Reservation, ReserveLine, ReserveRefusal, ReserveRequest};
use shop_http::{ApiError, ErrorCode, FieldError, Identity, RequestContext};
use uuid::Uuid;

use crate::{
    AppState,
    error::OrderError,
    lifecycle::{self, Actor, Cause, Transition},
    models::{Line, Order, OrderResponse, Status},
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
pub fn merge_lines(items: &[(Uuid, i64)]) -> Result<Vec<ReserveLine>, OrderError> {
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

fn request_hash(route: Route, source: &Source) -> Result<Vec<u8>, OrderError> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_str());
    match source {
        Source::Lines(lines) => hasher.update(
            serde_json::to_vec(lines)
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("request hash: {e}")))?,
        ),
        // Checkout has no body: every repeat is "the same request".
        Source::Cart => hasher.update(b"cart"),
    }
    Ok(hasher.finalize().to_vec())
}

/// The lines of a checkout: the cart's, validated like a request body's.
async fn cart_lines(state: &AppState, identity: &Identity) -> Result<Vec<ReserveLine>, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let cart = repo::cart(&mut conn, identity.user_id).await?;
    if cart.is_empty() {
        return Err(OrderError::field("cart", "is empty"));
    }
    let items: Vec<(Uuid, i64)> = cart
        .iter()
        .map(|c| (c.product_id, i64::from(c.quantity)))
        .collect();
    merge_lines(&items)
}

/// How a placement goes on after its first statement.
enum Claimed {
    /// Reserve these lines for this order.
    Proceed(Uuid, Vec<ReserveLine>),
    /// The key was answered already.
    Answered(Answer),
}

/// Places an order; the answer is final (fresh, or replayed for a repeated key).
pub async fn place(
    state: &AppState,
    identity: &Identity,
    context: &RequestContext,
    route: Route,
    source: Source,
    key: Option<&str>,
) -> Result<Answer, OrderError> {
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
            let order_id = Uuid::now_v7();
            let lines = lines?;
            create(state, identity, order_id, &lines, None).await?;
            (order_id, lines)
        }
        (Some(claim), lines) => {
            let hash = request_hash(route, &source)?;
            match claimed(state, identity, &claim, &hash, lines).await? {
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
    order_id: Uuid,
    lines: &[ReserveLine],
    claim: Option<(&ClaimKey<'_>, &[u8])>,
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
    };
    Ok(repo::create_order(&mut conn, &new).await?)
}

/// With a key: a fresh key makes the order; a known one is answered from its claim, resumed if
/// it was left unanswered by a request that crashed, or refused. Lines that do not validate
/// (an empty cart, say) are refused only once no claim answers for them.
async fn claimed(
    state: &AppState,
    identity: &Identity,
    claim: &ClaimKey<'_>,
    hash: &[u8],
    lines: Result<Vec<ReserveLine>, OrderError>,
) -> Result<Claimed, OrderError> {
    let (lines, invalid) = match lines {
        Ok(lines) => (Some(lines), None),
        Err(OrderError::Validation(errors)) => (None, Some(errors)),
        Err(other) => return Err(other),
    };
    // A claim can vanish between our insert and our read (a 503 drops it so the client may
    // retry): then try again.
    for _ in 0..3 {
        if let Some(lines) = &lines {
            let order_id = Uuid::now_v7();
            if create(state, identity, order_id, lines, Some((claim, hash))).await? {
                return Ok(Claimed::Proceed(order_id, lines.clone()));
            }
        }
        if let Some(claimed) = existing_claim(state, claim, hash).await? {
            return Ok(claimed);
        }
        if let Some(errors) = invalid {
            return Err(OrderError::Validation(errors));
        }
    }
    Err(OrderError::IdempotencyInProgress)
}

/// The answer to a key already claimed; `None` if there is no claim (any more).
async fn existing_claim(
    state: &AppState,
    claim: &ClaimKey<'_>,
    hash: &[u8],
) -> Result<Option<Claimed>, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, OrderError, _>(async |conn| {
        let Some(stored) = repo::find_claim(conn, claim).await? else {
            return Ok(None);
        };
        if stored.request_hash != hash {
            return Err(OrderError::IdempotencyKeyReused);
        }
        if let (Some(status), Some(body)) = (stored.response_status, stored.response_body) {
            return Ok(Some(Claimed::Answered(Answer::stored(status, body)?)));
        }
        // Unanswered: still running, or left by a request that crashed. Only an old claim is
        // taken over; should its first request still be alive, both work on the same order
        // (the catalog reserves it once) and both answer with its outcome.
        if !repo::take_over_claim(
            conn,
            claim,
            stored.updated_at,
            state.idempotency_resume_after,
        )
        .await?
        {
            return Err(OrderError::IdempotencyInProgress);
        }
        let order = repo::find_order(conn, stored.order_id)
            .await?
            .ok_or_else(|| OrderError::Unexpected(anyhow::anyhow!("claimed order missing")))?;
        if order.status != Status::Reserving {
            let answer = answer_for(conn, &order).await?;
            let (status, body) =
                repo::store_claim_answer(conn, claim, answer.stored_status()?, &answer.body)
                    .await?;
            return Ok(Some(Claimed::Answered(Answer::stored(status, body)?)));
        }
        tracing::info!(order.id = %order.id, "resuming an order left by an interrupted request");
        let lines: Vec<ReserveLine> = repo::lines(conn, order.id)
            .await?
            .into_iter()
            .map(|l| ReserveLine {
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect();
        Ok(Some(Claimed::Proceed(order.id, lines)))
    })
    .await
}

/// The answer a finished order gives a repeated request.
async fn answer_for(conn: &mut AsyncPgConnection, order: &Order) -> Result<Answer, OrderError> {
    if order.status == Status::Failed {
        let cause = repo::history(conn, order.id)
            .await?
            .last()
            .and_then(|h| h.cause.clone());
        let error = ApiError::new(ErrorCode::OrderNotPending, "the order failed")
            .with_extra(serde_json::json!({"orderStatus": Status::Failed, "cause": cause}));
        return Ok(Answer::problem(&error));
    }
    let lines = repo::lines(conn, order.id).await?;
    Answer::created(&OrderResponse::new(order, lines))
}

struct Settle<'a> {
    state: &'a AppState,
    identity: &'a Identity,
    context: &'a RequestContext,
    route: Route,
    claim: Option<ClaimKey<'a>>,
    order_id: Uuid,
    /// As sent to the catalog (merged, in the order's line order).
    lines: &'a [ReserveLine],
}

impl Settle<'_> {
    /// Stores the answer in the claim unless one stands already; returns the one that stands.
    async fn store(&self, conn: &AsyncPgConnection, answer: Answer) -> Result<Answer, OrderError> {
        let Some(claim) = &self.claim else {
            return Ok(answer);
        };
        if repo::try_store_claim_answer(conn, claim, answer.stored_status()?, &answer.body).await? {
            return Ok(answer);
        }
        let stored = repo::find_claim(conn, claim).await?;
        Ok(match stored {
            Some(repo::Claim {
                response_status: Some(status),
                response_body: Some(body),
                ..
            }) => Answer::stored(status, body)?,
            _ => answer,
        })
    }

    /// Someone else settled the order meanwhile (the recovery worker, or a resumed repeat):
    /// answer with what became of it.
    async fn settled_elsewhere(&self, conn: &mut AsyncPgConnection) -> Result<Answer, OrderError> {
        let order = repo::find_order(conn, self.order_id)
            .await?
            .ok_or_else(|| OrderError::Unexpected(anyhow::anyhow!("order vanished")))?;
        let answer = answer_for(conn, &order).await?;
        self.store(conn, answer).await
    }

    /// Reserved: pending with prices and total, payment requested, the ordered lines taken
    /// out of the cart (checkout).
    async fn reserved(&self, reservation: &Reservation) -> Result<Answer, OrderError> {
        let mut total: i64 = 0;
        for line in &reservation.items {
            total = line
                .unit_price_cents
                .checked_mul(i64::from(line.quantity))
                .and_then(|cost| total.checked_add(cost))
                .ok_or_else(|| OrderError::Unexpected(anyhow::anyhow!("order total overflows")))?;
        }
        let lines: Vec<Line> = self
            .lines
            .iter()
            .enumerate()
            .map(|(position, line)| {
                let reserved = reservation
                    .items
                    .iter()
                    .find(|r| r.product_id == line.product_id);
                Line {
                    order_id: self.order_id,
                    position: i16::try_from(position).unwrap_or(i16::MAX),
                    product_id: line.product_id,
                    quantity: line.quantity,
                    name: reserved.map(|r| r.name.clone()),
                    unit_price_cents: reserved.map(|r| r.unit_price_cents),
                }
            })
            .collect();
        let mut conn = shop_db::conn(&self.state.pool).await?;
        let (answer, written) = conn
            .transaction::<_, OrderError, _>(async |conn| {
                let Some(applied) = lifecycle::apply(
                    conn,
                    self.order_id,
                    None,
                    &Transition::reserved(total),
                    self.context,
                )
                .await?
                else {
                    return Ok((self.settled_elsewhere(conn).await?, None));
                };
                let answer = Answer::created(&OrderResponse::new(&applied.order, lines.clone()))?;
                let conn: &AsyncPgConnection = conn;
                // Independent of each other: sent together.
                let (_, _, answer) = futures_util::future::try_join3(
                    async {
                        Ok::<_, OrderError>(repo::price_lines(conn, self.order_id, &lines).await?)
                    },
                    async {
                        if self.route == Route::Checkout {
                            // Only what was ordered: lines added meanwhile stay in the cart.
                            let ordered: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
                            repo::remove_from_cart(conn, self.identity.user_id, &ordered).await?;
                        }
                        Ok(())
                    },
                    self.store(conn, answer),
                )
                .await?;
                Ok((answer, Some(applied.written)))
            })
            .await?;
        if let Some(written) = written {
            self.state.relay.wake(written);
            tracing::info!(order.id = %self.order_id, total, "order placed");
        }
        Ok(answer)
    }

    /// Refused by the catalog (short stock, deleted or unknown product): failed, nothing held.
    /// The client is answered with the catalog's problem, its `refusal` members left out and
    /// an unknown product's line naming the product.
    async fn refused(&self, status: StatusCode, mut problem: Value) -> Result<Answer, OrderError> {
        let refusal = ReserveRefusal::deserialize(&problem).ok();
        let cause = match refusal {
            Some(ReserveRefusal::InsufficientStock { .. }) => Cause::InsufficientStock,
            Some(ReserveRefusal::ProductUnavailable { .. }) => Cause::ProductUnavailable,
            Some(ReserveRefusal::UnknownProduct { .. }) => Cause::UnknownProduct,
            None => Cause::ReservationRefused,
        };
        if let Some(members) = problem.as_object_mut() {
            members.remove("refusal");
            members.remove("index");
        }
        // The catalog numbers lines as sent (merged): name the product too.
        if let Some(ReserveRefusal::UnknownProduct { index }) = refusal
            && let Some(line) = self.lines.get(index)
            && let Some(errors) = problem["errors"].as_array_mut()
        {
            for error in errors {
                error["productId"] = Value::String(line.product_id.to_string());
            }
        }
        let answer = Answer {
            status,
            body: problem,
            location: None,
            retry_after: None,
        };
        let mut conn = shop_db::conn(&self.state.pool).await?;
        let answer = conn
            .transaction::<_, OrderError, _>(async |conn| {
                let applied = lifecycle::apply(
                    conn,
                    self.order_id,
                    None,
                    &Transition::refused(cause),
                    self.context,
                )
                .await?;
                if applied.is_none() {
                    return self.settled_elsewhere(conn).await;
                }
                self.store(conn, answer).await
            })
            .await?;
        tracing::info!(order.id = %self.order_id, cause = cause.as_str(), "order refused");
        Ok(answer)
    }

    /// The catalog could not be asked: failed, with a release in case it did reserve; 503.
    /// The claim is dropped so the client can simply try again. If the order was settled
    /// meanwhile (a resumed repeat made it pending), that outcome is the answer instead.
    async fn unavailable(&self, reason: &str) -> Result<Answer, OrderError> {
        tracing::warn!(order.id = %self.order_id, reason, "catalog unavailable while placing");
        let mut conn = shop_db::conn(&self.state.pool).await?;
        let settled = conn
            .transaction::<_, OrderError, _>(async |conn| {
                let Some(applied) = lifecycle::apply(
                    conn,
                    self.order_id,
                    None,
                    &Transition::catalog_unavailable(),
                    self.context,
                )
                .await?
                else {
                    return Ok(Err(self.settled_elsewhere(conn).await?));
                };
                if let Some(claim) = &self.claim {
                    repo::delete_claim(conn, claim).await?;
                }
                Ok(Ok(applied.written))
            })
            .await?;
        match settled {
            Ok(written) => {
                self.state.relay.wake(written);
                Ok(Answer::problem(&ApiError::unavailable(
                    "the catalog is unavailable; the order was not placed, try again shortly",
                    2,
                )))
            }
            Err(answer) => Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_and_are_bounded() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let merged = merge_lines(&[(a, 2), (b, 1), (a, 3)]).expect("valid");
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].product_id, merged[0].quantity), (a, 5));
        assert!(merge_lines(&[]).is_err());
        assert!(merge_lines(&[(a, 0)]).is_err());
        assert!(merge_lines(&[(a, 1001)]).is_err());
        assert!(merge_lines(&[(a, 600), (a, 600)]).is_err());
        let many: Vec<(Uuid, i64)> = (0..51).map(|_| (Uuid::now_v7(), 1)).collect();
        assert!(merge_lines(&many).is_err());
    }
}
