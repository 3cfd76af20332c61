//! Reading orders, cancelling them, and the administrator's fulfilment transitions.

use diesel_async::AsyncConnection;
use shop_contracts::{Page, events::types};
use shop_http::{Identity, RequestContext};
use uuid::Uuid;

use crate::{
    AppState,
    error::OrderError,
    events,
    models::{Order, OrderResponse, Status, TimelineEntry},
    repo::{self, OrderFilter},
};

fn visible(order: &Order, identity: &Identity) -> bool {
    identity.is_admin() || order.user_id == identity.user_id
}

/// One order: the owner's or, for an administrator, anyone's (404 otherwise).
pub async fn get(
    state: &AppState,
    identity: &Identity,
    id: Uuid,
) -> Result<OrderResponse, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let order = repo::find_order(&mut conn, id)
        .await?
        .filter(|o| visible(o, identity))
        .ok_or(OrderError::NotFound)?;
    let lines = repo::lines(&mut conn, id).await?;
    Ok(OrderResponse::new(&order, lines))
}

/// Every status change of an order.
pub async fn timeline(
    state: &AppState,
    identity: &Identity,
    id: Uuid,
) -> Result<Vec<TimelineEntry>, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    repo::find_order(&mut conn, id)
        .await?
        .filter(|o| visible(o, identity))
        .ok_or(OrderError::NotFound)?;
    Ok(repo::history(&mut conn, id)
        .await?
        .into_iter()
        .map(TimelineEntry::from)
        .collect())
}

/// A page of orders, newest first: the caller's own, or for an administrator everyone's
/// (optionally one user's).
pub async fn list(
    state: &AppState,
    identity: &Identity,
    mut filter: OrderFilter,
) -> Result<Page<OrderResponse>, OrderError> {
    if !identity.is_admin() {
        filter.user_id = Some(identity.user_id);
    }
    let mut conn = shop_db::conn(&state.pool).await?;
    let (orders, total) = repo::list_orders(&mut conn, &filter).await?;
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let mut lines = repo::lines_of(&mut conn, &ids).await?;
    let items = orders
        .iter()
        .map(|order| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                lines.drain(..).partition(|l| l.order_id == order.id);
            lines = rest;
            OrderResponse::new(order, mine)
        })
        .collect();
    Ok(Page {
        items,
        page: filter.page,
        limit: filter.limit,
        total: u64::try_from(total).unwrap_or_default(),
    })
}

/// The owner cancels a pending order: stock goes back (through the outbox, so this answers
/// even while the catalog is down) and the payment service is told to stop.
pub async fn cancel(
    state: &AppState,
    identity: &Identity,
    id: Uuid,
    context: &RequestContext,
) -> Result<OrderResponse, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let order = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let current = repo::lock_order(conn, id)
                .await?
                .filter(|o| o.user_id == identity.user_id)
                .ok_or(OrderError::NotFound)?;
            let order = repo::transition(conn, id, &[Status::Pending], Status::Cancelled)
                .await?
                .ok_or(OrderError::IllegalTransition {
                    status: current.status(),
                })?;
            repo::add_history(
                conn,
                id,
                Status::Cancelled,
                &format!("user:{}", identity.user_id),
                Some("cancelled_by_user"),
            )
            .await?;
            let messages = vec![
                events::release(id),
                events::payment_cancel(conn, &order, context).await?,
                events::status_changed(
                    conn,
                    &order,
                    types::ORDER_CANCELLED,
                    Some("cancelled_by_user"),
                    context,
                )
                .await?,
            ];
            shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
            Ok(order)
        })
        .await?;
    state.relay.wake();
    tracing::info!(order.id = %id, "order cancelled");
    let lines = repo::lines(&mut conn, id).await?;
    Ok(OrderResponse::new(&order, lines))
}

/// An administrator moves a paid order on: `paid → shipped → delivered`, nothing else.
pub async fn set_status(
    state: &AppState,
    admin: &Identity,
    id: Uuid,
    to: Status,
    context: &RequestContext,
) -> Result<OrderResponse, OrderError> {
    let (from, kind) = match to {
        Status::Shipped => (Status::Paid, types::ORDER_SHIPPED),
        Status::Delivered => (Status::Shipped, types::ORDER_DELIVERED),
        _ => (Status::Delivered, ""),
    };
    let mut conn = shop_db::conn(&state.pool).await?;
    let order = conn
        .transaction::<_, OrderError, _>(async |conn| {
            let current = repo::lock_order(conn, id)
                .await?
                .ok_or(OrderError::NotFound)?;
            if kind.is_empty() || current.status() != from {
                return Err(OrderError::IllegalTransition {
                    status: current.status(),
                });
            }
            let order = repo::transition(conn, id, &[from], to).await?.ok_or(
                OrderError::IllegalTransition {
                    status: current.status(),
                },
            )?;
            repo::add_history(
                conn,
                id,
                to,
                &format!("admin:{}", admin.user_id),
                Some("fulfilment"),
            )
            .await?;
            let message = events::status_changed(conn, &order, kind, None, context).await?;
            shop_outbox::enqueue(conn, events::CHANNEL, &[message]).await?;
            Ok(order)
        })
        .await?;
    state.relay.wake();
    let lines = repo::lines(&mut conn, id).await?;
    Ok(OrderResponse::new(&order, lines))
}
