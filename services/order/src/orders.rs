//! Reading orders, cancelling them, and the administrator's fulfilment transitions.

use diesel_async::AsyncConnection;
use shop_contracts::{OrderId, Page, UserId};
use shop_http::{Identity, RequestContext};

use crate::{
    AppState,
    error::OrderError,
    lifecycle::{self, Shipment, Transition},
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
    id: OrderId,
) -> Result<OrderResponse, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let order = repo::find_order(&mut conn, id)
        .await?
        .filter(|o| visible(o, identity))
        .ok_or(OrderError::NotFound)?;
    let lines = repo::lines(&mut conn, id).await?;
    Ok(OrderResponse::new(&order, lines))
}

const SUMMARIES: &str = "SELECT o.id, o.total_cents, o.currency, o.shipping_address, \
     COALESCE((SELECT json_agg(json_build_object( \
         'name', COALESCE(l.name, ''), \
         'unitPriceCents', COALESCE(l.unit_price_cents, 0), \
         'quantity', l.quantity) ORDER BY l.position) \
       FROM order_lines l WHERE l.order_id = o.id), '[]'::json) AS items \
     FROM orders o WHERE o.id = ANY($1)";

#[derive(diesel::QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: OrderId,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    total_cents: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
    shipping_address: Option<serde_json::Value>,
    #[diesel(sql_type = diesel::sql_types::Json)]
    items: serde_json::Value,
}

/// Orders as their mails show them (the user service's mail), in one statement.
pub async fn summaries(
    state: &AppState,
    ids: &[OrderId],
) -> Result<shop_contracts::OrderSummaries, OrderError> {
    if ids.len() > shop_contracts::MAX_SUMMARIES {
        return Err(OrderError::field(
            "orderIds",
            format!("at most {} ids", shop_contracts::MAX_SUMMARIES),
        ));
    }
    let mut conn = shop_db::conn(&state.pool).await?;
    let rows: Vec<SummaryRow> = diesel_async::RunQueryDsl::load(
        shop_db::prepared(SUMMARIES)
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids),
        &mut conn,
    )
    .await?;
    let orders = rows
        .into_iter()
        .map(|row| {
            let items = serde_json::from_value(row.items)
                .map_err(|e| anyhow::anyhow!("order lines as JSON: {e}"))?;
            Ok(shop_contracts::OrderSummary {
                id: row.id,
                total_cents: row.total_cents,
                currency: row.currency,
                items,
                shipping_address: row
                    .shipping_address
                    .and_then(|a| serde_json::from_value(a).ok()),
            })
        })
        .collect::<Result<_, OrderError>>()?;
    Ok(shop_contracts::OrderSummaries { orders })
}

/// Every status change of an order.
pub async fn timeline(
    state: &AppState,
    identity: &Identity,
    id: OrderId,
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
    let ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
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
    id: OrderId,
    context: &RequestContext,
) -> Result<OrderResponse, OrderError> {
    let transition = Transition::cancelled_by(identity.user_id);
    change(state, id, Some(identity.user_id), &transition, context).await
}

/// An administrator moves a paid order on: `paid → shipped → delivered`, nothing else; only
/// an order with an address ships, with its carrier and tracking number if given.
pub async fn set_status(
    state: &AppState,
    admin: &Identity,
    id: OrderId,
    to: Status,
    shipment: Shipment,
    context: &RequestContext,
) -> Result<OrderResponse, OrderError> {
    let Some(transition) = Transition::fulfilment(to, admin.user_id, shipment) else {
        let mut conn = shop_db::conn(&state.pool).await?;
        let order = repo::find_order(&mut conn, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        return Err(OrderError::IllegalTransition {
            status: order.status,
        });
    };
    change(state, id, None, &transition, context).await
}

/// Applies a transition asked for over the API: 404 for an order that is not there (or not
/// the owner's, with `owner`), 409 with its status when it cannot change that way.
async fn change(
    state: &AppState,
    id: OrderId,
    owner: Option<UserId>,
    transition: &Transition,
    context: &RequestContext,
) -> Result<OrderResponse, OrderError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let applied = conn
        .transaction::<_, OrderError, _>(async |conn| {
            lifecycle::apply(conn, id, owner, transition, context).await
        })
        .await?;
    let Some(applied) = applied else {
        let order = repo::find_order(&mut conn, id)
            .await?
            .filter(|o| owner.is_none_or(|owner| o.user_id == owner))
            .ok_or(OrderError::NotFound)?;
        if transition.shipment.is_some()
            && transition.from.contains(&order.status)
            && order.shipping_address.is_none()
        {
            return Err(OrderError::AddressRequired);
        }
        return Err(OrderError::IllegalTransition {
            status: order.status,
        });
    };
    state.relay.wake(applied.written);
    tracing::info!(
        order.id = %id,
        status = applied.order.status.as_str(),
        cause = transition.cause.as_str(),
        "order changed"
    );
    let lines = repo::lines(&mut conn, id).await?;
    Ok(OrderResponse::new(&applied.order, lines))
}
