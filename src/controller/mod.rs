//! The controllers: one module per kind, each a reconcile that reads like its outline —
//! resolve (from the caches) → `model::<kind>::decide` (pure) → act (I/O) → write status if
//! changed — and the relations that wake it. They run only on the leader; the caches they
//! read run on every replica.

mod account;
pub mod act;
mod backoff;
mod corrections;
pub mod error;
mod events;
mod organization;
pub mod relations;
mod role_binding;
mod safelist;
mod secret;
mod user;
mod write;

pub use secret::generate as generate_secret;

use std::{
    collections::HashSet,
    fmt::Debug,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Client, Resource,
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        reflector::ObjectRef,
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, warn};

use crate::{
    api::HasStatus,
    cache::{Cache, Cached, Hooks},
    metrics::{BackoffLabels, ErrorLabels, Metrics},
    model::names::MANAGER,
};
pub use error::{Error, Result};
use relations::{Wired, Wiring};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub cache: Arc<Cache>,
    pub events: events::Events,
    pub metrics: Arc<Metrics>,
    backoff: backoff::Backoff,
    /// Corrections of what someone else wrote, spaced out when they repeat.
    corrections: corrections::Corrections,
    /// Namespaces being deleted that were already logged (one line per namespace).
    terminating_namespaces: Mutex<HashSet<String>>,
}

/// A kind the operator reconciles.
pub trait Reconciler:
    Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope> + HasStatus + DeserializeOwned + serde::Serialize + Debug
{
    /// Trailing debounce of this controller's requests: folds a burst of wakes (accounts
    /// created together) into one reconcile and one write. Counts of a steady stream of
    /// children are throttled instead (`Wiring::on_count`), which does not starve.
    const DEBOUNCE: Option<Duration> = None;

    /// Declares which changes wake which objects of this kind.
    fn relations(wiring: &mut Wiring<'_, Self>);

    /// resolve → decide → act.
    fn reconcile(obj: Arc<Self>, ctx: Arc<Context>) -> impl Future<Output = Result<Action>> + Send + 'static;
}

/// Debounce of the organization controller (its accounts' changes come in bursts).
/// Trailing-edge, so it must stay short: a steady stream of changes faster than this would
/// keep delaying it.
const BURST_DEBOUNCE: Duration = Duration::from_millis(250);

/// Options of the controllers.
#[derive(Clone, Debug)]
pub struct Options {
    /// Concurrent reconciles per controller.
    pub concurrency: u16,
    /// How often every object is reconciled again, woken or not (`None`: never).
    pub resync: Option<Duration>,
    /// Name of this instance, for events.
    pub instance: Option<String>,
}

macro_rules! controllers {
    ($($kind:ident => $field:ident,)*) => {
        /// The controllers, one per kind of the registry, wired to the caches (their relations
        /// registered as cache hooks) but not running: a standby keeps them like this.
        pub struct Controllers {
            $($field: Wired<crate::api::$kind>,)*
        }

        impl Controllers {
            /// Registers every controller's relations.
            pub fn wire(hooks: &mut Hooks) -> Self {
                Self {
                    $($field: relations::wire(hooks),)*
                }
            }

            /// Runs every controller until `shutdown` resolves, then finishes in-flight
            /// reconciles. The caches must be synced: decisions are never made on a cache
            /// that is still filling.
            pub async fn run(
                self,
                client: Client,
                cache: Arc<Cache>,
                options: Options,
                metrics: Arc<Metrics>,
                shutdown: impl Future<Output = ()> + Send + Sync + 'static,
            ) {
                let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
                let ctx = Arc::new(Context::new(client, cache, &options, metrics));
                ctx.cache.note_foreign_statuses();
                info!(namespace = ctx.cache.scope().unwrap_or("<all>"), "starting controllers");
                let config = ControllerConfig::default().concurrency(options.concurrency);
                // Each controller on its own task, so that one never waits on the poll of another.
                let tasks = [$(start(self.$field, &ctx, &config, options.resync, &shutdown),)*];
                for task in tasks {
                    if let Err(e) = task.await {
                        warn!(error = %e, "controller task failed");
                    }
                }
                info!("controllers stopped");
            }
        }
    };
}
crate::kinds::for_each_kind!(controllers);

impl Context {
    pub fn new(client: Client, cache: Arc<Cache>, options: &Options, metrics: Arc<Metrics>) -> Self {
        Self {
            client: client.clone(),
            cache,
            events: events::Events::new(client, MANAGER, options.instance.as_deref()),
            metrics,
            backoff: backoff::Backoff::default(),
            corrections: corrections::Corrections::default(),
            terminating_namespaces: Mutex::default(),
        }
    }
}

/// Starts one controller on its own task: its requests come from its relations (and a first
/// pass over everything cached); its own watch is the shared cache's.
fn start<K: Reconciler>(
    wired: Wired<K>,
    ctx: &Arc<Context>,
    config: &ControllerConfig,
    resync: Option<Duration>,
    shutdown: &(impl Future<Output = ()> + Clone + Send + Sync + 'static),
) -> tokio::task::JoinHandle<()> {
    let kind = act::kind_of::<K>();
    wired.activate();
    wired.trigger.send(relations::refs(ctx.cache.all::<K>()));
    if let Some(period) = resync {
        // Ends with the process; a standby never gets here.
        let (trigger, cache) = (wired.trigger.clone(), ctx.cache.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                trigger.send(relations::refs(cache.all::<K>()));
            }
        });
    }
    let config = match K::DEBOUNCE {
        Some(debounce) => config.clone().debounce(debounce),
        None => config.clone(),
    };
    // Every reconcile is counted and timed, runs in a span naming the object, and resets the
    // object's backoff when it succeeds.
    let measured = move |obj: Arc<K>, ctx: Arc<Context>| {
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let span = tracing::info_span!("reconcile", kind, namespace = %namespace, name = %name);
        async move {
            let started = std::time::Instant::now();
            let result = K::reconcile(ctx.cache.with_own_status(obj), ctx.clone()).await;
            ctx.metrics.record_reconcile(kind, started.elapsed());
            if result.is_ok() {
                ctx.backoff.succeeded(kind, format!("{namespace}/{name}"));
                set_backoff_gauge(&ctx, kind);
            }
            result
        }
        .instrument(span)
    };
    // The unstable `for_stream` (with an empty stream: the shared cache is the watch) and
    // `reconcile_on` (the relations' requests) are what let several controllers and the
    // webhook share one watch per kind, and trigger only after the cache is updated. They are
    // exempt from semver: kube is pinned to ~5.0 for them.
    let run = Controller::for_stream(
        futures::stream::pending::<Result<K, watcher::Error>>(),
        ctx.cache.store::<K>(),
    )
    .reconcile_on(wired.requests)
    .with_config(config)
    .graceful_shutdown_on(shutdown.clone())
    .run(measured, error_policy, ctx.clone())
    .for_each(|result| async move {
        if let Err(e) = result {
            // Includes "object not found" after deletion, which is expected and harmless.
            tracing::debug!(error = %e, "reconcile request not processed");
        }
    });
    tokio::spawn(run)
}

fn set_backoff_gauge(ctx: &Context, controller: &'static str) {
    let waiting = ctx.backoff.waiting(controller);
    ctx.metrics
        .objects_in_backoff
        .get_or_create(&BackoffLabels { controller })
        .set(i64::try_from(waiting).unwrap_or(i64::MAX));
}

/// Retries a failed reconcile after the object's backoff; the failure is logged with the
/// object and the step.
fn error_policy<K: Reconciler>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = act::kind_of::<K>();
    let object = ObjectRef::from_obj(obj.as_ref());
    let wait = ctx.backoff.failed(
        kind,
        format!("{}/{}", object.namespace.unwrap_or_default(), object.name),
    );
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            controller: kind,
            step: error.metric_label(),
        })
        .inc();
    set_backoff_gauge(&ctx, kind);
    warn!(%error, step = error.metric_label(), retry_in_ms = wait.as_millis() as u64, "reconcile failed");
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    //! What each reconcile reads has a relation that wakes it.

    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        api::Role,
        cache::{Watched, testing::TestCache},
        model::fixtures::*,
    };
    use crate::{
        api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
        cache::resolve::{ResolvedBinding, ResolvedSafelist},
    };

    /// A namespace with one object of every kind, related to each other.
    fn populated() -> TestCache {
        let mut t = TestCache::new(None);
        let acme = org_with(
            "acme",
            serde_json::json!({"displayName": "A", "owner": {"email": "o@a.example"}, "superOrganizationRef": {"namespace": "partners", "name": "big"}}),
        );
        t.apply([acme, in_namespace(super_org("big", &["tenants"], &["box"]), "partners")]);
        t.apply([account("hq", "acme", true)]);
        t.apply([
            user("jane", "hq", "j@a.example"),
            user("acme-owner", "hq", "o@a.example"),
        ]);
        t.apply([binding("jane-oa", "jane", Role::OrgAdmin, false)]);
        t.apply([safelist("acme", "acme", &["box"])]);
        t
    }

    fn check<K: Reconciler>(reads: BTreeSet<Watched>) {
        let mut hooks = Hooks::default();
        let wired = relations::wire::<K>(&mut hooks);
        let missing: Vec<_> = reads.difference(&wired.sources).collect();
        assert!(
            missing.is_empty(),
            "{} reads {missing:?} but no relation wakes it on their changes",
            act::kind_of::<K>()
        );
    }

    #[test]
    fn every_kind_read_by_a_reconcile_has_a_relation() {
        let t = populated();
        let cache = &t.cache;
        let org = cache.organization("tenants", "acme").unwrap();
        let big = cache.organization("partners", "big").unwrap();
        for org in [org, big] {
            let (_, reads) = cache.recording_reads(|| organization::resolve(cache, &org));
            check::<Organization>(reads);
        }
        let account = cache.account("tenants", "hq").unwrap();
        check::<Account>(cache.recording_reads(|| account::resolve(cache, &account)).1);
        let user = cache.user("tenants", "jane").unwrap();
        check::<CEUser>(cache.recording_reads(|| user::resolve(cache, &user)).1);
        let binding = cache.get::<RoleBinding>("tenants", "jane-oa").unwrap();
        check::<RoleBinding>(cache.recording_reads(|| ResolvedBinding::of(cache, &binding)).1);
        let list = cache.get::<ElementSafelist>("tenants", "acme").unwrap();
        check::<ElementSafelist>(cache.recording_reads(|| ResolvedSafelist::of(cache, &list)).1);
    }
}
