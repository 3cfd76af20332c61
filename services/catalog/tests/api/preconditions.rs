//! ETags, If-None-Match, If-Match, body versions and 428.

use serde_json::{Value, json};
use shop_testkit::{TestApp, TestUser};
use uuid::Uuid;

use crate::{
    assert_ledger_invariant, create_product, expect_problem, id_of, read_product, reserve,
};

async fn put(
    app: &TestApp,
    admin: &TestUser,
    id: Uuid,
    if_match: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn if_none_match_answers_304_until_the_product_changes() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Pan", 2000, 5).await);
    let (_, etag, _) = read_product(&app, id).await;
    let etag = etag.unwrap();
    let conditional = |tag: String| {
        app.get(&format!("/products/{id}"))
            .header("if-none-match", tag)
            .send()
    };
    let unchanged = conditional(etag.clone()).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        conditional(format!("W/{etag}")).await.unwrap().status(),
        304,
        "weak comparison"
    );
    assert_eq!(conditional("\"r999\"".into()).await.unwrap().status(), 200);

    // A sale changes the stock, so the representation and its ETag change.
    assert_eq!(
        reserve(&app, Uuid::now_v7(), &[(id, 1)]).await.status(),
        200
    );
    let changed = conditional(etag.clone()).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn if_match_is_strict_and_version_ignores_sales() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Pot", 3000, 5).await);
    let (_, etag, _) = read_product(&app, id).await;
    let etag = etag.unwrap();

    // Someone buys one: stock and ETag change, the editable fields do not.
    assert_eq!(
        reserve(&app, Uuid::now_v7(), &[(id, 1)]).await.status(),
        200
    );
    let stale = put(
        &app,
        &admin,
        id,
        Some(&etag),
        json!({"name": "Pot", "priceCents": 3100}),
    )
    .await;
    expect_problem(stale, 412, "precondition-failed").await;
    let by_version = put(
        &app,
        &admin,
        id,
        None,
        json!({"name": "Pot", "priceCents": 3100, "version": 1}),
    )
    .await;
    assert_eq!(
        by_version.status(),
        200,
        "a sale never fails a version-guarded edit"
    );
    let body: Value = by_version.json().await.unwrap();
    assert_eq!(
        (
            body["priceCents"].as_i64(),
            body["stock"].as_i64(),
            body["version"].as_i64()
        ),
        (Some(3100), Some(4), Some(2))
    );

    let old_version = put(
        &app,
        &admin,
        id,
        None,
        json!({"name": "Pot", "priceCents": 1, "version": 1}),
    )
    .await;
    let problem = expect_problem(old_version, 409, "version-conflict").await;
    assert_eq!(problem["currentVersion"], 2);

    let (_, current, _) = read_product(&app, id).await;
    let strict = put(
        &app,
        &admin,
        id,
        current.as_deref(),
        json!({"name": "Pot", "priceCents": 3200, "stock": 9}),
    )
    .await;
    assert_eq!(strict.status(), 200);
    assert_ne!(strict.headers()["etag"].to_str().unwrap(), current.unwrap());
    assert_eq!(app.stock_of(id).await, 9);
    assert_eq!(
        put(
            &app,
            &admin,
            id,
            Some("*"),
            json!({"name": "Pot", "priceCents": 3300})
        )
        .await
        .status(),
        200
    );
    // `*` never sets stock, and never excuses a stale version.
    let star_stock = put(
        &app,
        &admin,
        id,
        Some("*"),
        json!({"name": "Pot", "priceCents": 3300, "stock": 1}),
    )
    .await;
    expect_problem(star_stock, 428, "precondition-required").await;
    let star_stale = put(
        &app,
        &admin,
        id,
        Some("*"),
        json!({"name": "Pot", "priceCents": 1, "version": 1}),
    )
    .await;
    expect_problem(star_stale, 409, "version-conflict").await;
    assert_eq!(app.stock_of(id).await, 9);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn writes_without_a_precondition_are_428() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Jar", 900, 5).await);
    let neither = put(
        &app,
        &admin,
        id,
        None,
        json!({"name": "Jar", "priceCents": 950}),
    )
    .await;
    expect_problem(neither, 428, "precondition-required").await;
    let stock_by_version = put(
        &app,
        &admin,
        id,
        None,
        json!({"name": "Jar", "priceCents": 900, "stock": 50, "version": 1}),
    )
    .await;
    expect_problem(stock_by_version, 428, "precondition-required").await;
    // Validation comes before preconditions, and nothing changed.
    let invalid = put(
        &app,
        &admin,
        id,
        None,
        json!({"name": "", "priceCents": 900}),
    )
    .await;
    expect_problem(invalid, 422, "validation-failed").await;
    let (_, _, body) = read_product(&app, id).await;
    assert_eq!(
        (body["priceCents"].as_i64(), body["stock"].as_i64()),
        (Some(900), Some(5))
    );

    let delete_stale = app
        .http
        .delete(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .header("if-match", "\"r0\"")
        .send()
        .await
        .unwrap();
    expect_problem(delete_stale, 412, "precondition-failed").await;
    expect_problem(
        put(
            &app,
            &admin,
            Uuid::now_v7(),
            Some("*"),
            json!({"name": "Gone", "priceCents": 1}),
        )
        .await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn two_admins_never_overwrite_each_other_silently() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Tray", 1000, 5).await);
    for round in 0..5 {
        let (_, etag, body) = read_product(&app, id).await;
        let version = body["version"].as_i64().unwrap();
        let by_version = put(
            &app,
            &admin,
            id,
            None,
            json!({"name": format!("Tray A{round}"), "priceCents": 1000, "version": version}),
        );
        let by_etag = put(
            &app,
            &admin,
            id,
            etag.as_deref(),
            json!({"name": format!("Tray B{round}"), "priceCents": 1000}),
        );
        let (a, b) = tokio::join!(by_version, by_etag);
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(statuses.contains(&200), "round {round}: {statuses:?}");
        assert!(
            statuses.contains(&409) || statuses.contains(&412),
            "round {round}: both won: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn stock_can_never_overflow_even_with_reservations_held() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Bead", 1, 10).await);
    let adjust = |delta: i64| {
        app.post(
            &format!("/products/{id}/stock-adjustments"),
            &json!({"delta": delta, "reason": "bulk"}),
        )
        .header("authorization", admin.bearer())
        .send()
    };
    expect_problem(
        adjust(i64::from(i32::MAX)).await.unwrap(),
        422,
        "validation-failed",
    )
    .await;
    expect_problem(
        adjust(i64::from(i32::MAX) + 1).await.unwrap(),
        422,
        "validation-failed",
    )
    .await;

    // With 10 held, stock may rise only to 2147483637, so the release can always land.
    assert_eq!(
        reserve(&app, Uuid::now_v7(), &[(id, 10)]).await.status(),
        200
    );
    let (_, etag, _) = read_product(&app, id).await;
    let too_high = put(
        &app,
        &admin,
        id,
        etag.as_deref(),
        json!({"name": "Bead", "priceCents": 1, "stock": i32::MAX}),
    )
    .await;
    let problem = expect_problem(too_high, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "stock");
    let highest = put(
        &app,
        &admin,
        id,
        etag.as_deref(),
        json!({"name": "Bead", "priceCents": 1, "stock": i32::MAX - 10}),
    )
    .await;
    assert_eq!(highest.status(), 200);
    assert_ledger_invariant(&app).await;
}
