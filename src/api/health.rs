//! `GET /health`: every component's status (ok / down / disabled), backend, latency and error; 200 when every
//! configured component is ok, 503 otherwise.
//!
//! Each component is a [`Probe`]. The event store and the read model are always configured; the vector index, the
//! LLM endpoint and Redis are [`OptionalProbes`](crate::api::context::OptionalProbes): absent means `disabled`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dossier_events::EventStore;
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::runner::READ_MODEL;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;

/// How long a probe may take before its component counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A health check of one component.
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// The backend's name (`embedded`, `postgres`, `qdrant-edge`, `openai-compatible`, `redis`).
    fn backend(&self) -> &'static str;

    /// Succeeds when the component answers.
    async fn check(&self) -> Result<(), String>;
}

/// The health of one component.
#[derive(Debug, Serialize)]
pub struct ComponentHealth {
    /// `ok`, `down` or `disabled`.
    pub status: &'static str,
    /// Which backend serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
    /// How long the check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The components checked.
#[derive(Debug, Serialize)]
pub struct Components {
    /// The event log.
    pub event_store: ComponentHealth,
    /// The read model.
    pub read_model: ComponentHealth,
    /// The vector index.
    pub vector_index: ComponentHealth,
    /// The LLM endpoint.
    pub llm: ComponentHealth,
    /// Redis.
    pub redis: ComponentHealth,
}

/// `GET /health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// `ok` when every configured component is ok, else `degraded`.
    pub status: &'static str,
    /// Each component.
    pub components: Components,
}

async fn probe(probe: Option<&dyn Probe>) -> ComponentHealth {
    let Some(probe) = probe else {
        return ComponentHealth { status: "disabled", backend: None, latency_ms: None, error: None };
    };
    let started = Instant::now();
    let result = tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1_000.0);
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    ComponentHealth {
        status: if error.is_none() { "ok" } else { "down" },
        backend: Some(probe.backend()),
        latency_ms,
        error,
    }
}

/// `GET /health`.
pub async fn health(context: &ApiContext) -> Result<warp::reply::Response, ApiError> {
    let store = StoreProbe(Arc::clone(&context.store));
    let read_model = ReadModelProbe(Arc::clone(&context.read_model));
    let probes = &context.probes;
    let (event_store, read_model, vector_index, llm, redis) = tokio::join!(
        probe(Some(&store)),
        probe(Some(&read_model)),
        probe(probes.vector_index.as_deref()),
        probe(probes.llm.as_deref()),
        probe(probes.redis.as_deref()),
    );
    let components = Components { event_store, read_model, vector_index, llm, redis };
    let ok =
        [&components.event_store, &components.read_model, &components.vector_index, &components.llm, &components.redis]
            .iter()
            .all(|component| component.status != "down");
    let report = HealthReport { status: if ok { "ok" } else { "degraded" }, components };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(StoredResponse::json(status, &report)?.into_response())
}

struct StoreProbe(Arc<dyn EventStore>);

#[async_trait]
impl Probe for StoreProbe {
    fn backend(&self) -> &'static str {
        self.0.backend_name()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| error.to_string())
    }
}

struct ReadModelProbe(Arc<dyn ReadModelStore>);

#[async_trait]
impl Probe for ReadModelProbe {
    fn backend(&self) -> &'static str {
        self.0.backend_name()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.live_generation(READ_MODEL).await.map(drop).map_err(|error| error.to_string())
    }
}

/// Checks that a TCP service accepts connections (and, for Redis, answers `PING`).
pub struct TcpProbe {
    backend: &'static str,
    address: String,
    redis_ping: bool,
}

impl TcpProbe {
    /// A probe of the host and port in `url` (`scheme://[user@]host[:port]/...`), `None` when it names none.
    pub fn from_url(backend: &'static str, url: &str, default_port: u16, redis_ping: bool) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        if host_port.is_empty() {
            return None;
        }
        let default_port = if scheme.eq_ignore_ascii_case("https") { 443 } else { default_port };
        let has_port = host_port.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok())
            && !host_port.ends_with(']');
        let address = if has_port { host_port.to_owned() } else { format!("{host_port}:{default_port}") };
        Some(Self { backend, address, redis_ping })
    }
}

#[async_trait]
impl Probe for TcpProbe {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn check(&self) -> Result<(), String> {
        let mut stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", self.address))?;
        if self.redis_ping {
            stream.write_all(b"PING\r\n").await.map_err(|error| error.to_string())?;
            let mut reply = [0u8; 64];
            let read = stream.read(&mut reply).await.map_err(|error| error.to_string())?;
            let reply = String::from_utf8_lossy(&reply[..read]);
            // `-NOAUTH` still proves Redis is up; anything else is not Redis.
            if !(reply.starts_with("+PONG") || reply.starts_with("-NOAUTH")) {
                return Err(format!("unexpected reply to PING: {:?}", reply.trim()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_url_finds_host_and_port() {
        let probe = |url| TcpProbe::from_url("x", url, 80, false).map(|probe| probe.address);
        assert_eq!(probe("http://localhost:11434/v1").as_deref(), Some("localhost:11434"));
        assert_eq!(probe("https://api.openai.com/v1").as_deref(), Some("api.openai.com:443"));
        assert_eq!(probe("redis://:secret@10.0.0.1:6380/0?protocol=resp3").as_deref(), Some("10.0.0.1:6380"));
        assert_eq!(probe("http://example.org").as_deref(), Some("example.org:80"));
        assert_eq!(probe("not a url"), None);
    }
}
