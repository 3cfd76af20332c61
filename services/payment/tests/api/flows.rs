//! Payments as an order's owner experiences them.

use std::time::Duration;

use serde_json::Value;
use shop_testkit::{TestApp, wait};

use crate::{await_attempts, notification_types, order, payment_of, payments};

#[tokio::test]
async fn an_order_is_paid_and_shows_its_payment() {
    let app = TestApp::builder().configure(payments(0, 2)).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = order(&app, &user, mug, 2).await;
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;

    let payment: Value = payment_of(&app, &user, id).await.json().await.unwrap();
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["amountCents"], 2500);
    let attempts = payment["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "succeeded");
    assert_eq!(
        attempts[0]["idempotencyKey"],
        format!("{}:1", payment["id"].as_str().unwrap())
    );
    wait::until(
        "the report to be accepted",
        Duration::from_secs(10),
        || async {
            let payment: Value = payment_of(&app, &user, id).await.json().await.unwrap();
            (!payment["attempts"][0]["reportedAt"].is_null()).then_some(())
        },
    )
    .await;

    let stranger = app.new_user().await;
    assert_eq!(payment_of(&app, &stranger, id).await.status(), 404);
    let admin = app.admin().await;
    assert_eq!(payment_of(&app, &admin, id).await.status(), 200);
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["payment"]["status"], "succeeded");

    app.assert_consistent().await;
    let types = notification_types(&app, id).await;
    assert!(types.contains(&"payment.succeeded".to_owned()), "{types:?}");
    assert_eq!(
        types
            .iter()
            .filter(|t| t.starts_with("order."))
            .collect::<Vec<_>>(),
        ["order.created", "order.paid"]
    );
}

#[tokio::test]
async fn failing_payments_retry_then_fail_and_stock_comes_back() {
    let app = TestApp::builder().configure(payments(100, 2)).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = order(&app, &user, mug, 3).await;
    app.await_order_status(id, "failed", Duration::from_secs(20))
        .await;
    let payment = await_attempts(&app, &user, id, 3).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(
        payment["attempts"].as_array().unwrap().len(),
        3,
        "one attempt and two retries"
    );
    app.assert_consistent().await;
    assert_eq!(app.stock_of(mug).await, 10);

    let events = app.events_of("notifications", id).await;
    let failed_attempts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "payment.attempt_failed")
        .collect();
    assert_eq!(failed_attempts.len(), 3);
    assert!(!failed_attempts[0]["data"]["nextRetryAt"].is_null());
    assert!(
        failed_attempts[2]["data"]["nextRetryAt"].is_null(),
        "the last has no next attempt"
    );
    let types = notification_types(&app, id).await;
    let after_last_attempt: Vec<&String> = types
        .iter()
        .skip_while(|t| *t != "payment.failed")
        .collect();
    assert!(
        after_last_attempt.contains(&&"order.failed".to_owned()),
        "{types:?}"
    );
}

#[tokio::test]
async fn a_cancel_stops_the_retries() {
    let app = TestApp::builder()
        .configure(|s| {
            payments(100, 10)(s);
            s.backoff_delay = Duration::from_millis(100);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = order(&app, &user, mug, 1).await;
    await_attempts(&app, &user, id, 1).await;
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let cancelled = wait::until(
        "the payment to be cancelled",
        Duration::from_secs(20),
        || async {
            let payment: Value = payment_of(&app, &user, id).await.json().await.unwrap();
            (payment["status"] == "cancelled").then_some(payment)
        },
    )
    .await;
    let attempts = cancelled["attempts"].as_array().unwrap().len();
    // A sentinel payment placed afterwards makes three attempts: enough retry periods pass.
    let sentinel = order(&app, &user, mug, 1).await;
    await_attempts(&app, &user, sentinel, 3).await;
    let later: Value = payment_of(&app, &user, id).await.json().await.unwrap();
    assert_eq!(
        later["attempts"].as_array().unwrap().len(),
        attempts,
        "no attempt after the cancel"
    );
    assert_eq!(later["status"], "cancelled");
}

#[tokio::test]
async fn a_success_racing_a_cancel_is_refunded_never_paid() {
    let mut app = TestApp::builder().configure(payments(0, 0)).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.stop(shop_testkit::Component::Payment).await;
    let id = order(&app, &user, mug, 2).await;
    wait::until(
        "the request on the stream",
        Duration::from_secs(20),
        || async { (!app.events_of("payments.requests", id).await.is_empty()).then_some(()) },
    )
    .await;
    // The order service goes away; the payment succeeds but cannot report it yet.
    app.stop(shop_testkit::Component::Order).await;
    app.start(shop_testkit::Component::Payment).await;
    let client = app.db().client().await;
    wait::until("the success to be recorded, unreported", Duration::from_secs(20), || async {
        let row = client
            .query_opt(
                "SELECT o.attempts FROM payments.payments p JOIN payments.outbox o ON o.aggregate_id = p.order_id \
                 WHERE p.order_id = $1 AND p.status = 'succeeded' AND o.kind = 'command' AND o.sent_at IS NULL AND o.attempts >= 2",
                &[&id],
            )
            .await
            .unwrap();
        row.map(|_| ())
    })
    .await;
    // Back, the owner cancels before the report's next retry lands.
    app.start(shop_testkit::Component::Order).await;
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let refunded = wait::until("the refund", Duration::from_secs(30), || async {
        let payment: Value = payment_of(&app, &user, id).await.json().await.unwrap();
        (payment["status"] == "refunded").then_some(payment)
    })
    .await;
    let outcomes: Vec<&str> = refunded["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["succeeded", "refunded"]);
    app.assert_consistent().await;
    assert_eq!(app.order_status(id).await, "cancelled", "never paid");
    assert_eq!(app.stock_of(mug).await, 10);
    let types = notification_types(&app, id).await;
    assert!(
        types.contains(&"payment.refunded".to_owned()) && !types.contains(&"order.paid".to_owned()),
        "{types:?}"
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
}

#[tokio::test]
async fn one_trace_follows_an_order_from_request_to_payment_to_notification() {
    // A failed attempt first, so the trace has to survive a retry too.
    let app = TestApp::builder().configure(payments(50, 6)).spawn().await;
    let lamp = app.create_product("Lamp", 900, 5).await;
    let user = app.new_user().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let placed = app
        .post(
            "/orders",
            &serde_json::json!({"items": [{"productId": lamp, "quantity": 1}]}),
        )
        .header("authorization", user.bearer())
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id: uuid::Uuid = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ended = wait::until("the order to end", Duration::from_secs(30), || async {
        let status = app.order_status(id).await;
        matches!(status.as_str(), "paid" | "failed").then_some(status)
    })
    .await;
    app.await_outboxes_drained().await;

    // Every event of the journey, whichever service wrote it, carries the request's trace:
    // the order's (placed, paid or failed), the payment's attempts, and the payment request.
    let mut events = app.events_of("notifications", id).await;
    events.extend(app.events_of("payments.requests", id).await);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"payment.requested"), "{kinds:?}");
    assert!(
        kinds.contains(&format!("order.{ended}").as_str()),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| k.starts_with("payment.") && *k != "payment.requested"),
        "{kinds:?}"
    );
    for event in &events {
        let traceparent = event["traceparent"].as_str().unwrap_or_default();
        assert_eq!(
            traceparent.split('-').nth(1),
            Some(trace_id),
            "{} lost the trace: {traceparent:?}",
            event["type"]
        );
    }
}
