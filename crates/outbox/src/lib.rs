//! The transactional outbox shared by the producers (order, payment, and user for its mail).
//!
//! A service writes [`NewMessage`]s with [`enqueue`] in the same transaction as the change
//! they describe, so a message exists exactly when its change committed, and after the commit
//! wakes its relay with what it wrote ([`RelayHandle::wake`]). A [`Relay`] then sends them:
//! events to Redis streams, a batch in one pipeline (a script per event appends it to its
//! stream and, for a user's notifications, to that user's capped stream with the same id),
//! commands to the service's [`CommandHandler`] a batch at a time; failures are retried with
//! backoff. Rows of one aggregate and kind go out in id order and exactly once to readers, even
//! when a pipeline's answer is lost; instances share the work with `FOR UPDATE SKIP LOCKED`.
//! Nothing here takes a cluster-wide lock inside the business transaction (no `pg_notify`):
//! the writing instance's relay is woken in-process, other instances by a throttled Redis
//! publish, and polling is the fallback. Sent rows are purged after a retention.

mod relay;
mod wake;

use diesel::{
    QueryResult,
    sql_types::{Array, Jsonb, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shop_contracts::UserId;
use uuid::Uuid;

pub use relay::{Command, CommandHandler, Outcome, Relay, RelayConfig, run_lanes};
pub use wake::{RelayHandle, Written};

/// The table's DDL; each producer's migration holds a copy (tests compare them).
pub const TABLE_DDL: &str = include_str!("../outbox.sql");

/// The index the relay's scan needs, added after the table; each producer has a migration
/// holding a copy.
pub const PENDING_INDEX_DDL: &str = include_str!("../outbox-pending-index.sql");

/// What a row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Publish to the Redis stream named by the topic.
    Event,
    /// Execute the command named by the topic.
    Command,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Command => "command",
        }
    }
}

/// A message to write with a business change.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub kind: Kind,
    /// Stream name (events) or command name (commands), without any key prefix.
    pub topic: String,
    /// The ordering lane, e.g. the order id.
    pub aggregate_id: Uuid,
    /// For events: also append to this user's notification stream.
    pub user_id: Option<UserId>,
    pub payload: serde_json::Value,
}

impl NewMessage {
    /// An event for the stream `topic`, in the lane of `aggregate_id`; with `user_id`, also
    /// for that user's notifications. A payload that does not serialise is an error.
    pub fn event(
        topic: &str,
        aggregate_id: impl Into<Uuid>,
        user_id: Option<UserId>,
        event: &impl Serialize,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            kind: Kind::Event,
            topic: topic.to_owned(),
            aggregate_id: aggregate_id.into(),
            user_id,
            payload: serde_json::to_value(event)?,
        })
    }

    /// The command `topic` for the service's [`CommandHandler`], whose `Command` type reads
    /// `command` back.
    pub fn command(
        topic: &str,
        aggregate_id: impl Into<Uuid>,
        command: &impl Serialize,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            kind: Kind::Command,
            topic: topic.to_owned(),
            aggregate_id: aggregate_id.into(),
            user_id: None,
            payload: serde_json::to_value(command)?,
        })
    }
}

const INSERT: &str = "INSERT INTO outbox (kind, topic, aggregate_id, user_id, payload) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::jsonb[])";

/// Writes messages in the caller's transaction, in order, with one statement. Returns what was
/// written: pass it to [`RelayHandle::wake`] once the transaction has committed. It takes a
/// shared connection so that it can be sent together with the change's other statements.
pub async fn enqueue(conn: &AsyncPgConnection, messages: &[NewMessage]) -> QueryResult<Written> {
    if messages.is_empty() {
        return Ok(Written::NOTHING);
    }
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let aggregates: Vec<Uuid> = messages.iter().map(|m| m.aggregate_id).collect();
    let users: Vec<Option<Uuid>> = messages
        .iter()
        .map(|m| m.user_id.map(UserId::uuid))
        .collect();
    let payloads: Vec<&serde_json::Value> = messages.iter().map(|m| &m.payload).collect();
    shop_db::prepared(INSERT)
        .bind::<Array<Text>, _>(kinds)
        .bind::<Array<Text>, _>(topics)
        .bind::<Array<SqlUuid>, _>(aggregates)
        .bind::<Array<Nullable<SqlUuid>>, _>(users)
        .bind::<Array<Jsonb>, _>(payloads)
        .execute(&mut &*conn)
        .await?;
    Ok(Written::of(messages))
}

#[cfg(test)]
mod ddl_tests {
    use super::{PENDING_INDEX_DDL, TABLE_DDL};

    #[test]
    fn every_producer_holds_the_shared_ddl() {
        let migrations = [
            (
                "order",
                include_str!(
                    "../../../services/order/migrations/2026-11-21-000001_create_orders/up.sql"
                ),
                TABLE_DDL,
            ),
            (
                "payment",
                include_str!(
                    "../../../services/payment/migrations/2026-11-21-000001_create_payments/up.sql"
                ),
                TABLE_DDL,
            ),
            (
                "order",
                include_str!(
                    "../../../services/order/migrations/2026-11-22-000001_outbox_pending_index/up.sql"
                ),
                PENDING_INDEX_DDL,
            ),
            (
                "payment",
                include_str!(
                    "../../../services/payment/migrations/2026-11-22-000001_outbox_pending_index/up.sql"
                ),
                PENDING_INDEX_DDL,
            ),
            (
                "user",
                include_str!(
                    "../../../services/user/migrations/2026-12-04-000001_accounts_mail/up.sql"
                ),
                TABLE_DDL,
            ),
            (
                "user",
                include_str!(
                    "../../../services/user/migrations/2026-12-04-000001_accounts_mail/up.sql"
                ),
                PENDING_INDEX_DDL,
            ),
        ];
        for (service, migration, ddl) in migrations {
            assert!(
                migration.contains(ddl),
                "the {service} migrations must hold the outbox DDL verbatim"
            );
        }
    }
}
