//! What a scenario cost the database, counted rather than timed: commits of the run's own
//! database (`pg_stat_database.xact_commit`), the statements each service says it sent
//! (`shop_db_statements_total` on its `/metrics`), and waits on database-object locks (the
//! lock a `pg_notify` holds from pre-commit until its WAL is flushed) sampled from `pg_locks`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::system::System;

/// How long Postgres may keep a backend's statistics before they reach `pg_stat_database`
/// (an idle backend flushes after at most 10 s).
pub const STATS_LAG: Duration = Duration::from_secs(11);

/// Totals at one moment.
#[derive(Debug, Clone, Default)]
pub struct Spent {
    at: Option<Instant>,
    commits: f64,
    orders: f64,
    /// Statements sent, by service.
    statements: BTreeMap<String, f64>,
}

/// Reads the totals now. Commits lag by up to [`STATS_LAG`]: take a snapshot only once the
/// system has been quiet that long (see [`settled`]).
pub async fn snapshot(system: &System) -> anyhow::Result<Spent> {
    let client = system.database().client().await?;
    let row = client
        .query_one(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                    (SELECT count(*) FROM orders.orders)",
            &[],
        )
        .await?;
    let commits: i64 = row.get(0);
    let orders: i64 = row.get(1);
    let mut statements = BTreeMap::new();
    for name in system.names() {
        for (service, value) in counter_by_service(&system.metrics(&name).await, STATEMENTS) {
            *statements.entry(service).or_insert(0.0) += value;
        }
    }
    Ok(Spent {
        at: Some(Instant::now()),
        commits: commits as f64,
        orders: orders as f64,
        statements,
    })
}

/// Waits [`STATS_LAG`] for the statistics of a quiet system to arrive, then reads them.
pub async fn settled(system: &System) -> anyhow::Result<Spent> {
    tokio::time::sleep(STATS_LAG).await;
    snapshot(system).await
}

const STATEMENTS: &str = "shop_db_statements_total";

/// The values of one counter by its `service` label, from Prometheus text.
fn counter_by_service(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix("{")?;
            let (labels, value) = rest.split_once("} ")?;
            let service = labels
                .split(',')
                .find_map(|l| l.strip_prefix("service=\""))?
                .trim_end_matches('"');
            Some((service.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// What the system does on its own per second, with nobody using it (polls, sweeps,
/// samplers): subtracted from a scenario's totals to get what its orders cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Background {
    /// Commits per second.
    pub commits_per_second: f64,
    /// Statements per second, all services.
    pub statements_per_second: f64,
}

impl Background {
    /// The rate between two snapshots of a quiet system.
    pub fn between(before: &Spent, after: &Spent) -> Self {
        let seconds = elapsed(before, after).max(f64::EPSILON);
        Self {
            commits_per_second: (after.commits - before.commits) / seconds,
            statements_per_second: (total(&after.statements) - total(&before.statements)) / seconds,
        }
    }
}

fn elapsed(before: &Spent, after: &Spent) -> f64 {
    match (before.at, after.at) {
        (Some(before), Some(after)) => after.duration_since(before).as_secs_f64(),
        _ => 0.0,
    }
}

fn total(statements: &BTreeMap<String, f64>) -> f64 {
    statements.values().sum()
}

/// What the orders of one scenario cost, each placed and paid.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    /// Orders made between the two snapshots.
    pub orders: u64,
    /// Commits per order, the background's share taken out.
    pub commits_per_order: f64,
    /// Commits per order as counted.
    pub commits_per_order_raw: f64,
    /// Statements per order, all services, the background's share taken out.
    pub statements_per_order: Option<f64>,
    /// Statements per order by service, as counted.
    pub statements_by_service: BTreeMap<String, f64>,
    /// Waits on database-object locks seen while the orders were placed.
    pub object_lock_waits: Option<LockWaits>,
}

impl Cost {
    /// The difference of two snapshots around a scenario, per order made meanwhile.
    pub fn between(before: &Spent, after: &Spent, background: &Background) -> Self {
        let orders = (after.orders - before.orders).max(0.0);
        let per = |value: f64| if orders > 0.0 { value / orders } else { 0.0 };
        let seconds = elapsed(before, after);
        let commits = after.commits - before.commits;
        let statements: f64 = after
            .statements
            .iter()
            .map(|(service, value)| counted(before, service, *value))
            .sum();
        let statements_by_service = after
            .statements
            .iter()
            .map(|(service, value)| {
                (
                    service.clone(),
                    round(per(counted(before, service, *value))),
                )
            })
            .collect();
        Self {
            orders: orders as u64,
            commits_per_order: round(per(commits - background.commits_per_second * seconds)),
            commits_per_order_raw: round(per(commits)),
            // Binaries that count nothing (older builds) leave this empty.
            statements_per_order: (!after.statements.is_empty())
                .then(|| round(per(statements - background.statements_per_second * seconds))),
            statements_by_service,
            object_lock_waits: None,
        }
    }
}

/// What a service counted since `before`. A counter lower than before means the process was
/// started again meanwhile (the backlog drain restarts the payment service): then all it counted
/// since its start.
fn counted(before: &Spent, service: &str, value: f64) -> f64 {
    let earlier = before.statements.get(service).copied().unwrap_or(0.0);
    if value < earlier {
        value
    } else {
        value - earlier
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Waits on database-object locks, sampled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockWaits {
    /// Samples taken.
    pub samples: u64,
    /// Samples in which some backend waited for such a lock.
    pub samples_with_waiters: u64,
    /// The most backends seen waiting at once.
    pub peak_waiters: i64,
}

/// Samples `pg_locks` every 10 ms on a connection of its own until stopped.
#[derive(Debug)]
pub struct LockSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<LockWaits>>,
}

impl LockSampler {
    /// Starts sampling.
    pub async fn start(system: &System) -> anyhow::Result<Self> {
        let client = system.database().client().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let statement = client
                .prepare("SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND NOT granted")
                .await?;
            let mut waits = LockWaits::default();
            while !stopped.load(Ordering::SeqCst) {
                let waiting: i64 = client.query_one(&statement, &[]).await?.get(0);
                waits.samples += 1;
                if waiting > 0 {
                    waits.samples_with_waiters += 1;
                    waits.peak_waiters = waits.peak_waiters.max(waiting);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(waits)
        });
        Ok(Self { stop, task })
    }

    /// Stops sampling and returns what was seen.
    pub async fn finish(self) -> anyhow::Result<LockWaits> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_service() {
        let text = "# TYPE shop_db_statements_total counter\n\
                    shop_db_statements_total{service=\"order\"} 120\n\
                    shop_db_statements_total{service=\"catalog\"} 30\n\
                    shop_db_statements_prepared_total{service=\"order\"} 9\n";
        assert_eq!(
            counter_by_service(text, STATEMENTS),
            vec![("order".to_owned(), 120.0), ("catalog".to_owned(), 30.0)]
        );
    }

    #[test]
    fn a_cost_is_per_order_with_the_background_taken_out() {
        let start = Instant::now();
        let before = Spent {
            at: Some(start),
            commits: 100.0,
            orders: 10.0,
            statements: [("order".to_owned(), 1000.0)].into(),
        };
        let after = Spent {
            at: Some(start + Duration::from_secs(10)),
            commits: 220.0,
            orders: 30.0,
            statements: [("order".to_owned(), 2000.0), ("payment".to_owned(), 500.0)].into(),
        };
        let background = Background {
            commits_per_second: 2.0,
            statements_per_second: 5.0,
        };
        let cost = Cost::between(&before, &after, &background);
        assert_eq!(cost.orders, 20);
        assert_eq!(cost.commits_per_order_raw, 6.0);
        assert_eq!(cost.commits_per_order, 5.0);
        assert_eq!(cost.statements_per_order, Some(72.5));
        assert_eq!(cost.statements_by_service["payment"], 25.0);

        // The order service started again in between: its counter began at zero.
        let restarted = Spent {
            statements: [("order".to_owned(), 400.0), ("payment".to_owned(), 500.0)].into(),
            ..after
        };
        let cost = Cost::between(&before, &restarted, &Background::default());
        assert_eq!(cost.statements_by_service["order"], 20.0);
    }
}
