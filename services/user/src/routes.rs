//! HTTP handlers: extract, call the account or session functions, shape the answer.

use actix_web::{HttpResponse, http::header, web};
use serde::{Deserialize, Deserializer};
use shop_contracts::{Page, Role, UserResponse};
use shop_http::{Admin, ApiError, Identity, PageQuery, RequestContext};
use uuid::Uuid;

use crate::{AppState, accounts, sessions};

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
            .route("/users", web::get().to(list_users))
            .route("/users/{id}", web::patch().to(update_user))
            .route("/internal/sessions/{id}", web::get().to(get_session));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    password: String,
    name: Option<String>,
}

async fn register(
    state: State,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = accounts::register(&state, &body.email, body.password, body.name.as_deref()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/me"))
        .json(UserResponse::from(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

async fn login(
    state: State,
    context: RequestContext,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tokens = sessions::login(&state, &body.email, body.password, context.client_ip).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(state: State, body: web::Json<RefreshRequest>) -> Result<HttpResponse, ApiError> {
    let tokens = sessions::refresh(&state, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

async fn logout(state: State, identity: Identity) -> Result<HttpResponse, ApiError> {
    sessions::logout(&state, &identity).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get_me(state: State, identity: Identity) -> Result<HttpResponse, ApiError> {
    let user = accounts::me(&state, &identity).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Distinguishes an absent field (keep) from `null` (clear).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMeRequest {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
}

async fn update_me(
    state: State,
    identity: Identity,
    body: web::Json<UpdateMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = match &body.name {
        Some(name) => accounts::update_me(&state, &identity, name.as_deref()).await?,
        None => accounts::me(&state, &identity).await?,
    };
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

async fn change_password(
    state: State,
    identity: Identity,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    accounts::change_password(&state, &identity, body.current_password, body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_users(
    _admin: Admin,
    state: State,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (page, limit) = query.validate()?;
    let (users, total) = accounts::list(&state, page, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: users.into_iter().map(UserResponse::from).collect(),
        page,
        limit,
        total,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    role: Option<Role>,
    disabled: Option<bool>,
}

async fn update_user(
    _admin: Admin,
    state: State,
    id: web::Path<Uuid>,
    body: web::Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = accounts::update_by_admin(&state, *id, body.role, body.disabled).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

async fn get_session(state: State, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::status(&state, *id).await?))
}
