//! Refused cancellations and status changes leave orders, timelines and stock as they were.

use serde_json::json;
use shop_testkit::{Component, TestApp};
use uuid::Uuid;

use super::{
    Call, Caller, DEADLINE, Rules, fast_payments, look, place_ok, refuse_bad_requests, token,
};

#[tokio::test]
async fn cancels_and_status_changes_refuse_bad_requests_and_change_nothing() {
    let mut app = TestApp::builder().configure(fast_payments).spawn().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let admin = app.admin().await;
    let admins = Caller::of(&app, &admin).await;
    let (user, other) = (app.new_user().await, app.new_user().await);
    let owner = Caller::of(&app, &user).await;
    let paid = place_ok(&app, &user, &[(mug, 1)]).await;
    app.await_order_status(paid, "paid", DEADLINE).await;
    // With the payment service away, the next orders stay pending.
    app.stop(Component::Payment).await;
    let pending = place_ok(&app, &user, &[(mug, 2)]).await;
    let others = place_ok(&app, &other, &[(mug, 3)]).await;

    let mut views = vec![
        ("/orders".to_owned(), token(&user)),
        ("/orders".to_owned(), token(&other)),
    ];
    for (id, who) in [(paid, &user), (pending, &user), (others, &other)] {
        views.push((format!("/orders/{id}"), token(who)));
        views.push((format!("/orders/{id}/timeline"), token(who)));
    }
    views.push((format!("/products/{mug}"), None));
    let before = look(&app, &views).await;
    let unknown = Uuid::now_v7();

    // POST /orders/{id}/cancel: only the owner, only while pending.
    let cancel = Call::post(format!("/orders/{pending}/cancel"));
    refuse_bad_requests(
        &app,
        &cancel,
        Rules {
            caller: Some(&owner),
            ..Rules::default()
        },
    )
    .await;
    cancel
        .refused(
            &app,
            token(&other),
            404,
            "not-found",
            "another user's order",
        )
        .await;
    cancel
        .at(format!("/orders/{paid}/cancel"))
        .refused(
            &app,
            token(&user),
            409,
            "illegal-transition",
            "a paid order",
        )
        .await;
    cancel
        .at("/orders/not-a-uuid/cancel")
        .refused(&app, token(&user), 400, "invalid-id", "a malformed id")
        .await;
    cancel
        .at(format!("/orders/{unknown}/cancel"))
        .refused(&app, token(&user), 404, "not-found", "an unknown id")
        .await;

    // PUT /orders/{id}/status: administrators, paid → shipped → delivered only.
    let ship = Call::put(format!("/orders/{paid}/status")).json(json!({"status": "shipped"}));
    refuse_bad_requests(
        &app,
        &ship,
        Rules {
            caller: Some(&admins),
            not_admin: Some(&user),
            required: &["status"],
        },
    )
    .await;
    for status in ["lost", "SHIPPED", ""] {
        ship.clone()
            .json(json!({"status": status}))
            .refused(&app, token(&admin), 422, "validation-failed", status)
            .await;
    }
    for (id, status) in [
        (paid, "delivered"),
        (paid, "paid"),
        (paid, "cancelled"),
        (paid, "pending"),
        (pending, "shipped"),
        (others, "delivered"),
    ] {
        ship.at(format!("/orders/{id}/status"))
            .json(json!({"status": status}))
            .refused(
                &app,
                token(&admin),
                409,
                "illegal-transition",
                &format!("{id} to {status}"),
            )
            .await;
    }
    ship.at("/orders/not-a-uuid/status")
        .refused(&app, token(&admin), 400, "invalid-id", "a malformed id")
        .await;
    ship.at(format!("/orders/{unknown}/status"))
        .refused(&app, token(&admin), 404, "not-found", "an unknown id")
        .await;

    assert_eq!(look(&app, &views).await, before, "nothing visible changed");
    assert_eq!(app.stock_of(mug).await, 10 - 1 - 2 - 3);
    assert_eq!(
        (
            app.order_status(paid).await,
            app.order_status(pending).await,
            app.order_status(others).await
        ),
        ("paid".into(), "pending".into(), "pending".into())
    );
}
