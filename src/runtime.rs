//! The `run` command: HTTP endpoints, leader election and the controllers, with graceful
//! shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures::FutureExt;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info};

use crate::{
    controller::{self, Health},
    metrics::{Metrics, ObjectLabels},
    model::names::MANAGER,
};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease while running; exiting so that a standby takes over")]
    LostLease,
}

/// Leader election on a coordination.k8s.io Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over within about this.
    pub lease_duration: Duration,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub controllers: controller::Options,
    pub http_addr: SocketAddr,
    pub leader_election: Option<LeaderElection>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// True while this instance waits for the lease (it is healthy and ready to take over).
    standby: Arc<std::sync::atomic::AtomicBool>,
}

/// The HTTP endpoints: /metrics, /healthz, /readyz.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(stores) = state.health.stores() {
        for (kind, ready, count) in stores.ready_counts() {
            state
                .metrics
                .objects
                .get_or_create(&ObjectLabels { kind, ready })
                .set(count as i64);
        }
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.synced() {
        (StatusCode::OK, "ready")
    } else if state.standby.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "standby: waiting for the leader lease")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// Runs until `shutdown` resolves (or the lease is lost, which is an error).
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.boxed().shared();
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let standby = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = AppState {
        metrics: metrics.clone(),
        health: health.clone(),
        standby: standby.clone(),
    };

    let listener = tokio::net::TcpListener::bind(options.http_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: options.http_addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Listen {
        addr: options.http_addr,
        source,
    })?;
    info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
    );

    let result = match &options.leader_election {
        None => {
            metrics.leader.set(1);
            controller::run(
                client,
                options.controllers.clone(),
                metrics.clone(),
                health,
                shutdown.clone(),
            )
            .await;
            Ok(())
        }
        Some(election) => {
            run_as_leader(
                client,
                &options,
                election,
                metrics.clone(),
                health,
                standby,
                shutdown.clone(),
            )
            .await
        }
    };
    metrics.leader.set(0);
    let _ = server.await;
    result
}

/// Waits for the lease, runs the controllers while holding it, and releases it on shutdown.
async fn run_as_leader(
    client: Client,
    options: &Options,
    election: &LeaderElection,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    standby: Arc<std::sync::atomic::AtomicBool>,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) -> Result<(), Error> {
    let duration = election.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(MANAGER)
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    standby.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(lease = %election.lease_name, identity = %election.identity, "waiting for the leader lease");
    let acquired = tokio::select! {
        _ = shutdown.clone() => false,
        acquired = leader.wait_for(|is_leader| *is_leader) => acquired.is_ok(),
    };
    standby.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut lost = false;
    if acquired {
        info!("acquired the leader lease; starting controllers");
        metrics.leader.set(1);
        let mut watch = leader.clone();
        let lease_lost = async move {
            let _ = watch.wait_for(|is_leader| !*is_leader).await;
        }
        .shared();
        let stop = futures::future::select(shutdown.clone(), lease_lost.clone()).map(drop);
        controller::run(client, options.controllers.clone(), metrics, health, stop).await;
        lost = lease_lost.now_or_never().is_some() && shutdown.clone().now_or_never().is_none();
    }
    // Closing the channel makes the lease task release the lease, so a standby takes over at once.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the leader lease"),
        Ok(Ok(Err(e))) => error!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => error!(error = %e, "leader election task failed"),
        Err(_) => error!("timed out releasing the leader lease"),
    }
    if lost { Err(Error::LostLease) } else { Ok(()) }
}
