//! The runtime: the supervision tree of DESIGN.md ("Runtime (actors)") behind a cloneable [`Runtime`] handle.
//!
//! ```text
//! RootSupervisor
//! ├── DocumentSupervisor ── DocumentActor (one per live stream, passivated when idle)
//! └── RecoveryActor (on start: resume every document left in a non-terminal state)
//! ```
//! Pipeline stages run as bounded tokio tasks ([`pipeline`]) whose results go back to the document's actor.

pub mod document;
pub mod error;
pub mod pipeline;
pub mod process;
pub mod projection;
pub mod recovery;
pub mod restart;
pub mod root;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dossier_events::EventMetadata;
use dossier_events::EventStore;
use dossier_events::document::{BlobRef, DocumentCommand, DocumentState, Metadata, decide};
use ractor::{Actor, ActorRef};
use uuid::Uuid;

use crate::blob::BlobStore;
use crate::chunk::ChunkSettings;
use crate::embed::Embedder;
use crate::parse::{ParseLimits, detect};
use document::{CommandOutcome, CommandRequest, DocumentMsg, DocumentSnapshot, Passivation};
use error::CommandError;
use pipeline::Pipeline;
use recovery::DedupeIndex;
use restart::RestartPolicy;
use root::{RootArgs, RootMsg, RootSupervisor};
use supervisor::{DocumentsArgs, SupervisorStats};

/// How long a caller waits for a document's actor.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime's settings.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Where blobs are stored.
    pub data_dir: PathBuf,
    /// The dense embedder, if any.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Chunk size and overlap.
    pub chunking: ChunkSettings,
    /// Parser limits.
    pub parse_limits: ParseLimits,
    /// Largest upload accepted.
    pub max_upload_bytes: usize,
    /// Return the existing document when the same bytes are uploaded again in the same tenant.
    pub deduplicate: bool,
    /// Stages running at once.
    pub workers: usize,
    /// Idle time before a document's actor is stopped.
    pub idle_timeout: Duration,
    /// Idle time before the actor of a settled document (ready, failed, deleted: nothing running or scheduled) is
    /// stopped; the shorter of this and `idle_timeout` applies. Under a stream of uploads, live actors (about 15 KB
    /// each) so number the documents in the pipeline plus this many seconds' worth, not `idle_timeout`'s.
    pub settled_timeout: Duration,
    /// Restart policy of document actors.
    pub document_restarts: RestartPolicy,
}

impl RuntimeConfig {
    /// Defaults for a data directory: no embedder, 1,000-character chunks with 100 of overlap, 50 MiB uploads.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            embedder: None,
            chunking: ChunkSettings::default(),
            parse_limits: ParseLimits::default(),
            max_upload_bytes: 50 * 1024 * 1024,
            deduplicate: true,
            workers: std::thread::available_parallelism().map_or(2, usize::from) * 2,
            idle_timeout: Duration::from_secs(30),
            settled_timeout: Duration::from_secs(2),
            document_restarts: RestartPolicy::default(),
        }
    }
}

/// An upload.
#[derive(Clone, Debug)]
pub struct UploadRequest {
    /// The file name (no path).
    pub filename: String,
    /// The declared media type, if any (sniffed from the bytes otherwise).
    pub media_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// User metadata.
    pub metadata: Metadata,
    /// Who, for whom.
    pub event_metadata: EventMetadata,
}

/// The result of an upload.
#[derive(Clone, Debug)]
pub struct UploadOutcome {
    /// The document.
    pub document_id: Uuid,
    /// Its state.
    pub state: DocumentState,
    /// True when the same bytes were already uploaded in the tenant and that document is returned.
    pub deduplicated: bool,
    /// When its first and last events were recorded, if known (the log always tells).
    pub recorded: Option<document::Recorded>,
}

/// Uploads up to this size are hashed on the calling task (tens of microseconds of SHA-256), larger ones on the
/// blocking pool.
const INLINE_HASH_BYTES: usize = 64 * 1024;

/// A handle to the running supervision tree; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    root: ActorRef<RootMsg>,
    blobs: BlobStore,
    dedupe: DedupeIndex,
    config: Arc<RuntimeConfig>,
}

impl Runtime {
    /// Starts the tree; recovery resumes unfinished documents in the background.
    pub async fn start(store: Arc<dyn EventStore>, config: RuntimeConfig) -> Result<Self, CommandError> {
        let blobs = BlobStore::new(&config.data_dir);
        let pipeline = Arc::new(Pipeline::new(
            // Its group commits apart from the uploads': see `blob::pack`.
            blobs.in_lane(crate::blob::Lane::Background),
            config.embedder.clone(),
            config.parse_limits.clone(),
            config.chunking,
            config.workers,
        ));
        let dedupe = DedupeIndex::default();
        let documents_store = Arc::clone(&store);
        let policy = config.document_restarts;
        let passivation = Passivation { idle: config.idle_timeout, settled: config.settled_timeout };
        let documents = Arc::new(move || DocumentsArgs {
            store: Arc::clone(&documents_store),
            pipeline: Arc::clone(&pipeline),
            child_policy: policy,
            own_policy: RestartPolicy { max_restarts: 50, ..RestartPolicy::default() },
            passivation,
        });
        let args = RootArgs { documents, store, dedupe: Arc::clone(&dedupe), policy: RestartPolicy::default() };
        let (root, _) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|error| CommandError::Unavailable(format!("cannot start the runtime: {error}")))?;
        Ok(Self { root, blobs, dedupe, config: Arc::new(config) })
    }

    /// Stops the tree (in-flight stages are abandoned; recovery resumes them next start).
    pub fn shutdown(&self) {
        self.root.stop(Some("shutdown".into()));
    }

    /// Decides and appends a command on a document.
    pub async fn execute(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let document_id = request.document_id;
        let request = Box::new(request);
        let reply = self
            .root
            .call(|reply| RootMsg::Route(document_id, DocumentMsg::Command(request, reply)), Some(CALL_TIMEOUT))
            .await
            .map_err(|error| CommandError::Unavailable(error.to_string()))?;
        match reply {
            ractor::rpc::CallResult::Success(result) => result,
            ractor::rpc::CallResult::Timeout => Err(CommandError::Unavailable("the document did not answer".into())),
            ractor::rpc::CallResult::SenderError => {
                Err(CommandError::Unavailable("the document's actor stopped before answering".into()))
            }
        }
    }

    /// The document's current state as its actor holds it (`None` if it has no events).
    pub async fn snapshot(&self, document_id: Uuid) -> Result<Option<DocumentSnapshot>, CommandError> {
        let reply = self
            .root
            .call(|reply| RootMsg::Route(document_id, DocumentMsg::Snapshot(reply)), Some(CALL_TIMEOUT))
            .await
            .map_err(|error| CommandError::Unavailable(error.to_string()))?;
        match reply {
            ractor::rpc::CallResult::Success(snapshot) => Ok(snapshot.state.exists().then_some(snapshot)),
            _ => Err(CommandError::Unavailable("the document did not answer".into())),
        }
    }

    /// Crashes a document's actor (drills and supervision tests).
    #[doc(hidden)]
    pub fn crash(&self, document_id: Uuid) {
        let _ = self.root.send_message(RootMsg::Route(document_id, DocumentMsg::Crash));
    }

    /// Supervision counters.
    pub async fn stats(&self) -> Result<SupervisorStats, CommandError> {
        match self.root.call(RootMsg::Stats, Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(stats)) => Ok(stats),
            _ => Err(CommandError::Unavailable("the supervisor did not answer".into())),
        }
    }

    /// Stores the bytes and records the upload; the pipeline then runs in the background.
    pub async fn upload(&self, request: UploadRequest) -> Result<UploadOutcome, CommandError> {
        if request.bytes.is_empty() {
            return Err(CommandError::InvalidUpload("the file is empty (0 bytes)".into()));
        }
        if request.bytes.len() > self.config.max_upload_bytes {
            return Err(CommandError::InvalidUpload(format!(
                "the file is {} bytes, over the limit of {} bytes",
                request.bytes.len(),
                self.config.max_upload_bytes
            )));
        }
        let tenant = request.event_metadata.tenant_id.clone();
        // A small file is hashed here (microseconds); a large one on the blocking pool, off the runtime's workers.
        let (bytes, digest) = if request.bytes.len() <= INLINE_HASH_BYTES {
            let digest = crate::blob::digest(&request.bytes);
            (request.bytes, digest)
        } else {
            tokio::task::spawn_blocking(move || {
                let digest = crate::blob::digest(&request.bytes);
                (request.bytes, digest)
            })
            .await
            .map_err(|error| CommandError::Unavailable(error.to_string()))?
        };
        let sha256 = hex::encode(digest);
        if self.config.deduplicate
            && let Some(existing) = self.known_upload(&tenant, &sha256)
            && let Some(snapshot) = self.snapshot(existing).await?
            && !snapshot.state.is_deleted()
            && snapshot.tenant_id.as_deref() == Some(tenant.as_str())
        {
            return Ok(UploadOutcome {
                document_id: existing,
                state: snapshot.state,
                deduplicated: true,
                recorded: None,
            });
        }
        let media_type = match detect(&bytes, request.media_type.as_deref(), Some(&request.filename)) {
            Ok(media_type) => media_type.as_str().to_owned(),
            // Recorded as it came: the parse stage fails it with the reason, so the failure is in the audit trail.
            Err(_) => request.media_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned()),
        };
        let document_id = Uuid::now_v7();
        let command = DocumentCommand::Upload {
            document_id,
            filename: request.filename,
            media_type,
            blob: BlobRef { sha256: sha256.clone(), size: bytes.len() as u64 },
            metadata: request.metadata,
        };
        // Check the command before writing the blob, so a refused upload leaves nothing behind.
        decide(&DocumentState::default(), command.clone())?;
        self.blobs
            .put_hashed_async(bytes, digest)
            .await
            .map_err(|error| CommandError::Unavailable(error.to_string()))?;
        let outcome = self
            .execute(CommandRequest { document_id, command, metadata: request.event_metadata, expected_version: None })
            .await?;
        if let Ok(mut dedupe) = self.dedupe.lock() {
            dedupe.insert((tenant, sha256), document_id);
        }
        Ok(UploadOutcome { document_id, state: outcome.state, deduplicated: false, recorded: outcome.recorded })
    }

    fn known_upload(&self, tenant: &str, sha256: &str) -> Option<Uuid> {
        self.dedupe.lock().ok()?.get(&(tenant.to_owned(), sha256.to_owned())).copied()
    }
}
