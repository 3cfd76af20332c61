//! The catalog's API documents, generated from the handlers: the public one (merged at the
//! gateway) and the internal one (never published). Checked in under `proto-docs/`.

use shop_http::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop catalog", description = "Products and stock, as clients see them through the gateway."),
    paths(
        routes::list_products,
        routes::get_product,
        routes::create_product,
        routes::update_product,
        routes::delete_product,
        routes::adjust_stock,
    ),
    modifiers(&BearerAuth),
    tags((name = "products", description = "The product catalogue"))
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop catalog (internal)", description = "Reservations, for the order service only. Every call carries X-Internal-Token."),
    paths(routes::reserve_stock, routes::release_stock),
    tags((name = "reservations", description = "Stock held for orders"))
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
