//! The act step: carries out a decision's actions, publishes its events, and writes its
//! status if it changed. The one place the controllers write to the cluster (Secrets aside,
//! in `secret.rs`).

use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams},
    runtime::controller::Action as Requeue,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tracing::{debug, info};

use super::{
    Context, Reconciler,
    error::{Error, ObjectName, Result, already_exists, namespace_terminating, not_found},
    secret::{self, SecretDone},
    write::{controller_owner, post_params},
};
use crate::{
    api::{Account, AccountSpec, CEUser, CEUserSpec, ElementSafelist, LocalRef, Role, RoleBinding, RoleBindingSpec},
    cache::{Cached, canonical_status, status_hash},
    model::{
        Action, Child, Decision,
        names::{FINALIZER, MANAGER},
        secrets::SecretFacts,
    },
};

/// How a decision ended.
pub enum Outcome {
    /// Carried out; look again after this.
    Done(Requeue),
    /// A Secret of the generated name exists that the caches do not show (someone else's):
    /// decide again, knowing it.
    SecretExists(Box<SecretFacts>),
}

/// The name of an object for errors and logs.
pub fn object_name<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectName {
    ObjectName {
        kind: kind_of::<K>(),
        namespace: obj.meta().namespace.clone().unwrap_or_default(),
        name: obj.meta().name.clone().unwrap_or_default(),
    }
}

/// The kind of `K`, as a static string (for labels and errors).
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(kind) => Box::leak(kind.into_boxed_str()),
    }
}

fn api_in<K>(ctx: &Context, ns: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), ns)
}

/// When an object the caches still show in a deleted namespace is looked at again.
const DELETED_NAMESPACE_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Carries out `decision` for `obj`.
pub async fn carry_out<K: Reconciler>(ctx: &Context, obj: &K, decision: Decision<K::Status>) -> Result<Outcome> {
    let object = object_name(obj);
    if ctx.cache.namespace_terminating(&object.namespace) {
        // The namespace controller removes everything: only let deletions complete. A status
        // or an event written now is work for the API server that slows the deletion down.
        for action in decision.actions {
            if matches!(action, Action::RemoveFinalizer) {
                execute(ctx, obj, &object, action).await?;
            }
        }
        // Deleted already: its objects' deletions are on their way. A namespace of the same
        // name created since may not have reached the caches yet: look again then.
        if ctx.cache.namespace_deleted(&object.namespace) {
            return Ok(Outcome::Done(Requeue::requeue(DELETED_NAMESPACE_RECHECK)));
        }
        return Ok(Outcome::Done(Requeue::await_change()));
    }
    match carry_out_in_place(ctx, obj, &object, decision).await {
        Err(e) if e.api_error().is_some_and(namespace_terminating) => {
            // The namespace controller removes everything: nothing to create, nothing to retry.
            if ctx
                .terminating_namespaces
                .lock()
                .expect("lock")
                .insert(object.namespace.clone())
            {
                info!(namespace = %object.namespace, "namespace is being deleted; the operator creates nothing in it");
            }
            Ok(Outcome::Done(Requeue::await_change()))
        }
        // Deleted (or its namespace) after the caches showed it, before this write: the
        // watch brings the deletion; nothing failed and nothing is left to do.
        Err(e) if e.object_gone() => {
            debug!(object = %object, step = e.metric_label(), "gone before it was written to");
            Ok(Outcome::Done(Requeue::await_change()))
        }
        result => result,
    }
}

/// The actions, the events and the status, in that order.
async fn carry_out_in_place<K: Reconciler>(
    ctx: &Context,
    obj: &K,
    object: &ObjectName,
    decision: Decision<K::Status>,
) -> Result<Outcome> {
    // A correction held back (`corrections`): look again when it may be made.
    let mut held: Option<std::time::Duration> = None;
    for action in decision.actions {
        match execute(ctx, obj, object, action).await? {
            Step::Next => {}
            Step::Held(wait) => held = sooner(held, wait),
            Step::SecretExists(facts) => return Ok(Outcome::SecretExists(facts)),
        }
    }
    for event in decision.events {
        ctx.events.publish(obj.object_ref(&()), event);
    }
    if let Some(wait) = write_status(ctx, obj, &decision.status).await? {
        held = sooner(held, wait);
    }
    Ok(Outcome::Done(
        [decision.requeue_after, held]
            .into_iter()
            .flatten()
            .min()
            .map_or_else(Requeue::await_change, Requeue::requeue),
    ))
}

fn sooner(a: Option<std::time::Duration>, b: std::time::Duration) -> Option<std::time::Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

enum Step {
    Next,
    SecretExists(Box<SecretFacts>),
    /// A correction held back for this long.
    Held(std::time::Duration),
}

async fn execute<K: Reconciler>(ctx: &Context, obj: &K, object: &ObjectName, action: Action) -> Result<Step> {
    let ns = object.namespace.as_str();
    match action {
        Action::AddFinalizer => {
            let mut finalizers = obj.finalizers().to_vec();
            finalizers.push(FINALIZER.into());
            patch_finalizers(ctx, obj, finalizers)
                .await
                .map_err(|source| Error::AddFinalizer {
                    object: object.clone(),
                    source,
                })?;
        }
        Action::RemoveFinalizer => {
            let finalizers = obj.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
            match patch_finalizers(ctx, obj, finalizers).await {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(source) => {
                    return Err(Error::RemoveFinalizer {
                        object: object.clone(),
                        source,
                    });
                }
            }
        }
        Action::CreateDefaultAccount { name } => {
            let account = Account {
                metadata: owned_meta(&name, obj),
                spec: AccountSpec {
                    organization_ref: LocalRef::new(obj.name_any()),
                    display_name: Some("Company Default Account".into()),
                    default: true,
                    allow_cascading_deletion: false,
                },
                status: None,
            };
            create(ctx, ns, account)
                .await
                .map_err(|source| Error::CreateDefaultAccount {
                    object: object.clone(),
                    account: name,
                    source,
                })?;
        }
        Action::CreateOwner {
            name,
            account,
            email,
            display_name,
        } => {
            let user = CEUser {
                metadata: owned_meta(&name, obj),
                spec: CEUserSpec {
                    account_ref: LocalRef::new(account),
                    email,
                    display_name,
                },
                status: None,
            };
            create(ctx, ns, user).await.map_err(|source| Error::CreateOwner {
                object: object.clone(),
                user: name,
                source,
            })?;
        }
        Action::CreateOwnerBinding { name, user } => {
            let binding = RoleBinding {
                metadata: owned_meta(&name, obj),
                spec: RoleBindingSpec {
                    user_ref: LocalRef::new(user),
                    role: Role::OrgAdmin,
                    override_system_role: false,
                },
                status: None,
            };
            create(ctx, ns, binding)
                .await
                .map_err(|source| Error::CreateOwnerBinding {
                    object: object.clone(),
                    binding: name,
                    source,
                })?;
        }
        Action::PinToUser { user, uid } => {
            let owner = OwnerReference {
                api_version: CEUser::api_version(&()).into_owned(),
                kind: CEUser::kind(&()).into_owned(),
                name: user,
                uid,
                ..Default::default()
            };
            pin_to_user(ctx, obj, owner).await.map_err(|source| Error::PinToUser {
                object: object.clone(),
                source,
            })?;
        }
        Action::Delete(child) => {
            let (result, label) = match &child {
                Child::Account(name) => (delete::<Account>(ctx, ns, name).await, format!("account {name}")),
                Child::User(name) => (delete::<CEUser>(ctx, ns, name).await, format!("user {name}")),
                Child::RoleBinding(name) => (delete::<RoleBinding>(ctx, ns, name).await, format!("binding {name}")),
                Child::Safelist(name) => (
                    delete::<ElementSafelist>(ctx, ns, name).await,
                    format!("safelist {name}"),
                ),
            };
            result.map_err(|source| Error::DeleteChild {
                object: object.clone(),
                child: label,
                source,
            })?;
        }
        Action::Secret { name, labels, plan } => {
            match secret::carry_out(ctx, obj, object, &name, labels, plan).await? {
                SecretDone::Done => {}
                SecretDone::Exists(facts) => return Ok(Step::SecretExists(facts)),
                SecretDone::Held(wait) => return Ok(Step::Held(wait)),
            }
        }
    }
    Ok(Step::Next)
}

fn owned_meta<K: Resource<DynamicType = ()>>(name: &str, owner: &K) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        owner_references: controller_owner(owner).map(|r| vec![r]),
        ..Default::default()
    }
}

/// Creates an object the operator generates; one that exists already is fine (the caches
/// will show whose it is). What was created is expected in the caches until they show it.
async fn create<K>(ctx: &Context, ns: &str, obj: K) -> Result<(), kube::Error>
where
    K: Cached + Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned,
{
    match api_in::<K>(ctx, ns).create(&post_params(), &obj).await {
        Ok(created) => {
            ctx.cache.anticipate(created);
            Ok(())
        }
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete<K>(ctx: &Context, ns: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api_in::<K>(ctx, ns).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the finalizers, guarded by the finalizers the object had (a JSON patch `test`), so that
/// a concurrent change of them is not lost. Not by the resourceVersion: any other change in
/// between (the namespace controller deleting a whole namespace, a label) would make it fail
/// with a conflict and be retried, where nothing it guards had changed.
async fn patch_finalizers<K: Reconciler>(ctx: &Context, obj: &K, finalizers: Vec<String>) -> Result<(), kube::Error> {
    patch_list(ctx, obj, "finalizers", obj.meta().finalizers.as_deref(), finalizers).await
}

/// Adds `owner` to the object's owner references.
async fn pin_to_user<K: Reconciler>(ctx: &Context, obj: &K, owner: OwnerReference) -> Result<(), kube::Error> {
    let had = obj.meta().owner_references.as_deref();
    let owners: Vec<OwnerReference> = had.into_iter().flatten().cloned().chain([owner]).collect();
    patch_list(ctx, obj, "ownerReferences", had, owners).await
}

/// Sets the metadata list `field` (which the object showed as `had`) to `value`, unless
/// someone changed it meanwhile: a JSON patch that tests the list first.
async fn patch_list<K: Reconciler, T: Serialize>(
    ctx: &Context,
    obj: &K,
    field: &str,
    had: Option<&[T]>,
    value: Vec<T>,
) -> Result<(), kube::Error> {
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let path = format!("/metadata/{field}");
    let ops = match had {
        // No list to test (a missing path fails a `test`): guarded by the resourceVersion, as
        // `add` would replace a list someone else created meanwhile.
        None | Some([]) => json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
            {"op": "add", "path": path, "value": value},
        ]),
        Some(had) => json!([
            {"op": "test", "path": path, "value": had},
            {"op": "replace", "path": path, "value": value},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a well-formed JSON patch");
    api_in::<K>(ctx, &ns)
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map(drop)
}

/// Writes `status` with server-side apply, but only if it differs from what the object
/// reports (and from what this process wrote a moment ago): at rest the operator makes no
/// writes. Its echo is recorded, so that it does not wake the object again.
///
/// A write over a status someone else changed is a correction: the same correction again
/// and again is spaced out (`corrections`). Returns how long one is held back, if it is.
async fn write_status<K: Reconciler>(
    ctx: &Context,
    obj: &K,
    status: &K::Status,
) -> Result<Option<std::time::Duration>> {
    let hash = status_hash(status);
    let (unseen, now) = ctx.cache.status_now(obj);
    if !status_changed(now.as_deref().unwrap_or(obj).status(), unseen, status) {
        return Ok(None);
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let key = format!("{ns}/{}", obj.name_any());
    // Held while the same correction was made a moment ago, whether or not the watch has
    // shown the other writer's change yet.
    if let Some(wait) = ctx.corrections.wait(kind_of::<K>(), &key, hash) {
        return Ok(Some(wait));
    }
    let correction = ctx.cache.status_is_foreign(&uid);
    let patch = json!({
        "apiVersion": <K as Resource>::api_version(&()),
        "kind": <K as Resource>::kind(&()),
        "status": status,
    });
    let written = api_in::<K>(ctx, &ns)
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::WriteStatus {
            object: object_name(obj),
            source,
        })?;
    if let (Some(uid), Some(rv)) = (
        written.meta().uid.as_deref(),
        written.meta().resource_version.as_deref(),
    ) {
        ctx.cache
            .note_own_write(uid, rv, hash, std::sync::Arc::new(status.clone()));
    }
    ctx.cache.status_written(&uid);
    if let Some(next) = ctx.corrections.made(kind_of::<K>(), &key, hash, correction)
        && next > std::time::Duration::from_secs(1)
    {
        info!(object = %key, kind = kind_of::<K>(), next_in_s = next.as_secs(), "another writer keeps changing this status; corrections are spaced out");
    }
    ctx.metrics
        .status_writes
        .get_or_create(&crate::metrics::ControllerLabels {
            controller: kind_of::<K>(),
        })
        .inc();
    Ok(None)
}

/// Whether `desired` differs from what the object holds now: this process's own latest write
/// if the cache has not seen it yet (`unseen`, a status hash: the cached status is then
/// older), else the cached status. Compared in canonical form (empty is absent).
fn status_changed<S: Serialize>(cached: Option<&S>, unseen: Option<u64>, desired: &S) -> bool {
    match unseen {
        Some(written) => written != status_hash(desired),
        None => canonical_status(&cached) != canonical_status(desired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CEUserStatus, Privilege, PrivilegeScopes, Role};

    fn roles(roles: &[Role]) -> CEUserStatus {
        CEUserStatus {
            roles: roles.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_is_compared_with_the_own_write_the_cache_has_not_seen() {
        let before = roles(&[Role::DefaultUser]);
        let bound = roles(&[Role::Admin, Role::DefaultUser]);
        // Bound (written, echo pending), then revoked at once: the decision equals the stale
        // cached status, but the object holds the write: it must be written again.
        assert!(status_changed(Some(&before), Some(status_hash(&bound)), &before));
        // The same write again while its echo is pending: nothing to do.
        assert!(!status_changed(Some(&before), Some(status_hash(&bound)), &bound));
        // No pending write: compared with the cache.
        assert!(!status_changed(Some(&before), None, &before));
        assert!(status_changed(Some(&before), None, &bound));
        assert!(status_changed(None, None, &bound));
    }

    #[test]
    fn a_status_that_differs_only_in_empty_fields_is_not_written() {
        // What the API server stores for an emptied field (null), against an empty decision.
        let stored: CEUserStatus = serde_json::from_value(serde_json::json!({"privilegeScopes": null})).unwrap();
        let decided = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes::default()),
            ..Default::default()
        };
        assert!(!status_changed(Some(&stored), None, &decided));
        let held = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes {
                organization: vec![],
                account: vec![Privilege::ViewActivity],
            }),
            ..Default::default()
        };
        assert!(status_changed(Some(&stored), None, &held));
    }
}
