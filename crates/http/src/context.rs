//! Per-request context that travels to downstream calls: request id, trace parent, client IP.

use std::{convert::Infallible, future::Ready, net::IpAddr};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// Header names used between the gateway and the services.
pub mod headers {
    pub const REQUEST_ID: &str = "x-request-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const INTERNAL_TOKEN: &str = "x-internal-token";
    pub const CALLER: &str = "x-caller";
    pub const USER_ID: &str = "x-user-id";
    pub const USER_ROLE: &str = "x-user-role";
    pub const SESSION_ID: &str = "x-session-id";
    /// `true` when the caller's access token says the account's email is verified.
    pub const EMAIL_VERIFIED: &str = "x-email-verified";
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
}

/// A W3C `traceparent`: `00-<trace id>-<parent id>-<flags>`, held as numbers (no text is
/// made until a header is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: TraceFlags,
}

/// A random span id (never the invalid all-zero one).
fn new_span_id() -> SpanId {
    SpanId::from(rand::random::<u64>().max(1))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceParent {
    /// Starts a new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::from(rand::random::<u128>().max(1)),
            parent_id: new_span_id(),
            flags: TraceFlags::SAMPLED,
        }
    }

    /// Parses a header value; `None` if it is not a valid version-00 traceparent.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version == "00"
            && parts.next().is_none()
            && is_lower_hex(trace_id, 32)
            && is_lower_hex(parent_id, 16)
            && is_lower_hex(flags, 2);
        if !valid {
            return None;
        }
        let parsed = Self {
            trace_id: TraceId::from_hex(trace_id).ok()?,
            parent_id: SpanId::from_hex(parent_id).ok()?,
            flags: TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        };
        (parsed.trace_id != TraceId::INVALID && parsed.parent_id != SpanId::INVALID)
            .then_some(parsed)
    }

    /// The same trace with a new span id, for an outgoing call.
    pub fn child(&self) -> Self {
        Self {
            parent_id: new_span_id(),
            ..*self
        }
    }

    /// The trace id (displayed as 32 hex digits).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The OpenTelemetry context whose (remote) parent this traceparent names.
    pub fn otel_context(&self) -> opentelemetry::Context {
        use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};
        let span = SpanContext::new(
            self.trace_id,
            self.parent_id,
            self.flags,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(span)
    }

    /// This trace as continued by `span`: its span id when spans are recorded (so calls made
    /// under it name it as their parent), else a new span id.
    pub fn within(&self, span: &tracing::Span) -> Self {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        let recorded = context.span().span_context().clone();
        if recorded.is_valid() && recorded.trace_id() == self.trace_id {
            Self {
                parent_id: recorded.span_id(),
                ..*self
            }
        } else {
            self.child()
        }
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_u8()
        )
    }
}

/// Makes `span` continue the trace named by `traceparent` (from an envelope, a stored row or a
/// payload), if it names one.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let Some(parent) = traceparent.and_then(TraceParent::parse) {
        let _ = span.set_parent(parent.otel_context());
    }
}

/// What a handler passes on to downstream calls.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `X-Request-Id`: the client's if it sent a sane one, else generated at the edge.
    pub request_id: String,
    /// The incoming trace parent, or a new root.
    pub traceparent: TraceParent,
    /// The client address the gateway determined (`X-Forwarded-For`), else the peer.
    pub client_ip: Option<IpAddr>,
}

/// Whether a client-sent request id is safe to log and forward.
pub(crate) fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new request id: a random (version 4) UUID from the thread's generator, which needs no
/// system call (`Uuid::new_v4` asks the kernel for every id).
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

impl RequestContext {
    /// A context for work that no request started (background workers).
    pub fn background() -> Self {
        Self {
            request_id: new_request_id(),
            traceparent: TraceParent::new_root(),
            client_ip: None,
        }
    }

    /// Reads the context from a request (used by the extractor and the gateway).
    pub fn from_request(req: &HttpRequest) -> Self {
        if let Some(context) = req.extensions().get::<RequestContext>() {
            return context.clone();
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header(headers::REQUEST_ID)
            .filter(|id| sane_request_id(id))
            .unwrap_or_else(new_request_id);
        let traceparent = header(headers::TRACEPARENT)
            .and_then(|v| TraceParent::parse(&v))
            .unwrap_or_else(TraceParent::new_root);
        let client_ip = header(headers::FORWARDED_FOR)
            .and_then(|v| v.split(',').next().and_then(|ip| ip.trim().parse().ok()))
            .or_else(|| req.peer_addr().map(|a| a.ip()));
        let context = Self {
            request_id,
            traceparent,
            client_ip,
        };
        req.extensions_mut().insert(context.clone());
        context
    }
}

impl FromRequest for RequestContext {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(RequestContext::from_request(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceParent::new_root();
        let parsed = TraceParent::parse(&root.header_value()).expect("valid");
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.header_value(), root.header_value());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_checked_before_use() {
        assert!(sane_request_id("abc-123_x.y:z"));
        assert!(!sane_request_id("has space"));
        assert!(!sane_request_id("line\nbreak"));
        assert!(!sane_request_id(&"x".repeat(129)));
    }
}
