//! One trace follows an order through every service and stream: spans are recorded with an
//! in-memory exporter. A test binary of its own, so its tracing subscriber is the process's.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, time::Duration};

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{Value, json};
use shop_testkit::TestApp;

#[tokio::test]
async fn one_trace_is_recorded_across_every_service_and_stream() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    shop_telemetry::init_for_tests_with_traces(&provider);

    let app = TestApp::builder()
        .configure(|s| {
            s.payment_failed_probability = 0;
            s.payment_duration = Duration::from_millis(10);
        })
        .spawn()
        .await;
    let lamp = app.create_product("Lamp", 900, 5).await;
    let user = app.new_user().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let placed = app
        .post(
            "/orders",
            &json!({"items": [{"productId": lamp, "quantity": 1}]}),
        )
        .header("authorization", user.bearer())
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id: uuid::Uuid = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.await_order_status(id, "paid", Duration::from_secs(20))
        .await;
    app.await_outboxes_drained().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace_id)
        .collect();
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let seen: BTreeSet<(String, String)> = ours
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                attribute(s, "http.route").unwrap_or_default(),
            )
        })
        .collect();
    // The client's request at the gateway and at the order service, the reservation at the
    // catalog, the outbox publishing the payment request, the request read from the stream,
    // the attempt, the report recorded by the order service (reports travel in batches, each
    // recorded in its payment's trace), and the gateway handing the resulting events to
    // sockets.
    for (name, route) in [
        ("request", "/orders"),
        ("request", "/internal/reservations/{order_id}"),
        ("outbox publish", ""),
        ("stream entry", ""),
        ("payment attempt", ""),
        ("payment report", ""),
        ("notification", ""),
    ] {
        assert!(
            seen.contains(&(name.to_owned(), route.to_owned())),
            "no {name} {route} span in the trace: {seen:?}"
        );
    }
    // Parents are spans of the same trace (or the client's own span): the trace is one tree.
    let ids: BTreeSet<String> = ours
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .chain(["b7ad6b7169203331".to_owned()])
        .collect();
    for span in &ours {
        let parent = span.parent_span_id.to_string();
        assert!(
            ids.contains(&parent),
            "{} {:?} has a parent outside the trace: {parent}",
            span.name,
            attribute(span, "http.route")
        );
    }
}
