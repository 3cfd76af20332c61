//! The shared client against a real local HTTP server.

#![allow(clippy::unwrap_used)]

use std::{
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use shop_client::{ClientConfig, ClientError, Idempotency, ServiceClient, reqwest::Method};
use shop_http::{RequestContext, TraceParent};

/// The headers of each request an upstream received, in order.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// An upstream that answers a settable status and records the headers it saw.
struct Upstream {
    url: String,
    status: Arc<AtomicU16>,
    seen: Seen,
    handle: actix_web::dev::ServerHandle,
}

impl Upstream {
    async fn start(status: u16) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), status).await
    }

    async fn start_on(listener: TcpListener, status: u16) -> Self {
        let status = Arc::new(AtomicU16::new(status));
        let seen: Seen = Arc::default();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (answer, record) = (status.clone(), seen.clone());
        let server = HttpServer::new(move || {
            let (answer, record) = (answer.clone(), record.clone());
            App::new().default_service(web::to(move |req: HttpRequest| {
                let (answer, record) = (answer.clone(), record.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    record.lock().unwrap().push(headers);
                    let code = actix_web::http::StatusCode::from_u16(answer.load(Ordering::SeqCst))
                        .unwrap();
                    HttpResponse::build(code).body("{}")
                }
            }))
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url,
            status,
            seen,
            handle,
        }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn header(&self, hit: usize, name: &str) -> Option<String> {
        self.seen.lock().unwrap()[hit]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn config(retries: u32, breaker_threshold: u32) -> ClientConfig {
    ClientConfig {
        caller: "order",
        internal_token: "internal-token-for-the-client-tests-0123".into(),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        retries,
        breaker_threshold,
        breaker_cooldown: Duration::from_secs(60),
        max_in_flight: 64,
        pool_max_idle: 8,
    }
}

async fn call(
    client: &ServiceClient,
    idempotency: Idempotency,
) -> Result<shop_client::Reply, ClientError> {
    client
        .call::<()>(
            Method::POST,
            "/internal/x",
            None,
            idempotency,
            &RequestContext::background(),
        )
        .await
}

#[tokio::test]
async fn answers_are_never_retried_whatever_their_status() {
    let upstream = Upstream::start(503).await;
    let client = ServiceClient::new("catalog", &upstream.url, config(2, 100));

    // The upstream saw the request: sending it again would only add load to a struggling
    // service.
    let result = call(&client, Idempotency::Idempotent).await;
    assert!(
        matches!(result, Err(ClientError::Unavailable { .. })),
        "{result:?}"
    );
    assert_eq!(upstream.hits(), 1);

    upstream.status.store(409, Ordering::SeqCst);
    let reply = call(&client, Idempotency::Idempotent).await.unwrap();
    assert_eq!(reply.status, 409);
    assert_eq!(upstream.hits(), 2);
    upstream.handle.stop(false).await;
}

/// A port nobody listens on (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn idempotent_calls_are_retried_after_connection_failures_only() {
    // Refused connections: a non-idempotent call fails at once; an idempotent one keeps
    // trying (50 ms, 100 ms, ... backoff) and reaches the upstream once it listens.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let client = ServiceClient::new("catalog", &url, config(6, 100));
    let result = call(&client, Idempotency::NotIdempotent).await;
    assert!(
        matches!(result, Err(ClientError::Connect { .. })),
        "{result:?}"
    );

    let retried = tokio::spawn({
        let client = client.clone();
        async move { call(&client, Idempotency::Idempotent).await }
    });
    // The first attempt has been refused once the retry loop sleeps; then start listening.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let upstream = Upstream::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), 200).await;
    let reply = retried.await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.hits(), 1, "delivered exactly once");
    upstream.handle.stop(false).await;
}

#[tokio::test]
async fn calls_beyond_the_in_flight_bound_are_refused_at_once() {
    let upstream = Upstream::start(200).await;
    let mut tuned = config(0, 100);
    tuned.max_in_flight = 1;
    let client = ServiceClient::new("catalog", &upstream.url, tuned);
    // Hold the only slot with a streamed answer that has not been read.
    let (held, _slot) = client
        .forward(
            Method::GET,
            "/x",
            shop_client::reqwest::header::HeaderMap::new(),
            None,
            &RequestContext::background(),
        )
        .await
        .unwrap();
    let result = call(&client, Idempotency::Idempotent).await;
    assert!(
        matches!(result, Err(ClientError::Saturated { .. })),
        "{result:?}"
    );
    let problem = shop_http::ApiError::from(result.unwrap_err());
    assert_eq!(problem.code(), shop_http::ErrorCode::DependencyUnavailable);
    assert_eq!(problem.retry_after(), Some(1));
    drop((held, _slot));
    assert_eq!(
        call(&client, Idempotency::Idempotent).await.unwrap().status,
        200
    );
    upstream.handle.stop(false).await;
}

#[tokio::test]
async fn calls_carry_the_credential_caller_request_id_and_trace() {
    let upstream = Upstream::start(200).await;
    let client = ServiceClient::new("catalog", &upstream.url, config(0, 100));
    let context = RequestContext {
        request_id: "req-42".into(),
        traceparent: TraceParent::new_root(),
        client_ip: None,
    };
    client
        .call(
            Method::POST,
            "/internal/x",
            Some(&serde_json::json!({"a": 1})),
            Idempotency::Idempotent,
            &context,
        )
        .await
        .unwrap();
    assert_eq!(
        upstream.header(0, "x-internal-token").as_deref(),
        Some("internal-token-for-the-client-tests-0123")
    );
    assert_eq!(upstream.header(0, "x-caller").as_deref(), Some("order"));
    assert_eq!(
        upstream.header(0, "x-request-id").as_deref(),
        Some("req-42")
    );
    let sent = TraceParent::parse(&upstream.header(0, "traceparent").unwrap()).unwrap();
    assert_eq!(
        sent.trace_id(),
        context.traceparent.trace_id(),
        "same trace"
    );
    assert_eq!(
        sent.header_value(),
        context.traceparent.header_value(),
        "the caller's span is the parent"
    );
    upstream.handle.stop(false).await;
}

#[tokio::test]
async fn an_open_circuit_fails_fast_without_calling() {
    let upstream = Upstream::start(503).await;
    let client = ServiceClient::new("catalog", &upstream.url, config(0, 2));
    for _ in 0..2 {
        assert!(call(&client, Idempotency::NotIdempotent).await.is_err());
    }
    let result = call(&client, Idempotency::NotIdempotent).await;
    let Err(error @ ClientError::CircuitOpen { retry_after, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(retry_after > Duration::from_secs(55), "{retry_after:?}");
    assert_eq!(upstream.hits(), 2, "the open circuit sent nothing");
    // 503 with the time left in the cool-down.
    let problem = shop_http::ApiError::from(error);
    assert_eq!(problem.retry_after(), Some(60));
    upstream.handle.stop(false).await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ServiceClient::new(
        "catalog",
        &format!("http://127.0.0.1:{port}"),
        config(1, 100),
    );
    let result = call(&client, Idempotency::Idempotent).await;
    assert!(
        matches!(result, Err(ClientError::Connect { .. })),
        "{result:?}"
    );
    let problem = shop_http::ApiError::from(result.unwrap_err());
    assert_eq!(problem.code(), shop_http::ErrorCode::DependencyUnavailable);
}
