//! `Idempotency-Key` claims: per user and route, with the answer once there is one.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Double, Int2, Jsonb, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{OrderId, UserId};
use shop_db::prepared;

use crate::schema::idempotency_claims;

/// An idempotency claim as stored.
#[derive(Debug, Clone, Queryable)]
pub struct Claim {
    pub request_hash: Vec<u8>,
    pub order_id: OrderId,
    pub response_status: Option<i16>,
    pub response_body: Option<serde_json::Value>,
    pub updated_at: DateTime<Utc>,
}

/// Names an `Idempotency-Key` claim: per user and route.
#[derive(Debug, Clone, Copy)]
pub struct ClaimKey<'a> {
    pub user_id: UserId,
    pub route: &'a str,
    pub key: &'a str,
}

pub async fn find_claim(
    conn: &AsyncPgConnection,
    claim: &ClaimKey<'_>,
) -> QueryResult<Option<Claim>> {
    idempotency_claims::table
        .find((claim.user_id, claim.route, claim.key))
        .select((
            idempotency_claims::request_hash,
            idempotency_claims::order_id,
            idempotency_claims::response_status,
            idempotency_claims::response_body,
            idempotency_claims::updated_at,
        ))
        .first(&mut &*conn)
        .await
        .optional()
}

const TAKE_OVER_CLAIM: &str = "
UPDATE idempotency_claims SET updated_at = now()
WHERE user_id = $1 AND route = $2 AND key = $3 AND updated_at = $4 AND response_status IS NULL
  AND updated_at < now() - make_interval(secs => $5)";

/// Takes over an unfinished claim untouched for `resume_after` (judged by the database's
/// clock) and last touched at `seen`; false if it is too fresh or someone else took it first.
pub async fn take_over_claim(
    conn: &mut AsyncPgConnection,
    claim: &ClaimKey<'_>,
    seen: DateTime<Utc>,
    resume_after: std::time::Duration,
) -> QueryResult<bool> {
    let updated = prepared(TAKE_OVER_CLAIM)
        .bind::<SqlUuid, _>(claim.user_id)
        .bind::<Text, _>(claim.route)
        .bind::<Text, _>(claim.key)
        .bind::<diesel::sql_types::Timestamptz, _>(seen)
        .bind::<Double, _>(resume_after.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(updated == 1)
}

const STORE_CLAIM_ANSWER: &str = "
UPDATE idempotency_claims SET response_status = $4, response_body = $5, updated_at = now()
WHERE user_id = $1 AND route = $2 AND key = $3 AND response_status IS NULL";

/// Stores a claim's answer unless one is stored already; false if one was.
pub async fn try_store_claim_answer(
    conn: &AsyncPgConnection,
    claim: &ClaimKey<'_>,
    status: i16,
    body: &serde_json::Value,
) -> QueryResult<bool> {
    let stored = prepared(STORE_CLAIM_ANSWER)
        .bind::<SqlUuid, _>(claim.user_id)
        .bind::<Text, _>(claim.route)
        .bind::<Text, _>(claim.key)
        .bind::<Int2, _>(status)
        .bind::<Jsonb, _>(body)
        .execute(&mut &*conn)
        .await?;
    Ok(stored == 1)
}

/// Stores a claim's answer unless one is stored already; returns the answer that stands.
pub async fn store_claim_answer(
    conn: &AsyncPgConnection,
    claim: &ClaimKey<'_>,
    status: i16,
    body: &serde_json::Value,
) -> QueryResult<(i16, serde_json::Value)> {
    if try_store_claim_answer(conn, claim, status, body).await? {
        return Ok((status, body.clone()));
    }
    Ok(match find_claim(conn, claim).await? {
        Some(Claim {
            response_status: Some(status),
            response_body: Some(body),
            ..
        }) => (status, body),
        _ => (status, body.clone()),
    })
}

pub async fn delete_claim(conn: &mut AsyncPgConnection, claim: &ClaimKey<'_>) -> QueryResult<()> {
    diesel::delete(idempotency_claims::table.find((claim.user_id, claim.route, claim.key)))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn purge_claims(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(idempotency_claims::table.filter(idempotency_claims::created_at.lt(before)))
        .execute(conn)
        .await
}
