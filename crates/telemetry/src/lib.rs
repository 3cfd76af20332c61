//! Tracing initialisation and the metrics recorder shared by every Shop binary.

pub mod metrics;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use shop_settings::{LogFormat, Settings};
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

pub use opentelemetry_sdk;

/// The tracer provider, when traces are exported (flushed by [`shutdown`]).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber: `RUST_LOG` filter, `LOG_FORMAT` pretty or JSON lines, and,
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span exported over OTLP/HTTP.
///
/// A second call (several servers in one process, or tests) keeps the first subscriber.
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = settings
        .otel_exporter_otlp_endpoint
        .as_deref()
        .and_then(|endpoint| match otlp_provider(endpoint) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("traces will not be exported: {error}");
                None
            }
        })
        .map(|provider| {
            let tracer = provider.tracer("shop");
            let _ = PROVIDER.set(provider);
            tracing_opentelemetry::layer().with_tracer(tracer)
        });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match settings.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    // Already installed: keep the first one.
    drop(result);
}

/// This binary's name, as the traces' `service.name`.
fn service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "shop".into())
}

fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name())
                .build(),
        )
        .build())
}

/// Sends the spans still buffered (at shutdown).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("traces not flushed: {error}");
    }
}

/// A test subscriber that also hands every finished span to `provider` (an in-memory
/// exporter, say). Call it before anything else installs a subscriber.
pub fn init_for_tests_with_traces(provider: &SdkTracerProvider) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop-tests")))
        .with(
            fmt::layer()
                .compact()
                .with_test_writer()
                .with_filter(EnvFilter::new("warn")),
        )
        .try_init();
}

/// A subscriber for tests: honours `RUST_LOG`, writes through the test harness' capture.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().compact().with_test_writer())
        .try_init();
}
