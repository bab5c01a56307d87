//! The errors of the event log.

use crate::envelope::{ExpectedVersion, InvalidField, StreamId};

/// Everything an [`EventStore`](crate::store::EventStore) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version did not match the expected one; nothing was appended.
    #[error("version conflict on {stream}: expected {expected}, found {}", describe_version(*.actual))]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version at the time of the append (`None`: no stream).
        actual: Option<u64>,
    },
    /// The idempotency key was used before in this tenant for a different request.
    #[error("idempotency key {key:?} was already used in tenant {tenant:?} for a different request")]
    IdempotencyMismatch {
        /// The tenant.
        tenant: String,
        /// The key.
        key: String,
    },
    /// The request itself is malformed (empty append, bad identifier, unserialisable data).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A stored event could not be decoded: the database was edited or written by something else.
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt {
        /// Its global position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be opened or used: unreachable server, unreadable file, wrong schema.
    #[error("{0}")]
    Unavailable(String),
    /// A database call failed.
    #[error("{context}: {source}")]
    Database {
        /// What the store was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store has shut down.
    #[error("the event store is closed")]
    Closed,
}

fn describe_version(version: Option<u64>) -> String {
    match version {
        Some(version) => format!("version {version}"),
        None => "no stream".to_owned(),
    }
}

impl From<InvalidField> for StoreError {
    fn from(value: InvalidField) -> Self {
        Self::Invalid(value.to_string())
    }
}

impl StoreError {
    /// Wraps a driver error with what the store was doing.
    pub fn database(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Database { context: context.into(), source: Box::new(source) }
    }

    /// A short, stable name for the kind of error (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "conflict",
            Self::IdempotencyMismatch { .. } => "idempotency_mismatch",
            Self::Invalid(_) => "invalid",
            Self::Corrupt { .. } => "corrupt",
            Self::Unavailable(_) => "unavailable",
            Self::Database { .. } => "database",
            Self::Closed => "closed",
        }
    }
}

/// Shorthand for results of the event log.
pub type StoreResult<T> = Result<T, StoreError>;
