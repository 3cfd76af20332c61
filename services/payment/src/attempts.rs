//! Simulated payment attempts, run from Postgres: workers lease due payments (`FOR UPDATE SKIP
//! LOCKED`, a lease longer than an attempt), each attempt takes `PAYMENT_DURATION` and fails
//! with `PAYMENT_FAILED_PROBABILITY` percent; a failure schedules the next attempt at
//! `BACKOFF_DELAY × 2^n` with jitter, up to `BACKOFF_RETRIES` retries. Waiting is a due time in
//! the row, so it holds no worker and no stream entry. At most `PAYMENT_CONCURRENCY` attempts
//! run at once per instance.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use diesel_async::AsyncConnection;
use rand::Rng;
use shop_contracts::events::{AttemptFailed, PaymentEvent, PaymentOutcome, PaymentSettled, types};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    AppState, events,
    models::{NewAttempt, Payment, status},
    repo,
};

/// The simulated processor's behaviour.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub duration: Duration,
    pub failure_percent: u8,
    pub retries: u32,
    pub backoff: Duration,
    pub concurrency: usize,
    /// Identifies this instance's leases.
    pub worker: String,
}

const IDLE_POLL: Duration = Duration::from_millis(200);

/// Leases due payments and runs their attempts until cancelled. A finished attempt makes room
/// at once and a new payment wakes the loop ([`AppState::due`]); the poll is only for retries
/// coming due and for payments other instances created.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(state.simulation.concurrency));
    let running = TaskTracker::new();
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let leased = match lease(&state, 1 + slots.available_permits()).await {
            Ok(leased) => leased,
            Err(error) => {
                tracing::warn!(%error, "cannot lease due payments");
                Vec::new()
            }
        };
        if leased.is_empty() {
            drop(first);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = state.due.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let mut first = Some(first);
        for payment in leased {
            let permit = match first.take() {
                Some(permit) => permit,
                None => match slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let state = state.clone();
            running.spawn(async move {
                let span = tracing::info_span!("payment attempt", payment.id = %payment.id, order.id = %payment.order_id);
                shop_http::continue_trace(&span, payment.traceparent.as_deref());
                if let Err(error) = tracing::Instrument::instrument(attempt(&state, &payment), span).await {
                    tracing::warn!(%error, payment.id = %payment.id, "attempt not recorded; the lease will expire and it runs again");
                }
                drop(permit);
            });
        }
    }
    running.close();
    running.wait().await;
}

async fn lease(state: &AppState, limit: usize) -> Result<Vec<Payment>, shop_db::DbError> {
    let lease = chrono::Duration::from_std(state.simulation.duration + Duration::from_secs(30))
        .unwrap_or_default();
    let mut conn = shop_db::conn(&state.pool).await?;
    let until = Utc::now() + lease;
    let limit = i64::try_from(limit).unwrap_or(1);
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            repo::lease_due(conn, &state.simulation.worker, until, limit).await
        })
        .await?)
}

/// One simulated attempt, then its outcome, notifications and report in one transaction.
async fn attempt(state: &AppState, leased: &Payment) -> Result<(), shop_db::DbError> {
    let simulation = &state.simulation;
    tokio::time::sleep(simulation.duration).await;
    let failed = rand::rng().random_range(0..100) < u32::from(simulation.failure_percent);
    let mut conn = shop_db::conn(&state.pool).await?;
    conn.transaction::<_, shop_db::DbError, _>(async |conn| {
        let Some(payment) = repo::lock(conn, leased.id).await? else {
            return Ok(());
        };
        // Cancelled while the attempt ran (or already settled by a worker whose lease this
        // one outlived): the attempt counts for nothing.
        if payment.status != status::PROCESSING || payment.attempt_no != leased.attempt_no {
            return Ok(());
        }
        let attempt_no = payment.attempt_no + 1;
        let key = format!("{}:{attempt_no}", payment.id);
        let retry_left = u32::try_from(attempt_no).unwrap_or(u32::MAX) <= simulation.retries;
        let (outcome, new_status, next_retry_at, is_final, error) = if !failed {
            (PaymentOutcome::Succeeded, status::SUCCEEDED, None, true, None)
        } else if retry_left {
            let exponent = u32::try_from(attempt_no - 1).unwrap_or(0).min(20);
            let delay = simulation.backoff.saturating_mul(1 << exponent).mul_f64(rand::rng().random_range(0.8..1.2));
            let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            (PaymentOutcome::Failed, status::PROCESSING, Some(next), false, Some("card declined (simulated)".to_owned()))
        } else {
            (PaymentOutcome::Failed, status::FAILED, None, true, Some("card declined (simulated)".to_owned()))
        };
        repo::insert_attempt(
            conn,
            &NewAttempt {
                payment_id: payment.id,
                attempt_no,
                outcome: outcome.as_str(),
                idempotency_key: key,
                error: error.clone(),
                next_retry_at,
                is_final,
            },
        )
        .await?;
        let payment = repo::settle_attempt(conn, payment.id, attempt_no, new_status, next_retry_at).await?;
        let mut messages = Vec::new();
        match outcome {
            PaymentOutcome::Succeeded => {
                let data = PaymentSettled { attempt_no, amount_cents: payment.amount_cents, currency: payment.currency.clone() };
                messages.push(events::notification(conn, &payment, types::PAYMENT_SUCCEEDED, serde_json::to_value(data).unwrap_or_default()).await?);
            }
            _ => {
                let data = AttemptFailed { attempt_no, error: error.clone().unwrap_or_default(), next_retry_at };
                messages.push(events::notification(conn, &payment, types::PAYMENT_ATTEMPT_FAILED, serde_json::to_value(data).unwrap_or_default()).await?);
                if is_final {
                    let data = PaymentSettled { attempt_no, amount_cents: payment.amount_cents, currency: payment.currency.clone() };
                    messages.push(events::notification(conn, &payment, types::PAYMENT_FAILED, serde_json::to_value(data).unwrap_or_default()).await?);
                }
            }
        }
        let event = PaymentEvent { attempt_no, outcome, error, next_retry_at, is_final };
        messages.push(events::report(&payment, &event));
        shop_outbox::enqueue(conn, events::CHANNEL, &messages).await?;
        tracing::info!(payment.id = %payment.id, order.id = %payment.order_id, attempt_no, outcome = outcome.as_str(), "payment attempt");
        metrics::counter!("shop_payment_attempts_total", "outcome" => outcome.as_str()).increment(1);
        if is_final {
            metrics::counter!("shop_payments_settled_total", "outcome" => outcome.as_str()).increment(1);
        }
        Ok(())
    })
    .await?;
    state.relay.wake();
    Ok(())
}
