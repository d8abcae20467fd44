//! The watch pipeline of each kind: strip what no decision reads, update the store, settle
//! expectations, update the indexes, then run the hooks, in that order.
//!
//! A re-list (after a watch was lost) is applied as one swap, then the hooks run for what
//! changed meanwhile, including objects deleted while the watch was down.

use std::{collections::HashSet, sync::Arc};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, store::Writer},
        watcher::{self, Event},
    },
};
use tracing::warn;

use super::{Cache, Cached, Change, Hook, Hooks, SecretEntry};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
    model::names::{LABEL_MANAGED_BY, MANAGER},
};

/// The write halves of the caches, consumed by the watches.
pub struct Writers {
    pub(super) organizations: Writer<Organization>,
    pub(super) accounts: Writer<Account>,
    pub(super) users: Writer<CEUser>,
    pub(super) role_bindings: Writer<RoleBinding>,
    pub(super) safelists: Writer<ElementSafelist>,
    pub(super) secrets: Writer<SecretEntry>,
    pub(super) namespaces: Writer<PartialObjectMeta<Namespace>>,
}

/// The writer of kind `K` among the writers.
pub trait WriterOf<K: Cached> {
    fn writer_of(&mut self) -> &mut Writer<K>;
}

macro_rules! writer_of {
    ($($kind:ty => $field:ident),*) => {$(
        impl WriterOf<$kind> for Writers {
            fn writer_of(&mut self) -> &mut Writer<$kind> {
                &mut self.$field
            }
        }
    )*};
}

writer_of!(
    Organization => organizations,
    Account => accounts,
    CEUser => users,
    RoleBinding => role_bindings,
    ElementSafelist => safelists,
    SecretEntry => secrets,
    PartialObjectMeta<Namespace> => namespaces
);

/// Annotation that `kubectl apply` (client-side) fills with the whole object: no decision
/// reads it, and at scale it is most of an object's memory.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no decision reads before an object enters the caches.
fn strip<K: Resource>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    obj
}

/// A re-list in progress: what the store held when it began, and what it lists.
struct Relist<K: Cached> {
    before: Vec<Arc<K>>,
    seen: HashSet<ObjectRef<K>>,
    changed: Vec<(ObjectRef<K>, Option<Arc<K>>)>,
}

struct Pipeline<K: Cached> {
    hooks: Vec<Hook<K>>,
    relist: Option<Relist<K>>,
}

impl<K: Cached> Pipeline<K> {
    fn handle(&mut self, cache: &Cache, writer: &mut Writer<K>, event: Event<K>) {
        let kind = K::slot(cache);
        match event {
            Event::Apply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key);
                let same = old
                    .as_ref()
                    .is_some_and(|o| o.meta().resource_version == obj.meta().resource_version);
                writer.apply_watcher_event(&Event::Apply(obj));
                let new = kind.store.get(&key);
                kind.settle(&key, new.as_deref());
                if !same {
                    self.run(cache, &Change { old, new });
                }
            }
            Event::Delete(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key).or_else(|| Some(Arc::new(obj.clone())));
                writer.apply_watcher_event(&Event::Delete(obj));
                kind.settle(&key, None);
                self.run(cache, &Change { old, new: None });
            }
            Event::Init => {
                self.relist = Some(Relist {
                    before: kind.store.state(),
                    seen: HashSet::new(),
                    changed: Vec::new(),
                });
                writer.apply_watcher_event(&Event::Init);
            }
            Event::InitApply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key);
                if let Some(relist) = self.relist.as_mut() {
                    relist.seen.insert(key.clone());
                    if old.as_ref().map(|o| o.meta().resource_version.clone())
                        != Some(obj.meta().resource_version.clone())
                    {
                        relist.changed.push((key, old));
                    }
                }
                writer.apply_watcher_event(&Event::InitApply(obj));
            }
            Event::InitDone => {
                writer.apply_watcher_event(&Event::InitDone);
                if let Some(relist) = self.relist.take() {
                    for (key, old) in relist.changed {
                        let new = kind.store.get(&key);
                        kind.settle(&key, new.as_deref());
                        self.run(cache, &Change { old, new });
                    }
                    for gone in relist.before {
                        let key = ObjectRef::from_obj(gone.as_ref());
                        if !relist.seen.contains(&key) {
                            kind.settle(&key, None);
                            self.run(
                                cache,
                                &Change {
                                    old: Some(gone),
                                    new: None,
                                },
                            );
                        }
                    }
                }
                cache.mark_synced(K::WATCHED);
            }
        }
    }

    fn run(&self, cache: &Cache, change: &Change<K>) {
        K::index(cache, change);
        for hook in &self.hooks {
            hook(cache, change);
        }
    }
}

/// Applies one object to a cache as an Apply event would (`Snapshot`).
pub fn apply_one<K: Cached>(cache: &Cache, writers: &mut Writers, obj: K)
where
    Writers: WriterOf<K>,
{
    let mut pipeline = Pipeline::<K> {
        hooks: Vec::new(),
        relist: None,
    };
    pipeline.handle(cache, writers.writer_of(), Event::Apply(strip(obj)));
    cache.mark_synced(K::WATCHED);
}

fn map_event<S, K>(event: Event<S>, f: impl Fn(S) -> K) -> Event<K> {
    match event {
        Event::Apply(obj) => Event::Apply(f(obj)),
        Event::Delete(obj) => Event::Delete(f(obj)),
        Event::Init => Event::Init,
        Event::InitApply(obj) => Event::InitApply(f(obj)),
        Event::InitDone => Event::InitDone,
    }
}

/// Runs one watch until the process ends: errors are logged and retried with backoff.
fn spawn<K, S>(
    cache: &Arc<Cache>,
    source: impl Stream<Item = Result<Event<S>, watcher::Error>> + Send + 'static,
    convert: fn(S) -> K,
    mut writer: Writer<K>,
    hooks: Vec<Hook<K>>,
) -> tokio::task::JoinHandle<()>
where
    K: Cached,
    S: Send + 'static,
{
    let cache = cache.clone();
    let mut pipeline = Pipeline { hooks, relist: None };
    tokio::spawn(async move {
        let mut events = std::pin::pin!(source.default_backoff().map_ok(|event| map_event(event, convert)));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => pipeline.handle(&cache, &mut writer, event),
                Err(e) => warn!(kind = %<K as Resource>::kind(&()), error = %e, "watch failed; retrying"),
            }
        }
    })
}

fn api<K>(client: &Client, scope: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts every watch.
pub fn spawn_all(
    cache: &Arc<Cache>,
    client: &Client,
    writers: Writers,
    mut hooks: Hooks,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scope = cache.scope.clone();
    let scope = scope.as_deref();
    let config = || watcher::Config::default().any_semantic();
    let secrets = config().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let namespaces = match scope {
        Some(ns) => config().fields(&format!("metadata.name={ns}")),
        None => config(),
    };
    vec![
        spawn(
            cache,
            watcher(api::<Organization>(client, scope), config()),
            strip,
            writers.organizations,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(api::<Account>(client, scope), config()),
            strip,
            writers.accounts,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(api::<CEUser>(client, scope), config()),
            strip,
            writers.users,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(api::<RoleBinding>(client, scope), config()),
            strip,
            writers.role_bindings,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(api::<ElementSafelist>(client, scope), config()),
            strip,
            writers.safelists,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(api::<Secret>(client, scope), secrets),
            SecretEntry::of,
            writers.secrets,
            hooks.take(),
        ),
        spawn(
            cache,
            watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), namespaces),
            strip,
            writers.namespaces,
            hooks.take(),
        ),
    ]
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, config)
}
