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

use crate::{
    PrivateRedis,
    api::{Api, Shopper},
    counts::{self, Background, Cost, LockSampler},
    free_port, procfs,
    stages::{self, Probe, Stage},
    stats::Latency,
    system::{Database, Options, System},
};

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

/// CPU used by each of the system's processes over a window.
struct CpuWindow {
    started: Instant,
    before: Vec<(String, u32, Duration)>,
}

impl CpuWindow {
    fn start(system: &System) -> Self {
        Self {
            started: Instant::now(),
            before: system
                .pids()
                .into_iter()
                .filter_map(|(name, pid)| procfs::read(pid).map(|r| (name, pid, r.cpu)))
                .collect(),
        }
    }

    fn finish(self) -> BTreeMap<String, f64> {
        let wall = self.started.elapsed().as_secs_f64();
        self.before
            .into_iter()
            .filter_map(|(name, pid, before)| {
                let after = procfs::read(pid)?.cpu;
                let used = after.saturating_sub(before).as_secs_f64();
                Some((name, (used / wall * 1000.0).round() / 10.0))
            })
            .collect()
    }
}

/// `perf record` of the whole machine (every process, so the system's processes and
/// Postgres alike) for `duration`, when profiling is on; see [`Config::profile_dir`].
fn start_profile(config: &Config, key: &str) -> anyhow::Result<Option<std::process::Child>> {
    let Some(dir) = &config.profile_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let child = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "-a",
            "-g",
            "-o",
        ])
        .arg(dir.join(format!("{key}.data")))
        .args(["--", "sleep"])
        .arg(config.duration.as_secs().max(1).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run perf (Debian: linux-perf)")?;
    Ok(Some(child))
}

fn finish_profile(profile: Option<std::process::Child>) {
    if let Some(mut child) = profile {
        let _ = child.wait();
    }
}

/// What `wrk --latency` printed, decoded.
#[derive(Debug, Default)]
struct WrkResult {
    requests_per_second: f64,
    requests: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn wrk_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(value * factor)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult::default();
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50_ms = wrk_duration_ms(value),
            ["99%", value] => result.p99_ms = wrk_duration_ms(value),
            ["Requests/sec:", value] => result.requests_per_second = value.parse()?,
            [count, "requests", "in", ..] => result.requests = count.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.errors += count.parse::<u64>()?
            }
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if result.requests == 0 {
        bail!("wrk measured nothing:\n{output}");
    }
    Ok(result)
}

/// One `wrk` load: a URL, optional headers and Lua script.
struct Wrk<'a> {
    url: String,
    connections: usize,
    headers: Vec<String>,
    script: Option<&'a Path>,
}

impl Wrk<'_> {
    fn tool(&self) -> String {
        format!("wrk -t2 -c{}", self.connections)
    }

    fn run(&self, duration: Duration) -> anyhow::Result<WrkResult> {
        let mut command = Command::new("wrk");
        command.args([
            "-t2",
            &format!("-c{}", self.connections),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--latency",
            "--timeout",
            "10s",
        ]);
        for header in &self.headers {
            command.args(["-H", header]);
        }
        if let Some(script) = self.script {
            command.arg("-s").arg(script);
        }
        let output = command
            .arg(&self.url)
            .stdin(Stdio::null())
            .output()
            .context("cannot run wrk (Debian: apt-get install wrk; `make bench` installs it)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed: {}{text}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_wrk(&text)
    }

    /// A warm-up, then the measured run, with the system's CPU per process.
    fn measure(
        &self,
        config: &Config,
        system: Option<&System>,
        key: &str,
        name: &str,
    ) -> anyhow::Result<Measure> {
        if !config.warmup.is_zero() {
            self.run(config.warmup)?;
        }
        let redis = system.map(System::redis_addr);
        let commands_before = redis.map(command_counts).transpose()?;
        let window = system.map(CpuWindow::start);
        let profile = if system.is_some() {
            start_profile(config, key)?
        } else {
            None
        };
        let result = self.run(config.duration);
        finish_profile(profile);
        let result = result?;
        let commands_after = redis.map(command_counts).transpose()?;
        let mut measure = Measure::new(key, name, self.tool(), result.requests_per_second, "req/s");
        measure.p50_ms = result.p50_ms;
        measure.p99_ms = result.p99_ms;
        measure.count = result.requests;
        measure.errors = result.errors;
        measure.cpu_percent = window.map(CpuWindow::finish).unwrap_or_default();
        if let (Some(before), Some(after)) = (commands_before, commands_after) {
            measure.redis_commands_per_request =
                Some(per_request(&before, &after, result.requests.max(1)));
        }
        Ok(measure)
    }
}

/// Calls per command so far (`INFO commandstats`), without the `INFO` calls themselves.
fn command_counts(redis: std::net::SocketAddr) -> anyhow::Result<BTreeMap<String, u64>> {
    let output = Command::new("redis-cli")
        .args([
            "-h",
            &redis.ip().to_string(),
            "-p",
            &redis.port().to_string(),
        ])
        .args(["INFO", "commandstats"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-cli")?;
    if !output.status.success() {
        bail!("redis-cli INFO commandstats failed");
    }
    Ok(parse_commandstats(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

fn per_request(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    requests: u64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, &calls)| {
            let spent = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (spent > 0).then(|| (name.clone(), spent as f64 / requests as f64))
        })
        .collect()
}

/// The minimal actix-web handler: the same product JSON, from memory. `shop-bench` runs it as
/// its own process (`shop-bench ceiling-server PORT FILE`).
pub async fn ceiling_server(port: u16, body: String) -> anyhow::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let body = web::Data::new(body);
    HttpServer::new(move || {
        App::new().app_data(body.clone()).route(
            "/products/{id}",
            web::get().to(|body: web::Data<String>| async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body.get_ref().clone())
            }),
        )
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

async fn await_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nothing listens on port {port}")
}

/// The in-memory handler alone, and behind one nginx hop (Debian's nginx, upstream
/// keep-alive): the most any design where a gateway proxies to a service could serve.
async fn http_ceilings(config: &Config, product: Uuid, body: &str) -> anyhow::Result<Vec<Measure>> {
    let port = free_port();
    let file = config.work_dir.join("product.json");
    std::fs::write(&file, body)?;
    let mut server = Command::new(std::env::current_exe()?)
        .arg("ceiling-server")
        .arg(port.to_string())
        .arg(&file)
        .stdin(Stdio::null())
        .spawn()?;
    let measured = async {
        await_port(port).await?;
        let direct = Wrk {
            url: format!("http://127.0.0.1:{port}/products/{product}"),
            connections: config.connections,
            headers: Vec::new(),
            script: None,
        }
        .measure(
            config,
            None,
            "ceiling_in_memory",
            "actix-web handler, product JSON from memory",
        )?;
        let proxied = one_hop(config, port, product).await?;
        Ok(vec![direct, proxied])
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    measured
}

/// The in-memory handler on `upstream` behind nginx.
async fn one_hop(config: &Config, upstream: u16, product: Uuid) -> anyhow::Result<Measure> {
    let port = free_port();
    let dir = config.work_dir.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n\
             upstream ceiling {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
             proxy_pass http://ceiling;\n      proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
            dir = dir.display()
        ),
    )?;
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run nginx (Debian: apt-get install nginx; `make bench` installs it)")?;
    let measured = async {
        await_port(port).await?;
        Wrk {
            url: format!("http://127.0.0.1:{port}/products/{product}"),
            connections: config.connections,
            headers: Vec::new(),
            script: None,
        }
        .measure(
            config,
            None,
            "ceiling_one_hop",
            "the same handler behind one nginx hop (upstream keep-alive)",
        )
    }
    .await;
    // SIGKILL would leave the workers running: `-s stop` asks the master to end them.
    let stopped = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .args(["-s", "stop"])
        .stderr(Stdio::null())
        .status();
    if !stopped.is_ok_and(|s| s.success()) {
        let _ = nginx.kill();
    }
    let _ = nginx.wait();
    measured
}

fn redis_ceiling(redis: &PrivateRedis) -> anyhow::Result<Measure> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.addr().port().to_string()])
        .args([
            "-t", "get", "-n", "500000", "-c", "50", "-d", "512", "--csv",
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))
        .with_context(|| format!("redis-benchmark printed no GET line:\n{text}"))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|f| f.trim_matches('"').parse().ok())
        .collect();
    // rps, avg, min, p50, p95, p99, max
    let [rps, _, _, p50, p95, p99, ..] = fields[..] else {
        bail!("unexpected redis-benchmark line: {line}");
    };
    let mut measure = Measure::new(
        "ceiling_redis",
        "redis-server GET (private instance)",
        "redis-benchmark -c50 -d512".into(),
        rps,
        "req/s",
    );
    (measure.p50_ms, measure.p95_ms, measure.p99_ms) = (Some(p50), Some(p95), Some(p99));
    measure.count = 500_000;
    Ok(measure)
}

async fn pgbench_ceiling(config: &Config) -> anyhow::Result<Measure> {
    let database = Database::create("pgbench").await?;
    let result = async {
        let init = Command::new("pgbench")
            .args(["-i", "-q", "-s", "10", database.url()])
            .stdin(Stdio::null())
            .output()
            .context("cannot run pgbench")?;
        if !init.status.success() {
            bail!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        let run = Command::new("pgbench")
            .args(["-N", "-c", "16", "-j", "2", "-T"])
            .arg(config.duration.as_secs().max(1).to_string())
            .arg(database.url())
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&run.stdout);
        if !run.status.success() {
            bail!(
                "pgbench failed: {text}{}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let number_after = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        };
        let tps = number_after("tps = ").with_context(|| format!("no tps in:\n{text}"))?;
        let mut measure = Measure::new(
            "ceiling_pgbench",
            "pgbench -N (simple updates), own database",
            "pgbench -N -c16 -j2".into(),
            tps,
            "tps",
        );
        measure.p50_ms = number_after("latency average = ");
        measure.count =
            number_after("number of transactions actually processed: ").map_or(0, |n| n as u64);
        Ok(measure)
    }
    .await;
    database.drop_database().await?;
    result
}

fn bcrypt_ceiling(duration: Duration) -> Measure {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let hashes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0;
                    while started.elapsed() < duration {
                        if bcrypt::hash("a good password", 10).is_ok() {
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let mut measure = Measure::new(
        "ceiling_bcrypt",
        "bcrypt hashes at cost 10, all cores",
        format!("{threads} threads"),
        hashes as f64 / started.elapsed().as_secs_f64(),
        "hashes/s",
    );
    measure.count = hashes;
    measure
}

/// The bench's users and products.
struct Fixture {
    shoppers: Vec<Shopper>,
    products: Vec<Uuid>,
}

async fn seed(api: &Api, config: &Config) -> anyhow::Result<Fixture> {
    let admin = api.admin().await?;
    let mut products = Vec::with_capacity(config.products);
    for i in 0..config.products {
        let price = 100 + (i as i64 * 37) % 10_000;
        products.push(
            api.create_product(&admin, &format!("Bench product {i:04}"), price, 100_000_000)
                .await?,
        );
    }
    let mut shoppers = Vec::with_capacity(config.shoppers);
    for _ in 0..config.shoppers {
        shoppers.push(api.new_shopper().await?);
    }
    Ok(Fixture { shoppers, products })
}

fn random_lines(products: &[Uuid]) -> Vec<(Uuid, i64)> {
    let mut rng = rand::rng();
    let count = rng.random_range(1..=3usize);
    let mut lines: Vec<(Uuid, i64)> = Vec::with_capacity(count);
    while lines.len() < count {
        let product = products[rng.random_range(0..products.len())];
        if !lines.iter().any(|(p, _)| *p == product) {
            lines.push((product, rng.random_range(1..=2)));
        }
    }
    lines
}

/// What an order load did.
#[derive(Debug, Default)]
struct OrderLoad {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Many users placing orders, `concurrency` at a time, until `stop` or `count` orders.
async fn order_load(api: &Api, fixture: &Fixture, concurrency: usize, until: Until) -> OrderLoad {
    let started = Instant::now();
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..concurrency).map(|worker| {
        let issued = issued.clone();
        async move {
            let mut load = OrderLoad::default();
            let mut next = worker;
            loop {
                match until {
                    Until::Elapsed(limit) if started.elapsed() >= limit => break,
                    Until::Count(limit) if issued.fetch_add(1, Ordering::SeqCst) >= limit => break,
                    _ => {}
                }
                let shopper = &fixture.shoppers[next % fixture.shoppers.len()];
                next += concurrency;
                let lines = random_lines(&fixture.products);
                let key = Uuid::new_v4().to_string();
                let sent = Instant::now();
                match api.place_order(shopper, &lines, &key).await {
                    Ok(response) if response.status() == 201 => {
                        load.latencies.push(sent.elapsed());
                    }
                    Ok(response) => {
                        load.errors += 1;
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        load.first_error.get_or_insert(format!("{status}: {body}"));
                    }
                    Err(error) => {
                        load.errors += 1;
                        load.first_error.get_or_insert(error.to_string());
                    }
                }
            }
            load
        }
    });
    let mut total = OrderLoad::default();
    for load in futures_util::future::join_all(workers).await {
        total.latencies.extend(load.latencies);
        total.errors += load.errors;
        if total.first_error.is_none() {
            total.first_error = load.first_error;
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Count(usize),
}

/// One shopper placing orders one after another, timing each from the request until its
/// `order.paid` arrives on their socket; stops when `stop` is set (or after `limit` orders).
async fn paid_latency(
    api: &Api,
    shopper: &Shopper,
    products: &[Uuid],
    stop: &AtomicBool,
    limit: usize,
) -> anyhow::Result<Vec<Probe>> {
    let mut socket = api.open_socket(shopper).await?;
    let mut probes = Vec::new();
    while !stop.load(Ordering::SeqCst) && probes.len() < limit {
        let lines = random_lines(products);
        let sent = SystemTime::now();
        let response = api
            .place_order(shopper, &lines, &Uuid::new_v4().to_string())
            .await?;
        if response.status() != 201 {
            bail!("order answered {}", response.status());
        }
        let order: serde_json::Value = response.json().await?;
        let id = order["id"].as_str().context("order without id")?.to_owned();
        let messages = socket
            .await_order_event(&id, "order.paid", Duration::from_secs(60))
            .await?;
        probes.push(Probe {
            order: id.parse()?,
            sent,
            received: SystemTime::now(),
            messages,
        });
    }
    Ok(probes)
}

async fn count_orders(system: &System, status: &str) -> anyhow::Result<i64> {
    let client = system.database().client().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE status = $1",
            &[&status],
        )
        .await?;
    Ok(row.get(0))
}

async fn await_quiet(system: &System, deadline: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = system.database().client().await?;
    loop {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM orders.orders WHERE status IN ('reserving', 'pending'))
                      + (SELECT count(*) FROM orders.outbox WHERE sent_at IS NULL)
                      + (SELECT count(*) FROM payments.outbox WHERE sent_at IS NULL)",
                &[],
            )
            .await?;
        let busy: i64 = row.get(0);
        if busy == 0 {
            return Ok(());
        }
        if started.elapsed() > deadline {
            bail!("{busy} orders or events still in flight after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn measure_orders(load: &OrderLoad, key: &str, name: &str, tool: String) -> Measure {
    let latency = Latency::of(&load.latencies);
    let mut measure = Measure::new(
        key,
        name,
        tool,
        load.latencies.len() as f64 / load.elapsed.as_secs_f64(),
        "orders/s",
    )
    .with_latency(&latency);
    measure.count = load.latencies.len() as u64;
    measure.errors = load.errors;
    measure
}

async fn latency_measure(
    system: &System,
    key: &str,
    name: &str,
    probes: &[Probe],
) -> anyhow::Result<Measure> {
    let samples: Vec<Duration> = probes.iter().map(Probe::latency).collect();
    let latency = Latency::of(&samples);
    let mut measure = Measure::new(
        key,
        name,
        "1 shopper, one order at a time, socket open".into(),
        0.0,
        "",
    )
    .with_latency(&latency);
    measure.count = samples.len() as u64;
    measure.stages = stages::of(system, probes).await?;
    Ok(measure)
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
    progress("ceiling: bcrypt");
    ceilings.push(bcrypt_ceiling(config.duration / 2));

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
    scenarios.push(
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
        )?,
    );
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

async fn backlog_drain(
    config: &Config,
    system: &mut System,
    api: &Api,
    fixture: &Fixture,
    concurrency: usize,
) -> anyhow::Result<Measure> {
    system.stop("payment", Duration::from_secs(10)).await;
    let paid_before = count_orders(system, "paid").await?;
    let load = order_load(api, fixture, concurrency, Until::Count(config.backlog)).await;
    if load.errors > 0 {
        bail!(
            "{} orders of the backlog failed: {}",
            load.errors,
            load.first_error.unwrap_or_default()
        );
    }
    let target = paid_before + load.latencies.len() as i64;
    // Every payment request is in the stream before the clock starts.
    let client = system.database().client().await?;
    loop {
        let unsent: i64 = client
            .query_one(
                "SELECT count(*) FROM orders.outbox WHERE sent_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let window = CpuWindow::start(system);
    system.start_with("payment", &[])?;
    loop {
        let paid = count_orders(system, "paid").await?;
        if paid >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the backlog did not drain in 10 minutes ({paid} of {target} paid)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let mut measure = Measure::new(
        "backlog_drain",
        "backlog drain: queued orders paid per second (from the payment service's start)",
        format!(
            "{} orders queued while the payment service was down",
            load.latencies.len()
        ),
        load.latencies.len() as f64 / elapsed.as_secs_f64(),
        "orders/s",
    );
    measure.cpu_percent = window.finish();
    measure.count = load.latencies.len() as u64;
    system
        .await_ready("payment", Duration::from_secs(30))
        .await?;
    Ok(measure)
}

fn find<'a>(measures: &'a [Measure], key: &str) -> Option<&'a Measure> {
    measures.iter().find(|m| m.key == key)
}

fn judge(ceilings: &[Measure], scenarios: &[Measure], memory: &[Memory]) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut ratio = |what: &str, key: &str, ceiling: &str, goal: f64, errors_matter: bool| {
        // The reference is a ceiling or, for one scenario against another, a scenario.
        let reference = find(ceilings, ceiling).or_else(|| find(scenarios, ceiling));
        let (Some(measured), Some(ceiling)) = (find(scenarios, key), reference) else {
            return;
        };
        let ratio = measured.throughput / ceiling.throughput;
        let clean = !errors_matter || measured.errors == 0;
        targets.push(Target {
            what: what.to_owned(),
            goal: format!(
                ">= {:.0}% of {}{}",
                goal * 100.0,
                ceiling.name,
                if errors_matter { ", 0 errors" } else { "" }
            ),
            measured: format!(
                "{:.0} {} = {:.1}% of {:.0} {}{}",
                measured.throughput,
                measured.unit,
                ratio * 100.0,
                ceiling.throughput,
                ceiling.unit,
                if errors_matter {
                    format!(", {} errors", measured.errors)
                } else {
                    String::new()
                }
            ),
            met: ratio >= goal && clean,
        });
    };
    ratio(
        "cached product read through the gateway, rate limits on",
        "product_read",
        "ceiling_one_hop",
        0.50,
        false,
    );
    ratio(
        "cached product read at the catalog directly",
        "catalog_direct",
        "ceiling_in_memory",
        0.50,
        false,
    );
    ratio(
        "cached list page through the gateway",
        "product_list",
        "product_read",
        0.60,
        false,
    );
    ratio("order placement", "orders", "ceiling_pgbench", 0.15, true);
    ratio(
        "backlog drain",
        "backlog_drain",
        "ceiling_pgbench",
        0.25,
        false,
    );
    ratio("login", "login", "ceiling_bcrypt", 0.90, false);
    if let Some(read) = find(scenarios, "product_read")
        && let Some(commands) = read.redis_per_request()
    {
        targets.push(Target {
            what: "Redis commands per cached read through the gateway".into(),
            goal: "<= 0.1".into(),
            measured: format!("{commands:.3}"),
            met: commands <= 0.1,
        });
    }
    let mut latency = |what: &str, key: &str, p99: bool, goal: f64| {
        let Some(measured) = find(scenarios, key) else {
            return;
        };
        let value = if p99 {
            measured.p99_ms
        } else {
            measured.p50_ms
        }
        .unwrap_or(f64::MAX);
        targets.push(Target {
            what: what.to_owned(),
            goal: format!("{} <= {goal:.0} ms", if p99 { "p99" } else { "p50" }),
            measured: format!("{value:.1} ms over {} orders", measured.count),
            met: value <= goal && measured.count > 0,
        });
    };
    latency("order to order.paid, idle", "paid_idle", false, 12.0);
    latency(
        "order to order.paid, under load",
        "paid_under_load",
        true,
        250.0,
    );
    if let Some(cost) = find(scenarios, "orders").and_then(|m| m.cost.as_ref()) {
        targets.push(Target {
            what: "commits per order, placed and paid, under the order load".into(),
            goal: "<= 8".into(),
            measured: format!(
                "{:.2} ({:.2} as counted, over {} orders)",
                cost.commits_per_order, cost.commits_per_order_raw, cost.orders
            ),
            met: cost.orders > 0 && cost.commits_per_order <= 8.0,
        });
        let statements = cost.statements_per_order;
        targets.push(Target {
            what: "statements per order, placed and paid, under the order load".into(),
            goal: "<= 60".into(),
            measured: statements.map_or_else(
                || "not counted by these binaries".to_owned(),
                |s| format!("{s:.1}"),
            ),
            met: statements.is_some_and(|s| s <= 60.0),
        });
        if let Some(waits) = &cost.object_lock_waits {
            targets.push(Target {
                what: "database-object lock waits during the order load".into(),
                goal: "<= 0".into(),
                measured: format!(
                    "waiters in {} of {} samples (peak {})",
                    waits.samples_with_waiters, waits.samples, waits.peak_waiters
                ),
                met: waits.samples_with_waiters == 0,
            });
        }
    }
    let idle: f64 = memory.iter().map(|m| m.idle_mib).sum();
    let peak: f64 = memory.iter().map(|m| m.peak_mib).sum();
    targets.push(Target {
        what: "memory, all processes, idle".into(),
        goal: "< 100 MiB".into(),
        measured: format!("{idle:.1} MiB"),
        met: idle < 100.0,
    });
    targets.push(Target {
        what: "memory, all processes, under load".into(),
        goal: "< 300 MiB".into(),
        measured: format!("{peak:.1} MiB (sum of each process's peak)"),
        met: peak < 300.0,
    });
    targets
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// The report as markdown tables.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# Benchmark, {}\n\n", report.date);
    for (key, value) in &report.machine {
        out.push_str(&format!("- **{key}**: {value}\n"));
    }
    for (key, value) in &report.setup {
        out.push_str(&format!("- {key}: {value}\n"));
    }
    out.push_str("\n## Targets\n\n| Target | Goal | Measured | Met |\n|---|---|---|---|\n");
    for target in &report.targets {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            target.what,
            target.goal,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        ));
    }
    for (title, measures) in [
        ("System", &report.scenarios),
        ("Ceilings of this machine", &report.ceilings),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| Measure | Driver | Throughput | p50 ms | p95 ms | p99 ms | Count | Errors | CPU % per process |\n|---|---|---|---|---|---|---|---|---|\n"
        ));
        for m in measures {
            let throughput = if m.unit.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.0} {}", m.throughput, m.unit)
            };
            let cpu: Vec<String> = m
                .cpu_percent
                .iter()
                .map(|(p, c)| format!("{p} {c:.0}"))
                .collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.name,
                m.tool,
                throughput,
                cell(m.p50_ms),
                cell(m.p95_ms),
                cell(m.p99_ms),
                m.count,
                m.errors,
                cpu.join(", ")
            ));
        }
    }
    out.push_str(
        "\n## What one request costs\n\nCPU time per request of each busy process, and the \
         commands the system's redis-server ran per request (`INFO commandstats`, everything \
         the system sent meanwhile).\n\n| Measure | CPU µs per request | Redis commands per \
         request |\n|---|---|---|\n",
    );
    for m in &report.scenarios {
        let Some(commands) = &m.redis_commands_per_request else {
            continue;
        };
        let cpu: Vec<String> = m
            .cpu_percent
            .iter()
            .filter(|(_, percent)| **percent >= 1.0)
            .filter_map(|(p, _)| Some(format!("{p} {:.1}", m.cpu_us_per_operation(p)?)))
            .collect();
        let mut by_command: Vec<(&String, &f64)> = commands.iter().collect();
        by_command.sort_by(|a, b| b.1.total_cmp(a.1));
        let by_command: Vec<String> = by_command
            .iter()
            .take(4)
            .map(|(c, v)| format!("{c} {v:.3}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {:.3} ({}) |\n",
            m.name,
            cpu.join(", "),
            m.redis_per_request().unwrap_or_default(),
            by_command.join(", ")
        ));
    }
    out.push_str(&format!(
        "\n## The cost of a write\n\nPer order placed and paid, the quiet system's own work \
         ({:.1} commits/s, {:.1} statements/s) taken out; commits as counted in brackets.\n\n\
         | Scenario | Orders | Commits per order | Statements per order | By service \
         | Object-lock waits |\n|---|---|---|---|---|---|\n",
        report.background.commits_per_second, report.background.statements_per_second
    ));
    for m in &report.scenarios {
        let Some(cost) = &m.cost else { continue };
        let by_service: Vec<String> = cost
            .statements_by_service
            .iter()
            .map(|(s, v)| format!("{s} {v:.1}"))
            .collect();
        let waits = cost.object_lock_waits.as_ref().map_or_else(
            || "–".to_owned(),
            |w| {
                format!(
                    "{} of {} samples, peak {}",
                    w.samples_with_waiters, w.samples, w.peak_waiters
                )
            },
        );
        out.push_str(&format!(
            "| {} | {} | {:.2} ({:.2}) | {} | {} | {} |\n",
            m.name,
            cost.orders,
            cost.commits_per_order,
            cost.commits_per_order_raw,
            cost.statements_per_order
                .map_or_else(|| "–".to_owned(), |s| format!("{s:.1}")),
            by_service.join(", "),
            waits
        ));
    }
    let probes: Vec<&Measure> = report
        .scenarios
        .iter()
        .filter(|m| !m.stages.is_empty())
        .collect();
    if !probes.is_empty() {
        out.push_str("\n## Where an order's time goes (medians, ms)\n\n| Step |");
        for m in &probes {
            out.push_str(&format!(" {} |", m.name));
        }
        out.push_str(&format!("\n|---|{}\n", "---|".repeat(probes.len())));
        for (index, stage) in probes[0].stages.iter().enumerate() {
            out.push_str(&format!("| {} |", stage.step));
            for m in &probes {
                out.push_str(&format!(
                    " {} |",
                    cell(m.stages.get(index).and_then(|s| s.p50_ms))
                ));
            }
            out.push('\n');
        }
    }
    out.push_str("\n## Memory (resident)\n\n| Process | Idle MiB | Peak MiB |\n|---|---|---|\n");
    for m in &report.memory {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} |\n",
            m.process, m.idle_mib, m.peak_mib
        ));
    }
    out
}

/// Writes `<date>.json` and `<date>.md` into the results folder; returns the JSON's path.
pub fn write(config: &Config, report: &Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.out_dir)?;
    let stem = report.date.replace(':', "-");
    let json = config.out_dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")?;
    std::fs::write(config.out_dir.join(format!("{stem}.md")), markdown(report))?;
    Ok(json)
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
