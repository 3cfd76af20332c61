//! The ceilings of this machine, measured in the same run: an in-memory handler, the same
//! behind one nginx hop, redis-benchmark, pgbench and bcrypt.

use super::*;

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

pub(super) async fn await_port(port: u16) -> anyhow::Result<()> {
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
pub(super) async fn http_ceilings(
    config: &Config,
    product: Uuid,
    body: &str,
) -> anyhow::Result<Vec<Measure>> {
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
pub(super) async fn one_hop(
    config: &Config,
    upstream: u16,
    product: Uuid,
) -> anyhow::Result<Measure> {
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

pub(super) fn redis_ceiling(redis: &PrivateRedis) -> anyhow::Result<Measure> {
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

pub(super) async fn pgbench_ceiling(config: &Config) -> anyhow::Result<Measure> {
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

/// bcrypt hashes at cost 10 on every core for `duration`: how many, and how long it took.
fn bcrypt_hashes(duration: Duration) -> (u64, Duration) {
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
    (hashes, started.elapsed())
}

/// The bcrypt ceiling around a measured run: `duration` of hashing on every core just before
/// `run` and as long again just after, taken together. On a shared machine whose speed drifts
/// by several percent within minutes, a ceiling measured apart from the run it bounds says
/// more about the drift than about the run.
pub(super) fn bcrypt_ceiling_around<T>(
    duration: Duration,
    run: impl FnOnce() -> T,
) -> (Measure, T) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (before, before_took) = bcrypt_hashes(duration);
    let result = run();
    let (after, after_took) = bcrypt_hashes(duration);
    let hashes = before + after;
    let mut measure = Measure::new(
        "ceiling_bcrypt",
        "bcrypt hashes at cost 10, all cores (just before and just after the login run)",
        format!("{threads} threads"),
        hashes as f64 / (before_took + after_took).as_secs_f64(),
        "hashes/s",
    );
    measure.count = hashes;
    (measure, result)
}
