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

#[tokio::test]
async fn concurrent_additions_cannot_pass_the_line_limit() {
    // Connections enough for every request to be in a transaction at once.
    let app = TestApp::builder()
        .configure(|s| s.database_pool_size = 24)
        .spawn()
        .await;
    let user = app.new_user().await;
    // The cart does not check products: any ids make lines.
    let full: Vec<Value> = (0..49)
        .map(|_| json!({"productId": uuid::Uuid::now_v7(), "quantity": 1}))
        .collect();
    let replaced = app
        .http
        .put(app.url("/cart"))
        .header("authorization", user.bearer())
        .json(&json!({"items": full}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);

    // Open the connections first, so that the additions below really run at once.
    for answer in futures_util::future::join_all((0..20).map(|_| {
        app.get("/cart")
            .header("authorization", user.bearer())
            .send()
    }))
    .await
    {
        assert_eq!(answer.unwrap().status(), 200);
    }
    // Twenty new products at once for the one free line.
    let answers = futures_util::future::join_all((0..20).map(|_| {
        app.http
            .put(app.url(&format!("/cart/items/{}", uuid::Uuid::now_v7())))
            .header("authorization", user.bearer())
            .json(&json!({"quantity": 1}))
            .send()
    }))
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        19,
        "{statuses:?}"
    );
    let cart: Value = app
        .get("/cart")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 50);
}
