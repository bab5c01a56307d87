//! `dossier rebuild <projection>` and `dossier verify --projections`.

use std::sync::Arc;

use dossier_events::EventStore;
use dossier_projections::rebuild::{rebuild as rebuild_projection, verify_read_model};
use dossier_projections::runner::{Projection, RunnerConfig, initial_status};
use dossier_projections::vector::verify::verify_vector_index;

use crate::backend::Projections;
use crate::error::AppError;

/// Rebuilds a projection blue/green with a progress bar (position, head, events/s, ETA); prints the report.
pub async fn rebuild(
    log: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    show_progress: bool,
) -> Result<(), AppError> {
    let (status, mut watch) = tokio::sync::watch::channel(initial_status(projection.name(), 0));
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
    let config = RunnerConfig::rebuild();
    let report = rebuild_projection(log, projection.as_ref(), config, status).await;
    watcher.abort();
    progress.finish_and_clear();
    let report = report.map_err(|error| AppError::Usage(error.to_string()))?;
    println!("{}", serde_json::to_string(&report).map_err(|error| AppError::Usage(error.to_string()))?);
    Ok(())
}

/// Compares the read model and the vector index with a replay of the log; prints every difference as a JSON line
/// (with the projection it concerns); fails if any.
pub async fn verify(log: &dyn EventStore, projections: &Projections) -> Result<(), AppError> {
    let failed = |error: dossier_projections::runner::RunnerError| AppError::Usage(error.to_string());
    let rows = verify_read_model(log, projections.read_model.as_ref()).await.map_err(failed)?;
    let vector = &projections.vector;
    let points = verify_vector_index(
        log,
        vector.index().as_ref(),
        projections.read_model.as_ref(),
        vector.config(),
        Arc::clone(&projections.bm25),
    )
    .await
    .map_err(failed)?;
    let mut lines = Vec::new();
    for difference in &rows {
        lines.push(tagged("read_model", difference)?);
    }
    for difference in &points {
        lines.push(tagged("vector_index", difference)?);
    }
    for line in &lines {
        println!("{line}");
    }
    if lines.is_empty() {
        Ok(())
    } else {
        Err(AppError::Verification(format!(
            "the projections differ from the log in {} places ({} in the read model, {} in the vector index)",
            lines.len(),
            rows.len(),
            points.len()
        )))
    }
}

fn tagged(projection: &str, difference: &impl serde::Serialize) -> Result<String, AppError> {
    let mut value = serde_json::to_value(difference).map_err(|error| AppError::Usage(error.to_string()))?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("projection".into(), projection.into());
    }
    Ok(value.to_string())
}
