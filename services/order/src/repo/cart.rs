//! Cart lines, and the per-cart lock that keeps the line limit. A cart belongs to an account
//! (`cart_items.user_id` is the user's id) or is a guest cart (the id of its `guest_carts`
//! row).

use diesel::{
    dsl::now,
    prelude::*,
    sql_types::{Array, Bool, Int4, Int8, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shop_contracts::{CartId, ProductId};
use shop_db::prepared;

use crate::{models::CartItem, schema::cart_items};

pub async fn cart(conn: &mut AsyncPgConnection, owner: CartId) -> QueryResult<Vec<CartItem>> {
    cart_items::table
        .filter(cart_items::user_id.eq(owner))
        .order((cart_items::updated_at.asc(), cart_items::product_id.asc()))
        .select(CartItem::as_select())
        .load(conn)
        .await
}

pub async fn put_cart_item(
    conn: &mut AsyncPgConnection,
    owner: CartId,
    product_id: ProductId,
    quantity: i32,
) -> QueryResult<()> {
    diesel::insert_into(cart_items::table)
        .values((
            cart_items::user_id.eq(owner),
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

/// Writes to one cart take turns (a transaction-scoped advisory lock in this class), so
/// that a line limit read in the transaction still holds when it commits.
const CART_LOCK_CLASS: i32 = 0x4341_5254;

/// Waits for the cart's other writes to commit; held until this transaction ends.
pub async fn lock_cart(conn: &mut AsyncPgConnection, owner: CartId) -> QueryResult<()> {
    shop_db::prepared("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind::<Int4, _>(CART_LOCK_CLASS)
        .bind::<SqlUuid, _>(owner)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many lines the cart holds, and whether one is for `product_id`.
pub async fn cart_lines(
    conn: &mut AsyncPgConnection,
    owner: CartId,
    product_id: ProductId,
) -> QueryResult<(i64, bool)> {
    let counted: Counted = shop_db::prepared(
        "SELECT count(*) AS lines, coalesce(bool_or(product_id = $2), false) AS has \
         FROM cart_items WHERE user_id = $1",
    )
    .bind::<SqlUuid, _>(owner)
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
    owner: CartId,
    product_id: ProductId,
) -> QueryResult<bool> {
    let deleted = diesel::delete(cart_items::table.find((owner, product_id)))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Removes the given products from a cart (what an order took from it).
pub async fn remove_from_cart(
    conn: &AsyncPgConnection,
    owner: CartId,
    products: &[ProductId],
) -> QueryResult<()> {
    prepared("DELETE FROM cart_items WHERE user_id = $1 AND product_id = ANY($2)")
        .bind::<SqlUuid, _>(owner)
        .bind::<Array<SqlUuid>, _>(products)
        .execute(&mut &*conn)
        .await?;
    Ok(())
}

pub async fn clear_cart(conn: &mut AsyncPgConnection, owner: CartId) -> QueryResult<()> {
    diesel::delete(cart_items::table.filter(cart_items::user_id.eq(owner)))
        .execute(conn)
        .await?;
    Ok(())
}
