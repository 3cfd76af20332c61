use std::net::TcpListener;

use shop_settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    let listener = TcpListener::bind(settings.gateway_addr)?;
    let running = gateway::start(settings, listener).await?;
    shop_http::serve_until_signal(vec![running]).await;
    Ok(())
}
