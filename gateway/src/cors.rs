//! Cross-origin requests: the origins in `CORS_ORIGINS` may call the API from a browser; pages
//! served by the gateway itself are same-origin and need no listing. Preflights are answered
//! here and never reach a service; a preflight from another origin, or asking for a method or
//! header the API does not take, is 403. Actual requests from unlisted origins pass without
//! CORS headers, so the browser withholds the answer. The WebSocket `Origin` check uses the
//! same rule.
//!
//! Written here rather than with actix-cors, which answers refusals with a plain-text 400
//! where the API promises `application/problem+json`.

use actix_web::{
    Error, HttpResponse, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{RequestHead, ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{self, HeaderMap, HeaderValue},
    },
    middleware::Next,
    web,
};
use shop_http::{ApiError, ErrorCode};

use crate::GatewayState;

const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// Request headers a page may send, beyond the CORS-safelisted ones.
const ALLOWED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "traceparent",
    "x-request-id",
];
const EXPOSED_HEADERS: &str = "etag, location, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-request-id";
/// How long a browser may reuse a preflight answer.
const MAX_AGE_SECS: u32 = 600;

/// The origins allowed besides the gateway's own.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    pub fn new(origins: Vec<String>) -> Self {
        Self(origins)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn listed(&self, origin: &str) -> bool {
        self.0
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    /// Whether `origin` names the host the request was sent to (scheme aside: TLS may end in
    /// front of the gateway).
    fn same_origin(head: &RequestHead, origin: &str) -> bool {
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let host = head.headers.get(header::HOST).and_then(|h| h.to_str().ok());
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    }

    /// Whether a browser page at `origin` may use the API (or open a socket).
    pub fn admits(&self, head: &RequestHead, origin: &str) -> bool {
        Self::same_origin(head, origin) || self.listed(origin)
    }
}

fn refuse(detail: &str) -> HttpResponse {
    ApiError::new(ErrorCode::Forbidden, detail).error_response()
}

fn preflight(origins: &Origins, head: &RequestHead, origin: &str) -> HttpResponse {
    if !origins.admits(head, origin) {
        return refuse("this origin may not call the API");
    }
    let method = head
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    if !ALLOWED_METHODS.split(", ").any(|m| m == method) {
        return refuse("this method is not available across origins");
    }
    let requested = head
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let unknown = requested
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .find(|h| !h.is_empty() && !ALLOWED_HEADERS.contains(&h.as_str()));
    if let Some(header) = unknown {
        return refuse(&format!(
            "the header `{header}` may not be sent across origins"
        ));
    }
    let mut response = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            ALLOWED_HEADERS.join(", "),
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS))
        .finish();
    allow(
        response.headers_mut(),
        origin,
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    );
    response
}

fn allow(headers: &mut HeaderMap, origin: &str, vary: &'static str) {
    if let Ok(origin) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.append(header::VARY, HeaderValue::from_static(vary));
}

/// The middleware.
pub async fn cors(
    state: web::Data<GatewayState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        let mut response = next.call(req).await?;
        // The same URL answers listed origins with CORS headers: caches must keep them apart.
        if !state.origins.is_empty() {
            response
                .headers_mut()
                .append(header::VARY, HeaderValue::from_static("Origin"));
        }
        return Ok(response.map_into_left_body());
    };
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let response = preflight(&state.origins, req.head(), &origin);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let admitted = state.origins.listed(&origin) && !Origins::same_origin(req.head(), &origin);
    let mut response = next.call(req).await?;
    if !state.origins.is_empty() && !admitted {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if admitted {
        allow(response.headers_mut(), &origin, "Origin");
        response.headers_mut().insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    Ok(response.map_into_left_body())
}
