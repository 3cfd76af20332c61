//! Live notifications over WebSocket (DESIGN.md, "Notifications over WebSocket").
//!
//! Every gateway instance tails `notifications` and pushes each event to the sockets of its
//! user (administrators get everything with `?scope=all`). A socket authenticates with its
//! `Authorization` header or a one-use ticket from `POST /ws/ticket`; the subscription exists
//! before the 101, then `{"type":"ready"}` is sent. `?since=<id>` replays from the user's
//! stream (or `notifications` for `scope=all`), or answers `{"type":"resync"}` when that id
//! is older than what is kept. Each socket has a bounded queue (overflow closes that socket),
//! heartbeats and an idle timeout, and is closed with 4401 when its token expires or its
//! session is revoked.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use shop_auth::AccessClaims;
use shop_contracts::Role;
use shop_http::{ApiError, ErrorCode, RequestContext};
use shop_redis::{RedisPool, redis};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::GatewayState;

const TICKET_TTL_SECS: u64 = 30;
/// Close code for an expired or revoked session.
const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code for a client that does not keep up.
const CLOSE_TOO_SLOW: u16 = 4408;

/// Open sockets on this instance.
fn record_connections(count: usize) {
    metrics::gauge!("shop_websocket_connections").set(count as f64);
}

/// A stream entry id, compared numerically.
fn entry_id(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

struct Subscriber {
    user_id: Uuid,
    all: bool,
    tx: mpsc::Sender<(String, Arc<str>)>,
}

/// How this instance keeps its sockets.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Events waiting for one socket (`WS_QUEUE`); past it, the socket is closed with 4408.
    pub queue: usize,
    /// A socket silent this long is closed (`WS_IDLE_TIMEOUT`); it is pinged every third.
    pub idle_timeout: Duration,
    /// How often a socket checks its session (`WS_CHECK_INTERVAL`).
    pub check_interval: Duration,
}

impl SocketLimits {
    pub fn from_settings(settings: &shop_settings::Settings) -> Self {
        Self {
            queue: settings.ws_queue,
            idle_timeout: settings.ws_idle_timeout,
            check_interval: settings.ws_check_interval,
        }
    }
}

/// The sockets of this instance and the tail of `notifications`.
pub struct Hub {
    redis: RedisPool,
    redis_url: String,
    limits: SocketLimits,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(redis: RedisPool, redis_url: String, limits: SocketLimits) -> Self {
        Self {
            redis,
            redis_url,
            limits,
            subscribers: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The Redis pool shared with the rest of the gateway.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscribe(&self, user_id: Uuid, all: bool) -> (u64, mpsc::Receiver<(String, Arc<str>)>) {
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.lock();
        subscribers.insert(id, Subscriber { user_id, all, tx });
        record_connections(subscribers.len());
        (id, rx)
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.lock();
        subscribers.remove(&id);
        record_connections(subscribers.len());
    }

    /// Pushes one entry to every interested socket; a full queue drops that subscriber
    /// (its socket then closes), a slow client never holds up the others.
    fn dispatch(&self, id: &str, raw: &str) {
        let Ok(event) = serde_json::from_str::<Value>(raw) else {
            return;
        };
        let span = tracing::info_span!("notification", stream.entry = id);
        shop_http::continue_trace(&span, event["traceparent"].as_str());
        let _entered = span.enter();
        let user: Option<Uuid> = event["userId"].as_str().and_then(|u| u.parse().ok());
        let text: Arc<str> = json!({"type": "event", "id": id, "event": event})
            .to_string()
            .into();
        let mut subscribers = self.lock();
        subscribers.retain(|_, sub| {
            if !(sub.all || Some(sub.user_id) == user) {
                return true;
            }
            let sent = sub.tx.try_send((id.to_owned(), text.clone())).is_ok();
            if !sent {
                metrics::counter!("shop_websocket_overflows_total").increment(1);
            }
            sent
        });
        record_connections(subscribers.len());
    }

    /// Tails `notifications` from now on until cancelled, reconnecting after failures.
    pub async fn tail(self: Arc<Self>, cancel: CancellationToken) {
        let stream = self.redis.key(shop_contracts::events::NOTIFICATIONS);
        let mut last = "$".to_owned();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                result = self.follow(&stream, &mut last) => {
                    let Err(error) = result;
                    tracing::warn!(%error, "notifications tail lost redis; reconnecting");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Dispatches the entries of `stream` after `last` on a connection of its own, moving
    /// `last` on, until Redis fails.
    async fn follow(&self, stream: &str, last: &mut String) -> redis::RedisResult<Infallible> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        loop {
            let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(5000)
                .arg("STREAMS")
                .arg(stream)
                .arg(&*last)
                .query_async(&mut conn)
                .await?;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                if let Some(raw) = entry.get::<String>("event") {
                    self.dispatch(&entry.id, &raw);
                }
                *last = entry.id;
            }
        }
    }

    /// Entries after `since` in `stream` (`None`: older than what is kept, resync).
    async fn replay(
        &self,
        stream: &str,
        since: &str,
    ) -> Result<Option<Vec<(String, String)>>, shop_redis::RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let key = self.redis.key(stream);
        let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *conn)
            .await?;
        let Some(first) = first.ids.first() else {
            return Ok(None);
        };
        if entry_id(&first.id) > entry_id(since) && first.id != since {
            // Entries between `since` and the oldest kept one may be gone.
            let follows_directly =
                entry_id(since).is_some_and(|(ms, seq)| entry_id(&first.id) == Some((ms, seq + 1)));
            if !follows_directly {
                return Ok(None);
            }
        }
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({since}"))
            .arg("+")
            .query_async(&mut *conn)
            .await?;
        Ok(Some(
            entries
                .ids
                .into_iter()
                .filter_map(|e| {
                    let raw: Option<String> = e.get("event");
                    raw.map(|raw| (e.id, raw))
                })
                .collect(),
        ))
    }
}

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
    let stored = async {
        let mut conn = hub.redis.get().await?;
        let () = redis::cmd("SET")
            .arg(hub.redis.key(&format!("ws-ticket:{ticket}")))
            .arg(serde_json::to_string(&claims).unwrap_or_default())
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

async fn redeem(hub: &Hub, ticket: &str) -> Option<AccessClaims> {
    let mut conn = hub.redis.get().await.ok()?;
    let stored: Option<String> = redis::cmd("GETDEL")
        .arg(hub.redis.key(&format!("ws-ticket:{ticket}")))
        .query_async(&mut *conn)
        .await
        .ok()?;
    serde_json::from_str(&stored?).ok()
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

struct Socket {
    hub: Arc<Hub>,
    state: web::Data<GatewayState>,
    claims: AccessClaims,
    all: bool,
    context: RequestContext,
}

fn close(code: u16, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    })
}

impl Socket {
    async fn run(
        self,
        since: Option<String>,
        mut rx: mpsc::Receiver<(String, Arc<str>)>,
        mut session: actix_ws::Session,
        mut messages: actix_ws::MessageStream,
    ) {
        if session
            .text(json!({"type": "ready"}).to_string())
            .await
            .is_err()
        {
            return;
        }
        let mut last_sent: Option<(u64, u64)> = None;
        if let Some(since) = since {
            let stream = if self.all {
                shop_contracts::events::NOTIFICATIONS.to_owned()
            } else {
                format!(
                    "{}:user:{}",
                    shop_contracts::events::NOTIFICATIONS,
                    self.claims.sub
                )
            };
            match self.hub.replay(&stream, &since).await {
                Ok(Some(entries)) => {
                    for (id, raw) in entries {
                        let event: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                        let text = json!({"type": "event", "id": id, "event": event}).to_string();
                        if session.text(text).await.is_err() {
                            return;
                        }
                        last_sent = entry_id(&id);
                    }
                    last_sent = last_sent.or_else(|| entry_id(&since));
                }
                Ok(None) | Err(_) => {
                    if session
                        .text(json!({"type": "resync"}).to_string())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let expires_in =
            u64::try_from(self.claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0);
        let expiry = tokio::time::sleep(Duration::from_secs(expires_in));
        tokio::pin!(expiry);
        let limits = self.hub.limits;
        let mut heartbeat = tokio::time::interval(limits.idle_timeout / 3);
        let mut check = tokio::time::interval(limits.check_interval);
        let mut last_heard = tokio::time::Instant::now();
        let reason = loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some((id, text)) => {
                        // Replayed already: live copies of the same entries are skipped.
                        if last_sent.is_some() && entry_id(&id) <= last_sent {
                            continue;
                        }
                        if session.text(text.to_string()).await.is_err() {
                            return;
                        }
                        last_sent = entry_id(&id);
                    }
                    None => break close(CLOSE_TOO_SLOW, "too slow: the queue overflowed"),
                },
                message = messages.recv() => match message {
                    Some(Ok(Message::Ping(bytes))) => {
                        last_heard = tokio::time::Instant::now();
                        if session.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > limits.idle_timeout {
                        break close(1001, "idle");
                    }
                    if session.ping(b"").await.is_err() {
                        return;
                    }
                }
                () = &mut expiry => break close(CLOSE_UNAUTHORIZED, "token expired"),
                _ = check.tick() => {
                    if self.state.auth.is_revoked(&self.claims, &self.context).await.unwrap_or(false) {
                        break close(CLOSE_UNAUTHORIZED, "session revoked");
                    }
                }
            }
        };
        let _ = session.close(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_compare_numerically() {
        assert!(entry_id("1700-10") > entry_id("1700-9"));
        assert!(entry_id("1701-0") > entry_id("1700-99"));
        assert_eq!(entry_id("nope"), None);
    }
}
