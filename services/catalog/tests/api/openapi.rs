//! The checked-in API documents match the code (`make openapi` rewrites them).

use shop_testkit::{assert_document, operations};

#[test]
fn the_checked_in_documents_match_the_code() {
    assert_document(
        "proto-docs/openapi/catalog.json",
        &catalog_service::openapi::public_json(),
    );
    assert_document(
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
