//! The relay against real Postgres and Redis.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use shop_contracts::UserId;
use shop_db::Pool;
use shop_outbox::{
    Command, CommandHandler, Kind, NewMessage, Outcome, PENDING_INDEX_DDL, Relay, RelayConfig,
    TABLE_DDL, Written, enqueue, run_lanes,
};
use shop_redis::{RedisPool, redis};
use shop_settings::{Service, Settings};
use shop_testkit::{TcpProxy, TestDb, TestRedis, wait};
use uuid::Uuid;

/// Fails its first `failures` runs, then succeeds; records what it ran.
#[derive(Default)]
struct Flaky {
    failures: usize,
    runs: AtomicUsize,
    ran: std::sync::Mutex<Vec<Value>>,
}

impl CommandHandler for Flaky {
    type Command = Value;
    type Error = String;

    fn run<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        commands: &'a [Command<Value>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(run_lanes(commands, move |command| async move {
            if self.runs.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err("catalog unreachable".to_owned());
            }
            self.ran.lock().unwrap().push(command.payload.clone());
            Ok(())
        }))
    }
}

struct Fixture {
    db: TestDb,
    pool: Pool,
    _redis: TestRedis,
    redis: RedisPool,
    redis_url: String,
    /// The same keys, never through a proxy: for assertions.
    direct: RedisPool,
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
    let redis_url = redis_url.unwrap_or_else(|| format!("redis://{}", shop_testkit::SHARED_REDIS));
    let redis = RedisPool::with_url(
        &redis_url,
        test_redis.prefix(),
        2,
        Duration::from_millis(300),
    )
    .unwrap();
    Fixture {
        pool: shop_db::pool(&settings, Service::Order),
        db,
        direct: test_redis.pool(),
        _redis: test_redis,
        redis,
        redis_url,
    }
}

/// Runs commands whose payload is `{"n": …}`, recording each `n`.
#[derive(Default)]
struct Numbered {
    ran: std::sync::Mutex<Vec<u32>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Number {
    n: u32,
}

impl CommandHandler for Numbered {
    type Command = Number;
    type Error = std::convert::Infallible;

    fn run<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        commands: &'a [Command<Number>],
    ) -> BoxFuture<'a, Vec<Outcome<std::convert::Infallible>>> {
        Box::pin(run_lanes(commands, move |command| async move {
            self.ran.lock().unwrap().push(command.payload.n);
            Ok(())
        }))
    }
}

fn relay<H: CommandHandler>(f: &Fixture, handler: Arc<H>, poll: Duration) -> Relay {
    Relay::new(
        f.pool.clone(),
        f.redis.clone(),
        handler,
        RelayConfig {
            service: "test",
            redis_url: f.redis_url.clone(),
            notifications_topic: "notifications".into(),
            poll_interval: poll,
            batch_size: 50,
            retention: Duration::from_secs(3600),
            notifications_max_len: 10_000,
            user_stream_max_len: 100,
            user_stream_ttl: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(60),
            dedup_window: Duration::from_secs(600),
            wake_throttle: Duration::from_millis(100),
        },
    )
}

fn event(topic: &str, aggregate: Uuid, user: Option<UserId>, n: u32) -> NewMessage {
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

async fn write(f: &Fixture, messages: Vec<NewMessage>) -> Written {
    let mut conn = shop_db::conn(&f.pool).await.unwrap();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| enqueue(conn, &messages).await)
        .await
        .unwrap()
}

async fn drain(relay: &Relay) {
    while relay.process_batch().await.unwrap() > 0 {}
}

async fn stream(f: &Fixture, name: &str) -> Vec<(String, Value)> {
    let mut conn = f.direct.get().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(f.direct.key(name))
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
    let (order_a, order_b, user) = (Uuid::now_v7(), Uuid::now_v7(), UserId::new());
    let _ = write(
        &f,
        vec![
            event("notifications", order_a, Some(user), 1),
            event("payments.requests", order_b, None, 1),
        ],
    )
    .await;
    let _ = write(
        &f,
        vec![
            event("notifications", order_a, Some(user), 2),
            event("notifications", order_b, None, 2),
        ],
    )
    .await;
    let _ = write(&f, vec![event("notifications", order_a, Some(user), 3)]).await;
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
    let _ = write(
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
    let _ = write(
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
async fn a_command_that_does_not_decode_holds_up_its_lane_only() {
    let f = fixture(None).await;
    let handler = Arc::new(Numbered::default());
    let relay = relay(&f, handler.clone(), Duration::from_secs(1));
    let (stuck, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut bad = command(stuck, 1);
    bad.payload = json!({"n": "one"});
    let _ = write(
        &f,
        vec![bad, command(stuck, 2), command(other, 3), command(other, 4)],
    )
    .await;

    for _ in 0..3 {
        make_due(&f).await;
        drain(&relay).await;
    }
    assert_eq!(*handler.ran.lock().unwrap(), [3, 4]);
    let rows =
        f.db.client()
            .await
            .query(
                "SELECT attempts, last_error FROM orders.outbox \
             WHERE aggregate_id = $1 AND sent_at IS NULL ORDER BY id",
                &[&stuck],
            )
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "neither command of the stuck lane is done");
    let error: Option<String> = rows[0].get(1);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("does not decode")),
        "{error:?}"
    );
    assert!(rows[0].get::<_, i32>(0) >= 1);
    assert_eq!(
        rows[1].get::<_, i32>(0),
        0,
        "the one behind it waits untried"
    );
}

#[tokio::test]
async fn the_writer_wakes_its_relay_and_other_instances_and_old_rows_are_purged() {
    let f = fixture(None).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    // A row from before the start goes out with the first batch, which proves that batch ran.
    let _ = write(&f, vec![event("notifications", Uuid::now_v7(), None, 1)]).await;
    // Polling every hour: only a wake-up can move it.
    let running = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(3600));
    let own = running.spawn(&tasks, &cancel);
    own.subscribed().await;
    wait::until("the first batch", Duration::from_secs(10), || async {
        (unsent(&f).await == 0).then_some(())
    })
    .await;
    // The writer's own relay, woken in-process.
    let written = write(&f, vec![event("notifications", Uuid::now_v7(), None, 2)]).await;
    own.wake(written);
    wait::until("its own wake-up", Duration::from_secs(10), || async {
        (unsent(&f).await == 0).then_some(())
    })
    .await;
    // Another instance that writes and relays nothing itself: its wake-up goes over Redis.
    let other = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(3600)).handle();
    let written = write(&f, vec![event("notifications", Uuid::now_v7(), None, 3)]).await;
    assert_eq!(unsent(&f).await, 1);
    other.wake(written);
    wait::until(
        "another instance's wake-up",
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
    assert_eq!(purger.purge().await.unwrap(), 3);
}

#[tokio::test]
async fn a_batch_whose_answer_is_lost_is_published_once_in_order() {
    let proxy = TcpProxy::start(shop_testkit::SHARED_REDIS.parse().unwrap()).await;
    let f = fixture(Some(format!("redis://{}", proxy.addr()))).await;
    let relay = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(1));
    // The relay's connection is made while answers still arrive.
    let _ = write(
        &f,
        vec![event("payments.requests", Uuid::now_v7(), None, 0)],
    )
    .await;
    drain(&relay).await;
    let (orders, user) = (
        [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()],
        UserId::new(),
    );
    for n in 1..=3 {
        let messages = orders
            .iter()
            .map(|order| event("notifications", *order, Some(user), n))
            .collect();
        let _ = write(&f, messages).await;
    }
    // Redis runs the whole pipeline; its answer never arrives.
    proxy.mute();
    relay.process_batch().await.unwrap();
    assert_eq!(unsent(&f).await, 9, "no answer, nothing marked sent");
    assert_eq!(
        stream(&f, "notifications").await.len(),
        9,
        "and yet Redis has them all"
    );

    // The next pass sends the whole batch again: nothing is appended twice.
    proxy.cut();
    proxy.restore();
    make_due(&f).await;
    wait::until(
        "the rows to be marked sent",
        Duration::from_secs(10),
        || async {
            let _ = relay.process_batch().await;
            make_due(&f).await;
            (unsent(&f).await == 0).then_some(())
        },
    )
    .await;
    let all = stream(&f, "notifications").await;
    assert_eq!(all.len(), 9, "each event once: {all:?}");
    for order in orders {
        let of_order: Vec<u64> = all
            .iter()
            .filter(|(_, e)| e["orderId"] == order.to_string())
            .map(|(_, e)| e["n"].as_u64().unwrap())
            .collect();
        assert_eq!(of_order, [1, 2, 3], "one order's events in order");
    }
    assert_eq!(
        stream(&f, &format!("notifications:user:{user}"))
            .await
            .len(),
        9,
        "the user's copies once each too"
    );
}

#[tokio::test]
async fn an_event_redis_refuses_holds_back_its_own_order_only() {
    let f = fixture(None).await;
    let relay = relay(&f, Arc::new(Flaky::default()), Duration::from_secs(1));
    // A key of the wrong type where one order's stream would be: Redis refuses that XADD.
    let mut conn = f.redis.get().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(f.redis.key("broken"))
        .arg("not a stream")
        .query_async(&mut *conn)
        .await
        .unwrap();
    let (stuck, fine) = (Uuid::now_v7(), Uuid::now_v7());
    let _ = write(
        &f,
        vec![
            event("broken", stuck, None, 1),
            event("notifications", stuck, None, 2),
            event("notifications", fine, None, 1),
            event("notifications", fine, None, 2),
        ],
    )
    .await;
    relay.process_batch().await.unwrap();
    let sent: Vec<(String, u64)> = stream(&f, "notifications")
        .await
        .iter()
        .map(|(_, e)| {
            (
                e["orderId"].as_str().unwrap().to_owned(),
                e["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [(fine.to_string(), 1), (fine.to_string(), 2)],
        "the other order's events go out; the refused one's later event waits behind it"
    );
    assert_eq!(unsent(&f).await, 2);
    let attempts: Vec<i32> =
        f.db.client()
            .await
            .query(
                "SELECT attempts FROM orders.outbox WHERE sent_at IS NULL ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert_eq!(attempts, [1, 0], "only the refused event counts an attempt");

    // Once Redis takes it, the order's events follow in order.
    let _: () = redis::cmd("DEL")
        .arg(f.redis.key("broken"))
        .query_async(&mut *conn)
        .await
        .unwrap();
    make_due(&f).await;
    drain(&relay).await;
    assert_eq!(unsent(&f).await, 0);
    let of_stuck: Vec<u64> = stream(&f, "notifications")
        .await
        .iter()
        .filter(|(_, e)| e["orderId"] == stuck.to_string())
        .map(|(_, e)| e["n"].as_u64().unwrap())
        .collect();
    assert_eq!(of_stuck, [2]);
    assert_eq!(stream(&f, "broken").await.len(), 1);
}
