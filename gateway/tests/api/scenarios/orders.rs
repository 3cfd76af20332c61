//! Orders: placing, reading, following the payment, cancelling and the admin's fulfilment.

use serde_json::{Value, json};
use shop_testkit::{Component, TestApp, wait};
use uuid::Uuid;

use super::{
    Call, Caller, DEADLINE, Rules, await_visible_stock, fast_payments, id_of, look,
    refuse_bad_requests, token,
};

/// The statuses of an order's timeline, oldest first.
fn steps(timeline: &Value) -> Vec<&str> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect()
}

/// The ids of a page of orders, in order.
fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn a_customer_orders_follows_cancels_and_an_admin_fulfils() {
    let mut app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let plate = app.create_product("Plate", 900, 5).await;
    let (user, other) = (app.new_user().await, app.new_user().await);
    let admin = app.admin().await;
    // Orders stay pending while no payment service runs.
    app.stop(Component::Payment).await;

    let place = Call::post("/orders")
        .header("idempotency-key", "first-order")
        .json(json!({
            "items": [{"productId": mug, "quantity": 2}, {"productId": plate, "quantity": 1}],
            "shippingAddress": shop_testkit::sample_address(),
        }));
    let response = place.send(&app, token(&user)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    let id = id_of(&order);
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(
        (&order["status"], &order["totalCents"], &order["currency"]),
        (&json!("pending"), &json!(2 * 1250 + 900), &json!("USD"))
    );
    assert_eq!(order["userId"], user.id.to_string());
    assert_eq!(order["shippingAddress"], shop_testkit::sample_address());
    // A retry with the same key is the same order, and holds no more stock.
    let again = place.expect(&app, token(&user), 201).await;
    assert_eq!(id_of(&again), id);
    let read = |path: String| Call::get(path);
    let product = read(format!("/products/{mug}"))
        .expect(&app, None, 200)
        .await;
    assert_eq!(product["stock"], 8);

    let second = Call::post("/orders")
        .json(json!({"items": [{"productId": mug, "quantity": 1}]}))
        .expect(&app, token(&user), 201)
        .await;
    let second_id = id_of(&second);
    let theirs = Call::post("/orders")
        .json(json!({"items": [{"productId": plate, "quantity": 1}]}))
        .expect(&app, token(&other), 201)
        .await;

    let mine = read("/orders".into()).expect(&app, token(&user), 200).await;
    assert_eq!(ids(&mine), [second_id, id], "own orders, newest first");
    assert_eq!(mine["total"], 2);
    assert_eq!(
        read(location.clone()).expect(&app, token(&user), 200).await,
        order
    );

    // Cancelling while pending gives the stock back.
    let cancelled = Call::post(format!("/orders/{second_id}/cancel"))
        .expect(&app, token(&user), 200)
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    await_visible_stock(&app, mug, 8).await;
    let listed = read("/orders?status=cancelled".into())
        .expect(&app, token(&user), 200)
        .await;
    assert_eq!(ids(&listed), [second_id]);

    // Payments resume: the first order is paid, the cancelled one's payment stopped.
    app.start(Component::Payment).await;
    app.await_order_status(id, "paid", DEADLINE).await;
    let payment = read(format!("/orders/{id}/payment"))
        .expect(&app, token(&user), 200)
        .await;
    assert_eq!(
        (
            &payment["status"],
            &payment["amountCents"],
            &payment["orderId"]
        ),
        (&json!("succeeded"), &order["totalCents"], &json!(id))
    );
    let attempts = payment["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["outcome"], "succeeded");
    let stopped = wait::until(
        "the cancelled order's payment to stop",
        DEADLINE,
        || async {
            let response = read(format!("/orders/{second_id}/payment"))
                .send(&app, token(&user))
                .await;
            if response.status() != 200 {
                return None;
            }
            let payment: Value = response.json().await.unwrap();
            (payment["status"] != "processing").then_some(payment)
        },
    )
    .await;
    assert!(
        ["cancelled", "refunded"].contains(&stopped["status"].as_str().unwrap()),
        "{stopped}"
    );
    assert_eq!(app.order_status(second_id).await, "cancelled");

    // The administrator sees everyone's orders and moves the paid one on.
    let everyone = read("/orders".into())
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(everyone["total"], 3);
    let filtered = read(format!("/orders?userId={}", other.id))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(ids(&filtered), [id_of(&theirs)]);
    let status = Call::put(format!("/orders/{id}/status"));
    for next in ["shipped", "delivered"] {
        let moved = status
            .clone()
            .json(json!({"status": next}))
            .expect(&app, token(&admin), 200)
            .await;
        assert_eq!(moved["status"], next);
    }
    let timeline = read(format!("/orders/{id}/timeline"))
        .expect(&app, token(&user), 200)
        .await;
    assert_eq!(
        steps(&timeline),
        ["reserving", "pending", "paid", "shipped", "delivered"]
    );
    assert_eq!(timeline[0]["actor"], format!("user:{}", user.id));
    let delivered = read(location).expect(&app, token(&user), 200).await;
    assert_eq!(
        (&delivered["status"], &delivered["payment"]["status"]),
        (&json!("delivered"), &json!("succeeded"))
    );
    // Owners and administrators read an order; anybody else finds nothing.
    for path in [
        format!("/orders/{id}"),
        format!("/orders/{id}/timeline"),
        format!("/orders/{id}/payment"),
    ] {
        read(path.clone()).expect(&app, token(&admin), 200).await;
        read(path.clone())
            .refused(
                &app,
                token(&other),
                404,
                "not-found",
                "another user's order",
            )
            .await;
        read(path.replace(&id.to_string(), "not-a-uuid"))
            .refused(&app, token(&user), 400, "invalid-id", "a malformed id")
            .await;
        read(path.clone())
            .refused(&app, None, 401, "unauthorized", "no token")
            .await;
    }
    app.assert_consistent().await;
}

#[tokio::test]
async fn placing_refuses_bad_requests_and_writes_nothing() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let rare = app.create_product("Rare", 5000, 1).await;
    let gone = app.create_product("Gone", 500, 5).await;
    let admin = app.admin().await;
    Call::delete(format!("/products/{gone}"))
        .expect(&app, token(&admin), 204)
        .await;
    let user = app.new_user().await;
    let caller = Caller::of(&app, &user).await;
    // One earlier order, settled, under a key the refusals below reuse.
    let earlier = app
        .place_order(&user, &[(mug, 1)], Some("earlier-order"))
        .await;
    assert_eq!(earlier.status(), 201);
    let earlier = id_of(&earlier.json().await.unwrap());
    app.await_order_status(earlier, "paid", DEADLINE).await;

    let views = [
        ("/orders".to_owned(), token(&user)),
        (format!("/orders/{earlier}"), token(&user)),
        (format!("/products/{mug}"), None),
        (format!("/products/{rare}"), None),
    ];
    let before = look(&app, &views).await;
    let place = Call::post("/orders").json(json!({"items": [{"productId": mug, "quantity": 2}]}));
    refuse_bad_requests(
        &app,
        &place,
        Rules {
            caller: Some(&caller),
            required: &["items"],
            ..Rules::default()
        },
    )
    .await;
    let line = |line: Value| place.clone().json(json!({"items": [line]}));
    for (body, field) in [
        (json!({"items": []}), "items"),
        (
            json!({"items": [{"productId": mug, "quantity": 0}]}),
            "items[0].quantity",
        ),
        (
            json!({"items": [{"productId": mug, "quantity": 1001}]}),
            "items[0].quantity",
        ),
        (
            json!({"items": [{"productId": Uuid::now_v7(), "quantity": 1}]}),
            "items[0].productId",
        ),
    ] {
        let problem = place
            .clone()
            .json(body)
            .refused(&app, token(&user), 422, "validation-failed", field)
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    for (body, what) in [
        (
            json!({"productId": mug, "quantity": "two"}),
            "a mistyped quantity",
        ),
        (
            json!({"productId": mug, "quantity": 1.5}),
            "a fractional quantity",
        ),
        (
            json!({"productId": "not-a-uuid", "quantity": 1}),
            "a malformed product id",
        ),
        (
            json!({"productId": 42, "quantity": 1}),
            "a mistyped product id",
        ),
        (json!({"quantity": 1}), "a missing product id"),
        (json!({"productId": mug}), "a missing quantity"),
        (
            json!({"productId": mug, "quantity": 1, "price": 1}),
            "an unknown line field",
        ),
        (json!("a line"), "a line that is no object"),
    ] {
        line(body)
            .refused(&app, token(&user), 422, "validation-failed", what)
            .await;
    }
    for key in [String::new(), "k".repeat(256), "with space".into()] {
        place
            .clone()
            .header("idempotency-key", key.clone())
            .refused(
                &app,
                token(&user),
                422,
                "validation-failed",
                &format!("key {key:?}"),
            )
            .await;
    }
    place
        .clone()
        .header("idempotency-key", "earlier-order")
        .refused(
            &app,
            token(&user),
            409,
            "idempotency-key-reused",
            "a key used with another body",
        )
        .await;
    let problem = line(json!({"productId": rare, "quantity": 2}))
        .refused(&app, token(&user), 409, "insufficient-stock", "short stock")
        .await;
    assert_eq!(problem["productId"], rare.to_string());
    line(json!({"productId": gone, "quantity": 1}))
        .refused(
            &app,
            token(&user),
            409,
            "product-unavailable",
            "a deleted product",
        )
        .await;

    assert_eq!(look(&app, &views).await, before, "nothing visible changed");
    assert_eq!((app.stock_of(mug).await, app.stock_of(rare).await), (9, 1));
    // The short-stock order exists only as `failed`, listed when asked for.
    let failed = Call::get("/orders?status=failed")
        .expect(&app, token(&user), 200)
        .await;
    assert!(failed["total"].as_i64().unwrap() >= 1, "{failed}");
    assert!(
        failed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "failed"),
        "{failed}"
    );
    app.assert_consistent().await;
}
