//! The order service's API documents, generated from the handlers: the public one (merged at
//! the gateway) and the internal one (never published). Checked in under `proto-docs/`.

use shop_http::openapi::{BearerAuth, CartTokenAuth};
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop orders", description = "Carts and orders, as clients see them through the gateway."),
    paths(
        routes::create_order,
        routes::list_orders,
        routes::get_order,
        routes::get_timeline,
        routes::cancel_order,
        routes::set_order_status,
        routes::create_refund,
        routes::list_refunds,
        routes::get_address,
        routes::put_address,
        routes::get_cart,
        routes::replace_cart,
        routes::clear_cart,
        routes::get_cart_item,
        routes::put_cart_item,
        routes::delete_cart_item,
        routes::checkout,
        routes::create_guest_cart,
        routes::merge_cart,
    ),
    modifiers(&BearerAuth, &CartTokenAuth),
    tags((name = "orders", description = "Orders and their lifecycle"), (name = "cart", description = "The cart and checkout"))
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shop orders (internal)", description = "Payment reports, for the payment service only, and orders for the user service's mail. Every call carries X-Internal-Token."),
    paths(routes::report_payment, routes::report_payments, routes::order_summaries),
    tags((name = "payments", description = "What the payment service reports"), (name = "mail", description = "What the user service mails"))
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
