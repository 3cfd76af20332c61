//! Catalog service tests: public routes through the gateway, reservations on the service's
//! internal API as the order service calls them.

#![allow(clippy::unwrap_used)]

mod cache;
mod health;
mod heavy;
mod listing;
mod openapi;
mod preconditions;
mod products;
mod reservations;

use reqwest::Response;
use serde_json::{Value, json};
pub use shop_testkit::expect_problem;
use shop_testkit::{Component, TestApp, TestUser};
use uuid::Uuid;

/// Creates a product as the administrator; returns its body.
pub async fn create_product(
    app: &TestApp,
    admin: &TestUser,
    name: &str,
    price_cents: i64,
    stock: i64,
) -> Value {
    let response = app
        .post("/products", &json!({"name": name, "description": format!("About {name}"), "priceCents": price_cents, "stock": stock}))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "creating {name}");
    response.json().await.unwrap()
}

/// The product's id.
pub fn id_of(product: &Value) -> Uuid {
    product["id"].as_str().unwrap().parse().unwrap()
}

/// A product read through the gateway: (status, ETag, body).
pub async fn read_product(app: &TestApp, id: Uuid) -> (u16, Option<String>, Value) {
    let response = app.get(&format!("/products/{id}")).send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = if status == 200 {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, etag, body)
}

/// A call to the catalog's internal reservation API, as the order service makes it.
pub fn internal(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.http
        .post(format!("http://{}{path}", app.addr(Component::Catalog)))
        .header("x-internal-token", app.settings.internal_token())
        .header("x-caller", "order")
}

/// Reserves `lines` of `(product, quantity)` for an order.
pub async fn reserve(app: &TestApp, order_id: Uuid, lines: &[(Uuid, i64)]) -> Response {
    let items: Vec<Value> = lines
        .iter()
        .map(|(p, q)| json!({"productId": p, "quantity": q}))
        .collect();
    internal(app, &format!("/internal/reservations/{order_id}"))
        .json(&json!({"items": items}))
        .send()
        .await
        .unwrap()
}

/// Releases an order's stock.
pub async fn release(app: &TestApp, order_id: Uuid) -> Response {
    internal(app, &format!("/internal/reservations/{order_id}/release"))
        .send()
        .await
        .unwrap()
}

/// DESIGN.md's invariant, per product (see the harness).
pub async fn assert_ledger_invariant(app: &TestApp) {
    shop_testkit::assert_ledger_invariant(app.db()).await;
}
