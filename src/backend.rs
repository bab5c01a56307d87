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
    open_listening(settings, access, true).await
}

/// Opens the store for a server. With Redis the server learns of the other instances' commits through Redis
/// ([`coordination::fanout`](crate::coordination::fanout)), so its Postgres store holds no `LISTEN` connection;
/// command-line tools ([`open`]) keep listening.
pub async fn open_for_server(settings: &Settings) -> Result<Arc<dyn EventStore>, AppError> {
    open_listening(settings, Access::Serve, settings.redis_url.is_none()).await
}

/// Opens the store; a Postgres store holds a `LISTEN` connection if `listen`.
async fn open_listening(settings: &Settings, access: Access, listen: bool) -> Result<Arc<dyn EventStore>, AppError> {
    let migrate = access == Access::Serve && settings.auto_migrate;
    if settings.log_poll_interval_ms == 0 {
        return Err(AppError::Usage("LOG_POLL_INTERVAL_MS must be greater than 0".into()));
    }
    let poll_interval = std::time::Duration::from_millis(settings.log_poll_interval_ms);
    match &settings.database_url {
        Some(url) => {
            let options = PostgresOptions {
                pool_size: settings.pool_size,
                pool_overflow: settings.pool_overflow,
                migrate,
                listen,
                poll_interval,
                ..PostgresOptions::default()
            };
            Ok(Arc::new(PostgresStore::connect(url.expose_secret(), options).await?))
        }
        None => {
            let create = access == Access::Serve;
            let options = SqliteOptions { migrate, create, poll_interval, ..SqliteOptions::default() };
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

/// The runtime configuration the settings describe (embedder, chunking, limits).
pub fn runtime_config(settings: &Settings) -> Result<dossier_actors::runtime::RuntimeConfig, AppError> {
    use dossier_actors::embed::{OpenAiEmbedder, OpenAiEmbedderConfig};
    let mut config = dossier_actors::runtime::RuntimeConfig::new(settings.data_dir.clone());
    config.chunking =
        dossier_actors::chunk::ChunkSettings { max_chars: settings.chunk_max_chars, overlap: settings.chunk_overlap };
    if config.chunking.max_chars == 0 || config.chunking.overlap >= config.chunking.max_chars {
        return Err(AppError::Usage(format!(
            "invalid CHUNK_MAX_CHARS/CHUNK_OVERLAP: {} / {} (overlap must be smaller)",
            config.chunking.max_chars, config.chunking.overlap
        )));
    }
    config.max_upload_bytes = settings.max_upload_bytes;
    config.deduplicate = settings.deduplicate;
    if let Some(dir) = &settings.embedding_model_dir {
        config.embedder = Some(local_embedder(dir)?);
    } else if let (Some(base_url), Some(model)) = (&settings.llm_base_url, &settings.embedding_model) {
        let mut embedder = OpenAiEmbedderConfig::new(base_url.clone(), model.clone());
        embedder.api_key = settings.llm_api_key.clone();
        embedder.dimensions = settings.embedding_dimensions;
        let embedder = OpenAiEmbedder::new(embedder).map_err(|error| AppError::Usage(error.to_string()))?;
        config.embedder = Some(Arc::new(embedder));
    }
    Ok(config)
}

/// Starts the actor runtime on a store.
pub async fn start_runtime(
    config: dossier_actors::runtime::RuntimeConfig,
    store: Arc<dyn EventStore>,
) -> Result<dossier_actors::runtime::Runtime, AppError> {
    dossier_actors::runtime::Runtime::start(store, config).await.map_err(|error| AppError::Usage(error.to_string()))
}

/// Opens the read model beside the configured log (the store must have been opened, so its migrations ran).
pub async fn open_read_model(
    settings: &Settings,
) -> Result<Arc<dyn dossier_projections::read_model::ReadModelStore>, AppError> {
    use dossier_projections::read_model::{postgres::PostgresReadModel, sqlite::SqliteReadModel};
    let read_model: Arc<dyn dossier_projections::read_model::ReadModelStore> = match &settings.database_url {
        Some(url) => {
            let config = dossier_events::postgres::connect::parse_url(url.expose_secret())?;
            Arc::new(PostgresReadModel::connect(config, settings.pool_size).await.map_err(read_model_error)?)
        }
        None => Arc::new(SqliteReadModel::open(&settings.data_dir).await.map_err(read_model_error)?),
    };
    Ok(read_model)
}

fn read_model_error(error: dossier_projections::read_model::ReadModelError) -> AppError {
    AppError::Usage(error.to_string())
}

/// Starts a projection under its supervising actor, publishing its progress on `status`.
pub async fn start_projection(
    store: Arc<dyn EventStore>,
    projection: Arc<dyn dossier_projections::runner::Projection>,
    status: tokio::sync::watch::Sender<dossier_projections::runner::ProjectionStatus>,
) -> Result<ractor::ActorRef<dossier_actors::runtime::projection::ProjectionMsg>, AppError> {
    use dossier_actors::runtime::projection::{ProjectionActor, ProjectionArgs};
    use dossier_projections::runner::RunnerConfig;
    let name = projection.name().to_owned();
    let args = ProjectionArgs {
        log: store,
        projection,
        config: RunnerConfig::default(),
        policy: dossier_actors::runtime::restart::RestartPolicy::default(),
        status,
    };
    let (actor, _) = ractor::Actor::spawn(None, ProjectionActor, args)
        .await
        .map_err(|error| AppError::Usage(format!("cannot start the {name} projection: {error}")))?;
    Ok(actor)
}

/// The vector index's embedding configuration: the configured embedder's model and vector length, or BM25 only.
pub fn embedding_config(
    runtime: &dossier_actors::runtime::RuntimeConfig,
) -> Result<dossier_projections::vector::EmbeddingConfig, AppError> {
    let dense = match &runtime.embedder {
        None => None,
        Some(embedder) => {
            let dimensions = embedder.dimensions().ok_or_else(|| {
                AppError::Usage(format!(
                    "EMBEDDING_DIMENSIONS must be set for EMBEDDING_MODEL={}: the vector index needs the vector \
                     length to create its collection",
                    embedder.model()
                ))
            })?;
            Some((embedder.model().to_owned(), dimensions))
        }
    };
    Ok(dossier_projections::vector::EmbeddingConfig { dense })
}

/// Opens the vector index: the Qdrant server at `QDRANT_URL`, or qdrant-edge under `<data dir>/vectors`.
pub fn open_vector_index(settings: &Settings) -> Result<Arc<dyn dossier_projections::vector::VectorIndex>, AppError> {
    if let Some(url) = &settings.qdrant_url {
        let api_key = settings.qdrant_api_key.as_ref().map(|key| key.expose_secret().to_owned());
        let index = dossier_projections::vector::server::ServerIndex::connect(url, api_key)
            .map_err(|error| AppError::Usage(error.to_string()))?;
        return Ok(Arc::new(index));
    }
    let root = settings.data_dir.join("vectors");
    let index = dossier_projections::vector::edge::EdgeIndex::open(&root)
        .map_err(|error| AppError::Usage(error.to_string()))?;
    Ok(Arc::new(index))
}

/// The BM25 embedder with the default (tuned) parameters.
pub fn bm25() -> Result<Arc<dossier_projections::vector::Bm25>, AppError> {
    let bm25 = dossier_projections::vector::Bm25::new(dossier_projections::vector::Bm25Params::default())
        .map_err(AppError::Usage)?;
    Ok(Arc::new(bm25))
}

/// Everything the projections need, opened from the settings.
pub struct Projections {
    /// The read model.
    pub read_model: Arc<dyn dossier_projections::read_model::ReadModelStore>,
    /// The vector index's projection.
    pub vector: Arc<dossier_projections::vector::VectorProjection>,
    /// The BM25 embedder.
    pub bm25: Arc<dossier_projections::vector::Bm25>,
}

impl Projections {
    /// The projection a command line names: `vector_index`, or the read model.
    pub fn by_name(&self, name: &str) -> Arc<dyn dossier_projections::runner::Projection> {
        match name {
            "vector_index" => self.vector.clone(),
            _ => Arc::new(dossier_projections::runner::ReadModelProjection::new(Arc::clone(&self.read_model))),
        }
    }
}

/// Opens the projections for a command-line tool: the embedding configuration comes from the settings.
pub async fn open_projections_from_settings(
    settings: &Settings,
    store: Arc<dyn EventStore>,
) -> Result<Projections, AppError> {
    let embedding = embedding_config(&runtime_config(settings)?)?;
    open_projections(settings, store, embedding).await
}

/// Opens the read model and the vector index (of `config`) for `store`.
pub async fn open_projections(
    settings: &Settings,
    store: Arc<dyn EventStore>,
    config: dossier_projections::vector::EmbeddingConfig,
) -> Result<Projections, AppError> {
    let read_model = open_read_model(settings).await?;
    let bm25 = bm25()?;
    let vector = Arc::new(dossier_projections::vector::VectorProjection::new(
        store,
        open_vector_index(settings)?,
        Arc::clone(&read_model),
        config,
        Arc::clone(&bm25),
    ));
    Ok(Projections { read_model, vector, bm25 })
}

#[cfg(feature = "local-embeddings")]
fn local_embedder(dir: &std::path::Path) -> Result<Arc<dyn dossier_actors::embed::Embedder>, AppError> {
    let embedder =
        dossier_actors::embed::LocalEmbedder::load(dir, 32).map_err(|error| AppError::Usage(error.to_string()))?;
    Ok(Arc::new(embedder))
}

#[cfg(not(feature = "local-embeddings"))]
fn local_embedder(dir: &std::path::Path) -> Result<Arc<dyn dossier_actors::embed::Embedder>, AppError> {
    Err(AppError::Usage(format!(
        "EMBEDDING_MODEL_DIR={} needs a dossier built with the local-embeddings feature",
        dir.display()
    )))
}

/// Opens the record of replayable API responses beside the log (the store must have been opened, so its
/// migrations ran).
pub async fn open_idempotency(
    settings: &Settings,
) -> Result<Arc<dyn crate::api::idempotency::IdempotencyStore>, AppError> {
    use crate::api::idempotency::{PostgresIdempotency, SqliteIdempotency};
    if settings.idempotency_retention_hours == 0 {
        return Err(AppError::Usage("IDEMPOTENCY_RETENTION_HOURS must be at least 1".into()));
    }
    let retention = settings.idempotency_retention();
    Ok(match &settings.database_url {
        Some(url) => {
            let config = dossier_events::postgres::connect::parse_url(url.expose_secret())?;
            let pool = dossier_events::postgres::connect::pool(&config, 2, settings.pool_overflow.min(8))?;
            Arc::new(PostgresIdempotency::new(pool, retention))
        }
        None => Arc::new(SqliteIdempotency::open(&settings.data_dir, retention).map_err(AppError::Usage)?),
    })
}
