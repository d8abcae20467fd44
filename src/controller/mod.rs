//! The controllers: one module per kind, on one shared client and one set of caches.
//!
//! Every reconciler reads related objects from the controllers' reflector stores (never
//! listing the API server), decides through `crate::model`, and writes only what changed:
//! at rest the operator makes no writes at all.

mod account;
mod organization;
mod role_binding;
mod safelist;
mod secret;
mod stores;
mod user;

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{Future, StreamExt};
use k8s_openapi::{NamespaceResourceScope, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tracing::{Instrument, info, warn};

pub use stores::Stores;

use crate::metrics::Metrics;
use crate::model::{
    conditions::{self, Desired},
    names::{FINALIZER, MANAGER},
};

/// Errors of the controller layer. A reconcile that fails is retried by `error_policy`;
/// invariant violations are not errors (they are conditions).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the OS random generator failed: {0}")]
    Random(#[from] rand::rand_core::OsError),
    #[error("object has no {0}")]
    Missing(&'static str),
    #[error("the caches have not synced yet (can the operator list every kind?)")]
    CachesNotSynced,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every reconciler shares.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

/// What the health endpoints need to know about the controllers.
#[derive(Default)]
pub struct Health {
    stores: std::sync::OnceLock<Stores>,
}

impl Health {
    /// Whether the controllers run and every cache has its initial list.
    pub fn synced(&self) -> bool {
        self.stores.get().is_some_and(Stores::is_synced)
    }

    /// The caches, once the controllers run.
    pub fn stores(&self) -> Option<&Stores> {
        self.stores.get()
    }
}

/// Options of `run`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (all namespaces when None).
    pub namespace: Option<String>,
    /// Concurrent reconciles per controller.
    pub concurrency: u16,
    /// Name of this instance, for events.
    pub instance: Option<String>,
}

/// Debounce of the controllers whose status counts children (organizations, accounts).
/// Trailing-edge: a parent is reconciled once its children have been quiet this long, so it
/// must stay short (a steady stream of changes faster than this would keep delaying it).
const COUNTS_DEBOUNCE: Duration = Duration::from_millis(250);

/// Runs every controller until `shutdown` resolves, then finishes in-flight reconciles.
pub async fn run(
    client: Client,
    options: Options,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let parts = stores::Controllers::new(&client, options.namespace.as_deref());
    let _ = health.stores.set(parts.stores.clone());
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: options.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: parts.stores.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
    });
    info!(
        namespace = options.namespace.as_deref().unwrap_or("<all>"),
        "starting controllers"
    );
    let _ns = options.namespace.as_deref();
    let secrets = tokio::spawn(parts.secrets);
    let config = ControllerConfig::default().concurrency(options.concurrency);
    // Organizations and accounts count their children: while many children change (a bulk
    // import), a short debounce folds a burst of triggers into one reconcile and one write.
    let counting = config.clone().debounce(COUNTS_DEBOUNCE);
    // Each controller on its own task, so that one never waits on the poll of another.
    let tasks = [
        start(parts.organizations, organization::reconcile, &ctx, &counting, &shutdown),
        start(parts.accounts, account::reconcile, &ctx, &counting, &shutdown),
        start(parts.users, user::reconcile, &ctx, &config, &shutdown),
        start(parts.role_bindings, role_binding::reconcile, &ctx, &config, &shutdown),
        start(parts.safelists, safelist::reconcile, &ctx, &config, &shutdown),
    ];
    for task in tasks {
        if let Err(e) = task.await {
            warn!(error = %e, "controller task failed");
        }
    }
    secrets.abort();
    info!("controllers stopped");
}

/// Starts one controller on its own task.
fn start<K, F>(
    controller: Controller<K>,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
    ctx: &Arc<Context>,
    config: &ControllerConfig,
    shutdown: &(impl Future<Output = ()> + Clone + Send + Sync + 'static),
) -> tokio::task::JoinHandle<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    // Every reconcile is counted and timed, per controller (labelled by kind).
    let kind: &'static str = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(kind) => Box::leak(kind.into_boxed_str()),
    };
    // Every reconcile runs in a span naming the object, and only on synced caches.
    let measured = move |obj: Arc<K>, ctx: Arc<Context>| {
        let span = tracing::info_span!(
            "reconcile",
            kind,
            namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
            name = obj.meta().name.as_deref().unwrap_or_default()
        );
        async move {
            let started = std::time::Instant::now();
            let metrics = ctx.metrics.clone();
            let result = match ctx.stores.ready().await {
                Ok(()) => reconcile(obj, ctx).await,
                Err(e) => Err(e),
            };
            metrics.record_reconcile(kind, started.elapsed(), result.is_err());
            result
        }
        .instrument(span)
    };
    let run = controller
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(measured, error_policy, ctx.clone())
        .for_each(log_result);
    tokio::spawn(run)
}

async fn log_result<T: Debug, E: std::fmt::Display>(result: std::result::Result<T, E>) {
    if let Err(e) = result {
        // Includes "object not found" after deletion, which is expected and harmless.
        tracing::debug!(error = %e, "reconcile request not processed");
    }
}

/// Retries a failed reconcile after a pause; the failure is logged with the object.
fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(
        kind = %K::kind(&()),
        namespace = obj.meta().namespace.as_deref().unwrap_or(""),
        name = obj.meta().name.as_deref().unwrap_or(""),
        %error,
        "reconcile failed; retrying in 5s"
    );
    Action::requeue(Duration::from_secs(5))
}

/// An Api for objects of `K` in the namespace of `obj`.
fn api_for<K, O>(client: &Client, obj: &O) -> Result<Api<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    O: Resource,
{
    let ns = obj.meta().namespace.as_deref().ok_or(Error::Missing("namespace"))?;
    Ok(Api::namespaced(client.clone(), ns))
}

/// Parameters of every create and replace: the operator's field manager.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Now, to the second: the API server keeps timestamps to the second, and so must anything
/// compared with what it returns.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp")
}

/// Writes `status` with server-side apply, but only if it differs from what the object
/// reports: at rest the operator makes no writes.
async fn write_status<K, S>(client: &Client, obj: &K, current: Option<&S>, status: &S) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let api: Api<K> = api_for(client, obj)?;
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// Publishes an event about `obj`, in the background: events are the activity log, not the
/// reconcile's critical path, and failing to write one must not fail the reconcile (the
/// error is logged).
async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: String) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    let (recorder, reference, reason) = (ctx.recorder.clone(), obj.object_ref(&()), reason.to_owned());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(reason, error = %e, "could not publish event");
        }
    });
}

/// A Warning event for every condition that has newly failed (announced once per
/// occurrence, not on every reconcile).
async fn warn_new_failures<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    desired: &[Desired],
) {
    for d in desired {
        if conditions::is_new_failure(previous, d) {
            publish(ctx, obj, EventType::Warning, &d.reason, d.message.clone()).await;
        }
    }
}

/// Adds the children finalizer if the object lacks it.
async fn ensure_finalizer<K>(client: &Client, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let api: Api<K> = api_for(client, obj)?;
    // A JSON patch guarded by the resourceVersion, so a concurrent change is not lost.
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Removes the children finalizer, letting the deletion complete.
async fn remove_finalizer<K>(client: &Client, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let finalizers: Vec<&String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    if finalizers.len() == obj.finalizers().len() {
        return Ok(());
    }
    let api: Api<K> = api_for(client, obj)?;
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    match api
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop).map_err(Error::from),
    }
}

/// Deletes objects (children of a cascading deletion); ones already gone are fine.
async fn delete_all<K>(client: &Client, objects: &[Arc<K>]) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    for obj in objects.iter().filter(|o| o.meta().deletion_timestamp.is_none()) {
        let api: Api<K> = api_for(client, obj.as_ref())?;
        match api.delete(&obj.name_any(), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// "a, b, c and 4 more": a short list of names for a condition message.
fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let names: Vec<&str> = names.into_iter().collect();
    let mut text = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// The controller ownerReference of an object the operator generates for `owner`. It
/// blocks the owner's foreground deletion until the object is gone, as the garbage
/// collector expects of controlled objects.
fn controller_owner<K: Resource<DynamicType = ()>>(
    owner: &K,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let mut reference = owner.controller_owner_ref(&()).ok_or(Error::Missing("uid"))?;
    reference.block_owner_deletion = Some(true);
    Ok(reference)
}
