//! The API: custom resource types of group `ce.tenancy.io`, version `v1alpha1`.
//!
//! Doc comments here become `kubectl explain` text; schema attributes are the checks the
//! API server makes on one object alone.

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
    vec![
        Organization::crd(),
        Account::crd(),
        CEUser::crd(),
        RoleBinding::crd(),
        ElementSafelist::crd(),
    ]
}
