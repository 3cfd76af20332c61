//! Middleware every service uses: request tracing and the internal-credential guard.

use std::{cell::RefCell, collections::HashMap, time::Instant};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};
use metrics::{Counter, Histogram};
use shop_auth::InternalTokens;
use tracing::Instrument;

use crate::{ApiError, RequestContext, context::headers};

/// Which binary part answers (the `service` label of HTTP metrics), as app data.
#[derive(Debug, Clone, Copy)]
pub struct ServiceName(pub &'static str);

/// The route template of a request the router did not match itself (the gateway's proxy),
/// as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// The method as a label: the standard ones by name, anything else as `other` (a client must
/// not be able to make new series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request metrics of one label set, registered once.
struct Series {
    service: &'static str,
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

thread_local! {
    /// Each worker thread's series by route template (templates are few and fixed).
    static SERIES: RefCell<HashMap<Box<str>, Vec<Series>>> = RefCell::default();
}

fn record_request(
    service: &'static str,
    method: &'static str,
    route: &str,
    status: u16,
    seconds: f64,
) {
    SERIES.with_borrow_mut(|series| {
        if !series.contains_key(route) {
            series.insert(route.into(), Vec::new());
        }
        let Some(of_route) = series.get_mut(route) else {
            return;
        };
        let index = of_route
            .iter()
            .position(|s| s.status == status && s.method == method && s.service == service)
            .unwrap_or_else(|| {
                let labels = [
                    ("service", service.to_owned()),
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                of_route.push(Series {
                    service,
                    method,
                    status,
                    requests: metrics::counter!("shop_http_requests_total", &labels),
                    duration: metrics::histogram!("shop_http_request_duration_seconds", &labels),
                });
                of_route.len() - 1
            });
        of_route[index].requests.increment(1);
        of_route[index].duration.record(seconds);
    });
}

fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Admits a request only with a valid `X-Internal-Token` (health endpoints excepted).
pub async fn require_internal_token(
    tokens: web::Data<InternalTokens>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !is_health(req.path()) {
        let presented = req
            .headers()
            .get(headers::INTERNAL_TOKEN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !tokens.verify(presented) {
            tracing::warn!(
                http.path = req.path(),
                "request without a valid internal credential"
            );
            return Err(ApiError::unauthorized().into());
        }
    }
    next.call(req).await
}

/// One span per request with its id and trace, and one access-log line when it is answered:
/// method, path (never the query string, which may carry a ticket), route template, user id
/// (recorded by whoever establishes the identity), status and latency. Echoes `X-Request-Id`.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut context = RequestContext::from_request(req.request());
    let span = tracing::info_span!(
        "request",
        http.method = %req.method(),
        http.path = %req.path(),
        http.route = tracing::field::Empty,
        user.id = tracing::field::Empty,
        request.id = %context.request_id,
        trace.id = %context.traceparent.trace_id(),
    );
    // The caller's span is this one's parent; calls made while answering name this one.
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(context.traceparent.otel_context());
    }
    context.traceparent = context.traceparent.within(&span);
    req.extensions_mut().insert(context.clone());
    let service = req
        .app_data::<web::Data<ServiceName>>()
        .map_or("unknown", |name| name.0);
    let method = method_label(req.method());
    let quiet = is_health(req.path());
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut response) => {
            let template = response
                .request()
                .extensions()
                .get::<RouteTemplate>()
                .map(|t| t.0);
            let pattern = match template {
                Some(_) => None,
                None => response.request().match_pattern(),
            };
            let route = template.or(pattern.as_deref());
            if let Some(route) = route {
                span.record("http.route", tracing::field::display(route));
            }
            let status = response.status().as_u16();
            record_request(
                service,
                method,
                route.unwrap_or("unmatched"),
                status,
                elapsed_ms / 1000.0,
            );
            if status >= 500 {
                tracing::warn!(http.status = status, elapsed_ms, "request answered");
            } else if !quiet {
                tracing::info!(http.status = status, elapsed_ms, "request answered");
            }
            if let Ok(value) = HeaderValue::from_str(&context.request_id) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(headers::REQUEST_ID), value);
            }
            Ok(response)
        }
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            record_request(service, method, "unmatched", status, elapsed_ms / 1000.0);
            tracing::info!(http.status = status, elapsed_ms, "request refused");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use actix_web::{App, HttpResponse, middleware::from_fn, test, web};

    use super::*;
    use crate::Identity;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn one_access_line_names_route_user_status_and_time_but_no_secrets() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .route(
                    "/orders/{id}",
                    web::get().to(|_: Identity| async { HttpResponse::Ok().finish() }),
                )
                .wrap(from_fn(trace_requests)),
        )
        .await;
        let user = uuid::Uuid::now_v7();
        let request = test::TestRequest::get()
            .uri("/orders/0193f0b2-7c1e-7aa0-9d6b-4a1b2c3d4e5f?ticket=secret-ticket")
            .insert_header((headers::USER_ID, user.to_string()))
            .insert_header((headers::USER_ROLE, "user"))
            .insert_header((headers::SESSION_ID, uuid::Uuid::now_v7().to_string()))
            .insert_header((headers::REQUEST_ID, "req-7"))
            .insert_header(("authorization", "Bearer secret-token"))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), 200);

        let output = String::from_utf8(capture.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .expect("utf-8 logs");
        let lines: Vec<&str> = output
            .lines()
            .filter(|line| line.contains("request answered"))
            .collect();
        assert_eq!(lines.len(), 1, "{output}");
        let line = lines[0];
        for expected in [
            "http.route=/orders/{id}",
            &format!("user.id={user}"),
            "request.id=req-7",
            "http.status=200",
            "elapsed_ms=",
        ] {
            assert!(line.contains(expected), "{expected} missing from {line}");
        }
        assert!(!output.contains("secret-ticket"), "{output}");
        assert!(!output.contains("secret-token"), "{output}");
    }
}
