//! After the sale, through the gateway: shipping addresses, shipping with tracking, and refunds
//! that never exceed what was captured.

use std::time::Duration;

use reqwest::Response;
use serde_json::{Value, json};
use shop_testkit::{Component, TestApp, TestUser, sample_address, wait};
use uuid::Uuid;

use crate::{expect_problem, scenarios::fast_payments};

const DEADLINE: Duration = Duration::from_secs(20);

async fn json_of(response: Response) -> Value {
    response.json().await.unwrap()
}

fn id(value: &Value) -> Uuid {
    value["id"].as_str().unwrap().parse().unwrap()
}

async fn put_address(app: &TestApp, user: &TestUser, address: &Value) -> Response {
    app.http
        .put(app.url("/me/address"))
        .header("authorization", user.bearer())
        .json(address)
        .send()
        .await
        .unwrap()
}

async fn place(app: &TestApp, user: &TestUser, body: Value) -> Response {
    app.post("/orders", &body)
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
}

/// An order of `quantity` of `product` with the sample address, paid.
async fn paid_order(app: &TestApp, user: &TestUser, product: Uuid, quantity: i64) -> Uuid {
    let response = place(
        app,
        user,
        json!({
            "items": [{"productId": product, "quantity": quantity}],
            "shippingAddress": sample_address(),
        }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let order = id(&json_of(response).await);
    app.await_order_status(order, "paid", DEADLINE).await;
    order
}

async fn refund(
    app: &TestApp,
    admin: &TestUser,
    order: Uuid,
    body: Value,
    key: Option<&str>,
) -> Response {
    let mut request = app
        .post(&format!("/orders/{order}/refunds"), &body)
        .header("authorization", admin.bearer());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

async fn get(app: &TestApp, who: &TestUser, path: &str) -> Value {
    let response = app
        .get(path)
        .header("authorization", who.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// Waits until every refund of `order` has left `pending`; the list then.
async fn settled_refunds(app: &TestApp, who: &TestUser, order: Uuid) -> Value {
    wait::until("every refund settled", DEADLINE, || async {
        let list = get(app, who, &format!("/orders/{order}/refunds")).await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "pending")
            .then_some(list)
    })
    .await
}

#[tokio::test]
async fn addresses_are_checked_field_by_field_and_the_default_is_used() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    expect_problem(
        app.get("/me/address")
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
        404,
        "not-found",
    )
    .await;

    let mut bad = sample_address();
    bad["country"] = json!("France");
    bad["postalCode"] = json!("69003!");
    bad["line1"] = json!(" ");
    let problem = expect_problem(
        put_address(&app, &user, &bad).await,
        422,
        "validation-failed",
    )
    .await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["country", "line1", "postalCode"]);
    let mut unknown = sample_address();
    unknown["floor"] = json!(3);
    expect_problem(
        put_address(&app, &user, &unknown).await,
        422,
        "validation-failed",
    )
    .await;

    // An order with a bad address is refused whole, with every problem, and makes nothing.
    let problem = expect_problem(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 0}], "shippingAddress": bad}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"items[0].quantity"), "{fields:?}");
    assert!(fields.contains(&"shippingAddress.country"), "{fields:?}");
    assert_eq!(get(&app, &user, "/orders").await["total"], 0);
    assert_eq!(app.stock_of(mug).await, 10);

    // Without an address and without a default, an order has none.
    let bare = json_of(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 1}]}),
        )
        .await,
    )
    .await;
    assert_eq!(bare["shippingAddress"], Value::Null);

    // The default is kept and used; an order's own address wins over it.
    let mut home = sample_address();
    home["line2"] = json!("3rd floor");
    assert_eq!(put_address(&app, &user, &home).await.status(), 200);
    assert_eq!(get(&app, &user, "/me/address").await, home);
    let defaulted = json_of(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 1}]}),
        )
        .await,
    )
    .await;
    assert_eq!(defaulted["shippingAddress"], home);
    let mut office = sample_address();
    office["city"] = json!("Paris");
    office["postalCode"] = json!("75002");
    let elsewhere = json_of(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 1}], "shippingAddress": office}),
        )
        .await,
    )
    .await;
    assert_eq!(elsewhere["shippingAddress"], office);

    // Checkout takes an optional body with the address; a bad one is 422 and keeps the cart.
    let put_line = app
        .http
        .put(app.url(&format!("/cart/items/{mug}")))
        .header("authorization", user.bearer())
        .json(&json!({"quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(put_line.status(), 200);
    let checkout = |body: Option<Value>| {
        let mut request = app
            .http
            .post(app.url("/cart/checkout"))
            .header("authorization", user.bearer());
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let problem = expect_problem(
        checkout(Some(json!({"shippingAddress": bad})))
            .await
            .unwrap(),
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "shippingAddress.line1");
    let cart = get(&app, &user, "/cart").await;
    assert_eq!(cart["items"][0]["quantity"], 2, "the cart is kept: {cart}");
    let checked_out = checkout(Some(json!({"shippingAddress": office})))
        .await
        .unwrap();
    assert_eq!(checked_out.status(), 201);
    assert_eq!(json_of(checked_out).await["shippingAddress"], office);
    // And with no body at all, as before: the default address.
    assert_eq!(
        app.http
            .put(app.url(&format!("/cart/items/{mug}")))
            .header("authorization", user.bearer())
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let plain = checkout(None).await.unwrap();
    assert_eq!(plain.status(), 201);
    assert_eq!(json_of(plain).await["shippingAddress"], home);
    app.assert_consistent().await;
}

#[tokio::test]
async fn shipping_needs_an_address_and_shows_its_tracking() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let (user, admin) = (app.new_user().await, app.admin().await);
    let ship = |order: Uuid, body: Value| {
        app.http
            .put(app.url(&format!("/orders/{order}/status")))
            .header("authorization", admin.bearer())
            .json(&body)
            .send()
    };

    let response = place(
        &app,
        &user,
        json!({"items": [{"productId": mug, "quantity": 1}]}),
    )
    .await;
    let nowhere = id(&json_of(response).await);
    app.await_order_status(nowhere, "paid", DEADLINE).await;
    expect_problem(
        ship(nowhere, json!({"status": "shipped"})).await.unwrap(),
        409,
        "address-required",
    )
    .await;
    assert_eq!(app.order_status(nowhere).await, "paid", "nothing changed");

    let order = paid_order(&app, &user, mug, 1).await;
    for (body, field) in [
        (json!({"status": "shipped", "carrier": ""}), Some("carrier")),
        (
            json!({"status": "shipped", "trackingNumber": "x".repeat(101)}),
            Some("trackingNumber"),
        ),
        (json!({"status": "shipped", "parcel": 1}), None),
    ] {
        let problem =
            expect_problem(ship(order, body).await.unwrap(), 422, "validation-failed").await;
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field);
        }
    }
    expect_problem(
        ship(order, json!({"status": "delivered", "carrier": "La Poste"}))
            .await
            .unwrap(),
        409,
        "illegal-transition",
    )
    .await;
    let shipped = json_of(
        ship(
            order,
            json!({"status": "shipped", "carrier": "La Poste", "trackingNumber": "6A123"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["shipment"]["carrier"], "La Poste");
    assert_eq!(shipped["shipment"]["trackingNumber"], "6A123");
    let seen = get(&app, &user, &format!("/orders/{order}")).await;
    assert_eq!(seen["shipment"], shipped["shipment"]);
    assert_eq!(seen["shippingAddress"], sample_address());
    app.await_outboxes_drained().await;
    let events = app.events_of("notifications", order).await;
    let event = events
        .iter()
        .find(|e| e["type"] == "order.shipped")
        .expect("order.shipped");
    assert_eq!(
        (&event["data"]["carrier"], &event["data"]["trackingNumber"]),
        (&json!("La Poste"), &json!("6A123"))
    );
    app.assert_consistent().await;
}

#[tokio::test]
async fn partial_refunds_add_up_to_a_refunded_order_once_each() {
    let app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let (user, admin) = (app.new_user().await, app.admin().await);
    let order = paid_order(&app, &user, mug, 2).await;

    let first = refund(
        &app,
        &admin,
        order,
        json!({"amountCents": 1000, "reason": "one mug arrived chipped"}),
        Some("refund-1"),
    )
    .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().contains_key("location"));
    let first = json_of(first).await;
    assert_eq!(
        (&first["status"], &first["amountCents"], &first["orderId"]),
        (&json!("pending"), &json!(1000), &json!(order))
    );
    // The same key and body: the first answer, nothing more refunded.
    let again = refund(
        &app,
        &admin,
        order,
        json!({"amountCents": 1000, "reason": "one mug arrived chipped"}),
        Some("refund-1"),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(json_of(again).await["id"], first["id"]);
    // The same key with another body: refused.
    expect_problem(
        refund(
            &app,
            &admin,
            order,
            json!({"amountCents": 900, "reason": "one mug arrived chipped"}),
            Some("refund-1"),
        )
        .await,
        409,
        "idempotency-key-reused",
    )
    .await;
    let list = settled_refunds(&app, &admin, order).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["status"], "succeeded");
    assert_eq!(
        (
            &list["capturedCents"],
            &list["refundedCents"],
            &list["refundableCents"]
        ),
        (&json!(2500), &json!(1000), &json!(1500))
    );
    let partial = get(&app, &user, &format!("/orders/{order}")).await;
    assert_eq!(
        (&partial["status"], &partial["refundedCents"]),
        (&json!("paid"), &json!(1000))
    );

    // More than is left: refused with what is left.
    let problem = expect_problem(
        refund(
            &app,
            &admin,
            order,
            json!({"amountCents": 1501, "reason": "too much"}),
            None,
        )
        .await,
        409,
        "refund-exceeds-captured",
    )
    .await;
    assert_eq!(problem["refundableCents"], 1500);
    // Bad bodies and callers.
    for body in [
        json!({"amountCents": 0, "reason": "nothing"}),
        json!({"amountCents": 10, "reason": ""}),
        json!({"amountCents": 10}),
    ] {
        expect_problem(
            refund(&app, &admin, order, body, None).await,
            422,
            "validation-failed",
        )
        .await;
    }
    expect_problem(
        refund(
            &app,
            &user,
            order,
            json!({"amountCents": 10, "reason": "mine"}),
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        refund(
            &app,
            &admin,
            Uuid::now_v7(),
            json!({"amountCents": 10, "reason": "whose?"}),
            None,
        )
        .await,
        404,
        "not-found",
    )
    .await;

    // The rest: the order is refunded, and so is its payment.
    let rest = refund(
        &app,
        &admin,
        order,
        json!({"amountCents": 1500, "reason": "the other one too"}),
        None,
    )
    .await;
    assert_eq!(rest.status(), 201);
    app.await_order_status(order, "refunded", DEADLINE).await;
    let list = settled_refunds(&app, &user, order).await;
    assert_eq!(
        (&list["refundedCents"], &list["refundableCents"]),
        (&json!(2500), &json!(0))
    );
    let done = get(&app, &user, &format!("/orders/{order}")).await;
    assert_eq!(
        (&done["status"], &done["refundedCents"]),
        (&json!("refunded"), &json!(2500))
    );
    let payment = get(&app, &user, &format!("/orders/{order}/payment")).await;
    assert_eq!(payment["status"], "refunded");
    let carried_out: Vec<(&Value, &Value, &Value)> = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["id"], &r["amountCents"], &r["status"]))
        .collect();
    assert_eq!(
        carried_out,
        [
            (&first["id"], &json!(1000), &json!("succeeded")),
            (&list["items"][1]["id"], &json!(1500), &json!("succeeded"))
        ],
        "the payment service shows the same refunds"
    );
    expect_problem(
        refund(
            &app,
            &admin,
            order,
            json!({"amountCents": 1, "reason": "once more"}),
            None,
        )
        .await,
        409,
        "refund-exceeds-captured",
    )
    .await;
    let causes: Vec<(String, String)> = get(&app, &user, &format!("/orders/{order}/timeline"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_owned(),
                e["cause"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        causes[causes.len() - 2..],
        [
            ("paid".to_owned(), "partially_refunded".to_owned()),
            ("refunded".to_owned(), "refunded".to_owned())
        ]
    );

    // Each refund is announced once, with its id, and mailed once; the order's end too.
    app.await_outboxes_drained().await;
    let events = app.events_of("notifications", order).await;
    let refunded: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "payment.refunded")
        .collect();
    assert_eq!(refunded.len(), 2);
    assert_eq!(refunded[0]["data"]["refundId"], first["id"]);
    assert_eq!(refunded[0]["data"]["amountCents"], 1000);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "order.refunded")
            .count(),
        1
    );
    app.smtp.wait_for(&user.email, "refund").await;
    wait::until("both refund mails", DEADLINE, || async {
        let mails: Vec<String> = app
            .smtp
            .messages_to(&user.email)
            .iter()
            .filter(|m| m.subject().contains("refund"))
            .map(|m| m.text())
            .collect();
        (mails.len() == 2).then_some(mails)
    })
    .await;
    app.assert_consistent().await;
}

async fn goodwill(app: &TestApp, admin: &TestUser, order: Uuid) -> Response {
    refund(
        app,
        admin,
        order,
        json!({"amountCents": 100, "reason": "goodwill"}),
        None,
    )
    .await
}

#[tokio::test]
async fn only_captured_money_is_refunded() {
    let mut app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 2).await;
    let (user, admin) = (app.new_user().await, app.admin().await);

    // Failed (short stock): nothing was captured.
    expect_problem(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 3}]}),
        )
        .await,
        409,
        "insufficient-stock",
    )
    .await;
    let failed = get(&app, &user, "/orders?status=failed").await;
    let failed = id(&failed["items"][0]);
    expect_problem(
        goodwill(&app, &admin, failed).await,
        409,
        "illegal-transition",
    )
    .await;

    // Pending (no payment service) and cancelled: nothing captured either.
    app.stop(Component::Payment).await;
    let pending = id(&json_of(
        place(
            &app,
            &user,
            json!({"items": [{"productId": mug, "quantity": 1}]}),
        )
        .await,
    )
    .await);
    expect_problem(
        goodwill(&app, &admin, pending).await,
        409,
        "illegal-transition",
    )
    .await;
    let cancel = app
        .post(&format!("/orders/{pending}/cancel"), &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    expect_problem(
        goodwill(&app, &admin, pending).await,
        409,
        "illegal-transition",
    )
    .await;
    let list = get(&app, &user, &format!("/orders/{pending}/refunds")).await;
    assert_eq!(
        (&list["items"], &list["capturedCents"]),
        (&json!([]), &json!(0))
    );
    app.start(Component::Payment).await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_refund_accepted_while_the_payment_service_is_away_completes_when_it_returns() {
    let mut app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let (user, admin) = (app.new_user().await, app.admin().await);
    let order = paid_order(&app, &user, mug, 1).await;
    app.stop(Component::Payment).await;
    let accepted = refund(
        &app,
        &admin,
        order,
        json!({"amountCents": 1250, "reason": "never arrived"}),
        None,
    )
    .await;
    assert_eq!(accepted.status(), 201);
    // Nobody carries it out meanwhile; the money is spoken for.
    let list = get(&app, &admin, &format!("/orders/{order}/refunds")).await;
    assert_eq!(list["items"][0]["status"], "pending");
    assert_eq!(list["refundableCents"], 0);
    assert_eq!(app.order_status(order).await, "paid");
    app.start(Component::Payment).await;
    app.await_order_status(order, "refunded", DEADLINE).await;
    let list = settled_refunds(&app, &admin, order).await;
    assert_eq!(list["items"][0]["status"], "succeeded");
    app.assert_consistent().await;
}

pub mod heavy {
    //! Refunds racing for the same captured money.

    use super::*;

    #[tokio::test]
    async fn twenty_concurrent_partial_refunds_never_exceed_the_capture() {
        let app = TestApp::builder().configure(fast_payments).spawn().await;
        let mug = app.create_product("Mug", 1000, 20).await;
        let (user, admin) = (app.new_user().await, app.admin().await);
        let order = paid_order(&app, &user, mug, 10).await;
        // 20 × 700 = 14000 asked of 10000 captured: 14 fit (9800), 6 cannot.
        let answers = futures_util::future::join_all((0..20).map(|i| {
            let (app, admin) = (&app, &admin);
            async move {
                let response = refund(
                    app,
                    admin,
                    order,
                    json!({"amountCents": 700, "reason": format!("goodwill {i}")}),
                    None,
                )
                .await;
                let status = response.status().as_u16();
                let body = json_of(response).await;
                (status, body)
            }
        }))
        .await;
        let accepted: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == 201)
            .map(|(_, body)| body)
            .collect();
        let refused: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == 409)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(accepted.len() + refused.len(), 20, "{answers:?}");
        assert!(
            refused
                .iter()
                .all(|p| p["code"] == "refund-exceeds-captured"),
            "{refused:?}"
        );
        let accepted_cents: i64 = accepted
            .iter()
            .map(|r| r["amountCents"].as_i64().unwrap())
            .sum();
        assert!(accepted_cents <= 10_000, "{accepted_cents}");
        assert_eq!(accepted.len(), 14, "as many as fit are accepted");

        let list = settled_refunds(&app, &admin, order).await;
        assert!(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "succeeded")
        );
        assert_eq!(list["refundedCents"], accepted_cents);
        assert_eq!(list["refundableCents"], 10_000 - accepted_cents);
        let seen = get(&app, &user, &format!("/orders/{order}")).await;
        assert_eq!(seen["refundedCents"], accepted_cents);
        assert_eq!(seen["status"], "paid", "200 cents are still captured");
        // The payment service agrees to the cent.
        let client = app.db().client().await;
        let carried_out: i64 = client
            .query_one(
                "SELECT coalesce(sum(r.amount_cents), 0)::bigint FROM payments.refunds r \
                 JOIN payments.payments p ON p.id = r.payment_id \
                 WHERE p.order_id = $1 AND r.status = 'succeeded'",
                &[&order],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(carried_out, accepted_cents);
        // The counts as run, for the record (shown with `--no-capture`).
        #[allow(clippy::print_stdout)]
        {
            println!(
                "20 concurrent refunds of 700 on 10000 captured: {} accepted ({accepted_cents}), {} refused",
                accepted.len(),
                refused.len()
            );
        }
        app.assert_consistent().await;
    }
}
