//! `ElementSafelist`: the elements an organization's accounts and users may see.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{ELEMENT_KEY_PATTERN, LocalRef};

/// Desired state of an ElementSafelist: when it exists, only safelisted elements are visible
/// to the organization's accounts and users, private ones included.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ce.tenancy.io",
    version = "v1alpha1",
    kind = "ElementSafelist",
    namespaced,
    status = "ElementSafelistStatus",
    shortname = "cesafelist",
    category = "ce",
    derive = "PartialEq",
    doc = "An ElementSafelist lists the elements (connectors, by key) that an Organization's accounts and users may see. One per organization. Elements denied by the organization's super-organization are never effective.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it is used as a label value"),
    printcolumn(name = "Organization", type_ = "string", json_path = ".spec.organizationRef.name", description = "The organization the safelist applies to"),
    printcolumn(name = "Elements", type_ = "string", json_path = ".status.effectiveElements", description = "Effective (visible) elements"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the safelist is in effect without conflicts"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) ready", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ElementSafelistSpec {
    /// The organization this safelist applies to, in the same namespace. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("organizationRef is immutable"))]
    pub organization_ref: LocalRef,

    /// Element keys (e.g. salesforce, hubspot) the organization may see. An empty list
    /// hides every element; no safelist at all shows every element not denied.
    #[serde(default)]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 63), regex(pattern = ELEMENT_KEY_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub elements: Vec<String>,
}

/// Observed state of an ElementSafelist.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElementSafelistStatus {
    /// Conditions: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The elements actually visible: the safelist minus what the super-organization
    /// denies, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_elements: Vec<String>,

    /// Safelisted elements that the super-organization denies (not effective), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

has_status!(ElementSafelist => ElementSafelistStatus);
