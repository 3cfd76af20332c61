//! Tracing initialisation and the metrics recorder shared by every Shop binary.

pub mod metrics;

use shop_settings::{LogFormat, Settings};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Installs the global subscriber: `RUST_LOG` filter, `LOG_FORMAT` pretty or JSON lines.
///
/// A second call (several servers in one process, or tests) keeps the first subscriber.
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
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

/// A subscriber for tests: honours `RUST_LOG`, writes through the test harness' capture.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().compact().with_test_writer())
        .try_init();
}
