use std::net::TcpListener;

use shop_settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    let listener = TcpListener::bind(settings.gateway_addr)?;
    let metrics = shop_http::start_metrics(&settings)?;
    let running = gateway::start(settings, listener).await?;
    let mut servers = vec![running];
    servers.extend(metrics);
    shop_http::serve_until_signal(servers).await;
    Ok(())
}
