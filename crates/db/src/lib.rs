//! Postgres access shared by the services: a diesel-async pool whose connections live in the
//! service's schema and count the statements they send, and the migration runner.

mod migrate;
mod prepared;
#[cfg(feature = "scratch")]
pub mod scratch;
mod statements;

use std::time::Duration;

use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection,
    },
};
use futures_util::FutureExt;
use shop_settings::{Service, Settings};

pub use diesel_migrations::EmbeddedMigrations;
pub use migrate::{MigrationError, ServiceMigrationError, migrate_service, run_migrations};
pub use prepared::{Prepared, prepared};
pub use statements::StatementCounter;

/// The pool type every service uses.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
/// A connection checked out of [`Pool`].
pub type PooledConn<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// Why no result came back from the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time (Postgres down or the pool exhausted): 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The query itself failed.
    #[error(transparent)]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for DbError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            // The connection died under the query (closed, or terminated by the server: a
            // restart, a failover, an operator): an outage, not a bad query.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::Unavailable(info.message().to_owned()),
            Error::DatabaseError(_, info)
                if info.message().starts_with("terminating connection") =>
            {
                DbError::Unavailable(info.message().to_owned())
            }
            other => DbError::Query(other),
        }
    }
}

impl From<bb8::RunError<PoolError>> for DbError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

impl DbError {
    /// Whether the query failed because a row it needed does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }

    /// Whether the query violated a unique constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Adds `search_path=<schema>,public` to a connection URL, so the service's tables (and its
/// migrations table) live in its own schema while extensions in `public` stay visible.
pub fn url_with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}%2Cpublic")
}

/// Builds the pool of a service. Connections are made lazily, so a service starts (and answers
/// `/healthz`) while Postgres is still coming up; `/readyz` tells when it is usable. Every
/// connection counts what it sends in `shop_db_statements_total{service}`.
pub fn pool(settings: &Settings, service: Service) -> Pool {
    let url = url_with_schema(settings.database_url(service), service.schema());
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.set_instrumentation(StatementCounter::new(service.name()));
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    bb8::Pool::builder()
        .max_size(settings.database_pool_size)
        .connection_timeout(settings.database_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        // No test query per checkout (DESIGN, "The cost of a write"): see `conn`.
        .test_on_check_out(false)
        .build_unchecked(manager)
}

/// Checks out a connection, mapping pool failures to [`DbError::Unavailable`]. Nothing is
/// sent to test it: a connection the server already closed (a restart, a terminated backend)
/// is known as closed without a round trip and is replaced; one that dies unnoticed fails the
/// request that uses it (503) and is dropped when it returns to the pool.
pub async fn conn(pool: &Pool) -> Result<PooledConn<'_>, DbError> {
    let mut attempts = pool.state().connections + 1;
    loop {
        let mut conn = pool.get().await?;
        attempts = attempts.saturating_sub(1);
        if !conn.is_broken() || attempts == 0 {
            return Ok(conn);
        }
        // Dropped here: the pool sees it is broken and discards it.
    }
}

/// An async closure over a connection whose future is `Send` (what `tokio::spawn` needs), as
/// diesel-async's own `transaction` requires it.
pub trait TransactionFn<C, R>:
    AsyncFnOnce(C) -> R + FnOnce(C) -> <Self as TransactionFn<C, R>>::Fut
{
    type Fut: Future<Output = R>;
}

impl<F, C, Fut, R> TransactionFn<C, R> for F
where
    F: AsyncFnOnce(C) -> R + FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// Runs `f` in a transaction whose commit does not wait for its WAL to reach disk
/// (`SET LOCAL synchronous_commit = off`, sent with the `BEGIN` in one round trip). Only for
/// work whose loss in a crash an idempotent retry heals and which nobody was told about (DESIGN,
/// "The cost of a write"): relay bookkeeping and leases. Each caller says why its loss is
/// harmless.
pub async fn transaction_unflushed<T, E, F>(conn: &mut AsyncPgConnection, f: F) -> Result<T, E>
where
    for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> Result<T, E>
        + TransactionFn<&'r mut AsyncPgConnection, Result<T, E>, Fut: Send>
        + Send,
    E: From<diesel::result::Error>,
{
    use diesel_async::{AnsiTransactionManager, TransactionManager};
    AnsiTransactionManager::begin_transaction_sql(
        conn,
        "BEGIN; SET LOCAL synchronous_commit = off",
    )
    .await?;
    match f(conn).await {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            AnsiTransactionManager::rollback_transaction(conn).await?;
            Err(error)
        }
    }
}

/// A round trip to Postgres, for readiness probes.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let mut conn = conn(pool).await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// Records the pool's size and use as gauges (`shop_db_pool_connections{state}`).
pub fn record_pool_metrics(pool: &Pool, service: &'static str) {
    let state = pool.state();
    let idle = f64::from(state.idle_connections);
    let total = f64::from(state.connections);
    metrics::gauge!("shop_db_pool_connections", "service" => service, "state" => "idle").set(idle);
    metrics::gauge!("shop_db_pool_connections", "service" => service, "state" => "in_use")
        .set(total - idle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_goes_into_the_search_path() {
        assert_eq!(
            url_with_schema("postgres://u@h/db", "catalog"),
            "postgres://u@h/db?options=-c%20search_path%3Dcatalog%2Cpublic"
        );
        assert_eq!(
            url_with_schema("postgres://u@h/db?sslmode=disable", "users"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Dusers%2Cpublic"
        );
    }
}
