//! Placing an order (DESIGN.md, saga step 1) for `POST /orders` and `POST /cart/checkout`.
//!
//! 1. With an `Idempotency-Key`, the claim (request hash, pre-made order id) commits together
//!    with the order in `reserving`, before the catalog is called.
//! 2. The catalog reserves every line (an idempotent call: the order id is the key).
//! 3. One transaction settles the outcome: `pending` with prices, total, `payment.requested`
//!    and `order.created` (and an emptied cart for checkout); or `failed` for a refusal; or
//!    `failed` with a release command when the catalog could not be reached (503).

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shop_client::{Idempotency, reqwest::Method};
use shop_contracts::{Reservation, ReserveLine, ReserveRequest, events::types};
use shop_http::{ApiError, ErrorCode, FieldError, Identity, RequestContext};
use uuid::Uuid;

use crate::{
    AppState,
    error::OrderError,
    events,
    models::{NewLine, Order, OrderResponse, Status},
    repo,
};

/// Most lines in one order.
pub const MAX_LINES: usize = 50;
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
    pub status: u16,
    pub body: Value,
    pub location: Option<String>,
    pub retry_after: Option<u64>,
}

impl Answer {
    fn created(order: &OrderResponse) -> Self {
        Self {
            status: 201,
            body: serde_json::to_value(order).unwrap_or_default(),
            location: Some(format!("/orders/{}", order.id)),
            retry_after: None,
        }
    }

    fn problem(error: &ApiError) -> Self {
        Self {
            status: error.status().as_u16(),
            body: error.body(),
            location: None,
            retry_after: error.retry_after(),
        }
    }

    fn stored(status: i16, body: Value) -> Self {
        let location = (status == 201)
            .then(|| body["id"].as_str().map(|id| format!("/orders/{id}")))
            .flatten();
        Self {
            status: u16::try_from(status).unwrap_or(500),
            body,
            location,
            retry_after: None,
        }
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

fn request_hash(route: Route, source: &Source) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_str());
    match source {
        Source::Lines(lines) => hasher.update(serde_json::to_vec(lines).unwrap_or_default()),
        // Checkout has no body: every repeat is "the same request".
        Source::Cart => hasher.update(b"cart"),
    }
    hasher.finalize().to_vec()
}

enum Claimed {
    Proceed(Uuid, Vec<ReserveLine>),
    Answered(Answer),
}

fn actor(identity: &Identity) -> String {
    format!("user:{}", identity.user_id)
}

/// Makes the order in `reserving` with its lines; for checkout, from the cart.
async fn create(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    identity: &Identity,
    order_id: Uuid,
    source: &Source,
) -> Result<Vec<ReserveLine>, OrderError> {
    let lines = match source {
        Source::Lines(lines) => lines.clone(),
        Source::Cart => {
            let cart = repo::cart(conn, identity.user_id).await?;
            if cart.is_empty() {
                return Err(OrderError::field("cart", "is empty"));
            }
            let items: Vec<(Uuid, i64)> = cart
                .iter()
                .map(|c| (c.product_id, i64::from(c.quantity)))
                .collect();
            merge_lines(&items)?
        }
    };
    repo::insert_order(conn, order_id, identity.user_id, &state.currency).await?;
    let rows: Vec<NewLine> = lines
        .iter()
        .enumerate()
        .map(|(position, line)| NewLine {
            order_id,
            position: i16::try_from(position).unwrap_or(i16::MAX),
            product_id: line.product_id,
            quantity: line.quantity,
        })
        .collect();
    repo::insert_lines(conn, &rows).await?;
    repo::add_history(
        conn,
        order_id,
        Status::Reserving,
        &actor(identity),
        Some("placed"),
    )
    .await?;
    Ok(lines)
}

/// The answer a finished order gives a repeated request.
async fn answer_for(conn: &mut AsyncPgConnection, order: &Order) -> Result<Answer, OrderError> {
    if order.status() == Status::Failed {
        let cause = repo::history(conn, order.id)
            .await?
            .last()
            .and_then(|h| h.cause.clone());
        let error = ApiError::new(ErrorCode::OrderNotPending, "the order failed")
            .with_extra(serde_json::json!({"orderStatus": "failed", "cause": cause}));
        return Ok(Answer::problem(&error));
    }
    let lines = repo::lines(conn, order.id).await?;
    Ok(Answer::created(&OrderResponse::new(order, lines)))
}

async fn claim(
    state: &AppState,
    identity: &Identity,
    route: Route,
    key: &str,
    source: &Source,
) -> Result<Claimed, OrderError> {
    // A claim can vanish between our insert and our read (a 503 drops it so the client may
    // retry): then try again.
    for _ in 0..3 {
        if let Some(claimed) = try_claim(state, identity, route, key, source).await? {
            return Ok(claimed);
        }
    }
    Err(OrderError::IdempotencyInProgress)
}

async fn try_claim(
    state: &AppState,
    identity: &Identity,
    route: Route,
    key: &str,
    source: &Source,
) -> Result<Option<Claimed>, OrderError> {
    let hash = request_hash(route, source);
    let new_id = Uuid::now_v7();
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, OrderError, _>(async |conn| {
        if repo::insert_claim(conn, identity.user_id, route.as_str(), key, &hash, new_id).await? {
            let lines = create(conn, state, identity, new_id, source).await?;
            return Ok(Some(Claimed::Proceed(new_id, lines)));
        }
        let Some(claim) = repo::find_claim(conn, identity.user_id, route.as_str(), key).await?
        else {
            return Ok(None);
        };
        if claim.request_hash != hash {
            return Err(OrderError::IdempotencyKeyReused);
        }
        if let (Some(status), Some(body)) = (claim.response_status, claim.response_body) {
            return Ok(Some(Claimed::Answered(Answer::stored(status, body))));
        }
        // Unanswered: still running, or left by a request that crashed. Only an old claim is
        // taken over; should its first request still be alive, both work on the same order
        // (the catalog reserves it once) and both answer with its outcome.
        if !repo::take_over_claim(
            conn,
            identity.user_id,
            route.as_str(),
            key,
            claim.updated_at,
            state.idempotency_resume_after,
        )
        .await?
        {
            return Err(OrderError::IdempotencyInProgress);
        }
        let order = repo::find_order(conn, claim.order_id)
            .await?
            .ok_or_else(|| OrderError::Unexpected(anyhow::anyhow!("claimed order missing")))?;
        if order.status() != Status::Reserving {
            let answer = answer_for(conn, &order).await?;
            let (status, body) = repo::store_claim_answer(
                conn,
                identity.user_id,
                route.as_str(),
                key,
                i16::try_from(answer.status).unwrap_or(500),
                &answer.body,
            )
            .await?;
            return Ok(Some(Claimed::Answered(Answer::stored(status, body))));
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

/// Places an order; the answer is final (fresh, or replayed for a repeated key).
pub async fn place(
    state: &AppState,
    identity: &Identity,
    context: &RequestContext,
    route: Route,
    source: Source,
    key: Option<&str>,
) -> Result<Answer, OrderError> {
    let (order_id, lines) = match key {
        Some(key) => match claim(state, identity, route, key, &source).await? {
            Claimed::Proceed(order_id, lines) => (order_id, lines),
            Claimed::Answered(answer) => return Ok(answer),
        },
        None => {
            let order_id = Uuid::now_v7();
            let mut conn = shop_db::conn(&state.pool).await?;
            let lines = conn
                .transaction::<_, OrderError, _>(async |conn| {
                    create(conn, state, identity, order_id, &source).await
                })
                .await?;
            (order_id, lines)
        }
    };
    let settle = Settle {
        state,
        identity,
        context,
        route,
        key,
        order_id,
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
    if matches!(&reply, Ok(reply) if reply.status == 200)
        && state
            .hooks
            .abort_after_reserve
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        std::process::abort();
    }
    #[cfg(feature = "test-hooks")]
    if state
        .hooks
        .crash_after_reserve
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(OrderError::Unexpected(anyhow::anyhow!(
            "test hook: crashed after reserving"
        )));
    }
    match reply {
        Ok(reply) if reply.status == 200 => {
            let reservation: Reservation = reply
                .json()
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("reservation answer: {e}")))?;
            settle.reserved(&reservation).await
        }
        Ok(reply) if reply.status == 409 || reply.status == 422 => {
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            settle.refused(reply.status.as_u16(), body, &lines).await
        }
        Ok(reply) => {
            settle
                .unavailable(&format!("catalog answered {}", reply.status))
                .await
        }
        Err(error) => settle.unavailable(&error.to_string()).await,
    }
}

struct Settle<'a> {
    state: &'a AppState,
    identity: &'a Identity,
    context: &'a RequestContext,
    route: Route,
    key: Option<&'a str>,
    order_id: Uuid,
}

impl Settle<'_> {
    /// Stores the answer in the claim unless one stands already; returns the one that stands.
    async fn store(
        &self,
        conn: &mut AsyncPgConnection,
        answer: Answer,
    ) -> Result<Answer, OrderError> {
        let Some(key) = self.key else {
            return Ok(answer);
        };
        let status = i16::try_from(answer.status).unwrap_or(500);
        let (status, body) = repo::store_claim_answer(
            conn,
            self.identity.user_id,
            self.route.as_str(),
            key,
            status,
            &answer.body,
        )
        .await?;
        if status == i16::try_from(answer.status).unwrap_or(500) && body == answer.body {
            return Ok(answer);
        }
        Ok(Answer::stored(status, body))
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
        let priced: Vec<(Uuid, String, i64)> = reservation
            .items
            .iter()
            .map(|l| (l.product_id, l.name.clone(), l.unit_price_cents))
            .collect();
        let mut conn = shop_db::conn(&self.state.pool).await?;
        let answer = conn
            .transaction::<_, OrderError, _>(async |conn| {
                let Some(order) =
                    repo::transition(conn, self.order_id, &[Status::Reserving], Status::Pending)
                        .await?
                else {
                    return self.settled_elsewhere(conn).await;
                };
                repo::set_reserved(conn, order.id, total, &priced).await?;
                let order = Order {
                    total_cents: Some(total),
                    ..order
                };
                repo::add_history(conn, order.id, Status::Pending, "system", Some("reserved"))
                    .await?;
                let messages = vec![
                    events::payment_requested(conn, &order, self.context).await?,
                    events::status_changed(conn, &order, types::ORDER_CREATED, None, self.context)
                        .await?,
                ];
                shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
                repo::mark_payment_requested(conn, order.id).await?;
                let lines = repo::lines(conn, order.id).await?;
                if self.route == Route::Checkout {
                    // Only what was ordered: lines added meanwhile stay in the cart.
                    let ordered: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
                    repo::remove_from_cart(conn, self.identity.user_id, &ordered).await?;
                }
                self.store(conn, Answer::created(&OrderResponse::new(&order, lines)))
                    .await
            })
            .await?;
        self.state.relay.wake();
        if answer.status == 201 {
            tracing::info!(order.id = %self.order_id, total, "order placed");
        }
        Ok(answer)
    }

    /// Refused by the catalog (short stock, deleted or unknown product): failed, nothing held.
    async fn refused(
        &self,
        status: u16,
        mut body: Value,
        lines: &[ReserveLine],
    ) -> Result<Answer, OrderError> {
        let cause = match body["code"].as_str() {
            Some("insufficient-stock") => "insufficient_stock",
            Some("product-unavailable") => "product_unavailable",
            Some("validation-failed") => "unknown_product",
            _ => "reservation_refused",
        };
        // The catalog numbers lines as sent (merged): name the product too.
        if let Some(errors) = body["errors"].as_array_mut() {
            for error in errors {
                let index = error["field"]
                    .as_str()
                    .and_then(|f| f.strip_prefix("items["))
                    .and_then(|f| f.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok());
                if let Some(line) = index.and_then(|i| lines.get(i)) {
                    error["productId"] = Value::String(line.product_id.to_string());
                }
            }
        }
        let answer = Answer {
            status,
            body,
            location: None,
            retry_after: None,
        };
        let mut conn = shop_db::conn(&self.state.pool).await?;
        let answer = conn
            .transaction::<_, OrderError, _>(async |conn| {
                if repo::transition(conn, self.order_id, &[Status::Reserving], Status::Failed)
                    .await?
                    .is_none()
                {
                    return self.settled_elsewhere(conn).await;
                }
                repo::add_history(conn, self.order_id, Status::Failed, "system", Some(cause))
                    .await?;
                self.store(conn, answer).await
            })
            .await?;
        tracing::info!(order.id = %self.order_id, cause, "order refused");
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
                if repo::transition(conn, self.order_id, &[Status::Reserving], Status::Failed)
                    .await?
                    .is_none()
                {
                    return Ok(Some(self.settled_elsewhere(conn).await?));
                }
                repo::add_history(
                    conn,
                    self.order_id,
                    Status::Failed,
                    "system",
                    Some("catalog_unavailable"),
                )
                .await?;
                shop_outbox::enqueue(conn, events::CHANNEL, &[events::release(self.order_id)])
                    .await?;
                if let Some(key) = self.key {
                    repo::delete_claim(conn, self.identity.user_id, self.route.as_str(), key)
                        .await?;
                }
                Ok(None)
            })
            .await?;
        self.state.relay.wake();
        Ok(settled.unwrap_or_else(|| {
            Answer::problem(&ApiError::unavailable(
                "the catalog is unavailable; the order was not placed, try again shortly",
                2,
            ))
        }))
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
