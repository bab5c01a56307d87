//! The real `dossier` binary: serve/health/shutdown, migrate, events, verify (tamper detection) and bad input.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dossier::api::auth::Role;
use dossier_events::{EventMetadata, ExpectedVersion, NewEvent, StreamId};
use serde_json::{Value, json};

use crate::contract_tests;
use crate::support::api::{SECRET, token};
use crate::support::{Backend, Scratch, free_port, terminate};

contract_tests!(
    verify_after_tampering_with_event_data_names_exactly_that_event,
    serve_answers_health_and_stops_cleanly_on_sigterm,
    serve_with_schema_newer_than_binary_fails_and_changes_nothing,
    events_command_prints_json_lines_filtered_by_stream_after_and_limit,
    migrate_command_applies_once_then_reports_nothing_to_do,
    bench_api_command_prints_throughput_and_latency_of_each_endpoint,
);

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run dossier")).await.expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn seed(scratch: &Scratch, streams: usize, per_stream: usize) -> Vec<StreamId> {
    let store = scratch.open().await;
    let mut ids = Vec::new();
    for s in 0..streams {
        let stream = StreamId::new(format!("doc-{s}")).expect("valid");
        for e in 0..per_stream {
            let event = NewEvent::new("Noted", 1, json!({ "stream": s, "n": e }));
            store.append(&stream, ExpectedVersion::Any, vec![event], EventMetadata::new("t", "u")).await.expect("seed");
        }
        ids.push(stream);
    }
    drop(store);
    wait_for_embedded_close(scratch).await;
    ids
}

/// The embedded store checkpoints and removes its WAL when its last connection closes (after the writer thread
/// notices the store was dropped).
async fn wait_for_embedded_close(scratch: &Scratch) {
    let wal = scratch.data_dir().join("dossier.db-wal");
    let deadline = Instant::now() + Duration::from_secs(5);
    while scratch.backend == Backend::Embedded && wal.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn verify_after_tampering_with_event_data_names_exactly_that_event(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    seed(&scratch, 3, 3).await;
    let mut verify = scratch.dossier();
    verify.arg("verify");
    let clean = run(verify).await;
    assert!(clean.status.success(), "clean log must verify: {}", stderr(&clean));

    // Position 5 is the second event of stream doc-1 (appends went doc-0 ×3, then doc-1 ×3, …).
    let changed = scratch.execute_sql(r#"UPDATE events SET data = '{"n":1,"stream":99}' WHERE position = 5"#).await;
    assert_eq!(changed, 1);
    let mut verify = scratch.dossier();
    verify.arg("verify");
    let tampered = run(verify).await;
    assert_eq!(tampered.status.code(), Some(1), "tampered log must fail verification");
    let message = stderr(&tampered);
    assert!(message.contains("stream doc-1 version 2 position 5: hash mismatch"), "{message}");
    let report: Value = serde_json::from_slice(&tampered.stdout).expect("json report");
    assert_eq!(report["first_bad"]["position"], json!(5));
    assert_eq!(report["first_bad"]["problem"], json!("hash_mismatch"));
    assert_eq!(report["first_bad"]["found"].as_str().map(str::len), Some(64));
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// `dossier serve` on a free port, once it answers its health check: the child (stderr piped) and the port.
async fn serve(scratch: &Scratch, env: &[(&str, &str)]) -> (std::process::Child, u16, String) {
    let port = free_port();
    let mut command = scratch.dossier();
    command.args(["serve", "--bind", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).stderr(Stdio::piped());
    command.envs(env.iter().copied());
    let child = command.spawn().expect("spawn dossier serve");
    let response = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(response) = http_get(port, "/api/v1/health") {
                return response;
            }
            assert!(Instant::now() < deadline, "server did not answer in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    (child, port, response)
}

/// Stops a served child with SIGTERM: its exit status and everything it wrote to stderr.
async fn stop(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let exit = terminate(&mut child, Duration::from_secs(10));
        let mut stderr = String::new();
        child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("read stderr");
        (exit, stderr)
    })
    .await
    .expect("join")
}

async fn serve_answers_health_and_stops_cleanly_on_sigterm(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let (child, port, response) = serve(&scratch, &[]).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("body")).expect("json");
    let expected_backend = if backend == Backend::Embedded { "embedded" } else { "postgres" };
    assert_eq!(body["status"], json!("ok"));
    assert_eq!(body["components"]["event_store"]["backend"], json!(expected_backend));

    let not_found = http_get(port, "/api/v1/nothing-here").expect("response");
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    assert!(not_found.to_ascii_lowercase().contains("content-type: application/problem+json"), "{not_found}");

    let (exit, _) = stop(child).await;
    assert!(exit.success(), "clean shutdown exits 0, got {exit:?}");
}

#[tokio::test]
async fn serve_logs_a_client_going_away_at_debug_never_as_an_error() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let env = [("SECRET_KEY", SECRET), ("RUST_LOG", "info,dossier::server=debug")];
    let (child, port, _) = serve(&scratch, &env).await;
    let admin = token("root", "acme", &[Role::Admin]);
    tokio::task::spawn_blocking(move || {
        // A live-event listener that reads the start of its stream and leaves.
        let mut live = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(live, "GET /api/v1/events/live HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\n\r\n")
            .expect("send");
        let mut start = [0u8; 12];
        live.read_exact(&mut start).expect("the stream starts");
        assert_eq!(&start, b"HTTP/1.1 200");
        drop(live);
        // A request cut off half-way.
        let mut cut = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(cut, "GET /api/v1/health HTTP/1.1\r\nHost: loc").expect("send");
        drop(cut);
        // Something that is not HTTP.
        let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        garbage.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").expect("send");
        let _ = garbage.read(&mut [0u8; 64]);
        std::thread::sleep(Duration::from_millis(300));
    })
    .await
    .expect("join");
    let (exit, stderr) = stop(child).await;
    assert!(exit.success(), "{stderr}");
    assert!(!stderr.contains("ERROR"), "a client going away is not an error of the server:\n{stderr}");
    assert!(
        !stderr.contains(" WARN "),
        "nor anything else a warning (the vector index checks memory maps first):\n{stderr}"
    );
    let noted = stderr.matches("http_connection_closed_by_client").count();
    assert!(noted >= 3, "each of the three is noted at debug:\n{stderr}");
}

async fn serve_with_schema_newer_than_binary_fails_and_changes_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    seed(&scratch, 1, 2).await;
    let newer = "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (999, 'future', 'x', 0)";
    let newer = if backend == Backend::Postgres {
        newer.replace(", applied_at", "").replace(", 0)", ")")
    } else {
        newer.to_owned()
    };
    scratch.execute_sql(&newer).await;
    let mut command = scratch.dossier();
    command.args(["serve", "--bind", "127.0.0.1:0"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("database schema version 999 is newer than this dossier binary supports"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    assert_eq!(scratch.execute_sql("UPDATE events SET version = version WHERE position > 0").await, 2);
}

async fn events_command_prints_json_lines_filtered_by_stream_after_and_limit(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let streams = seed(&scratch, 2, 3).await;
    let lines = |output: &Output| -> Vec<Value> {
        assert!(output.status.success(), "{}", stderr(output));
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    };
    let mut all = scratch.dossier();
    all.arg("events");
    let events = lines(&run(all).await);
    assert_eq!(events.len(), 6);
    assert_eq!(events[0]["hash"].as_str().map(str::len), Some(64));
    let mut page = scratch.dossier();
    page.args(["events", "--after", "1", "--limit", "2"]);
    let positions: Vec<Value> = lines(&run(page).await).iter().map(|e| e["position"].clone()).collect();
    assert_eq!(positions, vec![json!(2), json!(3)]);
    let mut one = scratch.dossier();
    one.args(["events", "--stream", streams[1].as_str(), "--after", "4"]);
    let versions: Vec<Value> = lines(&run(one).await).iter().map(|e| e["version"].clone()).collect();
    assert_eq!(versions, vec![json!(2), json!(3)]);
}

async fn migrate_command_applies_once_then_reports_nothing_to_do(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let mut first = scratch.dossier();
    first.arg("migrate");
    let output = run(first).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["from_version"], json!(0));
    assert!(report["applied"].as_array().is_some_and(|applied| !applied.is_empty()));
    let mut second = scratch.dossier();
    second.arg("migrate");
    let again: Value = serde_json::from_slice(&run(second).await.stdout).expect("json");
    assert_eq!(again["applied"], json!([]));
    assert_eq!(again["from_version"], report["to_version"]);
}

async fn bench_api_command_prints_throughput_and_latency_of_each_endpoint(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scifact");
    let mut bench = scratch.dossier();
    bench.args(["bench", "api", "--seconds", "0.5", "--warmup", "0.2", "--chunks", "200", "--connections", "4"]);
    bench.arg("--corpus").arg(data.join("corpus.jsonl.gz")).arg("--queries").arg(data.join("queries_train.jsonl"));
    let output = run(bench).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let expected_backend = match backend {
        Backend::Embedded => "embedded",
        Backend::Postgres => "postgres",
    };
    assert_eq!(report["backend"], json!(expected_backend), "{report}");
    assert_eq!(report["chunks"], json!(200), "{report}");
    assert!(report["cores"].as_u64().is_some_and(|cores| cores >= 1), "{report}");
    assert!(report["search"]["first_query_hits"].as_u64().is_some_and(|hits| hits > 0), "{report}");
    for endpoint in ["get_document", "search", "upload"] {
        let figures = &report[endpoint];
        assert_eq!(figures["errors"], json!(0), "{endpoint}: {figures}");
        assert!(figures["ok_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{endpoint}: {figures}");
        assert_eq!(figures["ok"], figures["requests"], "{endpoint}: {figures}");
        let (p50, p99, max) = (figures["p50_ms"].as_f64(), figures["p99_ms"].as_f64(), figures["max_ms"].as_f64());
        assert!(matches!((p50, p99, max), (Some(p50), Some(p99), Some(max)) if 0.0 < p50 && p50 <= p99 && p99 <= max));
        // The CPU over the window: the server and the load generator are in this process, so it used some.
        let cpu = &figures["cpu"];
        let (process, other) = (cpu["process_cores"].as_f64(), cpu["other_cores"].as_f64());
        assert!(matches!((process, other), (Some(process), Some(other)) if process > 0.0 && other >= 0.0), "{cpu}");
        assert!(cpu["process_ms_per_ok"].as_f64().is_some_and(|ms| ms > 0.0), "{endpoint}: {cpu}");
        assert_eq!(cpu["cores"], report["cores"], "{cpu}");
    }
}

#[tokio::test]
async fn bench_api_upload_rate_paces_uploads_open_loop_and_refuses_a_rate_that_is_not_positive() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scifact");
    let bench = |rate: &str| {
        let mut bench = scratch.dossier();
        bench.args(["bench", "api", "--seconds", "1", "--warmup", "0.2", "--chunks", "200", "--connections", "4"]);
        bench.arg("--corpus").arg(data.join("corpus.jsonl.gz")).arg("--queries").arg(data.join("queries_train.jsonl"));
        bench.arg(format!("--upload-rate={rate}"));
        bench
    };
    let output = run(bench("100")).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let upload = &report["upload"];
    assert_eq!(upload["offered_per_sec"], json!(100.0), "{upload}");
    assert_eq!(upload["connections"], json!(128), "{upload}");
    assert_eq!(upload["errors"], json!(0), "{upload}");
    // Due in the measured second: 100 (a closed loop over 4 connections sends many more), one either way for the
    // rounding of the window's edges.
    let requests = upload["requests"].as_u64().expect("requests");
    assert!((99..=101).contains(&requests), "{upload}");
    assert!(report["get_document"].get("offered_per_sec").is_none(), "the other endpoints stay closed loop");
    assert!(report["get_document"]["requests"].as_u64().is_some_and(|n| n > 200), "{report}");

    for rate in ["0", "-5", "NaN"] {
        let refused = run(bench(rate)).await;
        assert!(!refused.status.success(), "rate {rate}");
        assert!(stderr(&refused).contains("--upload-rate must be positive"), "{}", stderr(&refused));
    }
}

#[tokio::test]
async fn serve_with_corrupt_embedded_file_fails_and_leaves_it_untouched() {
    let scratch = Scratch::new(Backend::Embedded).await;
    std::fs::create_dir_all(scratch.data_dir()).expect("dir");
    let path = scratch.data_dir().join("dossier.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).expect("write");
    let mut command = scratch.dossier();
    command.args(["serve", "--bind", "127.0.0.1:0"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("dossier.db: not a SQLite database"), "{message}");
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "file must be untouched");
}

#[tokio::test]
async fn verify_with_truncated_embedded_file_names_the_file_and_leaves_it_untouched() {
    let scratch = Scratch::new(Backend::Embedded).await;
    seed(&scratch, 20, 50).await;
    let path = scratch.data_dir().join("dossier.db");
    let bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 8192, "seeded database should span several pages");
    let truncated = &bytes[..bytes.len() / 2];
    std::fs::write(&path, truncated).expect("truncate");
    for args in [&["verify"][..], &["serve", "--bind", "127.0.0.1:0"][..]] {
        let mut command = scratch.dossier();
        command.args(args);
        let output = run(command).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains("dossier.db: truncated database file"), "{message}");
    }
    assert_eq!(std::fs::read(&path).expect("read"), truncated, "file must be untouched");
}

#[tokio::test]
async fn serve_with_unreachable_or_invalid_database_url_fails_with_one_line() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let cases = [
        ("postgres://dossier:sekret@127.0.0.1:1/dossier", "cannot connect to Postgres at 127.0.0.1:1/dossier"),
        ("postgres://dossier:sekret@localhost:notaport/dossier", "invalid DATABASE_URL"),
    ];
    for (url, expected) in cases {
        let mut command = scratch.dossier();
        command.env("DATABASE_URL", url).args(["serve", "--bind", "127.0.0.1:0"]);
        let output = run(command).await;
        assert_eq!(output.status.code(), Some(1), "{url}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("sekret"), "the password must never be printed: {message}");
        assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    }
}
