//! Payment reports and the administrator's fulfilment transitions.

use std::time::Duration;

use serde_json::{Value, json};
use shop_testkit::{TestApp, wait};

use crate::{
    await_stock, expect_problem, id_of, notifications_of, place_ok, product, report, status_of,
    stream_of,
};

fn event(attempt: i32, outcome: &str, is_final: bool) -> Value {
    let error = (outcome == "failed").then_some("card declined");
    json!({
        "attemptNo": attempt,
        "outcome": outcome,
        "error": error,
        "nextRetryAt": null,
        "final": is_final,
    })
}

#[tokio::test]
async fn paid_orders_ship_and_deliver_and_nothing_else() {
    let mut app = TestApp::spawn().await;
    // These tests report payments themselves.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.set_address(&user).await;
    let admin = app.admin().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let set = |status: &str, bearer: String| {
        app.http
            .put(app.url(&format!("/orders/{id}/status")))
            .header("authorization", bearer)
            .json(&json!({"status": status}))
            .send()
    };
    expect_problem(
        set("shipped", admin.bearer()).await.unwrap(),
        409,
        "illegal-transition",
    )
    .await;

    assert_eq!(
        report(&app, id, event(1, "failed", false)).await.status(),
        200
    );
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            order["payment"]["status"].as_str(),
            order["payment"]["attempts"].as_i64()
        ),
        (Some("processing"), Some(1))
    );
    assert_eq!(order["payment"]["lastError"], "card declined");
    assert_eq!(
        report(&app, id, event(2, "succeeded", true)).await.status(),
        200
    );
    assert_eq!(status_of(&app, id).await, "paid");
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["payment"],
        json!({"status": "succeeded", "attempts": 2}),
        "the success is kept on the order, the earlier error cleared"
    );
    // Repeats get the first answer.
    assert_eq!(
        report(&app, id, event(2, "succeeded", true)).await.status(),
        200
    );

    expect_problem(
        set("shipped", user.bearer()).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        set("delivered", admin.bearer()).await.unwrap(),
        409,
        "illegal-transition",
    )
    .await;
    assert_eq!(set("shipped", admin.bearer()).await.unwrap().status(), 200);
    assert_eq!(
        set("delivered", admin.bearer()).await.unwrap().status(),
        200
    );
    expect_problem(
        set("shipped", admin.bearer()).await.unwrap(),
        409,
        "illegal-transition",
    )
    .await;
    expect_problem(
        set("cancelled", admin.bearer()).await.unwrap(),
        409,
        "illegal-transition",
    )
    .await;
    expect_problem(
        set("lost", admin.bearer()).await.unwrap(),
        422,
        "validation-failed",
    )
    .await;
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(cancel, 409, "illegal-transition").await;

    let events: Vec<String> = notifications_of(&app, id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "order.created",
            "order.paid",
            "order.shipped",
            "order.delivered"
        ]
    );
    assert!(
        notifications_of(&app, id)
            .await
            .iter()
            .all(|e| e["data"].get("cause").is_none()),
        "the happy path does not say why"
    );
    let seqs: Vec<i64> = notifications_of(&app, id)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq grows per order: {seqs:?}"
    );
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_final_failure_fails_the_order_and_releases_the_stock() {
    let mut app = TestApp::spawn().await;
    // These tests report payments themselves.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 4)]).await);
    assert_eq!(
        report(&app, id, event(3, "failed", true)).await.status(),
        200
    );
    assert_eq!(status_of(&app, id).await, "failed");
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["payment"],
        json!({"status": "failed", "attempts": 3, "lastError": "card declined"}),
        "the failure is kept on the order"
    );
    await_stock(&app, mug, 10).await;
    // A late success for the failed order is refused (the payment service refunds it).
    let late = report(&app, id, event(4, "succeeded", true)).await;
    let problem = expect_problem(late, 409, "order-not-pending").await;
    assert_eq!(problem["orderStatus"], "failed");
    assert_eq!(
        report(&app, id, event(4, "refunded", true)).await.status(),
        200
    );
    let timeline: Vec<Value> = app
        .get(&format!("/orders/{id}/timeline"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timeline.last().unwrap()["cause"], "payment_refunded");
    app.assert_consistent().await;
}

#[tokio::test]
async fn only_the_payment_service_reports() {
    let mut app = TestApp::spawn().await;
    // These tests report payments themselves.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let url = format!(
        "http://{}/internal/orders/{id}/payment-events",
        app.addr(shop_testkit::Component::Order)
    );
    let as_order = app
        .http
        .post(&url)
        .header("x-internal-token", app.settings.internal_token())
        .header("x-caller", "order")
        .json(&event(1, "succeeded", true))
        .send()
        .await
        .unwrap();
    expect_problem(as_order, 403, "forbidden").await;
    let public = app
        .post(
            &format!("/internal/orders/{id}/payment-events"),
            &event(1, "succeeded", true),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(public, 404, "not-found").await;
    expect_problem(
        report(&app, uuid::Uuid::now_v7(), event(1, "succeeded", true)).await,
        404,
        "not-found",
    )
    .await;
    assert_eq!(status_of(&app, id).await, "pending");
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn unpaid_orders_time_out_and_release() {
    let mut app = TestApp::builder()
        .configure(|s| {
            s.backoff_retries = 0;
            s.payment_duration = Duration::from_millis(100);
            s.order_payment_timeout = Duration::from_secs(1);
            s.worker_interval = Duration::from_millis(200);
        })
        .spawn()
        .await;
    // Nobody answers payment requests here.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 2)]).await);
    await_stock(&app, mug, 10).await;
    assert_eq!(status_of(&app, id).await, "failed");
    app.assert_consistent().await;
    assert_eq!(
        types(&notifications_of(&app, id).await),
        ["order.created", "order.failed"]
    );
    assert_eq!(
        notifications_of(&app, id).await[1]["data"]["cause"],
        "payment_timeout"
    );
    assert_eq!(
        types(&stream_of(&app, "payments.requests", id).await),
        ["payment.requested", "payment.cancel"]
    );
}

#[tokio::test]
async fn an_unanswered_payment_request_is_sent_again_until_payment_reports() {
    let mut app = TestApp::builder()
        .configure(|s| {
            s.payment_request_resend = Some(Duration::from_secs(1));
            s.worker_interval = Duration::from_millis(200);
        })
        .spawn()
        .await;
    // Nobody answers payment requests here.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let requests = wait::until(
        "the request to be sent again",
        Duration::from_secs(15),
        || async {
            let requests = stream_of(&app, "payments.requests", id).await;
            (requests.len() >= 2).then_some(requests)
        },
    )
    .await;
    assert!(types(&requests).iter().all(|t| t == "payment.requested"));
    assert_eq!(requests[0]["data"], requests[1]["data"], "the same request");
    assert_ne!(requests[0]["id"], requests[1]["id"], "a new event");
    assert_eq!(
        report(&app, id, event(1, "failed", false)).await.status(),
        200
    );
    assert_eq!(status_of(&app, id).await, "pending");
    // The payment service has spoken: no more requests, however long it takes to settle.
    // (A resend written just before the report may still be on its way: let it arrive.)
    wait::until("the outbox to drain", Duration::from_secs(10), || async {
        let unsent: i64 = app
            .db()
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM orders.outbox WHERE aggregate_id = $1 AND sent_at IS NULL",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        (unsent == 0).then_some(())
    })
    .await;
    let sent = stream_of(&app, "payments.requests", id).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stream_of(&app, "payments.requests", id).await.len(),
        sent,
        "three resend periods later, nothing more was sent"
    );
}

/// Reports many payment events in one call, as the payment service's relay does.
async fn report_batch(app: &TestApp, reports: Value) -> reqwest::Response {
    report_batch_request(app, reports).send().await.unwrap()
}

/// The call [`report_batch`] sends, for a test to add to.
fn report_batch_request(app: &TestApp, reports: Value) -> reqwest::RequestBuilder {
    app.http
        .post(format!(
            "http://{}/internal/payment-reports",
            app.addr(shop_testkit::Component::Order)
        ))
        .header("x-internal-token", app.settings.internal_token())
        .header("x-caller", "payment")
        .json(&json!({ "reports": reports }))
}

#[tokio::test]
async fn a_report_batch_answers_each_report_and_keeps_each_orders_order() {
    let mut app = TestApp::spawn().await;
    // This test reports payments itself.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let paid = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let retried = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let cancelled = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let cancel = app
        .post(&format!("/orders/{cancelled}/cancel"), &json!({}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let unknown = uuid::Uuid::now_v7();
    let item = |order: uuid::Uuid, event: Value| json!({"orderId": order, "event": event});
    let batch = json!([
        item(paid, event(1, "succeeded", true)),
        // One order's reports in the order they happened: a failed attempt, then a success.
        item(retried, event(1, "failed", false)),
        item(retried, event(2, "succeeded", true)),
        // The order was cancelled: refused, so the payment service refunds.
        item(cancelled, event(1, "succeeded", true)),
        item(unknown, event(1, "succeeded", true)),
        // A repeat within the batch gets the first answer.
        item(paid, event(1, "succeeded", true)),
    ]);
    let answered = report_batch(&app, batch.clone()).await;
    assert_eq!(answered.status(), 200);
    let body: Value = answered.json().await.unwrap();
    let answers: Vec<(u64, Value)> = body["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["status"].as_u64().unwrap(), a["orderStatus"].clone()))
        .collect();
    assert_eq!(
        answers,
        [
            (200, json!("paid")),
            (200, json!("pending")),
            (200, json!("paid")),
            (409, json!("cancelled")),
            (404, Value::Null),
            (200, json!("paid")),
        ]
    );
    assert_eq!(status_of(&app, paid).await, "paid");
    assert_eq!(status_of(&app, retried).await, "paid");
    assert_eq!(status_of(&app, cancelled).await, "cancelled");
    assert_eq!(
        types(&notifications_of(&app, retried).await),
        ["order.created", "order.paid"],
        "one order.paid, after the failed attempt"
    );

    // The whole batch again (a relay whose answer was lost): the same answers (with the
    // orders' statuses as they are now), nothing new.
    let again: Value = report_batch(&app, batch).await.json().await.unwrap();
    let codes = |body: &Value| -> Vec<u64> {
        body["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(codes(&again), codes(&body));
    assert_eq!(again["answers"][1]["orderStatus"], "paid");
    assert_eq!(
        types(&notifications_of(&app, paid).await),
        ["order.created", "order.paid"]
    );
    // A report that does not validate refuses the whole batch and records nothing.
    let invalid = report_batch(
        &app,
        json!([
            item(cancelled, event(2, "refunded", true)),
            item(paid, event(0, "failed", true))
        ]),
    )
    .await;
    let problem = expect_problem(invalid, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "reports[1].event.attemptNo");
    let timeline: Vec<Value> = app
        .get(&format!("/orders/{cancelled}/timeline"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(timeline.last().unwrap()["cause"], "payment_refunded");
    app.assert_consistent().await;
}

#[tokio::test]
async fn each_report_of_a_batch_is_recorded_in_its_own_payments_trace() {
    let mut app = TestApp::spawn().await;
    // This test reports payments itself.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    let orders = [
        id_of(&place_ok(&app, &user, &[(mug, 1)]).await),
        id_of(&place_ok(&app, &user, &[(mug, 1)]).await),
    ];
    let traces = [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c",
    ];
    let batch: Vec<Value> = orders
        .iter()
        .zip(traces)
        .map(|(order, trace)| {
            json!({
                "orderId": order,
                "event": event(1, "succeeded", true),
                "traceparent": format!("00-{trace}-00f067aa0ba902b7-01"),
            })
        })
        .collect();
    // The batch's own request is in a third trace, as the relay's call would be.
    let answered = report_batch_request(&app, Value::Array(batch))
        .header(
            "traceparent",
            "00-11111111111111111111111111111111-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);

    for (order, trace) in orders.into_iter().zip(traces) {
        let paid = wait::until("order.paid published", Duration::from_secs(20), || async {
            notifications_of(&app, order)
                .await
                .into_iter()
                .find(|e| e["type"] == "order.paid")
        })
        .await;
        let traceparent = paid["traceparent"].as_str().unwrap_or_default();
        assert_eq!(
            traceparent.split('-').nth(1),
            Some(trace),
            "order.paid of {order} is in its payment's trace: {traceparent:?}"
        );
    }
}
