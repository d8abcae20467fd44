//! The `run` command: the caches (on every replica), the HTTP endpoints, leader election and
//! the controllers (on the leader), with graceful shutdown.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures::{FutureExt, StreamExt, future::Shared};
use k8s_openapi::{
    ByteString,
    api::{coordination::v1::Lease, core::v1::Secret},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use kube_lease_manager::LeaseManagerBuilder;
use rand::TryRngCore;
use tracing::{error, info, warn};

use crate::{
    authz,
    cache::{Cache, Hooks, InitialList},
    controller::{self, Controllers},
    metrics::{KindLabels, Metrics, ObjectLabels},
    model::{
        issuance::{self, IssuanceKey},
        names::{LABEL_COMPONENT, MANAGER},
    },
    tenant_api,
    webhook::{self, tls},
};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve HTTP on {0}")]
    Listen(#[from] crate::serve::ListenError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease while running; exiting so that a standby takes over")]
    LostLease,
    #[error(transparent)]
    Webhook(#[from] webhook::Error),
    #[error(transparent)]
    Authz(#[from] authz::Error),
    #[error(transparent)]
    TenantApi(#[from] tenant_api::Error),
    #[error("the {kind} watch stopped ({why}); its cache would no longer follow the cluster")]
    WatchStopped { kind: String, why: String },
    #[error("cannot read or create the issuance key Secret {namespace}/{name}: {source}")]
    IssuanceKey {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "the issuance key Secret {namespace}/{name} is not usable ({why}); restore it from a backup, or delete it to have a new key made (every issued secret then stops authenticating until re-issued)"
    )]
    BadIssuanceKey {
        namespace: String,
        name: String,
        why: String,
    },
}

/// Where the issuance key lives (`model::issuance`): a Secret of the operator's namespace.
#[derive(Clone, Debug)]
pub struct IssuanceKeySecret {
    pub namespace: String,
    pub name: String,
}

/// Data key of the issuance key in its Secret.
const ISSUANCE_KEY: &str = "key";

/// Leader election on a coordination.k8s.io Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// How long a lease lasts without renewal; a standby takes over within about this.
    pub lease_duration: Duration,
}

/// The admission webhook: where it listens and its certificates.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub addr: SocketAddr,
    pub tls: tls::Options,
    /// Only these clients get answers (None: any that reaches the port).
    pub client_auth: Option<webhook::ClientAuth>,
    /// Who is outside the CE rules of who may act, and how tenants are named.
    pub tenancy: webhook::actor::Tenancy,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (all namespaces when None).
    pub namespace: Option<String>,
    /// How the watches read what exists when they start.
    pub initial_list: InitialList,
    pub controllers: controller::Options,
    pub http_addr: SocketAddr,
    pub leader_election: Option<LeaderElection>,
    /// The admission webhook (None: not served).
    pub webhook: Option<Webhook>,
    /// The authorization endpoints (None: not served).
    pub authz: Option<authz::Options>,
    /// The tenant API (None: not served).
    pub tenant_api: Option<tenant_api::Options>,
    pub issuance_key: IssuanceKeySecret,
}

type Shutdown = Shared<futures::future::BoxFuture<'static, ()>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    cache: Arc<Cache>,
    /// True while this instance waits for the lease (it keeps its caches, ready to take over).
    standby: Arc<AtomicBool>,
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
    let counts = state.cache.ready_counts().into_iter().map(|c| {
        let labels = ObjectLabels {
            kind: c.kind,
            ready: c.ready,
            reason: c.reason,
        };
        (labels, i64::try_from(c.count).unwrap_or(i64::MAX))
    });
    state.metrics.set_object_counts(counts);
    for (kind, count) in state.cache.malformed_counts() {
        let gauge = state.metrics.malformed_objects.get_or_create(&KindLabels { kind });
        gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
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
    match (state.cache.is_synced(), state.standby.load(Ordering::Relaxed)) {
        (true, false) => (StatusCode::OK, "ready"),
        (true, true) => (StatusCode::OK, "ready (standby: waiting for the leader lease)"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet"),
    }
}

/// Runs until `shutdown` resolves (or the lease is lost, which is an error).
pub async fn run(
    config: kube::Config,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let shutdown: Shutdown = shutdown.boxed().shared();
    let metrics = Arc::new(Metrics::default());
    let client = crate::client::counted(config, metrics.clone()).map_err(Error::Client)?;
    let standby = Arc::new(AtomicBool::new(false));

    // The caches run on every replica: the webhook and the authorization endpoint answer
    // from them, and a standby that takes over starts from warm caches.
    let key = issuance_key(&client, &options.issuance_key).await?;
    let (cache, writers) = Cache::new(options.namespace.clone(), key);
    let mut hooks = Hooks::default();
    let controllers = Controllers::wire(&mut hooks);
    let mut watches = Cache::start(&cache, &client, options.initial_list, writers, hooks);

    let listener = crate::serve::listen(options.http_addr).await?;
    let bound = listener.local_addr().map_err(|source| crate::serve::ListenError {
        addr: options.http_addr,
        source,
    })?;
    info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let state = AppState {
        metrics: metrics.clone(),
        cache: cache.clone(),
        standby: standby.clone(),
    };
    let server = tokio::spawn(
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
    );
    // The webhook, on every replica, from the same caches.
    let mut background = Vec::new();
    if let Some(hook) = &options.webhook {
        let serving = Arc::new(crate::serve::ServingCert::default());
        let listener = crate::serve::listen(hook.addr).await.map_err(webhook::Error::Listen)?;
        background.push(tokio::spawn(tls::serve_from_secret(
            client.clone(),
            hook.tls.clone(),
            serving.clone(),
            metrics.clone(),
        )));
        let served = webhook::serve(
            listener,
            cache.clone(),
            metrics.clone(),
            serving,
            hook.client_auth.clone(),
            hook.tenancy.clone(),
            shutdown.clone(),
        );
        background.push(tokio::spawn(async move {
            if let Err(e) = served.await {
                error!(error = %e, "the admission webhook stopped");
            }
        }));
    }
    // The authorization endpoint, on every replica, from the same caches.
    if let Some(endpoints) = &options.authz {
        background.extend(authz::start(endpoints, cache.clone(), metrics.clone(), shutdown.clone()).await?);
    }
    // The tenant API, on every replica: it reads the caches and writes through the API server.
    if let Some(api) = &options.tenant_api {
        let tenancy = options.webhook.as_ref().map(|w| w.tenancy.clone()).unwrap_or_default();
        background.push(
            tenant_api::start(
                api,
                client.clone(),
                cache.clone(),
                metrics.clone(),
                tenancy,
                shutdown.clone(),
            )
            .await?,
        );
    }
    let leader = Leader {
        client: client.clone(),
        cache: cache.clone(),
        options: options.clone(),
        metrics: metrics.clone(),
    };

    let run = async {
        match &options.leader_election {
            None => {
                if synced(&cache, &shutdown).await {
                    leader.lead(controllers, shutdown.clone()).await;
                }
                Ok(())
            }
            Some(election) => run_as_leader(client, controllers, leader, election, standby, shutdown.clone()).await,
        }
    };
    // A watch that stops (a panic) would leave its kind's cache frozen while the webhook, the
    // authorization endpoint and the controllers go on deciding from it: the process exits
    // instead (with an error the kubelet restarts it on), and a fresh start lists again.
    let result = tokio::select! {
        result = run => result,
        (kind, why) = crate::cache::first_stopped(&mut watches) => {
            error!(kind, why, "a watch stopped: exiting, so that a restart lists every kind again");
            Err(Error::WatchStopped { kind, why })
        }
    };
    metrics.leader.set(0);
    for task in watches.into_iter().map(|w| w.task).chain(background) {
        task.abort();
    }
    let _ = server.await;
    result
}

/// The issuance key, read from its Secret, which is created with 32 random bytes when it does
/// not exist yet. Every replica does this at start; of two that create it at once, the second
/// is refused and reads the first one's. The key is never replaced: a new key would stop
/// every issued secret from authenticating.
async fn issuance_key(client: &Client, at: &IssuanceKeySecret) -> Result<IssuanceKey, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &at.namespace);
    let failed = |source| Error::IssuanceKey {
        namespace: at.namespace.clone(),
        name: at.name.clone(),
        source,
    };
    let secret = match secrets.get_opt(&at.name).await.map_err(failed)? {
        Some(secret) => secret,
        None => {
            let mut bytes = vec![0u8; issuance::KEY_BYTES];
            rand::rngs::OsRng
                .try_fill_bytes(&mut bytes)
                .map_err(|e| Error::BadIssuanceKey {
                    namespace: at.namespace.clone(),
                    name: at.name.clone(),
                    why: format!("no random bytes from the operating system: {e}"),
                })?;
            let fresh = Secret {
                metadata: ObjectMeta {
                    name: Some(at.name.clone()),
                    labels: Some(BTreeMap::from([(
                        LABEL_COMPONENT.to_owned(),
                        "issuance-key".to_owned(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(ISSUANCE_KEY.to_owned(), ByteString(bytes))])),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &fresh).await {
                Ok(created) => {
                    info!(secret = %format!("{}/{}", at.namespace, at.name), "created the issuance key; back it up with the tenants' Secrets");
                    created
                }
                Err(kube::Error::Api(status)) if status.code == 409 => secrets.get(&at.name).await.map_err(failed)?,
                Err(e) => return Err(failed(e)),
            }
        }
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(ISSUANCE_KEY))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    IssuanceKey::from_bytes(bytes).map_err(|e| Error::BadIssuanceKey {
        namespace: at.namespace.clone(),
        name: at.name.clone(),
        why: format!("key `{ISSUANCE_KEY}`: {e}"),
    })
}

/// Waits until the caches are synced; false if shutdown comes first.
async fn synced(cache: &Cache, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.clone() => false,
        synced = async { while !cache.wait_synced(Duration::from_secs(60)).await {
            tracing::warn!("caches not synced after 60 s: can the operator list and watch every kind?");
        } true } => synced,
    }
}

/// What only the leader runs: the controllers, and the webhook's certificates.
struct Leader {
    client: Client,
    cache: Arc<Cache>,
    options: Options,
    metrics: Arc<Metrics>,
}

impl Leader {
    async fn lead(self, controllers: Controllers, stop: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
        self.metrics.leader.set(1);
        let stop = stop.boxed().shared();
        let certificates = async {
            if let Some(hook) = self.options.webhook.as_ref().filter(|h| h.tls.managed) {
                tls::manage(self.client.clone(), hook.tls.clone(), stop.clone()).await;
            }
        };
        let controllers = controllers.run(
            self.client.clone(),
            self.cache.clone(),
            self.options.controllers.clone(),
            self.metrics.clone(),
            stop.clone(),
        );
        tokio::join!(controllers, certificates);
    }
}

/// The field manager a replica takes the Lease with. It must be its own: a replica takes a free
/// Lease by a server-side apply without force, and only another manager's ownership of
/// `holderIdentity` makes the API server refuse the second of two replicas that both saw it free.
/// With one manager shared by all replicas, both got the Lease and both led until the next renewal.
pub fn lease_field_manager(identity: &str) -> String {
    format!("{MANAGER}/{identity}")
}

/// A manager of the leader Lease for this replica.
async fn lease_manager(client: &Client, election: &LeaderElection) -> Result<kube_lease_manager::LeaseManager, Error> {
    let duration = election.lease_duration.as_secs().max(2);
    Ok(LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(duration)
        // Renew at half-life: a renewal delayed by a busy API server still lands before expiry
        // (a third, 1 s of a 4 s lease, was seen to lapse under a loaded test run).
        .with_grace((duration / 2).max(1))
        .with_field_manager(lease_field_manager(&election.identity))
        .build()
        .await?)
}

type LeaseEvents = std::pin::Pin<Box<dyn futures::Stream<Item = Result<watcher::Event<Lease>, watcher::Error>> + Send>>;

/// The leader Lease as a watch of it shows it: whether someone holds it.
struct LeaseWatch {
    events: LeaseEvents,
    held: bool,
}

fn held(lease: &Lease) -> bool {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .is_some_and(|holder| !holder.is_empty())
}

impl LeaseWatch {
    /// Starts watching the Lease and reads its present state (given up after 5 s, e.g.
    /// without RBAC to watch Leases: then only the lease manager's own reads take it).
    async fn start(client: &Client, election: &LeaderElection) -> Self {
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &election.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", election.lease_name));
        let mut watch = Self {
            events: Box::pin(watcher(leases, config).default_backoff()),
            held: false,
        };
        let initial = async {
            while let Some(event) = watch.events.next().await {
                match event {
                    Ok(watcher::Event::InitApply(lease)) => watch.held = held(&lease),
                    Ok(watcher::Event::InitDone) => return,
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), initial).await.is_err() {
            warn!(lease = %election.lease_name, "cannot watch the leader Lease: a released lease is taken once it would have expired");
        }
        watch
    }

    /// Resolves when the Lease, held when last seen, has no holder (released, or deleted).
    async fn released(&mut self) {
        while let Some(event) = self.events.next().await {
            let now = match event {
                Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => held(&lease),
                Ok(watcher::Event::Delete(_)) => false,
                _ => continue,
            };
            if std::mem::replace(&mut self.held, now) && !now {
                return;
            }
        }
        std::future::pending().await
    }
}

/// Waits for the lease, leads while holding it, and releases it on shutdown.
async fn run_as_leader(
    client: Client,
    controllers: Controllers,
    leader_tasks: Leader,
    election: &LeaderElection,
    standby: Arc<AtomicBool>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    standby.store(true, Ordering::Relaxed);
    info!(lease = %election.lease_name, identity = %election.identity, "waiting for the leader lease");
    // A standby's lease manager reads the Lease again only when the lease it last saw would
    // expire. A leader that exits releases the Lease, so the standby also watches it, and when
    // it is free starts a new manager, which takes it at once: a rollout's handover takes
    // about a second, not the lease duration.
    let (leader, lease_task, acquired) = loop {
        // The watch first: a release after it has read the Lease is seen; one before, the new
        // manager finds.
        let watching = tokio::select! {
            _ = shutdown.clone() => None,
            watch = LeaseWatch::start(&client, election) => Some(watch),
        };
        let Some(mut watch) = watching else {
            standby.store(false, Ordering::Relaxed);
            return Ok(());
        };
        let (mut leader, lease_task) = lease_manager(&client, election).await?.watch().await;
        // Some(acquired) ends the wait; None: released, take it with a new manager.
        let ended = tokio::select! {
            _ = shutdown.clone() => Some(false),
            acquired = leader.wait_for(|is_leader| *is_leader) => Some(acquired.is_ok()),
            _ = watch.released() => None,
        };
        if let Some(acquired) = ended {
            break (leader, lease_task, acquired);
        }
        drop(leader);
        let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
        info!(lease = %election.lease_name, "the leader released the lease; taking it");
    };
    standby.store(false, Ordering::Relaxed);
    let mut lost = false;
    if acquired && synced(&leader_tasks.cache, &shutdown).await {
        info!("acquired the leader lease; starting controllers");
        let mut watch = leader.clone();
        let lease_lost = async move {
            let _ = watch.wait_for(|is_leader| !*is_leader).await;
        }
        .shared();
        let stop = futures::future::select(shutdown.clone(), lease_lost.clone()).map(drop);
        leader_tasks.lead(controllers, stop).await;
        lost = lease_lost.now_or_never().is_some() && shutdown.clone().now_or_never().is_none();
    }
    // Closing the channel makes the lease task release the lease; a standby sees it free.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the leader lease"),
        Ok(Ok(Err(e))) => error!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => error!(error = %e, "leader election task failed"),
        Err(_) => error!("timed out releasing the leader lease"),
    }
    if lost { Err(Error::LostLease) } else { Ok(()) }
}
