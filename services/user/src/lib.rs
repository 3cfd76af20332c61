//! The user service: accounts, bcrypt passwords, sessions with rotating refresh tokens, the
//! Redis denylist of revoked sessions, the failed-login throttle, password reset and email
//! verification, and every mail the shop sends (its own outbox, and a consumer of the order
//! events).

mod accounts;
mod denylist;
mod error;
mod mail;
mod mfa;
mod models;
pub mod openapi;
mod passwords;
mod recovery;
mod repo;
mod routes;
mod schema;
mod sessions;
mod tokens;
mod validate;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::web;
use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shop_auth::JwtKeys;
use shop_db::Pool;
use shop_http::Running;
use shop_outbox::{Relay, RelayConfig, RelayHandle};
use shop_redis::{GroupConfig, GroupConsumer, GroupStart, RedisPool, WindowCounter};
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
    limits: Arc<AccountMailLimits>,
    /// Seals the second factor's secrets.
    sealer: Arc<mfa::Sealer>,
    /// Wrong one-time codes per account (sign-in, enrolment, removal).
    code_failures: WindowCounter,
    /// Wakes the mail relay after a commit that queued mail.
    relay: RelayHandle,
}

/// How often reset and verification mail may be asked for, and how long its links live.
#[derive(Debug)]
struct AccountMailLimits {
    reset_by_ip: WindowCounter,
    reset_by_email: WindowCounter,
    verification_by_user: WindowCounter,
    per_ip: u32,
    per_email: u32,
    reset_ttl: chrono::Duration,
    verification_ttl: chrono::Duration,
}

impl AccountMailLimits {
    fn new(settings: &Settings, redis: &RedisPool) -> anyhow::Result<Self> {
        let window = settings.account_mail_window;
        Ok(Self {
            reset_by_ip: WindowCounter::new(redis.clone(), "password-reset-ip", window),
            reset_by_email: WindowCounter::new(redis.clone(), "password-reset-email", window),
            verification_by_user: WindowCounter::new(redis.clone(), "verification-mail", window),
            per_ip: settings.account_mail_ip_limit,
            per_email: settings.account_mail_limit,
            reset_ttl: chrono::Duration::from_std(settings.password_reset_ttl)
                .context("PASSWORD_RESET_TTL out of range")?,
            verification_ttl: chrono::Duration::from_std(settings.email_verification_ttl)
                .context("EMAIL_VERIFICATION_TTL out of range")?,
        })
    }
}

impl AppState {
    async fn new(
        settings: &Settings,
        pool: Pool,
        redis: RedisPool,
        relay: RelayHandle,
    ) -> anyhow::Result<Self> {
        let keys = JwtKeys::from_settings(settings);
        Ok(Self {
            limits: Arc::new(AccountMailLimits::new(settings, &redis)?),
            sealer: Arc::new(mfa::Sealer::new(settings.mfa_encryption_key())),
            code_failures: WindowCounter::new(
                redis.clone(),
                "one-time-code-failures",
                settings.login_throttle_window,
            ),
            relay,
            pool,
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
    let pool = shop_db::pool(&settings, SERVICE);
    let redis = RedisPool::new(&settings).context("redis configuration")?;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    mail::register_metrics();
    let mailer = Arc::new(mail::Mailer::from_settings(&settings)?);
    let relay = Relay::new(
        pool.clone(),
        redis.clone(),
        mailer,
        RelayConfig {
            // A mail server back from an outage should not wait long for what queued up.
            max_backoff: Duration::from_secs(30),
            ..RelayConfig::from_settings(&settings, SERVICE)
        },
    )
    .spawn(&tasks, &cancel);
    let state = AppState::new(&settings, pool, redis.clone(), relay.clone()).await?;
    bootstrap_admin(state.clone(), &settings, &tasks, &cancel).await;
    tasks.spawn(sessions::republish_denylist(state.clone(), cancel.clone()));
    let consumer = GroupConsumer::new(
        GroupConfig {
            redis_url: settings.redis_url(),
            stream: redis.key(shop_contracts::events::NOTIFICATIONS),
            dead: redis.key("notifications.dead"),
            label: shop_contracts::events::NOTIFICATIONS,
            group: mail::EVENTS_GROUP,
            name: shop_redis::consumer_name("user"),
            max_deliveries: 10,
            reclaim_idle: Duration::from_secs(30),
            // Orders from before the first start are not mailed about.
            start: GroupStart::Newest,
            // Gateways tail the stream too; its producers cap it.
            trims: false,
        },
        mail::OrderMail {
            pool: state.pool.clone(),
            relay,
        },
    );
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { consumer.run(cancel).await });
    }
    {
        let pool = state.pool.clone();
        shop_http::spawn_every(
            &tasks,
            cancel.clone(),
            Duration::from_secs(3600),
            move || {
                let pool = pool.clone();
                async move { recovery::sweep(&pool).await }
            },
        );
    }

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
