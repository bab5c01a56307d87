//! `RootSupervisor`: the top of the tree. It runs the `DocumentSupervisor` and restarts it (with backoff, within a
//! budget) if it fails, running recovery again so that every unfinished document resumes; past the budget it stops,
//! and the runtime reports the failure.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::runtime::document::DocumentMsg;
use crate::runtime::recovery::{DedupeIndex, RecoveryActor, RecoveryArgs};
use crate::runtime::restart::{Decision, RestartBudget, RestartPolicy};
use crate::runtime::supervisor::{DocumentSupervisor, DocumentsArgs, DocumentsMsg, SupervisorStats};

/// Messages of the `RootSupervisor`.
pub enum RootMsg {
    /// Deliver to a document's actor.
    Route(uuid::Uuid, DocumentMsg),
    /// Counters of the document supervisor.
    Stats(ractor::RpcReplyPort<SupervisorStats>),
    /// Start (again) the document supervisor and recovery.
    StartDocuments,
}

/// What the root is started with.
pub struct RootArgs {
    /// Builds the document supervisor's arguments (again, after a restart).
    pub documents: Arc<dyn Fn() -> DocumentsArgs + Send + Sync>,
    /// The log, for recovery.
    pub store: Arc<dyn dossier_events::EventStore>,
    /// Filled by recovery.
    pub dedupe: DedupeIndex,
    /// Restart policy for the document supervisor.
    pub policy: RestartPolicy,
}

/// The root's state.
pub struct RootState {
    args: RootArgs,
    documents: Option<ActorRef<DocumentsMsg>>,
    budget: RestartBudget,
}

/// The actor (stateless; see [`RootState`]).
pub struct RootSupervisor;

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: RootArgs) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RootState { args, documents: None, budget: RestartBudget::default() };
        start_documents(&myself, &mut state).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::Route(document_id, message) => {
                if let Some(documents) = &state.documents {
                    let _ = documents.send_message(DocumentsMsg::Route(document_id, message));
                }
            }
            RootMsg::Stats(reply) => match &state.documents {
                Some(documents) => {
                    let _ = documents.send_message(DocumentsMsg::Stats(reply));
                }
                None => {
                    let _ = reply.send(SupervisorStats::default());
                }
            },
            RootMsg::StartDocuments => start_documents(&myself, state).await?,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let failed = match &event {
            SupervisionEvent::ActorFailed(cell, error) => Some((cell.get_id(), error.to_string())),
            _ => None,
        };
        let Some((id, error)) = failed else { return Ok(()) };
        if state.documents.as_ref().is_none_or(|documents| documents.get_id() != id) {
            // Recovery actors report their own errors; nothing to restart.
            return Ok(());
        }
        state.documents = None;
        match state.budget.on_failure(&state.args.policy, Instant::now()) {
            Decision::Restart(delay) => {
                tracing::error!(error = %error, delay_ms = delay.as_millis() as u64, "document_supervisor_restarting");
                myself.send_after(delay, || RootMsg::StartDocuments);
                Ok(())
            }
            Decision::Escalate => Err(format!("the document supervisor keeps failing: {error}").into()),
        }
    }
}

async fn start_documents(myself: &ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
    let (documents, _) =
        Actor::spawn_linked(None, DocumentSupervisor, (state.args.documents)(), myself.get_cell()).await?;
    let recovery = RecoveryArgs {
        store: Arc::clone(&state.args.store),
        documents: documents.clone(),
        dedupe: Arc::clone(&state.args.dedupe),
    };
    Actor::spawn_linked(None, RecoveryActor, recovery, myself.get_cell()).await?;
    state.documents = Some(documents);
    Ok(())
}
