//! The user service's API documents, generated from the handlers: the public one (merged at
//! the gateway) and the internal one (never published). Checked in under `proto-docs/`.

use shop_http::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop users", description = "Accounts, logins and sessions, as clients see them through the gateway."),
    paths(
        routes::register,
        routes::login,
        routes::refresh,
        routes::logout,
        routes::get_me,
        routes::update_me,
        routes::change_password,
        routes::request_password_reset,
        routes::confirm_password_reset,
        routes::confirm_email,
        routes::resend_verification,
        routes::enrol_mfa,
        routes::confirm_mfa,
        routes::remove_mfa,
        routes::list_users,
        routes::update_user,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration and the caller's own account"),
        (name = "sessions", description = "Logins, token refresh and logout"),
        (name = "users", description = "Account administration (administrators only)")
    )
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop users (internal)", description = "Session status, for the gateway when Redis is away. Every call carries X-Internal-Token."),
    paths(routes::get_session),
    tags((name = "sessions", description = "Whether a session is live"))
)]
struct InternalApi;

/// The public document, as pretty JSON.
pub fn public_json() -> String {
    shop_http::openapi::to_json(PublicApi::openapi())
}

/// The internal document, as pretty JSON.
pub fn internal_json() -> String {
    shop_http::openapi::to_json(InternalApi::openapi())
}
