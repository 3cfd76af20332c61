//! Waking relays after a commit: in-process for the writing instance, through a throttled
//! Redis publish for the others. Only the loop of the kind that was written wakes, and a wake
//! that arrives while its loop is busy makes it look again once, never more.

use std::{
    ops::{BitOr, BitOrAssign},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use shop_redis::{RedisPool, redis};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Kind, NewMessage};

/// Which kinds of rows a transaction wrote. Wake the relay with it once the transaction has
/// committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "wake the relay with it once the transaction has committed"]
pub struct Written {
    events: bool,
    commands: bool,
}

impl Written {
    /// Nothing to send.
    pub const NOTHING: Self = Self {
        events: false,
        commands: false,
    };

    /// What writing `messages` writes.
    pub fn of(messages: &[NewMessage]) -> Self {
        Self {
            events: messages.iter().any(|m| m.kind == Kind::Event),
            commands: messages.iter().any(|m| m.kind == Kind::Command),
        }
    }

    /// Whether there is nothing to wake for.
    pub fn is_empty(self) -> bool {
        !self.events && !self.commands
    }

    fn kinds(self) -> impl Iterator<Item = Kind> {
        [(self.events, Kind::Event), (self.commands, Kind::Command)]
            .into_iter()
            .filter_map(|(written, kind)| written.then_some(kind))
    }
}

impl BitOr for Written {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self {
            events: self.events || other.events,
            commands: self.commands || other.commands,
        }
    }
}

impl BitOrAssign for Written {
    fn bitor_assign(&mut self, other: Self) {
        *self = *self | other;
    }
}

/// The wake-up of one relay loop: a flag saying rows may be waiting, and a notification for a
/// loop that sleeps.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    dirty: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn raise(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        // Only a loop already waiting is woken; a busy one sees the flag when it finishes.
        self.notify.notify_waiters();
    }

    /// Clears the flag before a pass: rows written from now on may not be in it.
    pub(crate) fn take(&self) -> bool {
        self.dirty.swap(false, Ordering::SeqCst)
    }

    /// Waits for a wake-up or `timeout`; returns at once if one came since the last
    /// [`Signal::take`]. True when woken.
    pub(crate) async fn wait(&self, timeout: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.dirty.load(Ordering::SeqCst) {
            return true;
        }
        tokio::select! {
            () = notified => true,
            () = tokio::time::sleep(timeout) => false,
        }
    }
}

/// The two loops' signals and the publisher that tells other instances.
#[derive(Debug)]
pub(crate) struct Signals {
    pub(crate) events: Signal,
    pub(crate) commands: Signal,
    publisher: Publisher,
}

impl Signals {
    pub(crate) fn new(redis: RedisPool, service: &str, throttle: Duration) -> Self {
        Self {
            events: Signal::default(),
            commands: Signal::default(),
            publisher: Publisher {
                channel: redis.key(&format!("outbox:{service}")),
                instance: format!("{:016x}", rand::random::<u64>()),
                redis,
                throttle,
                started: Instant::now(),
                last: [AtomicU64::new(0), AtomicU64::new(0)],
            },
        }
    }

    pub(crate) fn of(&self, kind: Kind) -> &Signal {
        match kind {
            Kind::Event => &self.events,
            Kind::Command => &self.commands,
        }
    }
}

/// Tells the relays of other instances that rows were written, at most once per `throttle`
/// and kind: a lost or throttled wake-up costs them one poll interval, never a row (the
/// writing instance's own relay was woken in-process).
#[derive(Debug)]
struct Publisher {
    redis: RedisPool,
    channel: String,
    instance: String,
    throttle: Duration,
    started: Instant,
    /// When each kind was last published, in ms since `started` (+1, so 0 means never).
    last: [AtomicU64; 2],
}

impl Publisher {
    fn publish(&self, kind: Kind) {
        let slot = &self.last[usize::from(kind == Kind::Command)];
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = slot.load(Ordering::Relaxed);
        let throttle = u64::try_from(self.throttle.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < throttle {
            return;
        }
        if slot
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let redis = self.redis.clone();
        let channel = self.channel.clone();
        let message = format!("{} {}", self.instance, kind.as_str());
        tokio::spawn(async move {
            let Ok(mut conn) = redis.get().await else {
                return;
            };
            let published: redis::RedisResult<()> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message)
                .query_async(&mut *conn)
                .await;
            if let Err(error) = published {
                tracing::debug!(%error, "outbox wake-up not published; other instances poll");
            }
        });
    }

    /// The kind another instance announced, unless the message is this instance's own.
    fn announced(&self, message: &str) -> Option<Kind> {
        let (instance, kind) = message.split_once(' ')?;
        if instance == self.instance {
            return None;
        }
        match kind {
            "event" => Some(Kind::Event),
            "command" => Some(Kind::Command),
            _ => None,
        }
    }
}

/// Wakes a started relay (and, throttled, the relays of other instances) after a commit.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    pub(crate) signals: Arc<Signals>,
    pub(crate) subscribed: tokio::sync::watch::Receiver<bool>,
}

impl RelayHandle {
    /// Wakes the loops for what was written. Call after the commit, never before.
    pub fn wake(&self, written: Written) {
        for kind in written.kinds() {
            self.signals.of(kind).raise();
            self.signals.publisher.publish(kind);
        }
    }

    /// Resolves once this instance listens for other instances' wake-ups (at once if it
    /// already does).
    pub async fn subscribed(&self) {
        let mut subscribed = self.subscribed.clone();
        let _ = subscribed.wait_for(|on| *on).await;
    }
}

/// Wakes this instance's loops on other instances' publishes, reconnecting when Redis goes
/// away (meanwhile the loops poll).
pub(crate) async fn subscribe(
    redis_url: String,
    signals: Arc<Signals>,
    subscribed: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) {
    loop {
        let listened = listen(&redis_url, &signals, &subscribed, &cancel).await;
        subscribed.send_replace(false);
        match listened {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(%error, "outbox wake-ups from other instances paused; polling")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn listen(
    redis_url: &str,
    signals: &Signals,
    subscribed: &tokio::sync::watch::Sender<bool>,
    cancel: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe(&signals.publisher.channel).await?;
    subscribed.send_replace(true);
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "subscription closed",
            )));
        };
        let text: String = message.get_payload().unwrap_or_default();
        if let Some(kind) = signals.publisher.announced(&text) {
            signals.of(kind).raise();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_kinds_combine() {
        assert!(Written::NOTHING.is_empty());
        let event = Written {
            events: true,
            commands: false,
        };
        let command = Written {
            events: false,
            commands: true,
        };
        let mut both = event;
        both |= command;
        assert_eq!(
            both.kinds().collect::<Vec<_>>(),
            [Kind::Event, Kind::Command]
        );
        assert_eq!(
            (event | Written::NOTHING).kinds().collect::<Vec<_>>(),
            [Kind::Event]
        );
    }

    #[tokio::test]
    async fn a_wake_while_busy_is_seen_once_and_an_old_one_not_again() {
        let signal = Signal::default();
        signal.raise();
        // Raised before the wait: seen at once.
        assert!(signal.wait(Duration::from_secs(5)).await);
        assert!(signal.take());
        // Taken: the next wait sleeps its timeout instead of seeing a stale permit.
        assert!(!signal.wait(Duration::from_millis(20)).await);
    }
}
