//! Guest carts: a visitor fills a cart before signing in, holding an opaque token
//! (`Cart-Token`), and the cart's lines join the account's cart when the visitor signs in
//! (`POST /cart/merge`).

use std::collections::HashMap;

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shop_auth::opaque;
use shop_client::{Idempotency, reqwest::Method};
use shop_contracts::{CartId, MAX_LINES, ProductId, UserId};
use shop_http::RequestContext;

use crate::{
    AppState,
    cart::{self, CartLine},
    error::OrderError,
    placing::MAX_QUANTITY,
    repo,
    schema::guest_carts,
};

/// A guest cart lives this long after its last use.
const LIFETIME_DAYS: i64 = 30;
/// Its last use is written at most this often.
const TOUCH_EVERY_MINUTES: i64 = 60;

/// The header a visitor's cart requests carry instead of a login.
pub const CART_TOKEN: &str = "cart-token";

/// Whose cart a cart request is about: the signed-in user's, or the guest cart its
/// `Cart-Token` names (a login wins when both are sent). Neither is 401; a dead token is
/// `invalid-token`.
#[derive(Debug, Clone, Copy)]
pub struct CartOwner(pub CartId);

impl actix_web::FromRequest for CartOwner {
    type Error = shop_http::ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let identity = shop_http::Identity::from_request(req, payload).into_inner();
        let token = req
            .headers()
            .get(CART_TOKEN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
        Box::pin(async move {
            if let Ok(identity) = identity {
                return Ok(CartOwner(identity.user_id.into()));
            }
            let (Some(token), Some(state)) = (token, state) else {
                return Err(shop_http::ApiError::unauthorized());
            };
            Ok(CartOwner(resolve(&state, &token).await?))
        })
    }
}

/// `POST /guest-carts`: a new, empty guest cart and its token.
pub async fn create(state: &AppState) -> Result<String, OrderError> {
    let (token, digest) = opaque::new_token();
    let mut conn = shop_db::conn(&state.pool).await?;
    diesel::insert_into(guest_carts::table)
        .values((
            guest_carts::id.eq(CartId::new()),
            guest_carts::token_hash.eq(digest.as_slice()),
        ))
        .execute(&mut conn)
        .await?;
    Ok(token)
}

/// The live guest cart a token names; its last use is refreshed (at most hourly).
pub async fn resolve(state: &AppState, token: &str) -> Result<CartId, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let digest = opaque::digest(token);
    let now = Utc::now();
    let found: Option<(CartId, chrono::DateTime<Utc>)> = guest_carts::table
        .filter(guest_carts::token_hash.eq(digest.as_slice()))
        .filter(guest_carts::merged_at.is_null())
        .filter(guest_carts::last_used_at.gt(now - Duration::days(LIFETIME_DAYS)))
        .select((guest_carts::id, guest_carts::last_used_at))
        .first(&mut conn)
        .await
        .optional()?;
    let (id, last_used_at) = found.ok_or(OrderError::InvalidCartToken)?;
    if last_used_at < now - Duration::minutes(TOUCH_EVERY_MINUTES) {
        diesel::update(guest_carts::table.find(id))
            .set(guest_carts::last_used_at.eq(diesel::dsl::now))
            .execute(&mut conn)
            .await?;
    }
    Ok(id)
}

/// What happened to a guest line that did not join the cart as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MergeNote {
    pub product_id: ProductId,
    /// `product-unavailable` (deleted: dropped), `quantity-capped` (the sum exceeded the
    /// per-line maximum) or `cart-full` (no room for another line: dropped).
    pub note: &'static str,
    /// The quantity the guest cart held.
    pub guest_quantity: i32,
    /// What the cart holds of it now (0 when dropped).
    pub kept_quantity: i32,
}

/// The cart after a merge, and what the merge could not keep as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MergeResponse {
    pub items: Vec<CartLine>,
    pub notes: Vec<MergeNote>,
}

/// `POST /cart/merge`: the guest cart's lines join `user`'s cart, product by product
/// (quantities added, capped per line; lines beyond the cart's limit dropped; deleted
/// products dropped), and the guest cart ends. One guarded statement ends it, so of two
/// merges of one token exactly one merges; the other finds the token dead.
pub async fn merge(
    state: &AppState,
    user: UserId,
    token: &str,
    context: &RequestContext,
) -> Result<MergeResponse, OrderError> {
    let guest = resolve(state, token).await?;
    // Asked before any lock is taken: which of the guest's products still sell.
    let mut conn = shop_db::conn(&state.pool).await?;
    let guest_lines = repo::cart(&mut conn, guest).await?;
    drop(conn);
    let gone = unavailable(state, &guest_lines, context).await?;

    let owner = CartId::from(user);
    let digest = opaque::digest(token);
    let mut conn = shop_db::conn(&state.pool).await?;
    let notes = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let ended = diesel::update(
                guest_carts::table
                    .find(guest)
                    .filter(guest_carts::token_hash.eq(digest.as_slice()))
                    .filter(guest_carts::merged_at.is_null()),
            )
            .set((
                guest_carts::merged_at.eq(diesel::dsl::now),
                guest_carts::merged_into.eq(Some(user.uuid())),
            ))
            .execute(conn)
            .await?;
            if ended == 0 {
                return Err(OrderError::InvalidCartToken);
            }
            repo::lock_cart(conn, owner).await?;
            // Read again under the lock: what the guest cart holds now is what merges.
            let guest_lines = repo::cart(conn, guest).await?;
            let notes = join(conn, owner, &guest_lines, &gone).await?;
            repo::clear_cart(conn, guest).await?;
            Ok(notes)
        })
        .await?;
    drop(conn);
    tracing::info!(
        user.id = %user,
        lines = guest_lines.len(),
        notes = notes.len(),
        "guest cart merged"
    );
    Ok(MergeResponse {
        items: cart::get(state, owner).await?.items,
        notes,
    })
}

/// Adds the guest lines to the owner's cart (the cart's lock held).
async fn join(
    conn: &mut AsyncPgConnection,
    owner: CartId,
    guest_lines: &[crate::models::CartItem],
    gone: &[ProductId],
) -> Result<Vec<MergeNote>, OrderError> {
    let current: HashMap<ProductId, i32> = repo::cart(conn, owner)
        .await?
        .into_iter()
        .map(|line| (line.product_id, line.quantity))
        .collect();
    let mut lines = current.len();
    let max = i32::try_from(MAX_QUANTITY).unwrap_or(i32::MAX);
    let mut notes = Vec::new();
    for line in guest_lines {
        let note = |note, kept_quantity| MergeNote {
            product_id: line.product_id,
            note,
            guest_quantity: line.quantity,
            kept_quantity,
        };
        if gone.contains(&line.product_id) {
            notes.push(note("product-unavailable", 0));
            continue;
        }
        let had = current.get(&line.product_id).copied();
        if had.is_none() && lines >= MAX_LINES {
            notes.push(note("cart-full", 0));
            continue;
        }
        let wanted = had.unwrap_or(0).saturating_add(line.quantity);
        let quantity = wanted.min(max);
        if quantity < wanted {
            notes.push(note("quantity-capped", quantity));
        }
        if had.is_none() {
            lines += 1;
        }
        repo::put_cart_item(conn, owner, line.product_id, quantity).await?;
    }
    Ok(notes)
}

/// The guest products the catalog no longer sells (deleted or unknown).
async fn unavailable(
    state: &AppState,
    lines: &[crate::models::CartItem],
    context: &RequestContext,
) -> Result<Vec<ProductId>, OrderError> {
    let answers = futures_util::future::join_all(lines.iter().map(|line| async move {
        let reply = state
            .catalog
            .call::<()>(
                Method::GET,
                &format!("/products/{}", line.product_id),
                None,
                Idempotency::Idempotent,
                context,
            )
            .await;
        (line.product_id, reply)
    }))
    .await;
    let mut gone = Vec::new();
    for (product_id, reply) in answers {
        match reply {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) if reply.status == 404 => gone.push(product_id),
            Ok(reply) => {
                tracing::warn!(status = %reply.status, "catalog answered a product read");
                return Err(OrderError::CatalogUnavailable);
            }
            Err(error) => {
                tracing::warn!(%error, "catalog unavailable during a cart merge");
                return Err(OrderError::CatalogUnavailable);
            }
        }
    }
    Ok(gone)
}

/// Deletes guest carts unused for their lifetime, and merged ones a day after the merge
/// (their lines went with it).
pub async fn purge(conn: &mut AsyncPgConnection) -> Result<usize, OrderError> {
    let now = Utc::now();
    let expired: Vec<CartId> = diesel::delete(
        guest_carts::table.filter(
            guest_carts::last_used_at
                .lt(now - Duration::days(LIFETIME_DAYS))
                .or(guest_carts::merged_at.lt(now - Duration::days(1))),
        ),
    )
    .returning(guest_carts::id)
    .get_results(conn)
    .await?;
    for id in &expired {
        repo::clear_cart(conn, *id).await?;
    }
    Ok(expired.len())
}

/// [`purge`], logged; run hourly.
pub async fn purge_logged(pool: &shop_db::Pool) {
    let purged = async {
        let mut conn = shop_db::conn(pool).await?;
        purge(&mut conn).await
    };
    match purged.await {
        Ok(0) => {}
        Ok(carts) => tracing::info!(carts, "expired and merged guest carts deleted"),
        Err(error) => tracing::warn!(%error, "guest cart purge failed; next hour"),
    }
}
