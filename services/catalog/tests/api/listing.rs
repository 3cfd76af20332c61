//! Pagination, filters, sorting and search.

use serde_json::Value;
use shop_testkit::TestApp;

use crate::{create_product, expect_problem};

async fn names(app: &TestApp, query: &str) -> (Vec<String>, Value) {
    let response = app.get(&format!("/products?{query}")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    let page: Value = response.json().await.unwrap();
    let names = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    (names, page)
}

#[tokio::test]
async fn listings_page_filter_sort_and_search() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for (name, price, stock) in [
        ("Apple corer", 500, 3),
        ("Bread knife", 2500, 0),
        ("Cheese grater", 1200, 8),
        ("Dish rack", 3000, 1),
        ("Egg timer", 800, 0),
        ("50% off Funnel", 300, 5),
        ("Garlic press_pro", 1500, 2),
    ] {
        create_product(&app, &admin, name, price, stock).await;
    }

    let (first, page) = names(&app, "limit=3&page=1&sort=name").await;
    assert_eq!(first, ["50% off Funnel", "Apple corer", "Bread knife"]);
    assert_eq!(
        (
            page["page"].as_u64(),
            page["limit"].as_u64(),
            page["total"].as_u64()
        ),
        (Some(1), Some(3), Some(7))
    );
    let (third, _) = names(&app, "limit=3&page=3&sort=name").await;
    assert_eq!(third, ["Garlic press_pro"]);
    let (beyond, page) = names(&app, "limit=3&page=9").await;
    assert!(beyond.is_empty());
    assert_eq!(page["total"], 7);

    let (newest, _) = names(&app, "limit=1").await;
    assert_eq!(newest, ["Garlic press_pro"], "newest first by default");
    let (dearest, _) = names(&app, "sort=-priceCents&limit=2").await;
    assert_eq!(dearest, ["Dish rack", "Bread knife"]);
    let (oldest, _) = names(&app, "sort=createdAt&limit=1").await;
    assert_eq!(oldest, ["Apple corer"]);

    let (mid, page) = names(&app, "minPriceCents=800&maxPriceCents=1500&sort=priceCents").await;
    assert_eq!(mid, ["Egg timer", "Cheese grater", "Garlic press_pro"]);
    assert_eq!(page["total"], 3);
    let (available, _) = names(&app, "inStock=true&sort=name").await;
    assert_eq!(
        available,
        [
            "50% off Funnel",
            "Apple corer",
            "Cheese grater",
            "Dish rack",
            "Garlic press_pro"
        ]
    );
    let (sold_out, _) = names(&app, "inStock=false&sort=name").await;
    assert_eq!(sold_out, ["Bread knife", "Egg timer"]);

    let (found, _) = names(&app, "q=GRATER").await;
    assert_eq!(found, ["Cheese grater"]);
    let (described, _) = names(&app, "q=about%20dish").await;
    assert_eq!(described, ["Dish rack"], "the description is searched too");
    // Unescaped, `%` would match everything and `h_r` would match "Dish rack".
    let (percent, _) = names(&app, "q=%25").await;
    assert_eq!(percent, ["50% off Funnel"], "% matches literally");
    let (underscore, _) = names(&app, "q=h_r").await;
    assert!(underscore.is_empty(), "_ matches literally: {underscore:?}");
    let (literal, _) = names(&app, "q=s_p").await;
    assert_eq!(literal, ["Garlic press_pro"]);
    let (combined, _) = names(&app, "q=e&inStock=true&maxPriceCents=1000&sort=name").await;
    assert_eq!(combined, ["50% off Funnel", "Apple corer"]);
}

#[tokio::test]
async fn bad_listing_parameters_are_422() {
    let app = TestApp::spawn().await;
    for query in [
        "limit=0",
        "limit=101",
        "page=0",
        "limit=ten",
        "sort=price",
        "sort=-colour",
        "minPriceCents=-1",
        "minPriceCents=10&maxPriceCents=5",
        "inStock=maybe",
        "colour=red",
        &format!("q={}", "x".repeat(201)),
        "q=a%00b",
    ] {
        let response = app.get(&format!("/products?{query}")).send().await.unwrap();
        expect_problem(response, 422, "validation-failed").await;
    }
}
