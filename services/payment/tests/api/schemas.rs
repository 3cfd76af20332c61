//! Published payment entries match the JSON Schemas under proto-docs/events/.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use shop_testkit::TestApp;

use crate::{order, payments};

fn validator(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/../../proto-docs/events/{name}.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn assert_valid(name: &str, instance: &Value) {
    let errors: Vec<String> = validator(name)
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance}");
}

#[tokio::test]
async fn payment_notifications_and_dead_letters_match_their_schemas() {
    let app = TestApp::builder()
        .configure(|s| {
            payments(50, 3)(s);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 100).await;
    let user = app.new_user().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(order(&app, &user, mug, 1).await);
    }
    for id in &ids {
        shop_testkit::wait::until("a final order", Duration::from_secs(30), || async {
            let status = app.order_status(*id).await;
            (status == "paid" || status == "failed").then_some(())
        })
        .await;
    }
    app.assert_consistent().await;
    let mut seen = BTreeSet::new();
    for (_, event) in app.stream_entries("notifications").await {
        let kind = event["type"].as_str().unwrap().to_owned();
        if kind.starts_with("payment.") {
            assert_valid(&kind, &event);
            seen.insert(kind);
        }
    }
    assert!(
        seen.contains("payment.attempt_failed") && seen.contains("payment.succeeded"),
        "{seen:?}"
    );

    // A dead letter, as operators will read it.
    let redis = shop_redis::RedisPool::with_url(
        app.redis_direct_url(),
        app.redis_prefix(),
        1,
        Duration::from_secs(2),
    )
    .unwrap();
    let mut conn = redis.get().await.unwrap();
    let _: String = shop_redis::redis::cmd("XADD")
        .arg(redis.key("payments.requests"))
        .arg("*")
        .arg("event")
        .arg("junk")
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let dead = shop_testkit::wait::until("the dead letter", Duration::from_secs(20), || async {
        let reply: shop_redis::redis::streams::StreamRangeReply = shop_redis::redis::cmd("XRANGE")
            .arg(redis.key("payments.dead"))
            .arg("-")
            .arg("+")
            .query_async(&mut *redis.get().await.unwrap())
            .await
            .unwrap();
        reply.ids.into_iter().next()
    })
    .await;
    let entry: serde_json::Map<String, Value> = ["reason", "source_id", "event"]
        .iter()
        .map(|field| {
            (
                (*field).to_owned(),
                Value::String(dead.get::<String>(field).unwrap_or_default()),
            )
        })
        .collect();
    assert_valid("payments.dead", &Value::Object(entry));
}
