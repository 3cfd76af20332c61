//! The user service: accounts, bcrypt passwords, sessions with rotating refresh tokens, the
//! Redis denylist of revoked sessions, and the failed-login throttle.

mod accounts;
mod denylist;
mod error;
mod models;
pub mod openapi;
mod passwords;
mod repo;
mod routes;
mod schema;
mod sessions;
mod validate;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::web;
use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shop_auth::JwtKeys;
use shop_db::Pool;
use shop_http::Running;
use shop_redis::{RedisPool, WindowCounter};
use shop_settings::{Service, Settings};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{denylist::Denylist, passwords::Passwords};

/// This service's identity in settings, logs and `X-Caller`.
pub const SERVICE: Service = Service::User;

/// The service's migrations (schema `users`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: Pool,
    passwords: Arc<Passwords>,
    keys: Arc<JwtKeys>,
    denylist: Denylist,
    login_failures: WindowCounter,
    password_failures: WindowCounter,
    login_limit: u32,
    refresh_lifetime: chrono::Duration,
}

impl AppState {
    async fn new(settings: &Settings) -> anyhow::Result<Self> {
        let redis = RedisPool::new(settings).context("redis configuration")?;
        let keys = JwtKeys::from_settings(settings);
        Ok(Self {
            pool: shop_db::pool(settings, SERVICE),
            passwords: Arc::new(Passwords::new(settings.bcrypt_cost, settings.bcrypt_queue).await?),
            denylist: Denylist::new(redis.clone(), keys.lifetime()),
            keys: Arc::new(keys),
            login_failures: WindowCounter::new(
                redis.clone(),
                "login-attempts",
                settings.login_throttle_window,
            ),
            password_failures: WindowCounter::new(
                redis,
                "password-change-attempts",
                settings.login_throttle_window,
            ),
            login_limit: settings.login_throttle_limit,
            refresh_lifetime: chrono::Duration::from_std(settings.refresh_expires_in)
                .context("REFRESH_EXPIRES_IN out of range")?,
        })
    }
}

/// Applies this service's migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Ok(shop_db::migrate_service(settings, SERVICE, MIGRATIONS).await?)
}

/// Creates the configured administrator, retrying in the background while Postgres is away.
async fn bootstrap_admin(
    state: AppState,
    settings: &Settings,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    let Some((email, password)) = settings.bootstrap_admin() else {
        return;
    };
    if accounts::ensure_admin(&state, &email, password.clone())
        .await
        .is_ok()
    {
        return;
    }
    let cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            match accounts::ensure_admin(&state, &email, password.clone()).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "cannot create the administrator yet"),
            }
        }
    });
}

/// Starts the service on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    if settings.run_migrations_on_start {
        migrate(&settings).await?;
    }
    let state = AppState::new(&settings).await?;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    bootstrap_admin(state.clone(), &settings, &tasks, &cancel).await;
    tasks.spawn(sessions::republish_denylist(state.clone(), cancel.clone()));

    let pool = state.pool.clone();
    Ok(shop_http::start_postgres_service(
        SERVICE,
        &settings,
        listener,
        &pool,
        routes::configure(web::Data::new(state)),
        cancel,
        tasks,
    )?)
}
