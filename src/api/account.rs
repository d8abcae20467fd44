//! `Account`: a group of users within one organization, isolated from every other account.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::LocalRef;

/// Desired state of an Account.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ce.tenancy.io",
    version = "v1alpha1",
    kind = "Account",
    namespaced,
    status = "AccountStatus",
    shortname = "ceacct",
    category = "ce",
    derive = "PartialEq",
    doc = "An Account belongs to one Organization (in the same namespace) and holds users. Exactly one account per organization is its default account ('Company Default Account'); its users get the system role org, users of other accounts get default-user.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it is used as a label value"),
    printcolumn(name = "Organization", type_ = "string", json_path = ".spec.organizationRef.name", description = "The organization the account belongs to"),
    printcolumn(name = "Default", type_ = "boolean", json_path = ".status.default", description = "Whether this is the organization's default account"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.users", description = "Number of users"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the account is ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) ready", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.default == oldSelf.default").message("default is immutable: an account cannot become or stop being the default account"))]
pub struct AccountSpec {
    /// The organization this account belongs to, in the same namespace. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("organizationRef is immutable"))]
    pub organization_ref: LocalRef,

    /// Human-readable name of the account, e.g. "Acme EU".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// Whether this is the organization's default account. At most one per organization:
    /// a second one is reported DuplicateDefaultAccount and treated as an ordinary account.
    /// If none is declared, the operator creates one. Default false; immutable.
    #[serde(default)]
    pub default: bool,

    /// When true, deleting the account also deletes its users and their role bindings.
    /// When false (the default), deletion waits, with a DeletionBlocked condition naming
    /// what remains, until they are gone.
    #[serde(default)]
    pub allow_cascading_deletion: bool,
}

/// Observed state of an Account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// Conditions: Ready, DeletionBlocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the organization the account was resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,

    /// Whether this account is the organization's default account, as resolved by the
    /// operator (a duplicate declared default is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,

    /// Number of users of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i32>,
}

has_status!(Account => AccountStatus);
