//! The README's HTTP API examples, run as written: every `sh` block of its "HTTP API" section, in order, as one bash
//! session against the real binary, on each backend.
//!
//! Three things stand in for the reader. `cargo run --release [-q] -- ARGS` runs the binary under test (a `cargo` on
//! the session's PATH), `localhost:8080` becomes the port the test picked, and between blocks the session waits, as
//! a reader would, until the server answers and what the previous block wrote is processed and projected. Every
//! `curl` of the README fails on an HTTP error (`--fail-with-body`, with `set -e`), reports its status for the
//! checks below, and a streaming one (`-N`) stops after a few seconds, as a reader would with Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::contract_tests;
use crate::support::{Backend, Scratch, free_port};

contract_tests!(readme_api_examples_run_as_written,);

const README: &str = include_str!("../README.md");

/// Where each of the README's `curl` calls reports its status (on stderr).
const REPORT_PREFIX: &str = "readme-curl";

/// The `sh` blocks of the README's "HTTP API" section, in order.
fn api_examples() -> Vec<&'static str> {
    let start = README.find("\n## HTTP API\n").expect("the README has an HTTP API section") + 1;
    let section = &README[start..];
    let end = section[1..].find("\n## ").map_or(section.len(), |index| index + 1);
    section[..end]
        .split("```sh\n")
        .skip(1)
        .map(|block| &block[..block.find("```").expect("a closed code block")])
        .collect()
}

/// The bash session: the README's blocks with a reader's pause after each.
fn session(blocks: &[&str], port: u16) -> String {
    let mut script = String::from(SESSION_PRELUDE);
    for block in blocks {
        script.push_str(&block.replace("localhost:8080", &format!("localhost:{port}")));
        script.push_str("reader_pause\n");
    }
    script
}

/// Stops the server the README starts in the background whatever happens, and defines the reader's pause: the
/// server answers its health check, every projection has applied the whole log (`/metrics`), and once there is a
/// token, no document of the caller's is still in the pipeline. Polling uses the real curl, unreported.
const SESSION_PRELUDE: &str = r#"set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
trap 'exit 143' TERM
dossier_settled() {
    local base="http://127.0.0.1:$DOSSIER_README_PORT/api/v1" lag documents
    "$REAL_CURL" -sf "$base/health" >/dev/null || return 1
    lag=$("$REAL_CURL" -sf "$base/metrics" | awk '/^dossier_projection_lag_events/ { sum += $2 } END { print sum + 0 }')
    [ "$lag" = 0 ] || return 1
    [ -n "${TOKEN:-}" ] || return 0
    documents=$("$REAL_CURL" -sf "$base/documents?limit=100" -H "Authorization: Bearer $TOKEN") || return 1
    [ "$(jq '[.documents[] | select(.status | IN("ready", "failed") | not)] | length' <<<"$documents")" = 0 ]
}
reader_pause() {
    local tries=0
    until dossier_settled; do
        tries=$((tries + 1))
        if [ "$tries" -ge 600 ]; then echo "readme: dossier did not settle within 60 s" >&2; return 1; fi
        sleep 0.1
    done
}
"#;

/// The README's `cargo run --release [-q] -- ARGS`: the binary under test.
const CARGO_SHIM: &str = r#"#!/usr/bin/env bash
if [ "${1:-}" != run ]; then
    echo "readme: the README ran 'cargo $*'; only 'cargo run ... -- ARGS' is expected" >&2
    exit 2
fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
[ $# -gt 0 ] || { echo "readme: 'cargo run' without '--'" >&2; exit 2; }
shift
exec "$DOSSIER_BIN" "$@"
"#;

/// The README's `curl`: fails on an HTTP error, reports each call, and stops a streaming call (`-N`) after 3 s,
/// which counts as success when something arrived.
const CURL_SHIM: &str = r#"#!/usr/bin/env bash
streaming=false
for argument in "$@"; do
    case $argument in --*) ;; -*N*) streaming=true ;; esac
done
report=(--write-out '%{stderr}readme-curl %{http_code} %{method} %{url_effective}\n')
$streaming || exec "$REAL_CURL" --fail-with-body --max-time 30 "${report[@]}" "$@"
out=$(mktemp)
status=0
"$REAL_CURL" --fail-with-body --max-time 3 "${report[@]}" "$@" >"$out" || status=$?
cat "$out"
if [ "$status" = 28 ] && [ -s "$out" ]; then status=0; fi
rm -f "$out"
exit "$status"
"#;

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write shim");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod shim");
}

/// A command on the test's PATH.
fn on_path(command: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(command)).find(|candidate| candidate.is_file()).unwrap_or_else(
        || panic!("{command} is not on PATH: the README's API examples need it (scripts/test.sh installs it)"),
    )
}

/// Every `curl` call a block makes (one per `curl` at the start of a command or inside `$(...)`).
fn curl_calls(blocks: &[&str]) -> usize {
    blocks
        .iter()
        .flat_map(|block| block.lines())
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| line.matches("curl -").count())
        .sum()
}

async fn readme_api_examples_run_as_written(backend: Backend) {
    let blocks = api_examples();
    assert!(blocks.len() >= 5, "the HTTP API section lost its examples: {} blocks", blocks.len());
    let scratch = Scratch::new(backend).await;
    let shims = scratch.dir.join("bin");
    std::fs::create_dir_all(&shims).expect("shim dir");
    write_executable(&shims.join("cargo"), CARGO_SHIM);
    write_executable(&shims.join("curl"), CURL_SHIM);
    let real_curl = on_path("curl");
    for needed in ["bash", "jq", "openssl", "timeout"] {
        on_path(needed);
    }
    let path = std::env::join_paths(
        std::iter::once(shims).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");

    let port = free_port();
    // `timeout` bounds a session that would hang (a server that never settles, a stream that never ends).
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", "180", "bash", "-c"])
        .arg(session(&blocks, port))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", &scratch.dir)
        .env("DOSSIER_BIN", env!("CARGO_BIN_EXE_dossier"))
        .env("REAL_CURL", real_curl)
        .env("DOSSIER_README_PORT", port.to_string())
        .env("DOSSIER_BIND", format!("127.0.0.1:{port}"))
        .env("DOSSIER_DATA_DIR", scratch.data_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    if let Some(url) = scratch.database_url() {
        command.env("DATABASE_URL", url);
    }
    let output: Output = tokio::task::spawn_blocking(move || command.output().expect("run bash")).await.expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(output.status.success(), "the README's API examples failed ({}):\n{context}", output.status);

    let reports: Vec<(u16, &str)> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix(REPORT_PREFIX))
        .map(|line| {
            let (status, call) = line.trim().split_once(' ').expect("status and call");
            (status.parse().expect("an HTTP status"), call)
        })
        .collect();
    assert_eq!(reports.len(), curl_calls(&blocks), "every curl of the README ran once:\n{context}");
    for (status, call) in &reports {
        assert!((200..300).contains(status), "{call} answered {status}:\n{context}");
    }
    let answered = |method: &str, path: &str| {
        reports
            .iter()
            .filter(|(_, call)| call.starts_with(&format!("{method} ")) && call.ends_with(path))
            .map(|(status, _)| *status)
            .collect::<Vec<_>>()
    };
    // What the README's comments promise, where they say it.
    assert_eq!(answered("POST", "/api/v1/documents"), [202, 202], "two uploads accepted:\n{context}");
    assert_eq!(answered("PATCH", ""), [200], "{context}");
    assert_eq!(answered("DELETE", ""), [202], "{context}");
    assert_eq!(answered("POST", "/reprocess"), [202], "{context}");
    assert_eq!(answered("POST", "/rebuild"), [202], "{context}");
    assert!(
        stdout.contains("{\"answer\":\"Event sourcing keeps every change. [1]\","),
        "the documented answer:\n{context}"
    );
    assert!(stdout.contains("event:done"), "the streamed answer ends with done:\n{context}");
    assert!(stdout.contains("\"ok\":true"), "the audit chain verifies:\n{context}");
}
