//! The messages this service writes to its outbox with each change.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use shop_contracts::events::{self, Envelope, OrderStatusChanged, PaymentRequested, types};
use shop_http::RequestContext;
use shop_outbox::{Kind, NewMessage};
use uuid::Uuid;

use crate::{models::Order, repo};

/// The outbox's NOTIFY channel.
pub const CHANNEL: &str = "orders_outbox";
/// The command that gives an order's stock back.
pub const RELEASE: &str = "stock.release";

async fn envelope(
    conn: &mut AsyncPgConnection,
    order: &Order,
    kind: &str,
    data: Value,
    context: &RequestContext,
) -> diesel::QueryResult<Value> {
    let seq = repo::next_seq(conn, order.id).await?;
    let envelope = Envelope {
        v: 1,
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        producer: "order".into(),
        occurred_at: Utc::now(),
        user_id: order.user_id,
        order_id: order.id,
        seq: i64::from(seq),
        traceparent: Some(context.traceparent.header_value()),
        data,
    };
    Ok(serde_json::to_value(envelope).unwrap_or_default())
}

/// `order.<status>` for the user's notifications.
pub async fn status_changed(
    conn: &mut AsyncPgConnection,
    order: &Order,
    kind: &str,
    cause: Option<&str>,
    context: &RequestContext,
) -> diesel::QueryResult<NewMessage> {
    let data = OrderStatusChanged {
        status: order.status.clone(),
        cause: cause.map(str::to_owned),
        total_cents: order.total_cents,
        currency: Some(order.currency.clone()),
    };
    Ok(NewMessage {
        kind: Kind::Event,
        topic: events::NOTIFICATIONS.into(),
        aggregate_id: order.id,
        user_id: Some(order.user_id),
        payload: envelope(
            conn,
            order,
            kind,
            serde_json::to_value(data).unwrap_or_default(),
            context,
        )
        .await?,
    })
}

/// `payment.requested` for the payment service.
pub async fn payment_requested(
    conn: &mut AsyncPgConnection,
    order: &Order,
    context: &RequestContext,
) -> diesel::QueryResult<NewMessage> {
    let data = PaymentRequested {
        amount_cents: order.total_cents.unwrap_or(0),
        currency: order.currency.clone(),
    };
    Ok(NewMessage {
        kind: Kind::Event,
        topic: events::PAYMENT_REQUESTS.into(),
        aggregate_id: order.id,
        user_id: None,
        payload: envelope(
            conn,
            order,
            types::PAYMENT_REQUESTED,
            serde_json::to_value(data).unwrap_or_default(),
            context,
        )
        .await?,
    })
}

/// `payment.cancel`: the payment service stops before its next attempt.
pub async fn payment_cancel(
    conn: &mut AsyncPgConnection,
    order: &Order,
    context: &RequestContext,
) -> diesel::QueryResult<NewMessage> {
    Ok(NewMessage {
        kind: Kind::Event,
        topic: events::PAYMENT_REQUESTS.into(),
        aggregate_id: order.id,
        user_id: None,
        payload: envelope(conn, order, types::PAYMENT_CANCEL, json!({}), context).await?,
    })
}

/// Gives the order's stock back through the catalog (retried until it succeeds).
pub fn release(order_id: Uuid) -> NewMessage {
    NewMessage {
        kind: Kind::Command,
        topic: RELEASE.into(),
        aggregate_id: order_id,
        user_id: None,
        payload: json!({"orderId": order_id}),
    }
}
