//! `DocumentActor`: one per live document stream. It owns the document's state (replayed from its stream), decides
//! commands with the pure aggregate, appends the resulting events with the expected version, and drives the
//! pipeline: after every change it starts the stage the document now waits for, and turns each stage's result into
//! the next command (retrying transient failures with backoff, every attempt recorded as an event).
//!
//! Commands for one document are serialised by the actor's mailbox; across processes the store's expected-version
//! check is the arbiter: on a conflict the actor reloads the stream and decides again (a few times at most).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_events::document::{DocumentCommand, DocumentEvent, DocumentState, Stage, decide, evolve};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, StoreError, StreamId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::runtime::error::CommandError;
use crate::runtime::pipeline::{Pipeline, StageError, StageJob, StageOutput};
use crate::runtime::process::{NextStep, next_step, record_result};
use crate::runtime::supervisor::DocumentsMsg;

/// The shortest wait before checking again whether an actor has become idle.
const IDLE_CHECK_MIN: Duration = Duration::from_millis(10);

/// When a document's actor stops: after `idle` without messages, or `settled` once the document is settled (ready,
/// failed, deleted or never uploaded, with no stage running or retry scheduled), whichever is shorter. A settled
/// document needs nothing from its actor until its next command, which starts it again from its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passivation {
    /// Idle time before passivation.
    pub idle: Duration,
    /// Idle time before passivation once settled.
    pub settled: Duration,
}

/// Reloads after a version conflict before giving up.
const MAX_RELOADS: usize = 5;

/// A command for one document, with who sent it.
#[derive(Debug)]
pub struct CommandRequest {
    /// The document.
    pub document_id: Uuid,
    /// What to do.
    pub command: DocumentCommand,
    /// Who, for whom, why.
    pub metadata: EventMetadata,
    /// The version the caller saw (HTTP If-Match); `None` to decide against the current version.
    pub expected_version: Option<u64>,
}

/// The document after a command.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    /// The document's state after the command.
    pub state: DocumentState,
    /// Events appended (0 when the command changed nothing or was an idempotent replay).
    pub appended: usize,
    /// The tenant the document belongs to.
    pub tenant_id: String,
    /// When the stream's first and last events were recorded, when the actor knows (the log always tells).
    pub recorded: Option<Recorded>,
}

/// When a stream's first and last events were recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The first event's `recorded_at`: when the document was uploaded.
    pub first: OffsetDateTime,
    /// The last event's.
    pub last: OffsetDateTime,
}

/// A document as its actor knows it.
#[derive(Clone, Debug)]
pub struct DocumentSnapshot {
    /// The state.
    pub state: DocumentState,
    /// The tenant (`None` before upload).
    pub tenant_id: Option<String>,
}

/// Messages of a `DocumentActor`.
pub enum DocumentMsg {
    /// Decide and append a command.
    Command(Box<CommandRequest>, RpcReplyPort<Result<CommandOutcome, CommandError>>),
    /// The current state.
    Snapshot(RpcReplyPort<DocumentSnapshot>),
    /// A pipeline stage finished.
    StageFinished {
        /// The processing run it belongs to.
        generation: u32,
        /// The stage.
        stage: Stage,
        /// The attempt.
        attempt: u32,
        /// What it produced.
        result: Box<Result<StageOutput, StageError>>,
    },
    /// Time to retry a stage that failed transiently.
    RetryStage {
        /// The processing run it belongs to.
        generation: u32,
    },
    /// Passivation check.
    IdleCheck,
    /// Panics the actor (for supervision tests and drills).
    #[doc(hidden)]
    Crash,
}

impl DocumentMsg {
    /// Whether this message uploads a new document, i.e. its stream should not exist yet.
    pub fn starts_stream(&self) -> bool {
        matches!(self, Self::Command(request, _) if matches!(request.command, DocumentCommand::Upload { .. }))
    }
}

/// What a `DocumentActor` starts with.
pub struct DocumentArgs {
    /// The document.
    pub document_id: Uuid,
    /// The log.
    pub store: Arc<dyn EventStore>,
    /// The stage workers.
    pub pipeline: Arc<Pipeline>,
    /// The supervisor, told when this actor is idle.
    pub supervisor: ActorRef<DocumentsMsg>,
    /// When to passivate.
    pub passivation: Passivation,
    /// The actor starts for an upload of a just-minted id, so its stream is empty and is not read. The append's
    /// expected version (no stream) still guards it: were the stream to exist, the append conflicts and the actor
    /// reloads.
    pub fresh: bool,
}

/// The actor's state.
pub struct DocumentActorState {
    args: DocumentArgs,
    stream: StreamId,
    state: DocumentState,
    tenant_id: Option<String>,
    correlation_id: Option<Uuid>,
    last_event: Option<Uuid>,
    recorded: Option<Recorded>,
    chunk_texts: Arc<Vec<String>>,
    in_flight: Option<(u32, Stage)>,
    retry_scheduled: bool,
    last_activity: Instant,
    /// The idle check scheduled, and when it is due (one at a time: a sooner one replaces it).
    check: Option<(Instant, IdleTimer)>,
}

type IdleTimer = ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<DocumentMsg>>>;

/// The actor (stateless; see [`DocumentActorState`]).
pub struct DocumentActor;

impl Actor for DocumentActor {
    type Msg = DocumentMsg;
    type State = DocumentActorState;
    type Arguments = DocumentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: DocumentArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let stream = StreamId::for_document(args.document_id);
        Ok(DocumentActorState {
            args,
            stream,
            state: DocumentState::default(),
            tenant_id: None,
            correlation_id: None,
            last_event: None,
            recorded: None,
            chunk_texts: Arc::new(Vec::new()),
            in_flight: None,
            retry_scheduled: false,
            last_activity: Instant::now(),
            check: None,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Read here, not in `pre_start`: the supervisor awaits `pre_start`, and would otherwise wait on the log for
        // every document it starts, one after another. A failed read fails the actor, which the supervisor
        // restarts; messages are handled only after this returns.
        if !state.args.fresh {
            state.reload().await?;
        }
        // Resuming is how recovery and restarts continue the pipeline: whatever stage the document waits for runs.
        state.advance(&myself).await;
        let timeout = state.idle_timeout();
        state.check_idle_in(&myself, timeout);
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // A pending check would hold on to the stopped actor's cell until it fired.
        if let Some((_, timer)) = state.check.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The idle check's own message is not activity: counting it would keep every actor alive forever.
        let activity = !matches!(message, DocumentMsg::IdleCheck);
        if activity {
            state.last_activity = Instant::now();
        }
        match message {
            DocumentMsg::Command(request, reply) => {
                let before = state.state.version;
                let result = state.execute(*request).await;
                // Appended, or found newer events on a conflict or an idempotent replay.
                let changed = state.state.version != before;
                let _ = reply.send(result);
                if changed {
                    state.advance(&myself).await;
                }
            }
            DocumentMsg::Snapshot(reply) => {
                let _ = reply.send(DocumentSnapshot { state: state.state.clone(), tenant_id: state.tenant_id.clone() });
            }
            DocumentMsg::StageFinished { generation, stage, attempt, result } => {
                if state.in_flight == Some((generation, stage)) {
                    state.in_flight = None;
                }
                if generation == state.state.generation && state.state.pending_stage() == Some(stage) {
                    state.record_stage(stage, attempt, *result).await;
                }
                state.advance(&myself).await;
            }
            DocumentMsg::RetryStage { generation } => {
                state.retry_scheduled = false;
                if generation == state.state.generation {
                    state.advance(&myself).await;
                }
            }
            DocumentMsg::IdleCheck => {
                let timeout = state.idle_timeout();
                let quiet = state.last_activity.elapsed();
                if state.in_flight.is_some() || state.retry_scheduled {
                    state.check_idle_in(&myself, timeout);
                } else if quiet >= timeout {
                    let _ = state.args.supervisor.send_message(DocumentsMsg::Passivate(state.args.document_id));
                } else {
                    // Checked again when the timeout will have passed since the last activity.
                    state.check_idle_in(&myself, (timeout - quiet).max(IDLE_CHECK_MIN));
                }
            }
            DocumentMsg::Crash => panic!("crash requested for document {}", state.args.document_id),
        }
        if activity && state.settled() {
            // Settled by this message: checked after the (shorter) settled timeout, not the idle one.
            let timeout = state.idle_timeout();
            state.check_idle_in(&myself, timeout);
        }
        Ok(())
    }
}

impl DocumentActorState {
    /// Whether the document needs nothing from its actor: no stage running or waiting for a retry, nothing to do
    /// next (ready, failed, deleted, or never uploaded).
    fn settled(&self) -> bool {
        self.in_flight.is_none()
            && !self.retry_scheduled
            && next_step(&self.state, self.args.pipeline.has_embedder(), OffsetDateTime::now_utc()) == NextStep::Nothing
    }

    /// The idle time after which the actor stops, as things stand.
    fn idle_timeout(&self) -> Duration {
        let Passivation { idle, settled } = self.args.passivation;
        if self.settled() { idle.min(settled) } else { idle }
    }

    /// Schedules an idle check `after` from now, unless one is already due by then (each check schedules the next
    /// one it needs, so one pending check is enough); a later one is cancelled.
    fn check_idle_in(&mut self, myself: &ActorRef<DocumentMsg>, after: Duration) {
        let now = Instant::now();
        let at = now + after;
        if let Some((due, timer)) = self.check.take() {
            if due > now && due <= at {
                self.check = Some((due, timer));
                return;
            }
            timer.abort();
        }
        self.check = Some((at, myself.send_after(after, || DocumentMsg::IdleCheck)));
    }

    /// Replays the whole stream.
    async fn reload(&mut self) -> Result<(), StoreError> {
        self.state = DocumentState::default();
        self.tenant_id = None;
        self.correlation_id = None;
        self.last_event = None;
        self.recorded = None;
        let mut from = 1;
        loop {
            let page = self.args.store.read_stream(&self.stream, from, 500).await?;
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            let full = page.len() == 500;
            for recorded in &page {
                let event = DocumentEvent::from_recorded(recorded)
                    .map_err(|error| StoreError::Corrupt { position: recorded.position, reason: error.to_string() })?;
                self.apply(&event, recorded.event_id, &recorded.metadata);
                self.record_time(recorded.version - 1, Some(recorded.recorded_at));
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: &DocumentEvent, event_id: Uuid, metadata: &EventMetadata) {
        if self.tenant_id.is_none() {
            self.tenant_id = Some(metadata.tenant_id.clone());
            self.correlation_id = Some(metadata.correlation_id);
        }
        self.last_event = Some(event_id);
        if let DocumentEvent::DocumentChunked(chunked) = event {
            self.chunk_texts = Arc::new(chunked.chunks.iter().map(|chunk| chunk.text.clone()).collect());
        }
        let state = std::mem::take(&mut self.state);
        self.state = evolve(state, event);
    }

    /// Decides and appends, reloading and deciding again after a conflict with another writer.
    async fn execute(&mut self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        if let Some(expected) = request.expected_version
            && expected != self.state.version
        {
            return Err(CommandError::VersionMismatch { expected, actual: self.state.version });
        }
        if let Some(tenant) = &self.tenant_id
            && *tenant != request.metadata.tenant_id
        {
            // Another tenant's document does not exist for the caller.
            return Err(CommandError::Rejected(dossier_events::document::DocumentError::NotFound));
        }
        for _ in 0..MAX_RELOADS {
            let events = decide(&self.state, request.command.clone())?;
            if events.is_empty() {
                return Ok(self.outcome(0, &request.metadata));
            }
            let new_events = events
                .iter()
                .map(DocumentEvent::to_new_event)
                .collect::<Result<Vec<_>, _>>()
                .map_err(CommandError::Rejected)?;
            let expected = match self.state.version {
                0 => ExpectedVersion::NoStream,
                version => ExpectedVersion::Exact(version),
            };
            let ids: Vec<Uuid> = new_events.iter().map(|event| event.event_id).collect();
            match self.args.store.append(&self.stream, expected, new_events, request.metadata.clone()).await {
                Ok(outcome) if outcome.replayed => {
                    // An idempotent retry of an earlier request: the stream already holds its events.
                    self.reload().await?;
                    return Ok(self.outcome(0, &request.metadata));
                }
                Ok(outcome) => {
                    let before = self.state.version;
                    for (event, id) in events.iter().zip(ids) {
                        self.apply(event, id, &request.metadata);
                    }
                    self.record_time(before, outcome.recorded_at);
                    return Ok(self.outcome(events.len(), &request.metadata));
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(document_id = %self.args.document_id, "document_conflict_reloading");
                    self.reload().await?;
                    if let Some(expected) = request.expected_version
                        && expected != self.state.version
                    {
                        return Err(CommandError::VersionMismatch { expected, actual: self.state.version });
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::Contended(self.args.document_id))
    }

    /// Notes that events recorded at `at` followed the stream's first `before` events (`at` is `None` when the
    /// store did not tell; then the stream's span is not known either, until the next reload).
    fn record_time(&mut self, before: u64, at: Option<OffsetDateTime>) {
        self.recorded = match (at, self.recorded) {
            (Some(at), _) if before == 0 => Some(Recorded { first: at, last: at }),
            (Some(at), Some(recorded)) => Some(Recorded { last: at, ..recorded }),
            _ => None,
        };
    }

    fn outcome(&self, appended: usize, metadata: &EventMetadata) -> CommandOutcome {
        CommandOutcome {
            state: self.state.clone(),
            appended,
            tenant_id: self.tenant_id.clone().unwrap_or_else(|| metadata.tenant_id.clone()),
            recorded: self.recorded,
        }
    }

    /// Metadata for the pipeline's own commands: same tenant and correlation as the upload, caused by the last event.
    fn system_metadata(&self) -> EventMetadata {
        let mut metadata = EventMetadata::new(self.tenant_id.clone().unwrap_or_default(), "system:pipeline");
        if let Some(correlation) = self.correlation_id {
            metadata.correlation_id = correlation;
        }
        if let Some(cause) = self.last_event {
            metadata.causation_id = cause;
        }
        metadata
    }

    async fn system_command(&mut self, command: DocumentCommand) {
        let request = CommandRequest {
            document_id: self.args.document_id,
            command,
            metadata: self.system_metadata(),
            expected_version: None,
        };
        let name = request.command.name();
        if let Err(error) = self.execute(request).await {
            // Typically another process recorded the same step first; the next advance() reads where it stands.
            tracing::warn!(document_id = %self.args.document_id, command = name, error = %error, "pipeline_command_failed");
        }
    }

    /// Turns a stage result into the command that records it.
    async fn record_stage(&mut self, stage: Stage, attempt: u32, result: Result<StageOutput, StageError>) {
        let command = record_result(stage, attempt, result, rand::random::<f64>(), OffsetDateTime::now_utc());
        self.system_command(command).await;
    }

    /// Starts whatever the document waits for: a stage, a scheduled retry, or marking it ready.
    async fn advance(&mut self, myself: &ActorRef<DocumentMsg>) {
        loop {
            let generation = self.state.generation;
            match next_step(&self.state, self.args.pipeline.has_embedder(), OffsetDateTime::now_utc()) {
                NextStep::Nothing => return,
                NextStep::MarkReady => {
                    let before = self.state.version;
                    self.system_command(DocumentCommand::MarkReady).await;
                    if self.state.version == before {
                        return;
                    }
                }
                NextStep::WaitUntil(retry_at) => {
                    if !self.retry_scheduled {
                        self.retry_scheduled = true;
                        let wait = Duration::try_from(retry_at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
                        myself.send_after(wait, move || DocumentMsg::RetryStage { generation });
                    }
                    return;
                }
                NextStep::Run { stage, attempt } => {
                    if self.in_flight == Some((generation, stage)) || self.retry_scheduled {
                        return;
                    }
                    let (Some(blob), Some(media_type), Some(filename)) =
                        (self.state.blob.as_ref(), self.state.media_type.as_ref(), self.state.filename.as_ref())
                    else {
                        return;
                    };
                    let job = StageJob {
                        document_id: self.args.document_id,
                        generation,
                        stage,
                        attempt,
                        blob_sha256: blob.sha256.clone(),
                        media_type: media_type.clone(),
                        filename: filename.clone(),
                        text_sha256: self.state.parse.as_ref().map(|parsed| parsed.text_sha256.clone()),
                        chunk_texts: Arc::clone(&self.chunk_texts),
                    };
                    self.in_flight = Some((generation, stage));
                    self.args.pipeline.start(job, myself.clone());
                    return;
                }
            }
        }
    }
}
