//! The API: custom resource types of group `ce.tenancy.io`, version `v1alpha1`.
//!
//! Doc comments here become `kubectl explain` text; schema attributes are the checks the
//! API server makes on one object alone.

// Before the kinds' modules, which use it.
/// `HasConditions` and `HasStatus` of a kind, by its status type: each kind's file says it.
macro_rules! has_status {
    ($($kind:ty => $status:ty),*) => {$(
        impl $crate::api::HasConditions for $kind {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
            }
        }

        impl $crate::api::StatusConditions for $status {
            fn conditions_mut(&mut self) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
                &mut self.conditions
            }
        }

        impl $crate::api::HasStatus for $kind {
            type Status = $status;

            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }

            fn set_status(&mut self, status: $status) {
                self.status = Some(status);
            }
        }
    )*};
}

mod account;
mod common;
mod element_safelist;
mod organization;
mod role_binding;
mod user;

#[cfg(test)]
mod tests;

pub use account::*;
pub use common::*;
pub use element_safelist::*;
pub use organization::*;
pub use role_binding::*;
pub use user::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    macro_rules! crds {
        ($($kind:ident => $field:ident,)*) => {
            [$($kind::crd(),)*]
        };
    }
    crate::kinds::for_each_kind!(crds)
        .into_iter()
        .map(unreconciled_reads_in_progress)
        .collect()
}

/// `status` defaults to `{observedGeneration: 0}`, which the API server fills in whenever an
/// object has no status: an object the operator has not reconciled yet then reads
/// `observedGeneration` 0 against `generation` 1 or more, which kstatus (Flux, Helm `--wait`,
/// kpt) reads as InProgress, even while the operator is down, rather than Current.
fn unreconciled_reads_in_progress(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(JSON(serde_json::json!({"observedGeneration": 0})));
        }
    }
    crd
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The status conditions of any of the five kinds.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];

    /// The condition of this type, if reported.
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of this type has this status ("True"/"False") and reason.
    fn has_condition(&self, type_: &str, status: &str, reason: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == status && c.reason == reason)
    }
}

/// The conditions inside the status of any of the five kinds, for the model to update.
pub trait StatusConditions {
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

/// The status of any of the five kinds.
pub trait HasStatus: HasConditions {
    type Status: StatusConditions
        + Clone
        + Default
        + PartialEq
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;

    fn status(&self) -> Option<&Self::Status>;

    fn set_status(&mut self, status: Self::Status);
}
