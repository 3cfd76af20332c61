//! The order service: carts, orders and their saga (reserve through the catalog, pay through
//! the payment service, release on failure), idempotent placement, and the transactional
//! outbox that publishes every change.

mod address;
mod cart;
mod error;
mod events;
mod guest;
#[cfg(feature = "test-hooks")]
pub mod hooks;
mod lifecycle;
mod models;
pub mod openapi;
mod orders;
mod payments;
mod placing;
mod refunds;
mod repo;
mod routes;
mod schema;
mod workers;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::web;
use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shop_client::{ClientConfig, ServiceClient};
use shop_db::Pool;
use shop_http::Running;
use shop_outbox::{Relay, RelayConfig, RelayHandle};
use shop_redis::RedisPool;
use shop_settings::{Service, Settings};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::workers::{ReleaseStock, Sweeps};

/// This service's identity in settings, logs and `X-Caller`.
pub const SERVICE: Service = Service::Order;

/// The service's migrations (schema `orders`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What every handler and worker shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: Pool,
    catalog: ServiceClient,
    relay: RelayHandle,
    currency: String,
    idempotency_resume_after: Duration,
    /// Placing an order needs a verified email (REQUIRE_VERIFIED_EMAIL).
    require_verified_email: bool,
    sweeps: Sweeps,
    #[cfg(feature = "test-hooks")]
    hooks: Arc<hooks::Hooks>,
}

/// Applies this service's migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Ok(shop_db::migrate_service(settings, SERVICE, MIGRATIONS).await?)
}

/// Starts the service on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    start_inner(
        settings,
        listener,
        #[cfg(feature = "test-hooks")]
        Arc::default(),
    )
    .await
}

/// Starts the service with fault-injection hooks (tests only).
#[cfg(feature = "test-hooks")]
pub async fn start_with_hooks(
    settings: Settings,
    listener: TcpListener,
    hooks: Arc<hooks::Hooks>,
) -> anyhow::Result<Running> {
    start_inner(settings, listener, hooks).await
}

async fn start_inner(
    settings: Settings,
    listener: TcpListener,
    #[cfg(feature = "test-hooks")] hooks: Arc<hooks::Hooks>,
) -> anyhow::Result<Running> {
    if settings.run_migrations_on_start {
        migrate(&settings).await?;
    }
    let pool = shop_db::pool(&settings, SERVICE);
    let redis = RedisPool::new(&settings).context("redis configuration")?;
    let catalog = ServiceClient::new(
        "catalog",
        &settings.catalog_service_url,
        ClientConfig::from_settings(&settings, SERVICE.name(), settings.catalog_service_timeout),
    );
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let relay = Relay::new(
        pool.clone(),
        redis,
        Arc::new(ReleaseStock {
            catalog: catalog.clone(),
        }),
        RelayConfig::from_settings(&settings, SERVICE),
    )
    .spawn(&tasks, &cancel);
    let state = AppState {
        pool,
        catalog,
        relay,
        currency: settings.currency.clone(),
        idempotency_resume_after: settings.idempotency_resume_after,
        require_verified_email: settings.require_verified_email,
        sweeps: Sweeps {
            interval: settings.worker_interval,
            reserve_timeout: settings.reserve_timeout,
            payment_timeout: settings.order_payment_timeout,
            resend_after: settings.payment_request_resend(),
            claims_ttl: settings.idempotency_ttl,
        },
        #[cfg(feature = "test-hooks")]
        hooks,
    };
    tasks.spawn(workers::run(state.clone(), cancel.clone()));
    {
        let pool = state.pool.clone();
        shop_http::spawn_every(
            &tasks,
            cancel.clone(),
            Duration::from_secs(3600),
            move || {
                let pool = pool.clone();
                async move { guest::purge_logged(&pool).await }
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
