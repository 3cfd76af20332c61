//! Placing, reading and the outcomes of a reservation.

use serde_json::{Value, json};
use shop_testkit::TestApp;
use uuid::Uuid;

use crate::{
    await_stock, expect_problem, id_of, notifications_of, place, place_ok, product, stock_of,
};

#[tokio::test]
async fn place_list_read_timeline_and_cancel() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let plate = product(&app, "Plate", 900, 5).await;
    let user = app.new_user().await;

    let response = place(&app, &user, &[(mug, 2), (plate, 1), (mug, 1)], None).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    let id = id_of(&order);
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["totalCents"], 3 * 1250 + 900);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["userId"], user.id.to_string());
    assert_eq!(order["items"][0]["name"], "Mug");
    assert_eq!(order["items"][0]["quantity"], 3, "duplicate lines merge");
    assert_eq!(order["items"][1]["unitPriceCents"], 900);
    assert_eq!(
        (stock_of(&app, mug).await, stock_of(&app, plate).await),
        (7, 4)
    );

    let read: Value = app
        .get(&location)
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, order);
    let list: Value = app
        .get("/orders")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id.to_string());

    let cancelled = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    let again = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(again, 409, "illegal-transition").await;
    await_stock(&app, mug, 10).await;
    await_stock(&app, plate, 5).await;

    let timeline: Vec<Value> = app
        .get(&format!("/orders/{id}/timeline"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let steps: Vec<(&str, &str)> = timeline
        .iter()
        .map(|t| {
            (
                t["status"].as_str().unwrap(),
                t["cause"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("reserving", "placed"),
            ("pending", "reserved"),
            ("cancelled", "cancelled_by_user")
        ]
    );
    assert_eq!(timeline[0]["actor"], format!("user:{}", user.id));

    app.assert_consistent().await;
    let events: Vec<String> = notifications_of(&app, id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["order.created", "order.cancelled"]);
}

#[tokio::test]
async fn other_users_orders_are_404_and_admins_see_all() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let (owner, other) = (app.new_user().await, app.new_user().await);
    let id = id_of(&place_ok(&app, &owner, &[(mug, 1)]).await);
    for path in [format!("/orders/{id}"), format!("/orders/{id}/timeline")] {
        expect_problem(
            app.get(&path)
                .header("authorization", other.bearer())
                .send()
                .await
                .unwrap(),
            404,
            "not-found",
        )
        .await;
    }
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", other.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(cancel, 404, "not-found").await;
    let theirs: Value = app
        .get("/orders")
        .header("authorization", other.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total"], 0);

    let admin = app.admin().await;
    assert_eq!(
        app.get(&format!("/orders/{id}"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let filtered: Value = app
        .get(&format!("/orders?userId={}", owner.id))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["total"], 1);
    let none: Value = app
        .get(&format!("/orders?userId={}", other.id))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    expect_problem(
        app.get("/orders/not-a-uuid")
            .header("authorization", owner.bearer())
            .send()
            .await
            .unwrap(),
        400,
        "invalid-id",
    )
    .await;
    expect_problem(
        app.get("/orders").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn short_stock_fails_the_order_and_moves_nothing() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let rare = product(&app, "Rare", 5000, 1).await;
    let user = app.new_user().await;
    let refused = place(&app, &user, &[(mug, 2), (rare, 2)], None).await;
    let problem = expect_problem(refused, 409, "insufficient-stock").await;
    assert_eq!(problem["productId"], rare.to_string());
    assert_eq!(problem["available"], 1);
    assert!(
        problem.get("refusal").is_none(),
        "the catalog's refusal members stay between the services: {problem}"
    );
    assert_eq!(
        (stock_of(&app, mug).await, stock_of(&app, rare).await),
        (10, 1)
    );
    let list: Value = app
        .get("/orders")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0, "failed orders are not listed by default");
    let failed: Value = app
        .get("/orders?status=failed")
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["total"], 1);
    let id: Uuid = failed["items"][0]["id"].as_str().unwrap().parse().unwrap();
    assert!(
        notifications_of(&app, id).await.is_empty(),
        "a short-stock order emits nothing"
    );
    app.assert_consistent().await;
}

#[tokio::test]
async fn invalid_orders_are_4xx_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let many: Vec<(Uuid, i64)> = (0..51).map(|_| (Uuid::now_v7(), 1)).collect();
    for (lines, field) in [
        (vec![], "items"),
        (vec![(mug, 0)], "items[0].quantity"),
        (vec![(mug, 1001)], "items[0].quantity"),
        (vec![(mug, 600), (mug, 600)], "items[1].quantity"),
        (many, "items"),
    ] {
        let problem = expect_problem(
            place(&app, &user, &lines, None).await,
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let ghost = Uuid::now_v7();
    let unknown_product = place(&app, &user, &[(mug, 1), (ghost, 1)], None).await;
    let problem = expect_problem(unknown_product, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "items[1].productId");
    assert_eq!(problem["errors"][0]["productId"], ghost.to_string());
    assert!(
        problem.get("refusal").is_none() && problem.get("index").is_none(),
        "{problem}"
    );
    let unknown_field = app
        .post(
            "/orders",
            &json!({"items": [{"productId": mug, "quantity": 1}], "coupon": "FREE"}),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(unknown_field, 422, "validation-failed").await;
    let malformed = app
        .http
        .post(app.url("/orders"))
        .header("authorization", user.bearer())
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    expect_problem(malformed, 400, "malformed-json").await;
    let long_key = place(&app, &user, &[(mug, 1)], Some(&"k".repeat(256))).await;
    expect_problem(long_key, 422, "validation-failed").await;

    let orders: i64 = app
        .db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE status <> 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 0);
    assert_eq!(stock_of(&app, mug).await, 10);
    app.assert_consistent().await;
}
