//! Access-token verification and the revocation check.
//!
//! Revoked sessions are listed in Redis (written by the user service). While Redis is away, an
//! answer Redis gave within `DENYLIST_GRACE` is reused; after that the user service is asked
//! (`GET /internal/sessions/{sid}`) and its answer kept briefly.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{HttpMessage, HttpRequest};
use shop_auth::{AccessClaims, JwtKeys, denylist};
use shop_client::{Idempotency, ServiceClient};
use shop_contracts::{SessionId, SessionStatus, UserId};
use shop_http::{ApiError, RequestContext};
use shop_redis::{RedisPool, redis};

/// How long an answer from the user service is reused while Redis is away.
const USER_SERVICE_ANSWER_TTL: Duration = Duration::from_secs(5);
const MAX_CACHED_SESSIONS: usize = 100_000;

/// A request's verified token claims (`None`: no valid token), as a request extension.
#[derive(Debug, Clone)]
struct Verified(Option<Arc<AccessClaims>>);

#[derive(Debug, Clone, Copy)]
struct Known {
    revoked: bool,
    at: Instant,
    valid_for: Duration,
}

/// Verifies bearer tokens and checks revocation.
#[derive(Debug)]
pub struct Authenticator {
    keys: JwtKeys,
    redis: RedisPool,
    user_service: ServiceClient,
    grace: Duration,
    known: Mutex<HashMap<SessionId, Known>>,
}

impl Authenticator {
    pub fn new(
        keys: JwtKeys,
        redis: RedisPool,
        user_service: ServiceClient,
        grace: Duration,
    ) -> Self {
        Self {
            keys,
            redis,
            user_service,
            grace,
            known: Mutex::default(),
        }
    }

    /// The verified claims of the request's bearer token; 401 for any problem with it.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        context: &RequestContext,
    ) -> Result<AccessClaims, ApiError> {
        let claims = self.verified(req).ok_or_else(ApiError::unauthorized)?;
        if self.is_revoked(&claims, context).await? {
            tracing::debug!(session.id = %claims.sid, "revoked session");
            return Err(ApiError::unauthorized());
        }
        tracing::Span::current().record("user.id", tracing::field::display(claims.sub));
        Ok(AccessClaims::clone(&claims))
    }

    /// The claims of the request's bearer token if its signature and lifetime are valid
    /// (revocation is not checked here). Verified once per request; later calls share it.
    fn verified(&self, req: &HttpRequest) -> Option<Arc<AccessClaims>> {
        if let Some(Verified(claims)) = req.extensions().get::<Verified>() {
            return claims.clone();
        }
        let claims = bearer(req).and_then(|token| match self.keys.verify(token) {
            Ok(claims) => Some(Arc::new(claims)),
            Err(error) => {
                tracing::debug!(%error, "access token refused");
                None
            }
        });
        req.extensions_mut().insert(Verified(claims.clone()));
        claims
    }

    /// The user a request's token names, if its signature and lifetime are valid (revocation
    /// is not checked: this only chooses whose rate limit a request counts against).
    pub fn subject(&self, req: &HttpRequest) -> Option<UserId> {
        self.verified(req).map(|claims| claims.sub)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Known>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, sid: SessionId, revoked: bool, valid_for: Duration) {
        let mut known = self.lock();
        if known.len() >= MAX_CACHED_SESSIONS {
            known.retain(|_, k| k.at.elapsed() < k.valid_for);
            if known.len() >= MAX_CACHED_SESSIONS {
                known.clear();
            }
        }
        known.insert(
            sid,
            Known {
                revoked,
                at: Instant::now(),
                valid_for,
            },
        );
    }

    fn recall(&self, sid: SessionId) -> Option<bool> {
        self.lock()
            .get(&sid)
            .filter(|k| k.at.elapsed() < k.valid_for)
            .map(|k| k.revoked)
    }

    pub(crate) async fn is_revoked(
        &self,
        claims: &AccessClaims,
        context: &RequestContext,
    ) -> Result<bool, ApiError> {
        match self.ask_redis(claims).await {
            Ok(revoked) => {
                self.remember(claims.sid, revoked, self.grace);
                Ok(revoked)
            }
            Err(error) => {
                if let Some(revoked) = self.recall(claims.sid) {
                    return Ok(revoked);
                }
                tracing::warn!(%error, "redis away; asking the user service about the session");
                let revoked = self.ask_user_service(claims.sid, context).await?;
                self.remember(claims.sid, revoked, USER_SERVICE_ANSWER_TTL);
                Ok(revoked)
            }
        }
    }

    async fn ask_redis(&self, claims: &AccessClaims) -> Result<bool, shop_redis::RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let hits: u32 = redis::cmd("EXISTS")
            .arg(self.redis.key(&denylist::session_key(claims.sid)))
            .arg(self.redis.key(&denylist::token_key(claims.jti)))
            .query_async(&mut *conn)
            .await?;
        Ok(hits > 0)
    }

    async fn ask_user_service(
        &self,
        sid: SessionId,
        context: &RequestContext,
    ) -> Result<bool, ApiError> {
        let reply = self
            .user_service
            .call::<()>(
                shop_client::reqwest::Method::GET,
                &format!("/internal/sessions/{sid}"),
                None,
                Idempotency::Idempotent,
                context,
            )
            .await?;
        match reply.status.as_u16() {
            200 => Ok(!reply
                .json::<SessionStatus>()
                .map_err(|e| ApiError::internal(anyhow::anyhow!("session status: {e}")))?
                .active),
            404 => Ok(true),
            status => {
                tracing::warn!(
                    status,
                    "user service could not say whether a session is live"
                );
                Err(ApiError::unavailable(
                    "sessions cannot be checked right now; try again shortly",
                    2,
                ))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
