//! The reflector stores every reconciler reads from, and the lookups over them.
//!
//! Each kind is watched once, by its own controller; the controllers' stores are shared
//! through the Context, so a reconciler sees the whole tree without listing the API server.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::TryStreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use crate::api::{Account, CEUser, Organization, RoleBinding};

/// The stores of the four kinds.
#[derive(Clone)]
pub struct Stores {
    pub organizations: Store<Organization>,
    pub accounts: Store<Account>,
    pub users: Store<CEUser>,
    pub role_bindings: Store<RoleBinding>,
    ready: tokio::sync::watch::Receiver<bool>,
}

/// The controllers, created before they run so that their stores can be shared.
pub struct Controllers {
    pub organizations: Controller<Organization>,
    pub accounts: Controller<Account>,
    pub users: Controller<CEUser>,
    pub role_bindings: Controller<RoleBinding>,
    pub stores: Stores,
}

pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether each primary kind's cache has its initial list, and a gate that opens when all
/// have. Set from the watch streams themselves (after the reflector applied the event):
/// kube-runtime's `Store::wait_until_ready` wakes only its most recent waiter, so it cannot
/// serve many concurrent reconciles.
struct Readiness {
    synced: Mutex<[bool; 4]>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Readiness {
    fn mark(&self, kind: usize) {
        let mut synced = self.synced.lock().expect("readiness lock");
        synced[kind] = true;
        if synced.iter().all(|s| *s) && !*self.gate.borrow() {
            tracing::info!("caches synced");
            let _ = self.gate.send(true);
        }
    }
}

/// The controller of a primary kind, on its own watch and cache: every object of the kind
/// (in the watched namespace), without managedFields in the cache.
fn primary<K>(
    client: &Client,
    namespace: Option<&str>,
    readiness: &Arc<Readiness>,
    index: usize,
) -> (Controller<K>, Store<K>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let readiness = readiness.clone();
    let stream = watcher(
        api::<K>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|obj| obj.meta_mut().managed_fields = None)
    .reflect(writer)
    .inspect_ok(move |event| {
        if matches!(event, watcher::Event::InitDone) {
            readiness.mark(index);
        }
    })
    .applied_objects();
    (Controller::for_stream(stream, reader.clone()), reader)
}

impl Controllers {
    pub fn new(client: &Client, namespace: Option<&str>) -> Self {
        let (gate, ready) = tokio::sync::watch::channel(false);
        let readiness = Arc::new(Readiness {
            synced: Mutex::new([false; 4]),
            gate,
        });
        let (organizations, organization_store) =
            primary::<Organization>(client, namespace, &readiness, 0);
        let (accounts, account_store) = primary::<Account>(client, namespace, &readiness, 1);
        let (users, user_store) = primary::<CEUser>(client, namespace, &readiness, 2);
        let (role_bindings, role_binding_store) =
            primary::<RoleBinding>(client, namespace, &readiness, 3);
        let stores = Stores {
            organizations: organization_store,
            accounts: account_store,
            users: user_store,
            role_bindings: role_binding_store,
            ready,
        };
        Self {
            organizations,
            accounts,
            users,
            role_bindings,
            stores,
        }
    }
}

/// The objects of a store that match, in no particular order.
fn select<K>(store: &Store<K>, matches: impl Fn(&K) -> bool) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state_filter(matches)
}

fn in_namespace<K: Resource>(obj: &K, ns: &str) -> bool {
    obj.meta().namespace.as_deref() == Some(ns)
}

impl Stores {
    /// Waits until every store has its initial list: decisions such as "no default account
    /// exists, create one" must never be made on a cache that is still filling.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        // Fails only when the gate task is gone, i.e. at shutdown.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub fn organization(&self, ns: &str, name: &str) -> Option<Arc<Organization>> {
        self.organizations.get(&ObjectRef::new(name).within(ns))
    }

    pub fn account(&self, ns: &str, name: &str) -> Option<Arc<Account>> {
        self.accounts.get(&ObjectRef::new(name).within(ns))
    }

    pub fn user(&self, ns: &str, name: &str) -> Option<Arc<CEUser>> {
        self.users.get(&ObjectRef::new(name).within(ns))
    }

    pub fn accounts_of(&self, ns: &str, org: &str) -> Vec<Arc<Account>> {
        select(&self.accounts, |a| {
            in_namespace(a, ns) && a.spec.organization_ref.name == org
        })
    }

    pub fn users_of_account(&self, ns: &str, account: &str) -> Vec<Arc<CEUser>> {
        select(&self.users, |u| {
            in_namespace(u, ns) && u.spec.account_ref.name == account
        })
    }

    /// The users whose account belongs to `org`.
    pub fn users_of(&self, ns: &str, org: &str) -> Vec<Arc<CEUser>> {
        let accounts: Vec<String> = self
            .accounts_of(ns, org)
            .iter()
            .map(|a| a.name_any())
            .collect();
        select(&self.users, |u| {
            in_namespace(u, ns) && accounts.contains(&u.spec.account_ref.name)
        })
    }

    pub fn bindings_of_user(&self, ns: &str, user: &str) -> Vec<Arc<RoleBinding>> {
        select(&self.role_bindings, |b| {
            in_namespace(b, ns) && b.spec.user_ref.name == user
        })
    }

    /// The organization a user belongs to, through its account.
    pub fn organization_of_user(&self, user: &CEUser) -> Option<String> {
        let ns = user.namespace()?;
        self.account(&ns, &user.spec.account_ref.name)
            .map(|a| a.spec.organization_ref.name.clone())
    }
}

/// Passes an object on only when its spec or its deletion state changed since last seen (or
/// it is new). Used on watches that fan out from one parent to many children, so that the
/// parent's status writes never trigger its children: children depend on parents' specs
/// and existence, never on their status. Parents (organizations, accounts) carry a
/// finalizer, so their deletion always shows as a change of deletion state first.
/// (generation, being deleted) of an object.
type SpecState = (Option<i64>, bool);

#[derive(Clone, Default)]
pub struct SpecChanges {
    seen: Arc<Mutex<HashMap<String, SpecState>>>,
}

impl SpecChanges {
    pub fn changed<K: Resource>(&self, obj: &K) -> bool {
        let key = obj.meta().uid.clone().unwrap_or_default();
        let state = (
            obj.meta().generation,
            obj.meta().deletion_timestamp.is_some(),
        );
        let mut seen = self.seen.lock().expect("SpecChanges lock");
        seen.insert(key, state) != Some(state)
    }
}
