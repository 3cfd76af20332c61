//! `GET /ws`: who may open a socket, and the upgrade.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use shop_contracts::Role;
use shop_http::{ApiError, ErrorCode, RequestContext};

use super::{hub::entry_id, socket::Socket, tickets::redeem};
use crate::GatewayState;

/// `GET /ws` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SocketQuery {
    /// A ticket from `POST /ws/ticket` (instead of the `Authorization` header).
    ticket: Option<String>,
    /// Replay everything after this `notifications` id first.
    #[param(example = "1700000000000-0")]
    since: Option<String>,
    /// `all`: every user's events (administrators only).
    scope: Option<String>,
}

/// The live notification socket.
///
/// A WebSocket carrying the caller's order and payment events, messages as in
/// `proto-docs/ws/message.v1.json`; `?since=` resumes after the last event seen. Credentials: the
/// `Authorization` header or `?ticket=`. A browser `Origin` must be the gateway's own or listed in
/// `CORS_ORIGINS`.
#[utoipa::path(get, path = "/ws", tag = "notifications", params(SocketQuery), security(("bearer" = []), ()),
    responses(
        (status = 101, description = "Switching to WebSocket; the first message is `{\"type\":\"ready\"}`"),
        (status = 400, description = "Not a WebSocket upgrade request", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 401, description = "No valid token or ticket", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 403, description = "`scope=all` without the admin role, or an origin that may not open sockets", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 422, description = "Invalid `scope` or `since`", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 429, description = "Rate limited; see Retry-After", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 503, description = "Sessions cannot be checked right now; see Retry-After", content_type = "application/problem+json", body = shop_http::Problem),
    ))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<SocketQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    let hub = state.hub.clone();
    if let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok())
        && !state.origins.admits(req.head(), origin)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this origin may not open sockets",
        ));
    }
    let context = RequestContext::from_request(&req);
    let claims = match &query.ticket {
        Some(ticket) => {
            let claims = redeem(&hub, ticket)
                .await
                .ok_or_else(ApiError::unauthorized)?;
            if claims.exp <= chrono::Utc::now().timestamp()
                || state.auth.is_revoked(&claims, &context).await?
            {
                return Err(ApiError::unauthorized());
            }
            claims
        }
        None => state.auth.authenticate(&req, &context).await?,
    };
    let all = match query.scope.as_deref() {
        None => false,
        Some("all") if claims.role == Role::Admin => true,
        Some("all") => return Err(ApiError::forbidden()),
        Some(_) => {
            return Err(ApiError::validation(vec![shop_http::FieldError::new(
                "scope",
                "must be all",
            )]));
        }
    };
    if query
        .since
        .as_deref()
        .is_some_and(|since| entry_id(since).is_none())
    {
        return Err(ApiError::validation(vec![shop_http::FieldError::new(
            "since",
            "must be a stream id such as 1700000000000-0",
        )]));
    }
    // Subscribed before the 101: nothing published from here on can be missed.
    let (subscription, rx) = hub.subscribe(claims.sub, all);
    let (response, session, messages) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(error) => {
            hub.unsubscribe(subscription);
            return Err(ApiError::new(
                ErrorCode::MalformedJson,
                format!("not a WebSocket upgrade: {error}"),
            ));
        }
    };
    let since = query.since.clone();
    actix_web::rt::spawn(async move {
        let socket = Socket {
            hub: hub.clone(),
            state,
            claims,
            all,
            context,
        };
        socket.run(since, rx, session, messages).await;
        hub.unsubscribe(subscription);
    });
    Ok(response)
}
