//! HTTP handlers: extract, call the order, cart or payment functions, shape the answer.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use shop_contracts::events::{
    PaymentEvent, PaymentReportAnswer, PaymentReportAnswers, PaymentReports,
};
use shop_contracts::{
    OrderId, OrderSummaries, OrderSummariesRequest, ProductId, ShippingAddress, UserId,
};
use shop_http::openapi::responses;
use shop_http::{Admin, ApiError, FieldError, Identity, PageQuery, Problem, RequestContext};
use shop_http::{InternalCaller, PaymentService, UserService};

use crate::{
    AppState, address, cart,
    cart::{CartLine, CartResponse},
    error::OrderError,
    guest::{self, CartOwner},
    lifecycle::Shipment,
    models::{OrderResponse, RefundList, RefundResponse, Status, TimelineEntry},
    orders, payments,
    placing::{self, Answer, Route, Source},
    refunds::{self, RefundRequest},
    repo::OrderFilter,
};

type State = web::Data<AppState>;

/// Registers every route of the service.
pub fn configure(state: State) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg| {
        cfg.app_data(state.clone())
            .route("/orders", web::post().to(create_order))
            .route("/orders", web::get().to(list_orders))
            .route("/orders/{id}", web::get().to(get_order))
            .route("/orders/{id}/timeline", web::get().to(get_timeline))
            .route("/orders/{id}/cancel", web::post().to(cancel_order))
            .route("/orders/{id}/status", web::put().to(set_order_status))
            .route("/orders/{id}/refunds", web::post().to(create_refund))
            .route("/orders/{id}/refunds", web::get().to(list_refunds))
            .route("/me/address", web::get().to(get_address))
            .route("/me/address", web::put().to(put_address))
            .route("/cart", web::get().to(get_cart))
            .route("/cart", web::put().to(replace_cart))
            .route("/cart", web::delete().to(clear_cart))
            .route("/cart/items/{productId}", web::get().to(get_cart_item))
            .route("/cart/items/{productId}", web::put().to(put_cart_item))
            .route(
                "/cart/items/{productId}",
                web::delete().to(delete_cart_item),
            )
            .route("/cart/checkout", web::post().to(checkout))
            .route("/cart/merge", web::post().to(merge_cart))
            .route("/guest-carts", web::post().to(create_guest_cart))
            .route(
                "/internal/orders/{id}/payment-events",
                web::post().to(report_payment),
            )
            .route("/internal/payment-reports", web::post().to(report_payments))
            .route("/internal/order-summaries", web::post().to(order_summaries));
    }
}

fn respond(answer: Answer) -> HttpResponse {
    let mut response = HttpResponse::build(answer.status);
    response.content_type(if answer.status.as_u16() >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    });
    if let Some(location) = answer.location {
        response.insert_header(("Location", location));
    }
    if let Some(secs) = answer.retry_after {
        response.insert_header(("Retry-After", secs.to_string()));
    }
    response.body(answer.body.to_string())
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters, if present.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )]));
    }
    Ok(Some(key.to_owned()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderLineRequest {
    product_id: ProductId,
    quantity: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOrderRequest {
    items: Vec<OrderLineRequest>,
    /// Where to ship it; without one, your default address (`PUT /me/address`) if you have one.
    shipping_address: Option<ShippingAddress>,
}

/// `POST /cart/checkout` body (optional).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckoutRequest {
    /// Where to ship it; without one, your default address (`PUT /me/address`) if you have one.
    shipping_address: Option<ShippingAddress>,
}

/// The request's address, validated under `shippingAddress.`, with `more` problems found in
/// the rest of the body: every problem in one 422.
fn with_address(
    address: Option<&ShippingAddress>,
    more: Result<(), OrderError>,
) -> Result<Option<serde_json::Value>, OrderError> {
    const PREFIX: &str = "shippingAddress.";
    let mut errors = match more {
        Ok(()) => Vec::new(),
        Err(OrderError::Validation(errors)) => errors,
        Err(other) => return Err(other),
    };
    let address = match address.map(|a| address::validated(a, PREFIX)).transpose() {
        Ok(address) => address,
        Err(OrderError::Validation(problems)) => {
            errors.extend(problems);
            None
        }
        Err(other) => return Err(other),
    };
    if errors.is_empty() {
        Ok(address)
    } else {
        Err(OrderError::Validation(errors))
    }
}

/// Place an order.
///
/// Stock of every line is reserved at once, at the current prices, or none is; the order is then
/// pending and its payment follows asynchronously (watch `GET /ws` or the order). With an
/// `Idempotency-Key`, a repeat of the same body gets the first answer.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrderRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat with the same body gets the same answer")),
    responses(
        (status = 201, description = "Placed: the order is pending with its prices and total", body = OrderResponse, headers(("Location" = String))),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Short stock (`insufficient-stock`, with `productId`), a deleted product (`product-unavailable`), the key used with another body (`idempotency-key-reused`) or still running (`idempotency-in-progress`, Retry-After: 1)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "REQUIRE_VERIFIED_EMAIL is on and the token does not say the email is verified (`email-unverified`): verify it, then sign in again or refresh", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid lines (an unknown product on `items[i].productId`) or address fields (`shippingAddress.country`, ...)", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "The catalog is unavailable: the order failed and nothing is held; retry (the same key may be reused)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
    ))]
pub async fn create_order(
    identity: Identity,
    state: State,
    context: RequestContext,
    req: HttpRequest,
    body: shop_http::Json<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let items: Vec<(ProductId, i64)> = body
        .items
        .iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    // Bad lines and a bad address are reported together; with either, nothing is placed.
    let (lines, line_problems) = match placing::merge_lines(&items) {
        Ok(lines) => (lines, Ok(())),
        Err(problems) => (Vec::new(), Err(problems)),
    };
    let address = with_address(body.shipping_address.as_ref(), line_problems)?;
    let request = placing::Request {
        route: Route::Orders,
        source: Source::Lines(lines),
        address,
        key: key.as_deref(),
    };
    let answer = placing::place(&state, &identity, &context, request).await?;
    Ok(respond(answer))
}

/// Turn the cart into an order.
///
/// Places the cart's lines as `POST /orders` would (an `Idempotency-Key` works the same). The
/// ordered lines leave the cart only when the order is pending; lines added meanwhile stay.
/// The body is optional: a `shippingAddress`, else your default address is used.
#[utoipa::path(post, path = "/cart/checkout", tag = "cart", security(("bearer" = [])),
    request_body(content = Option<CheckoutRequest>, description = "Optional: where to ship it", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat with the same body gets the same answer")),
    responses(
        (status = 201, description = "Placed: the order is pending with its prices and total", body = OrderResponse, headers(("Location" = String))),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Short stock (`insufficient-stock`, with `productId`), a deleted product (`product-unavailable`), the key used with another body (`idempotency-key-reused`) or still running (`idempotency-in-progress`, Retry-After: 1)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "REQUIRE_VERIFIED_EMAIL is on and the token does not say the email is verified (`email-unverified`): verify it, then sign in again or refresh", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid lines (an unknown product on `items[i].productId`) or address fields (`shippingAddress.country`, ...)", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "The catalog is unavailable: the order failed and nothing is held; retry (the same key may be reused)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
    ))]
pub async fn checkout(
    identity: Identity,
    state: State,
    context: RequestContext,
    req: HttpRequest,
    body: shop_http::OptionalJson<CheckoutRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let address = body.0.and_then(|b| b.shipping_address);
    let request = placing::Request {
        route: Route::Checkout,
        source: Source::Cart,
        address: with_address(address.as_ref(), Ok(()))?,
        key: key.as_deref(),
    };
    let answer = placing::place(&state, &identity, &context, request).await?;
    Ok(respond(answer))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListOrdersQuery {
    /// 1-based page (default 1).
    page: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
    /// Only orders in this status (`reserving` and `failed` are listed only this way).
    status: Option<String>,
    /// Administrators: only this user's orders.
    user_id: Option<UserId>,
}

/// List orders, newest first.
///
/// Your own, or everyone's for an administrator. Orders still reserving or failed are listed only
/// when asked for by `status`.
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), params(ListOrdersQuery),
    responses(
        (status = 200, description = "A page of orders", body = shop_contracts::Page<OrderResponse>),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn list_orders(
    identity: Identity,
    state: State,
    query: web::Query<ListOrdersQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let (page, limit) = PageQuery {
        page: query.page,
        limit: query.limit,
    }
    .validate()?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            ApiError::validation(vec![FieldError::new("status", "is not an order status")])
        })?),
    };
    let filter = OrderFilter {
        user_id: query.user_id,
        status,
        page,
        limit,
    };
    Ok(HttpResponse::Ok().json(orders::list(&state, &identity, filter).await?))
}

/// Read an order.
///
/// Yours, or any for an administrator; another user's order is 404. `payment` says what the
/// payment service last reported.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_order(
    identity: Identity,
    state: State,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::get(&state, &identity, *id).await?))
}

/// Every status change of an order.
///
/// Oldest first: when, who (`user`, `admin`, `payment` or `system`) and why.
#[utoipa::path(get, path = "/orders/{id}/timeline", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Oldest first", body = Vec<TimelineEntry>),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_timeline(
    identity: Identity,
    state: State,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::timeline(&state, &identity, *id).await?))
}

/// Cancel your pending order.
///
/// Its stock comes back (even if the catalog is down right now, once it returns) and its payment
/// stops. Any other status is 409 with the order's status.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Not pending (`illegal-transition`, with the order's `orderStatus`)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn cancel_order(
    identity: Identity,
    state: State,
    context: RequestContext,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::cancel(&state, &identity, *id, &context).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetStatusRequest {
    status: Status,
    /// With `shipped`: who carries the parcel (1-100 characters).
    carrier: Option<String>,
    /// With `shipped`: the parcel's tracking number (1-100 characters).
    tracking_number: Option<String>,
}

/// The shipment a status change carries; each field 1 to 100 characters without control
/// characters.
fn shipment(body: &SetStatusRequest) -> Result<Shipment, OrderError> {
    let field = |name: &str, value: &Option<String>| {
        let value = value.as_deref().map(str::trim);
        match value {
            Some(v)
                if v.is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control) =>
            {
                Err(FieldError::new(name, "must be 1 to 100 characters"))
            }
            _ => Ok(value.map(str::to_owned)),
        }
    };
    let carrier = field("carrier", &body.carrier);
    let tracking_number = field("trackingNumber", &body.tracking_number);
    match (carrier, tracking_number) {
        (Ok(carrier), Ok(tracking_number)) => Ok(Shipment {
            carrier,
            tracking_number,
        }),
        (carrier, tracking) => Err(OrderError::Validation(
            [carrier.err(), tracking.err()]
                .into_iter()
                .flatten()
                .collect(),
        )),
    }
}

/// Move a paid order on (administrators).
///
/// Fulfilment only: `paid → shipped → delivered`; any other change is 409 with the order's
/// status. Shipping needs the order to have an address (409 `address-required`) and may say
/// how the parcel travels (`carrier`, `trackingNumber`: shown on the order and carried by
/// `order.shipped`).
#[utoipa::path(put, path = "/orders/{id}/status", tag = "orders", request_body = SetStatusRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Moved", body = OrderResponse),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Not allowed from the current status (`illegal-transition`; a carrier or tracking number with anything but `shipped` too), or shipping an order without an address (`address-required`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn set_order_status(
    Admin(admin): Admin,
    state: State,
    context: RequestContext,
    id: web::Path<OrderId>,
    body: shop_http::Json<SetStatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let shipment = shipment(&body)?;
    Ok(HttpResponse::Ok()
        .json(orders::set_status(&state, &admin, *id, body.status, shipment, &context).await?))
}

/// Refund part or all of an order (administrators).
///
/// On a paid, shipped or delivered order: accepted at once (`pending`) and carried out by the
/// payment service, which reports back (`payment.refunded` on the owner's socket; the last
/// captured cent refunded moves the order to `refunded`). Never more than captured less refunds
/// made or under way, however many run at once. With an `Idempotency-Key`, a repeat of the same
/// body gets the first answer; a refused request keeps nothing, its key included.
#[utoipa::path(post, path = "/orders/{id}/refunds", tag = "orders", request_body = RefundRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat with the same body gets the same answer")),
    responses(
        (status = 201, description = "Accepted: pending until the payment service carries it out", body = RefundResponse, headers(("Location" = String))),
        (status = 200, description = "A repeat of an accepted request with its `Idempotency-Key`: the first answer", body = RefundResponse),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "More than is left to refund (`refund-exceeds-captured`, with `refundableCents`), an order not paid, shipped or delivered (`illegal-transition`), or the key used with another body (`idempotency-key-reused`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields (`amountCents` at least 1, `reason` 1-500 characters)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn create_refund(
    Admin(admin): Admin,
    state: State,
    context: RequestContext,
    req: HttpRequest,
    id: web::Path<OrderId>,
    body: shop_http::Json<RefundRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let accepted = refunds::request(&state, &admin, *id, &body, key.as_deref(), &context).await?;
    let mut response = if accepted.replayed {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    if let Some(refund) = accepted.refund["id"].as_str() {
        response.insert_header(("Location", format!("/orders/{}/refunds#{refund}", *id)));
    }
    Ok(response.json(accepted.refund))
}

/// An order's refunds (its owner, administrators).
///
/// Oldest first, with what the payment captured, what was refunded and what is left to refund.
#[utoipa::path(get, path = "/orders/{id}/refunds", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The refunds", body = RefundList),
        (status = 400, description = "Malformed id (`invalid-id`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn list_refunds(
    identity: Identity,
    state: State,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(refunds::list(&state, &identity, *id).await?))
}

/// Your default shipping address.
///
/// Used by `POST /orders` and checkout when they carry no `shippingAddress`.
#[utoipa::path(get, path = "/me/address", tag = "orders", security(("bearer" = [])),
    responses(
        (status = 200, description = "The address", body = ShippingAddress),
        (status = 404, description = "None set yet", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_address(identity: Identity, state: State) -> Result<HttpResponse, ApiError> {
    let address = address::default_for(&state, identity.user_id)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(HttpResponse::Ok().json(address))
}

/// Set your default shipping address.
///
/// Validated field by field (country: ISO 3166-1 alpha-2, upper case). Orders placed before
/// keep the address they were placed with.
#[utoipa::path(put, path = "/me/address", tag = "orders", request_body = ShippingAddress, security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = ShippingAddress),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, each on its own (`postalCode`, `country`, ...)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn put_address(
    identity: Identity,
    state: State,
    body: shop_http::Json<ShippingAddress>,
) -> Result<HttpResponse, ApiError> {
    address::set_default(&state, identity.user_id, &body).await?;
    Ok(HttpResponse::Ok().json(body.into_inner()))
}

/// Your cart.
///
/// Signed in, the account's cart; with `Cart-Token` instead of a login, that guest cart.
/// Lines kept until checkout, each a product and a quantity; an empty cart has no lines.
#[utoipa::path(get, path = "/cart", tag = "cart", security(("bearer" = []), ("cartToken" = [])),
    responses(
        (status = 200, description = "The cart", body = CartResponse),
        (status = 400, description = "A `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_cart(owner: CartOwner, state: State) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cart::get(&state, owner.0).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCartRequest {
    items: Vec<OrderLineRequest>,
}

/// Replace your whole cart.
///
/// Lines of one product add up; at most 50 lines, quantities 1 to 1000. `{"items": []}` empties it.
#[utoipa::path(put, path = "/cart", tag = "cart", request_body = ReplaceCartRequest, security(("bearer" = []), ("cartToken" = [])),
    responses(
        (status = 200, description = "The new cart", body = CartResponse),
        (status = 400, description = "Malformed id (`invalid-id`), malformed JSON (`malformed-json`), or a `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn replace_cart(
    owner: CartOwner,
    state: State,
    body: shop_http::Json<ReplaceCartRequest>,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<(ProductId, i64)> = body
        .items
        .iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    Ok(HttpResponse::Ok().json(cart::replace(&state, owner.0, &items).await?))
}

/// One line of your cart.
///
/// 404 when the product is not in the cart.
#[utoipa::path(get, path = "/cart/items/{productId}", tag = "cart", security(("bearer" = []), ("cartToken" = [])),
    params(("productId" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The line", body = CartLine),
        (status = 400, description = "Malformed id (`invalid-id`), malformed JSON (`malformed-json`), or a `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_cart_item(
    owner: CartOwner,
    state: State,
    product_id: web::Path<ProductId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cart::get_item(&state, owner.0, *product_id).await?))
}

/// Empty your cart.
///
/// Answers 204 whether or not it held anything.
#[utoipa::path(delete, path = "/cart", tag = "cart", security(("bearer" = []), ("cartToken" = [])),
    responses(
        (status = 204, description = "Emptied"),
        (status = 400, description = "A `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn clear_cart(owner: CartOwner, state: State) -> Result<HttpResponse, ApiError> {
    cart::clear(&state, owner.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemRequest {
    quantity: i64,
}

/// Set a product's quantity in your cart.
///
/// Adds the line if it is new. Quantities 1 to 1000; a cart holds at most 50 lines. The product
/// is not checked or reserved until checkout.
#[utoipa::path(put, path = "/cart/items/{productId}", tag = "cart", request_body = CartItemRequest, security(("bearer" = []), ("cartToken" = [])),
    params(("productId" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The cart", body = CartResponse),
        (status = 400, description = "Malformed id (`invalid-id`), malformed JSON (`malformed-json`), or a `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn put_cart_item(
    owner: CartOwner,
    state: State,
    product_id: web::Path<ProductId>,
    body: shop_http::Json<CartItemRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cart::put_item(&state, owner.0, *product_id, body.quantity).await?))
}

/// Remove a product from your cart.
///
/// 404 when the product was not in the cart.
#[utoipa::path(delete, path = "/cart/items/{productId}", tag = "cart", security(("bearer" = []), ("cartToken" = [])),
    params(("productId" = Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id (`invalid-id`), malformed JSON (`malformed-json`), or a `Cart-Token` that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order, or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn delete_cart_item(
    owner: CartOwner,
    state: State,
    product_id: web::Path<ProductId>,
) -> Result<HttpResponse, ApiError> {
    cart::delete_item(&state, owner.0, *product_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A guest cart's token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestCartResponse {
    /// Send it as `Cart-Token` to the cart routes instead of a login; keep it secret. It
    /// lives 30 days from its last use, and ends when merged.
    cart_token: String,
}

/// Start a guest cart.
///
/// For a visitor who has not signed in: the cart routes take the answered token as
/// `Cart-Token`; checkout still needs a login, and `POST /cart/merge` moves the lines into the
/// account's cart. No request body.
#[utoipa::path(post, path = "/guest-carts", tag = "cart",
    responses(
        (status = 201, description = "A new, empty guest cart", body = GuestCartResponse),
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn create_guest_cart(state: State) -> Result<HttpResponse, ApiError> {
    let cart_token = guest::create(&state).await?;
    Ok(HttpResponse::Created().json(GuestCartResponse { cart_token }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MergeCartRequest {
    /// The guest cart's token.
    cart_token: String,
}

/// Merge a guest cart into your cart.
///
/// Product by product: quantities add up, capped at 1000 a line; a line that would be the
/// cart's 51st is dropped, and so is a product no longer sold; each such line is listed in
/// `notes`. The guest cart ends: merging its token again (or at the same moment) is
/// `invalid-token`.
#[utoipa::path(post, path = "/cart/merge", tag = "cart", request_body = MergeCartRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Your cart after the merge, and what it could not keep as it was", body = guest::MergeResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`), or a cart token that is unknown, merged or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Missing, unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "The catalog (asked whether the guest's products still sell) or the database is unavailable; nothing was merged", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
    ))]
pub async fn merge_cart(
    identity: Identity,
    state: State,
    context: RequestContext,
    body: shop_http::Json<MergeCartRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(guest::merge(&state, identity.user_id, &body.cart_token, &context).await?))
}

/// Report a payment attempt or outcome (payment service only; X-Caller: payment).
/// Idempotent per (order, attempt, outcome): a repeat gets the first answer.
#[utoipa::path(post, path = "/internal/orders/{id}/payment-events", tag = "payments",
    request_body = shop_contracts::events::PaymentEvent,
    params(("id" = Uuid, Path, description = "Order id"),
           ("X-Internal-Token" = String, Header, description = "The internal credential"),
           ("X-Caller" = String, Header, description = "Must be `payment`")),
    responses(
        (status = 200, description = "Recorded; the order's status after it", body = PaymentEventAnswer),
        (status = 400, description = "Malformed id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Caller is not the payment service", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such order", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "The order is no longer pending (`order-not-pending`, with the order's `orderStatus`): a success must be refunded", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn report_payment(
    _caller: InternalCaller<PaymentService>,
    state: State,
    context: RequestContext,
    id: web::Path<OrderId>,
    body: shop_http::Json<PaymentEvent>,
) -> Result<HttpResponse, ApiError> {
    match payments::report(&state, *id, &body, &context).await? {
        payments::Reply::Accepted(status) => Ok(HttpResponse::Ok().json(PaymentEventAnswer {
            order_id: *id,
            status,
        })),
        payments::Reply::NotPending(status) => Err(OrderError::NotPending { status }.into()),
        payments::Reply::Unknown => Err(OrderError::NotFound.into()),
    }
}

/// Report many payment attempts and outcomes at once (payment service only; X-Caller:
/// payment), each order's in the order they happened, recorded in one transaction. Each is
/// idempotent per (order, attempt, outcome) and answered as the single-report route would.
#[utoipa::path(post, path = "/internal/payment-reports", tag = "payments",
    request_body = PaymentReports,
    params(("X-Internal-Token" = String, Header, description = "The internal credential"),
           ("X-Caller" = String, Header, description = "Must be `payment`")),
    responses(
        (status = 200, description = "Every report recorded or refused, one answer each in order: `status` 200 recorded, 404 no such order, 409 no longer pending (a success must be refunded)", body = PaymentReportAnswers),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Caller is not the payment service", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors` (nothing recorded)", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn report_payments(
    _caller: InternalCaller<PaymentService>,
    state: State,
    context: RequestContext,
    body: shop_http::Json<PaymentReports>,
) -> Result<HttpResponse, ApiError> {
    let (replies, refunds) =
        payments::report_many(&state, &body.reports, &body.refunds, &context).await?;
    let answers = body
        .reports
        .iter()
        .zip(replies)
        .map(|(report, reply)| PaymentReportAnswer {
            order_id: report.order_id,
            attempt_no: report.event.attempt_no,
            outcome: report.event.outcome,
            status: reply.code(),
            order_status: reply.status().map(|s| s.as_str().to_owned()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PaymentReportAnswers { answers, refunds }))
}

/// Orders as their mails show them, many at once, whoever owns them (user service only;
/// X-Caller: user): one statement for the whole batch. Unknown ids are left out.
#[utoipa::path(post, path = "/internal/order-summaries", tag = "mail",
    request_body = OrderSummariesRequest,
    params(("X-Internal-Token" = String, Header, description = "The internal credential"),
           ("X-Caller" = String, Header, description = "Must be `user`")),
    responses(
        (status = 200, description = "The orders found, lines in their order", body = OrderSummaries),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Caller is not the user service", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "More ids than allowed (200), on `orderIds`", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn order_summaries(
    _caller: InternalCaller<UserService>,
    state: State,
    body: shop_http::Json<OrderSummariesRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::summaries(&state, &body.order_ids).await?))
}

/// What a recorded payment report answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEventAnswer {
    order_id: OrderId,
    status: Status,
}
