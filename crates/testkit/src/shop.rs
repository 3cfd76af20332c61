//! Shop-level shortcuts for tests: products, orders, stock and streams.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{TestApp, TestUser, wait};

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    body
}

/// A valid shipping address.
pub fn sample_address() -> Value {
    json!({
        "name": "Ada Lovelace",
        "line1": "12 rue des Lilas",
        "city": "Lyon",
        "postalCode": "69003",
        "country": "FR",
    })
}

impl TestApp {
    /// Gives `user` a default shipping address ([`sample_address`]), so their orders can ship.
    pub async fn set_address(&self, user: &TestUser) {
        let response = self
            .http
            .put(self.url("/me/address"))
            .header("authorization", user.bearer())
            .json(&sample_address())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "PUT /me/address");
    }

    /// DESIGN.md's invariant, both halves, once every outbox has drained.
    pub async fn assert_consistent(&self) {
        self.await_outboxes_drained().await;
        crate::assert_ledger_invariant(self.db()).await;
        crate::assert_holds_match_orders(self.db()).await;
        crate::assert_refunds_consistent(self.db()).await;
    }

    /// Creates a product as the administrator; returns its id.
    pub async fn create_product(&self, name: &str, price_cents: i64, stock: i64) -> Uuid {
        let admin = self.admin().await;
        let response = self
            .post(
                "/products",
                &json!({"name": name, "priceCents": price_cents, "stock": stock}),
            )
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "creating {name}");
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// `POST /orders` as `user`, with an optional Idempotency-Key.
    pub async fn place_order(
        &self,
        user: &TestUser,
        lines: &[(Uuid, i64)],
        key: Option<&str>,
    ) -> reqwest::Response {
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| json!({"productId": p, "quantity": q}))
            .collect();
        let mut request = self
            .post("/orders", &json!({"items": items}))
            .header("authorization", user.bearer());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// A product's stock, read from the catalog's table.
    pub async fn stock_of(&self, product: Uuid) -> i32 {
        self.db()
            .client()
            .await
            .query_one(
                "SELECT stock FROM catalog.products WHERE id = $1",
                &[&product],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// An order's status, read from the order service's table.
    pub async fn order_status(&self, order: Uuid) -> String {
        self.db()
            .client()
            .await
            .query_one("SELECT status FROM orders.orders WHERE id = $1", &[&order])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until an order reaches `status`.
    pub async fn await_order_status(&self, order: Uuid, status: &str, deadline: Duration) {
        wait::until(
            &format!("order {order} to be {status}"),
            deadline,
            || async { (self.order_status(order).await == status).then_some(()) },
        )
        .await;
    }

    /// Every entry of a stream on the system's Redis: its id and its `event` (as JSON when it
    /// parses, else as a string).
    pub async fn stream_entries(&self, stream: &str) -> Vec<(String, Value)> {
        // The server itself: a test may have cut the system's link to it.
        let redis = shop_redis::RedisPool::with_url(
            self.redis_direct_url(),
            self.redis_prefix(),
            1,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut conn = redis.get().await.unwrap();
        let entries: shop_redis::redis::streams::StreamRangeReply =
            shop_redis::redis::cmd("XRANGE")
                .arg(redis.key(stream))
                .arg("-")
                .arg("+")
                .query_async(&mut *conn)
                .await
                .unwrap();
        entries
            .ids
            .into_iter()
            .map(|e| {
                let raw: String = e.get("event").unwrap_or_default();
                let event = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
                (e.id, event)
            })
            .collect()
    }

    /// The events on `stream` for one order, in stream order.
    pub async fn events_of(&self, stream: &str, order: Uuid) -> Vec<Value> {
        self.stream_entries(stream)
            .await
            .into_iter()
            .map(|(_, event)| event)
            .filter(|e| e["orderId"] == order.to_string())
            .collect()
    }

    /// Waits until every outbox (order and payment) has sent everything.
    pub async fn await_outboxes_drained(&self) {
        wait::until("the outboxes to drain", Duration::from_secs(30), || async {
            let unsent: i64 = self
                .db()
                .client()
                .await
                .query_one(
                    "SELECT (SELECT count(*) FROM orders.outbox WHERE sent_at IS NULL) \
                          + (SELECT count(*) FROM payments.outbox WHERE sent_at IS NULL)",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (unsent == 0).then_some(())
        })
        .await;
    }
}
