//! Product CRUD, roles, validation and stock adjustments.

use serde_json::{Value, json};
use shop_testkit::TestApp;

use crate::{assert_ledger_invariant, create_product, expect_problem, id_of, read_product};

#[tokio::test]
async fn admins_create_update_and_delete_while_anyone_reads() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let response = app
        .post(
            "/products",
            &json!({"name": "Mug", "description": "Blue", "priceCents": 1250, "stock": 10}),
        )
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/products/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["name"], "Mug");
    assert_eq!(created["priceCents"], 1250);
    assert_eq!(created["stock"], 10);
    assert_eq!(created["version"], 1);
    let id = id_of(&created);

    let (status, read_etag, body) = read_product(&app, id).await;
    assert_eq!(status, 200);
    assert_eq!(read_etag.as_deref(), Some(etag.as_str()));
    assert_eq!(body, created);

    let updated: Value = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&json!({"name": "Big mug", "description": "Blue", "priceCents": 1500, "version": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "Big mug");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["stock"], 10, "PUT without stock keeps it");
    // A change of the description alone is a change.
    let redescribed: Value = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", admin.bearer())
        .json(&json!({"name": "Big mug", "description": "Green", "priceCents": 1500, "version": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(redescribed["description"], "Green");
    assert_eq!(redescribed["version"], 3);

    let delete = |bearer: String| {
        app.http
            .delete(app.url(&format!("/products/{id}")))
            .header("authorization", bearer)
            .send()
    };
    assert_eq!(delete(admin.bearer()).await.unwrap().status(), 204);
    assert_eq!(read_product(&app, id).await.0, 404);
    expect_problem(delete(admin.bearer()).await.unwrap(), 404, "not-found").await;
    let listed: Value = app
        .get("/products")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0);
    assert_ledger_invariant(&app).await;
}

#[tokio::test]
async fn only_admins_write_and_authorisation_comes_first() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.new_user().await;
    let id = id_of(&create_product(&app, &admin, "Lamp", 4000, 3).await);

    let anonymous = app
        .post(
            "/products",
            &json!({"name": "X", "priceCents": 1, "stock": 1}),
        )
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, 401, "unauthorized").await;
    // A user gets 403 even with an invalid body or without any precondition.
    let invalid = app
        .post("/products", &json!({"name": ""}))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(invalid, 403, "forbidden").await;
    let no_precondition = app
        .http
        .put(app.url(&format!("/products/{id}")))
        .header("authorization", user.bearer())
        .json(&json!({"name": "Lamp", "priceCents": 1}))
        .send()
        .await
        .unwrap();
    expect_problem(no_precondition, 403, "forbidden").await;
    let adjust = app
        .post(
            &format!("/products/{id}/stock-adjustments"),
            &json!({"delta": 5, "reason": "found"}),
        )
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(adjust, 403, "forbidden").await;
    let delete = app
        .http
        .delete(app.url(&format!("/products/{id}")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(delete, 403, "forbidden").await;
    assert_eq!(read_product(&app, id).await.0, 200);
}

#[tokio::test]
async fn invalid_products_are_422_per_field_and_malformed_ids_400() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cases = [
        (json!({"name": "", "priceCents": 1, "stock": 1}), "name"),
        (json!({"name": "   ", "priceCents": 1, "stock": 1}), "name"),
        (
            json!({"name": "x".repeat(201), "priceCents": 1, "stock": 1}),
            "name",
        ),
        (
            json!({"name": "A\u{0}B", "priceCents": 1, "stock": 1}),
            "name",
        ),
        (
            json!({"name": "ok", "description": "d".repeat(5001), "priceCents": 1, "stock": 1}),
            "description",
        ),
        (
            json!({"name": "ok", "priceCents": -1, "stock": 1}),
            "priceCents",
        ),
        (json!({"name": "ok", "priceCents": 1, "stock": -1}), "stock"),
        (
            json!({"name": "ok", "priceCents": 1, "stock": 3_000_000_000_i64}),
            "stock",
        ),
        (
            json!({"name": "ok", "priceCents": 1, "stock": 1, "colour": "red"}),
            "colour",
        ),
        (json!({"name": "ok", "stock": 1}), "priceCents"),
        (
            json!({"name": "ok", "priceCents": "cheap", "stock": 1}),
            "priceCents",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .post("/products", &body)
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 422, "validation-failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let count: i64 = app
        .db()
        .client()
        .await
        .query_one("SELECT count(*) FROM catalog.products", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing half-written");

    expect_problem(
        app.get("/products/not-a-uuid").send().await.unwrap(),
        400,
        "invalid-id",
    )
    .await;
    expect_problem(
        app.get(&format!("/products/{}", uuid::Uuid::now_v7()))
            .send()
            .await
            .unwrap(),
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn stock_adjustments_move_stock_and_never_below_zero() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = id_of(&create_product(&app, &admin, "Kettle", 3000, 4).await);
    let adjust = |delta: i64, reason: &str| {
        app.post(
            &format!("/products/{id}/stock-adjustments"),
            &json!({"delta": delta, "reason": reason}),
        )
        .header("authorization", admin.bearer())
        .send()
    };
    let response = adjust(6, "delivery").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("etag"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stock"], 10);
    assert_eq!(body["version"], 1, "stock is not an editable field");
    assert_eq!(adjust(-3, "breakage").await.unwrap().status(), 200);

    let problem = expect_problem(
        adjust(-8, "too many").await.unwrap(),
        409,
        "insufficient-stock",
    )
    .await;
    assert_eq!(problem["available"], 7);
    expect_problem(
        adjust(0, "nothing").await.unwrap(),
        422,
        "validation-failed",
    )
    .await;
    expect_problem(adjust(1, " ").await.unwrap(), 422, "validation-failed").await;
    assert_eq!(app.stock_of(id).await, 7);

    assert_eq!(
        app.http
            .delete(app.url(&format!("/products/{id}")))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    expect_problem(adjust(1, "late").await.unwrap(), 404, "not-found").await;
    let movements: i64 = app
        .db()
        .client()
        .await
        .query_one("SELECT count(*) FROM catalog.stock_movements WHERE product_id = $1 AND kind = 'adjust'", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(movements, 2);
    assert_ledger_invariant(&app).await;
}
