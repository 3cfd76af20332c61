//! The checked-in API documents match the code (`make openapi` rewrites them).

use shop_testkit::{assert_document, operations};

#[test]
fn the_checked_in_documents_match_the_code() {
    assert_document(
        "proto-docs/openapi/user.json",
        &user_service::openapi::public_json(),
    );
    assert_document(
        "proto-docs/internal/user.json",
        &user_service::openapi::internal_json(),
    );
}

#[test]
fn the_public_document_lists_exactly_the_public_routes() {
    assert_eq!(
        operations(&user_service::openapi::public_json()),
        [
            "DELETE /me/mfa",
            "GET /me",
            "GET /users",
            "PATCH /me",
            "PATCH /users/{id}",
            "POST /email-verification/confirm",
            "POST /login",
            "POST /logout",
            "POST /me/email-verification",
            "POST /me/mfa",
            "POST /me/mfa/confirm",
            "POST /me/password",
            "POST /password-reset",
            "POST /password-reset/confirm",
            "POST /refresh",
            "POST /register",
        ]
    );
    assert_eq!(
        operations(&user_service::openapi::internal_json()),
        ["GET /internal/sessions/{id}"]
    );
    assert!(
        operations(&user_service::openapi::internal_json())
            .iter()
            .all(|op| op.contains("/internal/"))
    );
}
