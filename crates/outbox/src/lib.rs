//! The transactional outbox shared by the producers (order, payment).
//!
//! A service writes [`NewMessage`]s with [`enqueue`] in the same transaction as the change
//! they describe, so a message exists exactly when its change committed. A [`Relay`] then
//! sends them: events to Redis streams (one Lua script appends to the stream and, for a user's
//! notifications, to that user's capped stream with the same id), commands to the service's
//! [`CommandHandler`], retried with backoff until they succeed. Rows of one aggregate and kind
//! go out in id order; instances share the work with `FOR UPDATE SKIP LOCKED`. Relays wake
//! in-process, on `LISTEN/NOTIFY`, and by polling. Sent rows are purged after a retention.

mod relay;

use diesel::{
    prelude::*,
    sql_types::{Jsonb, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

pub use relay::{CommandHandler, Relay, RelayConfig, RelayHandle};

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
    pub user_id: Option<Uuid>,
    pub payload: serde_json::Value,
}

/// Writes messages in the caller's transaction and notifies listening relays on commit.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    channel: &str,
    messages: &[NewMessage],
) -> QueryResult<()> {
    for message in messages {
        diesel::sql_query(
            "INSERT INTO outbox (kind, topic, aggregate_id, user_id, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Text, _>(message.kind.as_str())
        .bind::<Text, _>(&message.topic)
        .bind::<SqlUuid, _>(message.aggregate_id)
        .bind::<Nullable<SqlUuid>, _>(message.user_id)
        .bind::<Jsonb, _>(&message.payload)
        .execute(conn)
        .await?;
    }
    if !messages.is_empty() {
        // Delivered at commit, and only then.
        diesel::sql_query("SELECT pg_notify($1, '')")
            .bind::<Text, _>(channel)
            .execute(conn)
            .await?;
    }
    Ok(())
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
        ];
        for (service, migration, ddl) in migrations {
            assert!(
                migration.contains(ddl),
                "the {service} migrations must hold the outbox DDL verbatim"
            );
        }
    }
}
