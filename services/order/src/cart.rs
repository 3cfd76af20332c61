//! The cart: lines kept until checkout turns them into an order. Every function works on a
//! signed-in user's cart and on a guest cart alike (see [`crate::guest`]).

use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use shop_contracts::{CartId, MAX_LINES, ProductId};

use crate::{AppState, error::OrderError, placing::MAX_QUANTITY, repo};

/// A cart line as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartLine {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// The cart as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CartResponse {
    pub items: Vec<CartLine>,
}

/// A cart.
pub async fn get(state: &AppState, owner: CartId) -> Result<CartResponse, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let items = repo::cart(&mut conn, owner).await?;
    Ok(CartResponse {
        items: items
            .into_iter()
            .map(|i| CartLine {
                product_id: i.product_id,
                quantity: i.quantity,
            })
            .collect(),
    })
}

/// Sets one line's quantity (adding it if new).
pub async fn put_item(
    state: &AppState,
    owner: CartId,
    product_id: ProductId,
    quantity: i64,
) -> Result<CartResponse, OrderError> {
    let quantity = i32::try_from(quantity)
        .ok()
        .filter(|q| (1..=MAX_QUANTITY).contains(&i64::from(*q)))
        .ok_or_else(|| OrderError::field("quantity", format!("must be 1 to {MAX_QUANTITY}")))?;
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, OrderError, _>(async |conn| {
        // Checked and written under the cart's lock: concurrent additions cannot pass it.
        repo::lock_cart(conn, owner).await?;
        let (lines, has_product) = repo::cart_lines(conn, owner, product_id).await?;
        if !has_product && usize::try_from(lines).is_ok_and(|lines| lines >= MAX_LINES) {
            return Err(OrderError::field(
                "productId",
                format!("a cart holds at most {MAX_LINES} lines"),
            ));
        }
        repo::put_cart_item(conn, owner, product_id, quantity).await?;
        Ok(())
    })
    .await?;
    drop(conn);
    get(state, owner).await
}

/// Removes one line; 404 if it was not there.
pub async fn delete_item(
    state: &AppState,
    owner: CartId,
    product_id: ProductId,
) -> Result<(), OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    if repo::delete_cart_item(&mut conn, owner, product_id).await? {
        Ok(())
    } else {
        Err(OrderError::NotFound)
    }
}

/// Empties the cart.
pub async fn clear(state: &AppState, owner: CartId) -> Result<(), OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    repo::clear_cart(&mut conn, owner).await?;
    Ok(())
}

/// One line; 404 if the product is not in the cart.
pub async fn get_item(
    state: &AppState,
    owner: CartId,
    product_id: ProductId,
) -> Result<CartLine, OrderError> {
    get(state, owner)
        .await?
        .items
        .into_iter()
        .find(|line| line.product_id == product_id)
        .ok_or(OrderError::NotFound)
}

/// Replaces the whole cart (duplicate products add up, as in an order).
pub async fn replace(
    state: &AppState,
    owner: CartId,
    items: &[(ProductId, i64)],
) -> Result<CartResponse, OrderError> {
    let lines = if items.is_empty() {
        Vec::new()
    } else {
        crate::placing::merge_lines(items)?
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, OrderError, _>(async |conn| {
        repo::lock_cart(conn, owner).await?;
        repo::clear_cart(conn, owner).await?;
        for line in &lines {
            repo::put_cart_item(conn, owner, line.product_id, line.quantity).await?;
        }
        Ok(())
    })
    .await?;
    drop(conn);
    get(state, owner).await
}
