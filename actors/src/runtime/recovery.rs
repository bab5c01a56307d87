//! `RecoveryActor`: at start, replays the log to find every document left in a non-terminal state and resumes it
//! (its actor starts the stage it waits for), and fills the deduplication index. Then it stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dossier_events::EventStore;
use dossier_events::document::{DocumentEvent, DocumentState, evolve};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::runtime::supervisor::DocumentsMsg;

/// `(tenant, sha256 of the uploaded bytes)` → the document holding them.
pub type DedupeIndex = Arc<Mutex<HashMap<(String, String), Uuid>>>;

/// What recovery needs.
pub struct RecoveryArgs {
    /// The log.
    pub store: Arc<dyn EventStore>,
    /// Where to resume documents.
    pub documents: ActorRef<DocumentsMsg>,
    /// Filled with every live document's upload digest.
    pub dedupe: DedupeIndex,
}

/// The actor.
pub struct RecoveryActor;

/// What recovery found.
pub struct RecoveryState {
    args: RecoveryArgs,
    unfinished: Vec<Uuid>,
}

impl Actor for RecoveryActor {
    type Msg = ();
    type State = RecoveryState;
    type Arguments = RecoveryArgs;

    /// Scans the log before the actor counts as started, so the runtime only accepts uploads once the
    /// deduplication index is complete.
    async fn pre_start(&self, _: ActorRef<()>, args: RecoveryArgs) -> Result<RecoveryState, ActorProcessingErr> {
        let started = std::time::Instant::now();
        let mut documents: HashMap<Uuid, (DocumentState, String)> = HashMap::new();
        let mut position = 0;
        loop {
            let page = args.store.read_all(position, 1_000).await?;
            let Some(last) = page.last() else { break };
            position = last.position;
            for recorded in &page {
                let Some(document_id) = recorded.stream_id.document_id() else { continue };
                let event = DocumentEvent::from_recorded(recorded)?;
                let entry = documents
                    .entry(document_id)
                    .or_insert_with(|| (DocumentState::default(), recorded.metadata.tenant_id.clone()));
                entry.0 = evolve(std::mem::take(&mut entry.0), &event);
            }
        }
        let mut unfinished = Vec::new();
        {
            let mut dedupe = args.dedupe.lock().map_err(|_| "deduplication index poisoned")?;
            for (document_id, (state, tenant)) in &documents {
                if let Some(blob) = &state.blob
                    && !state.is_deleted()
                {
                    dedupe.insert((tenant.clone(), blob.sha256.clone()), *document_id);
                }
                if state.status.is_some_and(|status| status.is_processing()) {
                    unfinished.push(*document_id);
                }
            }
        }
        tracing::info!(
            documents = documents.len(),
            unfinished = unfinished.len(),
            head = position,
            duration_ms = started.elapsed().as_millis() as u64,
            "recovery_scanned"
        );
        Ok(RecoveryState { args, unfinished })
    }

    async fn post_start(&self, myself: ActorRef<()>, state: &mut RecoveryState) -> Result<(), ActorProcessingErr> {
        for document_id in state.unfinished.drain(..) {
            state.args.documents.send_message(DocumentsMsg::Resume(document_id))?;
        }
        myself.stop(None);
        Ok(())
    }
}
