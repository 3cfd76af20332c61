//! The caller's identity, as the gateway established it from a verified access token.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use shop_contracts::{Role, SessionId, UserId};

use crate::{ApiError, context::headers};

/// The authenticated user behind a request. Services trust these headers only because the
/// internal-credential guard admitted the request (only the gateway and services hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub session_id: SessionId,
    /// What the caller's token says of the account's email.
    pub email_verified: bool,
}

impl Identity {
    /// 403 unless the caller is an administrator.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The identity the gateway forwarded; it names the user in the request's access log.
    fn from_headers(req: &HttpRequest) -> Option<Self> {
        let header = |name: &str| req.headers().get(name)?.to_str().ok();
        let identity = Self {
            user_id: header(headers::USER_ID)?.parse().ok()?,
            role: header(headers::USER_ROLE)?.parse().ok()?,
            session_id: header(headers::SESSION_ID)?.parse().ok()?,
            email_verified: header(headers::EMAIL_VERIFIED) == Some("true"),
        };
        tracing::Span::current().record("user.id", tracing::field::display(identity.user_id));
        Some(identity)
    }
}

impl FromRequest for Identity {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Identity::from_headers(req).ok_or_else(ApiError::unauthorized))
    }
}

/// An administrator's identity. As an extractor placed before the body, it makes a non-admin
/// get 403 before any validation or precondition is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(pub Identity);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match Identity::from_headers(req) {
            None => Err(ApiError::unauthorized()),
            Some(identity) if identity.is_admin() => Ok(Admin(identity)),
            Some(_) => Err(ApiError::forbidden()),
        })
    }
}

/// A service that calls other services' internal routes, by its `X-Caller` name.
pub trait Caller {
    const NAME: &'static str;
}

/// The order service (it reserves and releases stock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderService;

impl Caller for OrderService {
    const NAME: &'static str = "order";
}

/// The payment service (it reports payments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentService;

impl Caller for PaymentService {
    const NAME: &'static str = "payment";
}

/// The user service (it reads orders to mail their owners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserService;

impl Caller for UserService {
    const NAME: &'static str = "user";
}

/// An extractor for a route only the service `C` may call: anyone else gets 403 before the
/// body is read. The internal-credential guard has already admitted the request; `X-Caller`
/// says which holder of the credential it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalCaller<C>(std::marker::PhantomData<C>);

impl<C: Caller> FromRequest for InternalCaller<C> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = req
            .headers()
            .get(headers::CALLER)
            .and_then(|v| v.to_str().ok());
        ready(if caller == Some(C::NAME) {
            Ok(Self(std::marker::PhantomData))
        } else {
            Err(ApiError::new(
                crate::ErrorCode::Forbidden,
                format!("only the {} service may call this", C::NAME),
            ))
        })
    }
}
