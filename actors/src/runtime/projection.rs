//! `ProjectionActor`: runs one projection (the read model) under supervision. The runner is a task the actor starts;
//! when it ends with an error the actor restarts it after a backoff, within a budget (past it the actor fails and
//! its supervisor decides). A poison event is not an error to retry: the projection stays stopped at it, visibly,
//! until an operator acts.

use std::sync::Arc;
use std::time::Instant;

use dossier_events::EventStore;
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::runner::{ProjectionStatus, READ_MODEL, RunnerConfig, RunnerError, run_read_model};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;

use crate::runtime::restart::{Decision, RestartBudget, RestartPolicy};

/// Messages of the `ProjectionActor`.
pub enum ProjectionMsg {
    /// (Re)start the runner.
    Start,
    /// The runner ended.
    Ended(Result<(), String>, bool),
}

/// What the actor runs.
pub struct ProjectionArgs {
    /// The log.
    pub log: Arc<dyn EventStore>,
    /// The read model.
    pub read_model: Arc<dyn ReadModelStore>,
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
                let (log, read_model) = (Arc::clone(&args.log), Arc::clone(&args.read_model));
                let (config, status) = (args.config, args.status.clone());
                let reply = myself.clone();
                state.task = Some(tokio::spawn(async move {
                    let outcome = async {
                        let generation = read_model.live_generation(READ_MODEL).await.map_err(RunnerError::from)?;
                        status.send_modify(|s| s.generation = generation);
                        run_read_model(log, read_model, generation, config, status, None).await
                    }
                    .await;
                    let poison = matches!(outcome, Err(RunnerError::Poison(_)));
                    let _ = reply.send_message(ProjectionMsg::Ended(outcome.map_err(|e| e.to_string()), poison));
                }));
            }
            ProjectionMsg::Ended(Ok(()), _) => {
                tracing::info!(projection = READ_MODEL, "projection_runner_ended");
            }
            ProjectionMsg::Ended(Err(error), true) => {
                tracing::error!(projection = READ_MODEL, error = %error, "projection_stopped_at_poison_event");
            }
            ProjectionMsg::Ended(Err(error), false) => {
                match state.budget.on_failure(&state.args.policy, Instant::now()) {
                    Decision::Restart(delay) => {
                        tracing::warn!(projection = READ_MODEL, error = %error, delay_ms = delay.as_millis() as u64, "projection_restarting");
                        myself.send_after(delay, || ProjectionMsg::Start);
                    }
                    Decision::Escalate => return Err(format!("projection {READ_MODEL} keeps failing: {error}").into()),
                }
            }
        }
        Ok(())
    }
}
