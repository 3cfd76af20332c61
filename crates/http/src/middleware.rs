//! Middleware every service uses: request tracing and the internal-credential guard.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web,
};
use shop_auth::InternalTokens;
use tracing::Instrument;

use crate::{ApiError, RequestContext, context::headers};

fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Admits a request only with a valid `X-Internal-Token` (health endpoints excepted).
pub async fn require_internal_token(
    tokens: web::Data<InternalTokens>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !is_health(req.path()) {
        let presented = req
            .headers()
            .get(headers::INTERNAL_TOKEN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !tokens.verify(presented) {
            tracing::warn!(
                http.path = req.path(),
                "request without a valid internal credential"
            );
            return Err(ApiError::unauthorized().into());
        }
    }
    next.call(req).await
}

/// One span per request with its id and trace, and one access-log line when it is answered:
/// method, path (never the query string, which may carry a ticket), route template, user id
/// (recorded by whoever establishes the identity), status and latency. Echoes `X-Request-Id`.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let context = RequestContext::from_request(req.request());
    let span = tracing::info_span!(
        "request",
        http.method = %req.method(),
        http.path = %req.path(),
        http.route = tracing::field::Empty,
        user.id = tracing::field::Empty,
        request.id = %context.request_id,
        trace.id = %context.traceparent.trace_id(),
    );
    req.extensions_mut().insert(context.clone());
    let quiet = is_health(req.path());
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut response) => {
            if let Some(pattern) = response.request().match_pattern() {
                span.record("http.route", pattern.as_str());
            }
            let status = response.status().as_u16();
            if status >= 500 {
                tracing::warn!(http.status = status, elapsed_ms, "request answered");
            } else if !quiet {
                tracing::info!(http.status = status, elapsed_ms, "request answered");
            }
            if let Ok(value) = HeaderValue::from_str(&context.request_id) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(headers::REQUEST_ID), value);
            }
            Ok(response)
        }
        Err(error) => {
            tracing::info!(
                http.status = error.as_response_error().status_code().as_u16(),
                elapsed_ms,
                "request refused"
            );
            Err(error)
        }
    }
}
