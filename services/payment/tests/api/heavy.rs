//! A backlog drains at the configured speed; these run one at a time (the nextest `heavy`
//! group) and print their figures (`--no-capture` shows them).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use shop_testkit::{TestApp, wait};

#[tokio::test]
async fn five_hundred_orders_all_end_final() {
    let app = TestApp::builder()
        .configure(|s| {
            s.payment_failed_probability = 20;
            s.backoff_retries = 2;
            s.backoff_delay = Duration::from_millis(20);
            s.payment_duration = Duration::from_millis(5);
            s.payment_concurrency = 16;
            s.database_pool_size = 10;
            s.database_acquire_timeout = Duration::from_secs(30);
            // 500 placements at once queue up in a one-core test system: let them wait rather
            // than have the gateway answer 504 or the order service 503 (as they rightly do after
            // ORDER_/CATALOG_SERVICE_TIMEOUT by default).
            s.order_service_timeout = Duration::from_secs(60);
            s.catalog_service_timeout = Duration::from_secs(60);
            s.http_workers = 2;
        })
        .spawn()
        .await;
    let product = app.create_product("Sticker", 100, 10_000).await;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(app.new_user().await);
    }
    let started = Instant::now();
    let app_ref = &app;
    let placed = futures_util::future::join_all((0..500).map(|i| {
        let user = &users[i % users.len()];
        async move {
            app_ref
                .place_order(user, &[(product, 1)], None)
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(placed.iter().all(|s| *s == 201), "{placed:?}");
    let placing = started.elapsed();
    let client = app.db().client().await;
    wait::until(
        "every order to end paid or failed",
        Duration::from_secs(120),
        || async {
            let open: i64 = client
                .query_one(
                    "SELECT count(*) FROM orders.orders WHERE status NOT IN ('paid', 'failed')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (open == 0).then_some(())
        },
    )
    .await;
    let drained = started.elapsed();
    let row = client
        .query_one("SELECT count(*) FILTER (WHERE status = 'paid'), count(*) FILTER (WHERE status = 'failed') FROM orders.orders", &[])
        .await
        .unwrap();
    let (paid, failed): (i64, i64) = (row.get(0), row.get(1));
    println!(
        "500 orders (payment 5 ms, 20% failures, 2 retries 20 ms apart, concurrency 16): placed in {:.1}s, all final in {:.1}s ({paid} paid, {failed} failed)",
        placing.as_secs_f64(),
        drained.as_secs_f64()
    );
    assert_eq!(paid + failed, 500);
    app.assert_consistent().await;
    assert_eq!(
        app.stock_of(product).await,
        10_000 - i32::try_from(paid).unwrap()
    );
}
