//! Runs a service's embedded migrations inside its own schema.

use diesel::sql_types::BigInt;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::url_with_schema;

/// A migration run that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

/// Applies `service`'s migrations to its own schema, on its own database URL (the `migrate`
/// subcommand, and start-up with `RUN_MIGRATIONS_ON_START`). The error names the service.
pub async fn migrate_service(
    settings: &shop_settings::Settings,
    service: shop_settings::Service,
    migrations: EmbeddedMigrations,
) -> Result<(), ServiceMigrationError> {
    run_migrations(settings.database_url(service), service.schema(), migrations)
        .await
        .map(drop)
        .map_err(|source| ServiceMigrationError {
            service: service.name(),
            source,
        })
}

/// A service's migrations failed.
#[derive(Debug, thiserror::Error)]
#[error("{service} service migrations: {source}")]
pub struct ServiceMigrationError {
    pub service: &'static str,
    #[source]
    pub source: MigrationError,
}

/// A stable advisory-lock key per schema, so concurrent starters of one service serialise while
/// different services migrate in parallel.
fn lock_key(schema: &str) -> i64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"shop-migrations:".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates `schema` if it is missing, then applies pending `migrations` with the migrations
/// table inside that schema, all under a Postgres advisory lock. Returns the versions applied.
pub async fn run_migrations(
    database_url: &str,
    schema: &'static str,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>, MigrationError> {
    let mut conn = AsyncPgConnection::establish(&url_with_schema(database_url, schema)).await?;
    let key = lock_key(schema);
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(key)
        .execute(&mut conn)
        .await?;
    let result = apply(conn, schema, migrations).await;
    // The lock is session-scoped: closing the connection (on any path) releases it too.
    let (mut conn, applied) = result?;
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(key)
        .execute(&mut conn)
        .await?;
    if !applied.is_empty() {
        tracing::info!(db.schema = schema, migrations = ?applied, "applied migrations");
    }
    Ok(applied)
}

async fn apply(
    mut conn: AsyncPgConnection,
    schema: &str,
    migrations: EmbeddedMigrations,
) -> Result<(AsyncPgConnection, Vec<String>), MigrationError> {
    // Quoted identifier; schema names are our own constants. The search path is set again
    // after the schema exists: diesel creates its migrations table unqualified, and a path
    // resolved while the schema was missing would put that table in `public` (seen once, under
    // three concurrent starters).
    conn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\", public"
    ))
    .await?;
    // The harness blocks on the runtime; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(migrations)
            .map_err(|e| MigrationError::Migration(e.to_string()))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        Ok((harness.into_inner(), applied))
    })
    .await
    .map_err(|e| MigrationError::Migration(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("users"), lock_key("users"));
        assert_ne!(lock_key("users"), lock_key("catalog"));
    }
}
