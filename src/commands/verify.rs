//! `dossier verify`: the hash chain of every stream and the global order.

use dossier_events::EventStore;
use dossier_events::verify::verify_log;

use crate::error::AppError;

/// Verifies the log; prints the report as JSON and fails naming the first bad event.
pub async fn run(store: &dyn EventStore) -> Result<(), AppError> {
    let complaints = store.check_storage().await?;
    if !complaints.is_empty() {
        return Err(AppError::Verification(format!("storage check failed: {}", complaints.join("; "))));
    }
    let report = verify_log(store).await?;
    println!("{}", serde_json::to_string(&report).map_err(|error| AppError::Usage(error.to_string()))?);
    match report.first_bad {
        Some(bad) => Err(AppError::Verification(bad.to_string())),
        None => {
            tracing::info!(events = report.events, streams = report.streams, "log_verified");
            Ok(())
        }
    }
}
