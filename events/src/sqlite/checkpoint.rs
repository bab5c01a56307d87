//! The embedded store's checkpointer: a thread that copies the write-ahead log into the database file, so that the
//! writer does not.
//!
//! SQLite checkpoints on the connection whose commit takes the WAL past `wal_autocheckpoint` pages: that was the
//! writer, which then held every waiting append for the time of the copy and the database file's fsync (measured
//! with `bench api`, where appends from uploads and the pipeline never stop: a checkpoint every half second or so,
//! a twelfth of the writer's time; its effect on the uploads' figures was within the machine's noise). Here a
//! PASSIVE checkpoint runs on its own connection a moment after commits, alongside the writer and the readers; the
//! writer's own automatic checkpoint stays as a backstop at [`WRITER_AUTOCHECKPOINT_PAGES`], should this thread
//! fall behind.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{StoreError, StoreResult};

/// Pages of WAL at which the writer checkpoints itself (64 MiB of 4 KiB pages; SQLite's default is 1,000).
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The shortest time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// Tells the checkpointer that commits happened; dropping it stops the thread.
pub(crate) struct Nudge(SyncSender<()>);

impl Nudge {
    /// A commit happened (never blocks: one pending nudge is enough).
    pub fn committed(&self) {
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer of the database at `path`.
pub(crate) fn start(path: &Path) -> StoreResult<Nudge> {
    let connection = super::file::connect(path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)?;
    let (nudge, nudged) = sync_channel(1);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("dossier-sqlite-checkpoint".into())
        .spawn(move || run(&connection, &path, &nudged))
        .map_err(|error| StoreError::Unavailable(format!("cannot start the checkpoint thread: {error}")))?;
    Ok(Nudge(nudge))
}

fn run(connection: &Connection, path: &Path, nudged: &Receiver<()>) {
    while nudged.recv().is_ok() {
        // Commits keep coming under load: let those of the next moment join this checkpoint.
        std::thread::sleep(INTERVAL);
        let last = matches!(nudged.try_recv(), Err(TryRecvError::Disconnected));
        if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(database = %path.display(), error = %error, "wal_checkpoint_failed");
        }
        if last {
            return;
        }
    }
}
