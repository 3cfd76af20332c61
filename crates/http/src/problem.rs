//! RFC 9457 problem details with the stable `code` vocabulary of DESIGN.md.

use std::fmt;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

/// The stable error codes clients may branch on (DESIGN.md, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    MalformedJson,
    InvalidId,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    EmailTaken,
    InsufficientStock,
    ProductUnavailable,
    VersionConflict,
    PreconditionFailed,
    PreconditionRequired,
    IdempotencyKeyReused,
    IdempotencyInProgress,
    IllegalTransition,
    OrderNotPending,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    DependencyUnavailable,
    /// A reset, verification or cart token that is unknown, used or expired.
    InvalidToken,
    /// Login needs a one-time code (401).
    MfaRequired,
    /// An admin route needs a token signed in with a second factor (403; same wire code).
    #[serde(rename = "mfa-required")]
    AdminMfaRequired,
    /// A second factor is enabled already: remove it before enrolling another.
    MfaAlreadyEnabled,
    /// The action needs a verified email (403).
    EmailUnverified,
    /// Shipping an order that has no address (409).
    AddressRequired,
    /// A refund above what was captured minus what was refunded (409).
    RefundExceedsCaptured,
    /// Not in the client vocabulary: a bug or an outage.
    Internal,
    /// The gateway could not get an answer in time.
    UpstreamTimeout,
    /// The gateway got an unusable answer.
    BadGateway,
}

impl ErrorCode {
    /// The hyphenated wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed-json",
            ErrorCode::InvalidId => "invalid-id",
            ErrorCode::ValidationFailed => "validation-failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::EmailTaken => "email-taken",
            ErrorCode::InsufficientStock => "insufficient-stock",
            ErrorCode::ProductUnavailable => "product-unavailable",
            ErrorCode::VersionConflict => "version-conflict",
            ErrorCode::PreconditionFailed => "precondition-failed",
            ErrorCode::PreconditionRequired => "precondition-required",
            ErrorCode::IdempotencyKeyReused => "idempotency-key-reused",
            ErrorCode::IdempotencyInProgress => "idempotency-in-progress",
            ErrorCode::IllegalTransition => "illegal-transition",
            ErrorCode::OrderNotPending => "order-not-pending",
            ErrorCode::PayloadTooLarge => "payload-too-large",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::DependencyUnavailable => "dependency-unavailable",
            ErrorCode::InvalidToken => "invalid-token",
            ErrorCode::MfaRequired | ErrorCode::AdminMfaRequired => "mfa-required",
            ErrorCode::MfaAlreadyEnabled => "mfa-already-enabled",
            ErrorCode::EmailUnverified => "email-unverified",
            ErrorCode::AddressRequired => "address-required",
            ErrorCode::RefundExceedsCaptured => "refund-exceeds-captured",
            ErrorCode::Internal => "internal",
            ErrorCode::UpstreamTimeout => "upstream-timeout",
            ErrorCode::BadGateway => "bad-gateway",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedJson | ErrorCode::InvalidId | ErrorCode::InvalidToken => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::EmailUnverified | ErrorCode::AdminMfaRequired => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::MfaRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::EmailTaken
            | ErrorCode::InsufficientStock
            | ErrorCode::ProductUnavailable
            | ErrorCode::VersionConflict
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyInProgress
            | ErrorCode::IllegalTransition
            | ErrorCode::OrderNotPending
            | ErrorCode::MfaAlreadyEnabled
            | ErrorCode::AddressRequired
            | ErrorCode::RefundExceedsCaptured => StatusCode::CONFLICT,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::DependencyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "Malformed JSON",
            ErrorCode::InvalidId => "Invalid id",
            ErrorCode::ValidationFailed => "Validation failed",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "Not found",
            ErrorCode::EmailTaken => "Email already registered",
            ErrorCode::InsufficientStock => "Insufficient stock",
            ErrorCode::ProductUnavailable => "Product unavailable",
            ErrorCode::VersionConflict => "Version conflict",
            ErrorCode::PreconditionFailed => "Precondition failed",
            ErrorCode::PreconditionRequired => "Precondition required",
            ErrorCode::IdempotencyKeyReused => "Idempotency key reused",
            ErrorCode::IdempotencyInProgress => "Request in progress",
            ErrorCode::IllegalTransition => "Illegal status transition",
            ErrorCode::OrderNotPending => "Order not pending",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::DependencyUnavailable => "Service unavailable",
            ErrorCode::InvalidToken => "Invalid or expired token",
            ErrorCode::MfaRequired | ErrorCode::AdminMfaRequired => "Second factor required",
            ErrorCode::MfaAlreadyEnabled => "Second factor already enabled",
            ErrorCode::EmailUnverified => "Email not verified",
            ErrorCode::AddressRequired => "Shipping address required",
            ErrorCode::RefundExceedsCaptured => "Refund exceeds the captured amount",
            ErrorCode::Internal => "Internal error",
            ErrorCode::UpstreamTimeout => "Upstream timeout",
            ErrorCode::BadGateway => "Bad gateway",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `email` or `items[2].quantity`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of every error answer (RFC 9457), for API documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient-stock`.
    pub code: String,
    /// Per-field errors of a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// An error answered as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
    /// Boxed: errors travel in `Result`s everywhere and should stay small.
    extra: Option<Box<serde_json::Value>>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl ApiError {
    /// An error with a code and a human-readable detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            extra: None,
        }
    }

    /// Its per-field errors (422).
    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// 422 with per-field errors.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(
                ErrorCode::ValidationFailed,
                "the request has invalid fields",
            )
        }
    }

    /// 401; the same body whatever the reason, so nothing leaks.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or invalid credentials")
    }

    /// 403.
    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "this operation needs another role")
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(ErrorCode::DependencyUnavailable, detail).with_retry_after(retry_after_secs)
    }

    /// 500 for a bug or outage: logs the cause chain once and hides it from the client.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        tracing::error!(error = format!("{error:#}"), "request failed");
        Self::new(ErrorCode::Internal, "an internal error occurred")
    }

    /// Adds `Retry-After` (seconds).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Adds members to the problem body (e.g. an order's current `status`).
    #[must_use]
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// `Retry-After`, if any (seconds).
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The problem+json body, e.g. to store it and answer it again later. Extra members never
    /// replace the standard ones (`type`, `title`, `status`, `detail`, `code`, `errors`).
    pub fn body(&self) -> serde_json::Value {
        let status = self.code.status();
        let standard = serde_json::to_value(ProblemBody {
            kind: format!("/problems/{}", self.code),
            title: self.code.title(),
            status: status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
        })
        .unwrap_or_default();
        match (self.extra.as_deref(), standard) {
            (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(standard)) => {
                let mut body = extra.clone();
                body.extend(standard);
                serde_json::Value::Object(body)
            }
            (_, standard) => standard,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        response.content_type("application/problem+json");
        if let Some(secs) = self.retry_after {
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.body(self.body().to_string())
    }
}

impl From<shop_db::DbError> for ApiError {
    fn from(error: shop_db::DbError) -> Self {
        if error.is_not_found() {
            return Self::not_found();
        }
        match error {
            shop_db::DbError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable("the database is unavailable; try again shortly", 2)
            }
            shop_db::DbError::Query(other) => Self::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(anyhow::anyhow!("background task failed: {error}"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    #[actix_web::test]
    async fn problem_bodies_carry_code_status_and_fields() {
        let error = ApiError::validation(vec![FieldError::new("email", "is not an email")]);
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let body = to_bytes(response.into_body()).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["code"], "validation-failed");
        assert_eq!(json["status"], 422);
        assert_eq!(json["type"], "/problems/validation-failed");
        assert_eq!(json["errors"][0]["field"], "email");
    }

    #[test]
    fn extra_members_never_replace_the_standard_ones() {
        let body = ApiError::new(ErrorCode::OrderNotPending, "no")
            .with_extra(serde_json::json!({"status": "failed", "orderStatus": "failed"}))
            .body();
        assert_eq!(body["status"], 409);
        assert_eq!(body["code"], "order-not-pending");
        assert_eq!(body["orderStatus"], "failed");
    }

    #[actix_web::test]
    async fn unavailable_sets_retry_after() {
        let response = ApiError::unavailable("down", 3).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
    }
}
