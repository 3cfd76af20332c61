//! `POST /ws/ticket`: one-use tickets that stand in for the access token on `GET /ws`.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use shop_auth::AccessClaims;
use shop_http::{ApiError, RequestContext};
use shop_redis::redis;

use super::Hub;
use crate::GatewayState;

const TICKET_TTL_SECS: u64 = 30;

/// A one-use socket ticket.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketResponse {
    /// Pass as `?ticket=` to `GET /ws` within `expiresIn` seconds; it works once.
    #[schema(example = "b3JkZXJzLWFyZS1saXZlLW5vdy0wMTIzNDU2Nzg5YWJj")]
    ticket: String,
    #[schema(example = 30)]
    expires_in: u64,
}

/// Get a one-use ticket for `GET /ws`.
///
/// Browsers cannot set headers on a WebSocket, and tokens never go in URLs: the ticket stands in
/// for the access token once, within 30 seconds, and names the same session.
#[utoipa::path(post, path = "/ws/ticket", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 201, description = "A ticket", body = TicketResponse),
        (status = 401, description = "Missing, invalid, expired or revoked access token", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 429, description = "Rate limited (a tighter per-address limit applies here); see Retry-After", content_type = "application/problem+json", body = shop_http::Problem),
        (status = 503, description = "Tickets cannot be stored right now; see Retry-After", content_type = "application/problem+json", body = shop_http::Problem),
    ))]
pub async fn create_ticket(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    // No body is needed, but one left unread would be taken for the connection's next
    // request; one over the limit is refused like anywhere else.
    shop_http::read_body(payload, state.max_body_bytes, None).await?;
    let context = RequestContext::from_request(&req);
    let claims = state.auth.authenticate(&req, &context).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let ticket = URL_SAFE_NO_PAD.encode(bytes);
    let hub = &state.hub;
    let claims = serde_json::to_string(&claims).map_err(ApiError::internal)?;
    let stored = async {
        let mut conn = hub.redis().get().await?;
        let () = redis::cmd("SET")
            .arg(hub.redis().key(&format!("ws-ticket:{ticket}")))
            .arg(&claims)
            .arg("EX")
            .arg(TICKET_TTL_SECS)
            .query_async(&mut *conn)
            .await?;
        Ok::<(), shop_redis::RedisUnavailable>(())
    };
    stored.await.map_err(|_| {
        ApiError::unavailable("tickets cannot be issued right now; try again shortly", 2)
    })?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(TicketResponse {
            ticket,
            expires_in: TICKET_TTL_SECS,
        }))
}

pub(super) async fn redeem(hub: &Hub, ticket: &str) -> Option<AccessClaims> {
    let mut conn = hub.redis().get().await.ok()?;
    let stored: Option<String> = redis::cmd("GETDEL")
        .arg(hub.redis().key(&format!("ws-ticket:{ticket}")))
        .query_async(&mut *conn)
        .await
        .ok()?;
    serde_json::from_str(&stored?).ok()
}
