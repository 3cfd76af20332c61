//! The user service's errors and their problem+json form.

use std::time::Duration;

use shop_http::{ApiError, ErrorCode, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Wrong password, unknown email, disabled account, bad refresh token: one answer for all.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email already registered")]
    EmailTaken,
    #[error("too many failed logins")]
    Throttled { retry_after: Duration },
    #[error("too many mails asked for")]
    MailLimited { retry_after: Duration },
    #[error("invalid, used or expired token")]
    InvalidToken,
    #[error("a one-time code is required")]
    MfaRequired,
    #[error("a second factor is enabled already")]
    MfaAlreadyEnabled,
    #[error("password hashing is saturated")]
    Busy,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] shop_db::DbError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for UserError {
    fn from(error: diesel::result::Error) -> Self {
        UserError::Db(error.into())
    }
}

impl UserError {
    /// One invalid field.
    pub fn field(field: &str, message: &str) -> Self {
        UserError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::InvalidCredentials => ApiError::unauthorized(),
            UserError::EmailTaken => {
                ApiError::new(ErrorCode::EmailTaken, "an account with this email exists")
            }
            UserError::Throttled { retry_after } => ApiError::new(
                ErrorCode::RateLimited,
                "too many failed logins; try again later",
            )
            .with_retry_after(retry_after.as_secs().max(1)),
            UserError::MailLimited { retry_after } => ApiError::new(
                ErrorCode::RateLimited,
                "too many requests for this address; try again later",
            )
            .with_retry_after(retry_after.as_secs().max(1)),
            UserError::InvalidToken => ApiError::new(
                ErrorCode::InvalidToken,
                "the link is invalid, already used or expired; ask for a new one",
            ),
            UserError::MfaRequired => ApiError::new(
                ErrorCode::MfaRequired,
                "this account signs in with a one-time code: send it as `otp` with the password",
            ),
            UserError::MfaAlreadyEnabled => ApiError::new(
                ErrorCode::MfaAlreadyEnabled,
                "a second factor is enabled already: remove it (DELETE /me/mfa) before enrolling another",
            ),
            UserError::Busy => ApiError::unavailable("the service is busy; try again shortly", 1),
            UserError::Validation(errors) => ApiError::validation(errors),
            UserError::NotFound => ApiError::not_found(),
            UserError::Db(error) if error.is_unique_violation() => {
                ApiError::new(ErrorCode::EmailTaken, "an account with this email exists")
            }
            UserError::Db(error) => error.into(),
            UserError::Unexpected(error) => ApiError::internal(error),
        }
    }
}
