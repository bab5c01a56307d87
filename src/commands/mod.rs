//! The subcommands other than `serve`.

pub mod bench;
pub mod bench_api;
pub mod bench_api_client;
pub mod bench_ingest;
pub mod bench_rebuild;
pub mod cpu;
pub mod eval;
pub mod events;
pub mod ingest;
pub mod load;
pub mod projections;
pub mod synthetic;
pub mod synthetic_log;
pub mod token;
pub mod verify;
