//! `GET /metrics`: Prometheus text exposition, hand-rolled (a handful of counters and histograms do not need a
//! metrics framework).
//!
//! - `dossier_http_requests_total{method,route,status}` and `dossier_http_request_duration_seconds{route}`;
//! - `dossier_events_appended_total{event_type}`, `dossier_pipeline_stage_retries_total{stage}` and
//!   `dossier_pipeline_stage_duration_seconds{stage}`, all observed from the log itself by [`observe_log`] (so they
//!   count the events of every process sharing the log, and a stage's duration is the time between the event that
//!   started it and the one that recorded its result, queueing included);
//! - `dossier_api_events_appended_total`: events appended by this process's API commands;
//! - `dossier_log_hints_published_total` and `dossier_log_hints_received_total`: commit announcements sent to and
//!   heard from the other instances (Redis; see [`crate::coordination::fanout`]);
//! - `dossier_log_head_position`, `dossier_projection_*` from the live projection's status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dossier_actors::runtime::supervisor::SupervisorStats;
use dossier_events::RecordedEvent;
use dossier_events::document::{
    ChunksEmbedded, DocumentChunked, DocumentDeleted, DocumentEvent, DocumentFailed, DocumentParsed, DocumentPayload,
    DocumentReady, Stage, StageAttemptFailed,
};
use dossier_projections::runner::{ProjectionStatus, RunnerState};
use time::OffsetDateTime;
use warp::http::Method;

use crate::api::live::LiveFeed;

/// Histogram bucket bounds, in seconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Documents whose last event time is remembered for stage durations (the oldest are forgotten beyond this).
const MAX_TRACKED: usize = 100_000;

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let counts = if self.counts.is_empty() { vec![0; BUCKETS.len()] } else { self.counts.clone() };
        for (bound, count) in BUCKETS.iter().zip(counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    latencies: BTreeMap<&'static str, Histogram>,
    events: BTreeMap<String, u64>,
    retries: BTreeMap<&'static str, u64>,
    stages: BTreeMap<&'static str, Histogram>,
    last_event_at: HashMap<String, OffsetDateTime>,
}

/// A projection gauge's value from its runner's status and the log's head.
type Gauge = fn(&ProjectionStatus, u64) -> f64;

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    api_appended: AtomicU64,
    hints_published: AtomicU64,
    hints_received: AtomicU64,
}

impl Metrics {
    /// Counts one request.
    pub fn record_request(&self, method: &Method, route: &'static str, status: u16, took: Duration) {
        let method = method_label(method);
        if let Ok(mut inner) = self.inner.lock() {
            *inner.requests.entry((method, route, status)).or_default() += 1;
            inner.latencies.entry(route).or_default().observe(took.as_secs_f64());
        }
    }

    /// Counts events appended by an API command.
    pub fn record_appended(&self, events: usize) {
        self.api_appended.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Counts one of this instance's commits announced to the others (through Redis).
    pub fn record_hint_published(&self) {
        self.hints_published.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one commit announcement heard (through Redis; this instance's own included).
    pub fn record_hint_received(&self) {
        self.hints_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one committed event of the log.
    pub fn record_event(&self, event: &RecordedEvent) {
        let Ok(mut inner) = self.inner.lock() else { return };
        *inner.events.entry(event.event_type.clone()).or_default() += 1;
        let stream = event.stream_id.as_str();
        let previous = inner.last_event_at.get(stream).copied();
        // Only a failed attempt needs its payload (for the stage); the rest is told by the event type.
        let finished_stage = match event.event_type.as_str() {
            DocumentParsed::EVENT_TYPE => Some(Stage::Parse),
            DocumentChunked::EVENT_TYPE => Some(Stage::Chunk),
            ChunksEmbedded::EVENT_TYPE => Some(Stage::Embed),
            StageAttemptFailed::EVENT_TYPE => {
                if let Ok(DocumentEvent::StageAttemptFailed(failed)) = DocumentEvent::from_recorded(event) {
                    *inner.retries.entry(failed.stage.as_str()).or_default() += 1;
                }
                None
            }
            _ => None,
        };
        if let (Some(stage), Some(previous)) = (finished_stage, previous) {
            let seconds = (event.recorded_at - previous).as_seconds_f64().max(0.0);
            inner.stages.entry(stage.as_str()).or_default().observe(seconds);
        }
        let finished = matches!(
            event.event_type.as_str(),
            DocumentReady::EVENT_TYPE | DocumentFailed::EVENT_TYPE | DocumentDeleted::EVENT_TYPE
        );
        if finished {
            inner.last_event_at.remove(stream);
        } else {
            if inner.last_event_at.len() >= MAX_TRACKED {
                inner.last_event_at.clear();
            }
            inner.last_event_at.insert(stream.to_owned(), event.recorded_at);
        }
    }

    /// The exposition text.
    /// `documents` is the document supervisor's count (`None` when it did not answer: the metrics are left out).
    pub fn render(
        &self,
        head: u64,
        projections: &[(ProjectionStatus, bool)],
        followers: u64,
        documents: Option<SupervisorStats>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let Ok(inner) = self.inner.lock() else { return out };
        out.push_str("# HELP dossier_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE dossier_http_requests_total counter\n");
        for ((method, route, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "dossier_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP dossier_http_request_duration_seconds Time to answer a request (to its first byte).\n");
        out.push_str("# TYPE dossier_http_request_duration_seconds histogram\n");
        for (route, histogram) in &inner.latencies {
            histogram.render(&mut out, "dossier_http_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# HELP dossier_events_appended_total Events committed to the log since this process started.\n");
        out.push_str("# TYPE dossier_events_appended_total counter\n");
        for (event_type, count) in &inner.events {
            let _ = writeln!(out, "dossier_events_appended_total{{event_type=\"{event_type}\"}} {count}");
        }
        out.push_str("# HELP dossier_api_events_appended_total Events appended by this process's API commands.\n");
        out.push_str("# TYPE dossier_api_events_appended_total counter\n");
        let _ = writeln!(out, "dossier_api_events_appended_total {}", self.api_appended.load(Ordering::Relaxed));
        let hints = [
            (
                "dossier_log_hints_published_total",
                "Commits of this instance announced to the others.",
                &self.hints_published,
            ),
            (
                "dossier_log_hints_received_total",
                "Commit announcements heard, this instance's own included.",
                &self.hints_received,
            ),
        ];
        for (metric, help, count) in hints {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP dossier_pipeline_stage_retries_total Failed pipeline stage attempts.\n");
        out.push_str("# TYPE dossier_pipeline_stage_retries_total counter\n");
        for stage in [Stage::Parse, Stage::Chunk, Stage::Embed] {
            let count = inner.retries.get(stage.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "dossier_pipeline_stage_retries_total{{stage=\"{stage}\"}} {count}");
        }
        out.push_str("# HELP dossier_pipeline_stage_duration_seconds From a stage's trigger event to its result.\n");
        out.push_str("# TYPE dossier_pipeline_stage_duration_seconds histogram\n");
        for stage in [Stage::Parse, Stage::Chunk, Stage::Embed] {
            let histogram = inner.stages.get(stage.as_str()).cloned().unwrap_or_default();
            histogram.render(&mut out, "dossier_pipeline_stage_duration_seconds", &format!("stage=\"{stage}\""));
        }
        out.push_str("# HELP dossier_live_followers Followers of the live feed (live clients and the metrics).\n");
        out.push_str("# TYPE dossier_live_followers gauge\n");
        let _ = writeln!(out, "dossier_live_followers {followers}");
        if let Some(documents) = documents {
            let _ = writeln!(
                out,
                "# HELP dossier_document_actors Document actors running (idle ones are passivated).\n\
                 # TYPE dossier_document_actors gauge\ndossier_document_actors {}",
                documents.live
            );
            let _ = writeln!(
                out,
                "# HELP dossier_document_actor_restarts_total Document actors restarted after a crash.\n\
                 # TYPE dossier_document_actor_restarts_total counter\ndossier_document_actor_restarts_total {}",
                documents.restarts
            );
        }
        out.push_str("# HELP dossier_log_head_position Position of the last committed event.\n");
        out.push_str("# TYPE dossier_log_head_position gauge\n");
        let _ = writeln!(out, "dossier_log_head_position {head}");
        // Checkpoint and lag come from the runner, so only the instance running a projection reports them.
        let gauges: [(&str, &str, Gauge); 3] = [
            ("dossier_projection_checkpoint", "Last position the projection applied.", |p, _| p.checkpoint as f64),
            ("dossier_projection_lag_events", "Events the projection has not applied yet.", |p, head| {
                head.saturating_sub(p.checkpoint) as f64
            }),
            ("dossier_projection_lag_seconds", "Age of the newest applied event when applied.", |p, _| p.lag_seconds),
        ];
        for (metric, help, value) in gauges {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
            for (projection, _) in projections.iter().filter(|(_, here)| *here) {
                let _ = writeln!(out, "{metric}{{projection=\"{}\"}} {}", projection.name, value(projection, head));
            }
        }
        out.push_str("# HELP dossier_projection_running 1 while this instance runs the projection.\n");
        out.push_str("# TYPE dossier_projection_running gauge\n");
        for (projection, here) in projections {
            let running = u8::from(*here && !matches!(projection.state, RunnerState::Stopped { .. }));
            let _ = writeln!(out, "dossier_projection_running{{projection=\"{}\"}} {running}", projection.name);
        }
        out
    }
}

/// A method as a label: the standard ones by name, any other as `OTHER` (a client cannot grow the label set, and
/// counting a request allocates nothing).
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.iter().position(|standard| standard == method).map_or("OTHER", |index| NAMES[index])
}

/// Feeds every event the live feed follows (those committed after `head`) into `metrics`.
pub async fn observe_log(feed: std::sync::Arc<LiveFeed>, head: u64, metrics: std::sync::Arc<Metrics>) {
    let mut events = feed.follow(head);
    while let Some(event) = events.recv().await {
        metrics.record_event(&event);
    }
}
