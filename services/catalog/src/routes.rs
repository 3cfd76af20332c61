//! HTTP handlers: extract, call the product or reservation functions, shape the answer.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use serde::Deserialize;
use shop_contracts::{OrderId, ProductId, ReserveRequest};
use shop_http::{
    Admin, ApiError, FieldError, InternalCaller, OrderService, PageQuery, Problem,
    conditional::{entity_tags, not_modified},
    openapi::responses,
};

use crate::{
    AppState,
    models::{ProductResponse, Versioned},
    products::{self, Preconditions, ProductInput},
    repo::{ListFilter, Sort},
    reservations,
};

type State = web::Data<AppState>;

/// Longest search text.
const MAX_QUERY: usize = 200;

/// Registers every route of the service.
pub fn configure(state: State) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg| {
        cfg.app_data(state.clone())
            .route("/products", web::get().to(list_products))
            .route("/products", web::post().to(create_product))
            .route("/products/{id}", web::get().to(get_product))
            .route("/products/{id}", web::put().to(update_product))
            .route("/products/{id}", web::delete().to(delete_product))
            .route(
                "/products/{id}/stock-adjustments",
                web::post().to(adjust_stock),
            )
            .route(
                "/internal/reservations/{order_id}",
                web::post().to(reserve_stock),
            )
            .route(
                "/internal/reservations/{order_id}/release",
                web::post().to(release_stock),
            );
    }
}

fn with_etag(mut response: HttpResponse, versioned: &Versioned) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(&versioned.etag()) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Listing parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-based page (default 1).
    #[param(minimum = 1)]
    page: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Case-insensitive substring of the name or description (at most 200 characters).
    q: Option<String>,
    /// Lowest price, in minor units.
    #[param(minimum = 0)]
    min_price_cents: Option<i64>,
    /// Highest price, in minor units.
    #[param(minimum = 0)]
    max_price_cents: Option<i64>,
    /// Only products with (true) or without (false) stock. Stock in listings is advisory: it
    /// may lag sales by up to LIST_CACHE_TTL; a single product's stock is exact.
    in_stock: Option<bool>,
    /// `name`, `priceCents` or `createdAt`, `-` for descending (default `-createdAt`).
    sort: Option<String>,
}

impl ListQuery {
    fn into_filter(self) -> Result<ListFilter, ApiError> {
        let (page, limit) = PageQuery {
            page: self.page,
            limit: self.limit,
        }
        .validate()?;
        let mut errors = Vec::new();
        let q = self
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty());
        if q.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY) {
            errors.push(FieldError::new(
                "q",
                format!("must be at most {MAX_QUERY} characters"),
            ));
        } else if q.as_ref().is_some_and(|q| q.chars().any(char::is_control)) {
            errors.push(FieldError::new("q", "must not contain control characters"));
        }
        for (field, value) in [
            ("minPriceCents", self.min_price_cents),
            ("maxPriceCents", self.max_price_cents),
        ] {
            if value.is_some_and(|v| v < 0) {
                errors.push(FieldError::new(field, "must be zero or more"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_price_cents, self.max_price_cents)
            && min > max
        {
            errors.push(FieldError::new(
                "minPriceCents",
                "must not exceed maxPriceCents",
            ));
        }
        let sort = match self.sort.as_deref() {
            None => Some(Sort::CreatedDesc),
            Some(text) => Sort::parse(text),
        };
        if sort.is_none() {
            errors.push(FieldError::new(
                "sort",
                "must be name, priceCents or createdAt, optionally prefixed with -",
            ));
        }
        match sort {
            Some(sort) if errors.is_empty() => Ok(ListFilter {
                q,
                min_price_cents: self.min_price_cents,
                max_price_cents: self.max_price_cents,
                in_stock: self.in_stock,
                sort,
                page,
                limit,
            }),
            _ => Err(ApiError::validation(errors)),
        }
    }
}

/// List live products.
///
/// Deleted products are left out. Pages of `limit` products, sorted as `sort` asks; `q` searches
/// names and descriptions. Answers are cached and carry an ETag.
#[utoipa::path(get, path = "/products", tag = "products", params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = shop_contracts::Page<ProductResponse>),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn list_products(
    state: State,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().into_filter()?;
    let page = products::list(&state, filter).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(page))
}

/// Read one product.
///
/// Its ETag covers the whole representation, stock included: send it back in `If-None-Match` for
/// a 304, or in `If-Match` to guard an edit. A deleted product is 404.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id"),
           ("If-None-Match" = Option<String>, Header, description = "ETag(s) already held")),
    responses(
        (status = 200, description = "The product", body = ProductResponse,
         headers(("ETag" = String, description = "Strong entity tag"))),
        (status = 304, description = "Not modified since the ETag sent"),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such product, or deleted", content_type = "application/problem+json", body = Problem),
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_product(
    state: State,
    req: HttpRequest,
    id: web::Path<ProductId>,
) -> Result<HttpResponse, ApiError> {
    let entry = products::get(&state, *id).await?;
    let etag = entry.etag.to_str().unwrap_or_default();
    if not_modified(&req, etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, entry.etag.clone()))
            .finish());
    }
    let body = entry.body.clone().unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::ETAG, entry.etag.clone()))
        .body(body))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProductRequest {
    name: String,
    description: Option<String>,
    price_cents: i64,
    stock: i64,
}

/// Create a product (administrators).
///
/// Answers 201 with the product at version 1 and its `Location`.
#[utoipa::path(post, path = "/products", tag = "products", request_body = CreateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductResponse,
         headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator (checked before validation and preconditions)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn create_product(
    Admin(admin): Admin,
    state: State,
    body: shop_http::Json<CreateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = ProductInput {
        name: body.name,
        description: body.description,
        price_cents: body.price_cents,
        stock: Some(body.stock),
    };
    let versioned = products::create(&state, &admin, &input).await?;
    let response = HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/products/{}", versioned.product.id),
        ))
        .json(&versioned.product);
    Ok(with_etag(response, &versioned))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProductRequest {
    name: String,
    description: Option<String>,
    price_cents: i64,
    stock: Option<i64>,
    version: Option<i32>,
}

/// Replace a product's editable fields (administrators).
///
/// Guard the edit with `If-Match` (strict: any change, a sale included, makes it stale) or the
/// body's `version` (editable fields only). `stock` may be set only under a matching `If-Match`.
#[utoipa::path(put, path = "/products/{id}", tag = "products", request_body = UpdateProductRequest,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"),
           ("If-Match" = Option<String>, Header, description = "The ETag read, or *")),
    responses(
        (status = 200, description = "Updated", body = ProductResponse, headers(("ETag" = String))),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator (checked before validation and preconditions)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such product, or deleted", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Body `version` is stale (`version-conflict`, with `currentVersion`)", content_type = "application/problem+json", body = Problem),
        (status = 412, description = "If-Match is stale", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        (status = 428, description = "Neither If-Match nor version; or stock without If-Match", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn update_product(
    Admin(admin): Admin,
    state: State,
    req: HttpRequest,
    id: web::Path<ProductId>,
    body: shop_http::Json<UpdateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = ProductInput {
        name: body.name,
        description: body.description,
        price_cents: body.price_cents,
        stock: body.stock,
    };
    let preconditions = Preconditions {
        if_match: entity_tags(&req, header::IF_MATCH),
        version: body.version,
    };
    let versioned = products::update(&state, &admin, *id, &input, &preconditions).await?;
    Ok(with_etag(
        HttpResponse::Ok().json(&versioned.product),
        &versioned,
    ))
}

/// Delete a product (administrators).
///
/// Soft: readers get 404 from now on, reservations of it are refused with 409, and orders that
/// already hold it keep their lines.
#[utoipa::path(delete, path = "/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id"),
           ("If-Match" = Option<String>, Header, description = "Optional: the ETag read")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator (checked before validation and preconditions)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such product, or deleted", content_type = "application/problem+json", body = Problem),
        (status = 412, description = "If-Match is stale", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn delete_product(
    Admin(_admin): Admin,
    state: State,
    req: HttpRequest,
    id: web::Path<ProductId>,
) -> Result<HttpResponse, ApiError> {
    products::delete(&state, *id, entity_tags(&req, header::IF_MATCH).as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustmentRequest {
    delta: i64,
    reason: String,
}

/// Add or remove stock with a reason (administrators).
///
/// The change is recorded in the product's stock ledger; stock never goes below zero (409
/// `insufficient-stock`).
#[utoipa::path(post, path = "/products/{id}/stock-adjustments", tag = "products",
    request_body = StockAdjustmentRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "Adjusted", body = ProductResponse, headers(("ETag" = String))),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator (checked before validation and preconditions)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such product, or deleted", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Stock would go below zero (`insufficient-stock`, with `available`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn adjust_stock(
    Admin(admin): Admin,
    state: State,
    id: web::Path<ProductId>,
    body: shop_http::Json<StockAdjustmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let versioned = products::adjust_stock(&state, &admin, *id, body.delta, &body.reason).await?;
    Ok(with_etag(
        HttpResponse::Ok().json(&versioned.product),
        &versioned,
    ))
}

/// Reserve every line of an order, or none (order service only). Idempotent on the order
/// id: a repeat gets the first answer.
#[utoipa::path(post, path = "/internal/reservations/{order_id}", tag = "reservations",
    request_body = ReserveRequest,
    params(("order_id" = Uuid, Path, description = "Order id"),
           ("X-Internal-Token" = String, Header, description = "The internal credential"),
           ("X-Caller" = String, Header, description = "Must be `order`")),
    responses(
        (status = 200, description = "Reserved, with the names and prices reserved at", body = shop_contracts::Reservation),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Caller is not the order service", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "Short stock (`insufficient-stock`), deleted product (`product-unavailable`), or the order was released (`order-not-pending`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid lines; unknown product on `items[i].productId`", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn reserve_stock(
    _caller: InternalCaller<OrderService>,
    state: State,
    order_id: web::Path<OrderId>,
    body: shop_http::Json<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    let reservation = reservations::reserve(&state, *order_id, &body.items).await?;
    Ok(HttpResponse::Ok().json(reservation))
}

/// Give back an order's stock (order service only). Idempotent; for an order never reserved
/// it leaves a tombstone so a late reserve is refused.
#[utoipa::path(post, path = "/internal/reservations/{order_id}/release", tag = "reservations",
    params(("order_id" = Uuid, Path, description = "Order id"),
           ("X-Internal-Token" = String, Header, description = "The internal credential"),
           ("X-Caller" = String, Header, description = "Must be `order`")),
    responses(
        (status = 200, description = "Released (or already released)", body = shop_contracts::ReleaseOutcome),
        (status = 400, description = "Malformed product id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Caller is not the order service", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn release_stock(
    _caller: InternalCaller<OrderService>,
    state: State,
    order_id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(reservations::release(&state, *order_id).await?))
}
