//! Guest carts: filled before signing in with `Cart-Token`, merged into the account's cart.

use serde_json::{Value, json};
use shop_testkit::{TestApp, TestUser};
use uuid::Uuid;

use crate::expect_problem;

async fn guest_cart(app: &TestApp) -> String {
    let created = app.post("/guest-carts", &json!({})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("private, no-store")
    );
    let body: Value = created.json().await.unwrap();
    body["cartToken"].as_str().unwrap().to_owned()
}

async fn put_line(app: &TestApp, token: &str, product: Uuid, quantity: i64) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/cart/items/{product}")))
        .header("cart-token", token)
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
        .unwrap()
}

async fn user_line(app: &TestApp, user: &TestUser, product: Uuid, quantity: i64) {
    let put = app
        .http
        .put(app.url(&format!("/cart/items/{product}")))
        .header("authorization", user.bearer())
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
}

async fn merge(app: &TestApp, user: &TestUser, token: &str) -> reqwest::Response {
    app.post("/cart/merge", &json!({ "cartToken": token }))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
}

async fn cart_of(app: &TestApp, user: &TestUser) -> Vec<(String, i64)> {
    let cart: Value = app
        .get("/cart")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut lines: Vec<(String, i64)> = cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["productId"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_visitor_fills_a_cart_with_its_token_and_checkout_needs_a_login() {
    let app = TestApp::spawn().await;
    let product = app.create_product("Scarf", 1500, 10).await;
    let token = guest_cart(&app).await;
    assert_eq!(put_line(&app, &token, product, 2).await.status(), 200);
    let cart: Value = app
        .get("/cart")
        .header("cart-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"][0]["quantity"], 2);
    // The guest cart is nobody's account cart.
    let user = app.new_user().await;
    assert!(cart_of(&app, &user).await.is_empty());

    let checkout = app
        .post("/cart/checkout", &json!({}))
        .header("cart-token", &token)
        .send()
        .await
        .unwrap();
    expect_problem(checkout, 401, "unauthorized").await;
    let neither = app.get("/cart").send().await.unwrap();
    expect_problem(neither, 401, "unauthorized").await;
    let unknown = app
        .get("/cart")
        .header("cart-token", "not-a-real-token")
        .send()
        .await
        .unwrap();
    expect_problem(unknown, 400, "invalid-token").await;
}

#[tokio::test]
async fn a_merge_adds_quantities_caps_them_drops_deleted_products_and_ends_the_token() {
    let app = TestApp::spawn().await;
    let kept = app.create_product("Hat", 2000, 10).await;
    let capped = app.create_product("Sock", 300, 5000).await;
    let deleted = app.create_product("Discontinued", 100, 10).await;
    let user = app.new_user().await;
    user_line(&app, &user, capped, 900).await;
    let token = guest_cart(&app).await;
    put_line(&app, &token, kept, 1).await;
    put_line(&app, &token, capped, 300).await;
    put_line(&app, &token, deleted, 4).await;
    let admin = app.admin().await;
    let removed = app
        .http
        .delete(app.url(&format!("/products/{deleted}")))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);

    let merged = merge(&app, &user, &token).await;
    assert_eq!(merged.status(), 200);
    let merged: Value = merged.json().await.unwrap();
    let mut notes: Vec<(String, String, i64)> = merged["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["productId"].as_str().unwrap().to_owned(),
                n["note"].as_str().unwrap().to_owned(),
                n["keptQuantity"].as_i64().unwrap(),
            )
        })
        .collect();
    notes.sort();
    let mut expected = vec![
        (capped.to_string(), "quantity-capped".to_owned(), 1000),
        (deleted.to_string(), "product-unavailable".to_owned(), 0),
    ];
    expected.sort();
    assert_eq!(notes, expected);
    let mut lines = vec![(capped.to_string(), 1000), (kept.to_string(), 1)];
    lines.sort();
    assert_eq!(cart_of(&app, &user).await, lines);

    // The guest cart is gone: its token neither reads nor merges again.
    let read = app
        .get("/cart")
        .header("cart-token", &token)
        .send()
        .await
        .unwrap();
    expect_problem(read, 400, "invalid-token").await;
    expect_problem(merge(&app, &user, &token).await, 400, "invalid-token").await;
}

#[tokio::test]
async fn a_merge_into_a_full_cart_drops_the_lines_without_room() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let mut products = Vec::new();
    for n in 0..51 {
        products.push(app.create_product(&format!("Item {n}"), 100, 10).await);
    }
    for product in &products[..49] {
        user_line(&app, &user, *product, 1).await;
    }
    let token = guest_cart(&app).await;
    put_line(&app, &token, products[49], 1).await;
    put_line(&app, &token, products[50], 1).await;
    // A product the cart holds already always merges.
    put_line(&app, &token, products[0], 2).await;
    let merged: Value = merge(&app, &user, &token).await.json().await.unwrap();
    let notes = merged["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{merged}");
    assert_eq!(notes[0]["note"], "cart-full");
    assert_eq!(merged["items"].as_array().unwrap().len(), 50);
    let lines = cart_of(&app, &user).await;
    assert!(lines.contains(&(products[0].to_string(), 3)));
}

#[tokio::test]
async fn two_merges_of_one_token_at_once_merge_once() {
    let app = TestApp::spawn().await;
    let product = app.create_product("Mitten", 700, 10).await;
    let user = app.new_user().await;
    let token = guest_cart(&app).await;
    put_line(&app, &token, product, 3).await;
    let answers = futures_util::future::join_all((0..4).map(|_| merge(&app, &user, &token))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 400].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(cart_of(&app, &user).await, [(product.to_string(), 3)]);
}

#[tokio::test]
async fn a_guest_cart_unused_for_30_days_is_an_invalid_token() {
    let app = TestApp::spawn().await;
    let product = app.create_product("Umbrella", 2500, 10).await;
    let token = guest_cart(&app).await;
    put_line(&app, &token, product, 1).await;
    app.db()
        .client()
        .await
        .execute(
            "UPDATE orders.guest_carts SET last_used_at = now() - interval '31 days'",
            &[],
        )
        .await
        .unwrap();
    expect_problem(
        put_line(&app, &token, product, 2).await,
        400,
        "invalid-token",
    )
    .await;
    let user = app.new_user().await;
    expect_problem(merge(&app, &user, &token).await, 400, "invalid-token").await;
}
