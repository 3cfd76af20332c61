//! The checked-in API documents match the code (`make openapi` rewrites them).

use shop_testkit::{assert_document, operations};

#[test]
fn the_checked_in_documents_match_the_code() {
    assert_document(
        "proto-docs/openapi/payment.json",
        &payment_service::openapi::public_json(),
    );
    assert_document(
        "proto-docs/internal/payment.json",
        &payment_service::openapi::internal_json(),
    );
}

#[test]
fn the_public_document_lists_exactly_the_public_routes() {
    assert_eq!(
        operations(&payment_service::openapi::public_json()),
        ["GET /orders/{id}/payment"]
    );
    assert!(operations(&payment_service::openapi::internal_json()).is_empty());
}
