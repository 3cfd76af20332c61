//! The catalog: browsing as anyone, and the administrator's product writes.

use serde_json::{Value, json};
use shop_testkit::TestApp;
use uuid::Uuid;

use super::{Call, Caller, Rules, id_of, look, refuse_bad_requests, token};

/// The names of a page of products, in order.
fn names(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_shopper_browses_and_an_admin_runs_the_catalog() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let create = |name: &str, price: i64, stock: i64| {
        Call::post("/products")
            .json(json!({"name": name, "description": format!("A {name}"), "priceCents": price, "stock": stock}))
    };
    let response = create("Mug", 1250, 10).send(&app, token(&admin)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let mug: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/products/{}", mug["id"].as_str().unwrap())
    );
    assert_eq!(
        (&mug["priceCents"], &mug["stock"], &mug["version"]),
        (&json!(1250), &json!(10), &json!(1))
    );
    let plate = create("Plate", 900, 0)
        .expect(&app, token(&admin), 201)
        .await;
    let lamp = create("Lamp", 4000, 3)
        .expect(&app, token(&admin), 201)
        .await;

    // Anyone browses: search, filters, sorting and pages.
    let browse = |query: &str| Call::get(format!("/products{query}"));
    let all = browse("").expect(&app, None, 200).await;
    assert_eq!(all["total"], 3);
    assert_eq!(names(&all), ["Lamp", "Plate", "Mug"], "newest first");
    for (query, expected) in [
        ("?q=MUG", vec!["Mug"]),
        ("?minPriceCents=1000&maxPriceCents=2000", vec!["Mug"]),
        ("?inStock=false", vec!["Plate"]),
        ("?sort=priceCents", vec!["Plate", "Mug", "Lamp"]),
        ("?sort=-name", vec!["Plate", "Mug", "Lamp"]),
        ("?sort=name&page=2&limit=2", vec!["Plate"]),
    ] {
        let page = browse(query).expect(&app, None, 200).await;
        assert_eq!(names(&page), expected, "{query}");
    }
    let second = browse("?sort=name&page=2&limit=2")
        .expect(&app, None, 200)
        .await;
    assert_eq!(
        (&second["page"], &second["limit"], &second["total"]),
        (&json!(2), &json!(2), &json!(3))
    );
    for query in [
        "?limit=0",
        "?limit=101",
        "?sort=colour",
        "?minPriceCents=-1",
    ] {
        browse(query)
            .refused(&app, None, 422, "validation-failed", query)
            .await;
    }

    // One product, and its ETag for conditional reads.
    let id = id_of(&mug);
    let read = Call::get(format!("/products/{id}")).send(&app, None).await;
    assert_eq!(read.status(), 200);
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(read.json::<Value>().await.unwrap(), mug);
    let cached = Call::get(format!("/products/{id}"))
        .header("if-none-match", etag.clone())
        .send(&app, None)
        .await;
    assert_eq!(cached.status(), 304);

    // Edits: by body version, then strictly by If-Match.
    let edited = Call::put(format!("/products/{id}"))
        .json(json!({"name": "Big mug", "description": "Blue", "priceCents": 1500, "version": 1}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(
        (&edited["name"], &edited["version"], &edited["stock"]),
        (&json!("Big mug"), &json!(2), &json!(10))
    );
    let read = Call::get(format!("/products/{id}")).send(&app, None).await;
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    let strict = Call::put(format!("/products/{id}"))
        .header("if-match", etag)
        .json(json!({"name": "Big mug", "description": "Blue", "priceCents": 1600}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(
        (&strict["priceCents"], &strict["version"]),
        (&json!(1600), &json!(3))
    );

    // Stock moves by adjustments.
    let adjust = Call::post(format!("/products/{id}/stock-adjustments"));
    let more = adjust
        .clone()
        .json(json!({"delta": 5, "reason": "delivery"}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(more["stock"], 15);
    let less = adjust
        .clone()
        .json(json!({"delta": -15, "reason": "stocktake"}))
        .expect(&app, token(&admin), 200)
        .await;
    assert_eq!(less["stock"], 0);
    assert_eq!(app.stock_of(id).await, 0);

    // A soft delete hides the product from readers.
    let lamp_id = id_of(&lamp);
    Call::delete(format!("/products/{lamp_id}"))
        .expect(&app, token(&admin), 204)
        .await;
    Call::get(format!("/products/{lamp_id}"))
        .refused(&app, None, 404, "not-found", "a deleted product")
        .await;
    let left = browse("?sort=name").expect(&app, None, 200).await;
    assert_eq!(names(&left), ["Big mug", "Plate"]);
    assert_eq!(plate["stock"], 0);
}

#[tokio::test]
async fn catalog_writes_refuse_bad_requests_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let caller = Caller::of(&app, &admin).await;
    let user = app.new_user().await;
    let mug = app.create_product("Mug", 1250, 10).await;
    let gone = app.create_product("Gone", 500, 2).await;
    Call::delete(format!("/products/{gone}"))
        .expect(&app, token(&admin), 204)
        .await;
    let unknown = Uuid::now_v7();
    let rules = |required| Rules {
        caller: Some(&caller),
        not_admin: Some(&user),
        required,
    };
    let views = [
        ("/products".to_owned(), None),
        (format!("/products/{mug}"), None),
    ];
    let before = look(&app, &views).await;

    // POST /products.
    let create = Call::post("/products")
        .json(json!({"name": "Lamp", "description": "Bright", "priceCents": 4000, "stock": 3}));
    refuse_bad_requests(&app, &create, rules(&["name", "priceCents", "stock"])).await;
    for (body, field) in [
        (json!({"name": "", "priceCents": 1, "stock": 1}), "name"),
        (
            json!({"name": "Lamp", "priceCents": -1, "stock": 1}),
            "priceCents",
        ),
        (
            json!({"name": "Lamp", "priceCents": 1, "stock": -1}),
            "stock",
        ),
    ] {
        let problem = create
            .clone()
            .json(body)
            .refused(&app, token(&admin), 422, "validation-failed", field)
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // PUT /products/{id}: a valid body with the current version, then everything wrong with it.
    let put = Call::put(format!("/products/{mug}"))
        .json(json!({"name": "Big mug", "description": "Blue", "priceCents": 1500, "version": 1}));
    refuse_bad_requests(&app, &put, rules(&["name", "priceCents"])).await;
    put.clone()
        .json(json!({"name": "Big mug", "priceCents": 1500}))
        .refused(
            &app,
            token(&admin),
            428,
            "precondition-required",
            "no version, no If-Match",
        )
        .await;
    put.clone()
        .json(json!({"name": "Big mug", "priceCents": 1500, "version": 7}))
        .refused(
            &app,
            token(&admin),
            409,
            "version-conflict",
            "a stale version",
        )
        .await;
    put.clone()
        .json(json!({"name": "Big mug", "priceCents": 1500}))
        .header("if-match", "\"stale\"")
        .refused(
            &app,
            token(&admin),
            412,
            "precondition-failed",
            "a stale If-Match",
        )
        .await;
    put.clone()
        .json(json!({"name": "", "priceCents": 1500, "version": 1}))
        .refused(
            &app,
            token(&admin),
            422,
            "validation-failed",
            "an empty name",
        )
        .await;
    put.at("/products/not-a-uuid")
        .refused(&app, token(&admin), 400, "invalid-id", "a malformed id")
        .await;
    for (id, what) in [(unknown, "an unknown id"), (gone, "a deleted product")] {
        put.at(format!("/products/{id}"))
            .refused(&app, token(&admin), 404, "not-found", what)
            .await;
    }

    // POST /products/{id}/stock-adjustments.
    let adjust = Call::post(format!("/products/{mug}/stock-adjustments"))
        .json(json!({"delta": -3, "reason": "breakage"}));
    refuse_bad_requests(&app, &adjust, rules(&["delta", "reason"])).await;
    let problem = adjust
        .clone()
        .json(json!({"delta": -11, "reason": "too many"}))
        .refused(&app, token(&admin), 409, "insufficient-stock", "below zero")
        .await;
    assert_eq!(problem["available"], 10);
    for body in [
        json!({"delta": 0, "reason": "nothing"}),
        json!({"delta": 1, "reason": " "}),
    ] {
        adjust
            .clone()
            .json(body.clone())
            .refused(
                &app,
                token(&admin),
                422,
                "validation-failed",
                &body.to_string(),
            )
            .await;
    }
    adjust
        .at("/products/not-a-uuid/stock-adjustments")
        .refused(&app, token(&admin), 400, "invalid-id", "a malformed id")
        .await;
    for (id, what) in [(unknown, "an unknown id"), (gone, "a deleted product")] {
        adjust
            .at(format!("/products/{id}/stock-adjustments"))
            .refused(&app, token(&admin), 404, "not-found", what)
            .await;
    }

    // DELETE /products/{id}.
    let delete = Call::delete(format!("/products/{mug}"));
    refuse_bad_requests(&app, &delete, rules(&[])).await;
    delete
        .clone()
        .header("if-match", "\"stale\"")
        .refused(
            &app,
            token(&admin),
            412,
            "precondition-failed",
            "a stale If-Match",
        )
        .await;
    delete
        .at("/products/not-a-uuid")
        .refused(&app, token(&admin), 400, "invalid-id", "a malformed id")
        .await;
    for (id, what) in [(unknown, "an unknown id"), (gone, "a deleted product")] {
        delete
            .at(format!("/products/{id}"))
            .refused(&app, token(&admin), 404, "not-found", what)
            .await;
    }

    assert_eq!(look(&app, &views).await, before, "nothing visible changed");
    assert_eq!(app.stock_of(mug).await, 10);
    let count: i64 = app
        .db()
        .client()
        .await
        .query_one("SELECT count(*) FROM catalog.products", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "no product was created");
    shop_testkit::assert_ledger_invariant(app.db()).await;
}
