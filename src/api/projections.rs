//! `GET /projections` and `POST /projections/{name}/rebuild` (admin): each projection's generation, checkpoint,
//! head, lag and state, and blue/green rebuilds run in the background with their progress (events/s, ETA).
//!
//! Every projection the server knows is a [`ProjectionHandle`]: its name (the key of its live generation and
//! checkpoints in the read model's tables), its runner's progress and lease, and how to rebuild it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dossier_projections::rebuild::rebuild as rebuild_projection;
use dossier_projections::runner::{ProjectionStatus, RunnerConfig, RunnerState, initial_status};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;
use crate::api::request::ApiRequest;
use crate::coordination::lease::while_holding;

/// Rebuilds a projection into a new generation and switches it in, publishing progress on the sender; returns the
/// seconds it took.
pub type RebuildProjection =
    Arc<dyn Fn(watch::Sender<ProjectionStatus>) -> BoxFuture<'static, Result<f64, String>> + Send + Sync>;

/// A projection as the API sees it.
pub struct ProjectionHandle {
    /// Its name in the API.
    pub name: &'static str,
    /// The name its live generation and checkpoints are recorded under (the vector index's carries its embedding
    /// configuration, e.g. `vector_index:bm25`).
    pub key: String,
    /// Its runner's progress (while it runs in this instance).
    pub status: watch::Receiver<ProjectionStatus>,
    /// Whether this instance holds its lease and runs it.
    pub running_here: watch::Receiver<bool>,
    /// How to rebuild it.
    pub rebuild: RebuildProjection,
}

/// A projection's blue/green rebuild.
pub fn rebuild_with(
    log: Arc<dyn dossier_events::EventStore>,
    projection: Arc<dyn dossier_projections::runner::Projection>,
) -> RebuildProjection {
    Arc::new(move |status| {
        let (log, projection) = (Arc::clone(&log), Arc::clone(&projection));
        Box::pin(async move {
            let config = RunnerConfig::rebuild();
            let report = rebuild_projection(log, projection.as_ref(), config, status).await;
            report.map(|report| report.seconds).map_err(|error| error.to_string())
        })
    })
}

/// The rebuilds started through this instance's API, by projection.
#[derive(Default)]
pub struct Rebuilds {
    // An async mutex: held across taking the rebuild lease, so two requests cannot both start one.
    current: tokio::sync::Mutex<HashMap<&'static str, Rebuild>>,
}

struct Rebuild {
    started: Instant,
    status: watch::Receiver<ProjectionStatus>,
    outcome: Arc<Mutex<Option<Result<f64, String>>>>,
}

/// A rebuild's progress.
#[derive(Debug, Serialize)]
pub struct RebuildProgress {
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// The generation being filled.
    pub generation: u32,
    /// Its checkpoint.
    pub checkpoint: u64,
    /// The head it is catching up with.
    pub head: u64,
    /// Events applied per second so far.
    pub events_per_sec: f64,
    /// Estimated seconds to catch up (while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One projection.
#[derive(Debug, Serialize)]
pub struct ProjectionView {
    /// Its name.
    pub name: String,
    /// The live generation.
    pub generation: u32,
    /// The last position it applied.
    pub checkpoint: u64,
    /// The log's head.
    pub head: u64,
    /// Events not yet applied.
    pub lag_events: u64,
    /// Age of the newest applied event when it was applied.
    pub lag_seconds: f64,
    /// `starting`, `running` or `stopped` here; `standby` when another instance holds its lease.
    pub state: &'static str,
    /// Whether this instance runs it (holds its lease).
    pub runs_here: bool,
    /// Where its lease lives: `in-process` or `redis`.
    pub lease: &'static str,
    /// Why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rebuild started through this server, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildProgress>,
}

/// The projections.
#[derive(Debug, Serialize)]
pub struct ProjectionList {
    /// Each projection.
    pub projections: Vec<ProjectionView>,
}

/// `GET /projections`.
pub async fn list(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    request.query(&[])?;
    let head = context.store.head_position().await?;
    let mut projections = Vec::with_capacity(context.projections.len());
    for handle in &context.projections {
        projections.push(view(context, handle, head).await?);
    }
    Ok(StoredResponse::json(StatusCode::OK, &ProjectionList { projections })?.into_response())
}

async fn view(context: &ApiContext, handle: &ProjectionHandle, head: u64) -> Result<ProjectionView, ApiError> {
    let live = handle.status.borrow().clone();
    let runs_here = *handle.running_here.borrow();
    let generation = context.read_model.live_generation(&handle.key).await?;
    // The stored checkpoint is the truth wherever the projection runs.
    let checkpoint = context.read_model.checkpoint(&handle.key, generation).await?;
    let (state, error) = match (&live.state, &checkpoint) {
        (_, Some(stored)) if stored.state == "stopped" => {
            ("stopped", Some(stored.error.clone().unwrap_or_else(|| "stopped".into())))
        }
        _ if !runs_here => ("standby", None),
        (RunnerState::Starting, _) => ("starting", None),
        (RunnerState::Running, _) => ("running", None),
        (RunnerState::Stopped { position, error }, _) => ("stopped", Some(format!("position {position}: {error}"))),
    };
    let checkpoint = checkpoint.map_or(0, |stored| stored.position);
    Ok(ProjectionView {
        name: handle.name.to_owned(),
        generation,
        checkpoint,
        head,
        lag_events: head.saturating_sub(checkpoint),
        lag_seconds: if runs_here { live.lag_seconds } else { 0.0 },
        state,
        runs_here,
        lease: context.leases.backend(),
        error,
        rebuild: context.rebuilds.progress(handle.name, head).await,
    })
}

/// The answer to a rebuild request.
#[derive(Debug, Serialize)]
pub struct RebuildStarted {
    /// The projection.
    pub name: String,
    /// Always `running`.
    pub state: &'static str,
    /// The generation being filled.
    pub generation: u32,
}

/// `POST /projections/{name}/rebuild`: 202 and the rebuild runs in the background; 409 while one is running (here,
/// or in another instance: the rebuild takes the lease `<name>:rebuild`).
pub async fn rebuild(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    request.query(&[])?;
    let name = request.params.first().map_or("", String::as_str);
    let Some(handle) = context.projections.iter().find(|handle| handle.name == name) else {
        let known: Vec<&str> = context.projections.iter().map(|handle| handle.name).collect();
        return Err(ApiError::NotFound(format!(
            "no projection named {:?} (known: {})",
            name.chars().take(64).collect::<String>(),
            known.join(", ")
        )));
    };
    let generation = context.read_model.live_generation(handle.name).await? + 1;
    let mut current = context.rebuilds.current.lock().await;
    let running = current.get(handle.name).is_some_and(|rebuild| rebuild.outcome.lock().is_ok_and(|o| o.is_none()));
    if running {
        return Err(ApiError::InvalidState(format!("a rebuild of {name} is already running")));
    }
    let lease = format!("{}:rebuild", handle.name);
    if !context.leases.acquire(&lease, &context.instance_id, context.lease_ttl).await.map_err(ApiError::Unavailable)? {
        return Err(ApiError::InvalidState(format!("a rebuild of {name} is already running in another instance")));
    }
    let (sender, status) = watch::channel(initial_status(handle.name, generation));
    let outcome = Arc::new(Mutex::new(None));
    let finished = Arc::clone(&outcome);
    let (leases, holder, ttl) = (Arc::clone(&context.leases), context.instance_id.clone(), context.lease_ttl);
    let (projection, work) = (handle.name, (handle.rebuild)(sender));
    tokio::spawn(async move {
        // Renews the lease acquired above while the rebuild runs, and releases it after.
        let result = match while_holding(leases.as_ref(), &lease, &holder, ttl, work).await {
            Ok(Some(result)) => result,
            Ok(None) => Err("the rebuild lease was lost; the rebuild resumes from its checkpoint next time".into()),
            Err(error) => Err(format!("rebuild lease: {error}")),
        };
        if let Err(error) = &result {
            tracing::error!(projection, error = %error, "projection_rebuild_failed");
        }
        if let Ok(mut outcome) = finished.lock() {
            *outcome = Some(result);
        }
    });
    current.insert(handle.name, Rebuild { started: Instant::now(), status, outcome });
    tracing::info!(projection = handle.name, generation, "projection_rebuild_started");
    let started = RebuildStarted { name: handle.name.to_owned(), state: "running", generation };
    Ok(StoredResponse::json(StatusCode::ACCEPTED, &started)?.into_response())
}

impl Rebuilds {
    async fn progress(&self, name: &str, head: u64) -> Option<RebuildProgress> {
        let current = self.current.lock().await;
        let rebuild = current.get(name)?;
        let status = rebuild.status.borrow().clone();
        let elapsed = rebuild.started.elapsed().as_secs_f64();
        let events_per_sec = if elapsed > 0.0 { status.checkpoint as f64 / elapsed } else { 0.0 };
        let outcome = rebuild.outcome.lock().ok()?.clone();
        let (state, error) = match outcome {
            None => ("running", None),
            Some(Ok(_)) => ("done", None),
            Some(Err(error)) => ("failed", Some(error)),
        };
        let remaining = head.saturating_sub(status.checkpoint) as f64;
        let eta_seconds = (state == "running" && events_per_sec > 0.0).then(|| remaining / events_per_sec);
        Some(RebuildProgress {
            state,
            generation: status.generation,
            checkpoint: status.checkpoint,
            head,
            events_per_sec,
            eta_seconds,
            error,
        })
    }
}
