//! `ProjectionActor`: runs one projection (the read model, the vector index) under supervision. The runner is a task the actor starts;
//! when it ends with an error the actor restarts it after a backoff, within a budget (past it the actor fails and
//! its supervisor decides). A poison event is not an error to retry: the projection stays stopped at it, visibly,
//! until an operator acts.

use std::sync::Arc;
use std::time::Instant;

use dossier_events::EventStore;
use dossier_projections::runner::{
    Projection, ProjectionStatus, RunnerConfig, RunnerError, RunnerState, run_projection,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use crate::runtime::restart::{Decision, RestartBudget, RestartPolicy};

/// How long after a runner handed over (a rebuild switched generations) the next one starts.
const HANDOVER_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How often a projection stopped at a poison event checks whether an operator skipped it.
const SKIP_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Messages of the `ProjectionActor`.
pub enum ProjectionMsg {
    /// (Re)start the runner.
    Start,
    /// The runner ended.
    Ended(Result<(), String>, bool),
    /// Stopped at a poison event: start again if an operator has skipped it since.
    CheckSkipped,
}

/// What the actor runs.
pub struct ProjectionArgs {
    /// The log.
    pub log: Arc<dyn EventStore>,
    /// The projection.
    pub projection: Arc<dyn Projection>,
    /// Batching.
    pub config: RunnerConfig,
    /// Restart policy for runner failures.
    pub policy: RestartPolicy,
    /// Where progress is published.
    pub status: watch::Sender<ProjectionStatus>,
}

/// The actor's state.
pub struct ProjectionState {
    args: ProjectionArgs,
    budget: RestartBudget,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The actor (stateless; see [`ProjectionState`]).
pub struct ProjectionActor;

impl Actor for ProjectionActor {
    type Msg = ProjectionMsg;
    type State = ProjectionState;
    type Arguments = ProjectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProjectionMsg>,
        args: ProjectionArgs,
    ) -> Result<ProjectionState, ActorProcessingErr> {
        myself.send_message(ProjectionMsg::Start)?;
        Ok(ProjectionState { args, budget: RestartBudget::default(), task: None })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ProjectionMsg>,
        state: &mut ProjectionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(task) = state.task.take() {
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProjectionMsg>,
        message: ProjectionMsg,
        state: &mut ProjectionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProjectionMsg::Start => {
                let args = &state.args;
                let (log, projection) = (Arc::clone(&args.log), Arc::clone(&args.projection));
                let (config, status) = (args.config, args.status.clone());
                let reply = myself.clone();
                // On the background runtime: a projection catching up takes the idle time, not the requests'.
                state.task = Some(dossier_projections::background::runtime().spawn(async move {
                    let outcome = async {
                        let generation = projection
                            .generations()
                            .live_generation(projection.name())
                            .await
                            .map_err(RunnerError::from)?;
                        status.send_modify(|s| s.generation = generation);
                        run_projection(log, projection.as_ref(), generation, config, status, None).await
                    }
                    .await;
                    let poison = matches!(outcome, Err(RunnerError::Poison(_)));
                    let _ = reply.send_message(ProjectionMsg::Ended(outcome.map_err(|e| e.to_string()), poison));
                }));
            }
            ProjectionMsg::Ended(Ok(()), _) => {
                if matches!(state.args.status.borrow().state, RunnerState::Stopped { .. }) {
                    // It found its generation stopped at a poison event: wait for an operator's skip.
                    myself.send_after(SKIP_POLL, || ProjectionMsg::CheckSkipped);
                } else {
                    // A rebuild made another generation live (or the log's subscription closed): follow the live one.
                    tracing::info!(projection = state.args.projection.name(), "projection_runner_handed_over");
                    myself.send_after(HANDOVER_DELAY, || ProjectionMsg::Start);
                }
            }
            ProjectionMsg::Ended(Err(error), true) => {
                let name = state.args.projection.name();
                tracing::error!(projection = name, error = %error, "projection_stopped_at_poison_event");
                myself.send_after(SKIP_POLL, || ProjectionMsg::CheckSkipped);
            }
            ProjectionMsg::CheckSkipped => {
                let projection = &state.args.projection;
                let generation = projection.generations().live_generation(projection.name()).await?;
                let checkpoint = projection.generations().checkpoint(projection.name(), generation).await?;
                if checkpoint.is_some_and(|c| c.state == "running") {
                    tracing::info!(projection = projection.name(), "projection_resumed_after_skip");
                    myself.send_message(ProjectionMsg::Start)?;
                } else {
                    myself.send_after(SKIP_POLL, || ProjectionMsg::CheckSkipped);
                }
            }
            ProjectionMsg::Ended(Err(error), false) => {
                match state.budget.on_failure(&state.args.policy, Instant::now()) {
                    Decision::Restart(delay) => {
                        let name = state.args.projection.name();
                        tracing::warn!(projection = name, error = %error, delay_ms = delay.as_millis() as u64, "projection_restarting");
                        myself.send_after(delay, || ProjectionMsg::Start);
                    }
                    Decision::Escalate => {
                        let name = state.args.projection.name();
                        return Err(format!("projection {name} keeps failing: {error}").into());
                    }
                }
            }
        }
        Ok(())
    }
}
