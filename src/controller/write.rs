//! What every write of the controllers carries: the operator's field manager, and the
//! controller reference of what it generates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, api::PostParams};

use crate::model::names::MANAGER;

/// Parameters of every create: the operator's field manager.
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// The controller ownerReference of an object the operator generates for `owner`. It
/// blocks the owner's foreground deletion until the object is gone, as the garbage
/// collector expects of controlled objects.
pub fn controller_owner<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut reference = owner.controller_owner_ref(&())?;
    reference.block_owner_deletion = Some(true);
    Some(reference)
}
