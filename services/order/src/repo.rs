//! Order, cart and claim queries. Each takes a connection, so callers compose them inside one
//! transaction; those taking a shared connection can be sent together (pipelined). Status
//! changes are the lifecycle's ([`crate::lifecycle`]).

use chrono::{DateTime, Utc};
use diesel::{
    dsl::now,
    pg::Pg,
    prelude::*,
    sql_types::{Array, Bool, Bytea, Double, Int2, Int4, Int8, Jsonb, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::ReserveLine;
use shop_db::prepared;
use uuid::Uuid;

use crate::{
    lifecycle::Cause,
    models::{CartItem, HistoryEntry, Line, Order, Status},
    schema::{cart_items, idempotency_claims, order_lines, order_status_history, orders},
};

/// An order to make, in `reserving`.
#[derive(Debug)]
pub struct NewOrder<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub currency: &'a str,
    /// In the order's line order.
    pub lines: &'a [ReserveLine],
    /// Who placed it, as the timeline says it.
    pub actor: String,
    pub cause: Cause,
    /// The `Idempotency-Key` to claim with it, and the request's hash.
    pub claim: Option<(&'a ClaimKey<'a>, &'a [u8])>,
}

/// Makes the order, its lines, its first timeline entry and, if there is a key, its claim, in
/// one statement. Returns false (and makes nothing) if the key was claimed already; a
/// concurrent claim of the same key waits for this one to commit.
const CREATE: &str = "
WITH claim AS (
    INSERT INTO idempotency_claims (user_id, route, key, request_hash, order_id)
    SELECT $2, $7, $8, $9, $1 WHERE $10
    ON CONFLICT DO NOTHING
    RETURNING order_id),
created AS (
    INSERT INTO orders (id, user_id, status, currency)
    SELECT $1, $2, $3, $4 WHERE NOT $10 OR EXISTS (SELECT 1 FROM claim)
    RETURNING id),
lines AS (
    INSERT INTO order_lines (order_id, position, product_id, quantity)
    SELECT created.id, l.position, l.product_id, l.quantity
    FROM created,
        unnest($11::int2[], $12::uuid[], $13::int4[]) AS l(position, product_id, quantity)),
history AS (
    INSERT INTO order_status_history (order_id, status, actor, cause)
    SELECT id, $3, $5, $6 FROM created)
SELECT EXISTS (SELECT 1 FROM created) AS created";

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Bool)]
    created: bool,
}

pub async fn create_order(conn: &mut AsyncPgConnection, new: &NewOrder<'_>) -> QueryResult<bool> {
    let positions: Vec<i16> = (0..new.lines.len())
        .map(|p| i16::try_from(p).unwrap_or(i16::MAX))
        .collect();
    let products: Vec<Uuid> = new.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<i32> = new.lines.iter().map(|l| l.quantity).collect();
    let (claim, hash) = new.claim.map_or((None, None), |(c, h)| (Some(c), Some(h)));
    let created: Created = prepared(CREATE)
        .bind::<SqlUuid, _>(new.id)
        .bind::<SqlUuid, _>(new.user_id)
        .bind::<Text, _>(Status::Reserving)
        .bind::<Text, _>(new.currency)
        .bind::<Text, _>(&new.actor)
        .bind::<Text, _>(new.cause.as_str())
        .bind::<diesel::sql_types::Nullable<Text>, _>(claim.map(|c| c.route))
        .bind::<diesel::sql_types::Nullable<Text>, _>(claim.map(|c| c.key))
        .bind::<diesel::sql_types::Nullable<Bytea>, _>(hash)
        .bind::<Bool, _>(claim.is_some())
        .bind::<Array<Int2>, _>(positions)
        .bind::<Array<SqlUuid>, _>(products)
        .bind::<Array<Int4>, _>(quantities)
        .get_result(conn)
        .await?;
    Ok(created.created)
}

const PRICE_LINES: &str = "
UPDATE order_lines l SET name = v.name, unit_price_cents = v.price
FROM unnest($2::uuid[], $3::text[], $4::int8[]) AS v(product_id, name, price)
WHERE l.order_id = $1 AND l.product_id = v.product_id";

/// Records each line's name and price as reserved.
pub async fn price_lines(
    conn: &AsyncPgConnection,
    order_id: Uuid,
    lines: &[Line],
) -> QueryResult<()> {
    let priced: Vec<&Line> = lines
        .iter()
        .filter(|l| l.unit_price_cents.is_some())
        .collect();
    prepared(PRICE_LINES)
        .bind::<SqlUuid, _>(order_id)
        .bind::<Array<SqlUuid>, _>(priced.iter().map(|l| l.product_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            priced
                .iter()
                .map(|l| l.name.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(
            priced
                .iter()
                .map(|l| l.unit_price_cents.unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .execute(&mut &*conn)
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
        Some(status) => query.filter(orders::status.eq(status)),
        None => query.filter(orders::status.ne_all(vec![Status::Reserving, Status::Failed])),
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

/// Names an `Idempotency-Key` claim: per user and route.
#[derive(Debug, Clone, Copy)]
pub struct ClaimKey<'a> {
    pub user_id: Uuid,
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

/// Cart writes of one user take turns (a transaction-scoped advisory lock in this class), so
/// that a line limit read in the transaction still holds when it commits.
const CART_LOCK_CLASS: i32 = 0x4341_5254;

/// Waits for the user's other cart writes to commit; held until this transaction ends.
pub async fn lock_cart(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<()> {
    shop_db::prepared("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind::<Int4, _>(CART_LOCK_CLASS)
        .bind::<SqlUuid, _>(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many lines the user's cart holds, and whether one is for `product_id`.
pub async fn cart_lines(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    product_id: Uuid,
) -> QueryResult<(i64, bool)> {
    let counted: Counted = shop_db::prepared(
        "SELECT count(*) AS lines, coalesce(bool_or(product_id = $2), false) AS has \
         FROM cart_items WHERE user_id = $1",
    )
    .bind::<SqlUuid, _>(user_id)
    .bind::<SqlUuid, _>(product_id)
    .get_result(conn)
    .await?;
    Ok((counted.lines, counted.has))
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Int8)]
    lines: i64,
    #[diesel(sql_type = Bool)]
    has: bool,
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
    conn: &AsyncPgConnection,
    user_id: Uuid,
    products: &[Uuid],
) -> QueryResult<()> {
    prepared("DELETE FROM cart_items WHERE user_id = $1 AND product_id = ANY($2)")
        .bind::<SqlUuid, _>(user_id)
        .bind::<Array<SqlUuid>, _>(products)
        .execute(&mut &*conn)
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
        .filter(orders::status.eq(status))
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
        .filter(orders::status.eq(Status::Pending))
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
