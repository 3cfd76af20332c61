//! Payment service tests: the whole system in-process, orders placed through the gateway, the
//! payment service consuming the real stream.

#![allow(clippy::unwrap_used)]

mod flows;
mod heavy;
mod openapi;
mod schemas;
mod streams;

use std::time::Duration;

use serde_json::Value;
use shop_settings::Settings;
use shop_testkit::{TestApp, TestUser, wait};
use uuid::Uuid;

/// Quick, predictable payments: `failure` percent, `retries` retries 20 ms apart.
pub fn payments(failure: u8, retries: u32) -> impl FnOnce(&mut Settings) + Send + 'static {
    move |s| {
        s.payment_failed_probability = failure;
        s.backoff_retries = retries;
        s.backoff_delay = Duration::from_millis(20);
        s.payment_duration = Duration::from_millis(10);
    }
}

/// Places an order that must be accepted; returns its id.
pub async fn order(app: &TestApp, user: &TestUser, product: Uuid, quantity: i64) -> Uuid {
    let response = app.place_order(user, &[(product, quantity)], None).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The payment of an order as its owner sees it.
pub async fn payment_of(app: &TestApp, user: &TestUser, order: Uuid) -> reqwest::Response {
    app.get(&format!("/orders/{order}/payment"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
}

/// Waits until the payment of an order has at least `attempts` attempts; returns it.
pub async fn await_attempts(app: &TestApp, user: &TestUser, order: Uuid, attempts: usize) -> Value {
    wait::until(
        &format!("{attempts} attempts"),
        Duration::from_secs(20),
        || async {
            let response = payment_of(app, user, order).await;
            if response.status() != 200 {
                return None;
            }
            let payment: Value = response.json().await.unwrap();
            (payment["attempts"].as_array().unwrap().len() >= attempts).then_some(payment)
        },
    )
    .await
}

/// The event types an order's notifications carried, in order.
pub async fn notification_types(app: &TestApp, order: Uuid) -> Vec<String> {
    app.events_of("notifications", order)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The number of payments stored for an order.
pub async fn payments_for(app: &TestApp, order: Uuid) -> i64 {
    app.db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM payments.payments WHERE order_id = $1",
            &[&order],
        )
        .await
        .unwrap()
        .get(0)
}
