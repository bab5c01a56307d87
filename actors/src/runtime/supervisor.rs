//! `DocumentSupervisor`: routes messages to the live `DocumentActor` of each document, spawning it on demand,
//! passivating it when idle, and restarting it after a crash with the [restart policy](super::restart). A crash
//! only ever touches its own document; a document that keeps crashing past its budget is left stopped (its next
//! command starts it afresh) and the failure counts against the supervisor's own budget, which, once spent, stops
//! the supervisor so that its parent restarts the whole subtree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dossier_events::EventStore;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

use crate::runtime::document::{DocumentActor, DocumentArgs, DocumentMsg, Passivation};
use crate::runtime::pipeline::Pipeline;
use crate::runtime::restart::{Decision, RestartBudget, RestartPolicy};

/// Messages of the `DocumentSupervisor`.
pub enum DocumentsMsg {
    /// Deliver a message to a document's actor (starting it if needed).
    Route(Uuid, DocumentMsg),
    /// Start a document's actor if it is not running (recovery: the actor resumes its pipeline on start).
    Resume(Uuid),
    /// A document's actor has been idle: stop it once its mailbox is empty.
    Passivate(Uuid),
    /// Restart a crashed document's actor (after its backoff).
    Restart(Uuid),
    /// How many document actors are live, and how many restarts and escalations happened.
    Stats(RpcReplyPort<SupervisorStats>),
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Live document actors.
    pub live: usize,
    /// Document actors restarted after a crash.
    pub restarts: u64,
    /// Documents whose crashes exceeded their budget.
    pub escalations: u64,
}

/// What the supervisor is started with.
pub struct DocumentsArgs {
    /// The log.
    pub store: Arc<dyn EventStore>,
    /// The stage workers.
    pub pipeline: Arc<Pipeline>,
    /// Per-document restart policy.
    pub child_policy: RestartPolicy,
    /// The supervisor's own budget for escalations.
    pub own_policy: RestartPolicy,
    /// When a document actor is passivated.
    pub passivation: Passivation,
}

/// The supervisor's state.
pub struct DocumentsState {
    args: DocumentsArgs,
    children: HashMap<Uuid, ActorRef<DocumentMsg>>,
    by_actor: HashMap<ActorId, Uuid>,
    budgets: HashMap<Uuid, RestartBudget>,
    own_budget: RestartBudget,
    stats: SupervisorStats,
}

/// The actor (stateless; see [`DocumentsState`]).
pub struct DocumentSupervisor;

impl DocumentsState {
    async fn child(
        &mut self,
        myself: &ActorRef<DocumentsMsg>,
        document_id: Uuid,
        fresh: bool,
    ) -> Result<ActorRef<DocumentMsg>, ActorProcessingErr> {
        if let Some(child) = self.children.get(&document_id) {
            return Ok(child.clone());
        }
        let args = DocumentArgs {
            document_id,
            store: Arc::clone(&self.args.store),
            pipeline: Arc::clone(&self.args.pipeline),
            supervisor: myself.clone(),
            passivation: self.args.passivation,
            fresh,
        };
        let (child, _) = Actor::spawn_linked(None, DocumentActor, args, myself.get_cell()).await?;
        self.by_actor.insert(child.get_id(), document_id);
        self.children.insert(document_id, child.clone());
        Ok(child)
    }

    fn forget(&mut self, cell: &ActorCell) -> Option<Uuid> {
        let document_id = self.by_actor.remove(&cell.get_id())?;
        if self.children.get(&document_id).is_some_and(|child| child.get_id() == cell.get_id()) {
            self.children.remove(&document_id);
        }
        Some(document_id)
    }
}

impl Actor for DocumentSupervisor {
    type Msg = DocumentsMsg;
    type State = DocumentsState;
    type Arguments = DocumentsArgs;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, args: DocumentsArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(DocumentsState {
            args,
            children: HashMap::new(),
            by_actor: HashMap::new(),
            budgets: HashMap::new(),
            own_budget: RestartBudget::default(),
            stats: SupervisorStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DocumentsMsg::Route(document_id, message) => {
                // Spawning reads nothing (the actor reads its stream once started), so it fails only if the actor
                // cannot be started at all; the dropped message's reply port tells a waiting caller.
                let fresh = message.starts_stream();
                match state.child(&myself, document_id, fresh).await {
                    Ok(child) => {
                        if let Err(error) = child.send_message(message) {
                            // The actor stopped between lookup and send: start a fresh one for the message.
                            state.forget(&child.get_cell());
                            if let ractor::MessagingErr::SendErr(message) = error
                                && let Ok(child) = state.child(&myself, document_id, fresh).await
                            {
                                let _ = child.send_message(message);
                            }
                        }
                    }
                    Err(error) => {
                        tracing::error!(document_id = %document_id, error = %error, "document_actor_start_failed");
                    }
                }
            }
            DocumentsMsg::Resume(document_id) | DocumentsMsg::Restart(document_id) => {
                if let Err(error) = state.child(&myself, document_id, false).await {
                    tracing::error!(document_id = %document_id, error = %error, "document_actor_start_failed");
                }
            }
            DocumentsMsg::Passivate(document_id) => {
                if let Some(child) = state.children.remove(&document_id) {
                    state.by_actor.remove(&child.get_id());
                    // Drain: messages already queued are still handled, then the actor stops.
                    let _ = child.drain();
                }
            }
            DocumentsMsg::Stats(reply) => {
                let _ = reply.send(SupervisorStats { live: state.children.len(), ..state.stats });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(document_id) = state.forget(&cell) else { return Ok(()) };
                let policy = state.args.child_policy;
                let decision = state.budgets.entry(document_id).or_default().on_failure(&policy, Instant::now());
                match decision {
                    Decision::Restart(delay) => {
                        state.stats.restarts += 1;
                        tracing::warn!(document_id = %document_id, error = %error, delay_ms = delay.as_millis() as u64, "document_actor_restarting");
                        myself.send_after(delay, move || DocumentsMsg::Restart(document_id));
                    }
                    Decision::Escalate => {
                        state.stats.escalations += 1;
                        tracing::error!(document_id = %document_id, error = %error, "document_actor_restart_budget_spent");
                        let own = state.args.own_policy;
                        if state.own_budget.on_failure(&own, Instant::now()) == Decision::Escalate {
                            return Err(format!("documents keep crashing (last: {document_id}): {error}").into());
                        }
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(&cell);
            }
            _ => {}
        }
        Ok(())
    }
}
