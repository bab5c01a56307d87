//! Connecting to Postgres: URL parsing, readable connection errors, the read pool, and migrations.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{StoreError, StoreResult};
use crate::migrate::{self, AppliedMigration, MigrationReport};

/// Parses a `postgres://` URL (or key=value string), with an error that never repeats the password.
pub fn parse_url(url: &str) -> StoreResult<Config> {
    let mut config = Config::from_str(url).map_err(|error| {
        StoreError::Unavailable(format!(
            "invalid DATABASE_URL: {error} (expected postgres://user:password@host:port/db)"
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(StoreError::Unavailable("invalid DATABASE_URL: it names no host".into()));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("dossier");
    }
    Ok(config)
}

/// `host:port/database` of a configuration, for messages (never the user or password).
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

/// Opens one connection and drives it on a background task.
pub async fn connect(config: &Config) -> StoreResult<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(|error| {
        StoreError::Unavailable(format!("cannot connect to Postgres at {}: {}", describe(config), cause(&error)))
    })?;
    let target = describe(config);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(database = %target, error = %cause(&error), "postgres_connection_closed");
        }
    });
    Ok(client)
}

/// The innermost cause of a driver error ("connection refused" rather than "error connecting to server").
pub fn cause(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = format!("{error}: {inner}");
        source = inner.source();
    }
    text
}

/// Opens a pool's connections on one runtime: the one that built the pool (a connection is driven by a task on the
/// runtime that opened it, so a connection first needed by a background task would otherwise be served at the
/// background's priority for as long as the pool keeps it).
struct OnRuntime(tokio::runtime::Handle);

impl Connect for OnRuntime {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        let opened = self.0.spawn(open(config.clone()));
        Box::pin(async move {
            match opened.await {
                Ok(outcome) => outcome,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                // That runtime is shutting down: open it here instead.
                Err(_) => open(config).await,
            }
        })
    }
}

/// Opens a connection and drives it on a task of the current runtime.
async fn open(config: Config) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let target = describe(&config);
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(database = %target, error = %cause(&error), "postgres_connection_error");
        }
    });
    Ok((client, driver))
}

/// The pool that reads are served from: `size` connections kept, up to `size + overflow` under load. Its connections
/// are opened on the calling runtime, whichever task asks for one.
pub fn pool(config: &Config, size: usize, overflow: usize) -> StoreResult<Pool> {
    let manager = Manager::from_connect(
        config.clone(),
        OnRuntime(tokio::runtime::Handle::current()),
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager)
        .max_size((size + overflow).max(1))
        .build()
        .map_err(|error| StoreError::Unavailable(format!("cannot build the Postgres pool: {error}")))?;
    // Overflow connections are closed once they have been idle a while, so the pool shrinks back to `size`. The
    // trimmer holds the pool weakly: a strong handle kept the pool, and every connection in it, open forever after
    // its store was dropped.
    let weak = pool.weak();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            let Some(trimmer) = weak.upgrade().filter(|pool| !pool.is_closed()) else {
                return;
            };
            let mut kept = 0;
            trimmer.retain(|_, metrics| {
                kept += 1;
                kept <= size || metrics.last_used() < Duration::from_secs(30)
            });
        }
    });
    Ok(pool)
}

/// Applies pending migrations (when `apply`), or fails if any are pending. Holds an advisory lock meanwhile, so
/// concurrent instances migrate one at a time.
pub async fn migrate(config: &Config, apply: bool) -> StoreResult<MigrationReport> {
    let location = describe(config);
    let mut client = connect(config).await?;
    let fail =
        |error: tokio_postgres::Error| StoreError::Unavailable(format!("{location}: migrating: {}", cause(&error)));
    client.batch_execute("SELECT pg_advisory_lock(hashtext('dossier.migrate'))").await.map_err(fail)?;
    let result = migrate_locked(&mut client, &location, apply).await;
    // Closing the connection releases the lock even if this fails.
    let _ = client.batch_execute("SELECT pg_advisory_unlock(hashtext('dossier.migrate'))").await;
    result
}

async fn migrate_locked(client: &mut Client, location: &str, apply: bool) -> StoreResult<MigrationReport> {
    let fail =
        |error: tokio_postgres::Error| StoreError::Unavailable(format!("{location}: migrating: {}", cause(&error)));
    // The bookkeeping table is the one piece of DDL the runner itself owns.
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(fail)?;
    let applied: Vec<AppliedMigration> = client
        .query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[])
        .await
        .map_err(fail)?
        .iter()
        .map(|row| AppliedMigration { version: row.get::<_, i32>(0) as u32, checksum: row.get(1) })
        .collect();
    let pending = migrate::pending(migrate::POSTGRES, &applied, location)?;
    let mut report =
        MigrationReport { from_version: applied.len() as u32, to_version: applied.len() as u32, applied: Vec::new() };
    if pending.is_empty() {
        return Ok(report);
    }
    if !apply {
        return Err(StoreError::Unavailable(format!(
            "{location}: database schema is at version {}, this binary needs {}: run `dossier migrate`",
            report.from_version,
            migrate::POSTGRES.len()
        )));
    }
    for migration in pending {
        let transaction = client.transaction().await.map_err(fail)?;
        transaction.batch_execute(migration.sql).await.map_err(|error| {
            StoreError::Unavailable(format!(
                "{location}: migration {:04}_{} failed: {}",
                migration.version,
                migration.name,
                cause(&error)
            ))
        })?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&(migration.version as i32), &migration.name, &migration.checksum()],
            )
            .await
            .map_err(fail)?;
        transaction.commit().await.map_err(fail)?;
        tracing::info!(database = %location, version = migration.version, name = migration.name, "migration_applied");
        report.to_version = migration.version;
        report.applied.push(format!("{:04}_{}", migration.version, migration.name));
    }
    Ok(report)
}

/// Creates an empty database `name` on the server of `admin` and returns the configuration pointing at it
/// (for tests and benchmarks that need a scratch database).
pub async fn create_database(admin: &Config, name: &str) -> StoreResult<Config> {
    check_database_name(name)?;
    let client = connect(admin).await?;
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|error| StoreError::Unavailable(format!("{}: creating {name}: {}", describe(admin), cause(&error))))?;
    let mut config = admin.clone();
    config.dbname(name);
    Ok(config)
}

/// Drops the database `name` (closing its connections first).
pub async fn drop_database(admin: &Config, name: &str) -> StoreResult<()> {
    check_database_name(name)?;
    let client = connect(admin).await?;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(|error| StoreError::Unavailable(format!("{}: dropping {name}: {}", describe(admin), cause(&error))))
}

fn check_database_name(name: &str) -> StoreResult<()> {
    let valid = !name.is_empty()
        && name.len() < 64
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if valid { Ok(()) } else { Err(StoreError::Invalid(format!("unsafe database name {name:?}"))) }
}
