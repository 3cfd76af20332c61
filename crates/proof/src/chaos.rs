//! `make chaos`: the system as separate processes on its own redis-server and database, a
//! steady stream of orders from many shoppers, and one fault after another. After each fault
//! the run checks what DESIGN.md promises:
//!
//! - every accepted order (201) exists and reaches a final state within a bound;
//! - no order was charged twice, and every paid order exactly once;
//! - refunds never exceed what was captured, each is carried out (and announced) once, and
//!   order and payment agree on them;
//! - the stock invariant holds for every product, and held stock belongs to live orders;
//! - every process is running and ready again, and a new order still completes, with no hand
//!   but the fault's own restart.
//!
//! Shoppers behave as real clients: each order has an `Idempotency-Key`, and a request that
//! got no answer or a 5xx is repeated with the same key until it is answered (for up to
//! [`GIVE_UP_AFTER`]).

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::Rng;
use uuid::Uuid;

use crate::{
    api::{Api, Shopper},
    invariant,
    system::{Options, Service, System},
};

/// How long a shopper keeps repeating one order before giving up on it.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(40);
/// How long accepted orders get to reach a final state once the load stops.
pub const SETTLE_BOUND: Duration = Duration::from_secs(90);

/// What to run against.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the binaries are (a test build: the order service's fault hook is compiled in).
    pub bin_dir: PathBuf,
    /// Scratch space: process logs.
    pub work_dir: PathBuf,
    /// Shoppers ordering at once.
    pub shoppers: usize,
    /// Products they order from.
    pub products: usize,
    /// Initial stock of each product: enough that no fault's check meets a sold-out product
    /// (a run places several thousand orders of one to three units).
    pub stock: i64,
}

impl Config {
    /// The defaults for a checkout at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            bin_dir: root.join("target/debug"),
            work_dir: root.join("target/chaos"),
            shoppers: 16,
            products: 20,
            stock: 100_000,
        }
    }
}

/// Short timers so that recovery happens within the run.
fn system_env() -> Vec<(String, String)> {
    [
        ("RUST_LOG", "info"),
        ("THROTTLER_ENABLED", "false"),
        ("BCRYPT_COST", "4"),
        ("PAYMENT_DURATION", "100"),
        ("PAYMENT_FAILED_PROBABILITY", "20"),
        ("BACKOFF_RETRIES", "3"),
        ("BACKOFF_DELAY", "100"),
        ("PAYMENT_RECLAIM_IDLE", "3s"),
        ("WORKER_INTERVAL", "1s"),
        ("RESERVE_TIMEOUT", "5s"),
        ("IDEMPOTENCY_RESUME_AFTER", "2s"),
        ("PAYMENT_REQUEST_RESEND", "5s"),
        ("OUTBOX_POLL_INTERVAL", "200"),
        ("CIRCUIT_BREAKER_COOLDOWN", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// What the shoppers saw.
#[derive(Debug, Default)]
struct Ledger {
    accepted: Vec<Uuid>,
    /// Orders refused with a 4xx (out of stock, say), by status and code: nothing to check
    /// but the invariant.
    refused: BTreeMap<String, u64>,
    /// Orders still unanswered after [`GIVE_UP_AFTER`].
    abandoned: u64,
    /// Requests repeated after no answer or a 5xx.
    repeats: u64,
}

/// A steady stream of orders in the background.
struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

fn lines(products: &[Uuid]) -> Vec<(Uuid, i64)> {
    let mut rng = rand::rng();
    let first = rng.random_range(0..products.len());
    let mut lines = vec![(products[first], rng.random_range(1..=2))];
    if rng.random_bool(0.5) {
        let second = (first + rng.random_range(1..products.len())) % products.len();
        lines.push((products[second], 1));
    }
    lines
}

/// Places one order as a client would: repeat with the same key until answered.
async fn place(api: &Api, shopper: &Shopper, products: &[Uuid], ledger: &Mutex<Ledger>) {
    let lines = lines(products);
    let key = Uuid::new_v4().to_string();
    let started = Instant::now();
    loop {
        match api.place_order(shopper, &lines, &key).await {
            Ok(response) if response.status() == 201 => {
                let order: Option<Uuid> = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|o| o["id"].as_str().and_then(|id| id.parse().ok()));
                if let (Some(order), Ok(mut ledger)) = (order, ledger.lock()) {
                    ledger.accepted.push(order);
                }
                return;
            }
            Ok(response) if response.status().is_client_error() && response.status() != 429 => {
                let status = response.status().as_u16();
                let problem: serde_json::Value = response.json().await.unwrap_or_default();
                let code = problem["code"].as_str().unwrap_or("?").to_owned();
                // "Still being placed by an earlier request": ask again, as a client should.
                if code != "idempotency-in-progress" {
                    if let Ok(mut ledger) = ledger.lock() {
                        *ledger
                            .refused
                            .entry(format!("{status} {code}"))
                            .or_default() += 1;
                    }
                    return;
                }
            }
            _ => {}
        }
        if started.elapsed() > GIVE_UP_AFTER {
            if let Ok(mut ledger) = ledger.lock() {
                ledger.abandoned += 1;
            }
            return;
        }
        if let Ok(mut ledger) = ledger.lock() {
            ledger.repeats += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Load {
    fn start(api: &Api, shoppers: &[Shopper], products: &[Uuid]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let products: Arc<Vec<Uuid>> = Arc::new(products.to_vec());
        let workers = shoppers
            .iter()
            .cloned()
            .map(|shopper| {
                let (api, stop, ledger, products) =
                    (api.clone(), stop.clone(), ledger.clone(), products.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        place(&api, &shopper, &products, &ledger).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ledger,
            workers,
        }
    }

    /// Stops placing new orders; waits for the ones in progress to be answered or abandoned.
    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.await;
        }
        Arc::try_unwrap(self.ledger)
            .ok()
            .and_then(|ledger| ledger.into_inner().ok())
            .unwrap_or_default()
    }
}

/// One fault's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The fault.
    pub fault: &'static str,
    /// What went wrong; empty when every check passed.
    pub failures: Vec<String>,
    /// The figures, in words.
    pub summary: String,
}

/// The faults, in order.
const FAULTS: [&str; 7] = [
    "payment service killed (-9) mid-drain, then restarted",
    "two payment instances, one killed (-9)",
    "order service crashed between reservation and commit",
    "redis-server restarted empty",
    "database connections terminated (own database only)",
    "catalog service down for 10 s during a burst",
    "payment service killed (-9) during a stream of refunds, then restarted",
];

/// Refunds of paid orders as an administrator asks for them: a third of each order, then the
/// rest, each with an `Idempotency-Key` and repeated with it after no answer or a 5xx. Returns
/// how many were accepted and how many refused.
async fn refund_stream(api: Api, admin: String, orders: Vec<(Uuid, i64)>) -> (u64, u64) {
    let (mut accepted, mut refused) = (0, 0);
    for (order, total) in orders {
        let third = (total / 3).max(1);
        for (n, amount) in [(1, third), (2, total - third)] {
            if amount < 1 {
                continue;
            }
            let key = format!("{order}-{n}");
            let started = Instant::now();
            loop {
                let answer = api
                    .http()
                    .post(api.url(&format!("/orders/{order}/refunds")))
                    .header("authorization", format!("Bearer {admin}"))
                    .header("idempotency-key", &key)
                    .json(&serde_json::json!({"amountCents": amount, "reason": "chaos"}))
                    .send()
                    .await;
                match answer.map(|r| r.status()) {
                    Ok(status) if status.is_success() => {
                        accepted += 1;
                        break;
                    }
                    Ok(status) if status.is_client_error() && status.as_u16() != 429 => {
                        refused += 1;
                        break;
                    }
                    _ if started.elapsed() > GIVE_UP_AFTER => break,
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (accepted, refused)
}

async fn inject(
    system: &mut System,
    api: &Api,
    admin: &str,
    fault: usize,
) -> anyhow::Result<String> {
    match fault {
        0 => {
            // A backlog first: requests pile up while payments are slow to come back.
            system.kill("payment");
            tokio::time::sleep(Duration::from_secs(3)).await;
            system.restart("payment", &[]).await?;
            Ok("killed, 3 s down, restarted".into())
        }
        1 => {
            system
                .add(
                    "payment-b",
                    Service::Payment,
                    &[("PAYMENT_CONSUMER", "chaos-payment-b")],
                )
                .await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            system.kill("payment");
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok("second instance added, the first killed; the second carries on alone".into())
        }
        2 => {
            let var = "ORDER_TEST_ABORT_AFTER_RESERVE";
            // Not waiting for readiness: under load it may crash before it is asked.
            system.start_with("order", &[(var, "1")])?;
            let started = Instant::now();
            let status = loop {
                if let Some(status) = system.exited("order") {
                    break status;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("the armed order service did not crash (is the test-hooks feature on?)");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if std::os::unix::process::ExitStatusExt::signal(&status) != Some(6) {
                bail!(
                    "the armed order service ended with {status}, not the hook's abort; see {}",
                    system.log_path("order").display()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            system.restart("order", &[]).await?;
            Ok(format!("aborted after reserving ({status}), restarted"))
        }
        3 => {
            system.redis().restart_empty().await;
            Ok("killed and started again with no data".into())
        }
        4 => {
            let terminated = system.database().terminate_connections().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again = system.database().terminate_connections().await?;
            Ok(format!(
                "{terminated} connections terminated, then {again} more 2 s later"
            ))
        }
        5 => {
            system.kill("catalog");
            tokio::time::sleep(Duration::from_secs(10)).await;
            system.restart("catalog", &[]).await?;
            Ok("killed, 10 s down under load, restarted".into())
        }
        6 => {
            let client = system.database().client().await?;
            let orders: Vec<(Uuid, i64)> = client
                .query(
                    "SELECT id, total_cents FROM orders.orders WHERE status = 'paid'
                     ORDER BY random() LIMIT 40",
                    &[],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            let stream = tokio::spawn(refund_stream(api.clone(), admin.to_owned(), orders));
            tokio::time::sleep(Duration::from_secs(1)).await;
            system.kill("payment");
            tokio::time::sleep(Duration::from_secs(3)).await;
            system.restart("payment", &[]).await?;
            let (accepted, refused) = stream.await?;
            if accepted == 0 {
                bail!("no refund was accepted: nothing was tested");
            }
            Ok(format!(
                "{accepted} refunds accepted ({refused} refused) around a kill of the payment \
                 service, 3 s down, restarted"
            ))
        }
        _ => bail!("no fault {fault}"),
    }
}

/// Puts the system back to its usual shape after a fault that changed it.
async fn tidy(system: &mut System, fault: usize) -> anyhow::Result<()> {
    if fault == 1 {
        system.restart("payment", &[]).await?;
        system.stop("payment-b", Duration::from_secs(10)).await;
    }
    Ok(())
}

async fn await_final(system: &System, accepted: &[Uuid]) -> anyhow::Result<Vec<String>> {
    let client = system.database().client().await?;
    let started = Instant::now();
    loop {
        let rows = client
            .query(
                "SELECT id, status FROM orders.orders
                 WHERE status IN ('reserving', 'pending') OR id = ANY($1)",
                &[&accepted],
            )
            .await?;
        let found: HashSet<Uuid> = rows.iter().map(|r| r.get(0)).collect();
        let mut problems: Vec<String> = accepted
            .iter()
            .filter(|id| !found.contains(id))
            .map(|id| format!("accepted order {id} is missing"))
            .collect();
        problems.extend(rows.iter().filter_map(|row| {
            let (id, status): (Uuid, String) = (row.get(0), row.get(1));
            matches!(status.as_str(), "reserving" | "pending")
                .then(|| format!("order {id} still {status} after {SETTLE_BOUND:?}"))
        }));
        // Every accepted refund reaches a final state in both services.
        let open: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM orders.refunds WHERE status = 'pending')
                      + (SELECT count(*) FROM payments.refunds WHERE status = 'pending')",
                &[],
            )
            .await?
            .get(0);
        if open > 0 {
            problems.push(format!(
                "{open} refunds still pending after {SETTLE_BOUND:?}"
            ));
        }
        if problems.is_empty() || started.elapsed() > SETTLE_BOUND {
            return Ok(problems);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn invariants(system: &System) -> anyhow::Result<Vec<String>> {
    let client = system.database().client().await?;
    let mut problems = Vec::new();
    // The outboxes drain once the orders are final; the holds check wants a quiet system.
    let started = Instant::now();
    loop {
        let unsent: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM orders.outbox WHERE sent_at IS NULL)
                      + (SELECT count(*) FROM payments.outbox WHERE sent_at IS NULL)",
                &[],
            )
            .await?
            .get(0);
        if unsent == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            problems.push(format!("{unsent} outbox rows unsent after 30 s"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (what, found) in [
        (
            "stock invariant",
            invariant::ledger_violations(&client).await?,
        ),
        ("holds", invariant::hold_violations(&client).await?),
        ("payments", invariant::payment_violations(&client).await?),
        (
            "refunds",
            invariant::refund_violations(&client, true).await?,
        ),
    ] {
        problems.extend(found.into_iter().take(5).map(|v| format!("{what}: {v}")));
    }
    Ok(problems)
}

/// A fresh order after the fault completes: the system works without a hand.
async fn canary(api: &Api, shopper: &Shopper, products: &[Uuid]) -> anyhow::Result<String> {
    let ledger = Mutex::new(Ledger::default());
    place(api, shopper, products, &ledger).await;
    let ledger = ledger.into_inner().unwrap_or_default();
    let Some(order) = ledger.accepted.first() else {
        bail!("a new order was not accepted: {:?}", ledger.refused);
    };
    let started = Instant::now();
    loop {
        let response = api
            .http()
            .get(api.url(&format!("/orders/{order}")))
            .header("authorization", shopper.bearer())
            .send()
            .await?;
        let body: serde_json::Value = response.json().await?;
        let status = body["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "paid" | "failed") {
            return Ok(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("a new order stayed {status} for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_counts(system: &System, accepted: &[Uuid]) -> anyhow::Result<String> {
    let client = system.database().client().await?;
    let rows = client
        .query(
            "SELECT status, count(*) FROM orders.orders WHERE id = ANY($1)
             GROUP BY status ORDER BY status",
            &[&accepted],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{} {}", r.get::<_, i64>(1), r.get::<_, String>(0)))
        .collect::<Vec<_>>()
        .join(", "))
}

/// What became of the refunds, and how many a restarted instance finished after the lease of
/// the killed one ran out.
async fn refund_counts(system: &System) -> anyhow::Result<String> {
    let client = system.database().client().await?;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE completed_at - created_at > interval '20 seconds')
             FROM payments.refunds",
            &[],
        )
        .await?;
    let (succeeded, failed, taken_over): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(format!(
        "refunds: {succeeded} succeeded, {failed} failed, {taken_over} finished after the killed \
         instance's lease ran out"
    ))
}

async fn run_fault(
    system: &mut System,
    api: &Api,
    admin: &str,
    shoppers: &[Shopper],
    products: &[Uuid],
    fault: usize,
) -> anyhow::Result<Outcome> {
    let survivors: Vec<(String, u32)> = system.pids();
    let load = Load::start(api, &shoppers[1..], products);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let injected = inject(system, api, admin, fault).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ledger = load.finish().await;
    let injected = injected?;
    let started = Instant::now();
    let mut failures = await_final(system, &ledger.accepted).await?;
    let settled = started.elapsed();
    failures.extend(invariants(system).await?);
    // Processes the fault did not touch must still be the same processes, and all ready.
    let now = system.pids();
    let touched = match fault {
        0 | 1 | 6 => &["payment", "payment-b"][..],
        2 => &["order"][..],
        5 => &["catalog"][..],
        _ => &[][..],
    };
    for (name, pid) in survivors {
        if touched.contains(&name.as_str()) {
            continue;
        }
        if !now.contains(&(name.clone(), pid)) {
            failures.push(format!("{name} (pid {pid}) died and was not supposed to"));
        }
    }
    failures.extend(
        system
            .all_ready()
            .await
            .into_iter()
            .map(|name| format!("{name} is not ready")),
    );
    let canary = match canary(api, &shoppers[0], products).await {
        Ok(status) => status,
        Err(error) => {
            failures.push(format!("canary: {error}"));
            "none".into()
        }
    };
    if ledger.abandoned > 0 {
        failures.push(format!(
            "{} orders never got an answer within {GIVE_UP_AFTER:?}",
            ledger.abandoned
        ));
    }
    let mut counts = status_counts(system, &ledger.accepted).await?;
    if fault == 6 {
        counts.push_str(&format!("; {}", refund_counts(system).await?));
    }
    tidy(system, fault).await?;
    Ok(Outcome {
        fault: FAULTS[fault],
        failures,
        summary: format!(
            "{injected}; {} accepted ({counts}), refused {}, {} repeats; \
             final within {:.1} s; new order {canary}",
            ledger.accepted.len(),
            if ledger.refused.is_empty() {
                "none".to_owned()
            } else {
                format!("{:?}", ledger.refused)
            },
            ledger.repeats,
            settled.as_secs_f64()
        ),
    })
}

/// Starts a system, runs every fault, stops the system; one outcome per fault.
pub async fn run(config: &Config, report: impl Fn(&Outcome)) -> anyhow::Result<Vec<Outcome>> {
    let log_dir = config.work_dir.join("logs");
    let _ = std::fs::remove_dir_all(&log_dir);
    let mut system = System::start(Options {
        bin_dir: config.bin_dir.clone(),
        log_dir,
        label: "chaos".into(),
        env: system_env(),
    })
    .await?;
    let outcome = async {
        let api = Api::new(&system.gateway_url(), 64)?;
        let admin = api.admin().await?;
        let mut products = Vec::new();
        for i in 0..config.products {
            products.push(
                api.create_product(
                    &admin,
                    &format!("Chaos product {i:02}"),
                    500 + i as i64,
                    config.stock,
                )
                .await?,
            );
        }
        let mut shoppers = Vec::new();
        for _ in 0..=config.shoppers {
            shoppers.push(api.new_shopper().await.context("registering shoppers")?);
        }
        let mut outcomes = Vec::new();
        for fault in 0..FAULTS.len() {
            let outcome = run_fault(&mut system, &api, &admin, &shoppers, &products, fault).await?;
            report(&outcome);
            outcomes.push(outcome);
        }
        Ok::<_, anyhow::Error>(outcomes)
    }
    .await;
    let stopped = system.shutdown().await;
    let outcomes = outcome?;
    stopped?;
    Ok(outcomes)
}
