//! Forwards an allowed request to its service: identity from the verified token, a clean set
//! of headers, the body read whole under a size limit, and the answer streamed back.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{
        StatusCode,
        header::{self, HeaderName},
    },
    web,
};
use futures_util::StreamExt;
use shop_client::{InFlight, reqwest};
use shop_contracts::Role;
use shop_http::{ApiError, ErrorCode, RequestContext, headers};

use crate::{
    GatewayState, Upstreams,
    routes::{self, Access},
};

/// Request headers a client may send through; everything else (identity, credentials,
/// forwarding and hop-by-hop headers) is dropped.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "content-length",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "idempotency-key",
    "user-agent",
];

/// The header of a guest cart's token.
const CART_TOKEN: &str = "cart-token";

/// Response headers never passed back (hop-by-hop, or set by this server).
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-request-id",
];

/// The gateway's handler for every path it does not serve itself.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
    upstreams: web::Data<Upstreams>,
) -> Result<HttpResponse, ApiError> {
    let route = routes::find(req.method(), req.uri().path()).ok_or_else(ApiError::not_found)?;
    tracing::Span::current().record("http.route", tracing::field::display(route.template));
    actix_web::HttpMessage::extensions_mut(&req).insert(shop_http::RouteTemplate(route.template));
    let context = RequestContext::from_request(&req);

    // A guest cart's token stands in for a login on the cart routes, and only there.
    let cart_token = (route.access == Access::UserOrCart)
        .then(|| req.headers().get(CART_TOKEN))
        .flatten()
        .filter(|_| !req.headers().contains_key(header::AUTHORIZATION));
    let identity = match route.access {
        Access::Public => None,
        Access::UserOrCart if cart_token.is_some() => None,
        Access::User | Access::Admin | Access::UserOrCart => {
            Some(state.auth.authenticate(&req, &context).await?)
        }
    };
    if route.access == Access::Admin {
        match &identity {
            Some(claims) if claims.role == Role::Admin => {
                if state.admin_require_mfa && !claims.second_factor() {
                    return Err(ApiError::new(
                        ErrorCode::AdminMfaRequired,
                        "administration needs a sign-in with a second factor: enrol at /me/mfa, then sign in again with a code",
                    ));
                }
            }
            _ => return Err(ApiError::forbidden()),
        }
    }

    let declared_length = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|len| len > state.max_body_bytes) {
        return Err(shop_http::too_large());
    }

    let mut outgoing = reqwest::header::HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        for value in req.headers().get_all(*name) {
            if let Ok(value) = reqwest::header::HeaderValue::from_bytes(value.as_bytes()) {
                outgoing.append(*name, value);
            }
        }
    }
    if let Some(ip) = state
        .client_ip(&req)
        .and_then(|ip| reqwest::header::HeaderValue::from_str(&ip.to_string()).ok())
    {
        outgoing.insert(headers::FORWARDED_FOR, ip);
    }
    if let Some(token) =
        cart_token.and_then(|t| reqwest::header::HeaderValue::from_bytes(t.as_bytes()).ok())
    {
        outgoing.insert(CART_TOKEN, token);
    }
    if let Some(claims) = &identity {
        for (name, value) in [
            (headers::USER_ID, claims.sub.to_string()),
            (headers::USER_ROLE, claims.role.to_string()),
            (headers::SESSION_ID, claims.sid.to_string()),
            (headers::EMAIL_VERIFIED, claims.email_verified.to_string()),
        ] {
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                outgoing.insert(name, value);
            }
        }
    }

    // Read whole before anything is forwarded: a body over the limit must be refused before
    // the service acts, and a service that takes no body would act before seeing it end.
    let body = shop_http::read_body(payload, state.max_body_bytes, None).await?;
    let body = (!body.is_empty()).then(|| reqwest::Body::from(body));

    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::not_found())?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |pq| pq.as_str());
    let upstream = upstreams.get(route.upstream);
    let (response, slot) = match upstream
        .forward(method, path_and_query, outgoing, body, &context)
        .await
    {
        Ok(answer) => answer,
        Err(error) => return Err(error.into()),
    };
    let mut response = relay(response, slot).await?;
    // Answers to a signed-in caller, and tokens, are the caller's alone: no cache may keep
    // them.
    let carries_tokens = matches!(route.template, "/login" | "/refresh" | "/guest-carts");
    if (identity.is_some() || cart_token.is_some() || carries_tokens)
        && !response.headers().contains_key(header::CACHE_CONTROL)
    {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        );
    }
    Ok(response)
}

/// Answers up to this size (API documents, product pages) are read whole and sent with their
/// headers in one write; larger or unsized ones are streamed.
const BUFFERED_ANSWER: u64 = 64 * 1024;

/// The service's answer without hop-by-hop headers. The upstream's in-flight slot is released
/// once the answer has been read.
async fn relay(response: reqwest::Response, slot: InFlight) -> Result<HttpResponse, ApiError> {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for (name, value) in response.headers() {
        // CORS is the gateway's to answer, whatever a service says.
        if DROPPED_RESPONSE_HEADERS.contains(&name.as_str())
            || name.as_str().starts_with("access-control-")
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) {
            builder.append_header((name, value.as_bytes()));
        }
    }
    match response.content_length() {
        Some(length) if length <= BUFFERED_ANSWER => {
            let body = response.bytes().await.map_err(|error| {
                tracing::warn!(%error, "upstream answer cut short");
                ApiError::new(ErrorCode::BadGateway, "the service's answer was cut short")
            })?;
            drop(slot);
            Ok(builder.body(body))
        }
        length => {
            if let Some(length) = length {
                builder.no_chunking(length);
            }
            Ok(builder.streaming(response.bytes_stream().map(move |chunk| {
                let _held = &slot;
                chunk
            })))
        }
    }
}
