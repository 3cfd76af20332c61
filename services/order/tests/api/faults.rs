//! The saga under faults: a dead catalog, a lost Redis, a crash mid-placement.

use std::{sync::atomic::Ordering, time::Duration};

use serde_json::Value;
use shop_testkit::{Component, TestApp, wait};

use crate::{
    await_stock, expect_problem, id_of, notifications_of, place, place_ok, product, status_of,
    stock_of,
};

#[tokio::test]
async fn catalog_down_while_placing_is_503_and_holds_nothing() {
    let mut app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.stop(Component::Catalog).await;
    let response = place(&app, &user, &[(mug, 2)], Some("while-down")).await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 503, "dependency-unavailable").await;
    let failed: i64 = app
        .db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE status = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 1);

    app.start(Component::Catalog).await;
    // The release command reaches the catalog: a tombstone, so no stock is ever held for it.
    app.assert_consistent().await;
    assert_eq!(stock_of(&app, mug).await, 10);
    // The claim was dropped: the same key simply tries again.
    assert_eq!(
        place(&app, &user, &[(mug, 2)], Some("while-down"))
            .await
            .status(),
        201
    );
    assert_eq!(stock_of(&app, mug).await, 8);
    app.assert_consistent().await;
}

#[tokio::test]
async fn cancel_while_the_catalog_is_down_answers_and_stock_returns_later() {
    let mut app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 3)]).await);
    app.stop(Component::Catalog).await;
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    assert_eq!(
        stock_of(&app, mug).await,
        7,
        "nothing back while the catalog is away"
    );
    app.start(Component::Catalog).await;
    await_stock(&app, mug, 10).await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn with_redis_cut_orders_are_accepted_and_events_follow_later() {
    let app = TestApp::builder().redis_through_proxy().spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.redis_proxy().cut();
    let order = place(&app, &user, &[(mug, 1)], None).await;
    assert_eq!(order.status(), 201);
    let id = id_of(&order.json::<Value>().await.unwrap());
    assert!(
        notifications_of(&app, id).await.is_empty(),
        "nothing published while Redis is away"
    );

    app.redis_proxy().restore();
    wait::until(
        "order.created to be published",
        Duration::from_secs(30),
        || async {
            let events = notifications_of(&app, id).await;
            (events.len() == 1).then_some(events)
        },
    )
    .await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_crash_between_reservation_and_commit_is_recovered() {
    let mut app = TestApp::builder()
        .configure(|s| {
            s.reserve_timeout = Duration::from_secs(2);
            s.idempotency_resume_after = Duration::from_secs(1);
            s.worker_interval = Duration::from_millis(200);
        })
        .spawn()
        .await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.order_hooks()
        .crash_after_reserve
        .store(true, Ordering::SeqCst);
    let crashed = place(&app, &user, &[(mug, 4)], None).await;
    assert_eq!(crashed.status(), 500);
    app.stop(Component::Order).await;
    assert_eq!(
        stock_of(&app, mug).await,
        6,
        "the reservation is held by an order stuck in reserving"
    );
    let id: uuid::Uuid = app
        .db()
        .client()
        .await
        .query_one("SELECT id FROM orders.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status_of(&app, id).await, "reserving");

    app.order_hooks()
        .crash_after_reserve
        .store(false, Ordering::SeqCst);
    app.start(Component::Order).await;
    await_stock(&app, mug, 10).await;
    assert_eq!(status_of(&app, id).await, "failed");
    let timeline: Vec<Value> = app
        .get(&format!("/orders/{id}/timeline"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timeline.last().unwrap()["cause"], "reservation_abandoned");
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_repeat_resumes_a_claim_left_by_a_crash() {
    let app = TestApp::builder()
        .configure(|s| s.idempotency_resume_after = Duration::from_secs(1))
        .spawn()
        .await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.order_hooks()
        .crash_after_reserve
        .store(true, Ordering::SeqCst);
    assert_eq!(
        place(&app, &user, &[(mug, 3)], Some("crashy"))
            .await
            .status(),
        500
    );
    app.order_hooks()
        .crash_after_reserve
        .store(false, Ordering::SeqCst);

    // Right after, the claim looks like a request still running.
    let early = place(&app, &user, &[(mug, 3)], Some("crashy")).await;
    expect_problem(early, 409, "idempotency-in-progress").await;
    // Later it is resumed with the order it made: the reservation is not repeated.
    let resumed = wait::until(
        "the claim to be resumable",
        Duration::from_secs(10),
        || async {
            let response = place(&app, &user, &[(mug, 3)], Some("crashy")).await;
            (response.status() == 201).then_some(response)
        },
    )
    .await;
    let order: Value = resumed.json().await.unwrap();
    assert_eq!(order["status"], "pending");
    assert_eq!(stock_of(&app, mug).await, 7, "reserved once");
    let orders: i64 = app
        .db()
        .client()
        .await
        .query_one("SELECT count(*) FROM orders.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 1);
    assert_eq!(
        id_of(
            &place(&app, &user, &[(mug, 3)], Some("crashy"))
                .await
                .json::<Value>()
                .await
                .unwrap()
        ),
        id_of(&order)
    );
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_connection_the_database_dropped_fails_at_most_its_own_request() {
    let app = TestApp::spawn().await;
    let user = app.new_user().await;
    let list = || async {
        app.get("/orders")
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Every pooled connection is open and idle.
    for _ in 0..app.settings.database_pool_size {
        assert_eq!(list().await, 200);
    }
    assert!(app.db().terminate_connections().await > 0);
    // No test query is sent on checkout: a connection known to be closed is replaced, one not
    // yet known fails its request with 503 (never a 500) and is dropped.
    let pool = usize::try_from(app.settings.database_pool_size).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..pool * 3 {
        statuses.push(list().await);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 503).count() <= pool,
        "each dead connection fails one request at most: {statuses:?}"
    );
    for _ in 0..pool {
        assert_eq!(list().await, 200, "the pool is whole again");
    }
}

#[tokio::test]
async fn a_reservation_whose_answer_is_lost_is_released_and_ends_consistent() {
    let mut app = TestApp::builder()
        .configure(|s| {
            s.catalog_service_timeout = Duration::from_millis(500);
            s.http_retries = 0;
            s.circuit_breaker_cooldown = Duration::from_millis(200);
        })
        .spawn()
        .await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    // The order service reaches the catalog through a link that loses its answers: the
    // catalog reserves, the order service never hears of it.
    let link = shop_testkit::TcpProxy::start(app.addr(Component::Catalog)).await;
    app.stop(Component::Order).await;
    app.settings.catalog_service_url = format!("http://{}", link.addr());
    app.start(Component::Order).await;
    link.mute();

    let lost = place(&app, &user, &[(mug, 3)], None).await;
    expect_problem(lost, 503, "dependency-unavailable").await;
    let id: uuid::Uuid = app
        .db()
        .client()
        .await
        .query_one("SELECT id FROM orders.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status_of(&app, id).await, "failed");

    // Once answers get through again, the release the failure queued is acknowledged (it may
    // have been carried out already, its answer lost too) and the stock is back.
    link.restore();
    await_stock(&app, mug, 10).await;
    app.assert_consistent().await;
    let movements: Vec<(String, i32)> = app
        .db()
        .client()
        .await
        .query(
            "SELECT kind, delta FROM catalog.stock_movements WHERE order_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        movements,
        [("reserve".to_owned(), -3), ("release".to_owned(), 3)],
        "the catalog did reserve, and gave the stock back once"
    );
    assert!(
        notifications_of(&app, id).await.is_empty(),
        "an order that never became pending announces nothing"
    );
}
