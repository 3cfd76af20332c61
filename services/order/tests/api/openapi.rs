//! The checked-in API documents match the code (`make openapi` rewrites them).

use shop_testkit::{assert_document, operations};

#[test]
fn the_checked_in_documents_match_the_code() {
    assert_document(
        "proto-docs/openapi/order.json",
        &order_service::openapi::public_json(),
    );
    assert_document(
        "proto-docs/internal/order.json",
        &order_service::openapi::internal_json(),
    );
}

#[test]
fn the_public_document_lists_exactly_the_public_routes() {
    assert_eq!(
        operations(&order_service::openapi::public_json()),
        [
            "DELETE /cart",
            "DELETE /cart/items/{productId}",
            "GET /cart",
            "GET /cart/items/{productId}",
            "GET /me/address",
            "GET /orders",
            "GET /orders/{id}",
            "GET /orders/{id}/refunds",
            "GET /orders/{id}/timeline",
            "POST /cart/checkout",
            "POST /cart/merge",
            "POST /guest-carts",
            "POST /orders",
            "POST /orders/{id}/cancel",
            "POST /orders/{id}/refunds",
            "PUT /cart",
            "PUT /cart/items/{productId}",
            "PUT /me/address",
            "PUT /orders/{id}/status",
        ]
    );
    assert_eq!(
        operations(&order_service::openapi::internal_json()),
        [
            "POST /internal/order-summaries",
            "POST /internal/orders/{id}/payment-events",
            "POST /internal/payment-reports"
        ]
    );
}
