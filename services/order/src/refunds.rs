//! Refunds (DESIGN.md, "Fulfilment and refunds"). An administrator's refund is accepted here
//! under the order's row lock, which guards what the order's payment captured: captured less
//! refunded less refunds under way must cover it, so concurrent refunds can never add up to more
//! (a CHECK on the row says the same). The accepted refund, its `payment.refund` message and
//! the `Idempotency-Key`'s answer commit together; the payment service carries the refund out
//! and reports back ([`record_reports`], in the payment reports' transaction), and the last
//! captured cent refunded moves the order to `refunded`.

use std::collections::HashSet;

use diesel::{
    OptionalExtension, QueryableByName,
    sql_types::{Array, BigInt, Bytea, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shop_contracts::{
    OrderId, RefundId, RefundStatus,
    events::{RefundOutcome, RefundReport, RefundReportAnswer},
};
use shop_db::prepared;
use shop_http::{FieldError, Identity, RequestContext};

use crate::{
    AppState,
    error::OrderError,
    events,
    lifecycle::Batch,
    models::{Order, Refund, RefundList, RefundResponse, Status},
    repo::{self, ClaimKey},
};

/// The longest reason (characters).
const MAX_REASON: usize = 500;

/// Where claims of this route are kept (per administrator and key).
const ROUTE: &str = "POST /orders/{id}/refunds";

/// `POST /orders/{id}/refunds` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundRequest {
    /// In minor units, at least 1 and at most what is left to refund.
    pub amount_cents: i64,
    /// Why (1-500 characters), kept with the refund.
    pub reason: String,
}

impl RefundRequest {
    fn problems(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.amount_cents < 1 {
            errors.push(FieldError::new("amountCents", "must be at least 1"));
        }
        let reason = self.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON
            || reason.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                "reason",
                format!("must be 1 to {MAX_REASON} characters without control characters"),
            ));
        }
        errors
    }

    fn hash(&self, order_id: OrderId) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(order_id.to_string());
        hasher.update(self.amount_cents.to_be_bytes());
        hasher.update(self.reason.trim());
        hasher.finalize().to_vec()
    }
}

/// A refund's answer: made now (201) or replayed for a repeated key (the first answer).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub refund: serde_json::Value,
    pub replayed: bool,
}

const LOCK_ORDER: &str = concat!(
    "SELECT ",
    crate::models::order_columns!(),
    " FROM orders WHERE id = $1 FOR UPDATE"
);

const RESERVE: &str = concat!(
    "UPDATE orders SET refund_pending_cents = refund_pending_cents + $2, \
     event_seq = event_seq + 1, updated_at = now() WHERE id = $1 RETURNING ",
    crate::models::order_columns!()
);

const INSERT_REFUND: &str = "
INSERT INTO refunds (id, order_id, amount_cents, reason, status, requested_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, order_id, amount_cents, reason, status, error, requested_by, created_at,
    completed_at";

const CLAIM: &str = "
INSERT INTO idempotency_claims (user_id, route, key, request_hash, order_id)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// Accepts a refund of `order_id` (see the module's description). Refused requests leave
/// nothing behind, their key included: a retry with it is judged afresh.
pub async fn request(
    state: &AppState,
    admin: &Identity,
    order_id: OrderId,
    body: &RefundRequest,
    key: Option<&str>,
    context: &RequestContext,
) -> Result<Accepted, OrderError> {
    let problems = body.problems();
    if !problems.is_empty() {
        return Err(OrderError::Validation(problems));
    }
    let claim = key.map(|key| ClaimKey {
        user_id: admin.user_id,
        route: ROUTE,
        key,
    });
    let hash = body.hash(order_id);
    let mut conn = shop_db::conn(&state.pool).await?;
    let (accepted, written) = conn
        .transaction::<_, OrderError, _>(async |conn| {
            if let Some(claim) = &claim
                && let Some(answer) = claim_key(conn, claim, &hash, order_id).await?
            {
                return Ok((answer, shop_outbox::Written::NOTHING));
            }
            let order: Order = prepared(LOCK_ORDER)
                .bind::<SqlUuid, _>(order_id)
                .get_result(conn)
                .await
                .optional()?
                .ok_or(OrderError::NotFound)?;
            check(&order, body.amount_cents)?;
            let order: Order = prepared(RESERVE)
                .bind::<SqlUuid, _>(order_id)
                .bind::<BigInt, _>(body.amount_cents)
                .get_result(conn)
                .await?;
            let refund: Refund = prepared(INSERT_REFUND)
                .bind::<SqlUuid, _>(RefundId::new())
                .bind::<SqlUuid, _>(order_id)
                .bind::<BigInt, _>(body.amount_cents)
                .bind::<Text, _>(body.reason.trim())
                .bind::<Text, _>(RefundStatus::Pending)
                .bind::<SqlUuid, _>(admin.user_id)
                .get_result(conn)
                .await?;
            let message = events::refund_requested(
                &order,
                order.event_seq,
                refund.id,
                refund.amount_cents,
                context,
            )
            .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("payment.refund: {e}")))?;
            let written = shop_outbox::enqueue(conn, &[message]).await?;
            let response = serde_json::to_value(RefundResponse::from(refund))
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("refund answer: {e}")))?;
            if let Some(claim) = &claim {
                repo::try_store_claim_answer(conn, claim, 201, &response).await?;
            }
            tracing::info!(
                order.id = %order_id,
                amount_cents = body.amount_cents,
                "refund accepted"
            );
            let accepted = Accepted {
                refund: response,
                replayed: false,
            };
            Ok((accepted, written))
        })
        .await?;
    state.relay.wake(written);
    Ok(accepted)
}

/// Claims the key for this request; the first answer if it was claimed with the same request
/// (a concurrent claim of the same key waits for the first to commit), 409 for another.
async fn claim_key(
    conn: &mut AsyncPgConnection,
    claim: &ClaimKey<'_>,
    hash: &[u8],
    order_id: OrderId,
) -> Result<Option<Accepted>, OrderError> {
    let claimed = prepared(CLAIM)
        .bind::<SqlUuid, _>(claim.user_id)
        .bind::<Text, _>(claim.route)
        .bind::<Text, _>(claim.key)
        .bind::<Bytea, _>(hash)
        .bind::<SqlUuid, _>(order_id)
        .execute(conn)
        .await?;
    if claimed == 1 {
        return Ok(None);
    }
    let stored = repo::find_claim(conn, claim)
        .await?
        .ok_or(OrderError::IdempotencyInProgress)?;
    if stored.request_hash != hash {
        return Err(OrderError::IdempotencyKeyReused);
    }
    let refund = stored
        .response_body
        .ok_or(OrderError::IdempotencyInProgress)?;
    Ok(Some(Accepted {
        refund,
        replayed: true,
    }))
}

/// Whether `amount_cents` may be refunded from the order as it is.
fn check(order: &Order, amount_cents: i64) -> Result<(), OrderError> {
    match order.status {
        Status::Paid | Status::Shipped | Status::Delivered => {}
        // Everything was given back already.
        Status::Refunded => {
            return Err(OrderError::RefundExceedsCaptured {
                refundable_cents: 0,
            });
        }
        status => return Err(OrderError::IllegalTransition { status }),
    }
    let refundable_cents = order.refundable_cents();
    if amount_cents > refundable_cents {
        return Err(OrderError::RefundExceedsCaptured { refundable_cents });
    }
    Ok(())
}

const LIST: &str = "
SELECT id, order_id, amount_cents, reason, status, error, requested_by, created_at, completed_at
FROM refunds WHERE order_id = $1 ORDER BY created_at, id";

/// An order's refunds, oldest first, with what is left to refund (owner or administrator).
pub async fn list(
    state: &AppState,
    identity: &Identity,
    order_id: OrderId,
) -> Result<RefundList, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    // One snapshot for the order's amounts and its refunds: a report committing between two
    // reads would show refunds carried out that the amounts do not count yet.
    let (order, refunds) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run::<_, OrderError, _>(async |conn| {
            let order = repo::find_order(conn, order_id)
                .await?
                .filter(|o| identity.is_admin() || o.user_id == identity.user_id)
                .ok_or(OrderError::NotFound)?;
            let refunds: Vec<Refund> = prepared(LIST)
                .bind::<SqlUuid, _>(order_id)
                .load(conn)
                .await?;
            Ok((order, refunds))
        })
        .await?;
    Ok(RefundList {
        items: refunds.into_iter().map(RefundResponse::from).collect(),
        captured_cents: order.captured_cents(),
        refunded_cents: order.refunded_cents,
        refundable_cents: order.refundable_cents(),
    })
}

const FINISH: &str = "
UPDATE refunds r SET status = v.status, error = v.error, completed_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS v(id, order_id, status, error)
WHERE r.id = v.id AND r.order_id = v.order_id AND r.status = $5
RETURNING r.id, r.order_id, r.amount_cents, r.status";

#[derive(QueryableByName)]
struct Finished {
    #[diesel(sql_type = SqlUuid)]
    id: RefundId,
    #[diesel(sql_type = SqlUuid)]
    order_id: OrderId,
    #[diesel(sql_type = BigInt)]
    amount_cents: i64,
    #[diesel(sql_type = Text)]
    status: RefundStatus,
}

const KNOWN: &str = "SELECT id FROM refunds WHERE id = ANY($1)";

#[derive(QueryableByName)]
struct Known {
    #[diesel(sql_type = SqlUuid)]
    id: RefundId,
}

/// Records what the payment service did with refunds, in the reports' transaction, on the
/// batch that holds (and locked) their orders: each refund leaves `pending` once, whatever
/// the number of reports. One answer per report: 200, or 404 for a refund never made here.
pub async fn record_reports(
    conn: &AsyncPgConnection,
    batch: &mut Batch,
    reports: &[RefundReport],
    context: &RequestContext,
) -> Result<Vec<RefundReportAnswer>, OrderError> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let finished: Vec<Finished> = prepared(FINISH)
        .bind::<Array<SqlUuid>, _>(reports.iter().map(|r| r.refund_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(reports.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            reports
                .iter()
                .map(|r| match r.outcome {
                    RefundOutcome::Succeeded => RefundStatus::Succeeded,
                    RefundOutcome::Failed => RefundStatus::Failed,
                })
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            reports
                .iter()
                .map(|r| r.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Text, _>(RefundStatus::Pending)
        .load(&mut &*conn)
        .await?;
    for refund in &finished {
        let carried_out = refund.status == RefundStatus::Succeeded;
        if batch
            .record_refund(refund.order_id, refund.amount_cents, carried_out, context)?
            .is_none()
        {
            return Err(OrderError::Unexpected(anyhow::anyhow!(
                "refund {} finished for order {}, which the batch did not lock",
                refund.id,
                refund.order_id
            )));
        }
        tracing::info!(
            order.id = %refund.order_id,
            refund.id = %refund.id,
            status = refund.status.as_str(),
            "refund finished"
        );
    }
    let mut known: HashSet<RefundId> = finished.iter().map(|f| f.id).collect();
    let unanswered: Vec<RefundId> = reports
        .iter()
        .map(|r| r.refund_id)
        .filter(|id| !known.contains(id))
        .collect();
    if !unanswered.is_empty() {
        let found: Vec<Known> = prepared(KNOWN)
            .bind::<Array<SqlUuid>, _>(unanswered)
            .load(&mut &*conn)
            .await?;
        known.extend(found.into_iter().map(|k| k.id));
    }
    Ok(reports
        .iter()
        .map(|r| RefundReportAnswer {
            refund_id: r.refund_id,
            status: if known.contains(&r.refund_id) {
                200
            } else {
                404
            },
        })
        .collect())
}
