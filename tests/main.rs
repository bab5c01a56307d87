//! dossier's integration tests, compiled into one binary.

mod cli;
mod embed;
mod naive_contract;
mod pipeline;
mod pipeline_retries;
mod recovery;
mod store_contract;
mod support;
