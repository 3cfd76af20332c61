//! The catalog service. For now it answers health checks only; its API arrives with its own issue.

use std::net::TcpListener;

use shop_http::{Readiness, Running};
use shop_settings::{Service, Settings};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// This service's identity in settings, logs and `X-Caller`.
pub const SERVICE: Service = Service::Catalog;

/// Applies this service's migrations (none yet).
pub async fn migrate(_settings: &Settings) -> anyhow::Result<()> {
    Ok(())
}

/// Starts the service on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    if settings.run_migrations_on_start {
        migrate(&settings).await?;
    }
    let pool = shop_db::pool(&settings, SERVICE);
    let addr = listener.local_addr()?;
    let server = shop_http::service_server(&settings, listener, Readiness::postgres(pool), |_| {})?;
    Ok(Running::spawn(
        SERVICE.name(),
        addr,
        server,
        CancellationToken::new(),
        TaskTracker::new(),
    ))
}
