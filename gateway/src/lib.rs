//! The gateway: the only public listener. It verifies access tokens, proxies an allowlist of
//! routes to the services with the caller's identity, and answers clear problems when a
//! service is down or slow.

mod auth;
mod cors;
pub mod docs;
mod forwarded;
mod limits;
mod proxy;
pub mod routes;
pub mod storefront;
mod ws;

use std::{
    net::{IpAddr, TcpListener},
    sync::Arc,
};

use actix_web::{
    App, HttpMessage, HttpRequest, HttpServer,
    middleware::{DefaultHeaders, from_fn},
    web,
};
use anyhow::Context;
use ipnet::IpNet;
use shop_auth::JwtKeys;
use shop_client::{ClientConfig, ServiceClient};
use shop_http::{Readiness, Running};
use shop_redis::RedisPool;
use shop_settings::Settings;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{auth::Authenticator, routes::Upstream};

/// A request's client address, as a request extension.
#[derive(Debug, Clone, Copy)]
struct ClientIp(Option<IpAddr>);

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
    /// Admin routes refuse admin tokens signed in without a second factor.
    admin_require_mfa: bool,
    limits: limits::Limits,
    origins: cors::Origins,
}

impl GatewayState {
    fn new(settings: &Settings) -> anyhow::Result<Self> {
        let client = |name, url: &str, timeout| {
            ServiceClient::new(
                name,
                url,
                ClientConfig::from_settings(settings, "gateway", timeout),
            )
        };
        let user = client(
            "user",
            &settings.user_service_url,
            settings.user_service_timeout,
        );
        let redis = RedisPool::new(settings).context("redis configuration")?;
        Ok(Self {
            auth: Authenticator::new(
                JwtKeys::from_settings(settings),
                redis.clone(),
                user.clone(),
                settings.denylist_grace,
            ),
            hub: Arc::new(ws::Hub::new(
                redis.clone(),
                settings.redis_url(),
                ws::SocketLimits::from_settings(settings),
            )),
            limits: limits::Limits::new(settings, redis),
            origins: cors::Origins::new(settings.cors_origins()),
            user,
            catalog: client(
                "catalog",
                &settings.catalog_service_url,
                settings.catalog_service_timeout,
            ),
            order: client(
                "order",
                &settings.order_service_url,
                settings.order_service_timeout,
            ),
            payment: client(
                "payment",
                &settings.payment_service_url,
                settings.payment_service_timeout,
            ),
            trusted_proxies: settings.trusted_proxies()?,
            max_body_bytes: settings.max_body_bytes,
            admin_require_mfa: settings.admin_require_mfa(),
        })
    }

    /// The client's address: the peer, or what a trusted proxy says it is. Worked out once
    /// per request (the rate limiter and the proxy both ask).
    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>() {
            return *ip;
        }
        let mut values = req
            .headers()
            .get_all(shop_http::headers::FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok());
        // Several X-Forwarded-For lines form one list, in order.
        let forwarded_for = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(only), None) => Some(std::borrow::Cow::Borrowed(only)),
            (Some(first), Some(second)) => {
                let mut all = vec![first, second];
                all.extend(values);
                Some(std::borrow::Cow::Owned(all.join(",")))
            }
        };
        let ip = forwarded::client_ip(
            req.peer_addr().map(|a| a.ip()),
            forwarded_for.as_deref(),
            &self.trusted_proxies,
        );
        req.extensions_mut().insert(ClientIp(ip));
        ip
    }
}

/// The upstream clients of one HTTP worker: connections of its own runtime (see
/// [`ServiceClient::with_own_connections`]), breakers and bounds shared with every worker.
#[derive(Debug)]
pub struct Upstreams {
    user: ServiceClient,
    catalog: ServiceClient,
    order: ServiceClient,
    payment: ServiceClient,
}

impl Upstreams {
    fn for_this_worker(state: &GatewayState) -> Self {
        Self {
            user: state.user.with_own_connections(),
            catalog: state.catalog.with_own_connections(),
            order: state.order.with_own_connections(),
            payment: state.payment.with_own_connections(),
        }
    }

    fn get(&self, upstream: Upstream) -> &ServiceClient {
        match upstream {
            Upstream::User => &self.user,
            Upstream::Catalog => &self.catalog,
            Upstream::Order => &self.order,
            Upstream::Payment => &self.payment,
        }
    }
}

/// Headers on every answer (kept where a handler set its own, as the API docs page and the
/// storefront do for their Content-Security-Policy).
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .add((
            "Strict-Transport-Security",
            "max-age=63072000; includeSubDomains",
        ))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ))
}

/// Starts the gateway on `listener`.
pub async fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Running> {
    shop_telemetry::metrics::install();
    let state = web::Data::new(GatewayState::new(&settings)?);
    let service = web::Data::new(shop_http::ServiceName("gateway"));
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(state.hub.clone().tail(cancel.clone()));
    let sampled = state.hub.redis().clone();
    shop_http::spawn_sampler(&tasks, cancel.clone(), move || {
        sampled.record_metrics("gateway");
        std::future::ready(())
    });
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let upstreams = web::Data::new(Upstreams::for_this_worker(&state));
        App::new()
            .app_data(state.clone())
            .app_data(upstreams)
            .app_data(service.clone())
            .configure(shop_http::common_config(settings.max_body_bytes))
            .configure(shop_http::health_routes(Readiness::always()))
            .route("/ws", web::get().to(ws::connect))
            .route("/ws/ticket", web::post().to(ws::create_ticket))
            .configure(docs::routes)
            .configure(storefront::routes)
            .default_service(web::to(proxy::forward))
            .wrap(from_fn(limits::rate_limit))
            .wrap(from_fn(cors::cors))
            .wrap(security_headers())
            .wrap(from_fn(shop_http::trace_requests))
    })
    .listen(listener)?
    .workers(settings.http_workers())
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .disable_signals()
    .run();
    Ok(Running::spawn("gateway", addr, server, cancel, tasks))
}
