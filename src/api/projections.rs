//! `GET /projections` and `POST /projections/{name}/rebuild` (admin): each projection's generation, checkpoint,
//! head, lag and state, and blue/green rebuilds run in the background with their progress (events/s, ETA).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dossier_projections::rebuild::rebuild_read_model;
use dossier_projections::runner::{ProjectionStatus, READ_MODEL, RunnerConfig, RunnerState, initial_status};
use serde::Serialize;
use tokio::sync::watch;
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;
use crate::api::request::ApiRequest;
use crate::coordination::lease::while_holding;

/// The projections that can be rebuilt through the API.
pub const PROJECTIONS: &[&str] = &[READ_MODEL];

/// The rebuild started through this process's API, if any.
#[derive(Default)]
pub struct Rebuilds {
    // An async mutex: held across taking the rebuild lease, so two requests cannot both start one.
    current: tokio::sync::Mutex<Option<Rebuild>>,
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
    let live = context.projection.borrow().clone();
    let runs_here = *context.projection_here.borrow();
    let generation = context.read_model.live_generation(READ_MODEL).await?;
    // The stored checkpoint is the truth wherever the projection runs.
    let checkpoint = context.read_model.checkpoint(READ_MODEL, generation).await?;
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
    let rebuild = context.rebuilds.progress(head).await;
    let view = ProjectionView {
        name: READ_MODEL.to_owned(),
        generation,
        checkpoint,
        head,
        lag_events: head.saturating_sub(checkpoint),
        lag_seconds: if runs_here { live.lag_seconds } else { 0.0 },
        state,
        runs_here,
        lease: context.leases.backend(),
        error,
        rebuild,
    };
    Ok(StoredResponse::json(StatusCode::OK, &ProjectionList { projections: vec![view] })?.into_response())
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

/// `POST /projections/{name}/rebuild`: 202 and the rebuild runs in the background; 409 while one is running.
pub async fn rebuild(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    request.query(&[])?;
    let name = request.params.first().map_or("", String::as_str);
    if !PROJECTIONS.contains(&name) {
        return Err(ApiError::NotFound(format!(
            "no projection named {:?} (known: {})",
            name.chars().take(64).collect::<String>(),
            PROJECTIONS.join(", ")
        )));
    }
    let generation = context.read_model.live_generation(READ_MODEL).await? + 1;
    let mut current = context.rebuilds.current.lock().await;
    if current.as_ref().is_some_and(|rebuild| rebuild.outcome.lock().is_ok_and(|outcome| outcome.is_none())) {
        return Err(ApiError::InvalidState(format!("a rebuild of {name} is already running")));
    }
    let (sender, status) = watch::channel(initial_status(READ_MODEL, generation));
    let outcome = Arc::new(Mutex::new(None));
    let finished = Arc::clone(&outcome);
    let (log, read_model) = (Arc::clone(&context.store), Arc::clone(&context.read_model));
    let lease = format!("{READ_MODEL}:rebuild");
    // One rebuild at a time across instances: the first to take the lease runs it.
    if !context.leases.acquire(&lease, &context.instance_id, context.lease_ttl).await.map_err(ApiError::Unavailable)? {
        return Err(ApiError::InvalidState(format!("a rebuild of {name} is already running in another instance")));
    }
    let (leases, holder, ttl) = (Arc::clone(&context.leases), context.instance_id.clone(), context.lease_ttl);
    tokio::spawn(async move {
        let config = RunnerConfig { batch_size: 2_000, batch_wait: Duration::from_millis(20) };
        let rebuild = rebuild_read_model(log, read_model, config, sender);
        // Renews the lease acquired above while the rebuild runs, and releases it after.
        let held = while_holding(leases.as_ref(), &lease, &holder, ttl, rebuild).await;
        let result = match held {
            Ok(Some(result)) => result.map(|report| report.seconds).map_err(|error| error.to_string()),
            Ok(None) => Err("the rebuild lease was lost; the rebuild resumes from its checkpoint next time".into()),
            Err(error) => Err(format!("rebuild lease: {error}")),
        };
        if let Err(error) = &result {
            tracing::error!(projection = READ_MODEL, error = %error, "projection_rebuild_failed");
        }
        if let Ok(mut outcome) = finished.lock() {
            *outcome = Some(result);
        }
    });
    *current = Some(Rebuild { started: Instant::now(), status, outcome });
    tracing::info!(projection = READ_MODEL, generation, "projection_rebuild_started");
    let started = RebuildStarted { name: name.to_owned(), state: "running", generation };
    Ok(StoredResponse::json(StatusCode::ACCEPTED, &started)?.into_response())
}

impl Rebuilds {
    async fn progress(&self, head: u64) -> Option<RebuildProgress> {
        let current = self.current.lock().await;
        let rebuild = current.as_ref()?;
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
