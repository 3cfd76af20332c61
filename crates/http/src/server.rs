//! Server lifecycle: a running server with its background tasks, graceful shutdown, and the
//! `serve` / `migrate` subcommands every binary offers.

use std::{io, net::SocketAddr};

use actix_web::dev::{Server, ServerHandle};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A server started by a service's or the gateway's library.
#[derive(Debug)]
pub struct Running {
    name: &'static str,
    addr: SocketAddr,
    handle: ServerHandle,
    server: JoinHandle<io::Result<()>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    /// Spawns `server` and remembers the background tasks that stop with it.
    pub fn spawn(
        name: &'static str,
        addr: SocketAddr,
        server: Server,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let handle = server.handle();
        tracing::info!(service = name, %addr, "listening");
        Self {
            name,
            addr,
            handle,
            server: tokio::spawn(server),
            cancel,
            tasks,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Graceful stop: no new connections, in-flight requests finish (up to the shutdown
    /// timeout), then background tasks are cancelled and awaited.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.finish().await;
    }

    /// Abrupt stop, as a crash would (tests).
    pub async fn kill(self) {
        self.handle.stop(false).await;
        self.finish().await;
    }

    async fn finish(self) {
        if let Ok(Err(error)) = self.server.await {
            tracing::error!(service = self.name, %error, "server ended with an error");
        }
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(service = self.name, "stopped");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Runs servers until a shutdown signal, then stops them all gracefully.
pub async fn serve_until_signal(servers: Vec<Running>) {
    shutdown_signal().await;
    tracing::info!("shutdown signal received");
    for server in servers {
        server.stop().await;
    }
    shop_telemetry::shutdown();
}

/// What a binary was asked to do. `X` is what it offers beyond serving, migrating and checking
/// health: [`Seed`] for the binaries with development data, nothing (the default,
/// `Infallible`) for the others, whose `main` then has no arm for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<X = std::convert::Infallible> {
    /// Serve requests (the default).
    Serve,
    /// Apply migrations and exit (a one-shot job in deployments).
    Migrate,
    /// Ask the running server on this binary's address for `/healthz` and exit 0 if it
    /// answers 200 (the images' `HEALTHCHECK`: they have no shell or curl).
    Healthcheck,
    /// A subcommand of this binary's own.
    Other(X),
}

/// A subcommand some binaries offer: how it is spelt and read.
pub trait Subcommand: Sized {
    /// Its words in the usage line (empty: none).
    const USAGE: &'static str;
    /// `Some` when `args` is this subcommand (an error if its arguments are wrong).
    fn parse(args: &[&str]) -> Option<Result<Self, String>>;
}

impl Subcommand for std::convert::Infallible {
    const USAGE: &'static str = "";

    fn parse(_: &[&str]) -> Option<Result<Self, String>> {
        None
    }
}

/// `seed [--count N]`: load development data and exit (the demo catalogue, or `count`
/// generated products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub count: Option<u64>,
}

impl Subcommand for Seed {
    const USAGE: &'static str = " | seed [--count N]";

    fn parse(args: &[&str]) -> Option<Result<Self, String>> {
        match args {
            ["seed"] => Some(Ok(Seed { count: None })),
            ["seed", "--count", count] => Some(
                count
                    .parse()
                    .map(|count| Seed { count: Some(count) })
                    .map_err(|_| format!("--count takes a number, not {count:?}")),
            ),
            _ => None,
        }
    }
}

/// `healthcheck`: `GET /healthz` on `addr` (a wildcard address means this host).
pub fn healthcheck(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};

    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 16];
    let read = stream.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..read]);
    anyhow::ensure!(
        status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200"),
        "{addr} answered {status:?}"
    );
    Ok(())
}

/// Reads the subcommand from the process arguments.
pub fn command<X: Subcommand>() -> Result<Command<X>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    parse_command(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn parse_command<X: Subcommand>(args: &[&str]) -> Result<Command<X>, String> {
    match args {
        [] | ["serve"] => Ok(Command::Serve),
        ["migrate"] => Ok(Command::Migrate),
        ["healthcheck"] => Ok(Command::Healthcheck),
        other => match X::parse(other) {
            Some(parsed) => parsed.map(Command::Other),
            None => Err(format!(
                "unknown arguments {other:?}; usage: [serve | migrate{} | healthcheck] \
                 (configuration comes from the environment)",
                X::USAGE
            )),
        },
    }
}

/// Starts a service's HTTP server on `listener` (extractor limits, health routes, the
/// service's own routes, a problem+json 404 fallback, the internal-credential guard and
/// request tracing) together with the background tasks that stop with it.
pub fn start_service<F>(
    name: &'static str,
    settings: &shop_settings::Settings,
    listener: std::net::TcpListener,
    readiness: crate::Readiness,
    routes: F,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> io::Result<Running>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    use actix_web::{App, HttpServer, middleware::from_fn, web};

    shop_telemetry::metrics::install();
    let addr = listener.local_addr()?;
    let tokens = web::Data::new(shop_auth::InternalTokens::from_settings(settings));
    let service = web::Data::new(crate::ServiceName(name));
    let max_body = settings.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(tokens.clone())
            .app_data(service.clone())
            .configure(crate::common_config(max_body))
            .configure(crate::health_routes(readiness.clone()))
            .configure(routes.clone())
            .default_service(web::to(crate::not_found))
            .wrap(from_fn(crate::require_internal_token))
            .wrap(from_fn(crate::trace_requests))
    })
    .listen(listener)?
    .workers(settings.http_workers())
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .disable_signals()
    .run();
    Ok(Running::spawn(name, addr, server, cancel, tasks))
}

/// [`start_service`] for a service whose state is in Postgres: `pool`'s metrics are sampled
/// with the other background tasks, and `/readyz` answers for the database.
pub fn start_postgres_service<F>(
    service: shop_settings::Service,
    settings: &shop_settings::Settings,
    listener: std::net::TcpListener,
    pool: &shop_db::Pool,
    routes: F,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> io::Result<Running>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    let sampled = pool.clone();
    spawn_sampler(&tasks, cancel.clone(), move || {
        shop_db::record_pool_metrics(&sampled, service.name());
        std::future::ready(())
    });
    start_service(
        service.name(),
        settings,
        listener,
        crate::Readiness::postgres(pool.clone()),
        routes,
        cancel,
        tasks,
    )
}

/// Serves `GET /metrics` (Prometheus text format) on `METRICS_ADDR`, if set: one listener per
/// process, apart from the service port, for the scraper only.
pub fn start_metrics(settings: &shop_settings::Settings) -> anyhow::Result<Option<Running>> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use anyhow::Context;

    let Some(addr) = settings.metrics_addr()? else {
        return Ok(None);
    };
    shop_telemetry::metrics::install();
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for metrics (METRICS_ADDR)"))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(|| {
        App::new().route(
            "/metrics",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .body(shop_telemetry::metrics::render())
            }),
        )
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .run();
    Ok(Some(Running::spawn(
        "metrics",
        addr,
        server,
        CancellationToken::new(),
        TaskTracker::new(),
    )))
}

/// How often gauges that are read rather than counted (pools, backlogs, stream lag) are sampled.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `sample` now and every [`SAMPLE_EVERY`] until `cancel`.
pub fn spawn_sampler<F, Fut>(tasks: &TaskTracker, cancel: CancellationToken, sample: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    spawn_every(tasks, cancel, SAMPLE_EVERY, sample);
}

/// Runs `work` now and then every `period` (after each run ends) until `cancel`: samplers,
/// sweeps and purges.
pub fn spawn_every<F, Fut>(
    tasks: &TaskTracker,
    cancel: CancellationToken,
    period: std::time::Duration,
    mut work: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tasks.spawn(async move {
        loop {
            work().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    });
}

#[cfg(test)]
mod healthcheck_tests {
    use std::io::{Read, Write};

    use super::healthcheck;

    /// A server that answers one connection with `reply`.
    fn answer_once(reply: &'static str) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut request = [0u8; 256];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn healthy_only_on_200() {
        assert!(healthcheck(answer_once("HTTP/1.1 200 OK\r\n\r\n{}")).is_ok());
        assert!(healthcheck(answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n")).is_err());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("addr");
        assert!(healthcheck(closed).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod command_tests {
    use std::convert::Infallible;

    use super::{Command, Seed, parse_command};

    #[test]
    fn subcommands_are_those_the_binary_offers() {
        assert_eq!(parse_command::<Infallible>(&[]), Ok(Command::Serve));
        assert_eq!(
            parse_command::<Infallible>(&["migrate"]),
            Ok(Command::Migrate)
        );
        let refused = parse_command::<Infallible>(&["seed"]).unwrap_err();
        assert!(!refused.contains("seed ["), "{refused}");
        assert_eq!(
            parse_command::<Seed>(&["seed", "--count", "5"]),
            Ok(Command::Other(Seed { count: Some(5) }))
        );
        assert_eq!(
            parse_command::<Seed>(&["seed"]),
            Ok(Command::Other(Seed { count: None }))
        );
        assert!(parse_command::<Seed>(&["seed", "--count", "many"]).is_err());
        assert!(
            parse_command::<Seed>(&["sow"])
                .unwrap_err()
                .contains("seed [--count N]")
        );
    }
}
