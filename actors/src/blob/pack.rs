//! Pack files: small blobs appended to a few large files, made durable by group commit.
//!
//! A file per blob costs an inode, a directory entry and two fsyncs (file and directory) per upload; creating the
//! inode alone was a quarter of the CPU of an upload burst on the benchmark machine. Small blobs are instead appended
//! to one of this process's pack files, `packs/pack-<uuid>.dat`, as records `DBLB | sha256 (32 bytes) | length (u64
//! LE) | bytes`. Concurrent writers share one `write` and one `fdatasync`: the first to find no flush in progress
//! becomes the leader, writes every record queued so far and syncs, while the others wait for it (group commit). A
//! blob is acknowledged only once synced, and it is indexed (readable) only then.
//!
//! There are two such queues, each with its own pack ([`Lane`]): one for uploads, which a client waits for, and one
//! for the pipeline's derived blobs, written from background threads at a lower priority (ADR 0015). Were they to
//! share one, an upload would often wait for a flush whose leader is a background thread, itself waiting for a core.
//!
//! Each process appends only to a pack it created and holds an exclusive lock on, so several processes may share the
//! data directory. Reading scans the packs' record headers once to build the index (skipping over the bytes); a
//! digest found nowhere triggers a rescan, which picks up other processes' packs. A crash can leave a torn record
//! at a pack's end: the scan stops there, and as nothing acknowledged lives past a torn record, nothing is lost. A
//! write that fails is cut off the file again (or, failing that, the pack is abandoned for a new one).

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::oneshot;

use super::BlobError;

const MAGIC: &[u8; 4] = b"DBLB";
const HEADER: usize = 4 + 32 + 8;
/// A pack this large is closed and a new one started.
const MAX_PACK_BYTES: u64 = 1 << 30;

/// Where a blob's bytes are: pack file, offset of the bytes, length.
#[derive(Clone, Copy, Debug)]
struct Location {
    pack: usize,
    offset: u64,
    len: u64,
}

/// Which writers share a group commit (see [`Lane`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Requests: uploads a client waits for.
    Requests,
    /// Background work: the pipeline's derived blobs.
    Background,
}

impl Lane {
    fn index(self) -> usize {
        match self {
            Self::Requests => 0,
            Self::Background => 1,
        }
    }
}

#[derive(Default)]
struct State {
    /// Durable blobs, by digest.
    index: HashMap<[u8; 32], Location>,
    /// Pack files known, by number.
    packs: Vec<PackFile>,
    /// Each lane's pack and group commit.
    lanes: [LaneState; 2],
    loaded: bool,
}

/// One lane's pack and the records waiting for its next flush.
#[derive(Default)]
struct LaneState {
    /// The pack this lane appends to: its number, the file and its durable length.
    active: Option<(usize, Arc<File>, u64)>,
    /// The bytes of the records waiting for the next flush.
    queue: Vec<u8>,
    /// What the records will index: those being flushed first (while `flushing`), then those waiting.
    queued: Vec<Queued>,
    flushing: bool,
    /// A [`Leader`] job is claimed or running: it flushes until nothing is queued, so async callers' records never
    /// depend on a blocking caller that may return once its own record is durable.
    leader: bool,
}

/// A pack file this process knows of.
struct PackFile {
    path: PathBuf,
    /// A read handle, once opened.
    file: Option<Arc<File>>,
    /// How far it has been scanned (so a rescan reads only what is new).
    scanned: u64,
}

/// A record waiting to be flushed: its digest, where its bytes start within the queue, their length, and where the
/// flush's outcome is posted for everyone waiting for it.
struct Queued {
    digest: [u8; 32],
    offset: u64,
    len: u64,
    outcome: Outcome,
    /// Async callers waiting for it (see [`Packs::put_async`]).
    tasks: Vec<oneshot::Sender<Result<(), String>>>,
}

type Outcome = Arc<OnceLock<Result<(), String>>>;

/// The pack files under one directory.
pub(super) struct Packs {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
    /// Tests: the next flush reports its start here and waits to be released (then the hook is gone).
    #[cfg(test)]
    hold_next_flush: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl Packs {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            #[cfg(test)]
            hold_next_flush: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> BlobError {
        let path = path.to_path_buf();
        move |source| BlobError::Io { path: path.clone(), source }
    }

    /// Appends a blob in `lane` and returns once it is durable (blocking: leads or waits for a group commit).
    pub fn put(&self, digest: [u8; 32], bytes: &[u8], lane: Lane) -> Result<(), BlobError> {
        let mut state = self.lock();
        self.load(&mut state)?;
        if state.index.contains_key(&digest) {
            return Ok(());
        }
        let (lane, record) = enqueue(&mut state, digest, bytes, lane);
        let outcome = Arc::clone(&record.outcome);
        loop {
            if let Some(result) = outcome.get() {
                return result.clone().map_err(|message| self.failed(message));
            }
            state = if state.lanes[lane].flushing {
                self.done.wait(state).unwrap_or_else(PoisonError::into_inner)
            } else {
                self.flush(state, lane)
            };
        }
    }

    /// [`put`](Self::put) for async callers: the caller's task waits for the group commit without holding a thread.
    /// The first caller to find no [`Leader`] in the lane hands the flushing to the runtime's blocking pool (one job
    /// per busy period, which flushes until nothing is queued), the others only wait for their record's outcome.
    /// Measured on an upload burst, a blocking-pool job and a condition-variable wait per upload were about a third
    /// of the process's `futex` calls.
    pub async fn put_async(self: Arc<Self>, digest: [u8; 32], bytes: &[u8], lane: Lane) -> Result<(), BlobError> {
        if !self.lock().loaded {
            let packs = Arc::clone(&self);
            tokio::task::spawn_blocking(move || packs.load(&mut packs.lock()))
                .await
                .map_err(|error| self.failed(error.to_string()))??;
        }
        let (sender, receiver) = oneshot::channel();
        let lead = {
            let mut state = self.lock();
            if state.index.contains_key(&digest) {
                return Ok(());
            }
            let (lane, record) = enqueue(&mut state, digest, bytes, lane);
            record.tasks.push(sender);
            let lane_state = &mut state.lanes[lane];
            // Claimed here, so that the callers arriving before the job starts leave the flushing to it.
            let lead = !lane_state.leader;
            lane_state.leader = true;
            lead.then_some(lane)
        };
        if let Some(lane) = lead {
            // Not awaited: under a steady stream of writers the job goes on flushing after this caller's record.
            let leader = Leader { packs: Arc::clone(&self), lane, finished: false };
            drop(tokio::task::spawn_blocking(move || leader.run()));
        }
        match receiver.await {
            Ok(result) => result.map_err(|message| self.failed(message)),
            Err(_) => Err(self.failed("the blob flush ended without an outcome".to_owned())),
        }
    }

    /// The flushing claimed by [`put_async`](Self::put_async): flushes `lane` until nothing is queued in it, after
    /// any flush a blocking caller is leading.
    fn lead(&self, lane: usize) {
        let mut state = self.lock();
        loop {
            if state.lanes[lane].flushing {
                state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
            } else if state.lanes[lane].queued.is_empty() {
                state.lanes[lane].leader = false;
                return;
            } else {
                state = self.flush(state, lane);
            }
        }
    }

    fn failed(&self, message: String) -> BlobError {
        BlobError::Io { path: self.dir.clone(), source: std::io::Error::other(message) }
    }

    /// Writes and syncs everything queued in `lane`, as its leader, and posts the outcome to every record's waiters;
    /// returns with the lock held again.
    fn flush<'a>(&'a self, mut state: MutexGuard<'a, State>, lane: usize) -> MutexGuard<'a, State> {
        // The records stay queued (so that the same bytes arriving meanwhile wait for this flush instead of being
        // written again) and are taken off once it is done; records queued meanwhile follow them.
        let queue = std::mem::take(&mut state.lanes[lane].queue);
        let flushed = state.lanes[lane].queued.len();
        state.lanes[lane].flushing = true;
        let active = self.active(&mut state, lane);
        drop(state);
        #[cfg(test)]
        if let Some((started, release)) = self.hold_next_flush.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = started.send(());
            let _ = release.recv();
        }

        let written = active.and_then(|(pack, file, start)| {
            match file.write_all_at(&queue, start).and_then(|()| file.sync_data()) {
                Ok(()) => Ok((pack, start)),
                Err(error) => {
                    // Cut the failed write off; if even that fails, leave this pack for a new one.
                    let cut = file.set_len(start).and_then(|()| file.sync_data());
                    Err((error.to_string(), cut.is_err()))
                }
            }
        });

        let mut state = self.lock();
        state.lanes[lane].flushing = false;
        let queued: Vec<Queued> = state.lanes[lane].queued.drain(..flushed).collect();
        let outcome = match written {
            Ok((pack, start)) => {
                let end = start + queue.len() as u64;
                if let Some(active) = state.lanes[lane].active.as_mut() {
                    active.2 = end;
                }
                state.packs[pack].scanned = end;
                for record in &queued {
                    state
                        .index
                        .insert(record.digest, Location { pack, offset: start + record.offset, len: record.len });
                }
                Ok(())
            }
            Err((message, abandon)) => {
                tracing::error!(directory = %self.dir.display(), error = %message, "blob_pack_write_failed");
                if abandon {
                    state.lanes[lane].active = None;
                }
                Err(message)
            }
        };
        for record in queued {
            for task in record.tasks {
                let _ = task.send(outcome.clone());
            }
            let _ = record.outcome.set(outcome.clone());
        }
        self.done.notify_all();
        state
    }

    /// The pack `lane` appends to (created, locked and made durable in its directory on first use), with its
    /// length.
    fn active(&self, state: &mut State, lane: usize) -> Result<(usize, Arc<File>, u64), (String, bool)> {
        if let Some((pack, file, len)) = &state.lanes[lane].active
            && *len < MAX_PACK_BYTES
        {
            return Ok((*pack, Arc::clone(file), *len));
        }
        let create = || -> std::io::Result<(PathBuf, File)> {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(format!("pack-{}.dat", uuid::Uuid::now_v7().simple()));
            let file = File::options().read(true).write(true).create_new(true).open(&path)?;
            file.try_lock().map_err(|error| std::io::Error::other(error.to_string()))?;
            File::open(&self.dir)?.sync_all()?;
            Ok((path, file))
        };
        let (path, file) = create().map_err(|error| (format!("{}: {error}", self.dir.display()), false))?;
        let file = Arc::new(file);
        state.packs.push(PackFile { path, file: Some(Arc::clone(&file)), scanned: 0 });
        let pack = state.packs.len() - 1;
        state.lanes[lane].active = Some((pack, Arc::clone(&file), 0));
        Ok((pack, file, 0))
    }

    /// Reads a blob's bytes from its pack, if a pack this store has seen holds it.
    pub fn get(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, BlobError> {
        let mut state = self.lock();
        self.load(&mut state)?;
        let Some(location) = state.index.get(digest).copied() else {
            return Ok(None);
        };
        let PackFile { path, file: handle, .. } = &mut state.packs[location.pack];
        let path = path.clone();
        let file = match handle {
            Some(file) => Arc::clone(file),
            None => {
                let file = Arc::new(File::open(&path).map_err(self.io(&path))?);
                *handle = Some(Arc::clone(&file));
                file
            }
        };
        drop(state);
        let mut bytes = vec![0; usize::try_from(location.len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut bytes, location.offset).map_err(self.io(&path))?;
        Ok(Some(bytes))
    }

    /// Indexes what was appended since this store last looked, by other processes too.
    pub fn refresh(&self) -> Result<(), BlobError> {
        let mut state = self.lock();
        self.scan(&mut state)
    }

    fn load(&self, state: &mut State) -> Result<(), BlobError> {
        if !state.loaded {
            self.scan(state)?;
            state.loaded = true;
        }
        Ok(())
    }

    /// Indexes every record not yet seen: new packs, and what other processes appended to theirs.
    fn scan(&self, state: &mut State) -> Result<(), BlobError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(BlobError::Io { path: self.dir.clone(), source }),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "dat"))
            .collect();
        paths.sort();
        for path in paths {
            if !state.packs.iter().any(|known| known.path == path) {
                state.packs.push(PackFile { path, file: None, scanned: 0 });
            }
        }
        for pack in 0..state.packs.len() {
            if state.lanes.iter().any(|lane| lane.active.as_ref().is_some_and(|(active, ..)| *active == pack)) {
                continue;
            }
            let path = state.packs[pack].path.clone();
            let from = state.packs[pack].scanned;
            let (records, end) = scan_pack(&path, from).map_err(self.io(&path))?;
            for (digest, offset, len) in records {
                state.index.entry(digest).or_insert(Location { pack, offset, len });
            }
            state.packs[pack].scanned = end;
        }
        Ok(())
    }
}

/// The flushing claimed by [`Packs::put_async`], as a job of the blocking pool. Dropped without having finished (the
/// runtime shut down before it ran), it gives up the claim and drops the async callers' senders, so that none of them
/// waits for a flush that will not come (each gets an error; a blocking caller's record still flushes as usual).
struct Leader {
    packs: Arc<Packs>,
    lane: usize,
    finished: bool,
}

impl Leader {
    fn run(mut self) {
        self.packs.lead(self.lane);
        self.finished = true;
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.packs.lock();
        let lane = &mut state.lanes[self.lane];
        lane.leader = false;
        for record in &mut lane.queued {
            record.tasks.clear();
        }
    }
}

/// Queues `bytes` for `lane`'s next flush, unless the same bytes already wait for a flush (in either lane), whose
/// record is then shared; returns the record's lane and the record.
fn enqueue<'a>(state: &'a mut State, digest: [u8; 32], bytes: &[u8], lane: Lane) -> (usize, &'a mut Queued) {
    let waiting = state.lanes.iter().enumerate().find_map(|(lane, queue)| {
        let index = queue.queued.iter().position(|queued| queued.digest == digest)?;
        Some((lane, index))
    });
    let (lane, index) = match waiting {
        Some(waiting) => waiting,
        None => {
            let queue = &mut state.lanes[lane.index()];
            let offset = queue.queue.len() as u64 + HEADER as u64;
            queue.queue.extend_from_slice(MAGIC);
            queue.queue.extend_from_slice(&digest);
            queue.queue.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            queue.queue.extend_from_slice(bytes);
            let outcome = Outcome::default();
            queue.queued.push(Queued { digest, offset, len: bytes.len() as u64, outcome, tasks: Vec::new() });
            (lane.index(), queue.queued.len() - 1)
        }
    };
    (lane, &mut state.lanes[lane].queued[index])
}

/// A record found by a scan: digest, offset of the bytes, length.
type Found = ([u8; 32], u64, u64);

/// The records of a pack from `from` on, and where the last whole record ends (a torn record at the end, from a
/// crash mid-write, is left out).
fn scan_pack(path: &Path, from: u64) -> std::io::Result<(Vec<Found>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(error) => return Err(error),
    };
    let size = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = from;
    let mut header = [0u8; HEADER];
    while at + HEADER as u64 <= size {
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut header)?;
        if &header[..4] != MAGIC {
            break;
        }
        let digest: [u8; 32] = header[4..36].try_into().unwrap_or([0; 32]);
        let len = u64::from_le_bytes(header[36..44].try_into().unwrap_or([0; 8]));
        let end = at + HEADER as u64 + len;
        if end > size {
            break;
        }
        records.push((digest, at + HEADER as u64, len));
        at = end;
    }
    Ok((records, at))
}

/// Appends raw bytes to a pack (for tests that play a crash).
#[cfg(test)]
pub(super) fn append_raw(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = File::options().append(true).open(path).expect("open pack");
    file.write_all(bytes).expect("append");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_record_queued_while_a_blocking_caller_flushes_is_flushed_after_it_returns() {
        let dir = std::env::temp_dir().join(format!("dossier-pack-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let packs = Arc::new(Packs::new(dir.clone()));
        let (started, flush_started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        *packs.hold_next_flush.lock().unwrap() = Some((started, released));
        // A blocking caller leads a flush of its own record and is held inside it.
        let blocking = {
            let packs = Arc::clone(&packs);
            std::thread::spawn(move || packs.put([1; 32], b"blocking", Lane::Requests))
        };
        flush_started.recv_timeout(Duration::from_secs(10)).expect("the blocking flush started");
        // An async caller queues its record in the same lane meanwhile: not part of the flush under way.
        let pending = tokio::spawn(Arc::clone(&packs).put_async([2; 32], b"async", Lane::Requests));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pending.is_finished(), "the async record cannot be durable before the held flush ends");
        release.send(()).unwrap();
        blocking.join().unwrap().expect("blocking put");
        // The blocking caller returns once its own record is durable; the async one needs a leader of its own.
        tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .expect("the async record was left without a leader")
            .unwrap()
            .expect("async put");
        assert_eq!(packs.get(&[1; 32]).unwrap().as_deref(), Some(&b"blocking"[..]));
        assert_eq!(packs.get(&[2; 32]).unwrap().as_deref(), Some(&b"async"[..]));
        let reopened = Packs::new(dir.clone());
        assert_eq!(reopened.get(&[2; 32]).unwrap().as_deref(), Some(&b"async"[..]), "durable in the pack file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
