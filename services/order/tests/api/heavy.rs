//! Concurrency under load; these run one at a time (the nextest `heavy` group). They print
//! their counts (`--no-capture` shows them).

#![allow(clippy::print_stdout)]

use shop_testkit::TestApp;

use crate::{place, product, stock_of};

#[tokio::test]
async fn a_hundred_orders_for_thirty_units_never_oversell() {
    let mut app = TestApp::spawn().await;
    // About reservations: payments (which could fail orders and return stock) stay out.
    app.stop(shop_testkit::Component::Payment).await;
    let print = product(&app, "Limited print", 5000, 30).await;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(app.new_user().await);
    }
    let attempts = futures_util::future::join_all((0..100).map(|i| {
        let user = &users[i % users.len()];
        let app = &app;
        async move {
            place(app, user, &[(print, 1)], None)
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    let placed = attempts.iter().filter(|s| **s == 201).count();
    let refused = attempts.iter().filter(|s| **s == 409).count();
    println!("100 concurrent single-unit orders on stock 30: {placed} pending, {refused} refused");
    assert_eq!(placed, 30, "{attempts:?}");
    assert_eq!(refused, 70, "{attempts:?}");
    assert_eq!(stock_of(&app, print).await, 0);
    let pending: i64 = app
        .db()
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 30);
    app.assert_consistent().await;
}
