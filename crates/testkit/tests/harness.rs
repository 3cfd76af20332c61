//! The harness itself: databases, migrations, the fault proxy and private Redis servers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use shop_redis::{RedisPool, redis};
use shop_settings::Settings;
use shop_testkit::{PrivateRedis, TcpProxy, TestDb};

async fn ping(pool: &RedisPool) -> bool {
    pool.ping().await.is_ok()
}

fn pool_for(addr: std::net::SocketAddr) -> RedisPool {
    RedisPool::with_url(
        &format!("redis://{addr}"),
        "harness:",
        2,
        Duration::from_millis(500),
    )
    .unwrap()
}

#[tokio::test]
async fn migrations_live_in_their_schema_and_run_once_under_concurrency() {
    let db = TestDb::empty().await;
    let settings = Settings {
        database_url: db.url().into(),
        ..Settings::default()
    };
    // Three starters at once: the advisory lock serialises them, the schema is created once.
    let results = migrate_three_at_once(&settings).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    user_service::migrate(&settings).await.unwrap();

    let client = db.client().await;
    let placement = client
        .query(
            "SELECT table_schema FROM information_schema.tables \
             WHERE table_name = '__diesel_schema_migrations' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let schemas: Vec<String> = placement.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        schemas,
        ["users"],
        "the migrations table sits inside the service's schema"
    );
    let applied: i64 = client
        .query_one("SELECT count(*) FROM users.__diesel_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 3);
    let users_table: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'users' AND table_name = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(users_table, 1);
}

async fn migrate_three_at_once(settings: &Settings) -> Vec<anyhow::Result<()>> {
    let (a, b, c) = tokio::join!(
        user_service::migrate(settings),
        user_service::migrate(settings),
        user_service::migrate(settings),
    );
    vec![a, b, c]
}

#[tokio::test]
async fn test_databases_are_isolated_and_dropped() {
    let first = TestDb::create().await;
    let second = TestDb::create().await;
    assert_ne!(first.name(), second.name());
    first
        .client()
        .await
        .batch_execute("INSERT INTO users.users (id, email, password_hash) VALUES (gen_random_uuid(), 'only@first.test', 'x')")
        .await
        .unwrap();
    let count = |db: &TestDb| {
        let url = db.url().to_owned();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let row = client
                .query_one("SELECT count(*) FROM users.users", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    assert_eq!(count(&first).await, 1);
    assert_eq!(count(&second).await, 0);

    let name = first.name().to_owned();
    drop(first);
    let (admin, connection) = tokio_postgres::connect(
        &shop_settings::DEV_DATABASE_URL.replace("/shop", "/postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let left = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap();
    assert!(left.is_none(), "{name} was not dropped");
}

#[tokio::test]
async fn the_proxy_cuts_and_restores_a_link() {
    let redis = PrivateRedis::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let pool = pool_for(proxy.addr());
    assert!(ping(&pool).await);

    proxy.cut();
    assert!(!ping(&pool).await, "a cut link carries nothing");

    proxy.restore();
    shop_testkit::wait::until(
        "the link to carry traffic again",
        Duration::from_secs(10),
        || async { ping(&pool).await.then_some(()) },
    )
    .await;

    // A slowed link still delivers everything intact.
    proxy.slow(Duration::from_millis(30));
    let mut conn = pool.get().await.unwrap();
    let value = "x".repeat(50_000);
    let () = redis::cmd("SET")
        .arg("k")
        .arg(&value)
        .query_async(&mut *conn)
        .await
        .unwrap();
    let read: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(read, value);
}

#[tokio::test]
async fn private_redis_servers_are_separate_and_can_die() {
    let mut redis = PrivateRedis::start().await;
    let other = PrivateRedis::start().await;
    assert_ne!(redis.addr(), other.addr());
    let pool = pool_for(redis.addr());
    let mut conn = pool.get().await.unwrap();
    let () = redis::cmd("SET")
        .arg("only-here")
        .arg(1)
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let mut other_conn = pool_for(other.addr()).get().await.unwrap().to_owned();
    let exists: bool = redis::cmd("EXISTS")
        .arg("harness:only-here")
        .arg("only-here")
        .query_async(&mut other_conn)
        .await
        .unwrap();
    assert!(!exists);

    redis.kill();
    assert!(!ping(&pool).await);
}
