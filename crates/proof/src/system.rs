//! The system as separate processes on loopback (microservices mode): a database and a
//! `redis-server` of its own, and one process per service binary on a free port. Any process
//! can be killed, stopped, restarted or doubled; everything is stopped when the system is.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use shop_db::scratch::{self, BOOTSTRAP_SQL, with_database};
use tokio_postgres::Client;

use crate::{PrivateRedis, free_port};

/// One of the five binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `user-service`.
    User,
    /// `catalog-service`.
    Catalog,
    /// `order-service`.
    Order,
    /// `payment-service`.
    Payment,
    /// `gateway`.
    Gateway,
}

impl Service {
    /// All five, in start order.
    pub const ALL: [Service; 5] = [
        Service::User,
        Service::Catalog,
        Service::Order,
        Service::Payment,
        Service::Gateway,
    ];

    /// Its short name, also the name of its first process.
    pub fn name(self) -> &'static str {
        match self {
            Service::User => "user",
            Service::Catalog => "catalog",
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Gateway => "gateway",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Service::User => "user-service",
            Service::Catalog => "catalog-service",
            Service::Order => "order-service",
            Service::Payment => "payment-service",
            Service::Gateway => "gateway",
        }
    }

    fn addr_variable(self) -> &'static str {
        match self {
            Service::User => "USER_ADDR",
            Service::Catalog => "CATALOG_ADDR",
            Service::Order => "ORDER_ADDR",
            Service::Payment => "PAYMENT_ADDR",
            Service::Gateway => "GATEWAY_ADDR",
        }
    }

    fn url_variable(self) -> Option<&'static str> {
        match self {
            Service::User => Some("USER_SERVICE_URL"),
            Service::Catalog => Some("CATALOG_SERVICE_URL"),
            Service::Order => Some("ORDER_SERVICE_URL"),
            Service::Payment => Some("PAYMENT_SERVICE_URL"),
            Service::Gateway => None,
        }
    }
}

/// A database of the run's own on the machine's Postgres, dropped at the end.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    url: String,
}

/// The Postgres server: `PROOF_DATABASE_URL` or `TEST_DATABASE_URL` (any database on it), else
/// the development one.
fn server_url() -> String {
    scratch::server_url(&["PROOF_DATABASE_URL", "TEST_DATABASE_URL"])
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    scratch::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url} (run `make services`)"))
}

/// The process id in a run's database name (`shop_<label>_p<pid>_<random>`).
fn owner_pid(name: &str) -> Option<u32> {
    name.rsplit_once('_')?.0.rsplit_once("_p")?.1.parse().ok()
}

/// Drops the databases of runs whose process is gone (killed before it could clean up).
async fn sweep_abandoned(admin: &Client) -> anyhow::Result<()> {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname ~ '^shop_[a-z0-9_]+_p[0-9]+_[0-9a-f]{32}$'",
            &[],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let alive = owner_pid(&name).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .with_context(|| format!("dropping the abandoned database {name}"))?;
        }
    }
    Ok(())
}

impl Database {
    /// Creates `shop_<label>_p<pid>_<random>` with the bootstrap SQL applied; the services
    /// migrate it. Databases of earlier runs whose process is gone are dropped first.
    pub async fn create(label: &str) -> anyhow::Result<Self> {
        let admin_url = with_database(&server_url(), "postgres");
        let name = format!(
            "shop_{label}_p{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let admin = connect(&admin_url).await?;
        sweep_abandoned(&admin).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let url = with_database(&server_url(), &name);
        connect(&url).await?.batch_execute(BOOTSTRAP_SQL).await?;
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to it.
    pub async fn client(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }

    /// Terminates every other connection to this database (and no other): what a failover or
    /// an operator's `pg_terminate_backend` does to the services. Returns how many.
    pub async fn terminate_connections(&self) -> anyhow::Result<usize> {
        let admin = connect(&self.admin_url).await?;
        Ok(scratch::terminate_connections(&admin, &self.name).await?)
    }

    /// Drops it, whoever is still connected.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        Ok(scratch::drop_database(&admin, &self.name).await?)
    }
}

/// One running (or dead) process of the system.
#[derive(Debug)]
struct Process {
    name: String,
    service: Service,
    port: u16,
    /// Where its `GET /metrics` listens (`METRICS_ADDR`).
    metrics_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// How to start a system.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the service binaries are (`target/release`, `target/debug`).
    pub bin_dir: PathBuf,
    /// Where each process's output goes, one file per process.
    pub log_dir: PathBuf,
    /// Names the database (`shop_<label>_…`).
    pub label: String,
    /// Configuration for every process, over the system's own (addresses, database, Redis).
    pub env: Vec<(String, String)>,
}

/// A running system.
#[derive(Debug)]
pub struct System {
    options: Options,
    database: Option<Database>,
    redis: PrivateRedis,
    processes: Vec<Process>,
    http: reqwest::Client,
}

/// How many times `System::start` tries when a port was taken under it.
const START_ATTEMPTS: usize = 3;

/// What a service says when its port is taken (`std::io::ErrorKind::AddrInUse`).
const ADDRESS_IN_USE: &str = "Address already in use";

/// The last non-empty line of a log, for an error message.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "no output".to_owned())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<File> {
    let path = dir.join(format!("{name}.log"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

impl System {
    /// Starts a database, a redis-server and the five processes, and waits until each is ready.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        for service in Service::ALL {
            let binary = options.bin_dir.join(service.binary());
            if !binary.is_file() {
                bail!("{} is missing: build the binaries first", binary.display());
            }
        }
        std::fs::create_dir_all(&options.log_dir)?;
        let database = Database::create(&options.label).await?;
        let redis = PrivateRedis::start().await;
        let mut system = Self {
            options,
            database: Some(database),
            redis,
            processes: Service::ALL
                .iter()
                .map(|&service| Process {
                    name: service.name().to_owned(),
                    service,
                    port: free_port(),
                    metrics_port: free_port(),
                    env: Vec::new(),
                    child: None,
                })
                .collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        };
        let mut attempt = 1;
        loop {
            match system.start_all().await {
                Ok(()) => return Ok(system),
                // A port picked as free can be taken before its process binds it (by another
                // connection's ephemeral port): everything again, on fresh ports.
                Err(error)
                    if attempt < START_ATTEMPTS
                        && format!("{error:#}").contains(ADDRESS_IN_USE) =>
                {
                    eprintln!("system: {error:#}; starting again on other ports");
                    for process in &mut system.processes {
                        if let Some(mut child) = process.child.take() {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        process.port = free_port();
                        process.metrics_port = free_port();
                    }
                    attempt += 1;
                }
                Err(error) => {
                    // Nothing of a failed start outlives it, the database included.
                    let _ = system.shutdown().await;
                    return Err(error);
                }
            }
        }
    }

    async fn start_all(&mut self) -> anyhow::Result<()> {
        // The services migrate their own schemas as they start; the gateway needs none.
        for name in ["user", "catalog", "order", "payment", "gateway"] {
            self.spawn(name)?;
        }
        for name in ["user", "catalog", "order", "payment", "gateway"] {
            self.await_ready(name, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// The system's database.
    pub fn database(&self) -> &Database {
        self.database
            .as_ref()
            .unwrap_or_else(|| unreachable!("the database lives as long as the system"))
    }

    /// The system's redis-server.
    pub fn redis(&mut self) -> &mut PrivateRedis {
        &mut self.redis
    }

    /// Where the system's redis-server listens.
    pub fn redis_addr(&self) -> std::net::SocketAddr {
        self.redis.addr()
    }

    /// The gateway's base URL.
    pub fn gateway_url(&self) -> String {
        self.url("gateway")
    }

    /// A process's base URL.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.process(name).port)
    }

    /// The Prometheus text a live process serves on its `METRICS_ADDR` (empty if it runs
    /// none or does not answer).
    pub async fn metrics(&self, name: &str) -> String {
        let url = format!(
            "http://127.0.0.1:{}/metrics",
            self.process(name).metrics_port
        );
        match self.http.get(&url).send().await {
            Ok(response) if response.status() == 200 => response.text().await.unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// The names of the live processes.
    pub fn names(&self) -> Vec<String> {
        self.processes
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| p.name.clone())
            .collect()
    }

    /// The process id of every live process, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .filter_map(|p| p.child.as_ref().map(|c| (p.name.clone(), c.id())))
            .collect()
    }

    /// The process id of one process, if it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.process(name).child.as_ref().map(Child::id)
    }

    fn process(&self, name: &str) -> &Process {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    fn process_mut(&mut self, name: &str) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    /// What every process is told: where everything is, plus the options' configuration.
    fn common_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("APP_ENV".to_owned(), "development".to_owned()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUN_MIGRATIONS_ON_START".to_owned(), "true".to_owned()),
            ("DATABASE_URL".to_owned(), self.database().url().to_owned()),
            ("REDIS_URL".to_owned(), self.redis.url()),
        ];
        for service in Service::ALL {
            let first = self.process(service.name());
            if let Some(variable) = service.url_variable() {
                env.push((variable.to_owned(), self.url(&first.name)));
            }
        }
        env.extend(self.options.env.iter().cloned());
        env
    }

    fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let mut env = self.common_env();
        let log = log_file(&self.options.log_dir, name)?;
        let process = self.process(name);
        let service = process.service;
        env.push((
            service.addr_variable().to_owned(),
            format!("127.0.0.1:{}", process.port),
        ));
        env.push((
            "METRICS_ADDR".to_owned(),
            format!("127.0.0.1:{}", process.metrics_port),
        ));
        env.extend(process.env.iter().cloned());
        let binary = self.options.bin_dir.join(service.binary());
        let child = Command::new(&binary)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.process_mut(name).child = Some(child);
        Ok(())
    }

    /// Waits until a process answers `GET /readyz` with 200; fails early if it exits.
    pub async fn await_ready(&mut self, name: &str, deadline: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("{}/readyz", self.url(name));
        loop {
            if let Some(status) = self.exited(name) {
                let log = self.log_path(name);
                bail!(
                    "{name} exited ({status}) before it was ready: {}; see {}",
                    last_line(&log),
                    log.display()
                );
            }
            if let Ok(response) = self.http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if started.elapsed() > deadline {
                bail!(
                    "{name} was not ready within {deadline:?}; see {}",
                    self.log_path(name).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every live process answers `GET /readyz` with 200 now.
    pub async fn all_ready(&self) -> Vec<String> {
        let mut unready = Vec::new();
        for process in &self.processes {
            if process.child.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/readyz", process.port);
            let ok = matches!(self.http.get(&url).send().await, Ok(r) if r.status() == 200);
            if !ok {
                unready.push(process.name.clone());
            }
        }
        unready
    }

    /// The exit status of a process that has ended by itself (None while it runs or when it
    /// is not started).
    pub fn exited(&mut self, name: &str) -> Option<ExitStatus> {
        let child = self.process_mut(name).child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Where a process's output goes.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.options.log_dir.join(format!("{name}.log"))
    }

    /// `kill -9`: the process dies with whatever it was doing.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.process_mut(name).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`.
    pub async fn stop(&mut self, name: &str, grace: Duration) {
        let Some(mut child) = self.process_mut(name).child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a process again (after it was killed, stopped or died), with `env` over its own
    /// configuration for this run only, and waits until it is ready.
    pub async fn restart(&mut self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.start_with(name, env)?;
        self.await_ready(name, Duration::from_secs(60)).await
    }

    /// Starts a process again without waiting for it to be ready.
    pub fn start_with(&mut self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.kill(name);
        let saved = std::mem::take(&mut self.process_mut(name).env);
        let mut this_run = saved.clone();
        this_run.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.process_mut(name).env = this_run;
        let spawned = self.spawn(name);
        self.process_mut(name).env = saved;
        spawned
    }

    /// Adds another instance of `service` named `name` (a second payment worker, say), with
    /// `env` over the common configuration, and waits until it is ready.
    pub async fn add(
        &mut self,
        name: &str,
        service: Service,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        if self.processes.iter().any(|p| p.name == name) {
            return self.restart(name, &[]).await;
        }
        self.processes.push(Process {
            name: name.to_owned(),
            service,
            port: free_port(),
            metrics_port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        });
        self.spawn(name)?;
        self.await_ready(name, Duration::from_secs(60)).await
    }

    /// Stops every process (gateway first), the redis-server and drops the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self
            .processes
            .iter()
            .rev()
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            self.stop(&name, Duration::from_secs(10)).await;
        }
        self.redis.kill();
        match self.database.take() {
            Some(database) => database.drop_database().await,
            None => Ok(()),
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn the_owner_of_a_run_database_is_read_from_its_name() {
        assert_eq!(
            owner_pid("shop_e2e_shopper_p4242_0123456789abcdef0123456789abcdef"),
            Some(4242)
        );
        assert_eq!(owner_pid("shop_chaos_p1_00"), Some(1));
        assert_eq!(owner_pid("shop_chaos_0123"), None);
        assert_eq!(owner_pid("shop"), None);
    }
}
