//! The one HTTP client for calls between services and from the gateway to its upstreams:
//! a timeout per upstream, retries after connection failures for calls the caller declares
//! idempotent (and only those), a circuit breaker and a bound on concurrent calls per
//! upstream, and injection of `traceparent`, `X-Request-Id`, `X-Caller` and the internal
//! credential.

mod breaker;

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use rand::Rng;
use reqwest::{Method, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use shop_http::{ApiError, ErrorCode, RequestContext, headers};
use shop_settings::Settings;

pub use breaker::CircuitBreaker;
pub use reqwest;

/// Whether a call may be repeated safely. Every call states it: reserve, release and
/// payment-events are idempotent POSTs; creating an order is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to send again after a timeout or a lost connection.
    Idempotent,
    /// Sent at most once.
    NotIdempotent,
}

/// Why a call produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The circuit is open: the upstream failed repeatedly and is not being called for now.
    #[error("{upstream} is unavailable (circuit open)")]
    CircuitOpen {
        upstream: &'static str,
        /// Until the next probe may be sent.
        retry_after: Duration,
    },
    /// `HTTP_MAX_IN_FLIGHT` calls to this upstream are already under way.
    #[error("{upstream} is saturated (too many calls in flight)")]
    Saturated { upstream: &'static str },
    /// Could not connect.
    #[error("{upstream} unreachable: {source}")]
    Connect {
        upstream: &'static str,
        source: reqwest::Error,
    },
    /// No answer within the timeout.
    #[error("{upstream} timed out")]
    Timeout { upstream: &'static str },
    /// The upstream answered 502, 503 or 504.
    #[error("{upstream} answered {status}")]
    Unavailable {
        upstream: &'static str,
        status: StatusCode,
    },
    /// Anything else on the wire (reset mid-answer, malformed response).
    #[error("{upstream} call failed: {source}")]
    Transport {
        upstream: &'static str,
        source: reqwest::Error,
    },
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        tracing::warn!(%error, "upstream call failed");
        match error {
            ClientError::Timeout { upstream } => ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!("the {upstream} service did not answer in time"),
            ),
            ClientError::Transport { upstream, .. } => ApiError::new(
                ErrorCode::BadGateway,
                format!("the {upstream} service gave no usable answer"),
            ),
            ClientError::CircuitOpen {
                upstream,
                retry_after,
            } => ApiError::unavailable(
                format!("the {upstream} service is unavailable; try again shortly"),
                retry_after.as_secs_f64().ceil() as u64,
            ),
            ClientError::Saturated { upstream } => ApiError::unavailable(
                format!("the {upstream} service is busy; try again shortly"),
                1,
            ),
            ClientError::Connect { upstream, .. } | ClientError::Unavailable { upstream, .. } => {
                ApiError::unavailable(
                    format!("the {upstream} service is unavailable; try again shortly"),
                    2,
                )
            }
        }
    }
}

/// A buffered answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Decodes the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Tuning shared by every upstream of one binary.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub caller: &'static str,
    pub internal_token: SecretString,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// Concurrent calls allowed per upstream; more are refused at once (503).
    pub max_in_flight: usize,
    /// Idle keep-alive connections kept per upstream.
    pub pool_max_idle: usize,
}

impl ClientConfig {
    /// From the `HTTP_*`, `CIRCUIT_BREAKER_*` and `INTERNAL_TOKEN` settings, with the
    /// upstream's own timeout (`<UPSTREAM>_SERVICE_TIMEOUT`).
    pub fn from_settings(
        settings: &Settings,
        caller: &'static str,
        request_timeout: Duration,
    ) -> Self {
        Self {
            caller,
            internal_token: settings.internal_token().into(),
            connect_timeout: settings.http_connect_timeout,
            request_timeout,
            retries: settings.http_retries,
            breaker_threshold: settings.circuit_breaker_threshold,
            breaker_cooldown: settings.circuit_breaker_cooldown,
            max_in_flight: settings.http_max_in_flight,
            pool_max_idle: settings.http_pool_max_idle,
        }
    }
}

/// A client for one upstream service.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    upstream: &'static str,
    base_url: Arc<str>,
    /// `base_url` parsed once, when it has no path of its own (the usual case): a call then
    /// sets only its path and query, and the host is not parsed again.
    base: Option<reqwest::Url>,
    /// The internal credential as a header value, made once (and kept out of debug output).
    credential: reqwest::header::HeaderValue,
    config: Arc<ClientConfig>,
    breaker: Arc<CircuitBreaker>,
    in_flight: Arc<Semaphore>,
}

/// One of an upstream's in-flight slots, held until the call (and its streamed answer) ends.
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] OwnedSemaphorePermit);

const BACKOFF_BASE: Duration = Duration::from_millis(50);

fn http_client(config: &ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        // Below the upstreams' keep-alive (actix: 5 s), so a pooled connection is never one
        // the server is closing.
        .pool_idle_timeout(Duration::from_secs(4))
        .pool_max_idle_per_host(config.pool_max_idle)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl ServiceClient {
    /// A client for `upstream` at `base_url` (no trailing slash needed).
    pub fn new(upstream: &'static str, base_url: &str, config: ClientConfig) -> Self {
        let http = http_client(&config);
        let breaker = CircuitBreaker::new(config.breaker_threshold, config.breaker_cooldown);
        let mut credential =
            reqwest::header::HeaderValue::from_str(config.internal_token.expose_secret())
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
        credential.set_sensitive(true);
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Self {
            http,
            upstream,
            base_url: base_url.trim_end_matches('/').into(),
            base: reqwest::Url::parse(base_url)
                .ok()
                .filter(|url| url.path() == "/" && url.query().is_none()),
            credential,
            config: Arc::new(config),
            breaker: Arc::new(breaker),
            in_flight,
        }
    }

    fn slot(&self) -> Result<InFlight, ClientError> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map(InFlight)
            .map_err(|_| ClientError::Saturated {
                upstream: self.upstream,
            })
    }

    fn permit(&self) -> Result<breaker::Permit<'_>, ClientError> {
        self.breaker
            .try_acquire()
            .map_err(|retry_after| ClientError::CircuitOpen {
                upstream: self.upstream,
                retry_after,
            })
    }

    /// The same client (circuit breaker and in-flight bound shared) with connections of its
    /// own. A connection runs on the runtime that opened it; an HTTP worker with its own
    /// runtime (actix-web's) calls through connections of that runtime, with no wake-ups
    /// across threads.
    #[must_use]
    pub fn with_own_connections(&self) -> Self {
        Self {
            http: http_client(&self.config),
            ..self.clone()
        }
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &'static str {
        self.upstream
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    fn request(&self, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let Some(base) = &self.base else {
            return self
                .http
                .request(method, format!("{}{path_and_query}", self.base_url));
        };
        let mut url = base.clone();
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        url.set_path(path);
        url.set_query(query);
        self.http.request(method, url)
    }

    fn prepare(
        &self,
        method: Method,
        path_and_query: &str,
        context: &RequestContext,
    ) -> reqwest::RequestBuilder {
        self.request(method, path_and_query)
            .header(headers::INTERNAL_TOKEN, self.credential.clone())
            .header(
                headers::CALLER,
                reqwest::header::HeaderValue::from_static(self.config.caller),
            )
            .header(headers::REQUEST_ID, &context.request_id)
            // The caller's current span is the callee's parent.
            .header(headers::TRACEPARENT, context.traceparent.header_value())
    }

    fn classify(&self, error: reqwest::Error) -> ClientError {
        let upstream = self.upstream;
        // A connect timeout is a connect failure: the request never left.
        if error.is_connect() {
            ClientError::Connect {
                upstream,
                source: error,
            }
        } else if error.is_timeout() {
            ClientError::Timeout { upstream }
        } else {
            ClientError::Transport {
                upstream,
                source: error,
            }
        }
    }

    /// Sends a JSON call and buffers the answer. Idempotent calls are retried with jittered
    /// exponential backoff after connection failures (the request never reached the upstream);
    /// a timeout or a 502/503/504 is not retried, so a struggling upstream is not sent more
    /// work. Non-idempotent calls are sent once. Any other status (4xx included) is returned
    /// for the caller to interpret.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        idempotency: Idempotency,
        context: &RequestContext,
    ) -> Result<Reply, ClientError> {
        let attempts = match idempotency {
            Idempotency::Idempotent => self.config.retries + 1,
            Idempotency::NotIdempotent => 1,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .call_once(method.clone(), path_and_query, body, context)
                .await;
            match result {
                Err(error) if attempt < attempts && retryable(&error) => {
                    let delay = backoff(attempt);
                    tracing::debug!(
                        upstream = self.upstream,
                        %error,
                        attempt,
                        ?delay,
                        "retrying idempotent call"
                    );
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        context: &RequestContext,
    ) -> Result<Reply, ClientError> {
        let _slot = self.slot()?;
        let permit = self.permit()?;
        let mut request = self
            .prepare(method, path_and_query, context)
            .timeout(self.config.request_timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let result = async {
            let response = request.send().await.map_err(|e| self.classify(e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| self.classify(e))?;
            if matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ) {
                return Err(ClientError::Unavailable {
                    upstream: self.upstream,
                    status,
                });
            }
            Ok(Reply {
                status,
                headers,
                body,
            })
        }
        .await;
        permit.record(result.is_ok());
        result
    }

    /// Sends a request whose body streams through and returns the streaming answer (the
    /// gateway). Never retried: a streamed body cannot be replayed. Upstream answers, 5xx
    /// included, are returned as answers. Only failures that are the upstream's count against
    /// its circuit: refused connections, and timeouts of requests without a client body (a
    /// client that uploads slowly, aborts, or exceeds the size limit must not be able to open
    /// the circuit for everyone). The returned slot must be held until the answer has been
    /// streamed.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
        context: &RequestContext,
    ) -> Result<(reqwest::Response, InFlight), ClientError> {
        let slot = self.slot()?;
        let permit = self.permit()?;
        let client_body = body.is_some();
        let mut request = self
            .prepare(method, path_and_query, context)
            .headers(headers)
            .timeout(self.config.request_timeout);
        if let Some(body) = body {
            request = request.body(body);
        }
        let result = request.send().await.map_err(|e| self.classify(e));
        match &result {
            Ok(_) => permit.record(true),
            Err(ClientError::Connect { .. }) => permit.record(false),
            Err(ClientError::Timeout { .. }) if !client_body => permit.record(false),
            Err(_) => drop(permit),
        }
        result.map(|response| (response, slot))
    }
}

/// Only a failed connection proves the upstream never saw the request.
fn retryable(error: &ClientError) -> bool {
    matches!(error, ClientError::Connect { .. })
}

/// 50 ms, 100 ms, 200 ms, ... with ±50 % jitter, capped at 2 s.
fn backoff(attempt: u32) -> Duration {
    let exponential = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let capped = exponential.min(Duration::from_secs(2));
    capped.mul_f64(rand::rng().random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let delay = backoff(attempt);
            assert!(delay <= Duration::from_secs(3), "{attempt}: {delay:?}");
            assert!(delay >= Duration::from_millis(25), "{attempt}: {delay:?}");
        }
        assert!(backoff(5) > Duration::from_millis(350));
    }
}
