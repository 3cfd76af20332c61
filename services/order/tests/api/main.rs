//! Order service tests: public routes through the gateway, payment reports on the internal
//! API as the payment service sends them.

#![allow(clippy::unwrap_used)]

mod cart;
mod events;
mod faults;
mod heavy;
mod idempotency;
mod lifecycle;
mod openapi;
mod placing;

pub use shop_testkit::expect_problem;
use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use shop_testkit::{Component, TestApp, TestUser, wait};
use uuid::Uuid;

/// Creates a product as the administrator; returns its id.
pub async fn product(app: &TestApp, name: &str, price_cents: i64, stock: i64) -> Uuid {
    app.create_product(name, price_cents, stock).await
}

/// `POST /orders` as `user`, with an optional Idempotency-Key.
pub async fn place(
    app: &TestApp,
    user: &TestUser,
    lines: &[(Uuid, i64)],
    key: Option<&str>,
) -> Response {
    app.place_order(user, lines, key).await
}

/// Places an order that must succeed; returns its body.
pub async fn place_ok(app: &TestApp, user: &TestUser, lines: &[(Uuid, i64)]) -> Value {
    let response = place(app, user, lines, None).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

pub fn id_of(order: &Value) -> Uuid {
    order["id"].as_str().unwrap().parse().unwrap()
}

/// A product's stock, read from the catalog's tables.
pub async fn stock_of(app: &TestApp, product: Uuid) -> i32 {
    app.stock_of(product).await
}

/// Waits until a product's stock is `expected` (releases travel through the outbox).
pub async fn await_stock(app: &TestApp, product: Uuid, expected: i32) {
    wait::until(
        &format!("stock {expected}"),
        Duration::from_secs(20),
        || async { (stock_of(app, product).await == expected).then_some(()) },
    )
    .await;
}

/// An order's status, read from the order service's table.
pub async fn status_of(app: &TestApp, order: Uuid) -> String {
    app.order_status(order).await
}

/// Reports a payment event as the payment service does.
pub async fn report(app: &TestApp, order: Uuid, event: Value) -> Response {
    app.http
        .post(format!(
            "http://{}/internal/orders/{order}/payment-events",
            app.addr(Component::Order)
        ))
        .header("x-internal-token", app.settings.internal_token())
        .header("x-caller", "payment")
        .json(&event)
        .send()
        .await
        .unwrap()
}

/// Reports what became of refunds, as the payment service does; the answers.
pub async fn report_refunds(app: &TestApp, refunds: Value) -> Value {
    let response = app
        .http
        .post(format!(
            "http://{}/internal/payment-reports",
            app.addr(Component::Order)
        ))
        .header("x-internal-token", app.settings.internal_token())
        .header("x-caller", "payment")
        .json(&serde_json::json!({"reports": [], "refunds": refunds}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The events published on `notifications` for an order, in stream order.
pub async fn notifications_of(app: &TestApp, order: Uuid) -> Vec<Value> {
    stream_of(app, "notifications", order).await
}

/// The ids of a stream's entries.
pub async fn stream_ids(app: &TestApp, stream: &str) -> Vec<String> {
    app.stream_entries(stream)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The events published on `stream` for an order, in stream order.
pub async fn stream_of(app: &TestApp, stream: &str, order: Uuid) -> Vec<Value> {
    app.events_of(stream, order).await
}

#[test]
fn the_outbox_table_is_the_shared_one() {
    let migration = include_str!("../../migrations/2026-11-21-000001_create_orders/up.sql");
    assert!(
        migration.contains(shop_outbox::TABLE_DDL),
        "the orders migration must hold crates/outbox/outbox.sql verbatim"
    );
}
