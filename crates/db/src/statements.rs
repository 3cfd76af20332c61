//! Counts what a connection sends to Postgres, so the cost of a request can be read off
//! `/metrics` rather than guessed.

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// A diesel [`Instrumentation`] counting, per service:
/// - `shop_db_statements_total`: every statement sent, `BEGIN` and `COMMIT` included (a pool's
///   test query too);
/// - `shop_db_statements_prepared_total`: statements prepared into a connection's cache (flat
///   once a service is warm: hot statements are prepared once per connection).
#[derive(Debug, Clone, Copy)]
pub struct StatementCounter {
    service: &'static str,
}

impl StatementCounter {
    pub fn new(service: &'static str) -> Self {
        // Both series exported from the first connection on, before anything was prepared.
        metrics::counter!("shop_db_statements_total", "service" => service).increment(0);
        metrics::counter!("shop_db_statements_prepared_total", "service" => service).increment(0);
        Self { service }
    }
}

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                metrics::counter!("shop_db_statements_total", "service" => self.service)
                    .increment(1);
            }
            InstrumentationEvent::CacheQuery { .. } => {
                metrics::counter!("shop_db_statements_prepared_total", "service" => self.service)
                    .increment(1);
            }
            _ => {}
        }
    }
}
