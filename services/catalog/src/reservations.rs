//! Reserving and releasing the stock of an order: all lines in one transaction, products
//! locked in id order, idempotent on the order id.

use std::collections::BTreeMap;

use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use shop_contracts::{
    MAX_LINES, OrderId, ProductId, ReleaseOutcome, Reservation, ReserveLine, ReserveRefusal,
    ReservedLine,
};
use shop_http::FieldError;

use crate::{
    AppState,
    error::CatalogError,
    models::{MovementKind, NewMovement, Product},
    repo,
};

enum Outcome {
    Held(Reservation, Vec<Product>),
    Repeated(Reservation),
    Refused(ReserveRefusal),
}

/// Merges duplicate product ids (quantities add up) and checks the lines.
fn merge(lines: &[ReserveLine]) -> Result<Vec<ReserveLine>, CatalogError> {
    let mut errors = Vec::new();
    if lines.is_empty() || lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "items",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut merged: Vec<ReserveLine> = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if line.quantity <= 0 {
            errors.push(FieldError::new(
                format!("items[{index}].quantity"),
                "must be at least 1",
            ));
            continue;
        }
        match merged.iter_mut().find(|m| m.product_id == line.product_id) {
            Some(existing) => match existing.quantity.checked_add(line.quantity) {
                Some(sum) => existing.quantity = sum,
                None => errors.push(FieldError::new(
                    format!("items[{index}].quantity"),
                    "too large",
                )),
            },
            None => merged.push(*line),
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(CatalogError::Validation(errors))
    }
}

fn stored<T: Serialize>(value: &T) -> Result<serde_json::Value, CatalogError> {
    serde_json::to_value(value).map_err(|e| CatalogError::Unexpected(e.into()))
}

fn replay<T: for<'de> Deserialize<'de>>(
    answer: Option<serde_json::Value>,
) -> Result<T, CatalogError> {
    let answer =
        answer.ok_or_else(|| CatalogError::Unexpected(anyhow::anyhow!("stored answer missing")))?;
    serde_json::from_value(answer).map_err(|e| CatalogError::Unexpected(e.into()))
}

/// Reserves every line or none. A repeat for the same order id returns the first answer;
/// an order id already released is refused without touching stock.
pub async fn reserve(
    state: &AppState,
    order_id: OrderId,
    lines: &[ReserveLine],
) -> Result<Reservation, CatalogError> {
    let lines = merge(lines)?;
    let ids: Vec<ProductId> = lines.iter().map(|l| l.product_id).collect();
    let mut conn = shop_db::conn(&state.pool).await?;
    let outcome = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            // Independent of each other, so sent together: the claim of the order id and the
            // locks on its products (in id order, so concurrent reservations cannot deadlock).
            let (claimed, locked) = futures_util::future::try_join(
                repo::claim_order(conn, order_id, "pending"),
                repo::lock_many(conn, &ids),
            )
            .await?;
            if !claimed {
                let (order_state, answer) = repo::lock_order(conn, order_id).await?;
                return match order_state.as_str() {
                    "held" => Ok(Outcome::Repeated(replay(answer)?)),
                    "refused" => Ok(Outcome::Refused(replay(answer)?)),
                    _ => Err(CatalogError::OrderReleased { order_id }),
                };
            }
            let locked: BTreeMap<ProductId, Product> =
                locked.into_iter().map(|p| (p.id, p)).collect();
            let refusal = lines.iter().enumerate().find_map(|(index, line)| {
                match locked.get(&line.product_id) {
                    None => Some(ReserveRefusal::UnknownProduct { index }),
                    Some(p) if p.deleted_at.is_some() => {
                        Some(ReserveRefusal::ProductUnavailable { product_id: p.id })
                    }
                    Some(p) if p.stock < line.quantity => Some(ReserveRefusal::InsufficientStock {
                        product_id: p.id,
                        available: p.stock,
                    }),
                    Some(_) => None,
                }
            });
            if let Some(refusal) = refusal {
                repo::set_order_state(conn, order_id, "refused", Some(&stored(&refusal)?)).await?;
                return Ok(Outcome::Refused(refusal));
            }
            // Answer in the caller's line order, at the prices and names of the locked rows.
            let reservation = Reservation {
                order_id,
                items: lines
                    .iter()
                    .filter_map(|line| {
                        let product = locked.get(&line.product_id)?;
                        Some(ReservedLine {
                            product_id: product.id,
                            name: product.name.clone(),
                            unit_price_cents: product.price_cents,
                            quantity: line.quantity,
                        })
                    })
                    .collect(),
            };
            let held: Vec<(ProductId, i32)> =
                lines.iter().map(|l| (l.product_id, l.quantity)).collect();
            let changed = repo::hold(conn, order_id, &held, &stored(&reservation)?).await?;
            if changed.len() != lines.len() {
                return Err(CatalogError::Unexpected(anyhow::anyhow!(
                    "stock of a locked product changed under its lock"
                )));
            }
            Ok(Outcome::Held(reservation, changed))
        })
        .await?;
    match outcome {
        Outcome::Held(reservation, changed) => {
            for product in &changed {
                state.cache.store_product(product).await;
            }
            tracing::info!(order.id = %order_id, lines = reservation.items.len(), "stock reserved");
            Ok(reservation)
        }
        Outcome::Repeated(reservation) => Ok(reservation),
        Outcome::Refused(refusal) => Err(CatalogError::Refused(refusal)),
    }
}

/// Gives back an order's held stock. Idempotent; for an order never reserved it leaves a
/// tombstone so a late reserve is refused.
pub async fn release(state: &AppState, order_id: OrderId) -> Result<ReleaseOutcome, CatalogError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let changed = conn
        .transaction::<_, CatalogError, _>(async |conn| {
            if repo::claim_order(conn, order_id, "released").await? {
                return Ok(Vec::new());
            }
            let (order_state, _) = repo::lock_order(conn, order_id).await?;
            if order_state != "held" {
                return Ok(Vec::new());
            }
            let lines = repo::release_reservations(conn, order_id).await?;
            let mut changed = Vec::with_capacity(lines.len());
            let mut movements = Vec::with_capacity(lines.len());
            for (product_id, quantity) in lines {
                changed.push(repo::return_stock(conn, product_id, quantity).await?);
                let mut movement = NewMovement::new(product_id, MovementKind::Release, quantity);
                movement.order_id = Some(order_id);
                movements.push(movement);
            }
            repo::insert_movements(conn, &movements).await?;
            repo::set_order_state(conn, order_id, "released", None).await?;
            Ok(changed)
        })
        .await?;
    for product in &changed {
        state.cache.store_product(product).await;
    }
    if !changed.is_empty() {
        tracing::info!(order.id = %order_id, lines = changed.len(), "stock released");
    }
    Ok(ReleaseOutcome {
        order_id,
        restored: !changed.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(count: usize) -> Vec<ReserveLine> {
        (0..count)
            .map(|_| ReserveLine {
                product_id: ProductId::new(),
                quantity: 1,
            })
            .collect()
    }

    #[test]
    fn a_reservation_holds_one_to_max_lines_lines() {
        assert_eq!(
            merge(&lines(MAX_LINES)).map(|m| m.len()).ok(),
            Some(MAX_LINES)
        );
        assert!(merge(&lines(MAX_LINES + 1)).is_err());
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn lines_of_one_product_add_up_and_bad_quantities_are_refused() {
        let mug = ProductId::new();
        let line = |quantity| ReserveLine {
            product_id: mug,
            quantity,
        };
        let merged = merge(&[line(2), line(3)]).ok();
        assert_eq!(merged.map(|m| (m.len(), m[0].quantity)), Some((1, 5)));
        assert!(merge(&[line(0)]).is_err());
        assert!(merge(&[line(-1)]).is_err());
        assert!(merge(&[line(i32::MAX), line(1)]).is_err());
    }
}
