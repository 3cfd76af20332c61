//! `/healthz` (the process answers) and `/readyz` (it can do useful work).

use std::{future::Future, pin::Pin, sync::Arc};

use actix_web::{HttpResponse, web};
use serde_json::json;

type Check = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// What `/readyz` checks. Services check Postgres only: Redis being away degrades features but
/// must not take instances out of rotation (DESIGN.md, "Redis: what may fail").
#[derive(Clone)]
pub struct Readiness(Arc<Check>);

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness(..)")
    }
}

impl Readiness {
    /// Ready whenever the process listens (the gateway).
    pub fn always() -> Self {
        Self(Arc::new(|| Box::pin(async { Ok(()) })))
    }

    /// Ready when `check` succeeds.
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(check())))
    }

    /// Ready when the pool can run a query.
    pub fn postgres(pool: shop_db::Pool) -> Self {
        Self::new(move || {
            let pool = pool.clone();
            async move { shop_db::ping(&pool).await.map_err(|e| e.to_string()) }
        })
    }
}

/// Liveness: the process answers.
///
/// Checks nothing else, so an orchestrator restarts the instance only when it is wedged.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = serde_json::Value,
               example = json!({"status": "ok"}))))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the instance can do useful work.
///
/// A service checks its database (Redis being away only degrades features); the gateway is
/// ready whenever it listens. 503 takes the instance out of rotation without restarting it.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready; see Retry-After", body = serde_json::Value,
         example = json!({"status": "unavailable"}))))]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    match (readiness.0)().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(json!({"status": "unavailable"}))
        }
    }
}

/// Registers `/healthz` and `/readyz`.
pub fn health_routes(readiness: Readiness) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(readiness))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz));
    }
}
