//! Request rate limits at the edge: per user when the request carries a valid access token,
//! per client address otherwise, plus a tighter per-address limit on the routes that invite
//! guessing and abuse (`POST /login`, `/register`, `/ws/ticket`, and the password-reset and
//! email-verification routes, and new guest carts). Limits live in Redis so every gateway instance shares them;
//! while Redis is away each instance limits on its own.
//! Every limited answer carries `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds); a
//! refusal is 429 `rate-limited` with `Retry-After`.

use std::{net::IpAddr, time::Duration};

use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{HeaderMap, HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};
use shop_http::{ApiError, ErrorCode};
use shop_redis::{Bucket, Decision, Quota, RateLimiter, RedisPool};
use shop_settings::Settings;

use crate::GatewayState;

/// Routes with the tighter per-address limit.
const GUARDED: &[(Method, &str)] = &[
    (Method::POST, "/login"),
    (Method::POST, "/register"),
    (Method::POST, "/ws/ticket"),
    (Method::POST, "/password-reset"),
    (Method::POST, "/password-reset/confirm"),
    (Method::POST, "/email-verification/confirm"),
    (Method::POST, "/guest-carts"),
];

/// The gateway's limits (refusals are counted in `shop_rate_limit_rejections_total`).
#[derive(Debug)]
pub struct Limits {
    limiter: RateLimiter,
    general: Quota,
    guarded: Quota,
    enabled: bool,
}

impl Limits {
    pub fn new(settings: &Settings, redis: RedisPool) -> Self {
        if !settings.throttler_enabled {
            tracing::warn!("rate limiting is disabled (THROTTLER_ENABLED=false)");
        }
        // Every series exported at zero from the start, so that the first rejection is a change.
        for scope in ["general", "guarded"] {
            for local in ["false", "true"] {
                metrics::counter!("shop_rate_limit_rejections_total", "scope" => scope, "local" => local)
                    .increment(0);
            }
        }
        Self {
            limiter: RateLimiter::new(redis),
            general: Quota {
                limit: settings.throttler_limit,
                period: settings.throttler_ttl,
            },
            guarded: Quota {
                limit: settings.throttler_auth_limit,
                period: settings.throttler_auth_ttl,
            },
            enabled: settings.throttler_enabled,
        }
    }

    fn buckets(
        &self,
        method: &Method,
        path: &str,
        user: Option<shop_contracts::UserId>,
        ip: Option<IpAddr>,
    ) -> Vec<Bucket> {
        let address = ip.map_or_else(|| "unknown".to_owned(), address_key);
        let caller = match user {
            Some(user) => format!("user:{user}"),
            None => format!("ip:{address}"),
        };
        let mut buckets = vec![Bucket {
            key: caller,
            quota: self.general,
        }];
        // Each guarded route counts on its own: reconnecting sockets must not use up logins.
        if let Some((_, route)) = GUARDED.iter().find(|(m, p)| m == method && *p == path) {
            buckets.push(Bucket {
                key: format!("guarded:{route}:ip:{address}"),
                quota: self.guarded,
            });
        }
        buckets
    }
}

/// The key of a client address. One IPv6 client usually holds a whole /64, so that is the
/// unit; IPv4-mapped IPv6 addresses count as the IPv4 address they are.
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil() as u64
}

fn describe(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in [
        ("ratelimit-limit", u64::from(decision.limit)),
        ("ratelimit-remaining", u64::from(decision.remaining)),
        ("ratelimit-reset", whole_seconds(decision.reset)),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// The middleware. Health probes are never limited.
pub async fn rate_limit(
    state: web::Data<GatewayState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let limits = &state.limits;
    if !limits.enabled || matches!(req.path(), "/healthz" | "/readyz") {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let user = state.auth.subject(req.request());
    let ip = state.client_ip(req.request());
    // The path as routing sees it (percent-escapes decoded), so `/ws/%74icket` is guarded too.
    let path = req.match_info().as_str().to_owned();
    let buckets = limits.buckets(req.method(), &path, user, ip);
    let decision = limits.limiter.check(&buckets).await;
    if !decision.allowed {
        let scope = if buckets.len() > 1 {
            "guarded"
        } else {
            "general"
        };
        metrics::counter!(
            "shop_rate_limit_rejections_total",
            "scope" => scope,
            "local" => decision.local.to_string()
        )
        .increment(1);
        tracing::debug!(
            limit = decision.limit,
            local = decision.local,
            "rate limited"
        );
        let error = ApiError::new(
            ErrorCode::RateLimited,
            "too many requests; retry after the number of seconds in Retry-After",
        )
        .with_retry_after(whole_seconds(decision.retry_after));
        let mut response = error.error_response();
        describe(response.headers_mut(), &decision);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    describe(response.headers_mut(), &decision);
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_by_client_not_by_spelling() {
        let key = |s: &str| address_key(s.parse().expect("ip"));
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
