//! Test fixtures of the model's unit tests: objects as the caches would hold them, in the
//! namespace `tenants`, with creation times and uids.

use std::sync::Arc;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
    jiff::Timestamp,
};
use kube::Resource;

use crate::api::{
    Account, AccountSpec, CEUser, CEUserSpec, ElementSafelist, ElementSafelistSpec, LocalRef, NamespacedRef,
    Organization, OrganizationSpec, Role, RoleBinding, RoleBindingSpec, Whitelabel,
};

pub const NS: &str = "tenants";

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Placed in `tenants`, with a uid `uid-<name>` and created at second 1.
fn placed<K: Resource>(mut k: K) -> K {
    let meta = k.meta_mut();
    meta.namespace = Some(NS.into());
    meta.uid = Some(format!("uid-{}", meta.name.clone().unwrap_or_default()));
    meta.creation_timestamp = Some(Time(at(1)));
    meta.generation = Some(1);
    k
}

pub fn aged<K: Resource>(mut k: K, secs: i64) -> K {
    k.meta_mut().creation_timestamp = Some(Time(at(secs)));
    k
}

pub fn in_namespace<K: Resource>(mut k: K, ns: &str) -> K {
    k.meta_mut().namespace = Some(ns.into());
    k
}

/// Marks `k` as generated for (controlled by) `owner`.
pub fn owned_by<K: Resource, O: Resource<DynamicType = ()>>(mut k: K, owner: &O) -> K {
    k.meta_mut().owner_references = Some(vec![OwnerReference {
        api_version: O::api_version(&()).into(),
        kind: O::kind(&()).into(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    k
}

pub fn deleting<K: Resource>(mut k: K) -> K {
    k.meta_mut().deletion_timestamp = Some(Time(at(50)));
    k
}

pub fn with_finalizer<K: Resource>(mut k: K) -> K {
    k.meta_mut().finalizers = Some(vec![crate::model::names::FINALIZER.into()]);
    k
}

pub fn org_spec() -> OrganizationSpec {
    serde_json::from_value(serde_json::json!({"displayName": "x"})).unwrap()
}

pub fn org(name: &str) -> Organization {
    placed(Organization::new(name, org_spec()))
}

pub fn org_with(name: &str, spec: serde_json::Value) -> Organization {
    placed(Organization::new(name, serde_json::from_value(spec).unwrap()))
}

pub fn org_linked(name: &str, parent_ns: &str, parent: &str) -> Organization {
    let mut o = org(name);
    o.spec.super_organization_ref = Some(NamespacedRef {
        namespace: parent_ns.into(),
        name: parent.into(),
    });
    o
}

/// A super-organization in namespace `partners`.
pub fn super_org(name: &str, allowed: &[&str], denied: &[&str]) -> Organization {
    let mut o = in_namespace(org(name), "partners");
    o.spec.whitelabel = Some(Whitelabel {
        allowed_namespaces: strings(allowed),
        element_denylist: strings(denied),
    });
    o
}

pub fn account(name: &str, org: &str, default: bool) -> Account {
    placed(Account::new(
        name,
        AccountSpec {
            organization_ref: LocalRef::new(org),
            display_name: None,
            default,
            allow_cascading_deletion: false,
        },
    ))
}

pub fn user(name: &str, account: &str, email: &str) -> CEUser {
    placed(CEUser::new(
        name,
        CEUserSpec {
            account_ref: LocalRef::new(account),
            email: email.into(),
            display_name: None,
        },
    ))
}

pub fn binding(name: &str, user: &str, role: Role, override_system_role: bool) -> RoleBinding {
    placed(RoleBinding::new(
        name,
        RoleBindingSpec {
            user_ref: LocalRef::new(user),
            role,
            override_system_role,
        },
    ))
}

pub fn safelist(name: &str, org: &str, elements: &[&str]) -> ElementSafelist {
    placed(ElementSafelist::new(
        name,
        ElementSafelistSpec {
            organization_ref: LocalRef::new(org),
            elements: strings(elements),
        },
    ))
}

pub fn arcs<K: Clone>(items: &[K]) -> Vec<Arc<K>> {
    items.iter().cloned().map(Arc::new).collect()
}
