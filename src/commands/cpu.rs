//! CPU time over a benchmark's measured window, read from `/proc` (Linux): this process's, and the rest of the
//! machine's (a Postgres on the same host, for one). Elsewhere there is no sample and the report leaves it out.

use std::time::Instant;

use serde::Serialize;

/// CPU counters at one moment, in clock ticks.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    at: Instant,
    process: u64,
    machine_busy: u64,
}

/// Where the CPU went over a window, in cores' worth (1.0 = one core busy the whole window) and per request.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuReport {
    /// This process: the server, its pipeline and projections, and the load generator's thread.
    pub process_cores: f64,
    /// Everything else on the machine.
    pub other_cores: f64,
    /// The machine's cores.
    pub cores: usize,
    /// `process_cores` per request answered with the expected status, in milliseconds of CPU.
    pub process_ms_per_ok: f64,
    /// `other_cores` per request answered with the expected status, in milliseconds of CPU.
    pub other_ms_per_ok: f64,
}

/// The counters now, or `None` where `/proc` does not have them.
pub fn sample() -> Option<CpuSample> {
    let process = std::fs::read_to_string("/proc/self/stat").ok()?;
    let machine = std::fs::read_to_string("/proc/stat").ok()?;
    Some(CpuSample { at: Instant::now(), process: process_ticks(&process)?, machine_busy: busy_ticks(&machine)? })
}

/// The CPU used from `start` to `end`, for `ok` requests.
pub fn report(start: CpuSample, end: CpuSample, ok: u64) -> Option<CpuReport> {
    let seconds = end.at.checked_duration_since(start.at)?.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let hz = clock_ticks_per_second();
    let process = end.process.saturating_sub(start.process) as f64 / hz;
    // Ticks are counted per core and read at slightly different moments: the rest is never below zero.
    let other = (end.machine_busy.saturating_sub(start.machine_busy) as f64 / hz - process).max(0.0);
    let per_ok = |cpu_seconds: f64| if ok == 0 { 0.0 } else { cpu_seconds * 1_000.0 / ok as f64 };
    Some(CpuReport {
        process_cores: process / seconds,
        other_cores: other / seconds,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        process_ms_per_ok: per_ok(process),
        other_ms_per_ok: per_ok(other),
    })
}

/// `utime + stime` of `/proc/self/stat` (fields 14 and 15; the command name, field 2, may hold spaces and
/// parentheses, so fields are counted after its last `)`).
fn process_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The busy time of all cores on `/proc/stat`'s `cpu` line: everything but `idle` and `iowait` (`guest` time is
/// already in `user`, so the columns after `steal` are left out).
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let columns: Vec<u64> = line.split_whitespace().skip(1).map(|column| column.parse().ok()).collect::<Option<_>>()?;
    let column = |index: usize| columns.get(index).copied().unwrap_or(0);
    // user, nice, system, (idle), (iowait), irq, softirq, steal
    Some(column(0) + column(1) + column(2) + column(5) + column(6) + column(7))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a configuration value and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (dossier (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 0 0 20 0 40 0 7 0";
        assert_eq!(process_ticks(stat), Some(1_750));
        assert_eq!(process_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn busy_ticks_leave_out_idle_iowait_and_guest() {
        let stat = "cpu  100 20 30 5000 70 1 2 3 40 50\ncpu0 50 10 15 2500 35 0 1 1 20 25\n";
        assert_eq!(busy_ticks(stat), Some(100 + 20 + 30 + 1 + 2 + 3));
        assert_eq!(busy_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn a_busy_loop_shows_as_this_process_using_at_least_one_core() {
        let start = sample().expect("/proc is there");
        let began = Instant::now();
        let mut spin = 0u64;
        while began.elapsed().as_millis() < 300 {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let report = report(start, sample().expect("/proc"), 3).expect("a window");
        // The loop's core, and whatever the tests running beside it in this process used.
        let cores = report.cores as f64;
        assert!(report.process_cores > 0.6 && report.process_cores < cores + 0.5, "{report:?}");
        assert!(report.process_ms_per_ok * 3.0 > 0.6 * 300.0, "the loop's 300 ms over 3 requests: {report:?}");
        assert!(report.other_cores >= 0.0 && report.other_cores < cores + 0.5, "{report:?}");
    }
}
