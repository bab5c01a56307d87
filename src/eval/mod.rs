//! Retrieval-quality evaluation: BEIR data readers ([`beir`]), trec_eval-exact metrics ([`metrics`]), a runner that
//! scores any [`runner::Retriever`] over a query set ([`runner`]), and RAGAS-style metrics judged by an LLM
//! ([`judge`], with its pinned [`prompt`]s, strictly parsed [`verdict`]s and the [`score`] arithmetic).
//!
//! The exact definitions, and the choices made where the references leave room, are in `docs/evaluation.md` and in
//! each module's documentation.

pub mod beir;
pub mod judge;
pub mod metrics;
pub mod prompt;
pub mod runner;
pub mod score;
pub mod verdict;

pub use beir::{DatasetError, Document, Qrels, Query, read_corpus, read_qrels, read_queries};
pub use judge::{Judge, JudgeConfig, JudgeError, JudgedCounts, JudgedReport, Metric, Sample};
pub use metrics::{AtCutoff, Hit};
pub use runner::{EvalError, EvalSet, QrelsSummary, QueryResult, Report, RetrieveError, Retriever, evaluate};
pub use score::JudgedScores;
