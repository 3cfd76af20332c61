//! A consecutive-failure circuit breaker: closed → open (fail fast for a cool-down) →
//! half-open (one probe) → closed on success, open again on failure.
//!
//! Every change of state starts a new generation, and a call's outcome counts only in the
//! generation it started in: a slow call from before the circuit opened can neither close it
//! (skipping the probe) nor extend the cool-down already announced in `Retry-After`.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Guards one upstream.
#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<(State, u64)>,
    threshold: u32,
    cooldown: Duration,
}

/// Permission to make one call; report its outcome with [`Permit::record`].
#[derive(Debug)]
#[must_use]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    recorded: bool,
}

impl Permit<'_> {
    /// Records whether the call reached a working upstream.
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.record(success, self.generation);
    }
}

impl Drop for Permit<'_> {
    /// A call abandoned before its outcome (the client went away) says nothing about the
    /// upstream; it only frees the half-open probe slot for the next caller.
    fn drop(&mut self) {
        if !self.recorded {
            let mut guard = self.breaker.lock();
            let (state, generation) = &mut *guard;
            if *generation == self.generation && *state == (State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

impl CircuitBreaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new((State::Closed { failures: 0 }, 0)),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, u64)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit, or, while the circuit is open (or a half-open probe is in flight), how long
    /// until a call may be tried again.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Duration> {
        let mut guard = self.lock();
        let (state, generation) = &mut *guard;
        let now = Instant::now();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                *generation += 1;
            }
            // The probe's answer is due within one call; ask callers to come back shortly.
            State::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
            State::HalfOpen { probing: false } => *state = State::HalfOpen { probing: true },
        }
        Ok(Permit {
            breaker: self,
            generation: *generation,
            recorded: false,
        })
    }

    fn record(&self, success: bool, started_in: u64) {
        let mut guard = self.lock();
        let (state, generation) = &mut *guard;
        if started_in != *generation {
            return;
        }
        let next = match (*state, success) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, true) => State::Closed { failures: 0 },
            (_, false) => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
        if std::mem::discriminant(&next) != std::mem::discriminant(&*state) {
            *generation += 1;
        }
        *state = next;
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        matches!(self.lock().0, State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            breaker.try_acquire().expect("closed").record(false);
        }
        assert!(!breaker.is_open());
        breaker.try_acquire().expect("closed").record(false);
        assert!(breaker.is_open());
        let wait = breaker.try_acquire().expect_err("open");
        assert!(
            wait <= Duration::from_millis(30) && wait > Duration::ZERO,
            "{wait:?}"
        );

        std::thread::sleep(Duration::from_millis(40));
        let probe = breaker.try_acquire().expect("half-open probe");
        assert!(breaker.try_acquire().is_err(), "only one probe at a time");
        probe.record(false);
        assert!(breaker.is_open(), "a failed probe reopens");

        std::thread::sleep(Duration::from_millis(40));
        breaker.try_acquire().expect("probe").record(true);
        assert!(breaker.try_acquire().is_ok(), "a good probe closes");
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(10));
        breaker.try_acquire().expect("closed").record(false);
        std::thread::sleep(Duration::from_millis(20));
        drop(breaker.try_acquire().expect("probe"));
        assert!(breaker.try_acquire().is_ok());
    }

    #[test]
    fn calls_from_before_the_circuit_opened_do_not_count() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(50));
        let slow_success = breaker.try_acquire().expect("closed");
        let slow_failure = breaker.try_acquire().expect("closed");
        breaker.try_acquire().expect("closed").record(false);
        assert!(breaker.is_open());
        let announced = breaker.try_acquire().expect_err("open");
        // A late success does not skip the probe; a late failure does not extend the cool-down.
        slow_success.record(true);
        assert!(breaker.is_open());
        slow_failure.record(false);
        assert!(breaker.try_acquire().expect_err("still open") <= announced);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        breaker.try_acquire().expect("closed").record(false);
        breaker.try_acquire().expect("closed").record(true);
        breaker.try_acquire().expect("closed").record(false);
        assert!(!breaker.is_open());
    }
}
