//! One open socket: replay, live events, heartbeats, the idle timeout and the session checks.

use std::{sync::Arc, time::Duration};

use actix_web::web;
use actix_ws::{CloseCode, CloseReason, Message};
use serde_json::{Value, json};
use shop_auth::AccessClaims;
use shop_http::RequestContext;
use tokio::sync::mpsc;

use super::{Hub, hub::entry_id};
use crate::GatewayState;

/// Close code for an expired or revoked session.
const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code for a client that does not keep up.
const CLOSE_TOO_SLOW: u16 = 4408;

pub(super) struct Socket {
    pub(super) hub: Arc<Hub>,
    pub(super) state: web::Data<GatewayState>,
    pub(super) claims: AccessClaims,
    pub(super) all: bool,
    pub(super) context: RequestContext,
}

fn close(code: u16, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    })
}

impl Socket {
    pub(super) async fn run(
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
        let limits = self.hub.limits();
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
                    let revoked = self.state.auth.is_revoked(&self.claims, &self.context);
                    // Unknown (Redis and the user service both away): open until a check answers.
                    if revoked.await.unwrap_or(false) {
                        break close(CLOSE_UNAUTHORIZED, "session revoked");
                    }
                }
            }
        };
        let _ = session.close(reason).await;
    }
}
