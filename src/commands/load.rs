//! An HTTP load generator for `bench api`: a fixed number of keep-alive HTTP/1.1 connections over TCP.
//!
//! Closed loop (the default): each connection sends its next request as soon as it has read the previous answer
//! whole, so the server is loaded to saturation and a request's latency runs from handing it to the connection to
//! the last byte of the answer's body.
//!
//! Open loop (`Load::rate`): requests are due at a fixed rate (the `n`-th at `n / rate` seconds from the start,
//! whatever the server does), each sent by whichever connection is free, and a request's latency runs from the time
//! it was *due*. A server that falls behind makes the requests behind it wait for a connection, and that wait is in
//! their latency (no coordinated omission, as in wrk2); such a server also answers fewer than `rate` a second.
//!
//! Threading: the connections run on a runtime of their own (threads named `bench-client`), so that the client does
//! not take the server's worker threads and a profile tells the two apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::commands::bench::percentile;
use crate::error::AppError;

/// How to load the server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// The server.
    pub address: SocketAddr,
    /// Concurrent connections (each with one request in flight).
    pub connections: usize,
    /// Time spent sending requests before measuring.
    pub warmup: Duration,
    /// Time measured.
    pub duration: Duration,
    /// Worker threads of the client's runtime.
    pub client_threads: usize,
    /// Requests due per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
}

/// When the requests of an open-loop run are due.
#[derive(Clone, Copy, Debug)]
struct Pace {
    start: Instant,
    rate: f64,
}

impl Pace {
    /// When the `n`-th request (from 0) is due.
    fn due(self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// Makes the `n`-th request of a run (a path-only URI; the connection adds nothing but `Host`).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// Concurrent connections.
    pub connections: usize,
    /// Requests due per second (open loop only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_sec: Option<f64>,
    /// Requests answered in the measured window.
    pub requests: u64,
    /// Of which with the expected status.
    pub ok: u64,
    /// Of which with another status, or no answer.
    pub errors: u64,
    /// The first error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The measured window.
    pub seconds: f64,
    /// Requests answered per second.
    pub requests_per_sec: f64,
    /// Requests answered with the expected status per second.
    pub ok_per_sec: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p90_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// The slowest request.
    pub max_ms: f64,
    /// The CPU the machine spent over the measured window (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::cpu::CpuReport>,
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Each measured request's start (from the start of the measured window), latency, and whether it was ok.
    samples: Vec<(Duration, Duration, bool)>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Runs `make`'s requests against the server on a runtime of its own; `expected` is the status that counts as ok.
/// With `trace`, every measured request is also written to that file (see [`write_trace`]).
pub async fn run(
    load: Load,
    expected: StatusCode,
    make: MakeRequest,
    trace: Option<PathBuf>,
) -> Result<LoadReport, AppError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(load.client_threads.max(1))
                .thread_name("bench-client")
                .enable_all()
                .build();
            let report = match runtime {
                Ok(runtime) => runtime.block_on(drive(load, expected, make, trace)),
                Err(error) => Err(AppError::io("starting the load generator's runtime", error)),
            };
            let _ = sender.send(report);
        })
        .map_err(|error| AppError::io("starting the load generator's thread", error))?;
    receiver.await.map_err(|_| AppError::Usage("the load generator's thread panicked".into()))?
}

async fn drive(
    load: Load,
    expected: StatusCode,
    make: MakeRequest,
    trace: Option<PathBuf>,
) -> Result<LoadReport, AppError> {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let pace = load.rate.map(|rate| Pace { start: started, rate });
    let measure_from = started + load.warmup;
    let window = Window { measure_from, deadline: measure_from + load.duration };
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        super::cpu::sample()
    });
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections.max(1) {
        let (make, counter) = (Arc::clone(&make), Arc::clone(&counter));
        tasks.push(tokio::spawn(connection(load.address, make, counter, expected, pace, window)));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|error| AppError::Usage(format!("a load connection panicked: {error}")))?;
        total.samples.extend(tally.samples);
        total.ok += tally.ok;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let seconds = measure_from.elapsed().as_secs_f64();
    let cpu_at_end = super::cpu::sample();
    let cpu = match (cpu_at_start.await.ok().flatten(), cpu_at_end) {
        (Some(start), Some(end)) => super::cpu::report(start, end, total.ok),
        _ => None,
    };
    if let Some(path) = &trace {
        write_trace(path, measure_from, &mut total.samples)?;
    }
    let mut latencies: Vec<Duration> = total.samples.iter().map(|(_, took, _)| *took).collect();
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    Ok(LoadReport {
        connections: load.connections,
        offered_per_sec: load.rate,
        requests,
        ok: total.ok,
        errors: total.errors,
        first_error: total.first_error,
        seconds,
        requests_per_sec: requests as f64 / seconds,
        ok_per_sec: total.ok as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |max| max.as_secs_f64() * 1_000.0),
        cpu,
    })
}

/// Writes one line per measured request, in order of start: milliseconds from the start of the measured window to
/// the request's start, its latency in milliseconds, and 1 or 0 (answered with the expected status or not),
/// tab-separated. The first line, a comment, gives the window's start on the clock `Instant` reads (on Linux
/// `CLOCK_MONOTONIC`, which `perf record -k mono` also uses), so that stalls can be matched with a profile.
fn write_trace(path: &Path, measure_from: Instant, samples: &mut [(Duration, Duration, bool)]) -> Result<(), AppError> {
    use std::fmt::Write;
    samples.sort_unstable_by_key(|(at, ..)| *at);
    let mut text = format!("# window start: {measure_from:?}\n# start_ms\tlatency_ms\tok\n");
    for (at, took, ok) in samples.iter() {
        let (at, took) = (at.as_secs_f64() * 1e3, took.as_secs_f64() * 1e3);
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{at:.3}\t{took:.3}\t{}", u8::from(*ok));
    }
    std::fs::write(path, text)
        .map_err(|error| AppError::io(format!("writing the latency trace {}", path.display()), error))
}

/// A run's measured window: requests sent (closed loop) or due (open loop) from `measure_from` on are counted, and
/// none is sent (or due) from `deadline` on.
#[derive(Clone, Copy, Debug)]
struct Window {
    measure_from: Instant,
    deadline: Instant,
}

/// One keep-alive connection sending requests until the window's deadline: back to back, or with `pace`, each the
/// next one due, once it is due. A broken connection is counted as an error and opened again.
async fn connection(
    address: SocketAddr,
    make: MakeRequest,
    counter: Arc<AtomicU64>,
    expected: StatusCode,
    pace: Option<Pace>,
    window: Window,
) -> Tally {
    let Window { measure_from, deadline } = window;
    let mut tally = Tally::default();
    let mut sender = None;
    while Instant::now() < deadline {
        let connected = match sender.take() {
            Some(connected) => connected,
            None => match connect(address).await {
                Ok(connected) => connected,
                Err(error) => {
                    tally.error(error);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut connected: SendRequest<Full<Bytes>> = connected;
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let began = match pace {
            None => Instant::now(),
            Some(pace) => {
                let due = pace.due(n);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
        };
        let request = make(n);
        let outcome = exchange(&mut connected, request).await;
        let took = began.elapsed();
        let measured = began >= measure_from;
        match outcome {
            Ok((status, body)) => {
                sender = Some(connected);
                if measured {
                    tally.samples.push((began - measure_from, took, status == expected));
                    if status == expected {
                        tally.ok += 1;
                    } else {
                        let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                        tally.error(format!("{status}: {body}"));
                    }
                }
            }
            Err(error) if measured => {
                tally.samples.push((began - measure_from, took, false));
                tally.error(error);
            }
            Err(_) => {}
        }
    }
    tally
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(address).await.map_err(|error| format!("connect: {error}"))?;
    stream.set_nodelay(true).map_err(|error| format!("TCP_NODELAY: {error}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake: {error}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "bench_connection_closed");
        }
    });
    Ok(sender)
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender.ready().await.map_err(|error| format!("connection: {error}"))?;
    let response = sender.send_request(request).await.map_err(|error| format!("request: {error}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|error| format!("body: {error}"))?.to_bytes();
    Ok((status, body))
}

/// Sends one request on a connection of its own (setup and polling, not measured).
pub async fn fetch(address: SocketAddr, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), AppError> {
    let mut sender = connect(address).await.map_err(AppError::Usage)?;
    exchange(&mut sender, request).await.map_err(AppError::Usage)
}
