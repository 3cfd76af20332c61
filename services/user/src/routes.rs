//! HTTP handlers: extract, call the account or session functions, shape the answer.

use actix_web::{HttpResponse, http::header, web};
use serde::{Deserialize, Deserializer};
use shop_contracts::{Page, Role, SessionId, SessionStatus, TokenResponse, UserId, UserResponse};
use shop_http::openapi::responses;
use shop_http::{Admin, ApiError, ErrorCode, Identity, PageQuery, Problem, RequestContext};

use crate::{AppState, accounts, mfa, recovery, sessions};

type State = web::Data<AppState>;

/// Registers every route of the service.
pub fn configure(state: State) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg| {
        cfg.app_data(state.clone())
            .route("/register", web::post().to(register))
            .route("/login", web::post().to(login))
            .route("/refresh", web::post().to(refresh))
            .route("/logout", web::post().to(logout))
            .route("/me", web::get().to(get_me))
            .route("/me", web::patch().to(update_me))
            .route("/me/password", web::post().to(change_password))
            .route(
                "/me/email-verification",
                web::post().to(resend_verification),
            )
            .route("/me/mfa", web::post().to(enrol_mfa))
            .route("/me/mfa", web::delete().to(remove_mfa))
            .route("/me/mfa/confirm", web::post().to(confirm_mfa))
            .route("/email-verification/confirm", web::post().to(confirm_email))
            .route("/password-reset", web::post().to(request_password_reset))
            .route(
                "/password-reset/confirm",
                web::post().to(confirm_password_reset),
            )
            .route("/users", web::get().to(list_users))
            .route("/users/{id}", web::patch().to(update_user))
            .route("/internal/sessions/{id}", web::get().to(get_session));
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Trimmed and lower-cased before it is checked and stored; unique.
    #[schema(example = "ann@example.com", format = "email", max_length = 254)]
    email: String,
    /// 8 to 72 bytes (bcrypt reads no further).
    #[schema(example = "correct horse battery", min_length = 8, max_length = 72)]
    password: String,
    /// Display name: trimmed, at most 100 characters, no control characters; empty means none.
    #[schema(example = "Ann", max_length = 100)]
    name: Option<String>,
}

/// Create an account with role `user`.
///
/// The email is trimmed and lower-cased, so addresses differing only in case or surrounding
/// spaces are the same account. Fields are validated before the password is hashed. Does not
/// log in: call `POST /login` next.
#[utoipa::path(post, path = "/register", tag = "accounts", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created: the new account", body = UserResponse,
         headers(("Location" = String, description = "Always `/me`"))),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "An account with this email exists (`email-taken`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid fields, with per-field `errors` (`email`, `password`, `name`; unknown or missing fields)", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "Password hashing is saturated (Retry-After: 1) or the database is unavailable; see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
        responses::RateLimited,
    ))]
pub async fn register(
    state: State,
    body: shop_http::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = accounts::register(&state, &body.email, body.password, body.name.as_deref()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/me"))
        .json(UserResponse::from(user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Trimmed and lower-cased before the lookup.
    #[schema(example = "ann@example.com")]
    email: String,
    #[schema(example = "correct horse battery")]
    password: String,
    /// The current one-time code, for an account with a second factor (else ignored).
    #[schema(example = "123456")]
    otp: Option<String>,
}

/// Log in: open a session and get an access token and a refresh token.
///
/// Every failure (unknown email, wrong password, disabled account, an address that cannot
/// exist) gets the same 401 body and costs the same bcrypt time. Attempts are counted per
/// (client IP, email) before the password is checked: beyond LOGIN_THROTTLE_LIMIT within
/// LOGIN_THROTTLE_WINDOW the answer is 429 even for the right password; a success clears the
/// count.
#[utoipa::path(post, path = "/login", tag = "sessions", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in: a new session", body = TokenResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 401, description = "Wrong password or unknown email (same answer for both), a disabled account, or a wrong or already used one-time code (`unauthorized`); the right password of an account with a second factor but no `otp` (`mfa-required`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Missing, unknown or mistyped fields, with per-field `errors`; the email's form is not checked here (an impossible address is a 401)", content_type = "application/problem+json", body = Problem),
        (status = 429, description = "Too many attempts for this client IP and email (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "Password hashing is saturated (Retry-After: 1) or the database is unavailable; see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
    ))]
pub async fn login(
    state: State,
    context: RequestContext,
    body: shop_http::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tokens = sessions::login(
        &state,
        &body.email,
        body.password,
        body.otp.as_deref(),
        context.client_ip,
    )
    .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token of the latest pair.
    refresh_token: String,
}

/// Exchange a refresh token for a new pair.
///
/// The token presented dies; the session keeps its original expiry (REFRESH_EXPIRES_IN from
/// the login). Presenting a token that was already exchanged revokes its whole session, its
/// access tokens included, and gets 401.
#[utoipa::path(post, path = "/refresh", tag = "sessions", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and refresh token for the same session", body = TokenResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 401, description = "Unknown, already used, expired or revoked refresh token, or a disabled account (`unauthorized`, one answer for all)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Missing, unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn refresh(
    state: State,
    body: shop_http::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = sessions::refresh(&state, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// End the caller's session.
///
/// Its refresh token dies and its access tokens are refused from now on; other sessions of
/// the account stay open. No request body.
#[utoipa::path(post, path = "/logout", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn logout(state: State, identity: Identity) -> Result<HttpResponse, ApiError> {
    sessions::logout(&state, &identity).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's own account.
///
/// Whatever the token's role; a disabled account or a revoked session gets 401.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserResponse),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn get_me(state: State, identity: Identity) -> Result<HttpResponse, ApiError> {
    let user = accounts::me(&state, &identity).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Distinguishes an absent field (keep) from `null` (clear).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// New display name: trimmed, at most 100 characters, no control characters. `null` or
    /// an empty string clears it; leaving the field out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Ann")]
    name: Option<Option<String>>,
}

/// Change the caller's display name.
///
/// `{}` changes nothing and answers the account as it is.
#[utoipa::path(patch, path = "/me", tag = "accounts", request_body = UpdateMeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account after the change", body = UserResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid `name`, or unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn update_me(
    state: State,
    identity: Identity,
    body: shop_http::Json<UpdateMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = match &body.name {
        Some(name) => accounts::update_me(&state, &identity, name.as_deref()).await?,
        None => accounts::me(&state, &identity).await?,
    };
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    #[schema(example = "correct horse battery")]
    current_password: String,
    /// 8 to 72 bytes.
    #[schema(example = "battery staple horse", min_length = 8, max_length = 72)]
    new_password: String,
}

/// Change the caller's password.
///
/// Every other session of the account ends; the caller's own stays open. `newPassword` is
/// checked first; then attempts are counted per account: beyond LOGIN_THROTTLE_LIMIT within
/// LOGIN_THROTTLE_WINDOW the answer is 429 even for the right current password; a success
/// clears the count.
#[utoipa::path(post, path = "/me/password", tag = "accounts", request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every other session is revoked"),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "`newPassword` out of bounds, `currentPassword` is not the account's password, or unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        (status = 429, description = "Too many attempts for this account (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "Password hashing is saturated (Retry-After: 1) or the database is unavailable; see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
    ))]
pub async fn change_password(
    state: State,
    identity: Identity,
    body: shop_http::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    accounts::change_password(&state, &identity, body.current_password, body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Listing parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// 1-based page (default 1).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// List accounts, newest first (administrators).
///
/// Pages of `limit` accounts; `total` counts them all.
#[utoipa::path(get, path = "/users", tag = "users", params(ListUsersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = Page<UserResponse>),
        (status = 403, description = "Not an administrator (`forbidden`; checked before the id, the body and validation)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid `page` or `limit`, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn list_users(
    _admin: Admin,
    state: State,
    query: web::Query<ListUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let (page, limit) = PageQuery {
        page: query.page,
        limit: query.limit,
    }
    .validate()?;
    let (users, total) = accounts::list(&state, page, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: users.into_iter().map(UserResponse::from).collect(),
        page,
        limit,
        total,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// New role.
    role: Option<Role>,
    /// Disable (true) or re-enable (false) the account.
    #[schema(example = true)]
    disabled: Option<bool>,
}

/// Change an account's role or disable it (administrators).
///
/// Give `role`, `disabled` or both. Every session of the account ends, whatever changed, so
/// its holder must log in again (a disabled account cannot). Administrators cannot change their
/// own account here.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UpdateUserRequest,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The account after the change", body = UserResponse),
        (status = 400, description = "Malformed user id (`invalid-id`) or malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 403, description = "Not an administrator (`forbidden`; checked before the id, the body and validation), or an administrator changing their own account", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such account (`not-found`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Neither `role` nor `disabled` given (field `body`), an unknown role, or unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn update_user(
    Admin(admin): Admin,
    state: State,
    id: web::Path<UserId>,
    body: shop_http::Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    // Administrators manage other accounts: changing one's own would end one's own sessions,
    // and disabling or demoting it could leave the shop without an administrator. Another
    // administrator can make the change.
    if *id == admin.user_id {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "administrators cannot change their own role or status; ask another administrator",
        ));
    }
    let user = accounts::update_by_admin(&state, *id, body.role, body.disabled).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Whether a session is live.
///
/// For the gateway when Redis is away: `id` is the access token's `sid`. The gateway treats
/// 404 as revoked.
#[utoipa::path(get, path = "/internal/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id"),
           ("X-Internal-Token" = String, Header, description = "The internal credential")),
    responses(
        (status = 200, description = "The session; `active` is false once it is revoked or expired", body = SessionStatus),
        (status = 400, description = "Malformed session id (`invalid-id`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No such session (`not-found`)", content_type = "application/problem+json", body = Problem),
        responses::InternalCredential,
        responses::Unavailable,
    ))]
pub async fn get_session(state: State, id: web::Path<SessionId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::status(&state, *id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// Trimmed and lower-cased before the lookup; not checked for form.
    #[schema(example = "ann@example.com", max_length = 254)]
    email: String,
}

/// Ask for a password-reset link by mail.
///
/// Always 202, whether or not an account has this email, and as quickly either way: the mail
/// (a link valid PASSWORD_RESET_TTL, usable once; a newer link kills older ones) is sent only
/// when a live account has the address. Limited per client IP (ACCOUNT_MAIL_IP_LIMIT) and per
/// email (ACCOUNT_MAIL_LIMIT) within ACCOUNT_MAIL_WINDOW, for known and unknown emails alike.
#[utoipa::path(post, path = "/password-reset", tag = "accounts", request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Accepted: a link is mailed if the account exists"),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Missing, unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        (status = 429, description = "Too many requests for this client IP or this email (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
    ))]
pub async fn request_password_reset(
    state: State,
    context: RequestContext,
    body: shop_http::Json<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    recovery::request_reset(&state, &body.email, context.client_ip).await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordResetConfirmRequest {
    /// The token from the mailed link.
    token: String,
    /// 8 to 72 bytes.
    #[schema(example = "a new horse battery", min_length = 8, max_length = 72)]
    new_password: String,
}

/// Set a new password with a mailed reset token.
///
/// The token dies, with every other reset link of the account; every session of the account
/// ends; the email counts as verified (the link reached it); a notice is mailed.
#[utoipa::path(post, path = "/password-reset/confirm", tag = "accounts", request_body = PasswordResetConfirmRequest,
    responses(
        (status = 204, description = "The password is set; sign in with it"),
        (status = 400, description = "Malformed JSON (`malformed-json`), or a token that is unknown, used or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Invalid `newPassword`, or missing, unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        (status = 503, description = "Password hashing is saturated (Retry-After: 1) or the database is unavailable; see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
        responses::RateLimited,
    ))]
pub async fn confirm_password_reset(
    state: State,
    body: shop_http::Json<PasswordResetConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    recovery::confirm_reset(&state, &body.token, body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mailed link.
    token: String,
}

/// Verify an email address with the token mailed to it.
///
/// Needs no login: the link may be opened anywhere. The token dies.
#[utoipa::path(post, path = "/email-verification/confirm", tag = "accounts", request_body = TokenRequest,
    responses(
        (status = 204, description = "The address is verified"),
        (status = 400, description = "Malformed JSON (`malformed-json`), or a token that is unknown, used or expired (`invalid-token`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "Missing, unknown or mistyped fields, with per-field `errors`", content_type = "application/problem+json", body = Problem),
        responses::JsonBody,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn confirm_email(
    state: State,
    body: shop_http::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    recovery::confirm_email(&state, &body.token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mail the caller a new verification link.
///
/// Earlier links die. Nothing is sent when the address is verified already. Limited per
/// account (ACCOUNT_MAIL_LIMIT within ACCOUNT_MAIL_WINDOW). No request body.
#[utoipa::path(post, path = "/me/email-verification", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: a link is mailed unless the address is verified"),
        (status = 429, description = "Too many links asked for (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::Unavailable,
    ))]
pub async fn resend_verification(
    state: State,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    recovery::resend_verification(&state, &identity).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Start enrolling a second factor (TOTP).
///
/// Answers a new secret, its `otpauth://` URI and that URI's QR code (SVG) for an
/// authenticator app. Nothing changes at sign-in until a code from it is confirmed at
/// `POST /me/mfa/confirm`; enrolling again before that replaces the secret. No request body.
#[utoipa::path(post, path = "/me/mfa", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The pending secret", body = mfa::Enrolment),
        (status = 409, description = "A second factor is enabled already (`mfa-already-enabled`)", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::RateLimited,
        responses::Unavailable,
    ))]
pub async fn enrol_mfa(state: State, identity: Identity) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(mfa::enrol(&state, &identity).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The authenticator app's current six-digit code.
    #[schema(example = "123456")]
    code: String,
}

/// Confirm the pending second factor with a code from it.
///
/// From then on sign-in needs `otp`, and the caller's session is unchanged: sign in again
/// with a code for a token that says so (what admin routes need when ADMIN_REQUIRE_MFA is
/// on). Wrong codes count like wrong passwords (LOGIN_THROTTLE_LIMIT per account).
#[utoipa::path(post, path = "/me/mfa/confirm", tag = "accounts", request_body = CodeRequest, security(("bearer" = [])),
    responses(
        (status = 204, description = "The second factor is enabled"),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 409, description = "A second factor is enabled already (`mfa-already-enabled`)", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "A wrong code, or no enrolment in progress, on `code`", content_type = "application/problem+json", body = Problem),
        (status = 429, description = "Too many wrong codes (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::Unavailable,
    ))]
pub async fn confirm_mfa(
    state: State,
    identity: Identity,
    body: shop_http::Json<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    mfa::confirm(&state, &identity, &body.code).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove the second factor, with a current code.
#[utoipa::path(delete, path = "/me/mfa", tag = "accounts", request_body = CodeRequest, security(("bearer" = [])),
    responses(
        (status = 204, description = "Sign-in needs the password only"),
        (status = 400, description = "Malformed JSON (`malformed-json`)", content_type = "application/problem+json", body = Problem),
        (status = 404, description = "No second factor is enabled", content_type = "application/problem+json", body = Problem),
        (status = 422, description = "A wrong or already used code, on `code`", content_type = "application/problem+json", body = Problem),
        (status = 429, description = "Too many wrong codes (`rate-limited`); see Retry-After", content_type = "application/problem+json", body = Problem),
        responses::Unauthenticated,
        responses::JsonBody,
        responses::Unavailable,
    ))]
pub async fn remove_mfa(
    state: State,
    identity: Identity,
    body: shop_http::Json<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    mfa::remove(&state, &identity, &body.code).await?;
    Ok(HttpResponse::NoContent().finish())
}
