//! Reservations and releases: all or nothing, idempotent, refused after a release.

use serde_json::Value;
use shop_testkit::TestApp;
use uuid::Uuid;

use crate::{assert_ledger_invariant, create_product, expect_problem, id_of, release, reserve};

#[tokio::test]
async fn a_reservation_answers_names_and_prices_and_repeats_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let saucer = id_of(&create_product(&app, &admin, "Saucer", 300, 10).await);
    let order = Uuid::now_v7();

    let first = reserve(&app, order, &[(saucer, 2), (cup, 3), (saucer, 1)]).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["orderId"], order.to_string());
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "duplicate lines merge: {first}");
    assert_eq!(
        (
            items[0]["name"].as_str(),
            items[0]["unitPriceCents"].as_i64(),
            items[0]["quantity"].as_i64()
        ),
        (Some("Saucer"), Some(300), Some(3))
    );
    assert_eq!(
        (
            items[1]["name"].as_str(),
            items[1]["unitPriceCents"].as_i64(),
            items[1]["quantity"].as_i64()
        ),
        (Some("Cup"), Some(450), Some(3))
    );

    // The price changes afterwards; a repeat still answers what was reserved, once.
    let (_, etag, _) = crate::read_product(&app, cup).await;
    let reprice = app
        .http
        .put(app.url(&format!("/products/{cup}")))
        .header("authorization", admin.bearer())
        .header("if-match", etag.unwrap())
        .json(&serde_json::json!({"name": "Cup", "priceCents": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(reprice.status(), 200);
    let again: Value = reserve(&app, order, &[(saucer, 2), (cup, 3), (saucer, 1)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        (app.stock_of(cup).await, app.stock_of(saucer).await),
        (7, 7)
    );
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn concurrent_repeats_of_one_order_reserve_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let order = Uuid::now_v7();
    let answers = futures_util::future::join_all(
        (0..10).map(|_| async { reserve(&app, order, &[(cup, 2)]).await }),
    )
    .await;
    assert!(answers.iter().all(|a| a.status() == 200));
    assert_eq!(app.stock_of(cup).await, 8);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn release_gives_stock_back_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let order = Uuid::now_v7();
    assert_eq!(reserve(&app, order, &[(cup, 4)]).await.status(), 200);
    assert_eq!(app.stock_of(cup).await, 6);

    let first: Value = release(&app, order).await.json().await.unwrap();
    assert_eq!(first["restored"], true);
    let second: Value = release(&app, order).await.json().await.unwrap();
    assert_eq!(second["restored"], false);
    assert_eq!(app.stock_of(cup).await, 10);
    // A released order cannot take stock again.
    expect_problem(
        reserve(&app, order, &[(cup, 4)]).await,
        409,
        "order-not-pending",
    )
    .await;
    assert_eq!(app.stock_of(cup).await, 10);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn a_release_that_comes_first_refuses_the_late_reserve() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let order = Uuid::now_v7();
    let tombstone: Value = release(&app, order).await.json().await.unwrap();
    assert_eq!(tombstone["restored"], false);
    expect_problem(
        reserve(&app, order, &[(cup, 1)]).await,
        409,
        "order-not-pending",
    )
    .await;
    assert_eq!(app.stock_of(cup).await, 10);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn a_reservation_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let rare = id_of(&create_product(&app, &admin, "Rare plate", 9000, 1).await);
    let gone = id_of(&create_product(&app, &admin, "Old bowl", 100, 5).await);
    assert_eq!(
        app.http
            .delete(app.url(&format!("/products/{gone}")))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let short = expect_problem(
        reserve(&app, Uuid::now_v7(), &[(cup, 2), (rare, 2)]).await,
        409,
        "insufficient-stock",
    )
    .await;
    assert_eq!(short["productId"], rare.to_string());
    assert_eq!(short["available"], 1);
    expect_problem(
        reserve(&app, Uuid::now_v7(), &[(cup, 1), (gone, 1)]).await,
        409,
        "product-unavailable",
    )
    .await;
    let unknown = expect_problem(
        reserve(&app, Uuid::now_v7(), &[(cup, 1), (Uuid::now_v7(), 1)]).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(unknown["errors"][0]["field"], "items[1].productId");
    expect_problem(
        reserve(&app, Uuid::now_v7(), &[(cup, 0)]).await,
        422,
        "validation-failed",
    )
    .await;
    expect_problem(
        reserve(&app, Uuid::now_v7(), &[]).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!((app.stock_of(cup).await, app.stock_of(rare).await), (10, 1));

    // A refused order keeps its answer: a repeat is refused the same way.
    let order = Uuid::now_v7();
    expect_problem(
        reserve(&app, order, &[(rare, 2)]).await,
        409,
        "insufficient-stock",
    )
    .await;
    expect_problem(
        reserve(&app, order, &[(rare, 2)]).await,
        409,
        "insufficient-stock",
    )
    .await;
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn only_the_order_service_moves_stock() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cup = id_of(&create_product(&app, &admin, "Cup", 450, 10).await);
    let path = format!("/internal/reservations/{}", Uuid::now_v7());
    let body = serde_json::json!({"items": [{"productId": cup, "quantity": 1}]});
    let catalog = format!(
        "http://{}{path}",
        app.addr(shop_testkit::Component::Catalog)
    );
    let no_token = app
        .http
        .post(&catalog)
        .header("x-caller", "order")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(no_token, 401, "unauthorized").await;
    // With the credential, but not from the order service.
    for caller in [Some("gateway"), Some("payment"), None] {
        let mut request = app
            .http
            .post(&catalog)
            .header("x-internal-token", app.settings.internal_token());
        if let Some(caller) = caller {
            request = request.header("x-caller", caller);
        }
        let response = request.json(&body).send().await.unwrap();
        expect_problem(response, 403, "forbidden").await;
    }
    // And never through the gateway.
    let public = app
        .post(&path, &body)
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(public, 404, "not-found").await;
    assert_eq!(app.stock_of(cup).await, 10);
}
