//! Payment queries. Each takes a connection, so callers compose them inside one transaction.

use chrono::{DateTime, Utc};
use diesel::{
    dsl::now,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Double, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{OrderId, PaymentId, PaymentStatus, UserId, events::PaymentOutcome};
use shop_db::prepared;

use crate::{
    models::{Attempt, NewAttempt, NewPayment, Payment},
    schema::{payment_attempts, payments},
};

/// Inserts a payment unless its order has one; returns whether it was inserted.
pub async fn insert_if_missing(
    conn: &mut AsyncPgConnection,
    new: &NewPayment,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(payments::table)
        .values(new)
        .on_conflict(payments::order_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn find_by_order(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> QueryResult<Option<Payment>> {
    payments::table
        .filter(payments::order_id.eq(order_id))
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, id: PaymentId) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .select(Payment::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a processing payment cancelled; returns it if it was.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> QueryResult<Option<Payment>> {
    diesel::update(
        payments::table
            .filter(payments::order_id.eq(order_id))
            .filter(payments::status.eq(PaymentStatus::Processing)),
    )
    .set((
        payments::status.eq(PaymentStatus::Cancelled),
        payments::next_attempt_at.eq(None::<DateTime<Utc>>),
        payments::updated_at.eq(now),
    ))
    .returning(Payment::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// The payment columns every statement here returns.
macro_rules! payment_columns {
    () => {
        "id, order_id, user_id, amount_cents, currency, status, attempt_no, next_attempt_at, \
         lease_owner, event_seq, created_at, updated_at, traceparent"
    };
}

const INSERT_REQUESTED: &str = concat!(
    "INSERT INTO payments (id, order_id, user_id, amount_cents, currency, status, \
         next_attempt_at, traceparent, lease_owner, lease_until)
     SELECT r.id, r.order_id, r.user_id, r.amount_cents, r.currency, $7, now(), r.traceparent,
         CASE WHEN r.n <= $8 THEN $9 END,
         CASE WHEN r.n <= $8 THEN now() + make_interval(secs => $10) END
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[])
         WITH ORDINALITY AS r(id, order_id, user_id, amount_cents, currency, traceparent, n)
     ON CONFLICT (order_id) DO NOTHING
     RETURNING ",
    payment_columns!()
);

/// A payment to start, from a request.
#[derive(Debug, Clone)]
pub struct Requested {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_cents: i64,
    pub currency: String,
    pub traceparent: Option<String>,
}

/// Inserts the payments of a batch of requests (orders that have one already are left as they
/// are), due at once; the first `leased` of them leased to `owner` for `lease`, so their
/// attempts start without another statement. Returns the payments inserted.
pub async fn insert_requested(
    conn: &mut AsyncPgConnection,
    requests: &[Requested],
    owner: &str,
    leased: usize,
    lease: std::time::Duration,
) -> QueryResult<Vec<Payment>> {
    prepared(INSERT_REQUESTED)
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.order_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(requests.iter().map(|r| r.amount_cents).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            requests
                .iter()
                .map(|r| r.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            requests
                .iter()
                .map(|r| r.traceparent.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Text, _>(PaymentStatus::Processing)
        .bind::<BigInt, _>(i64::try_from(leased).unwrap_or(i64::MAX))
        .bind::<Text, _>(owner)
        .bind::<Double, _>(lease.as_secs_f64())
        .load(conn)
        .await
}

const LEASE_DUE: &str = concat!(
    "UPDATE payments SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
     WHERE id IN (
         SELECT id FROM payments
         WHERE status = $4 AND next_attempt_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_attempt_at
         LIMIT $3
         FOR UPDATE SKIP LOCKED)
     RETURNING ",
    payment_columns!()
);

/// Leases up to `limit` due payments to `owner` for `lease`, skipping rows other workers hold,
/// in one statement. Waiting payments (backoff) are not due, so they hold nothing.
pub async fn lease_due(
    conn: &mut AsyncPgConnection,
    owner: &str,
    lease: std::time::Duration,
    limit: usize,
) -> QueryResult<Vec<Payment>> {
    prepared(LEASE_DUE)
        .bind::<Text, _>(owner)
        .bind::<Double, _>(lease.as_secs_f64())
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind::<Text, _>(PaymentStatus::Processing)
        .load(conn)
        .await
}

/// An attempt's outcome, to record on its payment.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub payment_id: PaymentId,
    /// The attempt's number: the payment's `attempt_no` was one less when it was leased.
    pub attempt_no: i32,
    pub status: PaymentStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Notifications the attempt publishes (numbers of the order's payment events it takes).
    pub events: i32,
}

const SETTLE: &str = concat!(
    "UPDATE payments p SET attempt_no = s.attempt_no, status = s.status,
         next_attempt_at = s.next_attempt_at, lease_owner = NULL, lease_until = NULL,
         updated_at = now(), event_seq = p.event_seq + s.events
     FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::timestamptz[], $5::int4[])
         AS s(id, attempt_no, status, next_attempt_at, events)
     WHERE p.id = s.id AND p.status = $6 AND p.attempt_no = s.attempt_no - 1
     RETURNING ",
    "p.id, p.order_id, p.user_id, p.amount_cents, p.currency, p.status, p.attempt_no, \
     p.next_attempt_at, p.lease_owner, p.event_seq, p.created_at, p.updated_at, p.traceparent"
);

/// Records attempt outcomes on their payments and releases the leases, each only if its
/// payment is still processing at the attempt it ran (not cancelled meanwhile, not settled by
/// a worker whose lease this one outlived). Returns the payments it changed.
pub async fn settle_attempts(
    conn: &mut AsyncPgConnection,
    settlements: &[Settlement],
) -> QueryResult<Vec<Payment>> {
    prepared(SETTLE)
        .bind::<Array<SqlUuid>, _>(settlements.iter().map(|s| s.payment_id).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(settlements.iter().map(|s| s.attempt_no).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(settlements.iter().map(|s| s.status).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            settlements
                .iter()
                .map(|s| s.next_attempt_at)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int4>, _>(settlements.iter().map(|s| s.events).collect::<Vec<_>>())
        .bind::<Text, _>(PaymentStatus::Processing)
        .load(conn)
        .await
}

const INSERT_ATTEMPTS: &str = "
INSERT INTO payment_attempts (payment_id, attempt_no, outcome, idempotency_key, error,
    next_retry_at, is_final)
SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[],
    $6::timestamptz[], $7::bool[])
ON CONFLICT DO NOTHING";

/// Inserts attempt rows (a row already there stays as it is), in one statement.
pub async fn insert_attempts(conn: &AsyncPgConnection, attempts: &[NewAttempt]) -> QueryResult<()> {
    prepared(INSERT_ATTEMPTS)
        .bind::<Array<SqlUuid>, _>(attempts.iter().map(|a| a.payment_id).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(attempts.iter().map(|a| a.attempt_no).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(attempts.iter().map(|a| a.outcome).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            attempts
                .iter()
                .map(|a| a.idempotency_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            attempts
                .iter()
                .map(|a| a.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Timestamptz>>, _>(
            attempts.iter().map(|a| a.next_retry_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(attempts.iter().map(|a| a.is_final).collect::<Vec<_>>())
        .execute(&mut &*conn)
        .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: PaymentId,
    new_status: PaymentStatus,
) -> QueryResult<Payment> {
    diesel::update(payments::table.find(id))
        .set((
            payments::status.eq(new_status),
            payments::updated_at.eq(now),
        ))
        .returning(Payment::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_attempt(conn: &mut AsyncPgConnection, attempt: &NewAttempt) -> QueryResult<()> {
    diesel::insert_into(payment_attempts::table)
        .values(attempt)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn attempts(
    conn: &mut AsyncPgConnection,
    payment_id: PaymentId,
) -> QueryResult<Vec<Attempt>> {
    payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment_id))
        .order((
            payment_attempts::attempt_no.asc(),
            payment_attempts::at.asc(),
        ))
        .select(Attempt::as_select())
        .load(conn)
        .await
}

const MARK_REPORTED: &str = "
UPDATE payment_attempts a SET reported_at = now()
FROM unnest($1::uuid[], $2::int4[], $3::text[]) AS r(payment_id, attempt_no, outcome)
WHERE a.payment_id = r.payment_id AND a.attempt_no = r.attempt_no AND a.outcome = r.outcome
  AND a.reported_at IS NULL";

/// Notes that the order service accepted these reports (payment, attempt, outcome).
pub async fn mark_reported(
    conn: &mut AsyncPgConnection,
    reported: &[(PaymentId, i32, PaymentOutcome)],
) -> QueryResult<()> {
    if reported.is_empty() {
        return Ok(());
    }
    prepared(MARK_REPORTED)
        .bind::<Array<SqlUuid>, _>(reported.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(reported.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(reported.iter().map(|r| r.2).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

const MARK_REFUNDS_REPORTED: &str =
    "UPDATE refunds SET reported_at = now() WHERE id = ANY($1) AND reported_at IS NULL";

/// Notes that the order service accepted the reports of these refunds.
pub async fn mark_refunds_reported(
    conn: &mut AsyncPgConnection,
    refunds: &[shop_contracts::RefundId],
) -> QueryResult<()> {
    if refunds.is_empty() {
        return Ok(());
    }
    prepared(MARK_REFUNDS_REPORTED)
        .bind::<Array<SqlUuid>, _>(refunds)
        .execute(conn)
        .await?;
    Ok(())
}

/// The next event sequence number of a payment's order.
pub async fn next_seq(conn: &mut AsyncPgConnection, id: PaymentId) -> QueryResult<i32> {
    diesel::update(payments::table.find(id))
        .set(payments::event_seq.eq(payments::event_seq + 1))
        .returning(payments::event_seq)
        .get_result(conn)
        .await
}

const REFUNDS: &str = "SELECT id, amount_cents, status, error, idempotency_key, created_at, \
     completed_at, reported_at FROM refunds WHERE payment_id = $1 ORDER BY created_at, id";

/// A payment's refunds, oldest first.
pub async fn refunds(
    conn: &mut AsyncPgConnection,
    payment_id: PaymentId,
) -> QueryResult<Vec<crate::models::PaymentRefund>> {
    prepared(REFUNDS)
        .bind::<SqlUuid, _>(payment_id)
        .load(conn)
        .await
}
