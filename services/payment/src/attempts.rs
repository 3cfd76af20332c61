//! Simulated payment attempts, run from Postgres: a payment is leased to one instance (a lease
//! longer than an attempt; `FOR UPDATE SKIP LOCKED` among instances), each attempt takes
//! `PAYMENT_DURATION` and fails with `PAYMENT_FAILED_PROBABILITY` percent; a failure schedules
//! the next attempt at `BACKOFF_DELAY × 2^n` with jitter, up to `BACKOFF_RETRIES` retries.
//! Waiting is a due time in the row, so it holds no worker and no stream entry. At most
//! `PAYMENT_CONCURRENCY` attempts run at once per instance.
//!
//! A new payment is leased as it is inserted (see the consumer); the lease loop takes the rest:
//! retries coming due, payments left for want of a free slot, leases that expired. Finished
//! attempts are recorded by one task, which commits whatever has finished meanwhile in one
//! transaction: the outcomes, their notifications and their reports.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rand::Rng;
use shop_contracts::{
    PaymentStatus,
    events::{AttemptFailed, Event, PaymentEvent, PaymentOutcome, PaymentSettled},
};
use shop_db::DbError;
use shop_outbox::{NewMessage, Written};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    AppState, events,
    models::{NewAttempt, Payment},
    repo::{self, Settlement},
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

impl Simulation {
    /// How long a lease lasts: longer than an attempt, so a live worker never loses one.
    pub fn lease(&self) -> Duration {
        self.duration + Duration::from_secs(30)
    }
}

/// The poll for work nobody announced: other instances' payments, expired leases.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Most outcomes committed in one transaction.
const COMPLETIONS_PER_BATCH: usize = 256;

/// This instance's attempts: the free slots, the lease loop's wake-up, and the queue of
/// finished attempts waiting to be recorded.
#[derive(Debug, Clone)]
pub struct Attempts {
    slots: Arc<Semaphore>,
    due: Arc<Notify>,
    finished: mpsc::UnboundedSender<Finished>,
    running: TaskTracker,
}

/// An attempt that ran, waiting for its outcome to be committed.
#[derive(Debug)]
pub struct Finished {
    payment: Payment,
    failed: bool,
}

impl Attempts {
    /// The attempts of an instance running `concurrency` at once; the receiver goes to
    /// [`record_finished`].
    pub fn new(concurrency: usize) -> (Self, mpsc::UnboundedReceiver<Finished>) {
        let (finished, receiver) = mpsc::unbounded_channel();
        (
            Self {
                slots: Arc::new(Semaphore::new(concurrency)),
                due: Arc::default(),
                finished,
                running: TaskTracker::new(),
            },
            receiver,
        )
    }

    /// Up to `wanted` free slots, without waiting.
    pub fn free_slots(&self, wanted: usize) -> Vec<OwnedSemaphorePermit> {
        std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok())
            .take(wanted)
            .collect()
    }

    /// Tells the lease loop that payments are waiting for a slot.
    pub fn wake(&self) {
        self.due.notify_one();
    }

    /// Runs the attempt of a payment leased to this instance, in `slot`.
    pub fn start(&self, simulation: &Simulation, payment: Payment, slot: OwnedSemaphorePermit) {
        let duration = simulation.duration;
        let failure_percent = simulation.failure_percent;
        let finished = self.finished.clone();
        self.running.spawn(async move {
            let span = tracing::info_span!(
                "payment attempt",
                payment.id = %payment.id,
                order.id = %payment.order_id
            );
            shop_http::continue_trace(&span, payment.traceparent.as_deref());
            tracing::Instrument::instrument(
                async move {
                    tokio::time::sleep(duration).await;
                    let failed =
                        simulated_failure(rand::rng().random_range(0..100), failure_percent);
                    // The simulated processor is done with it: the slot is free for the next
                    // attempt while this outcome waits for its batch (still leased, so nobody
                    // else runs it meanwhile).
                    drop(slot);
                    // Only gone when the instance stops: the lease expires and it runs again.
                    let _ = finished.send(Finished { payment, failed });
                },
                span,
            )
            .await;
        });
    }
}

/// Whether a simulated attempt fails, for a `roll` drawn uniformly from `0..100`: in
/// `failure_percent` of the rolls.
fn simulated_failure(roll: u32, failure_percent: u8) -> bool {
    roll < u32::from(failure_percent)
}

/// Leases due payments and starts their attempts until cancelled. A finished attempt frees a
/// slot, and a payment left waiting for one wakes the loop ([`Attempts::wake`]); the poll is
/// for retries coming due and for payments other instances left.
pub async fn run(state: AppState, cancel: CancellationToken) {
    export_outcomes();
    let attempts = &state.attempts;
    loop {
        let mut slots = attempts.free_slots(state.simulation.concurrency);
        if slots.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                slot = attempts.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slots.push(slot),
                    Err(_) => return,
                },
            }
        }
        let wanted = slots.len();
        let leased = match lease(&state, wanted).await {
            Ok(leased) => leased,
            Err(error) => {
                tracing::warn!(%error, "cannot lease due payments");
                Vec::new()
            }
        };
        let full = leased.len() == wanted;
        for (payment, slot) in leased.into_iter().zip(slots) {
            attempts.start(&state.simulation, payment, slot);
        }
        if full {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = attempts.due.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

async fn lease(state: &AppState, limit: usize) -> Result<Vec<Payment>, DbError> {
    let mut conn = shop_db::conn(&state.pool).await?;
    let simulation = &state.simulation;
    Ok(repo::lease_due(&mut conn, &simulation.worker, simulation.lease(), limit).await?)
}

/// Records finished attempts until the instance stops, each batch in one transaction: every
/// attempt that finished while the last batch was being committed goes into the next. On stop
/// it waits for the attempts still running and records them too.
pub async fn record_finished(
    state: AppState,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            first = finished.recv() => first,
        };
        let Some(first) = first else { return };
        let batch = take_queued(first, &mut finished, COMPLETIONS_PER_BATCH);
        record_batch(&state, batch).await;
    }
    state.attempts.running.close();
    state.attempts.running.wait().await;
    let mut rest = Vec::new();
    while let Ok(next) = finished.try_recv() {
        rest.push(next);
    }
    if !rest.is_empty() {
        record_batch(&state, rest).await;
    }
}

/// `first` and what is queued behind it, up to `max` in all, without waiting.
fn take_queued<T>(first: T, queue: &mut mpsc::UnboundedReceiver<T>, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

async fn record_batch(state: &AppState, batch: Vec<Finished>) {
    let outcomes: Vec<Outcome> = batch
        .iter()
        .map(|f| Outcome::decide(&state.simulation, &f.payment, f.failed))
        .collect();
    match record(state, &outcomes).await {
        Ok(written) => state.relay.wake(written),
        // A statement of the batch failed on its data: record each alone, so one bad outcome
        // holds up no other.
        Err(DbError::Query(error)) if outcomes.len() > 1 => {
            tracing::warn!(
                %error,
                attempts = outcomes.len(),
                "attempt batch not recorded; one at a time"
            );
            for outcome in &outcomes {
                match record(state, std::slice::from_ref(outcome)).await {
                    Ok(written) => state.relay.wake(written),
                    Err(error) => not_recorded(outcome, &error),
                }
            }
        }
        Err(error) => outcomes.iter().for_each(|o| not_recorded(o, &error)),
    }
}

fn not_recorded(outcome: &Outcome, error: &DbError) {
    tracing::warn!(
        %error,
        payment.id = %outcome.payment.id,
        "attempt not recorded; the lease will expire and it runs again"
    );
}

/// What an attempt came to, decided before it is recorded.
#[derive(Debug, Clone)]
struct Outcome {
    payment: Payment,
    attempt_no: i32,
    outcome: PaymentOutcome,
    status: PaymentStatus,
    next_retry_at: Option<chrono::DateTime<Utc>>,
    is_final: bool,
    error: Option<String>,
}

impl Outcome {
    fn decide(simulation: &Simulation, leased: &Payment, failed: bool) -> Self {
        let attempt_no = leased.attempt_no + 1;
        let retry_left = u32::try_from(attempt_no).unwrap_or(u32::MAX) <= simulation.retries;
        let declined = || Some("card declined (simulated)".to_owned());
        let (outcome, status, next_retry_at, is_final, error) = if !failed {
            (
                PaymentOutcome::Succeeded,
                PaymentStatus::Succeeded,
                None,
                true,
                None,
            )
        } else if retry_left {
            let exponent = u32::try_from(attempt_no - 1).unwrap_or(0).min(20);
            let delay = simulation
                .backoff
                .saturating_mul(1 << exponent)
                .mul_f64(rand::rng().random_range(0.8..1.2));
            let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            (
                PaymentOutcome::Failed,
                PaymentStatus::Processing,
                Some(next),
                false,
                declined(),
            )
        } else {
            (
                PaymentOutcome::Failed,
                PaymentStatus::Failed,
                None,
                true,
                declined(),
            )
        };
        Self {
            payment: leased.clone(),
            attempt_no,
            outcome,
            status,
            next_retry_at,
            is_final,
            error,
        }
    }

    /// The notifications it publishes: a failed attempt, then (the last) the payment failed;
    /// or the payment succeeded.
    fn notifications(&self) -> i32 {
        match self.outcome {
            PaymentOutcome::Failed if self.is_final => 2,
            _ => 1,
        }
    }

    fn messages(&self, payment: &Payment) -> serde_json::Result<Vec<NewMessage>> {
        let mut seq = payment.event_seq - self.notifications();
        let mut next = || {
            seq += 1;
            seq
        };
        let settled = || PaymentSettled {
            attempt_no: self.attempt_no,
            amount_cents: payment.amount_cents,
            currency: payment.currency.clone(),
            refund_id: None,
        };
        let mut messages = Vec::with_capacity(3);
        if self.outcome == PaymentOutcome::Succeeded {
            messages.push(events::notification(
                payment,
                next(),
                Event::PaymentSucceeded(settled()),
            )?);
        } else {
            let failed = AttemptFailed {
                attempt_no: self.attempt_no,
                error: self.error.clone().unwrap_or_default(),
                next_retry_at: self.next_retry_at,
            };
            messages.push(events::notification(
                payment,
                next(),
                Event::PaymentAttemptFailed(failed),
            )?);
            if self.is_final {
                messages.push(events::notification(
                    payment,
                    next(),
                    Event::PaymentFailed(settled()),
                )?);
            }
        }
        let event = PaymentEvent {
            attempt_no: self.attempt_no,
            outcome: self.outcome,
            error: self.error.clone(),
            next_retry_at: self.next_retry_at,
            is_final: self.is_final,
        };
        messages.push(events::report(payment, &event)?);
        Ok(messages)
    }
}

/// Records outcomes in one transaction: each on its payment (guarded), its attempt row, its
/// notifications and its report. Outcomes whose payment moved on meanwhile (cancelled, or
/// settled by a worker whose lease this one outlived) count for nothing.
async fn record(state: &AppState, outcomes: &[Outcome]) -> Result<Written, DbError> {
    let settlements: Vec<Settlement> = outcomes
        .iter()
        .map(|o| Settlement {
            payment_id: o.payment.id,
            attempt_no: o.attempt_no,
            status: o.status,
            next_attempt_at: o.next_retry_at,
            events: o.notifications(),
        })
        .collect();
    let mut conn = shop_db::conn(&state.pool).await?;
    let (written, retries) = conn
        .transaction::<_, DbError, _>(async |conn| {
            let settled = repo::settle_attempts(conn, &settlements).await?;
            let mut attempts = Vec::with_capacity(settled.len());
            let mut messages = Vec::with_capacity(settled.len() * 2);
            let mut retries = Vec::new();
            for payment in &settled {
                let Some(outcome) = outcomes.iter().find(|o| o.payment.id == payment.id) else {
                    continue;
                };
                attempts.push(NewAttempt {
                    payment_id: payment.id,
                    attempt_no: outcome.attempt_no,
                    outcome: outcome.outcome,
                    idempotency_key: format!("{}:{}", payment.id, outcome.attempt_no),
                    error: outcome.error.clone(),
                    next_retry_at: outcome.next_retry_at,
                    is_final: outcome.is_final,
                });
                messages.extend(outcome.messages(payment).map_err(events::unserialisable)?);
                retries.extend(outcome.next_retry_at);
                log(payment, outcome);
            }
            if settled.is_empty() {
                return Ok((Written::NOTHING, retries));
            }
            let conn: &AsyncPgConnection = conn;
            // Independent of each other: sent together.
            let (_, written) = futures_util::future::try_join(
                repo::insert_attempts(conn, &attempts),
                shop_outbox::enqueue(conn, &messages),
            )
            .await?;
            Ok((written, retries))
        })
        .await?;
    // Each retry wakes the lease loop when it comes due.
    for at in retries {
        let delay = (at - Utc::now()).to_std().unwrap_or_default();
        let attempts = state.attempts.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            attempts.wake();
        });
    }
    Ok(written)
}

/// Every outcome's series at zero from the start: a failure rate is defined before the first
/// failure, and the first one is a change.
fn export_outcomes() {
    for outcome in [PaymentOutcome::Succeeded, PaymentOutcome::Failed] {
        metrics::counter!("shop_payments_settled_total", "outcome" => outcome.as_str())
            .increment(0);
    }
    for outcome in [
        PaymentOutcome::Succeeded,
        PaymentOutcome::Failed,
        PaymentOutcome::Refunded,
    ] {
        metrics::counter!("shop_payment_attempts_total", "outcome" => outcome.as_str())
            .increment(0);
    }
}

fn log(payment: &Payment, outcome: &Outcome) {
    let result = outcome.outcome.as_str();
    tracing::info!(
        payment.id = %payment.id,
        order.id = %payment.order_id,
        attempt_no = outcome.attempt_no,
        outcome = result,
        "payment attempt"
    );
    metrics::counter!("shop_payment_attempts_total", "outcome" => result).increment(1);
    if outcome.is_final {
        metrics::counter!("shop_payments_settled_total", "outcome" => result).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Waker},
    };

    use chrono::Utc;
    use shop_contracts::{OrderId, PaymentId, PaymentStatus, UserId, events::PaymentOutcome};
    use tokio::sync::mpsc;

    use super::{Attempts, Duration, Outcome, Payment, Simulation, simulated_failure, take_queued};

    fn simulation(retries: u32) -> Simulation {
        Simulation {
            duration: Duration::ZERO,
            failure_percent: 0,
            retries,
            backoff: Duration::from_secs(10),
            concurrency: 1,
            worker: "worker-1".into(),
        }
    }

    /// A payment as leased after `attempt_no` attempts, its order's last event numbered
    /// `event_seq`.
    fn leased(attempt_no: i32, event_seq: i32) -> Payment {
        Payment {
            id: PaymentId::new(),
            order_id: OrderId::new(),
            user_id: UserId::new(),
            amount_cents: 900,
            currency: "USD".into(),
            status: PaymentStatus::Processing,
            attempt_no,
            next_attempt_at: None,
            lease_owner: Some("worker-1".into()),
            event_seq,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            traceparent: None,
        }
    }

    /// What the outcome's messages would be, once the payment's `event_seq` counts them.
    fn notification_seqs(outcome: &Outcome, event_seq: i32) -> Vec<i64> {
        outcome
            .messages(&leased(outcome.attempt_no, event_seq))
            .expect("the messages serialise")
            .iter()
            .filter_map(|m| m.payload.get("seq").and_then(serde_json::Value::as_i64))
            .collect()
    }

    #[test]
    fn a_failed_attempt_with_retries_left_comes_back_after_the_doubled_backoff() {
        let before = Utc::now();
        // The third attempt of four: 10 s × 2², within the ±20 % jitter.
        let outcome = Outcome::decide(&simulation(3), &leased(2, 0), true);
        assert_eq!(
            (
                outcome.attempt_no,
                outcome.outcome,
                outcome.status,
                outcome.is_final
            ),
            (3, PaymentOutcome::Failed, PaymentStatus::Processing, false)
        );
        let wait = outcome.next_retry_at.expect("a retry is due") - before;
        assert!(
            wait >= chrono::Duration::seconds(32) && wait <= chrono::Duration::seconds(49),
            "the retry is due {wait} after the attempt"
        );
        assert_eq!(notification_seqs(&outcome, 7), [7], "one attempt_failed");
    }

    #[test]
    fn the_last_failed_attempt_fails_the_payment_with_two_notifications() {
        let outcome = Outcome::decide(&simulation(2), &leased(2, 0), true);
        assert_eq!(
            (
                outcome.attempt_no,
                outcome.outcome,
                outcome.status,
                outcome.is_final
            ),
            (3, PaymentOutcome::Failed, PaymentStatus::Failed, true)
        );
        assert_eq!(outcome.next_retry_at, None);
        assert!(outcome.error.is_some());
        // attempt_failed, then payment.failed, numbered on from the order's last event.
        assert_eq!(notification_seqs(&outcome, 7), [6, 7]);
    }

    #[test]
    fn a_success_settles_the_payment_at_once() {
        let outcome = Outcome::decide(&simulation(2), &leased(0, 0), false);
        assert_eq!(
            (
                outcome.attempt_no,
                outcome.outcome,
                outcome.status,
                outcome.is_final
            ),
            (1, PaymentOutcome::Succeeded, PaymentStatus::Succeeded, true)
        );
        assert_eq!((outcome.next_retry_at, outcome.error.clone()), (None, None));
        assert_eq!(notification_seqs(&outcome, 4), [4]);
    }

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_size() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        for n in 1..=5 {
            tx.send(n).expect("the queue is open");
        }
        assert_eq!(take_queued(0, &mut queue, 3), [0, 1, 2]);
        assert_eq!(take_queued(9, &mut queue, 10), [9, 3, 4, 5]);
        assert_eq!(
            take_queued(7, &mut queue, 10),
            [7],
            "nothing is left to take"
        );
    }

    #[test]
    fn free_slots_hands_out_what_is_free_up_to_what_is_wanted() {
        let (attempts, _finished) = Attempts::new(3);
        let taken = attempts.free_slots(5);
        assert_eq!(taken.len(), 3);
        assert!(attempts.free_slots(1).is_empty(), "every slot is taken");
        drop(taken);
        assert_eq!(attempts.free_slots(2).len(), 2);
    }

    #[test]
    fn a_wake_is_kept_for_the_lease_loop_until_it_waits() {
        let (attempts, _finished) = Attempts::new(1);
        let ready = |attempts: &Attempts| {
            let mut waiting = pin!(attempts.due.notified());
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        };
        assert!(!ready(&attempts), "nothing woke it yet");
        attempts.wake();
        assert!(ready(&attempts), "the wake waits for the loop");
    }

    #[test]
    fn a_simulated_attempt_fails_in_exactly_failure_percent_of_the_rolls() {
        for percent in [0_u8, 1, 20, 99, 100] {
            let failures = (0..100)
                .filter(|&roll| simulated_failure(roll, percent))
                .count();
            assert_eq!(failures, usize::from(percent), "at {percent}%");
        }
        assert!(simulated_failure(19, 20) && !simulated_failure(20, 20));
    }
}
