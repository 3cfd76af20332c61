//! Step 3 of placing: one transaction settles what the catalog answered.

use actix_web::http::StatusCode;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use serde_json::Value;
use shop_contracts::{OrderId, ProductId, Reservation, ReserveLine, ReserveRefusal};
use shop_http::{ApiError, Identity, RequestContext};

use crate::{
    AppState,
    error::OrderError,
    lifecycle::{self, Cause, Transition},
    models::{Line, OrderResponse},
    repo::{self, ClaimKey},
};

use super::{Answer, Route, claims::answer_for};

pub(super) struct Settle<'a> {
    pub(super) state: &'a AppState,
    pub(super) identity: &'a Identity,
    pub(super) context: &'a RequestContext,
    pub(super) route: Route,
    pub(super) claim: Option<ClaimKey<'a>>,
    pub(super) order_id: OrderId,
    /// As sent to the catalog (merged, in the order's line order).
    pub(super) lines: &'a [ReserveLine],
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
    pub(super) async fn reserved(&self, reservation: &Reservation) -> Result<Answer, OrderError> {
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
                            let ordered: Vec<ProductId> =
                                lines.iter().map(|l| l.product_id).collect();
                            repo::remove_from_cart(conn, self.identity.user_id.into(), &ordered)
                                .await?;
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
    pub(super) async fn refused(
        &self,
        status: StatusCode,
        mut problem: Value,
    ) -> Result<Answer, OrderError> {
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
    pub(super) async fn unavailable(&self, reason: &str) -> Result<Answer, OrderError> {
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
