//! The catalog service: products with optimistic locking, the stock ledger, a race-safe
//! read-through cache, and atomic, idempotent reservations for orders.

mod cache;
mod error;
#[cfg(feature = "test-hooks")]
pub mod hooks;
mod models;
pub mod openapi;
mod products;
mod repo;
mod reservations;
mod routes;
mod schema;
mod seed;
mod singleflight;

use std::{net::TcpListener, sync::Arc};

use actix_web::web;
use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shop_db::Pool;
use shop_http::Running;
use shop_redis::RedisPool;
use shop_settings::{Service, Settings};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::cache::Cache;
pub use crate::seed::seed;

/// This service's identity in settings, logs and `X-Caller`.
pub const SERVICE: Service = Service::Catalog;

/// The service's migrations (schema `catalog`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: Pool,
    cache: Arc<Cache>,
}

impl AppState {
    fn new(settings: &Settings) -> anyhow::Result<Self> {
        let redis = RedisPool::with_url(
            &settings.cache_redis_url(),
            &settings.redis_key_prefix,
            settings.redis_pool_size,
            settings.redis_acquire_timeout,
        )
        .context("CACHE_REDIS_URL")?;
        // The cache registers its counters once: the recorder must be there first.
        shop_telemetry::metrics::install();
        Ok(Self {
            pool: shop_db::pool(settings, SERVICE),
            cache: Arc::new(Cache::new(
                redis,
                settings.product_cache_sync,
                settings.product_cache_ttl,
                settings.list_cache_ttl,
            )),
        })
    }
}

/// Applies this service's migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Ok(shop_db::migrate_service(settings, SERVICE, MIGRATIONS).await?)
}

/// Starts the service on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    start_inner(settings, listener, Arc::new(())).await
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
    listening: Arc<dyn cache::broadcast::Listening>,
) -> anyhow::Result<Running> {
    if settings.run_migrations_on_start {
        migrate(&settings).await?;
    }
    let state = AppState::new(&settings)?;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(cache::flush_unsent_writes(
        state.cache.clone(),
        cancel.clone(),
    ));
    tasks.spawn(cache::broadcast::listen(
        state.cache.clone(),
        settings.cache_redis_url(),
        listening,
        cancel.clone(),
    ));
    tasks.spawn(cache::broadcast::tick(state.cache.clone(), cancel.clone()));

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
