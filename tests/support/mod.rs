//! Shared fixtures: scratch stores on each backend, and the dossier binary.

pub mod api;
pub mod counting_store;
pub mod mock_ollama;
pub mod naive_store;

use std::path::PathBuf;
use std::sync::Arc;

use dossier_events::postgres::connect::{create_database, drop_database, parse_url};
use dossier_events::postgres::{PostgresOptions, PostgresStore};
use dossier_events::sqlite::{DATABASE_FILE, SqliteOptions, SqliteStore};
use dossier_events::{CommitHook, EventStore};
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::read_model::postgres::PostgresReadModel;
use dossier_projections::read_model::sqlite::SqliteReadModel;
use uuid::Uuid;

/// A localhost port nothing listens on right now (for a server the test starts as a process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Sends SIGTERM to a served child and waits for it to exit, for at most `within` (then kills it and panics).
pub fn terminate(child: &mut std::process::Child, within: std::time::Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dossier serve did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The backends every contract test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres,
}

/// The admin URL of the test Postgres server (scripts/test.sh provides one).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| {
        panic!("DATABASE_URL is not set: run the tests with scripts/test.sh, which starts a throwaway Postgres")
    })
}

/// A fresh, empty place for one test's log: a temporary directory or a new Postgres database. Removed on drop.
pub struct Scratch {
    pub backend: Backend,
    pub dir: PathBuf,
    database: Option<String>,
}

impl Scratch {
    pub async fn new(backend: Backend) -> Self {
        let dir = std::env::temp_dir().join(format!("dossier-test-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        let database = match backend {
            Backend::Embedded => None,
            Backend::Postgres => {
                let name = format!("dossier_test_{}", Uuid::now_v7().simple());
                let admin = parse_url(&admin_url()).expect("valid DATABASE_URL");
                create_database(&admin, &name).await.expect("create scratch database");
                Some(name)
            }
        };
        Self { backend, dir, database }
    }

    /// The connections the Postgres server has open to the scratch database (Postgres only).
    pub async fn database_connections(&self) -> i64 {
        let name = self.database.as_ref().expect("postgres scratch");
        let admin = parse_url(&admin_url()).expect("valid DATABASE_URL");
        let client = dossier_events::postgres::connect::connect(&admin).await.expect("admin connection");
        let row = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[name])
            .await
            .expect("count connections");
        row.get(0)
    }

    /// The URL of the scratch database (Postgres only).
    pub fn database_url(&self) -> Option<String> {
        let name = self.database.as_ref()?;
        let admin = admin_url();
        let (base, query) = admin.split_once('?').map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
        let (server, _) =
            base.rsplit_once('/').filter(|(s, _)| s.contains("//") && !s.ends_with('/')).unwrap_or((base, ""));
        Some(match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        })
    }

    pub async fn open(&self) -> Arc<dyn EventStore> {
        self.open_with(None).await
    }

    pub async fn open_with(&self, hook: Option<CommitHook>) -> Arc<dyn EventStore> {
        let sqlite = SqliteOptions { commit_hook: hook.clone(), ..SqliteOptions::default() };
        self.open_options(sqlite, PostgresOptions { commit_hook: hook, ..PostgresOptions::default() }).await
    }

    /// The store as a server with Redis opens it: no `LISTEN`, re-reading at the head only every `poll`, so only
    /// its own commits and [`EventStore::hint_head`] wake its subscriptions promptly.
    pub async fn open_unannounced(&self, poll: std::time::Duration) -> Arc<dyn EventStore> {
        let sqlite = SqliteOptions { poll_interval: poll, ..SqliteOptions::default() };
        let postgres = PostgresOptions { listen: false, poll_interval: poll, ..PostgresOptions::default() };
        self.open_options(sqlite, postgres).await
    }

    /// The store with the options of its backend.
    async fn open_options(&self, sqlite: SqliteOptions, postgres: PostgresOptions) -> Arc<dyn EventStore> {
        match self.backend {
            Backend::Embedded => {
                Arc::new(SqliteStore::open(&self.data_dir(), sqlite).await.expect("open embedded store"))
            }
            Backend::Postgres => {
                let url = self.database_url().expect("postgres scratch");
                Arc::new(PostgresStore::connect(&url, postgres).await.expect("connect postgres store"))
            }
        }
    }

    /// The read model on this scratch database, opened after the event store (whose migrations create its tables).
    pub async fn open_read_model(&self) -> Arc<dyn ReadModelStore> {
        drop(self.open().await);
        match self.backend {
            Backend::Embedded => {
                Arc::new(SqliteReadModel::open(&self.data_dir()).await.expect("open embedded read model"))
            }
            Backend::Postgres => {
                let config = parse_url(&self.database_url().expect("postgres scratch")).expect("valid url");
                Arc::new(PostgresReadModel::connect(config, 2).await.expect("connect postgres read model"))
            }
        }
    }

    /// Runs one SQL statement directly against the backend's database (to play an attacker or a broken disk).
    pub async fn execute_sql(&self, sql: &str) -> u64 {
        match self.backend {
            Backend::Embedded => {
                let connection = rusqlite::Connection::open(self.data_dir().join(DATABASE_FILE)).expect("open sqlite");
                connection.execute(sql, []).expect("execute sql") as u64
            }
            Backend::Postgres => self.postgres_client().await.execute(sql, &[]).await.expect("execute sql"),
        }
    }

    /// A connection of its own to the scratch database (Postgres only).
    pub async fn postgres_client(&self) -> tokio_postgres::Client {
        self.database().postgres_client().await
    }

    /// Runs a query returning one integer (a count) directly against the backend's database.
    pub async fn query_count(&self, sql: &str) -> i64 {
        self.database().query_count(sql).await
    }

    /// Where this scratch's database is, detached from the scratch (which removes it on drop).
    pub fn database(&self) -> ScratchDatabase {
        ScratchDatabase { backend: self.backend, data_dir: self.data_dir(), url: self.database_url() }
    }

    /// A `dossier` command configured for this scratch store.
    pub fn dossier(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dossier"));
        command.current_dir(&self.dir).env_remove("DATABASE_URL").env("DOSSIER_DATA_DIR", self.data_dir());
        command.env("RUST_LOG", "warn");
        if let Some(url) = self.database_url() {
            command.env("DATABASE_URL", url);
        }
        command
    }

    /// The embedded store's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// A scratch's database, to query it from helpers that do not own the scratch.
#[derive(Clone, Debug)]
pub struct ScratchDatabase {
    backend: Backend,
    data_dir: PathBuf,
    url: Option<String>,
}

impl ScratchDatabase {
    /// Runs a query returning one integer (a count).
    pub async fn query_count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Embedded => {
                let connection = rusqlite::Connection::open_with_flags(
                    self.data_dir.join(DATABASE_FILE),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open sqlite");
                connection.query_row(sql, [], |row| row.get(0)).expect("query")
            }
            Backend::Postgres => self.postgres_client().await.query_one(sql, &[]).await.expect("query").get(0),
        }
    }

    /// A connection of its own to the database (Postgres only).
    pub async fn postgres_client(&self) -> tokio_postgres::Client {
        let config = parse_url(self.url.as_deref().expect("postgres scratch")).expect("valid url");
        dossier_events::postgres::connect::connect(&config).await.expect("connect")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_scratch_dir(&self.dir);
        if let Some(name) = self.database.take() {
            // Drop runs inside the test's runtime, which cannot block on itself: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    if let Ok(admin) = parse_url(&admin_url()) {
                        let _ = drop_database(&admin, &name).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Instantiates each named async test body once per backend, as `embedded::name` and `postgres::name`.
#[macro_export]
macro_rules! contract_tests {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test($crate::support::Backend::Embedded).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Removes a scratch directory. A stopped server's background threads (the vector index's writer, flusher and
/// optimizer, a blob pack being written) may still create files in it while it is being removed, which makes
/// `remove_dir_all` fail half-way, or recreate it just after: try again for a while, until it stays gone.
fn remove_scratch_dir(dir: &std::path::Path) {
    let mut gone_since: Option<std::time::Instant> = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let _ = std::fs::remove_dir_all(dir);
        if dir.exists() {
            gone_since = None;
        } else if gone_since.get_or_insert_with(std::time::Instant::now).elapsed()
            >= std::time::Duration::from_millis(300)
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("scratch directory {} could not be removed", dir.display());
}
