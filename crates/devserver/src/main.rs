//! `shop-dev`: every service and the gateway in one process on their configured ports
//! (monolithic mode), for development. Containers run one binary each instead.
//!
//! `shop-dev migrate` applies every service's migrations and exits.

use std::net::TcpListener;

use anyhow::Context;
use shop_http::{Command, Running, Seed};
use shop_settings::Settings;

async fn migrate_all(settings: &Settings) -> anyhow::Result<()> {
    user_service::migrate(settings).await?;
    catalog_service::migrate(settings).await?;
    order_service::migrate(settings).await?;
    payment_service::migrate(settings).await?;
    Ok(())
}

fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} for the {what}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    match shop_http::command::<Seed>().map_err(anyhow::Error::msg)? {
        Command::Migrate => migrate_all(&settings).await,
        Command::Healthcheck => shop_http::healthcheck(settings.gateway_addr),
        Command::Other(Seed { count }) => {
            migrate_all(&settings).await?;
            catalog_service::seed(&settings, count).await.map(drop)
        }
        Command::Serve => {
            if settings.run_migrations_on_start {
                migrate_all(&settings).await?;
            }
            // Migrations ran once above; the services need not repeat them.
            let mut each = settings.clone();
            each.run_migrations_on_start = false;
            let servers: Vec<Running> = vec![
                user_service::start(each.clone(), bind(each.user_addr, "user service")?).await?,
                catalog_service::start(each.clone(), bind(each.catalog_addr, "catalog service")?)
                    .await?,
                order_service::start(each.clone(), bind(each.order_addr, "order service")?).await?,
                payment_service::start(each.clone(), bind(each.payment_addr, "payment service")?)
                    .await?,
                gateway::start(each.clone(), bind(each.gateway_addr, "gateway")?).await?,
            ];
            let mut servers = servers;
            servers.extend(shop_http::start_metrics(&each)?);
            tracing::info!(gateway = %each.gateway_addr, "all services started; stop with Ctrl-C");
            match each.mail_transport {
                shop_settings::MailTransport::File => {
                    let dir = std::fs::canonicalize(&each.mail_dir)
                        .map_or_else(|_| each.mail_dir.clone(), |p| p.display().to_string());
                    tracing::info!(
                        dir,
                        "mail (verification, password reset, orders) is written here as .eml files"
                    );
                }
                shop_settings::MailTransport::Smtp => {
                    tracing::info!("mail goes to SMTP_URL");
                }
            }
            shop_http::serve_until_signal(servers).await;
            Ok(())
        }
    }
}
