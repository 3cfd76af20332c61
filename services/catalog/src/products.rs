//! Product operations: each owns its transaction and, once committed, updates the cache
//! before the caller is answered.

use std::sync::Arc;

use bytes::Bytes;
use diesel_async::AsyncConnection;
use shop_contracts::ProductId;
use shop_http::{FieldError, Identity};

use crate::{
    AppState,
    cache::ProductEntry,
    error::CatalogError,
    models::{MovementKind, NewMovement, NewProduct, Product, Versioned, etag},
    repo::{self, Edit, ListFilter},
};

/// Longest name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 5000;
/// Longest adjustment reason, in characters.
pub const MAX_REASON: usize = 200;

/// Editable fields as a client sent them (numbers wide, so range errors are field errors).
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i64,
    pub stock: Option<i64>,
}

/// Validated fields.
struct Valid {
    name: String,
    description: String,
    price_cents: i64,
    stock: Option<i32>,
}

fn validate(input: &ProductInput, stock_required: bool) -> Result<Valid, CatalogError> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_owned();
    let name_chars = name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME {
        errors.push(FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    }
    let description = input.description.clone().unwrap_or_default();
    if description
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(FieldError::new(
            "description",
            "must not contain control characters other than newlines and tabs",
        ));
    } else if description.chars().count() > MAX_DESCRIPTION {
        errors.push(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if input.price_cents < 0 {
        errors.push(FieldError::new("priceCents", "must be zero or more"));
    }
    let stock = match input.stock {
        None if stock_required => {
            errors.push(FieldError::new("stock", "is required"));
            None
        }
        None => None,
        Some(stock) => match i32::try_from(stock) {
            Ok(stock) if stock >= 0 => Some(stock),
            _ => {
                errors.push(FieldError::new("stock", "must be 0 to 2147483647"));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(Valid {
            name,
            description,
            price_cents: input.price_cents,
            stock,
        })
    } else {
        Err(CatalogError::Validation(errors))
    }
}

/// Creates a product and its `initial` ledger entry.
pub async fn create(
    state: &AppState,
    admin: &Identity,
    input: &ProductInput,
) -> Result<Versioned, CatalogError> {
    let valid = validate(input, true)?;
    let new = NewProduct {
        id: ProductId::new(),
        name: valid.name,
        description: valid.description,
        price_cents: valid.price_cents,
        stock: valid.stock.unwrap_or(0),
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    let product = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            let product = repo::insert(conn, &new).await?;
            let mut movement = NewMovement::new(product.id, MovementKind::Initial, product.stock);
            movement.actor_id = Some(admin.user_id);
            repo::insert_movements(conn, &[movement]).await?;
            Ok(product)
        })
        .await?;
    tracing::info!(product.id = %product.id, "product created");
    Ok(committed(state, &product, true).await)
}

/// After a commit: the cache learns the new representation before the client does.
async fn committed(state: &AppState, product: &Product, listings_changed: bool) -> Versioned {
    state.cache.store_product(product).await;
    if listings_changed {
        state.cache.listings_changed().await;
    }
    product.into()
}

/// One live product (cached), as its stored JSON.
pub async fn get(state: &AppState, id: ProductId) -> Result<Arc<ProductEntry>, CatalogError> {
    let entry = state.cache.product(id, &state.pool).await?;
    if entry.body.is_none() {
        return Err(CatalogError::NotFound);
    }
    Ok(entry)
}

/// A page of live products (cached; stock in listings is advisory), as its stored JSON.
pub async fn list(state: &AppState, filter: ListFilter) -> Result<Bytes, CatalogError> {
    state.cache.list(filter, &state.pool).await
}

/// The preconditions a write presents.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// `If-Match` entity tags (`*` matches any current representation).
    pub if_match: Option<Vec<String>>,
    /// The body's `version`.
    pub version: Option<i32>,
}

impl Preconditions {
    fn if_match_holds(tags: &[String], product: &Product) -> bool {
        let current = etag(product.revision);
        tags.iter().any(|tag| tag == "*" || *tag == current)
    }
}

/// Replaces the editable fields; `stock` only under a matching, concrete `If-Match`.
pub async fn update(
    state: &AppState,
    admin: &Identity,
    id: ProductId,
    input: &ProductInput,
    preconditions: &Preconditions,
) -> Result<Versioned, CatalogError> {
    let valid = validate(input, false)?;
    // Stock is set only against the exact representation read: `*` will not do.
    let concrete_if_match = preconditions
        .if_match
        .as_ref()
        .is_some_and(|tags| tags.iter().any(|tag| tag != "*"));
    if valid.stock.is_some() && !concrete_if_match {
        return Err(CatalogError::PreconditionRequired(
            "setting stock needs If-Match with the current ETag (or use stock-adjustments)",
        ));
    }
    if preconditions.if_match.is_none() && preconditions.version.is_none() {
        return Err(CatalogError::PreconditionRequired(
            "send If-Match with the ETag you read, or the body's version",
        ));
    }
    let mut conn = shop_db::conn(&state.pool).await?;
    let product = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            let current = repo::lock_live(conn, id)
                .await?
                .ok_or(CatalogError::NotFound)?;
            if let Some(tags) = &preconditions.if_match
                && !Preconditions::if_match_holds(tags, &current)
            {
                return Err(CatalogError::PreconditionFailed);
            }
            if let Some(given) = preconditions.version
                && given != current.version
            {
                return Err(CatalogError::VersionConflict {
                    given,
                    current: current.version,
                });
            }
            let fields_change = valid.name != current.name
                || valid.description != current.description
                || valid.price_cents != current.price_cents;
            let stock = valid.stock.filter(|stock| *stock != current.stock);
            if !fields_change && stock.is_none() {
                return Ok(current);
            }
            if let Some(stock) = stock {
                check_capacity(conn, id, i64::from(stock), "stock").await?;
            }
            let updated = repo::update(
                conn,
                id,
                &Edit {
                    name: &valid.name,
                    description: &valid.description,
                    price_cents: valid.price_cents,
                    stock,
                    bump_version: fields_change,
                },
            )
            .await?;
            if let Some(stock) = stock {
                let mut movement =
                    NewMovement::new(id, MovementKind::Adjust, stock - current.stock);
                movement.reason = Some("stock set with PUT".into());
                movement.actor_id = Some(admin.user_id);
                repo::insert_movements(conn, &[movement]).await?;
            }
            Ok(updated)
        })
        .await?;
    Ok(committed(state, &product, true).await)
}

/// Stock and the quantity held for orders together must fit the column, so a release can
/// always give stock back.
async fn check_capacity(
    conn: &mut diesel_async::AsyncPgConnection,
    id: ProductId,
    stock: i64,
    field: &str,
) -> Result<(), CatalogError> {
    let held = repo::held_quantity(conn, id).await?;
    if stock + held > i64::from(i32::MAX) {
        return Err(CatalogError::Validation(vec![FieldError::new(
            field,
            "stock plus the quantity held for orders must stay below 2147483648",
        )]));
    }
    Ok(())
}

/// Soft-deletes a product: readers get 404, new reservations 409.
pub async fn delete(
    state: &AppState,
    id: ProductId,
    if_match: Option<&[String]>,
) -> Result<(), CatalogError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let deleted = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            let current = repo::lock_live(conn, id)
                .await?
                .ok_or(CatalogError::NotFound)?;
            if let Some(tags) = if_match
                && !Preconditions::if_match_holds(tags, &current)
            {
                return Err(CatalogError::PreconditionFailed);
            }
            repo::soft_delete(conn, id)
                .await?
                .ok_or(CatalogError::NotFound)
        })
        .await?;
    tracing::info!(product.id = %id, "product deleted");
    committed(state, &deleted, true).await;
    Ok(())
}

/// Checks an adjustment: a non-zero 32-bit delta and a reason of 1 to [`MAX_REASON`]
/// characters without control characters (trimmed).
fn adjustment(delta: i64, reason: &str) -> Result<(i32, &str), CatalogError> {
    let mut errors = Vec::new();
    let delta = match i32::try_from(delta) {
        Ok(delta) if delta != 0 => delta,
        _ => {
            errors.push(FieldError::new(
                "delta",
                "must be a non-zero 32-bit integer",
            ));
            0
        }
    };
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(char::is_control)
    {
        errors.push(FieldError::new(
            "reason",
            format!("must be 1 to {MAX_REASON} characters"),
        ));
    }
    if errors.is_empty() {
        Ok((delta, reason))
    } else {
        Err(CatalogError::Validation(errors))
    }
}

/// Adds or removes stock with a reason; never below zero.
pub async fn adjust_stock(
    state: &AppState,
    admin: &Identity,
    id: ProductId,
    delta: i64,
    reason: &str,
) -> Result<Versioned, CatalogError> {
    let (delta, reason) = adjustment(delta, reason)?;
    let mut conn = shop_db::conn(&state.pool).await?;
    let product = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            let current = repo::lock_live(conn, id)
                .await?
                .ok_or(CatalogError::NotFound)?;
            // In 64 bits: a huge delta is a client error, not an integer overflow.
            let stock = i64::from(current.stock) + i64::from(delta);
            if stock < 0 {
                return Err(CatalogError::InsufficientStock {
                    product_id: id,
                    available: current.stock,
                });
            }
            check_capacity(conn, id, stock, "delta").await?;
            let stock = i32::try_from(stock).map_err(|e| CatalogError::Unexpected(e.into()))?;
            let product = repo::set_stock(conn, id, stock).await?;
            let mut movement = NewMovement::new(id, MovementKind::Adjust, delta);
            movement.reason = Some(reason.to_owned());
            movement.actor_id = Some(admin.user_id);
            repo::insert_movements(conn, &[movement]).await?;
            Ok(product)
        })
        .await?;
    tracing::info!(product.id = %id, delta, "stock adjusted");
    Ok(committed(state, &product, true).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, description: Option<&str>, stock: Option<i64>) -> ProductInput {
        ProductInput {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            price_cents: 100,
            stock,
        }
    }

    fn refused_fields(input: &ProductInput, stock_required: bool) -> Vec<String> {
        match validate(input, stock_required) {
            Ok(_) => Vec::new(),
            Err(CatalogError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            Err(other) => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn names_and_descriptions_may_be_as_long_as_the_limits_and_no_longer() {
        let longest = "n".repeat(MAX_NAME);
        assert!(refused_fields(&input(&longest, None, Some(1)), true).is_empty());
        let longer = "n".repeat(MAX_NAME + 1);
        assert_eq!(
            refused_fields(&input(&longer, None, Some(1)), true),
            ["name"]
        );
        let described = "d".repeat(MAX_DESCRIPTION);
        assert!(refused_fields(&input("Mug", Some(&described), Some(1)), true).is_empty());
        let over = "d".repeat(MAX_DESCRIPTION + 1);
        assert_eq!(
            refused_fields(&input("Mug", Some(&over), Some(1)), true),
            ["description"]
        );
    }

    #[test]
    fn descriptions_keep_newlines_and_tabs_and_refuse_other_control_characters() {
        let laid_out = input("Mug", Some("Holds tea.\n\tDishwasher safe."), Some(1));
        assert!(refused_fields(&laid_out, true).is_empty());
        for control in ["\r", "\u{7}", "\u{0}"] {
            let bad = input("Mug", Some(&format!("Holds{control}tea")), Some(1));
            assert_eq!(refused_fields(&bad, true), ["description"], "{control:?}");
        }
    }

    #[test]
    fn adjustments_need_a_delta_and_a_short_plain_reason() {
        let refused = |delta: i64, reason: &str| match adjustment(delta, reason) {
            Ok(_) => Vec::new(),
            Err(CatalogError::Validation(errors)) => {
                errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
            }
            Err(other) => panic!("not a validation error: {other}"),
        };
        assert!(matches!(
            adjustment(-3, "  breakage "),
            Ok((-3, "breakage"))
        ));
        assert!(refused(5, &"r".repeat(MAX_REASON)).is_empty());
        assert_eq!(refused(5, &"r".repeat(MAX_REASON + 1)), ["reason"]);
        assert_eq!(refused(5, "   "), ["reason"]);
        assert_eq!(refused(5, "broken\u{7}"), ["reason"]);
        assert_eq!(refused(0, "recount"), ["delta"]);
        assert_eq!(refused(i64::from(i32::MAX) + 1, "recount"), ["delta"]);
    }

    #[test]
    fn stock_is_required_only_where_asked_for() {
        assert_eq!(refused_fields(&input("Mug", None, None), true), ["stock"]);
        assert!(refused_fields(&input("Mug", None, None), false).is_empty());
        assert_eq!(
            refused_fields(&input("Mug", None, Some(-1)), false),
            ["stock"]
        );
    }
}
