//! The embedding port's one error type: each failure is classified once, where it happens, as worth another
//! attempt (`Transient`) or not (`Permanent`), so the pipeline's retry loop never has to inspect HTTP details.

use std::time::Duration;

/// Why one [`Embedder::embed`](super::Embedder::embed) call (one attempt) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The same call may succeed later: a timeout, a refused or reset connection, HTTP 408, 429 or 5xx.
    #[error("transient embedding failure: {reason}")]
    Transient {
        /// What went wrong, naming the model; never contains the API key.
        reason: String,
        /// How long the server asked us to wait (`Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: bad request or credentials, unknown model, or a response that breaks the contract
    /// (malformed, wrong number of vectors, wrong dimension, non-finite values).
    #[error("permanent embedding failure: {reason}")]
    Permanent {
        /// What went wrong, naming the model; never contains the API key.
        reason: String,
    },
}

impl EmbedError {
    /// A transient failure with no server-given delay.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient { reason: reason.into(), retry_after: None }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent { reason: reason.into() }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The delay the server asked for (`Retry-After`), if this is a transient failure that carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            Self::Permanent { .. } => None,
        }
    }

    /// The human-readable reason, without the transient/permanent prefix.
    pub fn reason(&self) -> &str {
        match self {
            Self::Transient { reason, .. } | Self::Permanent { reason } => reason,
        }
    }

    /// Of two failures of the same call (different batches), the one that should decide what the caller does:
    /// a permanent failure beats a transient one (retrying is pointless), and of two transient ones the one asking
    /// for the longer wait wins (so the next attempt respects every batch's rate limit). Ties keep `self`.
    pub fn more_relevant(self, other: Self) -> Self {
        match (&self, &other) {
            (Self::Permanent { .. }, _) => self,
            (Self::Transient { .. }, Self::Permanent { .. }) => other,
            (Self::Transient { retry_after: mine, .. }, Self::Transient { retry_after: theirs, .. }) => {
                if theirs > mine { other } else { self }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_transient_distinguishes_the_two_kinds() {
        assert!(EmbedError::transient("timeout").is_transient());
        assert!(!EmbedError::permanent("bad request").is_transient());
    }

    #[test]
    fn retry_after_is_reported_only_for_transient_failures() {
        let error = EmbedError::Transient { reason: "429".into(), retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(EmbedError::permanent("x").retry_after(), None);
    }

    #[test]
    fn more_relevant_with_permanent_and_transient_prefers_permanent() {
        let transient = EmbedError::transient("500");
        let permanent = EmbedError::permanent("401");
        assert_eq!(transient.clone().more_relevant(permanent.clone()), permanent);
        assert_eq!(permanent.clone().more_relevant(transient), permanent);
    }

    #[test]
    fn more_relevant_with_two_transients_prefers_longer_retry_after() {
        let short = EmbedError::Transient { reason: "a".into(), retry_after: None };
        let long = EmbedError::Transient { reason: "b".into(), retry_after: Some(Duration::from_secs(3)) };
        assert_eq!(short.clone().more_relevant(long.clone()), long);
        assert_eq!(long.clone().more_relevant(short), long);
    }

    #[test]
    fn display_names_the_kind_and_reason() {
        assert_eq!(
            EmbedError::permanent("model `m`: HTTP 401").to_string(),
            "permanent embedding failure: model `m`: HTTP 401"
        );
    }
}
