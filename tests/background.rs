//! Work kept off the requests' path: the embedded log's checkpointer, the background runtime's priority, and
//! Postgres pools that open their connections on the runtime that built them.

use std::time::{Duration, Instant};

use dossier_events::postgres::connect::{parse_url, pool};
use dossier_events::sqlite::DATABASE_FILE;
use dossier_events::{EventMetadata, ExpectedVersion, NewEvent, StreamId};
use dossier_projections::background::{BACKGROUND_NICE, runtime};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Backend, Scratch};

/// Events in the database file itself, leaving its write-ahead log aside (`immutable=1` reads the file as it is);
/// 0 while the file does not hold the table yet (its creation can still be in the WAL too).
fn events_in_main_file(path: &std::path::Path) -> i64 {
    let uri = format!("file:{}?immutable=1", path.display());
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let connection = rusqlite::Connection::open_with_flags(uri, flags).expect("open the database file");
    connection.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap_or(0)
}

/// A few appends are far below SQLite's automatic checkpoint (1,000 pages, and the writer's is higher still): only
/// the checkpointer copies them from the WAL into the database file, shortly after they were committed.
#[tokio::test]
async fn embedded_appends_reach_the_database_file_through_the_checkpointer() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let store = scratch.open().await;
    let path = scratch.data_dir().join(DATABASE_FILE);
    for n in 0..5 {
        let stream = StreamId::new(format!("note-{}", Uuid::now_v7())).expect("stream id");
        let event = NewEvent::new("Noted", 1, json!({ "n": n }));
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event], EventMetadata::new("tenant-a", "alice"))
            .await
            .expect("append");
    }
    let started = Instant::now();
    let mut in_file = events_in_main_file(&path);
    while in_file < 5 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        in_file = events_in_main_file(&path);
    }
    assert_eq!(in_file, 5, "the appends are still only in the WAL after {:?}", started.elapsed());
}

/// This thread's `nice` value (field 19 of `/proc/thread-self/stat`).
fn nice_of_this_thread() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read /proc/thread-self/stat");
    let after_name = &stat[stat.rfind(')').expect("stat has the thread name in parentheses") + 2..];
    after_name.split_whitespace().nth(16).expect("stat has a nice field").parse().expect("nice is a number")
}

#[tokio::test]
async fn background_tasks_and_blocking_work_run_below_the_requests_priority() {
    let here = nice_of_this_thread();
    let task = runtime().spawn(async { nice_of_this_thread() }).await.expect("background task");
    let blocking = runtime().spawn_blocking(nice_of_this_thread).await.expect("background blocking work");
    assert_eq!((task, blocking), (BACKGROUND_NICE, BACKGROUND_NICE), "the test's own thread runs at {here}");
    assert!(here < BACKGROUND_NICE);
}

/// The backend process of the connection `pool` hands out.
async fn backend_pid(pool: &deadpool_postgres::Pool) -> i32 {
    let client = pool.get().await.expect("a pooled connection");
    client.query_one("SELECT pg_backend_pid()", &[]).await.expect("pg_backend_pid").get(0)
}

/// A connection first asked for by a task of another runtime is still opened on the pool's own: when that other
/// runtime ends, the pooled connection lives on (it would die with the runtime that drove it otherwise, and the pool
/// would open a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_pool_keeps_its_connections_on_the_runtime_that_built_it() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let config = parse_url(&scratch.database_url().expect("postgres scratch")).expect("valid url");
    let pool = pool(&config, 1, 0).expect("pool");
    let other = pool.clone();
    let first = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("another runtime");
        runtime.block_on(backend_pid(&other))
    })
    .join()
    .expect("the other runtime's thread");
    assert_eq!(backend_pid(&pool).await, first, "the pool opened a new connection: the first one died");
}
