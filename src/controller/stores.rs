//! The caches every reconciler reads from, and the fan-out of changes between kinds.
//!
//! Each primary kind is watched once. Its stream updates the kind's reflector store, then
//! maps the change onto the objects of other kinds that depend on it and triggers their
//! reconciles. Because the trigger is sent after the store is updated, a reconciler always
//! sees the change that triggered it (separate watches per relation would race the caches).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::{
    StreamExt, TryStreamExt,
    channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};

use crate::api::{Account, CEUser, ElementSafelist, Organization, RoleBinding};
use crate::model::names::{LABEL_MANAGED_BY, MANAGER};
use crate::model::tenancy;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;

/// The stores of the four kinds.
#[derive(Clone)]
pub struct Stores {
    pub organizations: Store<Organization>,
    pub accounts: Store<Account>,
    pub users: Store<CEUser>,
    pub role_bindings: Store<RoleBinding>,
    pub safelists: Store<ElementSafelist>,
    /// The operator's own Secrets, metadata only.
    secrets: Store<PartialObjectMeta<Secret>>,
    /// Users by lower-case e-mail.
    emails: Arc<Index>,
    /// RoleBindings by the user they name.
    bindings_by_user: Arc<Index>,
    ready: tokio::sync::watch::Receiver<bool>,
}

/// The controllers, created before they run so that their stores can be shared.
pub struct Controllers {
    pub organizations: Controller<Organization>,
    pub accounts: Controller<Account>,
    pub users: Controller<CEUser>,
    pub role_bindings: Controller<RoleBinding>,
    pub safelists: Controller<ElementSafelist>,
    /// The watch of the operator's own Secrets; it must be polled (spawned) to run.
    pub secrets: futures::future::BoxFuture<'static, ()>,
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
/// have. Set from the watch streams themselves, after the reflector applied the event:
/// kube-runtime's `Store::wait_until_ready` wakes only its most recent waiter, so it cannot
/// serve many concurrent reconciles.
const KINDS: usize = 5;

/// How long a reconcile waits for the caches before failing (and being retried).
const CACHE_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

struct Readiness {
    synced: Mutex<[bool; KINDS]>,
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

/// Where changes are sent to trigger reconciles of each kind.
#[derive(Clone)]
struct Triggers {
    organizations: UnboundedSender<ObjectRef<Organization>>,
    accounts: UnboundedSender<ObjectRef<Account>>,
    users: UnboundedSender<ObjectRef<CEUser>>,
    role_bindings: UnboundedSender<ObjectRef<RoleBinding>>,
    safelists: UnboundedSender<ObjectRef<ElementSafelist>>,
}

fn send<K: Resource<DynamicType = ()>>(to: &UnboundedSender<ObjectRef<K>>, objects: impl IntoIterator<Item = Arc<K>>) {
    for obj in objects {
        // Fails only when the controller is gone (shutdown).
        let _ = to.unbounded_send(ObjectRef::from_obj(obj.as_ref()));
    }
}

fn send_named<K: Resource<DynamicType = ()>>(to: &UnboundedSender<ObjectRef<K>>, ns: &str, name: &str) {
    let _ = to.unbounded_send(ObjectRef::new(name).within(ns));
}

/// A change seen on a watch stream: the object, and whether it was deleted.
struct Change<'a, K> {
    obj: &'a K,
    deleted: bool,
}

fn change<K>(event: &watcher::Event<K>) -> Option<Change<'_, K>> {
    match event {
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => Some(Change { obj, deleted: false }),
        watcher::Event::Delete(obj) => Some(Change { obj, deleted: true }),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// A secondary index over a cache: (namespace, key) to the names of the objects with that
/// key, maintained from the watch stream right after the store. After a re-list, entries of
/// objects deleted while the watch was down may linger, so lookups re-check the store.
#[derive(Default)]
pub struct Index {
    inner: std::sync::RwLock<IndexInner>,
}

#[derive(Default)]
struct IndexInner {
    names: HashMap<(String, String), std::collections::HashSet<String>>,
    key_of: HashMap<(String, String), String>,
}

impl Index {
    /// Records the key of object `ns/name` (None: it is gone).
    fn update(&self, ns: &str, name: &str, key: Option<String>) {
        let mut inner = self.inner.write().expect("index lock");
        let object = (ns.to_owned(), name.to_owned());
        if let Some(old) = inner.key_of.remove(&object) {
            let slot = (ns.to_owned(), old);
            if let Some(names) = inner.names.get_mut(&slot) {
                names.remove(name);
                if names.is_empty() {
                    inner.names.remove(&slot);
                }
            }
        }
        if let Some(key) = key {
            inner
                .names
                .entry((ns.to_owned(), key.clone()))
                .or_default()
                .insert(name.to_owned());
            inner.key_of.insert(object, key);
        }
    }

    fn names(&self, ns: &str, key: &str) -> Vec<String> {
        let inner = self.inner.read().expect("index lock");
        inner
            .names
            .get(&(ns.to_owned(), key.to_owned()))
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Passes a change on only when the object's spec or deletion state changed since last
/// seen, or it is new or gone. Used where one parent fans out to many children, so that a
/// parent's status writes never trigger its children: children depend on parents' specs and
/// existence, never on their status.
#[derive(Default)]
struct SpecChanges {
    seen: Mutex<HashMap<String, SpecState>>,
}

/// (generation, being deleted) of an object.
type SpecState = (Option<i64>, bool);

impl SpecChanges {
    fn changed<K: Resource>(&self, change: &Change<'_, K>) -> bool {
        let meta = change.obj.meta();
        let key = meta.uid.clone().unwrap_or_default();
        let mut seen = self.seen.lock().expect("SpecChanges lock");
        if change.deleted {
            seen.remove(&key);
            return true;
        }
        let state = (meta.generation, meta.deletion_timestamp.is_some());
        seen.insert(key, state) != Some(state)
    }
}

/// The watch stream of a primary kind: updates its store (without managedFields, which the
/// operator never reads), marks readiness, fans out to dependents, and yields the objects
/// that trigger the kind's own reconciles.
fn primary_stream<K>(
    client: &Client,
    namespace: Option<&str>,
    writer: Writer<K>,
    readiness: Arc<Readiness>,
    index: usize,
    fan_out: impl Fn(Change<'_, K>) + Send + Sync + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api::<K>(client, namespace), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|obj| obj.meta_mut().managed_fields = None)
        .reflect(writer)
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                readiness.mark(index);
            }
            if let Some(change) = change(event) {
                fan_out(change);
            }
        })
        .applied_objects()
}

impl Controllers {
    pub fn new(client: &Client, namespace: Option<&str>) -> Self {
        let (gate, ready) = tokio::sync::watch::channel(false);
        let readiness = Arc::new(Readiness {
            synced: Mutex::new([false; KINDS]),
            gate,
        });
        let (org_reader, org_writer) = reflector::store();
        let (account_reader, account_writer) = reflector::store();
        let (user_reader, user_writer) = reflector::store();
        let (binding_reader, binding_writer) = reflector::store();
        let (safelist_reader, safelist_writer) = reflector::store();
        let (secret_reader, secret_writer) = reflector::store();
        let stores = Stores {
            organizations: org_reader.clone(),
            accounts: account_reader.clone(),
            users: user_reader.clone(),
            role_bindings: binding_reader.clone(),
            safelists: safelist_reader.clone(),
            secrets: secret_reader,
            emails: Arc::default(),
            bindings_by_user: Arc::default(),
            ready,
        };
        let (org_tx, org_rx) = unbounded();
        let (account_tx, account_rx) = unbounded();
        let (user_tx, user_rx) = unbounded();
        let (binding_tx, binding_rx) = unbounded();
        let (safelist_tx, safelist_rx) = unbounded();
        let triggers = Triggers {
            organizations: org_tx,
            accounts: account_tx,
            users: user_tx,
            role_bindings: binding_tx,
            safelists: safelist_tx,
        };

        let org_stream = primary_stream(
            client,
            namespace,
            org_writer,
            readiness.clone(),
            0,
            fan_out_organization(&stores, &triggers),
        );
        let account_stream = primary_stream(
            client,
            namespace,
            account_writer,
            readiness.clone(),
            1,
            fan_out_account(&stores, &triggers),
        );
        let user_stream = primary_stream(
            client,
            namespace,
            user_writer,
            readiness.clone(),
            2,
            fan_out_user(&stores, &triggers),
        );
        let binding_stream = primary_stream(
            client,
            namespace,
            binding_writer,
            readiness.clone(),
            3,
            fan_out_role_binding(&stores, &triggers),
        );
        let safelist_stream = primary_stream(
            client,
            namespace,
            safelist_writer,
            readiness,
            4,
            fan_out_safelist(&stores, &triggers),
        );

        fn controller<K>(
            stream: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
            reader: Store<K>,
            rx: UnboundedReceiver<ObjectRef<K>>,
        ) -> Controller<K>
        where
            K: Resource<DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            Controller::for_stream(stream, reader).reconcile_on(rx.boxed())
        }
        Self {
            organizations: controller(org_stream, org_reader, org_rx),
            accounts: controller(account_stream, account_reader, account_rx),
            users: controller(user_stream, user_reader, user_rx),
            role_bindings: controller(binding_stream, binding_reader, binding_rx),
            safelists: controller(safelist_stream, safelist_reader, safelist_rx),
            secrets: secret_stream(client, namespace, secret_writer, &triggers),
            stores,
        }
    }
}

/// The watch of the operator's own Secrets (by label, metadata only: their values are never
/// cached): it keeps the Secret cache and triggers the owner of a Secret that changes or goes.
fn secret_stream(
    client: &Client,
    namespace: Option<&str>,
    writer: Writer<PartialObjectMeta<Secret>>,
    triggers: &Triggers,
) -> futures::future::BoxFuture<'static, ()> {
    let triggers = triggers.clone();
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let stream = watcher(api::<PartialObjectMeta<Secret>>(client, namespace), config)
        .default_backoff()
        .modify(|obj| obj.metadata.managed_fields = None)
        .reflect(writer)
        .for_each(move |event| {
            if let Ok(Some(change)) = event.as_ref().map(change) {
                let secret = change.obj;
                let ns = secret.metadata.namespace.clone().unwrap_or_default();
                for owner in secret
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| r.controller == Some(true))
                {
                    match owner.kind.as_str() {
                        "Organization" => send_named(&triggers.organizations, &ns, &owner.name),
                        "CEUser" => send_named(&triggers.users, &ns, &owner.name),
                        _ => {}
                    }
                }
            }
            futures::future::ready(())
        });
    futures::FutureExt::boxed(stream)
}

/// Organization changes: its accounts re-resolve it, its users take its matrix and secret
/// settings, its safelists its link; a super-organization's members (in any namespace) and
/// their safelists take its denylist, and a member's super-organization recounts conflicts.
fn fan_out_organization(
    stores: &Stores,
    triggers: &Triggers,
) -> impl Fn(Change<'_, Organization>) + Send + Sync + 'static {
    let (stores, triggers, specs) = (stores.clone(), triggers.clone(), SpecChanges::default());
    move |change| {
        let org = change.obj;
        let Some(ns) = org.namespace() else { return };
        if !specs.changed(&change) {
            return;
        }
        let name = org.name_any();
        send(&triggers.accounts, stores.accounts_of(&ns, &name));
        send(&triggers.users, stores.users_of(&ns, &name));
        send(&triggers.safelists, stores.safelists_of(&ns, &name));
        for member in stores.members_of(&ns, &name) {
            let member_ns = member.namespace().unwrap_or_default();
            send(&triggers.safelists, stores.safelists_of(&member_ns, &member.name_any()));
            send(&triggers.organizations, [member]);
        }
        if let Some(parent) = &org.spec.super_organization_ref {
            send_named(&triggers.organizations, &parent.namespace, &parent.name);
        }
    }
}

/// Account changes: the organization counts it and resolves its default; other declared
/// defaults may change rank; its users and their bindings follow its default-ness.
fn fan_out_account(stores: &Stores, triggers: &Triggers) -> impl Fn(Change<'_, Account>) + Send + Sync + 'static {
    let (stores, triggers, specs) = (stores.clone(), triggers.clone(), SpecChanges::default());
    move |change| {
        let account = change.obj;
        let Some(ns) = account.namespace() else {
            return;
        };
        let org = &account.spec.organization_ref.name;
        send_named(&triggers.organizations, &ns, org);
        let name = account.name_any();
        send(
            &triggers.accounts,
            stores
                .accounts_of(&ns, org)
                .into_iter()
                .filter(|a| a.spec.default && a.name_any() != name),
        );
        if specs.changed(&change) {
            let users = stores.users_of_account(&ns, &name);
            for user in &users {
                send(&triggers.role_bindings, stores.bindings_of_user(&ns, &user.name_any()));
            }
            send(&triggers.users, users);
        }
    }
}

/// User changes: its organization and account count it; users sharing its e-mail re-decide
/// who holds it; its bindings re-resolve it.
fn fan_out_user(stores: &Stores, triggers: &Triggers) -> impl Fn(Change<'_, CEUser>) + Send + Sync + 'static {
    let (stores, triggers, specs) = (stores.clone(), triggers.clone(), SpecChanges::default());
    move |change| {
        let user = change.obj;
        let Some(ns) = user.namespace() else { return };
        let name = user.name_any();
        stores.emails.update(
            &ns,
            &name,
            (!change.deleted).then(|| user.spec.email.to_ascii_lowercase()),
        );
        send_named(&triggers.accounts, &ns, &user.spec.account_ref.name);
        if let Some(org) = stores.organization_of_user(user) {
            send_named(&triggers.organizations, &ns, &org);
            send(
                &triggers.users,
                stores
                    .users_with_email(&ns, &org, &user.spec.email)
                    .into_iter()
                    .filter(|u| u.name_any() != name),
            );
        }
        if specs.changed(&change) {
            send(&triggers.role_bindings, stores.bindings_of_user(&ns, &name));
        }
    }
}

/// RoleBinding changes: the user's roles, and the organization's AdminPresent.
fn fan_out_role_binding(
    stores: &Stores,
    triggers: &Triggers,
) -> impl Fn(Change<'_, RoleBinding>) + Send + Sync + 'static {
    let (stores, triggers) = (stores.clone(), triggers.clone());
    move |change| {
        let binding = change.obj;
        let Some(ns) = binding.namespace() else {
            return;
        };
        let user = &binding.spec.user_ref.name;
        stores
            .bindings_by_user
            .update(&ns, &binding.name_any(), (!change.deleted).then(|| user.clone()));
        send_named(&triggers.users, &ns, user);
        if let Some(org) = stores.user(&ns, user).and_then(|u| stores.organization_of_user(&u)) {
            send_named(&triggers.organizations, &ns, &org);
        }
    }
}

/// Safelist changes: the organization's visibility, which of its safelists is in effect,
/// and its super-organization's conflict report.
fn fan_out_safelist(
    stores: &Stores,
    triggers: &Triggers,
) -> impl Fn(Change<'_, ElementSafelist>) + Send + Sync + 'static {
    let (stores, triggers) = (stores.clone(), triggers.clone());
    move |change| {
        let safelist = change.obj;
        let Some(ns) = safelist.namespace() else { return };
        let org = &safelist.spec.organization_ref.name;
        send_named(&triggers.organizations, &ns, org);
        let name = safelist.name_any();
        send(
            &triggers.safelists,
            stores
                .safelists_of(&ns, org)
                .into_iter()
                .filter(|s| s.name_any() != name),
        );
        if let Some(parent) = stores
            .organization(&ns, org)
            .and_then(|o| o.spec.super_organization_ref.clone())
        {
            send_named(&triggers.organizations, &parent.namespace, &parent.name);
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
    /// Whether every cache has its initial list.
    pub fn is_synced(&self) -> bool {
        *self.ready.borrow()
    }

    /// Objects per kind by the status of their Ready condition ("True", "False", "Unknown").
    pub fn ready_counts(&self) -> Vec<(&'static str, &'static str, usize)> {
        fn count<K>(kind: &'static str, store: &Store<K>, out: &mut Vec<(&'static str, &'static str, usize)>)
        where
            K: Resource<DynamicType = ()> + crate::api::HasConditions + Clone + 'static,
        {
            let mut counts = [0usize; 3];
            for obj in store.state() {
                let i = match obj
                    .condition(crate::model::conditions::READY)
                    .map(|c| c.status.as_str())
                {
                    Some("True") => 0,
                    Some("False") => 1,
                    _ => 2,
                };
                counts[i] += 1;
            }
            for (status, n) in ["True", "False", "Unknown"].into_iter().zip(counts) {
                out.push((kind, status, n));
            }
        }
        let mut out = Vec::new();
        count("Organization", &self.organizations, &mut out);
        count("Account", &self.accounts, &mut out);
        count("CEUser", &self.users, &mut out);
        count("RoleBinding", &self.role_bindings, &mut out);
        count("ElementSafelist", &self.safelists, &mut out);
        out
    }

    /// Bounded, so that a cache that cannot sync (say, RBAC forbids listing a kind) fails
    /// reconciles visibly and retries, and never holds up a graceful shutdown.
    pub async fn ready(&self) -> Result<(), super::Error> {
        let mut ready = self.ready.clone();
        match tokio::time::timeout(CACHE_SYNC_WAIT, ready.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(super::Error::CachesNotSynced),
        }
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
        let accounts: std::collections::HashSet<String> =
            self.accounts_of(ns, org).iter().map(|a| a.name_any()).collect();
        select(&self.users, |u| {
            in_namespace(u, ns) && accounts.contains(&u.spec.account_ref.name)
        })
    }

    pub fn bindings_of_user(&self, ns: &str, user: &str) -> Vec<Arc<RoleBinding>> {
        self.bindings_by_user
            .names(ns, user)
            .iter()
            .filter_map(|name| self.role_bindings.get(&ObjectRef::new(name).within(ns)))
            .filter(|b| b.spec.user_ref.name == user)
            .collect()
    }

    /// The users of organization `org` with this e-mail (compared case-insensitively).
    pub fn users_with_email(&self, ns: &str, org: &str, email: &str) -> Vec<Arc<CEUser>> {
        self.emails
            .names(ns, &email.to_ascii_lowercase())
            .iter()
            .filter_map(|name| self.user(ns, name))
            .filter(|u| u.spec.email.eq_ignore_ascii_case(email))
            .filter(|u| self.organization_of_user(u).as_deref() == Some(org))
            .collect()
    }

    /// The cached metadata of one of the operator's own Secrets.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Arc<PartialObjectMeta<Secret>>> {
        self.secrets.get(&ObjectRef::new(name).within(ns))
    }

    /// The org-admin RoleBindings of a namespace (to be judged by the caller).
    pub fn org_admin_bindings(&self, ns: &str) -> Vec<Arc<RoleBinding>> {
        select(&self.role_bindings, |b| {
            in_namespace(b, ns) && b.spec.role == crate::api::Role::OrgAdmin
        })
    }

    pub fn safelists_of(&self, ns: &str, org: &str) -> Vec<Arc<ElementSafelist>> {
        select(&self.safelists, |s| {
            in_namespace(s, ns) && s.spec.organization_ref.name == org
        })
    }

    /// The safelist in effect for an organization: the oldest one naming it.
    pub fn effective_safelist(&self, ns: &str, org: &str) -> Option<Arc<ElementSafelist>> {
        self.safelists_of(ns, org)
            .into_iter()
            .min_by(|a, b| tenancy::by_age(a.as_ref(), b.as_ref()))
    }

    /// The organizations (in any watched namespace) that name `ns/name` as super-organization.
    pub fn members_of(&self, ns: &str, name: &str) -> Vec<Arc<Organization>> {
        select(&self.organizations, |o| {
            o.spec
                .super_organization_ref
                .as_ref()
                .is_some_and(|r| r.namespace == ns && r.name == name)
        })
    }

    /// The organization a user belongs to, through its account.
    pub fn organization_of_user(&self, user: &CEUser) -> Option<String> {
        let ns = user.namespace()?;
        self.account(&ns, &user.spec.account_ref.name)
            .map(|a| a.spec.organization_ref.name.clone())
    }
}
