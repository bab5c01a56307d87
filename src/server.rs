//! The HTTP server: binds, serves the API until shutdown, then drains open connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dossier_events::EventStore;
use serde::Serialize;
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::StatusCode;

use crate::error::AppError;

/// A bound, not yet running server (binding first lets tests ask for port 0 and learn the real port).
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    store: Arc<dyn EventStore>,
}

impl Application {
    /// Binds the listen address.
    pub async fn build(bind: SocketAddr, store: Arc<dyn EventStore>) -> Result<Self, AppError> {
        let listener =
            TcpListener::bind(bind).await.map_err(|error| AppError::io(format!("cannot listen on {bind}"), error))?;
        let address = listener.local_addr().map_err(|error| AppError::io("reading the bound address", error))?;
        Ok(Self { listener, address, store })
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then waits for open connections to finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(address = %self.address, backend = self.store.backend_name(), "server_listening");
        warp::serve(routes(self.store)).incoming(self.listener).graceful(shutdown).run().await;
        tracing::info!("server_stopped");
    }
}

/// Every route of the API.
pub fn routes(
    store: Arc<dyn EventStore>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let health = warp::path!("api" / "v1" / "health")
        .and(warp::get())
        .and(warp::any().map(move || Arc::clone(&store)))
        .then(health);
    health.recover(|rejection: warp::Rejection| async move {
        let (status, title) = if rejection.is_not_found() {
            (StatusCode::NOT_FOUND, "Not Found")
        } else {
            (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        };
        let body = Problem { r#type: "about:blank", title, status: status.as_u16(), detail: None, code: "not_found" };
        Ok::<_, Infallible>(warp::reply::with_header(
            warp::reply::with_status(warp::reply::json(&body), status),
            "content-type",
            "application/problem+json",
        ))
    })
}

/// An RFC 9457 problem body.
#[derive(Serialize)]
struct Problem {
    r#type: &'static str,
    title: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    code: &'static str,
}

/// The health of one component.
#[derive(Debug, Serialize)]
pub struct ComponentHealth {
    /// `ok`, `down` or `disabled`.
    pub status: &'static str,
    /// Which backend serves it.
    pub backend: &'static str,
    /// How long the check took.
    pub latency_ms: f64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// `ok` when every configured component is ok, else `degraded`.
    pub status: &'static str,
    /// Each component.
    pub components: Components,
}

/// The components checked.
#[derive(Debug, Serialize)]
pub struct Components {
    /// The event log.
    pub event_store: ComponentHealth,
}

async fn health(store: Arc<dyn EventStore>) -> warp::reply::WithStatus<warp::reply::Json> {
    let started = Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("no answer within 2 s".to_owned()),
    };
    let ok = error.is_none();
    let report = HealthReport {
        status: if ok { "ok" } else { "degraded" },
        components: Components {
            event_store: ComponentHealth {
                status: if ok { "ok" } else { "down" },
                backend: store.backend_name(),
                latency_ms,
                error,
            },
        },
    };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    warp::reply::with_status(warp::reply::json(&report), status)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot_listen_for_sigterm");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown_requested");
}
