//! The order scenarios: the load driver, order-to-socket latency, the backlog drain.

use super::*;

/// The bench's users and products.
pub(super) struct Fixture {
    pub(super) shoppers: Vec<Shopper>,
    pub(super) products: Vec<Uuid>,
}

pub(super) async fn seed(api: &Api, config: &Config) -> anyhow::Result<Fixture> {
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

pub(super) fn random_lines(products: &[Uuid]) -> Vec<(Uuid, i64)> {
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
pub(super) struct OrderLoad {
    pub(super) latencies: Vec<Duration>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) elapsed: Duration,
}

/// Many users placing orders, `concurrency` at a time, until `stop` or `count` orders.
pub(super) async fn order_load(
    api: &Api,
    fixture: &Fixture,
    concurrency: usize,
    until: Until,
) -> OrderLoad {
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
pub(super) enum Until {
    Elapsed(Duration),
    Count(usize),
}

/// One shopper placing orders one after another, timing each from the request until its
/// `order.paid` arrives on their socket; stops when `stop` is set (or after `limit` orders).
pub(super) async fn paid_latency(
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

pub(super) async fn count_orders(system: &System, status: &str) -> anyhow::Result<i64> {
    let client = system.database().client().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM orders.orders WHERE status = $1",
            &[&status],
        )
        .await?;
    Ok(row.get(0))
}

pub(super) async fn await_quiet(system: &System, deadline: Duration) -> anyhow::Result<()> {
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

pub(super) fn measure_orders(load: &OrderLoad, key: &str, name: &str, tool: String) -> Measure {
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

pub(super) async fn latency_measure(
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

pub(super) async fn backlog_drain(
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
