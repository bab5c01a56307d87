//! `dossier events`: the log as JSON lines on stdout.

use std::io::Write;

use dossier_events::{EventStore, RecordedEvent, StreamId};

use crate::error::AppError;

const PAGE: usize = 1_000;

/// Prints events after `after` (of one stream, or of the whole log), at most `limit`.
pub async fn run(store: &dyn EventStore, stream: Option<&str>, after: u64, limit: Option<u64>) -> Result<(), AppError> {
    let stream = stream.map(StreamId::new).transpose().map_err(|error| AppError::Usage(error.to_string()))?;
    let mut remaining = limit.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut position = after;
    let mut version = 1;
    while remaining > 0 {
        let page: Vec<RecordedEvent> = match &stream {
            Some(stream) => store.read_stream(stream, version, PAGE).await?,
            None => store.read_all(position, PAGE).await?,
        };
        let Some(last) = page.last() else { break };
        position = last.position;
        version = last.version + 1;
        let read = page.len();
        for event in page.iter().filter(|event| event.position > after).take(remaining as usize) {
            let line = serde_json::to_string(event).map_err(|error| AppError::Usage(error.to_string()))?;
            if writeln!(out, "{line}").is_err() {
                // The reader went away (e.g. `| head`): stop quietly.
                return Ok(());
            }
            remaining -= 1;
        }
        if read < PAGE {
            break;
        }
    }
    let _ = out.flush();
    Ok(())
}
