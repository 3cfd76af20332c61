//! Product and ledger queries. Each takes a connection, so callers compose them inside one
//! transaction.

use diesel::{
    dsl::{now, sql},
    pg::Pg,
    prelude::*,
    sql_types::{Bool, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    models::{NewMovement, NewProduct, NewReservation, Product},
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
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live product, locked until the transaction ends.
pub async fn lock_live(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Product>> {
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
pub async fn lock_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::id.eq_any(ids))
        .order(products::id.asc())
        .select(Product::as_select())
        .for_update()
        .load(conn)
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
    id: Uuid,
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
pub async fn soft_delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Product>> {
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
pub async fn set_stock(conn: &mut AsyncPgConnection, id: Uuid, stock: i32) -> QueryResult<Product> {
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
pub async fn held_quantity(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i64> {
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
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    state: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(reservation_orders::table)
        .values((
            reservation_orders::order_id.eq(order_id),
            reservation_orders::state.eq(state),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// An order's reservation state and stored answer, locked.
pub async fn lock_order(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
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
    order_id: Uuid,
    state: &str,
    answer: Option<&serde_json::Value>,
) -> QueryResult<()> {
    diesel::update(reservation_orders::table.find(order_id))
        .set((
            reservation_orders::state.eq(state),
            answer.map(|answer| reservation_orders::answer.eq(answer)),
            reservation_orders::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes `quantity` from a locked product's stock (guarded, so never below zero).
pub async fn take_stock(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    quantity: i32,
) -> QueryResult<Product> {
    diesel::update(
        products::table
            .find(id)
            .filter(products::stock.ge(quantity)),
    )
    .set((
        products::stock.eq(products::stock - quantity),
        products::revision.eq(products::revision + 1),
        products::updated_at.eq(now),
    ))
    .returning(Product::as_returning())
    .get_result(conn)
    .await
}

/// Gives `quantity` back to a product's stock.
pub async fn return_stock(
    conn: &mut AsyncPgConnection,
    id: Uuid,
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

pub async fn insert_reservations(
    conn: &mut AsyncPgConnection,
    lines: &[NewReservation],
) -> QueryResult<()> {
    diesel::insert_into(reservations::table)
        .values(lines)
        .execute(conn)
        .await?;
    Ok(())
}

/// The held lines of an order, in product id order, marked released.
pub async fn release_reservations(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Vec<(Uuid, i32)>> {
    let mut lines: Vec<(Uuid, i32)> = diesel::update(
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
