//! Idempotency-Key on POST /orders.

use serde_json::Value;
use shop_testkit::TestApp;

use crate::{expect_problem, place, product, stock_of};

#[tokio::test]
async fn a_repeat_replays_the_answer_and_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let first = place(&app, &user, &[(mug, 2)], Some("order-1")).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    let again = place(&app, &user, &[(mug, 2)], Some("order-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(stock_of(&app, mug).await, 8, "reserved once");

    let other_body = place(&app, &user, &[(mug, 3)], Some("order-1")).await;
    expect_problem(other_body, 409, "idempotency-key-reused").await;
    // Keys are per user: another user's identical key is another request.
    let other_user = app.new_user().await;
    assert_eq!(
        place(&app, &other_user, &[(mug, 2)], Some("order-1"))
            .await
            .status(),
        201
    );
    // A refusal is replayed too.
    let short = place(&app, &user, &[(mug, 50)], Some("order-2")).await;
    expect_problem(short, 409, "insufficient-stock").await;
    expect_problem(
        place(&app, &user, &[(mug, 50)], Some("order-2")).await,
        409,
        "insufficient-stock",
    )
    .await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_order() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 100).await;
    let user = app.new_user().await;
    for round in 0..5 {
        let key = format!("race-{round}");
        let attempts = futures_util::future::join_all(
            (0..6).map(|_| async { place(&app, &user, &[(mug, 1)], Some(&key)).await }),
        )
        .await;
        let mut ids = Vec::new();
        for attempt in attempts {
            match attempt.status().as_u16() {
                201 => ids.push(attempt.json::<Value>().await.unwrap()["id"].clone()),
                409 => {
                    assert_eq!(attempt.headers()["retry-after"], "1");
                    expect_problem(attempt, 409, "idempotency-in-progress").await;
                }
                other => panic!("unexpected {other}"),
            }
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one order, answered to every winner: {ids:?}"
        );
    }
    assert_eq!(stock_of(&app, mug).await, 95);
    let orders: i64 = app
        .db()
        .client()
        .await
        .query_one("SELECT count(*) FROM orders.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 5);
    app.assert_consistent().await;
}
