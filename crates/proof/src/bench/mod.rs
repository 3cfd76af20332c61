//! `make bench`: the system as separate release processes on loopback, measured against the
//! ceilings of the same machine in the same run, so every figure is also a ratio that
//! survives a noisy machine.
//!
//! Load comes from `wrk` where one URL fits, from a small driver here where it does not
//! (many users' orders, order-to-socket latency, the backlog drain).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

mod ceilings;
mod orders;
mod report;
mod tools;

use crate::{
    PrivateRedis,
    api::{Api, Shopper},
    counts::{self, Background, Cost, LockSampler},
    free_port, procfs,
    stages::{self, Probe, Stage},
    stats::Latency,
    system::{Database, Options, System},
};

use self::report::judge;
pub use self::{
    ceilings::ceiling_server,
    report::{markdown, write},
};
use self::{ceilings::*, orders::*, tools::*};

/// What to run; `BENCH_*` variables override the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the release binaries are.
    pub bin_dir: PathBuf,
    /// Where results go (`bench/results`).
    pub out_dir: PathBuf,
    /// Scratch space: process logs, wrk scripts.
    pub work_dir: PathBuf,
    /// Length of each measured run.
    pub duration: Duration,
    /// Unmeasured load before each run.
    pub warmup: Duration,
    /// Concurrent connections of the HTTP loads.
    pub connections: usize,
    /// Orders queued for the backlog drain.
    pub backlog: usize,
    /// Users placing orders.
    pub shoppers: usize,
    /// Products they order from.
    pub products: usize,
    /// Where `perf record` profiles of each system measure go (`BENCH_PROFILE=1`), if at all.
    pub profile_dir: Option<PathBuf>,
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value} is not a whole number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    /// Defaults, with `BENCH_DURATION` and `BENCH_WARMUP` (seconds), `BENCH_CONNECTIONS`,
    /// `BENCH_BACKLOG`, `BENCH_SHOPPERS`, `BENCH_PRODUCTS` and `BENCH_BIN_DIR` over them.
    pub fn from_env(root: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            // Another build's binaries (an older commit's, say) measured by this driver.
            bin_dir: std::env::var_os("BENCH_BIN_DIR")
                .map_or_else(|| root.join("target/release"), PathBuf::from),
            out_dir: root.join("bench/results"),
            work_dir: root.join("target/bench"),
            duration: Duration::from_secs(env_number("BENCH_DURATION", 10)?),
            warmup: Duration::from_secs(env_number("BENCH_WARMUP", 3)?),
            connections: usize::try_from(env_number("BENCH_CONNECTIONS", 64)?)?,
            backlog: usize::try_from(env_number("BENCH_BACKLOG", 10_000)?)?,
            shoppers: usize::try_from(env_number("BENCH_SHOPPERS", 100)?)?,
            products: usize::try_from(env_number("BENCH_PRODUCTS", 200)?)?,
            profile_dir: (env_number("BENCH_PROFILE", 0)? == 1)
                .then(|| root.join("target/bench/profiles")),
        })
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// Stable identifier.
    pub key: String,
    /// What was measured.
    pub name: String,
    /// What drove it.
    pub tool: String,
    /// Completed operations per second.
    pub throughput: f64,
    /// Their unit.
    pub unit: String,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Operations completed.
    pub count: u64,
    /// Operations that failed (non-2xx answers, socket errors).
    pub errors: u64,
    /// CPU used by each of the system's processes meanwhile, % of one core.
    pub cpu_percent: BTreeMap<String, f64>,
    /// For the write scenarios: commits and statements per order, object-lock waits.
    pub cost: Option<Cost>,
    /// For the order-to-paid latencies: each step's median.
    pub stages: Vec<Stage>,
    /// For the HTTP loads: commands the system's redis-server ran per request, by command
    /// (`INFO commandstats` before and after the measured run; everything the system sent
    /// meanwhile counts, background work included).
    pub redis_commands_per_request: Option<BTreeMap<String, f64>>,
}

impl Measure {
    /// Redis commands per request, all commands together.
    pub fn redis_per_request(&self) -> Option<f64> {
        self.redis_commands_per_request
            .as_ref()
            .map(|commands| commands.values().sum())
    }

    /// CPU time `process` spent per operation, microseconds.
    pub fn cpu_us_per_operation(&self, process: &str) -> Option<f64> {
        let percent = self.cpu_percent.get(process)?;
        (self.throughput > 0.0).then(|| percent / 100.0 * 1e6 / self.throughput)
    }
}

impl Measure {
    fn new(key: &str, name: &str, tool: String, throughput: f64, unit: &str) -> Self {
        Self {
            key: key.to_owned(),
            name: name.to_owned(),
            tool,
            throughput,
            unit: unit.to_owned(),
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            count: 0,
            errors: 0,
            cpu_percent: BTreeMap::new(),
            cost: None,
            stages: Vec::new(),
            redis_commands_per_request: None,
        }
    }

    fn with_latency(mut self, latency: &Latency) -> Self {
        self.p50_ms = Some(latency.p50_ms);
        self.p95_ms = Some(latency.p95_ms);
        self.p99_ms = Some(latency.p99_ms);
        self
    }
}

/// Memory of one process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// The process.
    pub process: String,
    /// Resident memory once started and seeded, MiB.
    pub idle_mib: f64,
    /// Highest resident memory seen over the whole run, MiB.
    pub peak_mib: f64,
}

/// One of the targets, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What.
    pub what: String,
    /// The goal, in words.
    pub goal: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the goal was met.
    pub met: bool,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When (UTC).
    pub date: String,
    /// The machine, and how busy it was before the run.
    pub machine: BTreeMap<String, String>,
    /// How the system was configured for the run.
    pub setup: BTreeMap<String, String>,
    /// The machine's ceilings.
    pub ceilings: Vec<Measure>,
    /// The system's figures.
    pub scenarios: Vec<Measure>,
    /// Memory per process.
    pub memory: Vec<Memory>,
    /// What the quiet system does by itself, taken out of the write scenarios' costs.
    pub background: Background,
    /// The targets.
    pub targets: Vec<Target>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// How long the quiet system is watched for the work it does by itself.
const BACKGROUND_WINDOW: Duration = Duration::from_secs(20);

/// Rate limits stay on, as in production, at a limit the bench never reaches.
const HIGH_LIMIT: &str = "1000000000";

/// The settings every bench process gets (rate limits on at a high limit, instant certain
/// payments).
fn system_env() -> Vec<(String, String)> {
    [
        ("RUST_LOG", "warn"),
        ("THROTTLER_ENABLED", "true"),
        ("THROTTLER_LIMIT", HIGH_LIMIT),
        ("THROTTLER_AUTH_LIMIT", HIGH_LIMIT),
        ("BCRYPT_COST", "10"),
        ("PAYMENT_DURATION", "0"),
        ("PAYMENT_FAILED_PROBABILITY", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn machine() -> BTreeMap<String, String> {
    let mut machine = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    machine.insert("cpu".into(), model.to_owned());
    machine.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
    );
    let memory = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(total) = memory.lines().next() {
        machine.insert(
            "memory".into(),
            total.trim_start_matches("MemTotal:").trim().to_owned(),
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    machine.insert("load before the run".into(), load.trim().to_owned());
    machine.insert(
        "note".into(),
        "a shared, noisy virtual machine: read figures as ratios to the same run's ceilings".into(),
    );
    machine
}

fn track_memory(system: &System, memory: &mut BTreeMap<String, (f64, f64)>) {
    for (name, pid) in system.pids() {
        if let Some(reading) = procfs::read(pid) {
            let entry = memory
                .entry(name)
                .or_insert((reading.rss as f64 / MIB, 0.0));
            entry.1 = entry.1.max(reading.peak_rss as f64 / MIB);
        }
    }
}

/// Runs every scenario and ceiling; returns the report (written by [`write`]).
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&config.work_dir)?;
    let machine = machine();
    let log_dir = config.work_dir.join("logs");
    let _ = std::fs::remove_dir_all(&log_dir);
    let mut system = System::start(Options {
        bin_dir: config.bin_dir.clone(),
        log_dir,
        label: "bench".into(),
        env: system_env(),
    })
    .await?;
    let outcome = run_on(config, &mut system, machine).await;
    let stopped = system.shutdown().await;
    let report = outcome?;
    stopped?;
    Ok(report)
}

#[allow(clippy::print_stdout)]
fn progress(what: &str) {
    println!("bench: {what}");
}

async fn run_on(
    config: &Config,
    system: &mut System,
    machine: BTreeMap<String, String>,
) -> anyhow::Result<Report> {
    let api = Api::new(&system.gateway_url(), config.connections * 2)?;
    progress("seeding products and shoppers");
    let fixture = seed(&api, config).await?;
    let product = fixture.products[0];
    let product_json = api.get_text(&format!("/products/{product}")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut memory = BTreeMap::new();
    track_memory(system, &mut memory);

    let mut ceilings = Vec::new();
    progress("ceiling: in-memory actix-web handler, alone and behind nginx");
    ceilings.extend(http_ceilings(config, product, &product_json).await?);
    progress("ceiling: redis-benchmark");
    let redis = PrivateRedis::start().await;
    ceilings.push(redis_ceiling(&redis)?);
    drop(redis);
    progress("ceiling: pgbench -N");
    ceilings.push(pgbench_ceiling(config).await?);

    let mut scenarios = Vec::new();
    let get = |url: String, headers: Vec<String>| Wrk {
        url,
        connections: config.connections,
        headers,
        script: None,
    };
    progress("catalog service directly");
    scenarios.push(
        get(
            format!("{}/products/{product}", system.url("catalog")),
            vec![format!(
                "x-internal-token: {}",
                shop_settings::DEV_INTERNAL_TOKEN
            )],
        )
        .measure(
            config,
            Some(system),
            "catalog_direct",
            "GET /products/{id} at the catalog service (no gateway)",
        )?,
    );
    progress("GET /products/{id}");
    scenarios.push(
        get(
            format!("{}/products/{product}", system.gateway_url()),
            Vec::new(),
        )
        .measure(
            config,
            Some(system),
            "product_read",
            "GET /products/{id} through the gateway (cached)",
        )?,
    );
    progress("GET /products");
    scenarios.push(
        get(
            format!("{}/products?limit=20", system.gateway_url()),
            Vec::new(),
        )
        .measure(
            config,
            Some(system),
            "product_list",
            "GET /products?limit=20 through the gateway (cached page)",
        )?,
    );
    progress("POST /login");
    // Each request logs in the next shopper: one account's attempts are limited per client
    // address (LOGIN_THROTTLE_LIMIT), and real logins come from many accounts.
    let login_script = config.work_dir.join("login.lua");
    let emails: Vec<String> = fixture
        .shoppers
        .iter()
        .map(|s| format!("\"{}\"", s.email))
        .collect();
    std::fs::write(
        &login_script,
        format!(
            "local emails = {{{}}}\nlocal n = 0\n\
             request = function()\n  n = n + 1\n  \
             local body = '{{\"email\":\"' .. emails[n % #emails + 1] .. '\",\"password\":\"{}\"}}'\n  \
             return wrk.format(\"POST\", nil, {{[\"Content-Type\"] = \"application/json\"}}, body)\nend\n",
            emails.join(", "),
            crate::api::PASSWORD
        ),
    )?;
    progress("ceiling: bcrypt, around the login run");
    let (bcrypt, login) = bcrypt_ceiling_around(config.duration / 2, || {
        Wrk {
            url: format!("{}/login", system.gateway_url()),
            connections: 16,
            headers: Vec::new(),
            script: Some(&login_script),
        }
        .measure(
            config,
            Some(system),
            "login",
            "POST /login (bcrypt cost 10)",
        )
    });
    ceilings.push(bcrypt);
    scenarios.push(login?);
    track_memory(system, &mut memory);

    progress("what the quiet system does by itself");
    let probe = api.new_shopper().await?;
    await_quiet(system, Duration::from_secs(60)).await?;
    let quiet = counts::settled(system).await?;
    tokio::time::sleep(BACKGROUND_WINDOW).await;
    let before = counts::snapshot(system).await?;
    let background = Background::between(&quiet, &before);

    progress("order to order.paid, idle");
    let never = AtomicBool::new(false);
    let idle = paid_latency(&api, &probe, &fixture.products, &never, 200).await?;
    let mut paid_idle = latency_measure(
        system,
        "paid_idle",
        "POST /orders until order.paid on the socket, idle system",
        &idle,
    )
    .await?;
    await_quiet(system, Duration::from_secs(60)).await?;
    let after = counts::settled(system).await?;
    paid_idle.cost = Some(Cost::between(&before, &after, &background));
    scenarios.push(paid_idle);

    progress("POST /orders under load, with order.paid latency");
    let concurrency = config.connections / 2;
    order_load(&api, &fixture, concurrency, Until::Elapsed(config.warmup)).await;
    await_quiet(system, Duration::from_secs(60)).await?;
    let before = counts::settled(system).await?;
    let locks = LockSampler::start(system).await?;
    let window = CpuWindow::start(system);
    let profile = start_profile(config, "orders")?;
    let stop = AtomicBool::new(false);
    let (load, under_load) = tokio::join!(
        async {
            let load =
                order_load(&api, &fixture, concurrency, Until::Elapsed(config.duration)).await;
            stop.store(true, Ordering::SeqCst);
            load
        },
        paid_latency(&api, &probe, &fixture.products, &stop, usize::MAX),
    );
    let mut orders = measure_orders(
        &load,
        "orders",
        "POST /orders, many users and products, ample stock",
        format!(
            "driver: {concurrency} in flight, {} users",
            fixture.shoppers.len()
        ),
    );
    orders.cpu_percent = window.finish();
    finish_profile(profile);
    let waits = locks.finish().await?;
    if let Some(error) = &load.first_error {
        progress(&format!("first order error: {error}"));
    }
    // Placed and paid: the costs are counted once every order has settled.
    await_quiet(system, Duration::from_secs(120)).await?;
    let after = counts::settled(system).await?;
    orders.cost = Some(Cost {
        object_lock_waits: Some(waits),
        ..Cost::between(&before, &after, &background)
    });
    scenarios.push(orders);
    scenarios.push(
        latency_measure(
            system,
            "paid_under_load",
            "POST /orders until order.paid on the socket, under the order load",
            &under_load?,
        )
        .await?,
    );
    track_memory(system, &mut memory);

    progress(&format!("backlog drain of {} orders", config.backlog));
    let before = after;
    let mut drain = backlog_drain(config, system, &api, &fixture, concurrency).await?;
    await_quiet(system, Duration::from_secs(120)).await?;
    let after = counts::settled(system).await?;
    drain.cost = Some(Cost::between(&before, &after, &background));
    scenarios.push(drain);
    track_memory(system, &mut memory);

    let memory: Vec<Memory> = memory
        .into_iter()
        .map(|(process, (idle, peak))| Memory {
            process,
            idle_mib: (idle * 10.0).round() / 10.0,
            peak_mib: (peak * 10.0).round() / 10.0,
        })
        .collect();
    let mut setup = BTreeMap::new();
    for (key, value) in system_env() {
        setup.insert(key, value);
    }
    setup.insert(
        "rate limits".into(),
        format!("enabled, as in production, at {HIGH_LIMIT} requests per window"),
    );
    setup.insert(
        "mode".into(),
        "five release processes on loopback, own database and redis-server".into(),
    );
    setup.insert(
        "duration".into(),
        format!(
            "{} s after a {} s warm-up",
            config.duration.as_secs(),
            config.warmup.as_secs()
        ),
    );
    setup.insert("binaries".into(), config.bin_dir.display().to_string());
    setup.insert(
        "catalogue".into(),
        format!("{} products, {} shoppers", config.products, config.shoppers),
    );
    let targets = judge(&ceilings, &scenarios, &memory);
    Ok(Report {
        date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        machine,
        setup,
        ceilings,
        scenarios,
        memory,
        background,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let output = "Running 10s test @ http://127.0.0.1:1/products/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.99ms   80.00%
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.50s
  123456 requests in 10.00s, 56.78MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 1, read 2, write 0, timeout 3
Requests/sec:  12345.67
Transfer/sec:      5.67MB
";
        let result = parse_wrk(output).unwrap_or_default();
        assert_eq!(result.requests, 123_456);
        assert_eq!(result.errors, 18);
        assert_eq!(result.requests_per_second, 12_345.67);
        assert_eq!(result.p50_ms, Some(0.85));
        assert_eq!(result.p99_ms, Some(2500.0));
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn reads_commandstats_and_divides_by_requests() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=5,usec_per_call=0.5\r\n\
             cmdstat_info:calls=3,usec=1\r\n",
        );
        assert_eq!(before, BTreeMap::from([("get".to_owned(), 10)]));
        let after = parse_commandstats(
            "cmdstat_get:calls=30,usec=9\r\ncmdstat_evalsha:calls=5,usec=1\r\n\
             cmdstat_info:calls=9,usec=1\r\n",
        );
        let spent = per_request(&before, &after, 100);
        assert_eq!(
            spent,
            BTreeMap::from([("evalsha".to_owned(), 0.05), ("get".to_owned(), 0.2)])
        );
    }
}
