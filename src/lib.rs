//! dossier: an event-sourced document ingestion and retrieval backend.
//!
//! This crate is the application: configuration, telemetry, the HTTP server and the command line. The event log
//! lives in `dossier-events`, the ingestion actors in `dossier-actors`, the read models in `dossier-projections`.

#![warn(missing_docs)]

pub mod backend;
pub mod cli;
pub mod commands;
pub mod error;
pub mod eval;
pub mod server;
pub mod settings;
pub mod telemetry;

use std::time::Duration;

use cli::{Bench, Cli, Command};
use error::AppError;
use settings::Settings;

/// Runs one command line.
pub async fn run(cli: Cli, settings: Settings) -> Result<(), AppError> {
    match cli.command {
        Command::Serve { bind } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let runtime = backend::start_runtime(&settings, std::sync::Arc::clone(&store)).await?;
            let read_model = backend::open_read_model(&settings).await?;
            let projection = backend::start_projection(std::sync::Arc::clone(&store), read_model).await?;
            let app = server::Application::build(bind.unwrap_or(settings.bind), store).await?;
            app.run_until(server::shutdown_signal()).await;
            projection.stop(Some("shutdown".into()));
            runtime.shutdown();
            Ok(())
        }
        Command::Ingest { paths, tenant, quiet } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let runtime = backend::start_runtime(&settings, std::sync::Arc::clone(&store)).await?;
            let show_progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = commands::ingest::run(store, &runtime, &paths, &tenant, show_progress).await;
            runtime.shutdown();
            let summary = summary?;
            println!("{}", serde_json::to_string(&summary).map_err(|error| AppError::Usage(error.to_string()))?);
            Ok(())
        }
        Command::Migrate => {
            let report = backend::migrate(&settings).await?;
            println!("{}", serde_json::to_string(&report).map_err(|error| AppError::Usage(error.to_string()))?);
            Ok(())
        }
        Command::Events { stream, after, limit } => {
            let store = backend::open(&settings, backend::Access::Inspect).await?;
            commands::events::run(store.as_ref(), stream.as_deref(), after, limit).await
        }
        Command::Verify { projections } => {
            let store = backend::open(&settings, backend::Access::Inspect).await?;
            commands::verify::run(store.as_ref()).await?;
            if projections {
                let read_model = backend::open_read_model(&settings).await?;
                commands::projections::verify(store.as_ref(), read_model.as_ref()).await?;
            }
            Ok(())
        }
        Command::Rebuild { projection: _, quiet } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let read_model = backend::open_read_model(&settings).await?;
            let show_progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            commands::projections::rebuild(store, read_model, show_progress).await
        }
        Command::Bench {
            bench: Bench::Rebuild { backend, documents, events_per_document, chunks_per_document, dimensions },
        } => {
            let shape = commands::bench_rebuild::RebuildBench {
                documents,
                events_per_document,
                chunks_per_document,
                dimensions,
            };
            commands::bench_rebuild::run(&settings, backend, shape).await
        }
        Command::Bench { bench: Bench::Ingest { backend, corpus, limit } } => {
            commands::bench_ingest::run(&settings, backend, &corpus, limit).await
        }
        Command::Bench { bench: Bench::Append { backend, read_events, seconds } } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(AppError::Usage(format!("--seconds must be positive, got {seconds}")));
            }
            let params = commands::bench::AppendBench { duration: Duration::from_secs_f64(seconds), read_events };
            commands::bench::append(&settings, backend, params).await
        }
    }
}
