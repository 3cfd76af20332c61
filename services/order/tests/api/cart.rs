//! The cart and checkout.

use serde_json::{Value, json};
use shop_testkit::TestApp;

use crate::{expect_problem, product, stock_of};

#[tokio::test]
async fn checkout_turns_the_cart_into_an_order_and_empties_it() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let rare = product(&app, "Rare", 5000, 1).await;
    let user = app.new_user().await;
    let put = |product: uuid::Uuid, quantity: i64| {
        app.http
            .put(app.url(&format!("/cart/items/{product}")))
            .header("authorization", user.bearer())
            .json(&json!({"quantity": quantity}))
            .send()
    };
    assert_eq!(put(mug, 2).await.unwrap().status(), 200);
    let cart: Value = put(mug, 3).await.unwrap().json().await.unwrap();
    assert_eq!(cart["items"], json!([{"productId": mug, "quantity": 3}]));
    expect_problem(put(mug, 0).await.unwrap(), 422, "validation-failed").await;
    assert_eq!(put(rare, 2).await.unwrap().status(), 200);

    let checkout = || {
        app.http
            .post(app.url("/cart/checkout"))
            .header("authorization", user.bearer())
            .send()
    };
    // Short stock: the order fails and the cart stays.
    expect_problem(checkout().await.unwrap(), 409, "insufficient-stock").await;
    let cart: Value = app
        .get("/cart")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);

    let removed = app
        .http
        .delete(app.url(&format!("/cart/items/{rare}")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let order = checkout().await.unwrap();
    assert_eq!(order.status(), 201);
    let order: Value = order.json().await.unwrap();
    assert_eq!(order["totalCents"], 3 * 1250);
    assert_eq!(stock_of(&app, mug).await, 7);
    let cart: Value = app
        .get("/cart")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"], json!([]));
    expect_problem(checkout().await.unwrap(), 422, "validation-failed").await;

    assert_eq!(put(mug, 1).await.unwrap().status(), 200);
    let cleared = app
        .http
        .delete(app.url("/cart"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    let missing = app
        .http
        .delete(app.url(&format!("/cart/items/{mug}")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(missing, 404, "not-found").await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn the_whole_cart_can_be_replaced_and_lines_read() {
    let app = TestApp::spawn().await;
    let (mug, plate) = (
        product(&app, "Mug", 1250, 10).await,
        product(&app, "Plate", 900, 10).await,
    );
    let user = app.new_user().await;
    let replace = |body: Value| {
        app.http
            .put(app.url("/cart"))
            .header("authorization", user.bearer())
            .json(&body)
            .send()
    };
    let cart: Value = replace(json!({"items": [{"productId": mug, "quantity": 1}, {"productId": plate, "quantity": 2}, {"productId": mug, "quantity": 1}]}))
        .await.unwrap().json().await.unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);
    let line: Value = app
        .get(&format!("/cart/items/{mug}"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(line, json!({"productId": mug, "quantity": 2}));
    expect_problem(
        replace(json!({"items": [{"productId": mug, "quantity": 0}]}))
            .await
            .unwrap(),
        422,
        "validation-failed",
    )
    .await;
    let emptied: Value = replace(json!({"items": []}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emptied["items"], json!([]));
    expect_problem(
        app.get(&format!("/cart/items/{mug}"))
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
        404,
        "not-found",
    )
    .await;
}
