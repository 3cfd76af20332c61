//! The measuring tools: wrk runs and their output, CPU windows, `perf` profiles, Redis
//! command counts.

use super::*;

/// CPU used by each of the system's processes over a window.
pub(super) struct CpuWindow {
    pub(super) started: Instant,
    pub(super) before: Vec<(String, u32, Duration)>,
}

impl CpuWindow {
    pub(super) fn start(system: &System) -> Self {
        Self {
            started: Instant::now(),
            before: system
                .pids()
                .into_iter()
                .filter_map(|(name, pid)| procfs::read(pid).map(|r| (name, pid, r.cpu)))
                .collect(),
        }
    }

    pub(super) fn finish(self) -> BTreeMap<String, f64> {
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
pub(super) fn start_profile(
    config: &Config,
    key: &str,
) -> anyhow::Result<Option<std::process::Child>> {
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

pub(super) fn finish_profile(profile: Option<std::process::Child>) {
    if let Some(mut child) = profile {
        let _ = child.wait();
    }
}

/// What `wrk --latency` printed, decoded.
#[derive(Debug, Default)]
pub(super) struct WrkResult {
    pub(super) requests_per_second: f64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
}

pub(super) fn wrk_duration_ms(text: &str) -> Option<f64> {
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

pub(super) fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
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
pub(super) struct Wrk<'a> {
    pub(super) url: String,
    pub(super) connections: usize,
    pub(super) headers: Vec<String>,
    pub(super) script: Option<&'a Path>,
}

impl Wrk<'_> {
    pub(super) fn tool(&self) -> String {
        format!("wrk -t2 -c{}", self.connections)
    }

    pub(super) fn run(&self, duration: Duration) -> anyhow::Result<WrkResult> {
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
    pub(super) fn measure(
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
pub(super) fn command_counts(redis: std::net::SocketAddr) -> anyhow::Result<BTreeMap<String, u64>> {
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

pub(super) fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
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

pub(super) fn per_request(
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
