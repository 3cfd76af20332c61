//! Concurrency under load; these run one at a time (the nextest `heavy` group). They print
//! their counts (`--no-capture` shows them).

#![allow(clippy::print_stdout)]

use shop_testkit::TestApp;
use uuid::Uuid;

use crate::{assert_ledger_invariant, create_product, id_of, reserve};

#[tokio::test]
async fn two_hundred_buyers_for_fifty_units_never_oversell() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Limited print", 5000, 50).await);
    let attempts = futures_util::future::join_all(
        (0..200).map(|_| async { reserve(&app, Uuid::now_v7(), &[(id, 1)]).await }),
    )
    .await;
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status().as_u16()).collect();
    let sold = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    println!(
        "200 concurrent single-unit reservations on stock 50: {sold} succeeded, {refused} refused"
    );
    assert_eq!(sold, 50, "{statuses:?}");
    assert_eq!(refused, 150, "{statuses:?}");
    assert_eq!(app.stock_of(id).await, 0);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn lines_in_opposite_orders_never_deadlock() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let a = id_of(&create_product(&app, &admin, "Fork", 100, 1000).await);
    let b = id_of(&create_product(&app, &admin, "Knife", 100, 1000).await);
    let app = &app;
    let orders = (0..80).map(|i| {
        let lines = if i % 2 == 0 {
            [(a, 1), (b, 2)]
        } else {
            [(b, 2), (a, 1)]
        };
        async move { reserve(app, Uuid::now_v7(), &lines).await }
    });
    let answers = futures_util::future::join_all(orders).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    println!(
        "80 concurrent two-line reservations in opposite orders: {} succeeded",
        statuses.iter().filter(|s| **s == 200).count()
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (920, 840));
    assert_ledger_invariant(app).await;
}
