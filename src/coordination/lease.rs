//! Projection leases: with several instances on one log, each projection runs in exactly one of them.
//!
//! The [`ProjectionKeeper`] of every instance tries to take the projection's lease; the one that gets it starts the
//! projection and renews the lease every third of its time to live; the others retry at the same pace. A holder
//! that fails to renew (Redis unreachable, lease expired and taken) stops its projection at once; a holder that
//! shuts down releases the lease, so another instance takes over within one retry. Should two runners ever overlap
//! (a pause longer than the lease), the projection's checkpoint fencing still applies each event exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dossier_actors::runtime::projection::ProjectionMsg;
use dossier_projections::runner::ProjectionStatus;
use futures::future::BoxFuture;
use ractor::ActorRef;
use tokio::sync::watch;

use crate::error::AppError;

/// Leases by name.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// `in-process` or `redis`.
    fn backend(&self) -> &'static str;

    /// Takes the lease if nobody holds it.
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String>;

    /// Extends the lease if `holder` still holds it.
    async fn renew(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String>;

    /// Gives the lease up if `holder` holds it.
    async fn release(&self, name: &str, holder: &str) -> Result<(), String>;

    /// Who holds the lease now.
    async fn holder(&self, name: &str) -> Result<Option<String>, String>;
}

/// One instance: it always holds every lease.
pub struct InProcessLeases;

#[async_trait]
impl LeaseStore for InProcessLeases {
    fn backend(&self) -> &'static str {
        "in-process"
    }

    async fn acquire(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool, String> {
        Ok(true)
    }

    async fn renew(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool, String> {
        Ok(true)
    }

    async fn release(&self, _name: &str, _holder: &str) -> Result<(), String> {
        Ok(())
    }

    async fn holder(&self, _name: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Runs `work` under the lease `name`, which the caller has acquired: renews it every third of `ttl` and releases
/// it at the end; `None` when the lease is lost midway (the work is then dropped, so it must be safe to interrupt).
pub async fn while_holding<F: Future>(
    leases: &dyn LeaseStore,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: F,
) -> Result<Option<F::Output>, String> {
    let mut work = std::pin::pin!(work);
    let outcome = loop {
        tokio::select! {
            output = &mut work => break Some(output),
            () = tokio::time::sleep(ttl / 3) => {
                if !leases.renew(name, holder, ttl).await.unwrap_or(false) {
                    tracing::warn!(lease = name, holder, "lease_lost_work_abandoned");
                    break None;
                }
            }
        }
    };
    leases.release(name, holder).await?;
    Ok(outcome)
}

/// Starts a projection's supervising actor, publishing its progress on the given sender.
pub type StartProjection = Arc<
    dyn Fn(watch::Sender<ProjectionStatus>) -> BoxFuture<'static, Result<ActorRef<ProjectionMsg>, AppError>>
        + Send
        + Sync,
>;

/// Runs a projection in this instance while it holds the projection's lease.
pub struct ProjectionKeeper {
    /// The lease's name (the projection's).
    pub name: &'static str,
    /// This instance's id.
    pub holder: String,
    /// The lease's time to live.
    pub ttl: Duration,
    /// Where leases live.
    pub leases: Arc<dyn LeaseStore>,
    /// Starts the projection.
    pub start: StartProjection,
    /// Where the projection publishes its progress.
    pub status: watch::Sender<ProjectionStatus>,
    /// True while this instance runs the projection.
    pub running_here: watch::Sender<bool>,
}

impl ProjectionKeeper {
    /// Keeps the lease (and the projection) until `shutdown` turns true, then stops the projection and releases.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut actor = None;
        let pace = self.ttl / 3;
        loop {
            let held = match &actor {
                None => self.leases.acquire(self.name, &self.holder, self.ttl).await,
                Some(_) => self.leases.renew(self.name, &self.holder, self.ttl).await,
            };
            match (&held, actor.is_some()) {
                (Ok(true), false) => match (self.start)(self.status.clone()).await {
                    Ok(started) => {
                        tracing::info!(projection = self.name, holder = %self.holder, "projection_lease_acquired");
                        actor = Some(started);
                        let _ = self.running_here.send(true);
                    }
                    Err(error) => {
                        tracing::error!(projection = self.name, error = %error, "projection_start_failed");
                        let _ = self.leases.release(self.name, &self.holder).await;
                    }
                },
                (Ok(true), true) | (Ok(false), false) => {}
                (Ok(false) | Err(_), true) => {
                    // Lost (or cannot confirm) the lease: stop at once rather than risk running twice.
                    if let Err(error) = held {
                        tracing::warn!(projection = self.name, error = %error, "projection_lease_unconfirmed");
                    }
                    tracing::warn!(projection = self.name, holder = %self.holder, "projection_lease_lost");
                    if let Some(actor) = actor.take() {
                        actor.stop(Some("lease lost".into()));
                    }
                    let _ = self.running_here.send(false);
                }
                (Err(error), false) => {
                    tracing::warn!(projection = self.name, error = %error, "projection_lease_unavailable");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pace) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }
        if let Some(actor) = actor.take() {
            actor.stop(Some("shutdown".into()));
            let _ = self.running_here.send(false);
            if let Err(error) = self.leases.release(self.name, &self.holder).await {
                tracing::warn!(projection = self.name, error = %error, "projection_lease_release_failed");
            }
        }
    }
}
