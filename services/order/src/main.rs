use std::net::TcpListener;

use shop_http::Command;
use shop_settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shop_telemetry::init(&settings);
    match shop_http::command::<std::convert::Infallible>().map_err(anyhow::Error::msg)? {
        Command::Migrate => order_service::migrate(&settings).await,
        Command::Healthcheck => shop_http::healthcheck(settings.order_addr),
        Command::Serve => {
            let listener = TcpListener::bind(settings.order_addr)?;
            let metrics = shop_http::start_metrics(&settings)?;
            // A test build (`make chaos`) can be told to crash at the worst moment.
            #[cfg(feature = "test-hooks")]
            let running = order_service::start_with_hooks(
                settings,
                listener,
                std::sync::Arc::new(order_service::hooks::Hooks::from_env()),
            )
            .await?;
            #[cfg(not(feature = "test-hooks"))]
            let running = order_service::start(settings, listener).await?;
            let mut servers = vec![running];
            servers.extend(metrics);
            shop_http::serve_until_signal(servers).await;
            Ok(())
        }
    }
}
