//! Orders, their lines and timeline: making, pricing, reading, listing, and the sweeps' picks.

use chrono::{DateTime, Utc};
use diesel::{
    dsl::sql,
    pg::Pg,
    prelude::*,
    sql_types::{Array, Bool, Bytea, Int2, Int4, Int8, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{OrderId, ProductId, ReserveLine, UserId};
use shop_db::prepared;

use super::ClaimKey;

use crate::{
    lifecycle::Cause,
    models::{HistoryEntry, Line, Order, Status},
    schema::{order_lines, order_status_history, orders},
};

/// An order to make, in `reserving`.
#[derive(Debug)]
pub struct NewOrder<'a> {
    pub id: OrderId,
    pub user_id: UserId,
    pub currency: &'a str,
    /// In the order's line order.
    pub lines: &'a [ReserveLine],
    /// Who placed it, as the timeline says it.
    pub actor: String,
    pub cause: Cause,
    /// The `Idempotency-Key` to claim with it, and the request's hash.
    pub claim: Option<(&'a ClaimKey<'a>, &'a [u8])>,
    /// The validated shipping address of the request; without one, the user's default (if
    /// any) is taken in the same statement.
    pub address: Option<&'a serde_json::Value>,
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
    INSERT INTO orders (id, user_id, status, currency, shipping_address)
    SELECT $1, $2, $3, $4,
        COALESCE($14::jsonb, (SELECT address FROM default_addresses WHERE user_id = $2))
    WHERE NOT $10 OR EXISTS (SELECT 1 FROM claim)
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
    let products: Vec<ProductId> = new.lines.iter().map(|l| l.product_id).collect();
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
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>, _>(new.address)
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
    order_id: OrderId,
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

pub async fn find_order(conn: &mut AsyncPgConnection, id: OrderId) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lines(conn: &mut AsyncPgConnection, order_id: OrderId) -> QueryResult<Vec<Line>> {
    order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::position.asc())
        .select(Line::as_select())
        .load(conn)
        .await
}

pub async fn lines_of(
    conn: &mut AsyncPgConnection,
    order_ids: &[OrderId],
) -> QueryResult<Vec<Line>> {
    order_lines::table
        .filter(order_lines::order_id.eq_any(order_ids))
        .select(Line::as_select())
        .load(conn)
        .await
}

/// What a listing selects.
#[derive(Debug, Clone)]
pub struct OrderFilter {
    pub user_id: Option<UserId>,
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
    order_id: OrderId,
) -> QueryResult<Vec<HistoryEntry>> {
    order_status_history::table
        .filter(order_status_history::order_id.eq(order_id))
        .order(order_status_history::id.asc())
        .select(HistoryEntry::as_select())
        .load(conn)
        .await
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
        .filter(sql::<Bool>("status_changed_at < ").bind::<Timestamptz, _>(before))
        .order(sql::<Timestamptz>("status_changed_at"))
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
        .filter(sql::<Bool>("payment_requested_at < ").bind::<Timestamptz, _>(before))
        .order(sql::<Timestamptz>("payment_requested_at"))
        .limit(limit)
        .select(Order::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}
