//! One public API document, merged at the gateway, and its offline Swagger UI.

use std::collections::BTreeSet;

use serde_json::Value;
use shop_testkit::{TestApp, assert_document, operations};

fn public_json() -> String {
    gateway::docs::public_json().expect("the service documents merge")
}

/// The operations of README's public API table (DESIGN.md's, one operation per line).
fn readme_routes() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let start = readme.find("<!-- routes:start -->").expect("routes table");
    let end = readme
        .find("<!-- routes:end -->")
        .expect("routes table end");
    let mut routes: Vec<String> = readme[start..end]
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| Method"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            format!("{} {}", cells[1], cells[2])
        })
        .collect();
    routes.sort();
    routes
}

#[test]
fn the_checked_in_public_document_matches_the_code() {
    assert_document("proto-docs/openapi/public.json", &public_json());
}

#[test]
fn the_public_document_lists_exactly_the_routes_of_the_api_table() {
    let table = readme_routes();
    assert_eq!(table.len(), 50, "{table:?}");
    assert_eq!(operations(&public_json()), table);

    // And the gateway serves exactly those: its proxy allowlist plus its own routes.
    let mut served: Vec<String> = gateway::routes::ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .chain(
            [
                "GET /",
                "GET /assets/{file}",
                "GET /api",
                "GET /api/openapi.json",
                "GET /healthz",
                "GET /readyz",
                "GET /ws",
                "POST /ws/ticket",
            ]
            .map(String::from),
        )
        .collect();
    served.sort();
    assert_eq!(served, table);
}

#[test]
fn every_operation_documents_its_errors() {
    let doc: Value = serde_json::from_str(&public_json()).unwrap();
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(!public_json().contains("/internal/"));
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            if !matches!(path.as_str(), "/healthz" | "/readyz") {
                assert!(has("429"), "{name}: 429");
                let headers = &responses["429"]["headers"];
                for header in ["Retry-After", "RateLimit-Limit", "RateLimit-Remaining"] {
                    assert!(headers[header].is_object(), "{name}: 429 {header}");
                }
            }
            if operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()))
            {
                assert!(has("401"), "{name}: 401");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{name}: {status}");
                }
            }
            if path.contains('{') {
                assert!(has("400") || has("404"), "{name}: bad ids");
            }
            for (status, response) in responses {
                let probe = matches!(path.as_str(), "/healthz" | "/readyz");
                if !probe && (status.starts_with('4') || status.starts_with('5')) {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{name}: {status} is problem+json"
                    );
                }
            }
        }
    }
}

/// `src="..."` and `href="..."` values of a page.
fn links(html: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            if let Some(end) = rest.find('"') {
                found.insert(rest[..end].to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn swagger_ui_and_its_assets_load_from_the_gateway_alone() {
    let app = TestApp::spawn().await;
    let page = app.get("/api").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.unwrap();
    let assets = links(&html);
    assert!(assets.len() >= 4, "{assets:?}");
    for asset in &assets {
        assert!(asset.starts_with("/api/"), "{asset} is not the gateway's");
        let response = app.get(asset).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    // Swagger UI is told to fetch our document and nothing else (no online validator).
    let initializer = app
        .get("/api/swagger-initializer.js")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/api/openapi.json"), "{initializer}");
    assert!(
        initializer.contains("\"validatorUrl\": \"none\"")
            || initializer.contains("\"validatorUrl\":\"none\""),
        "{initializer}"
    );
    assert!(!initializer.contains("http://") && !initializer.contains("https://"));
    assert!(!html.contains("http://") && !html.contains("https://"));

    let served: Value = app
        .get("/api/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served,
        serde_json::from_str::<Value>(&public_json()).unwrap()
    );
    assert_eq!(
        app.get("/api/nothing.js").send().await.unwrap().status(),
        404
    );
    let home = app.get("/").send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(
        home.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(home.text().await.unwrap().contains("href=\"/api\""));
}
