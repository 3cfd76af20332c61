//! The relay against real Postgres and Redis.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use shop_db::Pool;
use shop_outbox::{
    CommandHandler, Kind, NewMessage, PENDING_INDEX_DDL, Relay, RelayConfig, TABLE_DDL, enqueue,
};
use shop_redis::{RedisPool, redis};
use shop_settings::{Service, Settings};
use shop_testkit::{TcpProxy, TestDb, TestRedis, wait};
use uuid::Uuid;

const CHANNEL: &str = "outbox_test";

/// Fails its first `failures` runs, then succeeds; records what it ran.
#[derive(Default)]
struct Flaky {
    failures: usize,
    runs: AtomicUsize,
    ran: std::sync::Mutex<Vec<Value>>,
}

impl CommandHandler for Flaky {
    fn run<'a>(&'a self, _topic: &'a str, payload: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.runs.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err("catalog unreachable".into());
            }
            self.ran.lock().unwrap().push(payload.clone());
            Ok(())
        })
    }
}

struct Fixture {
    db: TestDb,
    pool: Pool,
    _redis: TestRedis,
    redis: RedisPool,
}

async fn fixture(redis_url: Option<String>) -> Fixture {
    let db = TestDb::empty().await;
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA orders; SET search_path TO orders; {TABLE_DDL} {PENDING_INDEX_DDL}"
        ))
        .await
        .unwrap();
    let settings = Settings {
        database_url: db.url().into(),
        database_pool_size: 3,
        ..Settings::default()
    };
    let test_redis = TestRedis::new();
    let redis = match redis_url {
        Some(url) => {
            RedisPool::with_url(&url, test_redis.prefix(), 2, Duration::from_millis(300)).unwrap()
        }
        None => test_redis.pool(),
    };
    Fixture {
        pool: shop_db::pool(&settings, Service::Order),
        db,
        _redis: test_redis,
        redis,
    }
}

fn relay(f: &Fixture, handler: Arc<dyn CommandHandler>, poll: Duration) -> Relay {
    Relay::new(
        f.pool.clone(),
        f.redis.clone(),
        handler,
        RelayConfig {
            service: "test",
            channel: CHANNEL.into(),
            database_url: f.db.url().into(),
            notifications_topic: "notifications".into(),
            poll_interval: poll,
            batch_size: 50,
            retention: Duration::from_secs(3600),
            notifications_max_len: 10_000,
            user_stream_max_len: 100,
            user_stream_ttl: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(60),
        },
    )
}

fn event(topic: &str, aggregate: Uuid, user: Option<Uuid>, n: u32) -> NewMessage {
    NewMessage {
        kind: Kind::Event,
        topic: topic.into(),
        aggregate_id: aggregate,
        user_id: user,
        payload: json!({"n": n, "orderId": aggregate}),
    }
}

fn command(aggregate: Uuid, n: u32) -> NewMessage {
    NewMessage {
        kind: Kind::Command,
        topic: "stock.release".into(),
        aggregate_id: aggregate,
        user_id: None,
        payload: json!({"n": n}),
    }
}

async fn write(f: &Fixture, messages: Vec<NewMessage>) {
    let mut conn = shop_db::conn(&f.pool).await.unwrap();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        enqueue(conn, CHANNEL, &messages).await
    })
    .await
    .unwrap();
}

async fn drain(relay: &Relay) {
    while relay.process_batch().await.unwrap() > 0 {}
}

async fn stream(f: &Fixture, name: &str) -> Vec<(String, Value)> {
    let mut conn = f.redis.get().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(f.redis.key(name))
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .unwrap();
    entries
        .ids
        .into_iter()
        .map(|entry| {
            let text: String = entry.get("event").unwrap();
            (entry.id, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

async fn unsent(f: &Fixture) -> i64 {
    f.db.client()
        .await
        .query_one(
            "SELECT count(*) FROM orders.outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn make_due(f: &Fixture) {
    f.db.client()
        .await
        .batch_execute("UPDATE orders.outbox SET available_at = now()")
        .await
        .unwrap();
}

#[tokio::test]
async fn events_go_out_in_order_with_per_user_copies() {
    let f = fixture(None).await;
    let (order_a, order_b, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    write(
        &f,
        vec![
            event("notifications", order_a, Some(user), 1),
            event("payments.requests", order_b, None, 1),
        ],
    )
    .await;
    write(
        &f,
        vec![
            event("notifications", order_a, Some(user), 2),
            event("notifications", order_b, None, 2),
        ],
    )
    .await;
    write(&f, vec![event("notifications", order_a, Some(user), 3)]).await;
    drain(&relay(
        &f,
        Arc::new(Flaky::default()),
        Duration::from_secs(1),
    ))
    .await;

    let all = stream(&f, "notifications").await;
    let of_a: Vec<u64> = all
        .iter()
        .filter(|(_, e)| e["orderId"] == order_a.to_string())
        .map(|(_, e)| e["n"].as_u64().unwrap())
        .collect();
    assert_eq!(of_a, [1, 2, 3], "one order's events in order");
    assert_eq!(all.len(), 4);
    let mine = stream(&f, &format!("notifications:user:{user}")).await;
    let mine_ids: Vec<&String> = mine.iter().map(|(id, _)| id).collect();
    let same_in_global: Vec<&String> = all
        .iter()
        .filter(|(_, e)| e["orderId"] == order_a.to_string())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        mine_ids, same_in_global,
        "the user's copy carries the same ids"
    );
    assert_eq!(stream(&f, "payments.requests").await.len(), 1);
    assert_eq!(unsent(&f).await, 0);
}

#[tokio::test]
async fn with_redis_away_rows_wait_and_go_out_after() {
    let proxy = TcpProxy::start(shop_testkit::SHARED_REDIS.parse().unwrap()).await;
    let f = fixture(Some(format!("redis://{}", proxy.addr()))).await;
    let relay = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(1));
    proxy.cut();
    let order = Uuid::now_v7();
    write(
        &f,
        vec![
            event("notifications", order, None, 1),
            event("notifications", order, None, 2),
        ],
    )
    .await;
    relay.process_batch().await.unwrap();
    assert_eq!(unsent(&f).await, 2, "nothing is lost while Redis is away");

    proxy.restore();
    make_due(&f).await;
    wait::until("the rows to go out", Duration::from_secs(10), || async {
        let _ = relay.process_batch().await;
        make_due(&f).await;
        (unsent(&f).await == 0).then_some(())
    })
    .await;
    let sent: Vec<u64> = stream(&f, "notifications")
        .await
        .iter()
        .map(|(_, e)| e["n"].as_u64().unwrap())
        .collect();
    assert_eq!(sent, [1, 2]);
}

#[tokio::test]
async fn failing_commands_retry_in_order_without_holding_up_events() {
    let f = fixture(None).await;
    let handler = Arc::new(Flaky {
        failures: 2,
        ..Flaky::default()
    });
    let relay = relay(&f, handler.clone(), Duration::from_secs(1));
    let order = Uuid::now_v7();
    write(
        &f,
        vec![
            command(order, 1),
            command(order, 2),
            event("notifications", order, None, 1),
        ],
    )
    .await;

    drain(&relay).await;
    assert_eq!(
        stream(&f, "notifications").await.len(),
        1,
        "events are another lane"
    );
    assert!(
        handler.ran.lock().unwrap().is_empty(),
        "the second command waits for the first"
    );
    for _ in 0..3 {
        make_due(&f).await;
        drain(&relay).await;
    }
    let ran: Vec<u64> = handler
        .ran
        .lock()
        .unwrap()
        .iter()
        .map(|p| p["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ran, [1, 2]);
    let attempts: i32 =
        f.db.client()
            .await
            .query_one(
                "SELECT max(attempts) FROM orders.outbox WHERE kind = 'command'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn a_notify_wakes_a_sleeping_relay_and_old_rows_are_purged() {
    let f = fixture(None).await;
    let relay = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(3600));
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    // A row from before the start goes out with the first batch, which proves that batch ran.
    write(&f, vec![event("notifications", Uuid::now_v7(), None, 1)]).await;
    let handle = relay.spawn(&tasks, &cancel);
    handle.listening().await;
    wait::until("the first batch", Duration::from_secs(10), || async {
        (unsent(&f).await == 0).then_some(())
    })
    .await;
    // Now the relay sleeps (polling every hour): only NOTIFY can wake it.
    write(&f, vec![event("notifications", Uuid::now_v7(), None, 2)]).await;
    wait::until(
        "NOTIFY to wake the relay",
        Duration::from_secs(10),
        || async { (unsent(&f).await == 0).then_some(()) },
    )
    .await;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;

    let purger = self::relay(&f, Arc::new(Flaky::default()), Duration::from_secs(1));
    assert_eq!(purger.purge().await.unwrap(), 0, "recent rows stay");
    f.db.client()
        .await
        .batch_execute("UPDATE orders.outbox SET sent_at = now() - interval '2 hours'")
        .await
        .unwrap();
    assert_eq!(purger.purge().await.unwrap(), 2);
}
