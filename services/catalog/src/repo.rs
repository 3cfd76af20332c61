//! Product and ledger queries. Each takes a connection, so callers compose them inside one
//! transaction.

use diesel::{
    dsl::{now, sql},
    pg::Pg,
    prelude::*,
    sql_types::{Bool, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{OrderId, ProductId};

use crate::{
    models::{MovementKind, NewMovement, NewProduct, Product},
    schema::{products, reservation_orders, reservations, stock_movements},
};

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sort {
    Name,
    NameDesc,
    Price,
    PriceDesc,
    Created,
    CreatedDesc,
}

impl Sort {
    /// Parses `name`, `priceCents`, `createdAt`, each optionally prefixed with `-`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "name" => Sort::Name,
            "-name" => Sort::NameDesc,
            "priceCents" => Sort::Price,
            "-priceCents" => Sort::PriceDesc,
            "createdAt" => Sort::Created,
            "-createdAt" => Sort::CreatedDesc,
            _ => return None,
        })
    }
}

/// What a listing selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub q: Option<String>,
    pub min_price_cents: Option<i64>,
    pub max_price_cents: Option<i64>,
    pub in_stock: Option<bool>,
    pub sort: Sort,
    pub page: u32,
    pub limit: u32,
}

/// `%`, `_` and `\` match literally in a LIKE pattern once escaped.
fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn filtered(filter: &ListFilter) -> products::BoxedQuery<'static, Pg> {
    let mut query = products::table
        .filter(products::deleted_at.is_null())
        .into_boxed();
    if let Some(q) = &filter.q {
        // The same expression as the trigram index, so the index serves it.
        query = query.filter(
            sql::<Bool>("(name || ' ' || description) ILIKE ").bind::<Text, _>(like_pattern(q)),
        );
    }
    if let Some(min) = filter.min_price_cents {
        query = query.filter(products::price_cents.ge(min));
    }
    if let Some(max) = filter.max_price_cents {
        query = query.filter(products::price_cents.le(max));
    }
    match filter.in_stock {
        Some(true) => query = query.filter(products::stock.gt(0)),
        Some(false) => query = query.filter(products::stock.eq(0)),
        None => {}
    }
    query
}

/// A page of live products and the number of all that match.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
) -> QueryResult<(Vec<Product>, i64)> {
    let total = filtered(filter).count().get_result(conn).await?;
    let query = filtered(filter);
    let query = match filter.sort {
        Sort::Name => query.order((products::name.asc(), products::id.asc())),
        Sort::NameDesc => query.order((products::name.desc(), products::id.desc())),
        Sort::Price => query.order((products::price_cents.asc(), products::id.asc())),
        Sort::PriceDesc => query.order((products::price_cents.desc(), products::id.desc())),
        Sort::Created => query.order((products::created_at.asc(), products::id.asc())),
        Sort::CreatedDesc => query.order((products::created_at.desc(), products::id.desc())),
    };
    let items = query
        .offset(i64::from(filter.page.saturating_sub(1)) * i64::from(filter.limit))
        .limit(i64::from(filter.limit))
        .select(Product::as_select())
        .load(conn)
        .await?;
    Ok((items, total))
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewProduct) -> QueryResult<Product> {
    diesel::insert_into(products::table)
        .values(new)
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// Inserts many products in one statement (the seed).
pub async fn insert_many(conn: &mut AsyncPgConnection, new: &[NewProduct]) -> QueryResult<()> {
    diesel::insert_into(products::table)
        .values(new)
        .execute(conn)
        .await?;
    Ok(())
}

/// A product, deleted or not.
pub async fn find(conn: &mut AsyncPgConnection, id: ProductId) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live product, locked until the transaction ends.
pub async fn lock_live(
    conn: &mut AsyncPgConnection,
    id: ProductId,
) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .filter(products::deleted_at.is_null())
        .select(Product::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Products by id, locked in id order (so concurrent multi-line reservations cannot
/// deadlock), deleted ones included.
pub async fn lock_many(conn: &AsyncPgConnection, ids: &[ProductId]) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::id.eq_any(ids))
        .order(products::id.asc())
        .select(Product::as_select())
        .for_update()
        .load(&mut &*conn)
        .await
}

/// The editable fields, and the stock when given, of a locked product.
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub price_cents: i64,
    pub stock: Option<i32>,
    pub bump_version: bool,
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: ProductId,
    edit: &Edit<'_>,
) -> QueryResult<Product> {
    let version_step = i32::from(edit.bump_version);
    diesel::update(products::table.find(id))
        .set((
            products::name.eq(edit.name),
            products::description.eq(edit.description),
            products::price_cents.eq(edit.price_cents),
            edit.stock.map(|stock| products::stock.eq(stock)),
            products::version.eq(products::version + version_step),
            products::revision.eq(products::revision + 1),
            products::updated_at.eq(now),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// Soft-deletes a live product; returns it as deleted, or `None` if it was not live.
pub async fn soft_delete(
    conn: &mut AsyncPgConnection,
    id: ProductId,
) -> QueryResult<Option<Product>> {
    diesel::update(
        products::table
            .find(id)
            .filter(products::deleted_at.is_null()),
    )
    .set((
        products::deleted_at.eq(now),
        products::revision.eq(products::revision + 1),
        products::updated_at.eq(now),
    ))
    .returning(Product::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Sets a locked product's stock.
pub async fn set_stock(
    conn: &mut AsyncPgConnection,
    id: ProductId,
    stock: i32,
) -> QueryResult<Product> {
    diesel::update(products::table.find(id))
        .set((
            products::stock.eq(stock),
            products::revision.eq(products::revision + 1),
            products::updated_at.eq(now),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// The quantity of a product held by reservations.
pub async fn held_quantity(conn: &mut AsyncPgConnection, id: ProductId) -> QueryResult<i64> {
    let held: Option<i64> = reservations::table
        .filter(reservations::product_id.eq(id))
        .filter(reservations::state.eq("held"))
        .select(diesel::dsl::sum(reservations::quantity))
        .first(conn)
        .await?;
    Ok(held.unwrap_or(0))
}

pub async fn insert_movements(
    conn: &mut AsyncPgConnection,
    movements: &[NewMovement],
) -> QueryResult<()> {
    diesel::insert_into(stock_movements::table)
        .values(movements)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether any product exists (the seed is idempotent).
pub async fn any_product(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(products::table.select(products::id)))
        .get_result(conn)
        .await
}

/// Claims an order id: inserts its row in `state` unless it exists. Returns whether this call
/// inserted it. A concurrent claim of the same id waits for this transaction to end.
pub async fn claim_order(
    conn: &AsyncPgConnection,
    order_id: OrderId,
    state: &str,
) -> QueryResult<bool> {
    let inserted = shop_db::prepared(
        "INSERT INTO reservation_orders (order_id, state) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind::<diesel::sql_types::Uuid, _>(order_id)
    .bind::<Text, _>(state)
    .execute(&mut &*conn)
    .await?;
    Ok(inserted == 1)
}

/// An order's reservation state and stored answer, locked.
pub async fn lock_order(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> QueryResult<(String, Option<serde_json::Value>)> {
    reservation_orders::table
        .find(order_id)
        .select((reservation_orders::state, reservation_orders::answer))
        .for_update()
        .first(conn)
        .await
}

pub async fn set_order_state(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    state: &str,
    answer: Option<&serde_json::Value>,
) -> QueryResult<()> {
    shop_db::prepared(
        "UPDATE reservation_orders SET state = $2, answer = COALESCE($3, answer), \
         updated_at = now() WHERE order_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(order_id)
    .bind::<Text, _>(state)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>, _>(answer)
    .execute(conn)
    .await?;
    Ok(())
}

const HOLD: &str = "
WITH taken AS (
    UPDATE products p SET stock = p.stock - l.quantity, revision = p.revision + 1,
        updated_at = now()
    FROM unnest($2::uuid[], $3::int4[]) AS l(product_id, quantity)
    WHERE p.id = l.product_id AND p.stock >= l.quantity
    RETURNING p.id, p.name, p.description, p.price_cents, p.stock, p.version, p.revision,
        p.created_at, p.updated_at, p.deleted_at, l.quantity),
held AS (
    INSERT INTO reservations (order_id, product_id, quantity, unit_price_cents, name, state)
    SELECT $1, id, quantity, price_cents, name, $4 FROM taken),
moved AS (
    INSERT INTO stock_movements (product_id, kind, delta, order_id)
    SELECT id, $5, -quantity, $1 FROM taken),
answered AS (
    UPDATE reservation_orders SET state = $4, answer = $6, updated_at = now()
    WHERE order_id = $1)
SELECT id, name, description, price_cents, stock, version, revision, created_at, updated_at,
    deleted_at
FROM taken ORDER BY id";

/// Holds a claimed order's lines on their locked products, in one statement: the stock taken
/// (never below zero), a reservation and a ledger movement per line, the order's state set to
/// `held` with its answer. Returns the products as they are now, in id order; fewer than the
/// lines if a line's stock was short after all (the caller rolls back).
pub async fn hold(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    lines: &[(ProductId, i32)],
    answer: &serde_json::Value,
) -> QueryResult<Vec<Product>> {
    use diesel::sql_types::{Array, Int4, Jsonb, Uuid as SqlUuid};
    shop_db::prepared(HOLD)
        .bind::<SqlUuid, _>(order_id)
        .bind::<Array<SqlUuid>, _>(lines.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(lines.iter().map(|l| l.1).collect::<Vec<_>>())
        .bind::<Text, _>("held")
        .bind::<Text, _>(MovementKind::Reserve.as_str())
        .bind::<Jsonb, _>(answer)
        .load(conn)
        .await
}

/// Gives `quantity` back to a product's stock.
pub async fn return_stock(
    conn: &mut AsyncPgConnection,
    id: ProductId,
    quantity: i32,
) -> QueryResult<Product> {
    diesel::update(products::table.find(id))
        .set((
            products::stock.eq(products::stock + quantity),
            products::revision.eq(products::revision + 1),
            products::updated_at.eq(now),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// The held lines of an order, in product id order, marked released.
pub async fn release_reservations(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> QueryResult<Vec<(ProductId, i32)>> {
    let mut lines: Vec<(ProductId, i32)> = diesel::update(
        reservations::table
            .filter(reservations::order_id.eq(order_id))
            .filter(reservations::state.eq("held")),
    )
    .set((
        reservations::state.eq("released"),
        reservations::released_at.eq(now),
    ))
    .returning((reservations::product_id, reservations::quantity))
    .get_results(conn)
    .await?;
    lines.sort_unstable();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_pattern("mug"), "%mug%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn sorts_parse() {
        assert_eq!(Sort::parse("-priceCents"), Some(Sort::PriceDesc));
        assert_eq!(Sort::parse("price"), None);
    }
}
