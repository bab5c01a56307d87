//! The HTTP server: binds, serves the API ([`crate::api`]) until shutdown, then drains open connections.

use std::net::SocketAddr;
use std::sync::Arc;

use dossier_actors::runtime::Runtime;
use dossier_events::EventStore;
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::runner::{Projection, READ_MODEL, ReadModelProjection, initial_status};
use dossier_projections::vector::search::{FusionParams, Searcher};
use dossier_projections::vector::{VECTOR_INDEX, VectorIndex};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::auth::Keys;
use crate::api::chat::ChatModel;
use crate::api::context::{ApiContext, OptionalProbes};
use crate::api::health::{Probe, TcpProbe};
use crate::api::idempotency::purge_periodically;
use crate::api::live::LiveFeed;
use crate::api::metrics::{Metrics, observe_log};
use crate::api::projections::{ProjectionHandle, rebuild_with};
use crate::api::retrieval::Retrieval;
use crate::coordination::Coordination;
use crate::coordination::lease::ProjectionKeeper;
use crate::error::AppError;
use crate::settings::Settings;

mod connections;

/// A whole dossier server: the log, the actor runtime, the read-model projection (while this instance holds its
/// lease) and the bound HTTP API.
pub struct Server {
    app: Application,
    runtime: Runtime,
    keepers: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the configured backends, starts the runtime and the projection keeper, and binds `bind`.
    pub async fn start(settings: &Settings, bind: SocketAddr) -> Result<Self, AppError> {
        use crate::backend;
        if settings.projection_lease_ms < 300 {
            return Err(AppError::Usage(format!(
                "PROJECTION_LEASE_MS must be at least 300, got {}",
                settings.projection_lease_ms
            )));
        }
        let store = backend::open_for_server(settings).await?;
        let durable = backend::open_idempotency(settings).await?;
        let coordination = Coordination::connect(settings, durable).await?;
        // Every part of this instance appends through it, so each of its commits is announced.
        let store = coordination.announcing(store);
        let config = backend::runtime_config(settings)?;
        let embedding = backend::embedding_config(&config)?;
        let embedder = config.embedder.clone();
        let runtime = backend::start_runtime(config, Arc::clone(&store)).await?;
        let opened = backend::open_projections(settings, Arc::clone(&store), embedding).await?;
        let read_model = Arc::clone(&opened.read_model);
        let instance_id = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
        let ttl = std::time::Duration::from_millis(settings.projection_lease_ms);
        let runnable: [(&'static str, Arc<dyn Projection>); 2] = [
            (READ_MODEL, Arc::new(ReadModelProjection::new(Arc::clone(&read_model)))),
            (VECTOR_INDEX, opened.vector.clone()),
        ];
        let mut keepers = Vec::new();
        let mut projections = Vec::new();
        for (name, projection) in runnable {
            let (status, progress) = watch::channel(initial_status(projection.name(), 0));
            let (running_here, running) = watch::channel(false);
            keepers.push(ProjectionKeeper {
                name,
                holder: instance_id.clone(),
                ttl,
                leases: Arc::clone(&coordination.leases),
                start: {
                    let (store, projection) = (Arc::clone(&store), Arc::clone(&projection));
                    Arc::new(move |status| {
                        let (store, projection) = (Arc::clone(&store), Arc::clone(&projection));
                        Box::pin(async move { backend::start_projection(store, projection, status).await })
                    })
                },
                status,
                running_here,
            });
            projections.push(ProjectionHandle {
                name,
                key: projection.name().to_owned(),
                status: progress,
                running_here: running,
                rebuild: rebuild_with(Arc::clone(&store), projection),
            });
        }
        let vector_probe: Arc<dyn Probe> = Arc::new(VectorIndexProbe(Arc::clone(opened.vector.index())));
        // One searcher for the server's life; it resolves the live generation from the read model per query.
        let searcher = Searcher::new(
            Arc::clone(opened.vector.index()),
            Arc::clone(&read_model),
            opened.vector.config().clone(),
            Arc::clone(&opened.bm25),
            FusionParams::default(),
        );
        let retrieval = Retrieval::new(searcher, embedder, Arc::clone(&opened.bm25));
        let services = Services {
            store,
            runtime: runtime.clone(),
            read_model,
            projections,
            coordination,
            instance_id,
            vector_probe: Some(vector_probe),
            retrieval,
        };
        let app = Application::build(bind, services, settings).await?;
        let keepers = keepers.into_iter().map(|keeper| tokio::spawn(keeper.run(app.shutdown.subscribe()))).collect();
        Ok(Self { app, runtime, keepers })
    }

    /// The address the API listens on.
    pub fn address(&self) -> SocketAddr {
        self.app.address()
    }

    /// Serves until `shutdown` completes, then stops the projection (releasing its lease) and the runtime.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        self.app.run_until(shutdown).await;
        for keeper in self.keepers {
            if let Err(error) = keeper.await {
                tracing::warn!(error = %error, "projection_keeper_failed");
            }
        }
        self.runtime.shutdown();
    }
}

/// What the server serves from: the running parts of dossier.
pub struct Services {
    /// The event log.
    pub store: Arc<dyn EventStore>,
    /// The actor runtime.
    pub runtime: Runtime,
    /// The read model.
    pub read_model: Arc<dyn ReadModelStore>,
    /// The projections (each runs under a lease).
    pub projections: Vec<ProjectionHandle>,
    /// Rate limits, recorded responses and leases.
    pub coordination: Coordination,
    /// This instance's id, as a lease holder.
    pub instance_id: String,
    /// The vector index's health probe.
    pub vector_probe: Option<Arc<dyn Probe>>,
    /// Search over the vector index.
    pub retrieval: Retrieval,
}

/// A bound, not yet running server (binding first lets tests ask for port 0 and learn the real port).
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    context: Arc<ApiContext>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Binds the listen address and assembles the API.
    pub async fn build(bind: SocketAddr, services: Services, settings: &Settings) -> Result<Self, AppError> {
        let keys = Keys::new(settings.secret_key.as_ref().map(|key| key.expose_secret())).map_err(AppError::Usage)?;
        if settings.secret_key.is_none() {
            tracing::warn!("SECRET_KEY is not set: every authenticated route will answer 401");
        }
        let chat = chat_model(settings)?;
        let listener =
            TcpListener::bind(bind).await.map_err(|error| AppError::io(format!("cannot listen on {bind}"), error))?;
        let address = listener.local_addr().map_err(|error| AppError::io("reading the bound address", error))?;
        let (shutdown, shutdown_watch) = watch::channel(false);
        let probe = |backend, url: &str, port, redis| {
            TcpProbe::from_url(backend, url, port, redis).map(|probe| Arc::new(probe) as Arc<dyn Probe>)
        };
        let probes = OptionalProbes {
            vector_index: services.vector_probe.clone(),
            llm: settings.llm_base_url.as_deref().and_then(|url| probe("openai-compatible", url, 80, false)),
            redis: settings.redis_url.as_ref().and_then(|url| probe("redis", url.expose_secret(), 6379, true)),
        };
        let metrics = Arc::new(Metrics::default());
        // Followed from the head as of now, before the first request can append.
        let head = services.store.head_position().await?;
        let live = LiveFeed::start(Arc::clone(&services.store), head, shutdown_watch.clone());
        // Counting events for /metrics is background work too.
        dossier_projections::background::runtime().spawn(observe_log(Arc::clone(&live), head, Arc::clone(&metrics)));
        if let Some(fanout) = services.coordination.fanout {
            fanout.start(Arc::clone(&services.store), Arc::clone(&metrics), shutdown_watch.clone());
        }
        tokio::spawn(purge_periodically(Arc::clone(&services.coordination.idempotency), shutdown_watch.clone()));
        let context = ApiContext {
            store: services.store,
            runtime: services.runtime,
            read_model: services.read_model,
            projections: services.projections,
            leases: services.coordination.leases,
            instance_id: services.instance_id,
            lease_ttl: std::time::Duration::from_millis(settings.projection_lease_ms),
            keys,
            idempotency: services.coordination.idempotency,
            metrics,
            live,
            rate_limiter: services.coordination.rate_limiter,
            max_upload_bytes: settings.max_upload_bytes,
            probes,
            rebuilds: Default::default(),
            retrieval: services.retrieval,
            chat,
            shutdown: shutdown_watch,
        };
        Ok(Self { listener, address, context: Arc::new(context), shutdown })
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then ends live streams and waits for open connections to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(address = %self.address, backend = self.context.store.backend_name(), "server_listening");
        let sender = self.shutdown;
        let signal = async move {
            shutdown.await;
            let _ = sender.send(true);
        };
        // warp's `run`, but for how failed connections are logged (see `connections`).
        let service = warp::service(crate::api::filter(self.context));
        let graceful = GracefulShutdown::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        connections::accept_failed(error).await;
                        continue;
                    }
                },
                () = &mut signal => break,
            };
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    connections::connection_ended(error.as_ref());
                }
            });
        }
        drop(self.listener);
        graceful.shutdown().await;
        tracing::info!("server_stopped");
    }
}

/// The chat model `POST /ask` answers with: `CHAT_MODEL` at `LLM_BASE_URL`, or none (extractive answers).
fn chat_model(settings: &Settings) -> Result<Option<ChatModel>, AppError> {
    let Some(model) = &settings.chat_model else { return Ok(None) };
    let base_url = settings.llm_base_url.as_deref().ok_or_else(|| {
        AppError::Usage(format!("CHAT_MODEL={model} needs LLM_BASE_URL (an OpenAI-compatible endpoint)"))
    })?;
    if settings.llm_timeout_ms == 0 {
        return Err(AppError::Usage("LLM_TIMEOUT_MS must be greater than 0".into()));
    }
    let timeout = std::time::Duration::from_millis(settings.llm_timeout_ms);
    ChatModel::new(base_url, settings.llm_api_key.as_ref(), model, timeout).map(Some).map_err(AppError::Usage)
}

/// The vector index's health: the backend answers (the embedded engine's directory is readable; a server answers its
/// health check).
struct VectorIndexProbe(Arc<dyn VectorIndex>);

#[async_trait::async_trait]
impl Probe for VectorIndexProbe {
    fn backend(&self) -> &'static str {
        match self.0.backend_name() {
            "embedded" => "qdrant-edge",
            other => other,
        }
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot_listen_for_sigterm");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown_requested");
}
