//! The payments.requests stream under duplicates, poison, dead consumers and data loss.

use std::time::Duration;

use shop_redis::{RedisPool, redis};
use shop_testkit::{Component, PrivateRedis, TestApp, wait};

use crate::{order, payments, payments_for};

/// Waits until the order's payment request is on `payments.requests`.
async fn on_the_stream(app: &TestApp, order: uuid::Uuid) {
    wait::until(
        "the request on the stream",
        Duration::from_secs(20),
        || async { (!app.events_of("payments.requests", order).await.is_empty()).then_some(()) },
    )
    .await;
}

fn redis_of(app: &TestApp) -> RedisPool {
    RedisPool::with_url(
        app.redis_direct_url(),
        app.redis_prefix(),
        1,
        Duration::from_secs(2),
    )
    .unwrap()
}

#[tokio::test]
async fn a_request_delivered_twice_makes_one_payment() {
    let app = TestApp::builder().configure(payments(0, 0)).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = order(&app, &user, mug, 1).await;
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;

    let (_, request) = app
        .stream_entries("payments.requests")
        .await
        .into_iter()
        .find(|(_, e)| e["orderId"] == id.to_string())
        .unwrap();
    let redis = redis_of(&app);
    let mut conn = redis.get().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(redis.key("payments.requests"))
        .arg("*")
        .arg("event")
        .arg(request.to_string())
        .query_async(&mut *conn)
        .await
        .unwrap();
    // A sentinel order placed after the copy is paid only once the copy was consumed.
    let sentinel = order(&app, &user, mug, 1).await;
    app.await_order_status(sentinel, "paid", Duration::from_secs(20))
        .await;
    assert_eq!(payments_for(&app, id).await, 1);
    assert_eq!(app.order_status(id).await, "paid");
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_poison_entry_goes_to_the_dead_letters_and_the_rest_flows() {
    let app = TestApp::builder().configure(payments(0, 0)).spawn().await;
    let redis = redis_of(&app);
    let mut conn = redis.get().await.unwrap();
    for junk in [
        "not json",
        r#"{"v":1,"type":"payment.requested","data":{}}"#,
    ] {
        let _: String = redis::cmd("XADD")
            .arg(redis.key("payments.requests"))
            .arg("*")
            .arg("event")
            .arg(junk)
            .query_async(&mut *conn)
            .await
            .unwrap();
    }
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let id = order(&app, &user, mug, 1).await;
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;
    let dead = app.stream_entries("payments.dead").await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reasons: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(redis.key("payments.dead"))
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .unwrap();
    for entry in reasons.ids {
        let reason: String = entry.get("reason").unwrap();
        assert!(reason.contains("unparseable"), "{reason}");
    }
}

#[tokio::test]
async fn entries_a_dead_consumer_held_are_reclaimed() {
    let mut app = TestApp::builder()
        .configure(|s| {
            payments(0, 0)(s);
            s.payment_reclaim_idle = Duration::from_millis(500);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    // The group exists (the payment service made it); now that service is gone.
    app.stop(Component::Payment).await;
    let id = order(&app, &user, mug, 1).await;
    let redis = redis_of(&app);
    let mut conn = redis.get().await.unwrap();
    let stream = redis.key("payments.requests");
    on_the_stream(&app, id).await;
    // Another consumer reads it and dies without acknowledging.
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("payments")
        .arg("doomed-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(read.keys.iter().map(|k| k.ids.len()).sum::<usize>(), 1);

    app.start(Component::Payment).await;
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn when_redis_loses_everything_the_group_returns_and_orders_finish() {
    let mut redis_server = PrivateRedis::start().await;
    let mut app = TestApp::builder()
        .redis_url(redis_server.url())
        .configure(|s| {
            payments(0, 0)(s);
            s.payment_request_resend = Some(Duration::from_secs(1));
            s.worker_interval = Duration::from_millis(200);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    app.stop(Component::Payment).await;
    let id = order(&app, &user, mug, 1).await;
    on_the_stream(&app, id).await;
    // Redis restarts empty: the request, the stream and the group are gone.
    redis_server.restart_empty().await;
    app.start(Component::Payment).await;
    // The order service's sweeper sends the request again; the group is re-created.
    app.await_order_status(id, "paid", Duration::from_secs(30))
        .await;
    app.assert_consistent().await;
}

/// The group's pending entries (read by a consumer, not acknowledged).
async fn pending(redis: &RedisPool) -> u64 {
    let mut conn = redis.get().await.unwrap();
    let summary: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(redis.key("payments.requests"))
        .arg("payments")
        .query_async(&mut *conn)
        .await
        .unwrap();
    summary.0
}

#[tokio::test]
async fn a_read_with_a_poison_entry_stores_the_rest() {
    let mut app = TestApp::builder().configure(payments(0, 0)).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let redis = redis_of(&app);
    // While the payment service is away, requests and a poison entry between them pile up:
    // it then takes them in one read.
    app.stop(Component::Payment).await;
    let first = order(&app, &user, mug, 1).await;
    on_the_stream(&app, first).await;
    let mut conn = redis.get().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(redis.key("payments.requests"))
        .arg("*")
        .arg("event")
        .arg(r#"{"v":1,"type":"payment.requested","data":{"amountCents":-5}}"#)
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let rest = [
        order(&app, &user, mug, 1).await,
        order(&app, &user, mug, 2).await,
    ];
    for id in rest {
        on_the_stream(&app, id).await;
    }
    app.start(Component::Payment).await;
    for id in [first, rest[0], rest[1]] {
        app.await_order_status(id, "paid", Duration::from_secs(20))
            .await;
        assert_eq!(payments_for(&app, id).await, 1);
    }
    assert_eq!(app.stream_entries("payments.dead").await.len(), 1);
    wait::until(
        "every entry acknowledged",
        Duration::from_secs(20),
        || async { (pending(&redis).await == 0).then_some(()) },
    )
    .await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_read_stored_but_never_acknowledged_changes_nothing_when_delivered_again() {
    let mut app = TestApp::builder()
        .configure(|s| {
            payments(0, 0)(s);
            s.payment_reclaim_idle = Duration::from_millis(500);
        })
        .spawn()
        .await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let user = app.new_user().await;
    let redis = redis_of(&app);
    // As if the process died between the commit of what it read and the XACK.
    app.payment_hooks()
        .drop_acks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let id = order(&app, &user, mug, 2).await;
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;
    assert!(
        pending(&redis).await >= 1,
        "the entry was never acknowledged"
    );

    // A new instance reclaims the entry and takes it again.
    app.stop(Component::Payment).await;
    app.payment_hooks()
        .drop_acks
        .store(false, std::sync::atomic::Ordering::SeqCst);
    app.start(Component::Payment).await;
    wait::until(
        "the entry to be acknowledged",
        Duration::from_secs(20),
        || async { (pending(&redis).await == 0).then_some(()) },
    )
    .await;
    app.await_outboxes_drained().await;
    assert_eq!(payments_for(&app, id).await, 1);
    let attempts: i64 = app
        .db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM payments.payment_attempts a \
             JOIN payments.payments p ON p.id = a.payment_id WHERE p.order_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 1, "one attempt, however often the request came");
    let types: Vec<String> = app
        .events_of("notifications", id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["order.created", "payment.succeeded", "order.paid"]);
    assert_eq!(app.order_status(id).await, "paid");
    app.assert_consistent().await;
}
