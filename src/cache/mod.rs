//! The caches every decision reads from: one watch per kind, kept by every replica (leader
//! and standby alike), with the secondary indexes the per-object queries need. The
//! reconcilers, the admission webhook and the authorization endpoint answer from here and
//! never call the API server on their request path.
//!
//! Each watch updates its store, then its indexes, then runs the hooks registered for its
//! kind (the controllers' relations): a hook always sees the change that triggered it.

pub mod index;
pub mod resolve;
pub mod secrets;
mod watch;

use std::{
    any::{Any, TypeId},
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt::Debug,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::reflector::{self, ObjectRef, Store},
};

use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, Role, RoleBinding},
    model::issuance::IssuanceKey,
};
use index::{Index, Key, key};
use secrets::Digests;
pub use secrets::SecretEntry;
pub use watch::{Watch, WriterOf, Writers, first_stopped};

macro_rules! watched {
    ($($kind:ident => $field:ident,)*) => {
        /// What the operator watches: the registry's kinds, and the Secrets and Namespaces
        /// their decisions read.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Watched {
            $($kind,)*
            Secret,
            Namespace,
        }

        impl Watched {
            pub const ALL: &[Watched] = &[$(Watched::$kind,)* Watched::Secret, Watched::Namespace];
        }

        /// The store of each watched kind.
        struct Stores {
            $($field: Kind<crate::api::$kind>,)*
            secrets: Kind<SecretEntry>,
            namespaces: Kind<PartialObjectMeta<Namespace>>,
        }

        /// The stores, empty, and the writers the watches fill them through.
        fn stores() -> (Stores, Writers) {
            $(let $field = reflector::store();)*
            let secrets = reflector::store();
            let namespaces = reflector::store();
            (
                Stores {
                    $($field: Kind::new($field.0),)*
                    secrets: Kind::new(secrets.0),
                    namespaces: Kind::new(namespaces.0),
                },
                Writers {
                    $($field: $field.1,)*
                    secrets: secrets.1,
                    namespaces: namespaces.1,
                },
            )
        }

        $(impl Cached for crate::api::$kind {
            const WATCHED: Watched = Watched::$kind;

            fn slot(cache: &Cache) -> &Kind<Self> {
                &cache.stores.$field
            }

            fn index(cache: &Cache, change: &Change<Self>) {
                tally(&cache.stores.$field, change);
                <Self as Indexed>::index(cache, change);
            }
        })*

        impl Cache {
            /// Objects per kind by their Ready condition's status and reason (`ready_key`).
            pub fn ready_counts(&self) -> Vec<ReadyCount> {
                [$(ready_counts(stringify!($kind), &self.stores.$field),)*].concat()
            }

            /// Objects per kind that the API server holds and the operator cannot read.
            pub fn malformed_counts(&self) -> Vec<(&'static str, usize)> {
                use std::sync::atomic::Ordering::Relaxed;
                vec![$((stringify!($kind), self.stores.$field.malformed.load(Relaxed)),)*]
            }
        }
    };
}
crate::kinds::for_each_kind!(watched);

/// How each watch reads the objects that exist when it starts (and after it was lost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialList {
    /// The API server sends them as watch events, read while they arrive (Kubernetes 1.32+,
    /// where the WatchList feature is on by default). At 100k users this halved the API
    /// server's CPU for a restart and its time to ready (README, benchmark).
    #[default]
    Stream,
    /// One LIST per kind, served whole from the API server's watch cache: for API servers
    /// without WatchList.
    List,
}

/// A change seen on a watch: the object before (None: new) and after (None: deleted).
pub struct Change<K> {
    pub old: Option<Arc<K>>,
    pub new: Option<Arc<K>>,
}

impl<K: Resource> Change<K> {
    /// The object as it is now, or as it was before it went.
    pub fn object(&self) -> &K {
        self.new
            .as_deref()
            .or(self.old.as_deref())
            .expect("a change has an object")
    }

    pub fn namespace(&self) -> String {
        self.object().meta().namespace.clone().unwrap_or_default()
    }

    pub fn name(&self) -> String {
        self.object().meta().name.clone().unwrap_or_default()
    }

    /// A property of the object before and after.
    pub fn before_after<T>(&self, f: impl Fn(&K) -> T) -> (Option<T>, Option<T>) {
        (self.old.as_deref().map(&f), self.new.as_deref().map(&f))
    }

    /// Whether a property differs between before and after (appearing and going count).
    pub fn changed<T: PartialEq>(&self, f: impl Fn(&K) -> T) -> bool {
        let (before, after) = self.before_after(f);
        before != after
    }
}

/// A function run on every change of kind `K`, after the store and indexes are updated.
pub type Hook<K> = Box<dyn Fn(&Cache, &Change<K>) + Send + Sync>;

/// The hooks of every kind, registered before the watches start.
#[derive(Default)]
pub struct Hooks {
    by_kind: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Hooks {
    pub fn on<K: 'static>(&mut self, hook: impl Fn(&Cache, &Change<K>) + Send + Sync + 'static) {
        self.by_kind
            .entry(TypeId::of::<K>())
            .or_insert_with(|| Box::new(Vec::<Hook<K>>::new()))
            .downcast_mut::<Vec<Hook<K>>>()
            .expect("hooks of one type")
            .push(Box::new(hook));
    }

    fn take<K: 'static>(&mut self) -> Vec<Hook<K>> {
        self.by_kind
            .remove(&TypeId::of::<K>())
            .and_then(|hooks| hooks.downcast::<Vec<Hook<K>>>().ok())
            .map(|hooks| *hooks)
            .unwrap_or_default()
    }
}

/// A kind's store, and what this process created or changed that the store does not show
/// yet ("expectations", as the ReplicaSet controller has them): a reconcile right after a
/// write sees it, and never re-creates or re-reads it.
pub struct Kind<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    expected: RwLock<HashMap<ObjectRef<K>, Arc<K>>>,
    /// Objects of this kind the API server holds but the Rust types cannot read (kept out
    /// of the store; see `watch::Malformed`).
    malformed: std::sync::atomic::AtomicUsize,
    /// The stored objects by their Ready condition (kinds with conditions), kept as changes
    /// arrive: a scrape reads a few counts instead of scanning every object (at 100,000
    /// users, polled every 200 ms, the scan was about half of the operator's CPU).
    ready: Mutex<BTreeMap<ReadyKey, usize>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Kind<K> {
    fn new(store: Store<K>) -> Self {
        Self {
            store,
            expected: RwLock::default(),
            malformed: Default::default(),
            ready: Mutex::default(),
        }
    }

    fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store
            .get(key)
            .or_else(|| self.expected.read().expect("expectations lock").get(key).cloned())
    }

    /// Forgets an expectation once the store caught up with it (or the object went).
    fn settle(&self, key: &ObjectRef<K>, stored: Option<&K>) {
        let mut expected = self.expected.write().expect("expectations lock");
        let Some(waiting) = expected.get(key) else { return };
        let caught_up = match stored {
            None => true,
            Some(stored) => {
                let at = |k: &K| version(k.meta().resource_version.as_deref());
                stored.meta().uid != waiting.meta().uid || at(stored) >= at(waiting)
            }
        };
        if caught_up {
            expected.remove(key);
        }
    }
}

/// The kinds the cache holds, with how each is indexed.
pub trait Cached: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static {
    const WATCHED: Watched;

    fn slot(cache: &Cache) -> &Kind<Self>;

    /// Keeps this kind's indexes (and, for the registry's kinds, its Ready tallies).
    fn index(cache: &Cache, change: &Change<Self>);
}

/// The secondary indexes of one of the registry's kinds, kept as its changes arrive.
trait Indexed: Sized {
    fn index(_cache: &Cache, _change: &Change<Self>) {}
}

/// A Ready condition's status ("True", "False", "Unknown" when absent) and reason (empty when
/// absent; "Other" for a reason the operator does not know, so the label set stays bounded).
type ReadyKey = (&'static str, &'static str);

fn ready_key(obj: &impl crate::api::HasConditions) -> ReadyKey {
    let ready = obj.condition("Ready");
    let status = match ready.map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    };
    let reason = match ready {
        None => "",
        Some(c) => crate::model::conditions::Reason::parse(&c.reason).map_or("Other", |r| r.as_str()),
    };
    (status, reason)
}

/// Moves the object of `change` between the Ready tallies of its kind.
fn tally<K>(kind: &Kind<K>, change: &Change<K>)
where
    K: Resource<DynamicType = ()> + crate::api::HasConditions + 'static,
{
    let (old, new) = change.before_after(ready_key);
    if old == new {
        return;
    }
    let mut ready = kind.ready.lock().unwrap_or_else(|e| e.into_inner());
    // A count that is not there (a deletion of an object the store never held) stays absent.
    if let Some(old) = old
        && let std::collections::btree_map::Entry::Occupied(mut count) = ready.entry(old)
    {
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
        }
    }
    if let Some(new) = new {
        *ready.entry(new).or_default() += 1;
    }
}

/// Moves the object of `change` between index keys computed by `key_of`.
fn reindex<K: Resource>(index: &Index, change: &Change<K>, key_of: impl Fn(&K) -> Option<Key>) {
    let object = key(&change.namespace(), &change.name());
    let (old, new) = change.before_after(&key_of);
    index.update(&object, old.flatten(), new.flatten());
}

impl Indexed for Organization {
    fn index(cache: &Cache, change: &Change<Self>) {
        reindex(&cache.members_by_super, change, |o| {
            o.spec
                .super_organization_ref
                .as_ref()
                .map(|r| key(&r.namespace, &r.name))
        });
    }
}

impl Indexed for Account {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.accounts_by_org, change, |a| {
            Some(key(&ns, &a.spec.organization_ref.name))
        });
        reindex(&cache.default_accounts_by_org, change, |a| {
            a.spec.default.then(|| key(&ns, &a.spec.organization_ref.name))
        });
    }
}

impl Indexed for CEUser {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.users_by_account, change, |u| {
            Some(key(&ns, &u.spec.account_ref.name))
        });
        reindex(&cache.users_by_email, change, |u| {
            Some(key(&ns, &u.spec.email.to_ascii_lowercase()))
        });
    }
}

impl Indexed for RoleBinding {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.bindings_by_user, change, |b| {
            Some(key(&ns, &b.spec.user_ref.name))
        });
        reindex(&cache.org_admins_by_namespace, change, |b| {
            (b.spec.role == Role::OrgAdmin).then(|| key(&ns, ""))
        });
    }
}

impl Indexed for ElementSafelist {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.safelists_by_org, change, |s| {
            Some(key(&ns, &s.spec.organization_ref.name))
        });
    }
}

impl Cached for SecretEntry {
    const WATCHED: Watched = Watched::Secret;

    fn slot(cache: &Cache) -> &Kind<Self> {
        &cache.stores.secrets
    }

    fn index(cache: &Cache, change: &Change<Self>) {
        let secret = key(&change.namespace(), &change.name());
        let (old, new) = change.before_after(|s| s.facts.clone());
        cache.digests.update(&secret, old.as_ref(), new.as_ref());
    }
}

impl Cached for PartialObjectMeta<Namespace> {
    const WATCHED: Watched = Watched::Namespace;

    fn slot(cache: &Cache) -> &Kind<Self> {
        &cache.stores.namespaces
    }

    fn index(_cache: &Cache, _change: &Change<Self>) {}
}

/// A write of this process that the watch has not echoed yet.
struct OwnWrite {
    resource_version: String,
    status: u64,
}

/// A resourceVersion as a number: opaque by contract, an etcd revision in practice; only
/// used to tell whether the cache has caught up with a write, and None if it is not a number.
fn version(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

/// A status as the API server stores it: nulls, empty objects and empty lists are the same
/// as absent (server-side apply prunes an emptied field to null), so two statuses that differ
/// only there are the same status, and one is never written over the other.
pub fn canonical_status<S: serde::Serialize>(status: &S) -> serde_json::Value {
    fn prune(value: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match value {
            Value::Null => None,
            Value::Object(map) => {
                let map: serde_json::Map<String, Value> =
                    map.into_iter().filter_map(|(k, v)| Some((k, prune(v)?))).collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            Value::Array(items) if items.is_empty() => None,
            other => Some(other),
        }
    }
    prune(serde_json::to_value(status).unwrap_or_default()).unwrap_or_default()
}

/// A hash of a status (in its canonical form), to tell statuses apart without a copy.
pub fn status_hash<S: serde::Serialize>(status: &S) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    canonical_status(status).to_string().hash(&mut hasher);
    hasher.finish()
}

/// Whether each watch has its initial list, and a gate that opens when all have.
struct Readiness {
    synced: Mutex<BTreeSet<Watched>>,
    gate: tokio::sync::watch::Sender<bool>,
}

/// The caches, shared by everything that decides.
pub struct Cache {
    /// The namespace watched (None: all namespaces).
    scope: Option<String>,
    stores: Stores,
    /// Accounts by (namespace, organization).
    accounts_by_org: Index,
    /// The accounts declaring `default: true`, by (namespace, organization): who is the
    /// default account is asked per user and per request, and must not cost a scan of
    /// every account of the organization.
    default_accounts_by_org: Index,
    /// Users by (namespace, account).
    users_by_account: Index,
    /// Users by (namespace, lower-case e-mail).
    users_by_email: Index,
    /// RoleBindings by (namespace, user).
    bindings_by_user: Index,
    /// org-admin RoleBindings by (namespace, "").
    org_admins_by_namespace: Index,
    /// Safelists by (namespace, organization).
    safelists_by_org: Index,
    /// Organizations by their super-organization's (namespace, name).
    members_by_super: Index,
    /// Generated Secrets by the digests of their values.
    digests: Digests,
    /// The key that tells the values the operator issued (`model::issuance`).
    issuance_key: IssuanceKey,
    /// This process's latest writes, by uid: the watch event that carries one's
    /// resourceVersion is its echo.
    own_writes: Mutex<HashMap<String, OwnWrite>>,
    /// The objects, by uid, whose status someone else changed since this process last wrote
    /// it: its next write there corrects theirs (`controller::corrections`). Kept only while
    /// the controllers run (None on a standby, to which every write is someone else's).
    foreign_statuses: Mutex<Option<HashSet<String>>>,
    readiness: Readiness,
    ready: tokio::sync::watch::Receiver<bool>,
    /// Bumped after every change has been applied to the stores and indexes: what was
    /// derived from the caches at an older epoch may be out of date (`Cache::epoch`).
    epoch: std::sync::atomic::AtomicU64,
    #[cfg(test)]
    reads: Mutex<Option<BTreeSet<Watched>>>,
}

impl Cache {
    /// The caches, empty, and the writers that the watches fill them through.
    pub fn new(scope: Option<String>, issuance_key: IssuanceKey) -> (Arc<Cache>, Writers) {
        let (stores, writers) = stores();
        let (gate, ready) = tokio::sync::watch::channel(false);
        let cache = Arc::new(Cache {
            scope,
            stores,
            accounts_by_org: Index::default(),
            default_accounts_by_org: Index::default(),
            users_by_account: Index::default(),
            users_by_email: Index::default(),
            bindings_by_user: Index::default(),
            org_admins_by_namespace: Index::default(),
            safelists_by_org: Index::default(),
            members_by_super: Index::default(),
            digests: Digests::default(),
            issuance_key,
            own_writes: Mutex::default(),
            foreign_statuses: Mutex::default(),
            readiness: Readiness {
                synced: Mutex::default(),
                gate,
            },
            ready,
            epoch: Default::default(),
            #[cfg(test)]
            reads: Mutex::default(),
        });
        (cache, writers)
    }

    /// Starts one watch per kind, feeding the caches and running `hooks`.
    pub fn start(
        cache: &Arc<Cache>,
        client: &Client,
        initial: InitialList,
        writers: Writers,
        hooks: Hooks,
    ) -> Vec<watch::Watch> {
        watch::spawn_all(cache, client, initial, writers, hooks)
    }

    /// The number of changes applied so far. Read it before deriving something from the
    /// caches: if it is unchanged later, so is everything the derivation read.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn advance_epoch(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// The key that tells the values the operator issued.
    pub fn issuance_key(&self) -> &IssuanceKey {
        &self.issuance_key
    }

    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Whether this operator watches namespace `ns`.
    pub fn watches_namespace(&self, ns: &str) -> bool {
        self.scope.as_deref().is_none_or(|scope| scope == ns)
    }

    fn mark_synced(&self, watched: Watched) {
        let mut synced = self.readiness.synced.lock().expect("readiness lock");
        if synced.insert(watched) && synced.len() == Watched::ALL.len() {
            tracing::info!("caches synced");
            let _ = self.readiness.gate.send(true);
        }
    }

    /// Every cache marked as holding its initial list, for tests that feed them by hand.
    #[cfg(test)]
    pub(crate) fn mark_all_synced(&self) {
        for &watched in Watched::ALL {
            self.mark_synced(watched);
        }
    }

    /// Whether every cache has its initial list: decisions such as "no default account
    /// exists, create one" must never be made on a cache that is still filling.
    pub fn is_synced(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until every cache has its initial list (or `timeout` passes: false).
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut ready = self.ready.clone();
        matches!(
            tokio::time::timeout(timeout, ready.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }

    /// Records that this process wrote `uid`, which is now at resourceVersion `rv` with a
    /// status of hash `status` (see `status_hash`).
    pub fn note_own_write(&self, uid: &str, rv: &str, status: u64) {
        self.own_writes.lock().expect("own writes lock").insert(
            uid.to_owned(),
            OwnWrite {
                resource_version: rv.to_owned(),
                status,
            },
        );
    }

    /// Starts keeping the objects whose status someone else changed (the controllers start).
    pub fn note_foreign_statuses(&self) {
        self.foreign_statuses
            .lock()
            .expect("foreign statuses lock")
            .get_or_insert_with(HashSet::new);
    }

    /// Someone else changed the status of `obj` (a watched change that is not an echo).
    pub fn foreign_status<K: Resource>(&self, obj: &K) {
        if let (Some(noted), Some(uid)) = (
            self.foreign_statuses.lock().expect("foreign statuses lock").as_mut(),
            obj.meta().uid.as_deref(),
        ) {
            noted.insert(uid.to_owned());
        }
    }

    /// Whether someone else changed the status of `uid` since this process last wrote it.
    pub fn status_is_foreign(&self, uid: &str) -> bool {
        self.foreign_statuses
            .lock()
            .expect("foreign statuses lock")
            .as_ref()
            .is_some_and(|noted| noted.contains(uid))
    }

    /// This process wrote the status of `uid`: whatever someone else wrote before is gone.
    pub fn status_written(&self, uid: &str) {
        if let Some(noted) = self.foreign_statuses.lock().expect("foreign statuses lock").as_mut() {
            noted.remove(uid);
        }
    }

    /// Whether a watched object is the echo of this process's latest write to it.
    pub fn is_own_echo<K: Resource>(&self, obj: &K) -> bool {
        let (Some(uid), Some(rv)) = (obj.meta().uid.as_deref(), obj.meta().resource_version.as_deref()) else {
            return false;
        };
        let mut writes = self.own_writes.lock().expect("own writes lock");
        if writes.get(uid).is_some_and(|written| written.resource_version == rv) {
            writes.remove(uid);
            return true;
        }
        false
    }

    /// What a reconcile of `obj` compares its desired status with: the hash of this
    /// process's latest write to it if the cache has not shown that write yet, else the
    /// object as the cache holds it now (None if gone), whose status is then current.
    ///
    /// `obj` is the reconcile's snapshot, taken when it started: the echo of the previous
    /// write may have been applied since, and its record dropped (`is_own_echo`). Comparing
    /// with the snapshot's older status would then take a status the API server no longer
    /// holds for the current one (a revoked role kept). So the record is read first, then
    /// the store: whichever moment the echo lands, one of the two shows the write.
    pub fn status_now<K: Cached>(&self, obj: &K) -> (Option<u64>, Option<Arc<K>>) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let written = {
            let writes = self.own_writes.lock().expect("own writes lock");
            writes.get(&uid).map(|w| (version(Some(&w.resource_version)), w.status))
        };
        let now = K::slot(self).store.get(&ObjectRef::from_obj(obj));
        let cached = version(now.as_deref().unwrap_or(obj).meta().resource_version.as_deref());
        match written {
            Some((Some(written), status)) if cached.is_none_or(|cached| written > cached) => (Some(status), now),
            Some((written, _)) => {
                // The cache shows the write: forget it (unless a newer one replaced it).
                let mut writes = self.own_writes.lock().expect("own writes lock");
                if writes
                    .get(&uid)
                    .is_some_and(|w| version(Some(&w.resource_version)) == written)
                {
                    writes.remove(&uid);
                }
                (None, now)
            }
            None => (None, now),
        }
    }

    /// Something this process just created or changed, to be seen before the watch shows it.
    pub fn anticipate<K: Cached>(&self, obj: K) {
        let reference = ObjectRef::from_obj(&obj);
        let kind = K::slot(self);
        let old = kind.get(&reference);
        let obj = Arc::new(obj);
        kind.expected
            .write()
            .expect("expectations lock")
            .insert(reference, obj.clone());
        K::index(self, &Change { old, new: Some(obj) });
    }

    #[cfg(test)]
    fn note(&self, watched: Watched) {
        if let Some(reads) = self.reads.lock().unwrap().as_mut() {
            reads.insert(watched);
        }
    }

    #[cfg(not(test))]
    fn note(&self, _: Watched) {}

    /// Runs `f` and returns which kinds it read from the caches.
    #[cfg(test)]
    pub fn recording_reads<T>(&self, f: impl FnOnce() -> T) -> (T, BTreeSet<Watched>) {
        *self.reads.lock().unwrap() = Some(BTreeSet::new());
        let out = f();
        let reads = self.reads.lock().unwrap().take().unwrap_or_default();
        (out, reads)
    }

    /// One object by namespace and name.
    pub fn get<K: Cached>(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        self.note(K::WATCHED);
        K::slot(self).get(&ObjectRef::new(name).within(ns))
    }

    /// Every object of a kind: a scan, for a leader's first pass, the resync and rare changes
    /// (a namespace being deleted, an account appearing or going).
    pub fn all<K: Cached>(&self) -> Vec<Arc<K>> {
        K::slot(self).store.state()
    }

    /// The store of a kind, as a controller reads it.
    pub fn store<K: Cached>(&self) -> Store<K> {
        K::slot(self).store.clone()
    }

    fn resolve<K: Cached>(&self, names: Vec<Key>, still: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.note(K::WATCHED);
        let kind = K::slot(self);
        let mut found: Vec<Arc<K>> = names
            .iter()
            .filter_map(|(ns, name)| kind.get(&ObjectRef::new(name).within(ns)))
            .filter(|o| still(o))
            .collect();
        // A stable order, so that decisions (and the messages they write) do not flap;
        // compared borrowed (the authorization endpoint resolves on every request).
        found.sort_by(|a, b| {
            (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
        });
        found
    }

    pub fn organization(&self, ns: &str, name: &str) -> Option<Arc<Organization>> {
        self.get(ns, name)
    }

    pub fn account(&self, ns: &str, name: &str) -> Option<Arc<Account>> {
        self.get(ns, name)
    }

    pub fn user(&self, ns: &str, name: &str) -> Option<Arc<CEUser>> {
        self.get(ns, name)
    }

    pub fn accounts_of(&self, ns: &str, org: &str) -> Vec<Arc<Account>> {
        self.resolve(self.accounts_by_org.get(&key(ns, org)), |a: &Account| {
            a.spec.organization_ref.name == org
        })
    }

    /// The accounts of an organization that declare `default: true` (what
    /// `model::tenancy::default_account` chooses from).
    pub fn default_account_candidates(&self, ns: &str, org: &str) -> Vec<Arc<Account>> {
        self.resolve(self.default_accounts_by_org.get(&key(ns, org)), |a: &Account| {
            a.spec.default && a.spec.organization_ref.name == org
        })
    }

    pub fn users_of_account(&self, ns: &str, account: &str) -> Vec<Arc<CEUser>> {
        self.resolve(self.users_by_account.get(&key(ns, account)), |u: &CEUser| {
            u.spec.account_ref.name == account
        })
    }

    /// How many users account `account` has.
    pub fn user_count(&self, ns: &str, account: &str) -> usize {
        self.note(Watched::CEUser);
        let users = &self.stores.users;
        self.users_by_account
            .get(&key(ns, account))
            .iter()
            .filter(|(ns, name)| {
                users
                    .get(&ObjectRef::new(name).within(ns))
                    .is_some_and(|u| u.spec.account_ref.name == account)
            })
            .count()
    }

    /// Whether account `account` has a user: the first one found ends the look (a default
    /// account's users decide its rank on every identity, `DefaultCandidates`).
    pub fn has_users(&self, ns: &str, account: &str) -> bool {
        self.note(Watched::CEUser);
        let users = &self.stores.users;
        self.users_by_account.any(&key(ns, account), |(ns, name)| {
            users
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|u| u.spec.account_ref.name == account)
        })
    }

    /// The users whose account belongs to organization `org`.
    pub fn users_of(&self, ns: &str, org: &str) -> Vec<Arc<CEUser>> {
        self.accounts_of(ns, org)
            .iter()
            .flat_map(|a| self.users_of_account(ns, &a.name_any()))
            .collect()
    }

    pub fn bindings_of_user(&self, ns: &str, user: &str) -> Vec<Arc<RoleBinding>> {
        self.resolve(self.bindings_by_user.get(&key(ns, user)), |b: &RoleBinding| {
            b.spec.user_ref.name == user
        })
    }

    /// The org-admin RoleBindings of a namespace (to be judged by the caller).
    pub fn org_admin_bindings(&self, ns: &str) -> Vec<Arc<RoleBinding>> {
        self.resolve(self.org_admins_by_namespace.get(&key(ns, "")), |b: &RoleBinding| {
            b.spec.role == Role::OrgAdmin
        })
    }

    pub fn safelists_of(&self, ns: &str, org: &str) -> Vec<Arc<ElementSafelist>> {
        self.resolve(self.safelists_by_org.get(&key(ns, org)), |s: &ElementSafelist| {
            s.spec.organization_ref.name == org
        })
    }

    /// The organizations (in any watched namespace) that name `ns/name` as super-organization.
    pub fn members_of(&self, ns: &str, name: &str) -> Vec<Arc<Organization>> {
        self.resolve(self.members_by_super.get(&key(ns, name)), |o: &Organization| {
            o.spec
                .super_organization_ref
                .as_ref()
                .is_some_and(|r| r.namespace == ns && r.name == name)
        })
    }

    /// The users of a namespace with this e-mail (compared case-insensitively).
    pub fn users_with_email(&self, ns: &str, email: &str) -> Vec<Arc<CEUser>> {
        self.resolve(
            self.users_by_email.get(&key(ns, &email.to_ascii_lowercase())),
            |u: &CEUser| u.spec.email.eq_ignore_ascii_case(email),
        )
    }

    /// The organization a user belongs to, through its account.
    pub fn organization_of_user(&self, user: &CEUser) -> Option<String> {
        let ns = user.namespace()?;
        self.account(&ns, &user.spec.account_ref.name)
            .map(|a| a.spec.organization_ref.name.clone())
    }

    /// One of the operator's generated Secrets, without its values.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Arc<SecretEntry>> {
        self.get(ns, name)
    }

    /// The generated Secrets holding a value with this digest.
    pub fn secrets_with_digest(&self, digest: &crate::model::secrets::Digest) -> Vec<Arc<SecretEntry>> {
        self.resolve(self.digests.get(digest), |s: &SecretEntry| {
            s.facts.current.as_ref() == Some(digest) || s.facts.previous.as_ref() == Some(digest)
        })
    }

    /// Whether namespace `ns` is being deleted.
    pub fn namespace_terminating(&self, ns: &str) -> bool {
        self.stores
            .namespaces
            .get(&ObjectRef::new(ns))
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    }
}

/// The Ready tallies of one kind.
fn ready_counts<K: Resource<DynamicType = ()>>(kind: &'static str, slot: &Kind<K>) -> Vec<ReadyCount> {
    let ready = slot.ready.lock().unwrap_or_else(|e| e.into_inner());
    ready
        .iter()
        .map(|(&(ready, reason), &count)| ReadyCount {
            kind,
            ready,
            reason,
            count,
        })
        .collect()
}

/// How many objects of a kind have a Ready condition with this status and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyCount {
    pub kind: &'static str,
    pub ready: &'static str,
    /// Empty when there is no Ready condition yet.
    pub reason: &'static str,
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CEUserStatus, PrivilegeScopes};

    #[test]
    fn statuses_that_differ_only_in_empty_fields_are_the_same() {
        let absent = CEUserStatus::default();
        let empty = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes::default()),
            ..Default::default()
        };
        assert_eq!(canonical_status(&absent), canonical_status(&empty));
        assert_eq!(status_hash(&absent), status_hash(&empty));
        let stored: CEUserStatus =
            serde_json::from_value(serde_json::json!({"privilegeScopes": null, "roles": []})).unwrap();
        assert_eq!(canonical_status(&stored), canonical_status(&empty));
        let held = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes {
                organization: vec![crate::api::Privilege::ViewActivity],
                account: vec![],
            }),
            ..Default::default()
        };
        assert_ne!(canonical_status(&held), canonical_status(&empty));
    }

    /// The lost revoke: a reconcile started on a snapshot older than this process's last
    /// write, whose echo then arrived (dropping the record) before the reconcile compared.
    #[test]
    fn a_status_is_compared_with_the_write_whatever_moment_its_echo_lands() {
        use crate::api::{CEUser, Role};
        let user = |rv: &str, roles: Vec<Role>| -> CEUser {
            let mut user: CEUser = serde_json::from_value(serde_json::json!({
                "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "CEUser",
                "metadata": {"name": "john", "namespace": "t", "uid": "u1", "resourceVersion": rv},
                "spec": {"accountRef": {"name": "hq"}, "email": "john@acme.example"},
            }))
            .unwrap();
            user.status = Some(CEUserStatus {
                roles,
                ..Default::default()
            });
            user
        };
        let revoked = user("2", vec![Role::DefaultUser]);
        let bound = user("3", vec![Role::Admin, Role::DefaultUser]);
        let mut snapshot = Snapshot::new(None);
        snapshot.apply([revoked.clone()]);
        let cache = snapshot.cache.clone();
        // The bind's write (rv 3), its echo not applied yet: compared with the write.
        cache.note_own_write("u1", "3", status_hash(&bound.status));
        assert_eq!(cache.status_now(&revoked).0, Some(status_hash(&bound.status)));
        // The echo applied and its record dropped, while the next reconcile still holds the
        // snapshot at rv 2: compared with the cache now, which holds the bound status.
        snapshot.apply([bound.clone()]);
        assert!(cache.is_own_echo(&bound));
        let (unseen, now) = cache.status_now(&revoked);
        assert_eq!(unseen, None);
        assert_eq!(now.and_then(|u| u.status.clone()), bound.status);
    }
}

/// A cache filled from lists rather than watches: what `ce-operator can-i` reads with the
/// caller's kubeconfig, and what the unit tests of the cache's readers feed by hand.
pub struct Snapshot {
    pub cache: Arc<Cache>,
    writers: Writers,
}

impl Snapshot {
    /// A snapshot under `IssuanceKey::for_tests` in tests; with a key of its own otherwise
    /// (`can-i` names its caller, it authenticates nobody).
    pub fn new(scope: Option<&str>) -> Self {
        #[cfg(test)]
        let key = IssuanceKey::for_tests();
        #[cfg(not(test))]
        let key = {
            use rand::TryRngCore;
            let mut bytes = [0u8; crate::model::issuance::KEY_BYTES];
            rand::rngs::OsRng
                .try_fill_bytes(&mut bytes)
                .expect("the operating system's random source");
            IssuanceKey::from_bytes(&bytes).expect("a full-length key")
        };
        let (cache, writers) = Cache::new(scope.map(str::to_owned), key);
        Self { cache, writers }
    }

    /// Applies objects as watch events would, indexes included.
    pub fn apply<K: Cached>(&mut self, objects: impl IntoIterator<Item = K>) -> &mut Self
    where
        Writers: WriterOf<K>,
    {
        for obj in objects {
            watch::apply_one(&self.cache, &mut self.writers, obj);
        }
        self
    }
}

#[cfg(test)]
pub(crate) mod testing {
    pub use super::Snapshot as TestCache;
}
