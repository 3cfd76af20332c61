//! HTTP handlers.

use actix_web::{HttpResponse, web};
use shop_contracts::OrderId;
use shop_http::openapi::responses;
use shop_http::{ApiError, Identity, Problem};

use crate::{AppState, models::PaymentResponse, repo};

type State = web::Data<AppState>;

/// Registers every route of the service.
pub fn configure(state: State) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg| {
        cfg.app_data(state.clone())
            .route("/orders/{id}/payment", web::get().to(get_payment));
    }
}

/// The payment of an order and its attempts.
///
/// For the order's owner or an administrator: status, amount, each attempt with its outcome,
/// error and retry time, each refund, and when the order service accepted their reports. 404
/// until the payment service has taken the order's payment request.
#[utoipa::path(get, path = "/orders/{id}/payment", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The payment, its attempts and its refunds", body = PaymentResponse),
        (status = 400, description = "Malformed order id (`invalid-id`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No payment for this order (yet), or not yours", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_payment(
    identity: Identity,
    state: State,
    order_id: web::Path<OrderId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let payment = repo::find_by_order(&mut conn, *order_id)
        .await
        .map_err(shop_db::DbError::from)?
        .filter(|p| identity.is_admin() || p.user_id == identity.user_id)
        .ok_or_else(ApiError::not_found)?;
    let attempts = repo::attempts(&mut conn, payment.id)
        .await
        .map_err(shop_db::DbError::from)?;
    let refunds = repo::refunds(&mut conn, payment.id)
        .await
        .map_err(shop_db::DbError::from)?;
    Ok(HttpResponse::Ok().json(PaymentResponse::new(&payment, attempts, refunds)))
}
