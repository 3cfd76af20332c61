//! HTTP building blocks shared by the services and the gateway: RFC 9457 problem+json errors
//! with stable codes, extractor error mapping, health endpoints, the internal-credential guard,
//! caller identity, request context, and server lifecycle.

mod context;
mod extract;
mod health;
mod identity;
mod middleware;
mod problem;
mod server;

pub use context::{RequestContext, TraceParent, headers};
pub use extract::{common_config, not_found};
pub use health::{Readiness, health_routes};
pub use identity::Identity;
pub use middleware::{require_internal_token, trace_requests};
pub use problem::{ApiError, ErrorCode, FieldError};
pub use server::{Command, Running, command, serve_until_signal, service_server, shutdown_signal};
