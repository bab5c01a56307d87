//! Work that can wait: the projection runners, the pipeline's CPU-bound stages and the embedded index's segment
//! builds and flushes run at a lower scheduling priority than the requests.
//!
//! On a machine whose cores also answer requests, background work then takes the idle time rather than the
//! requests'. Measured with `bench api` (two cores, embedded): the optimizer and the flushes alone were a fifth of
//! the CPU of an upload run, in bursts of over a second, and set the uploads' p99. Under a sustained overload the
//! projections fall further behind (their lag is reported) instead of slowing every request.

use std::sync::OnceLock;

/// The `nice` value of background threads (Linux: 0 is the default, 19 the lowest priority).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`]. Threads it starts afterwards inherit it. Best
/// effort: a platform without per-thread priorities, or a refusal, leaves the priority as it was.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
        let outcome = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, BACKGROUND_NICE)
        };
        if outcome != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "thread_priority_unchanged");
        }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs only on a core nothing else wants, and yields
/// it at once when a normal thread wakes (a niced thread keeps the core for the rest of its time slice). Threads
/// it starts afterwards inherit the class. Best effort, as [`lower_priority`].
pub fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a system call on the calling thread (id 0) with a parameter that lives across the call.
        let outcome = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if outcome != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "thread_priority_unchanged");
        }
    }
}

/// The process's background runtime: a multi-thread tokio runtime (a worker per core) whose workers and blocking
/// threads run at [`BACKGROUND_NICE`]. Started on first use and kept for the life of the process.
///
/// Tasks spawned here should not open connections that requests share: a connection is driven by the runtime that
/// opened it (the Postgres pools open theirs on the runtime that built the pool; see `dossier_events::postgres`).
pub fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("dossier-background")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                // Building fails only when the OS refuses threads or an event fd; then nothing could run anyway. The
                // panic names the cause, and in an actor's handler it becomes that actor's failure, supervised.
                .unwrap_or_else(|error| panic!("cannot start the background runtime: {error}"))
        })
        .handle()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn idle_priority_puts_the_calling_thread_alone_in_the_idle_class() {
        // SAFETY (both calls): a query of the calling thread's own scheduling policy.
        let idle = std::thread::spawn(|| {
            idle_priority();
            unsafe { libc::sched_getscheduler(0) }
        });
        assert_eq!(idle.join().expect("thread"), libc::SCHED_IDLE);
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER, "other threads keep theirs");
    }
}
