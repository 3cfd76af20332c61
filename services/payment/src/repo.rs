//! Payment queries. Each takes a connection, so callers compose them inside one transaction.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    models::{Attempt, NewAttempt, NewPayment, Payment, status},
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
    order_id: Uuid,
) -> QueryResult<Option<Payment>> {
    payments::table
        .filter(payments::order_id.eq(order_id))
        .select(Payment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .select(Payment::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a processing payment cancelled; returns it if it was.
pub async fn cancel(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Option<Payment>> {
    diesel::update(
        payments::table
            .filter(payments::order_id.eq(order_id))
            .filter(payments::status.eq(status::PROCESSING)),
    )
    .set((
        payments::status.eq(status::CANCELLED),
        payments::next_attempt_at.eq(None::<DateTime<Utc>>),
        payments::updated_at.eq(now),
    ))
    .returning(Payment::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Leases up to `limit` due payments to `owner` until `until`, skipping rows other workers
/// hold. Waiting payments (backoff) are not due, so they hold nothing.
pub async fn lease_due(
    conn: &mut AsyncPgConnection,
    owner: &str,
    until: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Payment>> {
    let due: Vec<Uuid> = payments::table
        .filter(payments::status.eq(status::PROCESSING))
        .filter(payments::next_attempt_at.le(now))
        .filter(
            payments::lease_until
                .is_null()
                .or(payments::lease_until.lt(now)),
        )
        .order(payments::next_attempt_at.asc())
        .limit(limit)
        .select(payments::id)
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(payments::table.filter(payments::id.eq_any(&due)))
        .set((
            payments::lease_owner.eq(owner),
            payments::lease_until.eq(until),
        ))
        .returning(Payment::as_returning())
        .get_results(conn)
        .await
}

/// Records the outcome of an attempt on the payment row and releases the lease.
pub async fn settle_attempt(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    attempt_no: i32,
    new_status: &str,
    next_attempt_at: Option<DateTime<Utc>>,
) -> QueryResult<Payment> {
    diesel::update(payments::table.find(id))
        .set((
            payments::attempt_no.eq(attempt_no),
            payments::status.eq(new_status),
            payments::next_attempt_at.eq(next_attempt_at),
            payments::lease_owner.eq(None::<String>),
            payments::lease_until.eq(None::<DateTime<Utc>>),
            payments::updated_at.eq(now),
        ))
        .returning(Payment::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    new_status: &str,
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

pub async fn attempts(conn: &mut AsyncPgConnection, payment_id: Uuid) -> QueryResult<Vec<Attempt>> {
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

pub async fn mark_reported(
    conn: &mut AsyncPgConnection,
    payment_id: Uuid,
    attempt_no: i32,
    outcome: &str,
) -> QueryResult<()> {
    diesel::update(payment_attempts::table.find((payment_id, attempt_no, outcome)))
        .set(payment_attempts::reported_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The next event sequence number of a payment's order.
pub async fn next_seq(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i32> {
    diesel::update(payments::table.find(id))
        .set(payments::event_seq.eq(payments::event_seq + 1))
        .returning(payments::event_seq)
        .get_result(conn)
        .await
}
