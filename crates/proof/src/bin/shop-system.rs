//! `shop-system` (`make e2e`): the whole system as separate processes on a database and a
//! redis-server of its own, driven over stdin by the browser tests in `e2e/`. Run from the
//! workspace root after a build (`cargo build --workspace --bins`).
//!
//! `shop-system [--label NAME] [--bin-dir DIR] [K=V ...]`: the pairs configure every process.
//! When every process is ready it prints one JSON line (the gateway's URL, the database, the
//! log directory and the administrator), then answers each line of stdin with `ok` or
//! `error: <why>`: `stop NAME` (SIGTERM, SIGKILL after a grace period), `kill NAME` (SIGKILL),
//! `start NAME [K=V ...]` (start it again and wait until it is ready). At the end of stdin, on
//! SIGTERM or on SIGINT it stops everything, drops the database and exits 0.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde_json::json;
use shop_proof::system::{Options, Service, System};
use shop_settings::{DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

/// How long `stop` waits after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Args {
    label: String,
    bin_dir: PathBuf,
    env: Vec<(String, String)>,
}

fn pair(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => bail!("`{text}` is not K=V"),
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        label: "run".into(),
        bin_dir: "target/debug".into(),
        env: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--label" => parsed.label = args.next().context("--label needs a name")?,
            "--bin-dir" => parsed.bin_dir = args.next().context("--bin-dir needs a path")?.into(),
            _ => {
                let (key, value) = pair(&arg)?;
                parsed.env.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(parsed)
}

/// The label as part of a database name and a directory: `[a-z0-9_]`, short enough for
/// Postgres's 63 bytes.
fn identifier(label: &str) -> String {
    label
        .chars()
        .take(16)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The administrator the user service creates: as `Settings::bootstrap_admin` chooses it.
fn admin(env: &[(String, String)]) -> serde_json::Value {
    let given = |key: &str| env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    match (given("ADMIN_EMAIL"), given("ADMIN_PASSWORD")) {
        (Some(email), Some(password)) => json!({"email": email, "password": password}),
        _ => json!({"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD}),
    }
}

/// One line on stdout. Errors are ignored: a reader that has gone away has also closed our
/// stdin, which shuts the system down.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

async fn command(system: &mut System, line: &str) -> anyhow::Result<()> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(name)) = (words.next(), words.next()) else {
        bail!("expected `stop NAME`, `kill NAME` or `start NAME [K=V ...]`");
    };
    if !Service::ALL.iter().any(|s| s.name() == name) {
        bail!("no process named {name}");
    }
    let rest: Vec<&str> = words.collect();
    match verb {
        "stop" | "kill" if !rest.is_empty() => bail!("`{verb}` takes only a name"),
        "stop" => system.stop(name, GRACE).await,
        "kill" => system.kill(name),
        "start" => {
            let env = rest
                .into_iter()
                .map(pair)
                .collect::<anyhow::Result<Vec<_>>>()?;
            system.restart(name, &env).await?;
        }
        _ => bail!("unknown command `{verb}` (stop, kill or start)"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    // Installed before the start, so a signal during it ends the system cleanly afterwards.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let label = identifier(&args.label);
    let log_dir = std::env::current_dir()?
        .join("target/e2e/logs")
        .join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dir);
    let mut system = System::start(Options {
        bin_dir: args.bin_dir,
        log_dir: log_dir.clone(),
        label: format!("e2e_{label}"),
        env: args.env.clone(),
    })
    .await?;
    say(&json!({
        "gateway": system.gateway_url(),
        "database": system.database().name(),
        "logs": log_dir,
        "admin": admin(&args.env),
    })
    .to_string());

    // A thread, not tokio's stdin: the workspace's tokio has no `io-std`.
    let (sender, mut lines) = mpsc::channel::<String>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                match command(&mut system, &line).await {
                    Ok(()) => say("ok"),
                    Err(error) => say(&format!("error: {error:#}").replace('\n', " ")),
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    system.shutdown().await
}
