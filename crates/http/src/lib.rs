//! HTTP building blocks shared by the services and the gateway: RFC 9457 problem+json errors
//! with stable codes, extractor error mapping, conditional requests, health endpoints, the
//! internal-credential guard, caller identity, request context, and server lifecycle.

pub mod conditional;
mod context;
mod extract;
pub mod health;
mod identity;
mod middleware;
pub mod openapi;
mod problem;
mod server;

pub use context::{RequestContext, TraceParent, continue_trace, headers};
pub use extract::{Json, OptionalJson, common_config, not_found, read_body, too_large};
pub use health::{Readiness, health_routes};
pub use identity::{
    Admin, Caller, Identity, InternalCaller, OrderService, PaymentService, UserService,
};
pub use middleware::{RouteTemplate, ServiceName, require_internal_token, trace_requests};
pub use problem::{ApiError, ErrorCode, FieldError, Problem};
pub use server::{
    Command, Running, SAMPLE_EVERY, Seed, Subcommand, command, healthcheck, serve_until_signal,
    shutdown_signal, spawn_every, spawn_sampler, start_metrics, start_postgres_service,
    start_service,
};

/// Pagination query parameters shared by every listing: `page` ≥ 1 (default 1), `limit`
/// 1–100 (default 20); anything else is a 422.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct PageQuery {
    pub page: Option<i64>,
    pub limit: Option<i64>,
}

impl PageQuery {
    /// Validated `(page, limit)`.
    pub fn validate(&self) -> Result<(u32, u32), ApiError> {
        let mut errors = Vec::new();
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20);
        if !(1..=1_000_000).contains(&page) {
            errors.push(FieldError::new("page", "must be a positive integer"));
        }
        if !(1..=100).contains(&limit) {
            errors.push(FieldError::new("limit", "must be between 1 and 100"));
        }
        if errors.is_empty() {
            Ok((
                u32::try_from(page).unwrap_or(1),
                u32::try_from(limit).unwrap_or(20),
            ))
        } else {
            Err(ApiError::validation(errors))
        }
    }
}
