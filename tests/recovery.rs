//! Crash recovery with the real binary: ingest 200 documents, SIGKILL the process in the middle, run it again:
//! every document reaches `ready` and no stream holds a duplicated step.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::contract_tests;
use crate::support::{Backend, Scratch};

contract_tests!(ingest_killed_midway_then_rerun_finishes_every_document_exactly_once);

const DOCUMENTS: usize = 200;

fn write_corpus(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    for i in 0..DOCUMENTS {
        let body = format!(
            "# Document {i}\n\n{}\n\n## Details\n\n{}\n",
            format!("Paragraph about topic {i} with enough words to make a few chunks. ").repeat(12),
            format!("More text for document {i}, split over several lines.\n").repeat(8)
        );
        std::fs::write(dir.join(format!("doc-{i:03}.md")), body).expect("write file");
    }
}

async fn ingest_killed_midway_then_rerun_finishes_every_document_exactly_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let corpus = scratch.dir.join("corpus");
    write_corpus(&corpus);
    let mut first = scratch.dossier();
    first.args(["ingest", "--quiet"]).arg(&corpus).env("CHUNK_MAX_CHARS", "300").env("CHUNK_OVERLAP", "30");
    first.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = first.spawn().expect("spawn ingest");
    // Kill it once part of the work is committed, while the pipeline is busy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let uploaded = if scratch.data_dir().join("dossier.db").exists() || backend == Backend::Postgres {
            count_if_ready(&scratch, "SELECT count(*) FROM events WHERE event_type = 'DocumentChunked'").await
        } else {
            0
        };
        if uploaded >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "ingest made no progress");
        assert!(child.try_wait().expect("wait").is_none(), "ingest finished before it could be killed");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let ready_before = scratch.query_count("SELECT count(*) FROM events WHERE event_type = 'DocumentReady'").await;
    assert!((ready_before as usize) < DOCUMENTS, "the kill must land mid-way ({ready_before} ready)");

    let mut second = scratch.dossier();
    second.args(["ingest", "--quiet"]).arg(&corpus).env("CHUNK_MAX_CHARS", "300").env("CHUNK_OVERLAP", "30");
    let output = tokio::task::spawn_blocking(move || second.output().expect("rerun")).await.expect("join");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary json");
    assert_eq!(summary["ready"], DOCUMENTS, "{summary}");
    assert_eq!(summary["failed"], serde_json::json!([]), "{summary}");

    let streams = scratch.query_count("SELECT count(DISTINCT stream_id) FROM events").await;
    assert_eq!(streams as usize, DOCUMENTS, "one stream per file, no duplicate documents");
    for event_type in ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "DocumentReady"] {
        let total =
            scratch.query_count(&format!("SELECT count(*) FROM events WHERE event_type = '{event_type}'")).await;
        assert_eq!(total as usize, DOCUMENTS, "{event_type}: exactly one per document");
    }
    let duplicated = scratch
        .query_count(
            "SELECT count(*) FROM (SELECT stream_id, event_type FROM events GROUP BY stream_id, event_type
             HAVING count(*) > 1) AS d",
        )
        .await;
    assert_eq!(duplicated, 0);
    let mut verify = scratch.dossier();
    verify.arg("verify");
    let verified = tokio::task::spawn_blocking(move || verify.output().expect("verify")).await.expect("join");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
}

/// Counts rows once the schema exists (the child creates it at start).
async fn count_if_ready(scratch: &Scratch, sql: &str) -> i64 {
    let exists = match scratch.backend {
        Backend::Embedded => {
            let path = scratch.data_dir().join("dossier.db");
            rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events'", [], |r| r.get(0)))
                .unwrap_or(0i64)
        }
        Backend::Postgres => scratch.query_count("SELECT count(*) FROM pg_tables WHERE tablename = 'events'").await,
    };
    if exists == 0 { 0 } else { scratch.query_count(sql).await }
}
