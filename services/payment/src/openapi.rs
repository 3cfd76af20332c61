//! The payment service's API documents, generated from the handlers. It has no internal HTTP
//! API: its input is the `payments.requests` stream (see proto-docs/asyncapi.yaml).

use shop_http::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop payments", description = "Payments of orders, as clients see them through the gateway."),
    paths(routes::get_payment),
    modifiers(&BearerAuth),
    tags((name = "payments", description = "Simulated payments and their attempts"))
)]
struct PublicApi;

/// The public document, as pretty JSON.
pub fn public_json() -> String {
    shop_http::openapi::to_json(PublicApi::openapi())
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Shop payments (internal)",
    description = "The payment service serves no internal HTTP API: it takes its work from the payments.requests stream (proto-docs/asyncapi.yaml) and reports to the order service's internal API."
))]
struct InternalApi;

/// The internal document (no operations), as pretty JSON.
pub fn internal_json() -> String {
    shop_http::openapi::to_json(InternalApi::openapi())
}
