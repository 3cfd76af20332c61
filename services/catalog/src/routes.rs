//! HTTP handlers: extract, call the product or reservation functions, shape the answer.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use serde::Deserialize;
use shop_contracts::ReserveRequest;
use shop_http::{Admin, ApiError, FieldError, PageQuery, headers};
use uuid::Uuid;

use crate::{
    AppState,
    models::Versioned,
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

/// The entity tags of a conditional header (`None` when absent).
fn entity_tags(req: &HttpRequest, name: header::HeaderName) -> Option<Vec<String>> {
    let values: Vec<String> = req
        .headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .collect();
    (!values.is_empty()).then_some(values)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    page: Option<i64>,
    limit: Option<i64>,
    q: Option<String>,
    min_price_cents: Option<i64>,
    max_price_cents: Option<i64>,
    in_stock: Option<bool>,
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

async fn list_products(
    state: State,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().into_filter()?;
    let page = products::list(&state, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn get_product(
    state: State,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let versioned = products::get(&state, *id).await?;
    let current = versioned.etag();
    // Weak comparison, as RFC 9110 asks for If-None-Match.
    let unchanged = entity_tags(&req, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.iter()
            .any(|t| t == "*" || t.trim_start_matches("W/") == current)
    });
    if unchanged {
        return Ok(with_etag(HttpResponse::NotModified().finish(), &versioned));
    }
    Ok(with_etag(
        HttpResponse::Ok().json(&versioned.product),
        &versioned,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateProductRequest {
    name: String,
    description: Option<String>,
    price_cents: i64,
    stock: i64,
}

async fn create_product(
    Admin(admin): Admin,
    state: State,
    body: web::Json<CreateProductRequest>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateProductRequest {
    name: String,
    description: Option<String>,
    price_cents: i64,
    stock: Option<i64>,
    version: Option<i32>,
}

async fn update_product(
    Admin(admin): Admin,
    state: State,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<UpdateProductRequest>,
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

async fn delete_product(
    Admin(_admin): Admin,
    state: State,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    products::delete(&state, *id, entity_tags(&req, header::IF_MATCH).as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockAdjustmentRequest {
    delta: i64,
    reason: String,
}

async fn adjust_stock(
    Admin(admin): Admin,
    state: State,
    id: web::Path<Uuid>,
    body: web::Json<StockAdjustmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let versioned = products::adjust_stock(&state, &admin, *id, body.delta, &body.reason).await?;
    Ok(with_etag(
        HttpResponse::Ok().json(&versioned.product),
        &versioned,
    ))
}

/// Reservations move stock for orders: only the order service may call them.
fn require_order_service(req: &HttpRequest) -> Result<(), ApiError> {
    match req
        .headers()
        .get(headers::CALLER)
        .and_then(|v| v.to_str().ok())
    {
        Some("order") => Ok(()),
        _ => Err(ApiError::forbidden()),
    }
}

async fn reserve_stock(
    state: State,
    req: HttpRequest,
    order_id: web::Path<Uuid>,
    body: web::Json<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    require_order_service(&req)?;
    let reservation = reservations::reserve(&state, *order_id, &body.items).await?;
    Ok(HttpResponse::Ok().json(reservation))
}

async fn release_stock(
    state: State,
    req: HttpRequest,
    order_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_order_service(&req)?;
    Ok(HttpResponse::Ok().json(reservations::release(&state, *order_id).await?))
}
