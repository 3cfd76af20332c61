//! A placement with an `Idempotency-Key`: claiming it, answering a repeat from its claim,
//! and resuming one a crashed request left.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use shop_contracts::{OrderId, ReserveLine};
use shop_http::{ApiError, ErrorCode, Identity};

use crate::{
    AppState,
    error::OrderError,
    models::{Order, OrderResponse, Status},
    repo::{self, ClaimKey},
};

use super::{Answer, create};

/// How a placement goes on after its first statement.
pub(super) enum Claimed {
    /// Reserve these lines for this order.
    Proceed(OrderId, Vec<ReserveLine>),
    /// The key was answered already.
    Answered(Answer),
}

/// With a key: a fresh key makes the order; a known one is answered from its claim, resumed if
/// it was left unanswered by a request that crashed, or refused. Lines that do not validate
/// (an empty cart, say) are refused only once no claim answers for them.
pub(super) async fn claimed(
    state: &AppState,
    identity: &Identity,
    claim: &ClaimKey<'_>,
    hash: &[u8],
    lines: Result<Vec<ReserveLine>, OrderError>,
    address: Option<&serde_json::Value>,
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
            let order_id = OrderId::new();
            if create(
                state,
                identity,
                order_id,
                lines,
                Some((claim, hash)),
                address,
            )
            .await?
            {
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
pub(super) async fn answer_for(
    conn: &mut AsyncPgConnection,
    order: &Order,
) -> Result<Answer, OrderError> {
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
