//! The payment service: reads payment requests from Redis Streams, runs simulated attempts
//! from Postgres with retries and exponential backoff, reports each attempt and the outcome to
//! the order service (refunding a success the order no longer wants), carries out the refunds
//! administrators ask for, and publishes its `payment.*` notifications through the shared
//! outbox.

mod attempts;
mod consumer;
mod events;
#[cfg(feature = "test-hooks")]
pub mod hooks;
mod models;
pub mod openapi;
mod refunds;
mod repo;
mod reports;
mod routes;
mod schema;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::web;
use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shop_client::{ClientConfig, ServiceClient};
use shop_db::Pool;
use shop_http::Running;
use shop_outbox::{Relay, RelayConfig, RelayHandle};
use shop_redis::{GroupConfig, GroupConsumer, GroupStart, RedisPool};
use shop_settings::{Service, Settings};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    attempts::{Attempts, Simulation},
    consumer::Intake,
    reports::Reporter,
};

/// This service's identity in settings, logs and `X-Caller`.
pub const SERVICE: Service = Service::Payment;

/// The service's migrations (schema `payments`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What every handler and worker shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: Pool,
    relay: RelayHandle,
    simulation: Simulation,
    attempts: Attempts,
    refunds: refunds::Refunds,
    #[cfg(feature = "test-hooks")]
    hooks: Arc<hooks::Hooks>,
}

/// Applies this service's migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Ok(shop_db::migrate_service(settings, SERVICE, MIGRATIONS).await?)
}

/// `PAYMENT_CONSUMER`, else the host name with a random suffix.
fn consumer_name(settings: &Settings) -> String {
    settings
        .payment_consumer
        .clone()
        .unwrap_or_else(|| shop_redis::consumer_name("payment"))
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
    let order = ServiceClient::new(
        "order",
        &settings.order_service_url,
        ClientConfig::from_settings(&settings, SERVICE.name(), settings.order_service_timeout),
    );
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let reporter = Arc::new(Reporter {
        order,
        pool: pool.clone(),
        relay: std::sync::OnceLock::new(),
    });
    let relay = Relay::new(
        pool.clone(),
        redis.clone(),
        reporter.clone(),
        RelayConfig {
            // Reports should reach the order service soon after it returns.
            max_backoff: Duration::from_secs(30),
            ..RelayConfig::from_settings(&settings, SERVICE)
        },
    )
    .spawn(&tasks, &cancel);
    // The refunds a refused success writes wake this relay.
    let _ = reporter.relay.set(relay.clone());
    let name = consumer_name(&settings);
    let (attempts, finished) = Attempts::new(settings.payment_concurrency);
    let state = AppState {
        pool,
        relay,
        simulation: Simulation {
            duration: settings.payment_duration,
            failure_percent: settings.payment_failed_probability,
            retries: settings.backoff_retries,
            backoff: settings.backoff_delay,
            concurrency: settings.payment_concurrency,
            worker: name.clone(),
        },
        attempts,
        refunds: refunds::Refunds::default(),
        #[cfg(feature = "test-hooks")]
        hooks,
    };
    let consumer = GroupConsumer::new(
        GroupConfig {
            redis_url: settings.redis_url(),
            stream: redis.key(shop_contracts::events::PAYMENT_REQUESTS),
            dead: redis.key(shop_contracts::events::PAYMENTS_DEAD),
            label: shop_contracts::events::PAYMENT_REQUESTS,
            group: consumer::GROUP,
            name,
            max_deliveries: usize::try_from(settings.payment_max_deliveries)
                .context("PAYMENT_MAX_DELIVERIES")?,
            reclaim_idle: settings.payment_reclaim_idle,
            // Requests written before the first consumer started are still work.
            start: GroupStart::Oldest,
            // The payment service is the stream's only reader.
            trims: true,
        },
        Intake {
            state: state.clone(),
        },
    );
    {
        let cancel = cancel.clone();
        tasks.spawn(async move { consumer.run(cancel).await });
    }
    tasks.spawn(attempts::run(state.clone(), cancel.clone()));
    tasks.spawn(refunds::run(state.clone(), cancel.clone()));
    tasks.spawn(attempts::record_finished(
        state.clone(),
        finished,
        cancel.clone(),
    ));

    {
        let redis = redis.clone();
        shop_http::spawn_sampler(&tasks, cancel.clone(), move || {
            let redis = redis.clone();
            async move { consumer::record_stream_metrics(&redis).await }
        });
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
