//! Opens the configured event store: Postgres when `DATABASE_URL` is set, the embedded SQLite file otherwise.

use std::sync::Arc;

use dossier_events::EventStore;
use dossier_events::migrate::MigrationReport;
use dossier_events::postgres::{PostgresOptions, PostgresStore};
use dossier_events::sqlite::{SqliteOptions, SqliteStore};
use secrecy::ExposeSecret;

use crate::error::AppError;
use crate::settings::Settings;

/// How a command uses the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The server: creates and migrates the store when allowed by the settings.
    Serve,
    /// Read-only tools (`events`, `verify`): the store must exist and be migrated.
    Inspect,
}

/// Opens the store the settings name.
pub async fn open(settings: &Settings, access: Access) -> Result<Arc<dyn EventStore>, AppError> {
    let migrate = access == Access::Serve && settings.auto_migrate;
    match &settings.database_url {
        Some(url) => {
            let options = PostgresOptions {
                pool_size: settings.pool_size,
                pool_overflow: settings.pool_overflow,
                migrate,
                ..PostgresOptions::default()
            };
            Ok(Arc::new(PostgresStore::connect(url.expose_secret(), options).await?))
        }
        None => {
            let options = SqliteOptions { migrate, create: access == Access::Serve, ..SqliteOptions::default() };
            Ok(Arc::new(SqliteStore::open(&settings.data_dir, options).await?))
        }
    }
}

/// Applies pending migrations to the configured backend.
pub async fn migrate(settings: &Settings) -> Result<MigrationReport, AppError> {
    Ok(match &settings.database_url {
        Some(url) => PostgresStore::migrate(url.expose_secret()).await?,
        None => SqliteStore::migrate(&settings.data_dir).await?,
    })
}
