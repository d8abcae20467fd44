//! The watch pipeline of each kind: strip what no decision reads, update the store, settle
//! expectations, update the indexes, then run the hooks, in that order.
//!
//! A re-list (after a watch was lost) is applied as one swap, then the hooks run for what
//! changed meanwhile, including objects deleted while the watch was down.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, Resource,
    core::{ObjectMeta, PartialObjectMeta},
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, store::Writer},
        watcher::{self, Event},
    },
};
use serde::{
    Deserialize,
    de::{DeserializeOwned, Error as _},
};
use tracing::warn;

use super::{Cache, Cached, Change, Hook, Hooks, InitialList, SecretEntry};
use crate::model::names::{LABEL_MANAGED_BY, MANAGER};

macro_rules! writers {
    ($($kind:ident => $field:ident,)*) => {
        /// The write halves of the caches, consumed by the watches.
        pub struct Writers {
            $(pub(super) $field: Writer<crate::api::$kind>,)*
            pub(super) secrets: Writer<SecretEntry>,
            pub(super) namespaces: Writer<PartialObjectMeta<Namespace>>,
        }

        $(impl WriterOf<crate::api::$kind> for Writers {
            fn writer_of(&mut self) -> &mut Writer<crate::api::$kind> {
                &mut self.$field
            }
        })*

        /// One watch per kind: the registry's kinds read leniently (`Malformed`), the
        /// operator's Secrets and the namespaces in scope.
        pub fn spawn_all(
            cache: &Arc<Cache>,
            client: &Client,
            initial: InitialList,
            writers: Writers,
            mut hooks: Hooks,
        ) -> Vec<Watch> {
            let scope = cache.scope.clone();
            let scope = scope.as_deref();
            let config = || match initial {
                InitialList::Stream => watcher::Config::default().streaming_lists(),
                InitialList::List => watcher::Config::default().any_semantic(),
            };
            let Writers { $($field,)* secrets, namespaces } = writers;
            let secrets_config = config().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
            let namespaces_config = match scope {
                Some(ns) => config().fields(&format!("metadata.name={ns}")),
                None => config(),
            };
            vec![
                $(spawn(
                    cache,
                    watcher::watcher(scoped::<Lenient<crate::api::$kind>>(client, scope), config()),
                    parse,
                    $field,
                    hooks.take(),
                ),)*
                spawn(
                    cache,
                    watcher::watcher(scoped::<Secret>(client, scope), secrets_config),
                    |secret| Ok(SecretEntry::of(secret)),
                    secrets,
                    hooks.take(),
                ),
                spawn(
                    cache,
                    watcher::watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), namespaces_config),
                    |namespace| Ok(strip(namespace)),
                    namespaces,
                    hooks.take(),
                ),
            ]
        }
    };
}
crate::kinds::for_each_kind!(writers);

/// The writer of kind `K` among the writers.
pub trait WriterOf<K: Cached> {
    fn writer_of(&mut self) -> &mut Writer<K>;
}

impl WriterOf<SecretEntry> for Writers {
    fn writer_of(&mut self) -> &mut Writer<SecretEntry> {
        &mut self.secrets
    }
}

impl WriterOf<PartialObjectMeta<Namespace>> for Writers {
    fn writer_of(&mut self) -> &mut Writer<PartialObjectMeta<Namespace>> {
        &mut self.namespaces
    }
}

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

/// An object the API server holds that the Rust types cannot read: stored before a schema
/// was tightened, or written around validation. It is kept out of the caches (as if absent:
/// it authenticates nobody and counts for nothing), logged once per version, and counted in
/// `ce_operator_malformed_objects`; the watch and every other object go on.
pub struct Malformed<K: Resource<DynamicType = ()>> {
    key: ObjectRef<K>,
    resource_version: Option<String>,
    error: String,
}

/// A watched tenancy object, read as its type; or, when the types cannot read it, its
/// metadata and why: one object the types cannot read fails neither the whole list (which
/// would keep the caches from ever syncing) nor the watch.
#[derive(Clone, Debug)]
enum Lenient<K> {
    Read(K),
    Unreadable { metadata: Box<ObjectMeta>, error: String },
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read from the JSON tree by reference, so that it is still there to take the
        // metadata from when the object cannot be read. The managed fields (up to half of an
        // object's JSON) would only be copied to be dropped (`strip`).
        let mut json = serde_json::Value::deserialize(deserializer)?;
        if let Some(metadata) = json.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            metadata.remove("managedFields");
        }
        Ok(match K::deserialize(&json) {
            Ok(obj) => Lenient::Read(obj),
            Err(error) => Lenient::Unreadable {
                metadata: Box::new(ObjectMeta::deserialize(&json["metadata"]).map_err(D::Error::custom)?),
                error: error.to_string(),
            },
        })
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Read(obj) => obj.meta(),
            Lenient::Unreadable { metadata, .. } => metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Read(obj) => obj.meta_mut(),
            Lenient::Unreadable { metadata, .. } => metadata,
        }
    }
}

/// Reads a watched object as `K`, or says why it cannot.
fn parse<K: Cached>(obj: Lenient<K>) -> Result<K, Box<Malformed<K>>> {
    match obj {
        Lenient::Read(obj) => Ok(strip(obj)),
        Lenient::Unreadable { metadata, error } => {
            let mut key = ObjectRef::new(metadata.name.as_deref().unwrap_or_default());
            if let Some(ns) = metadata.namespace.as_deref() {
                key = key.within(ns);
            }
            Err(Box::new(Malformed {
                key,
                resource_version: metadata.resource_version,
                error,
            }))
        }
    }
}

/// A re-list in progress: what the store held when it began, and what it lists.
struct Relist<K: Cached> {
    before: Vec<Arc<K>>,
    /// What this process had written and the store did not show yet when the relist began.
    expected_before: Vec<Arc<K>>,
    seen: HashSet<ObjectRef<K>>,
    changed: Vec<(ObjectRef<K>, Option<Arc<K>>)>,
    malformed_seen: HashSet<ObjectRef<K>>,
}

struct Pipeline<K: Cached> {
    hooks: Vec<Hook<K>>,
    relist: Option<Relist<K>>,
    /// The malformed objects, with the version last logged.
    malformed: HashMap<ObjectRef<K>, Option<String>>,
}

impl<K: Cached> Pipeline<K> {
    fn new(hooks: Vec<Hook<K>>) -> Self {
        Self {
            hooks,
            relist: None,
            malformed: HashMap::new(),
        }
    }

    /// Handles one watch event whose object may not be readable as `K`.
    fn receive<S>(&mut self, cache: &Cache, writer: &mut Writer<K>, event: Event<S>, parse: Parse<S, K>) {
        let event = match event {
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
            Event::Apply(obj) => match parse(obj) {
                Ok(obj) => self.readable(Event::Apply(obj)),
                // A readable object that became unreadable leaves the cache.
                Err(bad) => match self.malformed(cache, *bad, false) {
                    Some(old) => Event::Delete(old),
                    None => return,
                },
            },
            Event::InitApply(obj) => match parse(obj) {
                Ok(obj) => self.readable(Event::InitApply(obj)),
                Err(bad) => {
                    self.malformed(cache, *bad, false);
                    return;
                }
            },
            Event::Delete(obj) => match parse(obj) {
                Ok(obj) => self.readable(Event::Delete(obj)),
                Err(bad) => match self.malformed(cache, *bad, true) {
                    Some(old) => Event::Delete(old),
                    None => return,
                },
            },
        };
        self.handle(cache, writer, event);
        K::slot(cache).malformed.store(self.malformed.len(), Ordering::Relaxed);
    }

    /// An object read (or deleted) as `K` is no longer malformed.
    fn readable(&mut self, event: Event<K>) -> Event<K> {
        if let Event::Apply(obj) | Event::InitApply(obj) | Event::Delete(obj) = &event {
            self.malformed.remove(&ObjectRef::from_obj(obj));
        }
        event
    }

    /// Records (or, when `gone`, forgets) a malformed object; returns the readable version the
    /// cache still holds of it, if any.
    fn malformed(&mut self, cache: &Cache, bad: Malformed<K>, gone: bool) -> Option<K> {
        let Malformed {
            key,
            resource_version,
            error,
        } = bad;
        if gone {
            self.malformed.remove(&key);
        } else {
            if let Some(relist) = self.relist.as_mut() {
                relist.malformed_seen.insert(key.clone());
            }
            if self.malformed.get(&key) != Some(&resource_version) {
                warn!(
                    kind = %<K as Resource>::kind(&()),
                    namespace = key.namespace.as_deref().unwrap_or_default(),
                    name = %key.name,
                    error = %error,
                    "object cannot be read by this operator version; ignored until it is fixed or deleted"
                );
            }
            self.malformed.insert(key.clone(), resource_version);
        }
        K::slot(cache).malformed.store(self.malformed.len(), Ordering::Relaxed);
        K::slot(cache).store.get(&key).map(|old| (*old).clone())
    }

    fn handle(&mut self, cache: &Cache, writer: &mut Writer<K>, event: Event<K>) {
        let kind = K::slot(cache);
        match event {
            Event::Apply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key);
                let same = old
                    .as_ref()
                    .is_some_and(|o| o.meta().resource_version == obj.meta().resource_version);
                let at = obj.meta().resource_version.clone();
                let obj = Arc::new(obj);
                if !same {
                    K::index_ahead(cache, &obj);
                }
                writer.apply_watcher_event(&Event::Apply(Arc::unwrap_or_clone(obj)));
                let new = kind.store.get(&key);
                kind.settle(&key, new.as_deref(), at.as_deref());
                if !same {
                    self.run(cache, &Change { old, new });
                }
            }
            Event::Delete(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key).or_else(|| Some(Arc::new(obj.clone())));
                let at = obj.meta().resource_version.clone();
                writer.apply_watcher_event(&Event::Delete(obj));
                kind.settle(&key, None, at.as_deref());
                self.run(cache, &Change { old, new: None });
            }
            Event::Init => {
                kind.relisting();
                self.relist = Some(Relist {
                    before: kind.store.state(),
                    expected_before: kind.expectations(),
                    seen: HashSet::new(),
                    changed: Vec::new(),
                    malformed_seen: HashSet::new(),
                });
                writer.apply_watcher_event(&Event::Init);
            }
            Event::InitApply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = kind.store.get(&key);
                let obj = Arc::new(obj);
                if let Some(relist) = self.relist.as_mut() {
                    relist.seen.insert(key.clone());
                    if old.as_ref().map(|o| o.meta().resource_version.clone())
                        != Some(obj.meta().resource_version.clone())
                    {
                        K::index_ahead(cache, &obj);
                        relist.changed.push((key, old));
                    }
                }
                writer.apply_watcher_event(&Event::InitApply(Arc::unwrap_or_clone(obj)));
            }
            Event::InitDone => {
                writer.apply_watcher_event(&Event::InitDone);
                if let Some(relist) = self.relist.take() {
                    // Malformed objects deleted while the watch was down.
                    self.malformed.retain(|key, _| relist.malformed_seen.contains(key));
                    for (key, old) in relist.changed {
                        let new = kind.store.get(&key);
                        kind.settle(&key, new.as_deref(), None);
                        self.run(cache, &Change { old, new });
                    }
                    // Written before the relist and not in it: gone since (deleted, or taken
                    // back by an etcd restore while its echo was on the way). An expectation
                    // kept would stand for the object for ever, and it would never be made again.
                    for written in relist.expected_before {
                        let key = ObjectRef::from_obj(written.as_ref());
                        if !relist.seen.contains(&key) && kind.forget(&key, &written) {
                            self.run(
                                cache,
                                &Change {
                                    old: Some(written),
                                    new: None,
                                },
                            );
                        }
                    }
                    for gone in relist.before {
                        let key = ObjectRef::from_obj(gone.as_ref());
                        if !relist.seen.contains(&key) {
                            kind.settle(&key, None, None);
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
        cache.advance_epoch();
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
    let mut pipeline = Pipeline::<K>::new(Vec::new());
    pipeline.handle(cache, writers.writer_of(), Event::Apply(strip(obj)));
    cache.mark_synced(K::WATCHED);
}

/// How a watched object becomes a cached one.
type Parse<S, K> = fn(S) -> Result<K, Box<Malformed<K>>>;

/// A running watch: its kind, and its task, which ends only if it panics (its stream
/// retries every error with backoff for ever).
pub struct Watch {
    pub kind: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// Waits until one of `watches` stops, and says which and why; never resolves otherwise
/// (nor when there are none). A stopped watch leaves its kind's cache frozen while
/// decisions go on from it: the caller must not go on.
pub async fn first_stopped(watches: &mut [Watch]) -> (String, String) {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let (ended, index, _) = futures::future::select_all(watches.iter_mut().map(|w| &mut w.task)).await;
    let why = match ended {
        Ok(()) => "its event stream ended".to_owned(),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            format!("it panicked: {text}")
        }
        Err(e) => format!("it was cancelled: {e}"),
    };
    (watches[index].kind.clone(), why)
}

/// Runs one watch until the process ends: errors are logged and retried with backoff.
fn spawn<K, S>(
    cache: &Arc<Cache>,
    source: impl Stream<Item = Result<Event<S>, watcher::Error>> + Send + 'static,
    parse: Parse<S, K>,
    mut writer: Writer<K>,
    hooks: Vec<Hook<K>>,
) -> Watch
where
    K: Cached,
    S: Send + 'static,
{
    let cache = cache.clone();
    let mut pipeline = Pipeline::new(hooks);
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(source.default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => pipeline.receive(&cache, &mut writer, event, parse),
                Err(e) => warn!(kind = %<K as Resource>::kind(&()), error = %e, "watch failed; retrying"),
            }
        }
    });
    Watch {
        kind: <K as Resource>::kind(&()).into_owned(),
        task,
    }
}

fn scoped<K>(client: &Client, scope: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CEUser;
    use crate::cache::index::key;

    #[tokio::test]
    async fn a_panicked_watch_is_told_with_its_kind_and_why() {
        let running = || Watch {
            kind: "Account".into(),
            task: tokio::spawn(std::future::pending()),
        };
        let panicking = Watch {
            kind: "CEUser".into(),
            task: tokio::spawn(async { panic!("a hook broke") }),
        };
        let mut watches = vec![running(), panicking, running()];
        let (kind, why) = first_stopped(&mut watches).await;
        assert_eq!(kind, "CEUser");
        assert!(why.contains("panicked: a hook broke"), "{why}");
        // Watches that run are never reported.
        let mut healthy = vec![running()];
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), first_stopped(&mut healthy)).await;
        assert!(waited.is_err());
    }

    fn user_json(resource_version: &str, email: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "ce.tenancy.io/v1alpha1",
            "kind": "CEUser",
            "metadata": {"name": "jane", "namespace": "t", "resourceVersion": resource_version},
            "spec": {"accountRef": {"name": "hq"}, "email": email},
        })
    }

    fn user(resource_version: &str, email: serde_json::Value) -> Lenient<CEUser> {
        serde_json::from_str(&user_json(resource_version, email).to_string()).unwrap()
    }

    /// The watcher decodes lists and watch events with kube's own types: an unreadable item
    /// must reach `parse` as such through both, without failing its list or event.
    #[test]
    fn an_unreadable_object_is_read_as_such_in_a_list_and_in_a_watch_event() {
        let list = serde_json::json!({
            "apiVersion": "ce.tenancy.io/v1alpha1",
            "kind": "CEUserList",
            "metadata": {"resourceVersion": "7"},
            "items": [user_json("5", "jane@acme.example".into()), user_json("6", 42.into())],
        });
        let list: kube::core::ObjectList<Lenient<CEUser>> =
            serde_json::from_slice(list.to_string().as_bytes()).unwrap();
        let read: Vec<_> = list.items.into_iter().map(parse::<CEUser>).collect();
        assert!(read[0].as_ref().is_ok_and(|u| u.spec.email == "jane@acme.example"));
        let bad = read[1].as_ref().unwrap_err();
        assert_eq!(
            (bad.key.name.as_str(), bad.resource_version.as_deref()),
            ("jane", Some("6"))
        );
        assert!(bad.error.contains("invalid type"), "{}", bad.error);

        let event = serde_json::json!({"type": "MODIFIED", "object": user_json("8", 42.into())});
        let event: kube::core::WatchEvent<Lenient<CEUser>> =
            serde_json::from_slice(event.to_string().as_bytes()).unwrap();
        let kube::core::WatchEvent::Modified(obj) = event else {
            panic!("a modification")
        };
        assert!(matches!(obj, Lenient::Unreadable { .. }));
    }

    #[test]
    fn a_malformed_object_leaves_the_cache_and_is_counted_until_fixed_or_gone() {
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let mut pipeline = Pipeline::<CEUser>::new(Vec::new());
        let mut receive = |event| pipeline.receive(&cache, &mut writers.users, event, parse::<CEUser>);
        let good = || user("1", "jane@acme.example".into());
        let bad = |rv: &str| user(rv, 42.into());
        let state = |cache: &Cache| (cache.user("t", "jane").is_some(), cache.malformed_counts()[2].1);

        receive(Event::Init);
        receive(Event::InitApply(good()));
        receive(Event::InitDone);
        assert_eq!(state(&cache), (true, 0));
        receive(Event::Apply(bad("2")));
        assert_eq!(state(&cache), (false, 1), "a readable object that became unreadable");
        // A re-list still holding it, then one after it was deleted while the watch was down.
        receive(Event::Init);
        receive(Event::InitApply(bad("2")));
        receive(Event::InitDone);
        assert_eq!(state(&cache), (false, 1));
        receive(Event::Init);
        receive(Event::InitDone);
        assert_eq!(state(&cache), (false, 0));
        // Fixed, then unreadable again and deleted.
        receive(Event::Apply(bad("3")));
        receive(Event::Apply(good()));
        assert_eq!(state(&cache), (true, 0));
        receive(Event::Apply(bad("4")));
        receive(Event::Delete(bad("5")));
        assert_eq!(state(&cache), (false, 0));
    }

    /// A Secret created, its echo on the way when the watch broke (an etcd restore took the
    /// write back): the relist that does not find it ends the expectation, and the change
    /// goes to the hooks, so that its owner wakes and makes it again.
    #[test]
    fn a_relist_without_an_object_written_before_it_forgets_that_write() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let gone = Arc::new(AtomicUsize::new(0));
        let seen = gone.clone();
        let hook: Hook<CEUser> = Box::new(move |_, change: &Change<CEUser>| {
            if change.new.is_none() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut pipeline = Pipeline::<CEUser>::new(vec![hook]);
        let mut receive = |event| pipeline.receive(&cache, &mut writers.users, event, parse::<CEUser>);
        receive(Event::Init);
        receive(Event::InitDone);
        let jane = |rv: &str| -> CEUser { serde_json::from_value(user_json(rv, "jane@acme.example".into())).unwrap() };
        cache.anticipate(jane("7"));
        assert!(cache.user("t", "jane").is_some(), "a write is seen at once");
        receive(Event::Init);
        receive(Event::InitDone);
        assert!(cache.user("t", "jane").is_none(), "the relist did not find it");
        assert_eq!(gone.load(Ordering::Relaxed), 1, "its going reached the hooks");
        // A write made once the relist began is kept: its echo may still come.
        receive(Event::Init);
        cache.anticipate(jane("9"));
        receive(Event::InitDone);
        assert!(cache.user("t", "jane").is_some());
    }

    /// A write whose response comes after the watch showed a later change (here: the object
    /// deleted, as a relabel out of the watch's selector shows) is not expected: the store
    /// is ahead of it.
    #[test]
    fn a_write_the_watch_has_gone_past_is_not_expected() {
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let mut pipeline = Pipeline::<CEUser>::new(Vec::new());
        let mut receive = |event| pipeline.receive(&cache, &mut writers.users, event, parse::<CEUser>);
        let jane = |rv: &str| -> CEUser { serde_json::from_value(user_json(rv, "jane@acme.example".into())).unwrap() };
        receive(Event::Init);
        receive(Event::InitDone);
        receive(Event::Apply(user("5", "jane@acme.example".into())));
        receive(Event::Delete(user("10", "jane@acme.example".into())));
        cache.anticipate(jane("9"));
        assert!(cache.user("t", "jane").is_none(), "the watch showed a later change");
        cache.anticipate(jane("11"));
        assert!(
            cache.user("t", "jane").is_some(),
            "a write the watch has not reached yet"
        );
    }

    /// A reader between the store's update and the indexes' must find the indexes ahead of
    /// the store (its lookups re-check the store), never behind: an account the store shows
    /// but the default-account index missed made the webhook refuse an org-admin binding in
    /// the default account. During a re-list the store shows the new objects only at its
    /// end, which makes the order observable: the index has them first.
    #[test]
    fn the_indexes_file_a_changed_object_before_the_store_shows_it() {
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let mut pipeline = Pipeline::<CEUser>::new(Vec::new());
        let mut receive = |event| pipeline.receive(&cache, &mut writers.users, event, parse::<CEUser>);
        let by_email = |email: &str| cache.users_by_email.get(&key("t", email));
        receive(Event::Init);
        receive(Event::InitApply(user("1", "jane@old.example".into())));
        receive(Event::InitDone);
        receive(Event::Init);
        receive(Event::InitApply(user("2", "jane@new.example".into())));
        assert_eq!(
            by_email("jane@new.example"),
            [key("t", "jane")],
            "filed under its new key first"
        );
        assert_eq!(
            cache.users_with_email("t", "jane@new.example").len(),
            0,
            "lookups re-check the store, which shows the old version until the re-list ends"
        );
        receive(Event::InitDone);
        assert_eq!(cache.users_with_email("t", "jane@new.example").len(), 1);
        assert!(
            by_email("jane@old.example").is_empty(),
            "out of its old key once the store shows it"
        );
    }

    /// A namespace the watch saw deleted counts as terminating while the other watches may
    /// still show its objects (the operator then creates and writes nothing there); one of
    /// that name created again does not, and neither does one the caches never showed (its
    /// objects' watches may be ahead of its own).
    #[test]
    fn a_deleted_namespace_is_terminating_until_one_of_its_name_appears() {
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let mut pipeline = Pipeline::<PartialObjectMeta<Namespace>>::new(Vec::new());
        let mut receive = |event| pipeline.receive(&cache, &mut writers.namespaces, event, Ok);
        let namespace = |name: &str, rv: &str| {
            let mut namespace = PartialObjectMeta::<Namespace>::default();
            namespace.metadata.name = Some(name.into());
            namespace.metadata.resource_version = Some(rv.into());
            namespace
        };
        receive(Event::Init);
        receive(Event::InitApply(namespace("t", "1")));
        receive(Event::InitDone);
        assert!(!cache.namespace_terminating("t"));
        assert!(!cache.namespace_terminating("never-shown"));
        receive(Event::Delete(namespace("t", "2")));
        assert!(cache.namespace_terminating("t"), "deleted");
        assert!(cache.namespace_deleted("t"));
        receive(Event::Apply(namespace("t", "3")));
        assert!(!cache.namespace_terminating("t"), "created again");
        assert!(!cache.namespace_deleted("t"));
    }

    /// The Ready counts the metrics report are kept per change, not recounted per scrape:
    /// they must follow every way an object enters, changes and leaves the store.
    #[test]
    fn the_ready_counts_follow_every_change_of_the_store() {
        let (cache, mut writers) = Cache::new(None, crate::model::issuance::IssuanceKey::for_tests());
        let mut pipeline = Pipeline::<CEUser>::new(Vec::new());
        let mut receive = |event| pipeline.receive(&cache, &mut writers.users, event, parse::<CEUser>);
        let with = |name: &str, rv: &str, ready: Option<(&str, &str)>| {
            let mut json = user_json(rv, format!("{name}@acme.example").into());
            json["metadata"]["name"] = name.into();
            if let Some((status, reason)) = ready {
                json["status"] = serde_json::json!({"conditions": [{
                    "type": "Ready", "status": status, "reason": reason, "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }]});
            }
            serde_json::from_value::<Lenient<CEUser>>(json).unwrap()
        };
        let counts = |cache: &Cache| -> Vec<(&str, &str, usize)> {
            cache
                .ready_counts()
                .into_iter()
                .filter(|c| c.kind == "CEUser")
                .map(|c| (c.ready, c.reason, c.count))
                .collect()
        };

        receive(Event::Init);
        receive(Event::InitApply(with("jane", "1", None)));
        receive(Event::InitApply(with("john", "1", Some(("True", "Ready")))));
        receive(Event::InitDone);
        assert_eq!(counts(&cache), [("True", "Ready", 1), ("Unknown", "", 1)]);
        receive(Event::Apply(with("jane", "2", Some(("False", "DuplicateEmail")))));
        receive(Event::Apply(with("ann", "3", Some(("False", "NoSuchReason")))));
        assert_eq!(
            counts(&cache),
            [
                ("False", "DuplicateEmail", 1),
                ("False", "Other", 1),
                ("True", "Ready", 1)
            ]
        );
        // Unreadable: out of the store, out of the counts.
        receive(Event::Apply(user("4", 42.into())));
        assert_eq!(counts(&cache), [("False", "Other", 1), ("True", "Ready", 1)]);
        // A re-list after john changed and ann went while the watch was down.
        receive(Event::Init);
        receive(Event::InitApply(with("john", "5", Some(("False", "DuplicateEmail")))));
        receive(Event::InitDone);
        assert_eq!(counts(&cache), [("False", "DuplicateEmail", 1)]);
        receive(Event::Delete(with("john", "6", Some(("False", "DuplicateEmail")))));
        assert_eq!(counts(&cache), []);
    }
}
