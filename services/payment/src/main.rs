use std::net::TcpListener;

use shop_http::Command;
use shop_settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    match shop_http::command::<std::convert::Infallible>().map_err(anyhow::Error::msg)? {
        Command::Migrate => payment_service::migrate(&settings).await,
        Command::Healthcheck => shop_http::healthcheck(settings.payment_addr),
        Command::Serve => {
            let listener = TcpListener::bind(settings.payment_addr)?;
            let metrics = shop_http::start_metrics(&settings)?;
            let running = payment_service::start(settings, listener).await?;
            let mut servers = vec![running];
            servers.extend(metrics);
            shop_http::serve_until_signal(servers).await;
            Ok(())
        }
    }
}
