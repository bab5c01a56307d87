//! The application's error type: what a command can fail with, each a one-line message.

use dossier_events::StoreError;

use crate::eval::DatasetError;
use crate::settings::SettingsError;

/// Everything a dossier command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A data file (a BEIR corpus, queries or qrels) could not be read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log failed verification.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Usage(String),
}

impl AppError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}
