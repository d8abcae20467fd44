//! The caches every decision reads from: one watch per kind, kept by every replica (leader
//! and standby alike), with the secondary indexes the per-object queries need. The
//! reconcilers, the admission webhook and the authorization endpoint answer from here and
//! never call the API server on their request path.
//!
//! Each watch updates its store, then its indexes, then runs the hooks registered for its
//! kind (the controllers' relations): a hook always sees the change that triggered it.

pub mod index;
mod kind;
mod queries;
pub mod resolve;
pub mod secrets;
mod snapshot;
mod watch;
mod writes;

use std::{
    any::{Any, TypeId},
    collections::{BTreeSet, HashMap, HashSet},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Client, Resource, core::PartialObjectMeta, runtime::reflector};

use crate::model::issuance::IssuanceKey;
use index::{Index, Indexed, key};
pub use kind::{Kind, ReadyCount};
use kind::{ready_counts, tally};
use secrets::Digests;
pub use secrets::SecretEntry;
pub use snapshot::Snapshot;
#[cfg(test)]
pub(crate) use snapshot::testing;
pub use watch::{Watch, WriterOf, Writers, first_stopped};
use writes::OwnWrite;
pub use writes::{canonical_status, status_hash};

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

            fn index_ahead(cache: &Cache, incoming: &Arc<Self>) {
                <Self as Indexed>::index(cache, &Change { old: None, new: Some(incoming.clone()) });
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

/// The kinds the cache holds, with how each is indexed.
pub trait Cached: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static {
    const WATCHED: Watched;

    fn slot(cache: &Cache) -> &Kind<Self>;

    /// Keeps this kind's indexes (and, for the registry's kinds, its Ready tallies).
    fn index(cache: &Cache, change: &Change<Self>);

    /// Files `incoming` under its index keys before the store shows it (`index` then moves it
    /// out of its old keys): a reader between the two writes finds an index ahead of the
    /// store, which its lookups re-check, never one behind it.
    fn index_ahead(_cache: &Cache, _incoming: &Arc<Self>) {}
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

    fn index(cache: &Cache, change: &Change<Self>) {
        let mut deleted = cache.deleted_namespaces.lock().expect("deleted namespaces lock");
        if change.new.is_some() {
            deleted.remove(&change.name());
        } else {
            let now = std::time::Instant::now();
            deleted.retain(|_, at| now.duration_since(*at) < DELETED_NAMESPACES_KEPT);
            deleted.insert(change.name(), now);
        }
    }
}

/// How long a deleted namespace is remembered: far longer than the watches of its objects
/// take to show them gone.
const DELETED_NAMESPACES_KEPT: std::time::Duration = std::time::Duration::from_secs(600);

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
    /// Namespaces the watch saw deleted, and when: the other watches may still show objects
    /// of theirs for a moment, which are as good as gone. Forgotten when a namespace of that
    /// name appears, or after `DELETED_NAMESPACES_KEPT`.
    deleted_namespaces: Mutex<HashMap<String, std::time::Instant>>,
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
            deleted_namespaces: Mutex::default(),
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
}
