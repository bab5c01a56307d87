//! The embedded index's write queue: one thread per collection applies the collection's writes in the order they
//! were queued.
//!
//! A write queued while the thread is still applying an earlier one is taken up the moment that one ends. Through
//! tokio's blocking pool every write was a hand-off to a thread that had to be woken (and often waited for the
//! caller's core), about 0.3 ms each, on every part of a rebuild (ADR 0014).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use qdrant_edge::UpdateOperation;

use super::ShardHandle;
use crate::vector::index::{IndexError, Queued, WriteChain};

/// One queued write.
struct Job {
    shard: ShardHandle,
    updates: Vec<UpdateOperation>,
    /// Flush the shard after the updates (everything queued before becomes durable).
    flush: bool,
    chain: Option<WriteChain>,
    /// The writes queued up to this one (for `flushed`).
    sequence: u64,
    done: tokio::sync::oneshot::Sender<Result<(), IndexError>>,
}

/// A collection's queue. The thread starts with the first write and ends when the queue is dropped (with the
/// collection). Jobs carry their own handle on the shard, so an idle queue holds none (a retired collection's files
/// are deleted once no handle remains).
pub(super) struct WriteQueue {
    name: String,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Writes queued so far.
    queued: AtomicU64,
    /// Of those, how many a completed flush made durable.
    flushed: Arc<AtomicU64>,
}

impl WriteQueue {
    pub(super) fn new(name: &str) -> Self {
        Self { name: name.to_owned(), sender: Mutex::new(None), queued: AtomicU64::new(0), flushed: Arc::default() }
    }

    /// Whether a write was queued since the last completed flush.
    pub(super) fn unflushed(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > self.flushed.load(Ordering::SeqCst)
    }

    /// Queues `updates` (then a flush, when `flush`) behind the writes queued before.
    pub(super) fn submit(
        &self,
        shard: ShardHandle,
        updates: Vec<UpdateOperation>,
        flush: bool,
        chain: Option<&WriteChain>,
    ) -> Result<Queued, IndexError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let mut sender = self.sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Under the lock, so that sequence numbers reach the thread in order.
        let sequence = if updates.is_empty() {
            self.queued.load(Ordering::SeqCst)
        } else {
            self.queued.fetch_add(1, Ordering::SeqCst) + 1
        };
        let job = Job { shard, updates, flush, chain: chain.cloned(), sequence, done };
        let job = match sender.as_ref() {
            None => job,
            Some(running) => match running.send(job) {
                Ok(()) => return Ok(Queued::pending(&self.name, outcome)),
                // The thread is gone (it should not be: every job runs under `catch_unwind`); start another.
                Err(mpsc::SendError(job)) => job,
            },
        };
        let (new_sender, receiver) = mpsc::channel();
        let flushed = Arc::clone(&self.flushed);
        let name = self.name.clone();
        std::thread::Builder::new()
            .name("edge-write".into())
            .spawn(move || run(&name, &receiver, &flushed))
            .map_err(|error| IndexError::engine(&self.name, error))?;
        new_sender.send(job).map_err(|_| IndexError::engine(&self.name, "the index's writer did not start"))?;
        *sender = Some(new_sender);
        Ok(Queued::pending(&self.name, outcome))
    }
}

/// The collection's writer: applies each job's updates, then hands its flush (if any) to the flusher and goes on
/// with the next job while the flusher writes the files.
fn run(name: &str, jobs: &mpsc::Receiver<Job>, flushed: &Arc<AtomicU64>) {
    let (flushes, flush_jobs) = mpsc::channel::<Job>();
    let flusher = {
        let (name, flushed) = (name.to_owned(), Arc::clone(flushed));
        std::thread::Builder::new().name("edge-flush".into()).spawn(move || {
            // qdrant's `background_flush` threads, started from this one, inherit the priority.
            crate::background::lower_priority();
            for job in flush_jobs {
                flush(&name, &flushed, job);
            }
        })
    };
    let flushes = match flusher {
        Ok(_) => Some(flushes),
        Err(error) => {
            tracing::warn!(collection = %name, error = %error, "vector_index_flusher_not_started");
            None
        }
    };
    for mut job in jobs {
        let skipped = job.chain.as_ref().is_some_and(WriteChain::is_broken);
        let updates = std::mem::take(&mut job.updates);
        let outcome = if skipped {
            Err(WriteChain::skipped(name))
        } else {
            guarded(name, || {
                for update in updates {
                    job.shard.update(update).map_err(|error| IndexError::engine(name, error))?;
                }
                Ok(())
            })
        };
        if outcome.is_ok() && job.flush {
            // The flusher takes the files as they are once it starts, which includes these updates and all before.
            let job = match &flushes {
                Some(flusher) => match flusher.send(job) {
                    Ok(()) => continue,
                    Err(mpsc::SendError(job)) => job,
                },
                None => job,
            };
            flush(name, flushed, job);
            continue;
        }
        finish(job, outcome);
    }
}

/// Flushes a job's shard and reports it.
fn flush(name: &str, flushed: &AtomicU64, job: Job) {
    let outcome = guarded(name, || {
        job.shard.flush_concurrently().map_err(|error| IndexError::engine(name, error))?;
        flushed.fetch_max(job.sequence, Ordering::SeqCst);
        Ok(())
    });
    finish(job, outcome);
}

/// Runs `work`, turning a panic of the engine into an error.
fn guarded(name: &str, work: impl FnOnce() -> Result<(), IndexError>) -> Result<(), IndexError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|panic| Err(IndexError::engine(name, panic_message(&panic))))
}

/// Reports a job's outcome (breaking its chain if it failed) and lets go of its shard handle.
fn finish(job: Job, outcome: Result<(), IndexError>) {
    let Job { shard, chain, done, .. } = job;
    let outcome = match &chain {
        Some(chain) => chain.record(outcome),
        None => outcome,
    };
    drop(shard);
    // The caller may have stopped waiting (a failed batch); the outcome is then nobody's business.
    let _ = done.send(outcome);
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("the engine panicked: {message}")
}
