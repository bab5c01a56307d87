//! What the handlers share: the log, the runtime, the read model, retrieval, keys, limits and the server's shutdown
//! signal.

use std::sync::Arc;

use dossier_actors::runtime::Runtime;
use dossier_events::{EventMetadata, EventStore};
use dossier_projections::read_model::ReadModelStore;
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::auth::{Claims, Keys};
use crate::api::chat::ChatModel;
use crate::api::error::ApiError;
use crate::api::health::Probe;
use crate::api::idempotency::IdempotencyStore;
use crate::api::live::LiveFeed;
use crate::api::metrics::Metrics;
use crate::api::projections::{ProjectionHandle, Rebuilds};
use crate::api::rate_limit::RateLimiter;
use crate::api::request::ApiRequest;
use crate::api::retrieval::Retrieval;
use crate::coordination::lease::LeaseStore;

/// Everything the API's handlers use; shared behind an `Arc`.
pub struct ApiContext {
    /// The event log.
    pub store: Arc<dyn EventStore>,
    /// The actors that take document commands and run the pipeline.
    pub runtime: Runtime,
    /// The read model (lists).
    pub read_model: Arc<dyn ReadModelStore>,
    /// The projections: progress, lease and rebuild of each.
    pub projections: Vec<ProjectionHandle>,
    /// Leases (projections, rebuilds).
    pub leases: Arc<dyn LeaseStore>,
    /// This instance's id, as a lease holder.
    pub instance_id: String,
    /// Time to live of the leases this instance takes.
    pub lease_ttl: std::time::Duration,
    /// Token and cursor keys.
    pub keys: Keys,
    /// Recorded command responses.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Request and log counters.
    pub metrics: Arc<Metrics>,
    /// The instance's one follower of the log, fanned out to live clients.
    pub live: Arc<LiveFeed>,
    /// Per-subject request allowance.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: usize,
    /// Optional components' health probes (`None`: the component is disabled).
    pub probes: OptionalProbes,
    /// Rebuilds started through the API.
    pub rebuilds: Rebuilds,
    /// Search over the vector index (`POST /search`, `POST /ask`).
    pub retrieval: Retrieval,
    /// The chat model that writes `POST /ask` answers (`None`: answers are extractive).
    pub chat: Option<ChatModel>,
    /// Becomes true when the server shuts down (ends live streams, so connections drain).
    pub shutdown: watch::Receiver<bool>,
}

/// Probes of the components that may be absent.
#[derive(Default)]
pub struct OptionalProbes {
    /// The vector index: the vector projection registers its probe here when it runs in this process.
    pub vector_index: Option<Arc<dyn Probe>>,
    /// The LLM endpoint (`LLM_BASE_URL`).
    pub llm: Option<Arc<dyn Probe>>,
    /// Redis (`REDIS_URL`).
    pub redis: Option<Arc<dyn Probe>>,
}

impl ApiContext {
    /// The event metadata of a command sent with `request`: the caller, their tenant, the request id, the
    /// correlation id (`X-Correlation-Id`, or the command's own id) and the idempotency key.
    pub fn event_metadata(
        &self,
        request: &ApiRequest,
        claims: &Claims,
        idempotency_key: Option<&str>,
    ) -> Result<EventMetadata, ApiError> {
        let command_id = Uuid::now_v7();
        Ok(EventMetadata {
            tenant_id: claims.tenant.clone(),
            actor: claims.sub.clone(),
            correlation_id: request.correlation_id()?.unwrap_or(command_id),
            causation_id: command_id,
            request_id: request.request_id.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
        })
    }
}
