//! Order, cart and claim queries. Each takes a connection, so callers compose them inside one
//! transaction.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    models::{CartItem, HistoryEntry, Line, NewLine, Order, Status},
    schema::{
        cart_items, idempotency_claims, order_lines, order_status_history, orders, payment_events,
    },
};

pub async fn insert_order(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
    currency: &str,
) -> QueryResult<Order> {
    diesel::insert_into(orders::table)
        .values((
            orders::id.eq(id),
            orders::user_id.eq(user_id),
            orders::status.eq(Status::Reserving.as_str()),
            orders::currency.eq(currency),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_lines(conn: &mut AsyncPgConnection, lines: &[NewLine]) -> QueryResult<()> {
    diesel::insert_into(order_lines::table)
        .values(lines)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_history(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    status: Status,
    actor: &str,
    cause: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(order_status_history::table)
        .values((
            order_status_history::order_id.eq(order_id),
            order_status_history::status.eq(status.as_str()),
            order_status_history::actor.eq(actor),
            order_status_history::cause.eq(cause),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find_order(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock_order(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn lines(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Vec<Line>> {
    order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::position.asc())
        .select(Line::as_select())
        .load(conn)
        .await
}

pub async fn lines_of(conn: &mut AsyncPgConnection, order_ids: &[Uuid]) -> QueryResult<Vec<Line>> {
    order_lines::table
        .filter(order_lines::order_id.eq_any(order_ids))
        .select(Line::as_select())
        .load(conn)
        .await
}

/// Moves an order to `to` if its status is one of `from`; `None` if it was not.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    from: &[Status],
    to: Status,
) -> QueryResult<Option<Order>> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    diesel::update(orders::table.find(id).filter(orders::status.eq_any(from)))
        .set((
            orders::status.eq(to.as_str()),
            orders::status_changed_at.eq(now),
            orders::updated_at.eq(now),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Records what the catalog reserved: each line's name and price, and the total.
pub async fn set_reserved(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    total_cents: i64,
    lines: &[(Uuid, String, i64)],
) -> QueryResult<()> {
    for (product_id, name, unit_price_cents) in lines {
        diesel::update(order_lines::table.find((id, product_id)))
            .set((
                order_lines::name.eq(name),
                order_lines::unit_price_cents.eq(unit_price_cents),
            ))
            .execute(conn)
            .await?;
    }
    diesel::update(orders::table.find(id))
        .set(orders::total_cents.eq(total_cents))
        .execute(conn)
        .await?;
    Ok(())
}

/// The next event sequence number of an order.
pub async fn next_seq(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i32> {
    diesel::update(orders::table.find(id))
        .set(orders::event_seq.eq(orders::event_seq + 1))
        .returning(orders::event_seq)
        .get_result(conn)
        .await
}

pub async fn mark_payment_requested(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(orders::table.find(id))
        .set(orders::payment_requested_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_payment_summary(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    attempts: i32,
    last_error: Option<&str>,
) -> QueryResult<()> {
    diesel::update(orders::table.find(id))
        .set((
            orders::payment_status.eq(status),
            orders::payment_attempts.eq(diesel::dsl::sql::<diesel::sql_types::Int4>(
                "GREATEST(payment_attempts, ",
            )
            .bind::<diesel::sql_types::Int4, _>(attempts)
            .sql(")")),
            orders::payment_last_error.eq(last_error),
            orders::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What a listing selects.
#[derive(Debug, Clone)]
pub struct OrderFilter {
    pub user_id: Option<Uuid>,
    /// `None` hides `reserving` and `failed` orders.
    pub status: Option<Status>,
    pub page: u32,
    pub limit: u32,
}

fn filtered(filter: &OrderFilter) -> orders::BoxedQuery<'static, Pg> {
    let mut query = orders::table.into_boxed();
    if let Some(user) = filter.user_id {
        query = query.filter(orders::user_id.eq(user));
    }
    query = match filter.status {
        Some(status) => query.filter(orders::status.eq(status.as_str())),
        None => query.filter(
            orders::status.ne_all(vec![Status::Reserving.as_str(), Status::Failed.as_str()]),
        ),
    };
    query
}

pub async fn list_orders(
    conn: &mut AsyncPgConnection,
    filter: &OrderFilter,
) -> QueryResult<(Vec<Order>, i64)> {
    let total = filtered(filter).count().get_result(conn).await?;
    let items = filtered(filter)
        .order((orders::created_at.desc(), orders::id.desc()))
        .offset(i64::from(filter.page.saturating_sub(1)) * i64::from(filter.limit))
        .limit(i64::from(filter.limit))
        .select(Order::as_select())
        .load(conn)
        .await?;
    Ok((items, total))
}

pub async fn history(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Vec<HistoryEntry>> {
    order_status_history::table
        .filter(order_status_history::order_id.eq(order_id))
        .order(order_status_history::id.asc())
        .select(HistoryEntry::as_select())
        .load(conn)
        .await
}

/// An idempotency claim as stored.
#[derive(Debug, Clone, Queryable)]
pub struct Claim {
    pub request_hash: Vec<u8>,
    pub order_id: Uuid,
    pub response_status: Option<i16>,
    pub response_body: Option<serde_json::Value>,
    pub updated_at: DateTime<Utc>,
}

/// Inserts a claim unless one exists; returns whether this call made it. A concurrent claim
/// of the same key waits for this transaction to end.
pub async fn insert_claim(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    request_hash: &[u8],
    order_id: Uuid,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(idempotency_claims::table)
        .values((
            idempotency_claims::user_id.eq(user_id),
            idempotency_claims::route.eq(route),
            idempotency_claims::key.eq(key),
            idempotency_claims::request_hash.eq(request_hash),
            idempotency_claims::order_id.eq(order_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn find_claim(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
) -> QueryResult<Option<Claim>> {
    idempotency_claims::table
        .find((user_id, route, key))
        .select((
            idempotency_claims::request_hash,
            idempotency_claims::order_id,
            idempotency_claims::response_status,
            idempotency_claims::response_body,
            idempotency_claims::updated_at,
        ))
        .first(conn)
        .await
        .optional()
}

/// Takes over an unfinished claim untouched for `resume_after` (judged by the database's
/// clock) and last touched at `seen`; false if it is too fresh or someone else took it first.
pub async fn take_over_claim(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    seen: DateTime<Utc>,
    resume_after: std::time::Duration,
) -> QueryResult<bool> {
    let updated = diesel::update(
        idempotency_claims::table
            .find((user_id, route, key))
            .filter(idempotency_claims::updated_at.eq(seen))
            .filter(idempotency_claims::response_status.is_null())
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "updated_at < now() - make_interval(secs => ",
                )
                .bind::<diesel::sql_types::Double, _>(resume_after.as_secs_f64())
                .sql(")"),
            ),
    )
    .set(idempotency_claims::updated_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Stores a claim's answer unless one is stored already; returns the answer that stands.
pub async fn store_claim_answer(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
    status: i16,
    body: &serde_json::Value,
) -> QueryResult<(i16, serde_json::Value)> {
    let stored = diesel::update(
        idempotency_claims::table
            .find((user_id, route, key))
            .filter(idempotency_claims::response_status.is_null()),
    )
    .set((
        idempotency_claims::response_status.eq(status),
        idempotency_claims::response_body.eq(body),
        idempotency_claims::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    if stored == 1 {
        return Ok((status, body.clone()));
    }
    let existing = find_claim(conn, user_id, route, key).await?;
    Ok(match existing {
        Some(Claim {
            response_status: Some(status),
            response_body: Some(body),
            ..
        }) => (status, body),
        _ => (status, body.clone()),
    })
}

pub async fn delete_claim(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    route: &str,
    key: &str,
) -> QueryResult<()> {
    diesel::delete(idempotency_claims::table.find((user_id, route, key)))
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

/// The answer given to an already received payment event.
pub async fn payment_event_answer(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    attempt_no: i32,
    outcome: &str,
) -> QueryResult<Option<i16>> {
    payment_events::table
        .find((order_id, attempt_no, outcome))
        .select(payment_events::answer_status)
        .first(conn)
        .await
        .optional()
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_payment_event(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    attempt_no: i32,
    outcome: &str,
    error: Option<&str>,
    next_retry_at: Option<DateTime<Utc>>,
    is_final: bool,
    answer_status: i16,
) -> QueryResult<()> {
    diesel::insert_into(payment_events::table)
        .values((
            payment_events::order_id.eq(order_id),
            payment_events::attempt_no.eq(attempt_no),
            payment_events::outcome.eq(outcome),
            payment_events::error.eq(error),
            payment_events::next_retry_at.eq(next_retry_at),
            payment_events::is_final.eq(is_final),
            payment_events::answer_status.eq(answer_status),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn cart(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<CartItem>> {
    cart_items::table
        .filter(cart_items::user_id.eq(user_id))
        .order((cart_items::updated_at.asc(), cart_items::product_id.asc()))
        .select(CartItem::as_select())
        .load(conn)
        .await
}

pub async fn put_cart_item(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    product_id: Uuid,
    quantity: i32,
) -> QueryResult<()> {
    diesel::insert_into(cart_items::table)
        .values((
            cart_items::user_id.eq(user_id),
            cart_items::product_id.eq(product_id),
            cart_items::quantity.eq(quantity),
        ))
        .on_conflict((cart_items::user_id, cart_items::product_id))
        .do_update()
        .set((
            cart_items::quantity.eq(quantity),
            cart_items::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_cart_item(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    product_id: Uuid,
) -> QueryResult<bool> {
    let deleted = diesel::delete(cart_items::table.find((user_id, product_id)))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Removes the given products from a user's cart (what an order took from it).
pub async fn remove_from_cart(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    products: &[Uuid],
) -> QueryResult<()> {
    diesel::delete(
        cart_items::table
            .filter(cart_items::user_id.eq(user_id))
            .filter(cart_items::product_id.eq_any(products)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clear_cart(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<()> {
    diesel::delete(cart_items::table.filter(cart_items::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Orders in `status` since before `before`, locked, skipping those another worker holds.
pub async fn stale(
    conn: &mut AsyncPgConnection,
    status: Status,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .filter(orders::status.eq(status.as_str()))
        .filter(orders::status_changed_at.lt(before))
        .order(orders::status_changed_at.asc())
        .limit(limit)
        .select(Order::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}

/// Pending orders the payment service has not reported on, whose request went out before
/// `before`.
pub async fn unreported(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .filter(orders::status.eq(Status::Pending.as_str()))
        .filter(orders::payment_status.is_null())
        .filter(orders::payment_requested_at.lt(before))
        .order(orders::payment_requested_at.asc())
        .limit(limit)
        .select(Order::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}
