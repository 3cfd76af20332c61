//! HTTP handlers: extract, call the order, cart or payment functions, shape the answer.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use serde::Deserialize;
use shop_contracts::events::PaymentEvent;
use shop_http::{Admin, ApiError, FieldError, Identity, PageQuery, RequestContext, headers};
use uuid::Uuid;

use crate::{
    AppState, cart,
    error::OrderError,
    models::Status,
    orders, payments,
    placing::{self, Answer, Route, Source},
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
            .route("/cart", web::get().to(get_cart))
            .route("/cart", web::put().to(replace_cart))
            .route("/cart", web::delete().to(clear_cart))
            .route("/cart/items/{product_id}", web::get().to(get_cart_item))
            .route("/cart/items/{product_id}", web::put().to(put_cart_item))
            .route(
                "/cart/items/{product_id}",
                web::delete().to(delete_cart_item),
            )
            .route("/cart/checkout", web::post().to(checkout))
            .route(
                "/internal/orders/{id}/payment-events",
                web::post().to(report_payment),
            );
    }
}

fn respond(answer: Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type(if answer.status >= 400 {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OrderLineRequest {
    product_id: Uuid,
    quantity: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrderRequest {
    items: Vec<OrderLineRequest>,
}

async fn create_order(
    identity: Identity,
    state: State,
    context: RequestContext,
    req: HttpRequest,
    body: web::Json<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let items: Vec<(Uuid, i64)> = body
        .items
        .iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    let lines = placing::merge_lines(&items)?;
    let answer = placing::place(
        &state,
        &identity,
        &context,
        Route::Orders,
        Source::Lines(lines),
        key.as_deref(),
    )
    .await?;
    Ok(respond(answer))
}

async fn checkout(
    identity: Identity,
    state: State,
    context: RequestContext,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let answer = placing::place(
        &state,
        &identity,
        &context,
        Route::Checkout,
        Source::Cart,
        key.as_deref(),
    )
    .await?;
    Ok(respond(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListOrdersQuery {
    page: Option<i64>,
    limit: Option<i64>,
    status: Option<String>,
    user_id: Option<Uuid>,
}

async fn list_orders(
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

async fn get_order(
    identity: Identity,
    state: State,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::get(&state, &identity, *id).await?))
}

async fn get_timeline(
    identity: Identity,
    state: State,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::timeline(&state, &identity, *id).await?))
}

async fn cancel_order(
    identity: Identity,
    state: State,
    context: RequestContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(orders::cancel(&state, &identity, *id, &context).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetStatusRequest {
    status: Status,
}

async fn set_order_status(
    Admin(admin): Admin,
    state: State,
    context: RequestContext,
    id: web::Path<Uuid>,
    body: web::Json<SetStatusRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(orders::set_status(&state, &admin, *id, body.status, &context).await?))
}

async fn get_cart(identity: Identity, state: State) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cart::get(&state, &identity).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceCartRequest {
    items: Vec<OrderLineRequest>,
}

async fn replace_cart(
    identity: Identity,
    state: State,
    body: web::Json<ReplaceCartRequest>,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<(Uuid, i64)> = body
        .items
        .iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    Ok(HttpResponse::Ok().json(cart::replace(&state, &identity, &items).await?))
}

async fn get_cart_item(
    identity: Identity,
    state: State,
    product_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cart::get_item(&state, &identity, *product_id).await?))
}

async fn clear_cart(identity: Identity, state: State) -> Result<HttpResponse, ApiError> {
    cart::clear(&state, &identity).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CartItemRequest {
    quantity: i64,
}

async fn put_cart_item(
    identity: Identity,
    state: State,
    product_id: web::Path<Uuid>,
    body: web::Json<CartItemRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(cart::put_item(&state, &identity, *product_id, body.quantity).await?))
}

async fn delete_cart_item(
    identity: Identity,
    state: State,
    product_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    cart::delete_item(&state, &identity, *product_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn report_payment(
    state: State,
    req: HttpRequest,
    context: RequestContext,
    id: web::Path<Uuid>,
    body: web::Json<PaymentEvent>,
) -> Result<HttpResponse, ApiError> {
    if req
        .headers()
        .get(headers::CALLER)
        .and_then(|v| v.to_str().ok())
        != Some("payment")
    {
        return Err(OrderError::WrongCaller.into());
    }
    match payments::report(&state, *id, &body, &context).await? {
        payments::Reply::Accepted(status) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({"orderId": *id, "status": status})))
        }
        payments::Reply::NotPending(status) => Err(OrderError::NotPending { status }.into()),
    }
}
