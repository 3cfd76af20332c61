//! The gateway: the only public listener. It verifies access tokens, proxies an allowlist of
//! routes to the services with the caller's identity, and answers clear problems when a
//! service is down or slow.

mod auth;
mod forwarded;
mod proxy;
pub mod routes;
mod ws;

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, middleware::from_fn, web};
use anyhow::Context;
use ipnet::IpNet;
use shop_auth::JwtKeys;
use shop_client::{ClientConfig, ServiceClient};
use shop_http::{Readiness, Running};
use shop_redis::RedisPool;
use shop_settings::Settings;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{auth::Authenticator, routes::Upstream};

/// Shared by every request.
#[derive(Debug)]
pub struct GatewayState {
    auth: Authenticator,
    hub: Arc<ws::Hub>,
    user: ServiceClient,
    catalog: ServiceClient,
    order: ServiceClient,
    payment: ServiceClient,
    trusted_proxies: Vec<IpNet>,
    max_body_bytes: usize,
}

impl GatewayState {
    fn new(settings: &Settings) -> anyhow::Result<Self> {
        let config = ClientConfig::from_settings(settings, "gateway");
        let client = |name, url: &str| ServiceClient::new(name, url, config.clone());
        let user = client("user", &settings.user_service_url);
        let redis = RedisPool::new(settings).context("redis configuration")?;
        Ok(Self {
            auth: Authenticator::new(
                JwtKeys::from_settings(settings),
                redis.clone(),
                user.clone(),
                settings.denylist_grace,
            ),
            hub: Arc::new(ws::Hub::new(
                redis,
                settings.redis_url(),
                settings.cors_origins(),
                settings.ws_check_interval,
            )),
            user,
            catalog: client("catalog", &settings.catalog_service_url),
            order: client("order", &settings.order_service_url),
            payment: client("payment", &settings.payment_service_url),
            trusted_proxies: settings.trusted_proxies()?,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    fn upstream(&self, upstream: Upstream) -> &ServiceClient {
        match upstream {
            Upstream::User => &self.user,
            Upstream::Catalog => &self.catalog,
            Upstream::Order => &self.order,
            Upstream::Payment => &self.payment,
        }
    }
}

/// Starts the gateway on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    let state = web::Data::new(GatewayState::new(&settings)?);
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(state.hub.clone().tail(cancel.clone()));
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(shop_http::health_routes(Readiness::always()))
            .route("/ws", web::get().to(ws::connect))
            .route("/ws/ticket", web::post().to(ws::create_ticket))
            .default_service(web::to(proxy::forward))
            .wrap(from_fn(shop_http::trace_requests))
    })
    .listen(listener)?
    .workers(settings.http_workers())
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .disable_signals()
    .run();
    Ok(Running::spawn("gateway", addr, server, cancel, tasks))
}
