//! `CEUser`: a user of one account, with a generated user secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{EMAIL_PATTERN, LocalRef, Privilege, Role, SecretRef};

/// Longest CEUser name: the generated Secret `<name>-user-secret` must fit in 63 characters.
pub const MAX_USER_NAME: usize = 51;

/// Desired state of a CEUser. An API caller authenticates with the pair (organization
/// secret, user secret).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ce.tenancy.io",
    version = "v1alpha1",
    kind = "CEUser",
    plural = "ceusers",
    namespaced,
    status = "CEUserStatus",
    shortname = "ceuser",
    category = "ce",
    derive = "PartialEq",
    doc = "A CEUser is a user of one Account (in the same namespace). The operator generates the user secret into a Secret, assigns the system role from the account (org in the default account, default-user elsewhere) and reports the user's effective roles and privileges.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 51").message("metadata.name must be at most 51 characters: the generated Secret <name>-user-secret must fit in 63"),
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountRef.name", description = "The account the user belongs to"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email", description = "The user's e-mail address"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".status.roles", description = "Effective roles"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the user is ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) ready", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CEUserSpec {
    /// The account this user belongs to, in the same namespace. Immutable: to move a user,
    /// create a new one (it gets a new secret).
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("accountRef is immutable"))]
    pub account_ref: LocalRef,

    /// E-mail address of the user; unique within the organization (a duplicate is reported
    /// DuplicateEmail on the newer user).
    #[schemars(length(min = 3, max = 254), regex(pattern = EMAIL_PATTERN))]
    pub email: String,

    /// Human-readable name of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
}

/// Observed state of a CEUser.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CEUserStatus {
    /// Conditions: Ready, SecretReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the organization the user was resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,

    /// Name of the account the user was resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,

    /// The role the system assigns from the account: org in the default account,
    /// default-user elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_role: Option<Role>,

    /// Effective roles: the system role (unless overridden) and the bound roles, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,

    /// Effective privileges: the union over the effective roles under the organization's
    /// privilege matrix, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<Privilege>,

    /// Where the privileges hold: organization-wide (through org-admin or org) or only in the
    /// user's own account (through admin or default-user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege_scopes: Option<PrivilegeScopes>,

    /// The Secret holding the user secret (key `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// First 16 hex digits of the SHA-256 of the current user secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_fingerprint: Option<String>,

    /// When the user secret was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,

    /// The value of the `ce.tenancy.io/rotate-secret` annotation the last rotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
}

/// Which of a user's privileges hold organization-wide and which only in its own account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct PrivilegeScopes {
    /// Held through org-admin or org: in every account of the organization. Sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organization: Vec<Privilege>,
    /// Held only through admin or default-user: in the user's own account. Sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account: Vec<Privilege>,
}

has_status!(CEUser => CEUserStatus);
