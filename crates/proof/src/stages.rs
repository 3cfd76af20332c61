//! Where an order's time goes on its way from `POST /orders` to `order.paid` on the owner's
//! socket: each step's median, from the times the database and the streams recorded for the
//! orders a probe placed (a row's `now()` is its transaction's start; a stream entry's id is
//! the millisecond Redis appended it; both clocks are this machine's).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::system::System;

/// One probe order, as its shopper saw it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub order: Uuid,
    /// When the request was sent.
    pub sent: SystemTime,
    /// When `order.paid` arrived on the socket.
    pub received: SystemTime,
    /// The socket's messages about the order (each with its `notifications` id).
    pub messages: Vec<Value>,
}

impl Probe {
    /// How long the shopper waited.
    pub fn latency(&self) -> Duration {
        self.received.duration_since(self.sent).unwrap_or_default()
    }

    /// The millisecond the event of type `kind` was appended to `notifications`.
    fn appended(&self, kind: &str) -> Option<f64> {
        let message = self.messages.iter().find(|m| m["event"]["type"] == kind)?;
        let ms: f64 = message["id"].as_str()?.split('-').next()?.parse().ok()?;
        Some(ms)
    }
}

/// One step's median.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub step: String,
    /// `None` when no probe recorded both ends.
    pub p50_ms: Option<f64>,
}

fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((values[(values.len() - 1) / 2] * 10.0).round() / 10.0)
}

const TIMES: &str = "
SELECT o.id,
    (EXTRACT(EPOCH FROM o.created_at) * 1000)::float8,
    (SELECT (EXTRACT(EPOCH FROM min(h.at)) * 1000)::float8 FROM orders.order_status_history h
        WHERE h.order_id = o.id AND h.status = 'pending'),
    (SELECT (EXTRACT(EPOCH FROM p.created_at) * 1000)::float8 FROM payments.payments p
        WHERE p.order_id = o.id),
    (SELECT (EXTRACT(EPOCH FROM min(a.at)) * 1000)::float8 FROM payments.payment_attempts a
        JOIN payments.payments p ON p.id = a.payment_id
        WHERE p.order_id = o.id AND a.outcome = 'succeeded'),
    (SELECT (EXTRACT(EPOCH FROM min(h.at)) * 1000)::float8 FROM orders.order_status_history h
        WHERE h.order_id = o.id AND h.status = 'paid')
FROM orders.orders o WHERE o.id = ANY($1)";

/// Each step's median over the probes.
pub async fn of(system: &System, probes: &[Probe]) -> anyhow::Result<Vec<Stage>> {
    let ids: Vec<Uuid> = probes.iter().map(|p| p.order).collect();
    let client = system.database().client().await?;
    let rows = client.query(TIMES, &[&ids]).await?;
    const STEPS: [&str; 8] = [
        "request → order made (reserving)",
        "→ reserved, pending (the catalog's reservation)",
        "→ payment stored (order relay, stream, payment intake)",
        "→ attempt recorded (the attempt, its batch)",
        "→ payment.succeeded appended (payment relay)",
        "→ order paid (report, its batch at the order service)",
        "→ order.paid appended (order relay)",
        "→ order.paid on the socket (gateway)",
    ];
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    for row in rows {
        let id: Uuid = row.get(0);
        let Some(probe) = probes.iter().find(|p| p.order == id) else {
            continue;
        };
        let time = |i: usize| row.get::<_, Option<f64>>(i);
        let points = [
            Some(epoch_ms(probe.sent)),
            time(1),
            time(2),
            time(3),
            time(4),
            probe.appended("payment.succeeded"),
            time(5),
            probe.appended("order.paid"),
            Some(epoch_ms(probe.received)),
        ];
        // The succeeded event and the paid order both follow the recorded attempt.
        let from = [0, 1, 2, 3, 4, 4, 6, 7];
        for (step, start) in from.iter().enumerate() {
            let end = step + 1;
            if let (Some(a), Some(b)) = (points[*start], points[end]) {
                steps[step].push(b - a);
            }
        }
    }
    Ok(STEPS
        .iter()
        .zip(steps)
        .map(|(step, values)| Stage {
            step: (*step).to_owned(),
            p50_ms: median(values),
        })
        .collect())
}
