//! dossier: an event-sourced document ingestion and retrieval backend.
//!
//! This crate is the application: configuration, telemetry, the HTTP server and the command line. The event log
//! lives in `dossier-events`, the ingestion actors in `dossier-actors`, the read models in `dossier-projections`.

#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod coordination;
pub mod error;
pub mod eval;
pub mod server;
pub mod settings;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use cli::{Bench, Cli, Command, ProjectionsCommand};
use error::AppError;
use settings::Settings;

/// Runs one command line.
pub async fn run(cli: Cli, settings: Settings) -> Result<(), AppError> {
    match cli.command {
        Command::Serve { bind } => {
            let server = server::Server::start(&settings, bind.unwrap_or(settings.bind)).await?;
            server.run_until(server::shutdown_signal()).await;
            Ok(())
        }
        Command::Ingest { paths, tenant, quiet } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let runtime = backend::start_runtime(backend::runtime_config(&settings)?, Arc::clone(&store)).await?;
            let show_progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = commands::ingest::run(store, &runtime, &paths, &tenant, show_progress).await;
            runtime.shutdown();
            let summary = summary?;
            println!("{}", serde_json::to_string(&summary).map_err(|error| AppError::Usage(error.to_string()))?);
            Ok(())
        }
        Command::Token { sub, tenant, roles, ttl } => {
            println!("{}", commands::token::mint(&settings, sub, tenant, &roles, &ttl)?);
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
                let projections = backend::open_projections_from_settings(&settings, Arc::clone(&store)).await?;
                commands::projections::verify(store.as_ref(), &projections).await?;
            }
            Ok(())
        }
        Command::Rebuild { projection, quiet } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let projections = backend::open_projections_from_settings(&settings, Arc::clone(&store)).await?;
            let projection = projections.by_name(&projection);
            let show_progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            commands::projections::rebuild(store, projection, show_progress).await
        }
        Command::Eval {
            corpus,
            queries,
            qrels,
            mode,
            k,
            limit,
            workdir,
            bm25_k1,
            bm25_b,
            bm25_avg_len,
            rrf_k,
            per_query,
        } => {
            use dossier_projections::vector::{Bm25Params, SearchMode, search::FusionParams};
            let mode = match mode {
                cli::EvalMode::Sparse => SearchMode::Sparse,
                cli::EvalMode::Dense => SearchMode::Dense,
                cli::EvalMode::Hybrid => SearchMode::Hybrid,
            };
            let args = commands::eval::EvalArgs {
                corpus,
                queries,
                qrels,
                mode,
                k,
                limit,
                workdir,
                bm25: Bm25Params { k1: bm25_k1, b: bm25_b, avg_len: bm25_avg_len },
                fusion: FusionParams { rrf_k, ..FusionParams::default() },
                per_query,
            };
            commands::eval::run(&settings, args).await
        }
        Command::Projections { command: ProjectionsCommand::Skip { projection, position, reason, actor } } => {
            let store = backend::open(&settings, backend::Access::Serve).await?;
            let projections = backend::open_projections_from_settings(&settings, Arc::clone(&store)).await?;
            let name = projections.by_name(&projection).name().to_owned();
            let report = dossier_projections::skip::skip_poison_event(
                store.as_ref(),
                projections.read_model.as_ref(),
                &name,
                position,
                &actor,
                &reason,
            )
            .await
            .map_err(|error| AppError::Usage(error.to_string()))?;
            println!("{}", serde_json::to_string(&report).map_err(|error| AppError::Usage(error.to_string()))?);
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Rebuild {
                    backend,
                    documents,
                    events_per_document,
                    chunks_per_document,
                    dimensions,
                    batch_size,
                    corpus,
                    chunk_chars,
                },
        } => {
            let log = commands::synthetic_log::LogShape {
                documents,
                events_per_document,
                chunks_per_document,
                dimensions,
                chunk_chars,
            };
            let shape = commands::bench_rebuild::RebuildBench { log, batch_size };
            let text = commands::synthetic::SyntheticText::from_corpus(&corpus)?;
            commands::bench_rebuild::run(&settings, backend, shape, Arc::new(text)).await
        }
        Command::Bench {
            bench:
                Bench::Api {
                    backend,
                    seconds,
                    warmup,
                    connections,
                    client_threads,
                    chunks,
                    chunks_per_document,
                    chunk_chars,
                    upload_chars,
                    corpus,
                    queries,
                    catch_up_timeout,
                    trace,
                    upload_rate,
                },
        } => {
            let positive = |name: &str, value: f64, zero_ok: bool| {
                if value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) {
                    Ok(Duration::from_secs_f64(value))
                } else {
                    Err(AppError::Usage(format!("--{name} must be positive, got {value}")))
                }
            };
            if connections == 0 {
                return Err(AppError::Usage("--connections must be at least 1".into()));
            }
            if let Some(rate) = upload_rate {
                positive("upload-rate", rate, false)?;
            }
            if let Some(dir) = &trace {
                std::fs::create_dir_all(dir)
                    .map_err(|error| AppError::io(format!("creating the trace directory {}", dir.display()), error))?;
            }
            let params = commands::bench_api::ApiBench {
                connections,
                client_threads,
                duration: positive("seconds", seconds, false)?,
                warmup: positive("warmup", warmup, true)?,
                chunks,
                chunks_per_document,
                chunk_chars,
                upload_chars,
                queries,
                catch_up_timeout: Duration::from_secs(catch_up_timeout),
                trace,
                upload_rate,
            };
            let text = commands::synthetic::SyntheticText::from_corpus(&corpus)?;
            commands::bench_api::run(&settings, backend, params, Arc::new(text)).await
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
