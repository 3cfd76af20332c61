//! The checked-in API documents match the code (`make openapi` rewrites them).

use serde_json::Value;

fn check(relative: &str, generated: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{generated}\n")).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "{relative} does not match the code; run `make openapi` and commit the result"
    );
}

fn operations(json: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(json).unwrap();
    let mut ops: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    ops.sort();
    ops
}

#[test]
fn the_checked_in_documents_match_the_code() {
    check(
        "proto-docs/openapi/catalog.json",
        &catalog_service::openapi::public_json(),
    );
    check(
        "proto-docs/internal/catalog.json",
        &catalog_service::openapi::internal_json(),
    );
}

#[test]
fn the_public_document_lists_exactly_the_public_routes() {
    assert_eq!(
        operations(&catalog_service::openapi::public_json()),
        [
            "DELETE /products/{id}",
            "GET /products",
            "GET /products/{id}",
            "POST /products",
            "POST /products/{id}/stock-adjustments",
            "PUT /products/{id}",
        ]
    );
    assert!(
        operations(&catalog_service::openapi::internal_json())
            .iter()
            .all(|op| op.contains("/internal/"))
    );
}
