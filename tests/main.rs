//! dossier's integration tests, compiled into one binary.

mod api;
mod background;
mod cli;
mod embed;
mod eval_harness;
mod evaluation;
mod judge;
#[cfg(feature = "local-embeddings")]
mod local_embed;
mod naive_contract;
mod pipeline;
mod pipeline_retries;
mod projection_runner;
mod read_model;
mod readme;
mod rebuild;
mod recovery;
mod store_contract;
mod support;
mod vector_index;
