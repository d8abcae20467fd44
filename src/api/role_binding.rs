//! `RoleBinding`: assigns a role to a user.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalRef, Role};

/// Desired state of a RoleBinding: one role for one user. Deleting the binding revokes the
/// role at once.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ce.tenancy.io",
    version = "v1alpha1",
    kind = "RoleBinding",
    namespaced,
    status = "RoleBindingStatus",
    shortname = "cerb",
    category = "ce",
    derive = "PartialEq",
    doc = "A RoleBinding assigns a role to a CEUser in the same namespace. org-admin requires a user of the default account; admin applies to the user's own account; the system roles org and default-user may be bound by hand only with overrideSystemRole.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it is used as a label value"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userRef.name", description = "The user the role is bound to"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role", description = "The role"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the binding is in effect"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) in effect", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!self.overrideSystemRole || self.role == 'org' || self.role == 'default-user'").message("overrideSystemRole applies only to the system roles org and default-user"))]
pub struct RoleBindingSpec {
    /// The user who gets the role, in the same namespace. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("userRef is immutable"))]
    pub user_ref: LocalRef,

    /// The role to assign: org-admin or admin (org and default-user are system-assigned and
    /// need overrideSystemRole). Immutable: bind another role with another RoleBinding.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("role is immutable"))]
    pub role: Role,

    /// Allows binding a system role (org or default-user) by hand, overriding the system's
    /// assignment. Discouraged: the operator accepts it with a Warning event. Default false.
    #[serde(default)]
    pub override_system_role: bool,
}

/// Where a bound role applies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RoleScope {
    /// The whole organization (org-admin, org).
    Organization,
    /// The user's own account (admin, default-user).
    Account,
}

/// Observed state of a RoleBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingStatus {
    /// Conditions: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Organization of the bound user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,

    /// Account of the bound user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,

    /// Where the role applies: Organization, or Account (the account above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RoleScope>,
}

has_status!(RoleBinding => RoleBindingStatus);
