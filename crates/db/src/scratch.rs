//! Databases made for one run and dropped after it (a test's, a bench's, a chaos run's): the
//! server they are made on, admin connections to it, and what a run does to its database
//! from outside (terminate its connections, drop it). Feature `scratch`; never in a service.

use tokio_postgres::{Client, NoTls};

/// What every database of the system is bootstrapped with (`deploy/bootstrap.sql`).
pub const BOOTSTRAP_SQL: &str = include_str!("../../../deploy/bootstrap.sql");

/// The server to make run databases on: the first of `variables` that is set (any database
/// on that server), else the development database's.
pub fn server_url(variables: &[&str]) -> String {
    variables
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .unwrap_or_else(|| shop_settings::DEV_DATABASE_URL.into())
}

/// `url` with its database name replaced (its query kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

/// A plain connection, its driver task spawned on the current runtime.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "admin connection ended");
        }
    });
    Ok(client)
}

/// Terminates every connection to `database` but `admin`'s own, as a failover or an operator's
/// `pg_terminate_backend` would; how many.
pub async fn terminate_connections(
    admin: &Client,
    database: &str,
) -> Result<usize, tokio_postgres::Error> {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await?;
    Ok(rows.len())
}

/// Drops `database`, whoever is still connected.
pub async fn drop_database(admin: &Client, database: &str) -> Result<(), tokio_postgres::Error> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/shop?sslmode=disable", "run_1"),
            "postgres://u:p@h:5432/run_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h/shop", "x"), "postgres://h/x");
    }
}
