//! dossier's integration tests, compiled into one binary.

mod cli;
mod naive_contract;
mod store_contract;
mod support;
