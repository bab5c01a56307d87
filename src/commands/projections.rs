//! `dossier rebuild read_model` and `dossier verify --projections`.

use std::sync::Arc;
use std::time::Duration;

use dossier_events::EventStore;
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::rebuild::{rebuild_read_model, verify_read_model};
use dossier_projections::runner::{READ_MODEL, RunnerConfig, initial_status};

use crate::error::AppError;

/// Rebuilds the read model blue/green with a progress bar (position, head, events/s, ETA); prints the report.
pub async fn rebuild(
    log: Arc<dyn EventStore>,
    read_model: Arc<dyn ReadModelStore>,
    show_progress: bool,
) -> Result<(), AppError> {
    let (status, mut watch) = tokio::sync::watch::channel(initial_status(READ_MODEL, 0));
    let head = log.head_position().await?;
    let progress = if show_progress { indicatif::ProgressBar::new(head) } else { indicatif::ProgressBar::hidden() };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} position {pos}/{len} {per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let bar = progress.clone();
    let watcher = tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let status = watch.borrow_and_update().clone();
            bar.set_length(status.head.max(status.checkpoint).max(bar.length().unwrap_or(0)));
            bar.set_position(status.checkpoint);
            bar.set_message(format!("generation {}", status.generation));
        }
    });
    let config = RunnerConfig { batch_size: 2_000, batch_wait: Duration::from_millis(20) };
    let report = rebuild_read_model(log, read_model, config, status).await;
    watcher.abort();
    progress.finish_and_clear();
    let report = report.map_err(|error| AppError::Usage(error.to_string()))?;
    println!("{}", serde_json::to_string(&report).map_err(|error| AppError::Usage(error.to_string()))?);
    Ok(())
}

/// Compares the read model with a replay of the log; prints every difference as a JSON line; fails if any.
pub async fn verify(log: &dyn EventStore, read_model: &dyn ReadModelStore) -> Result<(), AppError> {
    let differences = verify_read_model(log, read_model).await.map_err(|error| AppError::Usage(error.to_string()))?;
    for difference in &differences {
        println!("{}", serde_json::to_string(difference).map_err(|error| AppError::Usage(error.to_string()))?);
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(AppError::Verification(format!("the read model differs from the log in {} places", differences.len())))
    }
}
