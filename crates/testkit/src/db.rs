//! Per-test databases cloned from a migrated template.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use shop_db::scratch::{self, BOOTSTRAP_SQL, with_database};
use shop_settings::Settings;
use tokio::sync::OnceCell;
use tokio_postgres::Client;

const TEST_PREFIX: &str = "shop_test_";
const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);
/// Serialises template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x5348_4f50_5445_4d50;

/// The server tests use: `TEST_DATABASE_URL` (any database on it), else the development one.
fn server_url() -> String {
    scratch::server_url(&["TEST_DATABASE_URL"])
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    Ok(scratch::connect(url).await?)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A hash of every service's migrations and the bootstrap SQL: a new migration means a new
/// template, never a stale one.
fn schema_hash() -> String {
    let root = workspace_root();
    let mut files = Vec::new();
    if let Ok(services) = std::fs::read_dir(root.join("services")) {
        for service in services.flatten() {
            collect_files(&service.path().join("migrations"), &mut files);
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(BOOTSTRAP_SQL.as_bytes());
    for file in files {
        hasher.update(
            file.strip_prefix(&root)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn migrate_all(url: &str) -> anyhow::Result<()> {
    let settings = Settings {
        database_url: url.into(),
        ..Settings::default()
    };
    user_service::migrate(&settings).await?;
    catalog_service::migrate(&settings).await?;
    order_service::migrate(&settings).await?;
    payment_service::migrate(&settings).await?;
    Ok(())
}

async fn terminate_and(admin: &Client, database: &str, statement: &str) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..50 {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await?;
        match admin.batch_execute(statement).await {
            Ok(()) => return Ok(()),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.map_or_else(|| anyhow::anyhow!("{statement} failed"), Into::into))
}

/// Creates the template for the current migrations if it does not exist yet.
async fn ensure_template(admin: &Client) -> anyhow::Result<String> {
    let template = format!("shop_tpl_{}", schema_hash());
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await?;
    let result = async {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await?;
        stamp(admin, &building).await?;
        let url = with_database(&server_url(), &building);
        connect(&url).await?.batch_execute(BOOTSTRAP_SQL).await?;
        migrate_all(&url).await?;
        terminate_and(
            admin,
            &building,
            &format!("ALTER DATABASE {building} RENAME TO {template}"),
        )
        .await?;
        // Nobody connects to a template, so clones never wait for it.
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await?;
        anyhow::Ok(())
    }
    .await;
    // Housekeeping under the same lock, so test processes never sweep at once (a DROP in
    // progress marks its database invalid, and touching an invalid database is a FATAL error
    // that closes the session), and on a connection of its own: a sweep never fails a test.
    if result.is_ok() {
        let swept = async {
            let own = connect(&with_database(&server_url(), "postgres")).await?;
            sweep(&own, &template).await
        }
        .await;
        if let Err(error) = swept {
            tracing::warn!(
                error = format!("{error:#}"),
                "stale test databases not swept"
            );
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await?;
    result.map(|()| template)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Records a database's creation time (Postgres keeps none) for the sweep.
async fn stamp(admin: &Client, database: &str) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "COMMENT ON DATABASE {database} IS 'created {}'",
            now_secs()
        ))
        .await?;
    Ok(())
}

/// Drops test databases left behind (a killed run) more than two hours ago, and templates of
/// other migration sets (and abandoned template builds) stamped more than two hours ago.
async fn sweep(admin: &Client, current_template: &str) -> anyhow::Result<()> {
    let cutoff = now_secs().saturating_sub(STALE_AFTER.as_secs());
    let templates = admin
        .query(
            "SELECT datname, shobj_description(oid, 'pg_database'), datconnlimit = -2 \
             FROM pg_database WHERE datname LIKE 'shop\\_tpl\\_%'",
            &[],
        )
        .await?;
    for row in templates {
        let name: String = row.get(0);
        let comment: Option<String> = row.get(1);
        let stamped: Option<u64> = comment
            .as_deref()
            .and_then(|c| c.strip_prefix("created "))
            .and_then(|secs| secs.parse().ok());
        // Left invalid by an interrupted DROP: only another DROP may touch it.
        let invalid: bool = row.get(2);
        if name != current_template && (invalid || stamped.is_some_and(|at| at < cutoff)) {
            // A template must stop being one before it can be dropped.
            // (Two statements: DROP DATABASE refuses to run in an implicit transaction.)
            if !invalid {
                let _ = admin
                    .batch_execute(&format!("ALTER DATABASE {name} WITH IS_TEMPLATE false"))
                    .await;
            }
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{TEST_PREFIX}%")],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let created: Option<u64> = name
            .strip_prefix(TEST_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if created.is_some_and(|created| created < cutoff) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
    Ok(())
}

static PREPARED: OnceCell<String> = OnceCell::const_new();

/// A database of the test's own, dropped when this value is.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Clones the template (creating it first if the migrations changed).
    pub async fn create() -> Self {
        Self::create_with(true).await
    }

    /// A database with nothing in it (no bootstrap, no migrations), for migration tests.
    pub async fn empty() -> Self {
        Self::create_with(false).await
    }

    async fn create_with(from_template: bool) -> Self {
        let server = server_url();
        let admin_url = with_database(&server, "postgres");
        let admin = connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot reach Postgres at {admin_url} (run `make services`): {e}")
        });
        let template = PREPARED
            .get_or_try_init(|| async { ensure_template(&admin).await })
            .await
            .unwrap_or_else(|e| panic!("cannot prepare the template database: {e:#}"));
        let name = format!("{TEST_PREFIX}{}_{:08x}", now_secs(), rand::random::<u32>());
        let statement = if from_template {
            format!("CREATE DATABASE {name} TEMPLATE {template}")
        } else {
            format!("CREATE DATABASE {name}")
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match admin.batch_execute(&statement).await {
                Ok(()) => break,
                Err(error) if attempt < 20 => {
                    tracing::debug!(%error, "retrying database creation");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot create test database {name}: {error}"),
            }
        }
        Self {
            url: with_database(&server, &name),
            name,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A plain client on this database, for assertions on stored state.
    pub async fn client(&self) -> Client {
        connect(&self.url).await.unwrap()
    }

    /// Terminates every other connection to this database (and no other), as a failover or
    /// an operator would; returns how many.
    pub async fn terminate_connections(&self) -> usize {
        let admin = connect(&with_database(&server_url(), "postgres"))
            .await
            .unwrap();
        scratch::terminate_connections(&admin, &self.name)
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = with_database(&server_url(), "postgres");
        let name = std::mem::take(&mut self.name);
        // Drop runs outside async context; a short-lived runtime of its own does the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await?;
                scratch::drop_database(&admin, &name).await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/shop", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/shop?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn the_schema_hash_covers_the_migrations() {
        let hash = schema_hash();
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, schema_hash());
    }
}
