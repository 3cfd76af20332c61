use std::net::TcpListener;

use shop_http::{Command, Seed};
use shop_settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    match shop_http::command::<Seed>().map_err(anyhow::Error::msg)? {
        Command::Migrate => catalog_service::migrate(&settings).await,
        Command::Other(Seed { count }) => {
            catalog_service::migrate(&settings).await?;
            catalog_service::seed(&settings, count).await.map(drop)
        }
        Command::Healthcheck => shop_http::healthcheck(settings.catalog_addr),
        Command::Serve => {
            let listener = TcpListener::bind(settings.catalog_addr)?;
            let metrics = shop_http::start_metrics(&settings)?;
            let running = catalog_service::start(settings, listener).await?;
            let mut servers = vec![running];
            servers.extend(metrics);
            shop_http::serve_until_signal(servers).await;
            Ok(())
        }
    }
}
