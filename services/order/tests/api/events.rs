//! Published entries match the JSON Schemas checked in under proto-docs/events/.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use shop_testkit::TestApp;

use crate::{id_of, place_ok, product, report, report_refunds, stream_ids, stream_of};

fn schema_for(kind: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/../../proto-docs/events/{kind}.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no schema {path}")),
    )
    .unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[tokio::test]
async fn every_published_event_matches_its_schema() {
    let mut app = TestApp::spawn().await;
    // These tests report payments themselves.
    app.stop(shop_testkit::Component::Payment).await;
    let mug = product(&app, "Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.set_address(&user).await;
    let admin = app.admin().await;

    let shipped = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let paid = json!({"attemptNo": 1, "outcome": "succeeded", "error": null, "nextRetryAt": null, "final": true});
    assert_eq!(report(&app, shipped, paid).await.status(), 200);
    let tracked = json!({"status": "shipped", "carrier": "La Poste", "trackingNumber": "6A123"});
    for body in [tracked, json!({"status": "delivered"})] {
        let response = app
            .http
            .put(app.url(&format!("/orders/{shipped}/status")))
            .header("authorization", admin.bearer())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let cancelled = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let cancel = app
        .http
        .post(app.url(&format!("/orders/{cancelled}/cancel")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let failed = id_of(&place_ok(&app, &user, &[(mug, 1)]).await);
    let declined = json!({"attemptNo": 1, "outcome": "failed", "error": "card declined", "nextRetryAt": null, "final": true});
    assert_eq!(report(&app, failed, declined).await.status(), 200);
    app.assert_consistent().await;
    // Refunded in full: payment.refund to the payment service (stopped here: the report is
    // this test's), whose report ends the order.
    let refund: Value = app
        .http
        .post(app.url(&format!("/orders/{shipped}/refunds")))
        .header("authorization", admin.bearer())
        .json(&json!({"amountCents": 1250, "reason": "damaged in transit"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = json!([{"orderId": shipped, "refundId": refund["id"], "outcome": "succeeded"}]);
    assert_eq!(
        report_refunds(&app, done).await["refunds"][0]["status"],
        200
    );
    app.await_outboxes_drained().await;

    let mut seen = BTreeSet::new();
    for order in [shipped, cancelled, failed] {
        for stream in ["notifications", "payments.requests"] {
            for event in stream_of(&app, stream, order).await {
                let kind = event["type"].as_str().unwrap().to_owned();
                let errors: Vec<String> = schema_for(&kind)
                    .iter_errors(&event)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{kind} does not match its schema: {errors:?}\n{event}"
                );
                seen.insert(kind);
            }
        }
    }
    let expected: BTreeSet<String> = [
        "order.cancelled",
        "order.created",
        "order.delivered",
        "order.failed",
        "order.paid",
        "order.refunded",
        "order.shipped",
        "payment.cancel",
        "payment.refund",
        "payment.requested",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(seen, expected, "every published type was exercised");

    // The user's own stream carries the same entries with the same ids.
    let global = stream_ids(&app, "notifications").await;
    let own = stream_ids(&app, &format!("notifications:user:{}", user.id)).await;
    assert_eq!(own, global, "all notifications here are this user's");
}
