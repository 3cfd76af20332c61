//! A consumer of a Redis stream in a consumer group, generic over what its entries mean.
//!
//! Each read (or reclaim) is parsed by the [`EntryHandler`]: an entry it cannot read goes to
//! the dead-letter stream with the reason; the rest are handed over as one batch, and
//! whatever was handled is acknowledged in one `XACK`. A batch that fails on its data is
//! handed over again one entry at a time, so that one bad entry holds up no other; one that
//! fails otherwise stays pending and is delivered again. Entries left pending on a dead
//! consumer are claimed (`XAUTOCLAIM`) after `reclaim_idle`; entries delivered
//! `max_deliveries` times are dead-lettered. The stream is trimmed, but never past its oldest
//! pending entry.
//!
//! Blocking reads use a connection of their own without a response timeout (pooled
//! connections time out quickly and would stall everything queued behind the read).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis::{
    AsyncConnectionConfig,
    aio::MultiplexedConnection,
    streams::{
        StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
        StreamRangeReply, StreamReadReply,
    },
};
use tokio_util::sync::CancellationToken;

/// Entries asked for per read.
const READ_COUNT: usize = 50;
/// How long a read waits for entries.
const BLOCK_MS: usize = 1000;

/// Why a batch was not handled.
#[derive(Debug)]
pub enum BatchError {
    /// A statement failed on the batch's data: each entry is handed over alone.
    Data(String),
    /// Anything else (the database away, say): the batch stays pending, to be delivered again.
    Unavailable(String),
}

/// What a consumer does with its stream's entries.
pub trait EntryHandler: Send + Sync {
    /// An entry, understood.
    type Item: Send + Sync;

    /// Reads an entry's `event` field; an error is the reason it can never be handled.
    fn parse(&self, raw: Option<&str>) -> Result<Self::Item, String>;

    /// A span for an item, open while it is handled (in the trace that wrote it, say).
    fn span(&self, item: &Self::Item) -> tracing::Span;

    /// Handles a batch, in stream order.
    fn handle(&self, items: &[&Self::Item]) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Whether handled entries are acknowledged (a test switch may say no).
    fn acknowledges(&self) -> bool {
        true
    }
}

/// Where a consumer reads, as whom, and when it gives up on an entry.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Redis for the blocking reads (a connection of the consumer's own).
    pub redis_url: String,
    /// The stream, prefixed.
    pub stream: String,
    /// Its dead-letter stream, prefixed.
    pub dead: String,
    /// The stream's name in metrics and logs (unprefixed).
    pub label: &'static str,
    pub group: &'static str,
    /// This consumer's name in the group.
    pub name: String,
    /// Deliveries after which a pending entry is dead-lettered.
    pub max_deliveries: usize,
    /// How long an entry stays pending on a consumer before another claims it.
    pub reclaim_idle: Duration,
    /// Where the group starts when it is created.
    pub start: GroupStart,
    /// Whether consumers trim what the group has handled: only for a stream nothing else
    /// reads.
    pub trims: bool,
}

/// Where a newly created group begins reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// At the stream's first entry: work queued before the consumers existed is done.
    Oldest,
    /// After the stream's last entry: only what happens from now on.
    Newest,
}

/// A consumer's name in its group: the host (`HOSTNAME`, else `/etc/hostname`, else
/// `fallback`) and a random suffix, so a restarted instance is a new consumer and what the old
/// one left pending is reclaimed.
pub fn consumer_name(fallback: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// One consumer of a group.
#[derive(Debug)]
pub struct GroupConsumer<H> {
    config: GroupConfig,
    handler: H,
    /// Entries this consumer dead-lettered.
    dead_letters: AtomicU64,
}

impl<H: EntryHandler> GroupConsumer<H> {
    pub fn new(config: GroupConfig, handler: H) -> Self {
        // Exported at zero from the start: `increase()` sees the first dead letter, and the
        // alert's series exists before anything went wrong.
        metrics::counter!("shop_stream_dead_letters_total", "stream" => config.label).increment(0);
        Self {
            config,
            handler,
            dead_letters: AtomicU64::new(0),
        }
    }

    /// Consumes until cancelled, reconnecting after failures.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            match self.session(&cancel).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        stream = self.config.label,
                        consumer = %self.config.name,
                        "stream consumer lost redis; reconnecting"
                    )
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn session(&self, cancel: &CancellationToken) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.config.redis_url.as_str())?;
        let connection = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&connection)
            .await?;
        self.ensure_group(&mut conn).await?;
        let maintenance_every = (self.config.reclaim_idle / 2).max(Duration::from_millis(500));
        let mut last_maintenance: Option<Instant> = None;
        loop {
            if last_maintenance.is_none_or(|at| at.elapsed() >= maintenance_every) {
                self.reclaim(&mut conn).await?;
                if self.config.trims {
                    self.trim(&mut conn).await?;
                }
                last_maintenance = Some(Instant::now());
            }
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(self.config.group)
                .arg(&self.config.name)
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.config.stream)
                .arg(">");
            let read = command.query_async::<Option<StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                reply = read => reply,
            };
            match reply {
                Ok(Some(reply)) => {
                    let entries = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                    self.process(&mut conn, entries).await?;
                }
                Ok(None) => {}
                // Redis lost its data (or the group was deleted): make it again.
                Err(error) if error.code() == Some("NOGROUP") => {
                    tracing::warn!(
                        stream = self.config.label,
                        "consumer group missing; re-creating it"
                    );
                    self.ensure_group(&mut conn).await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Creates the group (and the stream) unless it exists, at its configured start.
    async fn ensure_group(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let start = match self.config.start {
            GroupStart::Oldest => "0",
            GroupStart::Newest => "$",
        };
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(self.config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
            _ => Ok(()),
        }
    }

    /// Takes a read's entries: the unreadable to the dead letters, the rest to the handler,
    /// and acknowledges whatever was handled.
    async fn process(
        &self,
        conn: &mut MultiplexedConnection,
        entries: Vec<StreamId>,
    ) -> redis::RedisResult<()> {
        let mut handled: Vec<String> = Vec::with_capacity(entries.len());
        let mut work: Vec<(String, H::Item)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let raw: Option<String> = entry.get("event");
            match self.handler.parse(raw.as_deref()) {
                Ok(item) => work.push((entry.id, item)),
                Err(reason) => {
                    self.dead_letter(conn, &entry.id, raw.as_deref().unwrap_or(""), &reason)
                        .await?;
                    handled.push(entry.id);
                }
            }
        }
        let _spans: Vec<tracing::Span> = work.iter().map(|(_, w)| self.handler.span(w)).collect();
        let items: Vec<&H::Item> = work.iter().map(|(_, w)| w).collect();
        match self.handler.handle(&items).await {
            Ok(()) => handled.extend(work.into_iter().map(|(id, _)| id)),
            Err(BatchError::Data(error)) if work.len() > 1 => {
                tracing::warn!(
                    %error,
                    stream = self.config.label,
                    entries = work.len(),
                    "entries not handled as a batch; one at a time"
                );
                for (id, item) in &work {
                    match self.handler.handle(&[item]).await {
                        Ok(()) => handled.push(id.clone()),
                        Err(BatchError::Data(error) | BatchError::Unavailable(error)) => {
                            tracing::warn!(
                                %error,
                                entry = %id,
                                "entry not handled yet; it will be delivered again"
                            );
                        }
                    }
                }
            }
            Err(BatchError::Data(error) | BatchError::Unavailable(error)) => {
                tracing::warn!(
                    %error,
                    stream = self.config.label,
                    entries = work.len(),
                    "entries not handled yet; they will be delivered again"
                );
            }
        }
        self.ack(conn, &handled).await
    }

    async fn ack(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[String],
    ) -> redis::RedisResult<()> {
        if ids.is_empty() || !self.handler.acknowledges() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.config.stream)
            .arg(self.config.group)
            .arg(ids)
            .query_async::<()>(conn)
            .await
    }

    async fn dead_letter(
        &self,
        conn: &mut MultiplexedConnection,
        id: &str,
        raw: &str,
        reason: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(&self.config.dead)
            .arg("*")
            .arg("reason")
            .arg(reason)
            .arg("source_id")
            .arg(id)
            .arg("event")
            .arg(raw)
            .query_async::<String>(conn)
            .await?;
        let total = self.dead_letters.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("shop_stream_dead_letters_total", "stream" => self.config.label)
            .increment(1);
        tracing::warn!(
            stream = self.config.label,
            entry = id,
            reason,
            dead_letters = total,
            "entry moved to the dead letters"
        );
        Ok(())
    }

    /// Dead-letters entries delivered too often, then claims what other (dead) consumers left.
    async fn reclaim(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let idle_ms = u64::try_from(self.config.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(self.config.group)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(100)
            .query_async(conn)
            .await?;
        for stuck in pending
            .ids
            .iter()
            .filter(|p| p.times_delivered >= self.config.max_deliveries)
        {
            let entries: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.config.stream)
                .arg(&stuck.id)
                .arg(&stuck.id)
                .query_async(conn)
                .await?;
            let raw: Option<String> = entries.ids.first().and_then(|e| e.get("event"));
            let reason = format!(
                "delivered {} times without being handled",
                stuck.times_delivered
            );
            self.dead_letter(conn, &stuck.id, raw.as_deref().unwrap_or(""), &reason)
                .await?;
            self.ack(conn, std::slice::from_ref(&stuck.id)).await?;
        }
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.config.stream)
            .arg(self.config.group)
            .arg(&self.config.name)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(READ_COUNT)
            .query_async(conn)
            .await?;
        for entry in &claimed.claimed {
            tracing::info!(entry = %entry.id, "reclaimed an entry another consumer left pending");
        }
        if !claimed.claimed.is_empty() {
            self.process(conn, claimed.claimed).await?;
        }
        Ok(())
    }

    /// Drops entries every consumer is done with: below the oldest pending entry, or below
    /// what the group has read when nothing is pending.
    async fn trim(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(self.config.group)
            .query_async(conn)
            .await?;
        let floor = match summary {
            (count, Some(oldest), _, _) if count > 0 => Some(oldest),
            _ => {
                let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&self.config.stream)
                    .query_async(conn)
                    .await?;
                groups
                    .groups
                    .into_iter()
                    .find(|g| g.name == self.config.group)
                    .map(|g| g.last_delivered_id)
            }
        };
        if let Some(floor) = floor.filter(|id| id != "0-0") {
            redis::cmd("XTRIM")
                .arg(&self.config.stream)
                .arg("MINID")
                .arg("~")
                .arg(floor)
                .query_async::<u64>(conn)
                .await?;
        }
        Ok(())
    }
}
