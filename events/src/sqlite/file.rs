//! Opening the embedded database file safely: refuse what is not a healthy SQLite file, never overwrite it.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{StoreError, StoreResult};
use crate::migrate::{self, AppliedMigration, MigrationReport};

const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Checks an existing file's SQLite header and that it is not shorter than the header says.
///
/// SQLite itself only notices truncation when it reads a missing page, possibly long after start-up; the header
/// records the database size in pages whenever it is trustworthy (change counter = version-valid-for).
pub(crate) fn check_header(path: &Path) -> StoreResult<()> {
    let unreadable = |reason: String| StoreError::Unavailable(format!("{}: {reason}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|error| unreadable(format!("cannot open: {error}")))?;
    let length = file.metadata().map_err(|error| unreadable(format!("cannot stat: {error}")))?.len();
    if length == 0 {
        // SQLite treats an empty file as an empty database.
        return Ok(());
    }
    let mut header = [0u8; 100];
    if length < 100 || file.read_exact(&mut header).is_err() {
        return Err(unreadable(format!("truncated database file ({length} bytes, shorter than a SQLite header)")));
    }
    if &header[..16] != HEADER {
        return Err(unreadable("not a SQLite database (bad header); refusing to touch it".into()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let pages = u64::from(u32::from_be_bytes([header[28], header[29], header[30], header[31]]));
    let size_is_valid = pages > 0 && header[24..28] == header[92..96];
    // With a write-ahead log beside it, the file may legitimately be shorter than its header says: a checkpoint
    // interrupted by a crash has copied page 1 but not yet the pages after it, and SQLite finishes it from the log.
    let wal = path.with_extension("db-wal");
    let wal_holds_pages = std::fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0);
    if size_is_valid && !wal_holds_pages && length < pages * page_size {
        return Err(unreadable(format!(
            "truncated database file: {length} bytes, but its header says {pages} pages of {page_size} bytes"
        )));
    }
    Ok(())
}

/// How much of the database file a connection maps into memory (address space, not memory: pages are shared with
/// the page cache and loaded on demand).
const MMAP_BYTES: u64 = 1 << 30;

/// Opens a connection with the pragmas every connection needs.
pub(crate) fn connect(path: &Path, flags: OpenFlags) -> StoreResult<Connection> {
    let fail =
        |what: &str, error: rusqlite::Error| StoreError::Unavailable(format!("{}: {what}: {error}", path.display()));
    let mut connection = Connection::open_with_flags(path, flags).map_err(|error| fail("cannot open", error))?;
    super::configure(&connection).map_err(|error| fail("cannot configure the connection", error))?;
    connection.busy_handler(Some(super::wait_for_lock)).map_err(|error| fail("cannot set busy handler", error))?;
    // journal_mode reads the header first, so a file that is not a database fails here, before anything is written.
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|error| fail("not a usable database", error))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!("{}: cannot switch to WAL mode (got {mode})", path.display())));
    }
    // FULL: a commit survives power loss, not just a crash of the process. Group commit keeps it cheap.
    // mmap_size: reads of the main file map it instead of copying every page through read(2) (catching up over a
    // large log, a rebuild spent a third of its SQLite time in that copy). Writes still go through the WAL.
    connection
        .execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = {MMAP_BYTES};"
        ))
        .map_err(|error| fail("cannot set pragmas", error))?;
    Ok(connection)
}

/// Applies pending migrations (when `apply`), or fails if any are pending (when not).
pub(crate) fn migrate(connection: &mut Connection, path: &Path, apply: bool) -> StoreResult<MigrationReport> {
    let location = path.display().to_string();
    let fail = |error: rusqlite::Error| StoreError::database(format!("{location}: migrating"), error);
    // The bookkeeping table is the one piece of DDL the runner itself owns.
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .map_err(fail)?;
    let applied = {
        let mut statement =
            connection.prepare("SELECT version, checksum FROM schema_migrations ORDER BY version").map_err(fail)?;
        let rows = statement
            .query_map([], |row| Ok(AppliedMigration { version: row.get(0)?, checksum: row.get(1)? }))
            .map_err(fail)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(fail)?
    };
    let pending = migrate::pending(migrate::SQLITE, &applied, &location)?;
    let mut report =
        MigrationReport { from_version: applied.len() as u32, to_version: applied.len() as u32, applied: Vec::new() };
    if pending.is_empty() {
        return Ok(report);
    }
    if !apply {
        return Err(StoreError::Unavailable(format!(
            "{location}: database schema is at version {}, this binary needs {}: run `dossier migrate`",
            report.from_version,
            migrate::SQLITE.len()
        )));
    }
    for migration in pending {
        let transaction = connection.transaction().map_err(fail)?;
        transaction.execute_batch(migration.sql).map_err(|error| {
            StoreError::database(format!("{location}: migration {:04}_{}", migration.version, migration.name), error)
        })?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![
                    migration.version,
                    migration.name,
                    migration.checksum(),
                    crate::hash::unix_micros(time::OffsetDateTime::now_utc())
                ],
            )
            .map_err(fail)?;
        transaction.commit().map_err(fail)?;
        tracing::info!(database = %location, version = migration.version, name = migration.name, "migration_applied");
        report.to_version = migration.version;
        report.applied.push(format!("{:04}_{}", migration.version, migration.name));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_header_with_foreign_file_returns_error() {
        let dir = std::env::temp_dir().join(format!("dossier-header-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("x.db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let error = check_header(&path).expect_err("foreign file");
        assert!(error.to_string().contains("not a SQLite database"), "{error}");
        std::fs::write(&path, b"SQLite format 3\0").expect("write");
        let error = check_header(&path).expect_err("short file");
        assert!(error.to_string().contains("truncated"), "{error}");
        // A header claiming 10 pages of 4096 bytes on a one-page file is truncated, unless a WAL holds the rest.
        let mut header = vec![0u8; 4096];
        header[..16].copy_from_slice(b"SQLite format 3\0");
        header[16..18].copy_from_slice(&4096u16.to_be_bytes());
        header[28..32].copy_from_slice(&10u32.to_be_bytes());
        std::fs::write(&path, &header).expect("write");
        assert!(check_header(&path).expect_err("short").to_string().contains("says 10 pages"));
        std::fs::write(path.with_extension("db-wal"), b"wal frames").expect("write wal");
        assert!(check_header(&path).is_ok(), "an interrupted checkpoint is SQLite's to finish");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn cached_stream_queries_are_not_prepared_again_for_each_use() {
        let dir = std::env::temp_dir().join(format!("dossier-reprepare-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut connection = connect(&dir.join("x.db"), OpenFlags::default()).expect("open");
        connection
            .execute_batch(
                "CREATE TABLE events (stream_id TEXT NOT NULL, version INTEGER NOT NULL, UNIQUE (stream_id, version))",
            )
            .expect("table");
        let query = "SELECT version FROM events WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1";
        for n in 0..5 {
            let transaction = connection.transaction().expect("begin");
            let mut statement = transaction.prepare_cached(query).expect("prepare");
            let _ = statement.query_row([format!("stream-{n}")], |row| row.get::<_, i64>(0));
            assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0, "use {n}");
            drop(statement);
            transaction.commit().expect("commit");
        }
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
