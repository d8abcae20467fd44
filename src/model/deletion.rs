//! A parent's deletion (an Organization, an Account): the operator's finalizer holds it
//! until its children are gone, and the operator deletes them itself when the parent
//! allows cascading deletion.

use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use super::{
    Action, Child, Decision,
    conditions::{self, ConditionType, Desired, Reason},
    has_finalizer,
};
use crate::api::StatusConditions;

/// DeletionBlocked of `parent` ("the account") that still has `children` ("users a, b").
pub fn blocked(parent: &str, cascading: bool, children: &str) -> Desired {
    if cascading {
        Desired::new(
            ConditionType::DeletionBlocked,
            Reason::DeletingChildren,
            format!("allowCascadingDeletion is set: deleting {children}"),
        )
    } else {
        Desired::new(
            ConditionType::DeletionBlocked,
            Reason::ChildrenExist,
            format!(
                "{parent} still has {children}; delete them, or set spec.allowCascadingDeletion: true to delete them with it"
            ),
        )
    }
}

/// The decision for a parent being deleted: with no child left (`blocked` None) it lets go
/// of its finalizer; otherwise it reports why it waits (a warning when that is new) and,
/// when it cascades, deletes `children`.
pub fn finalize<S: StatusConditions>(
    parent: &impl Resource,
    previous: S,
    blocked: Option<Desired>,
    cascading: bool,
    children: impl IntoIterator<Item = Child>,
    now: Timestamp,
) -> Decision<S> {
    let Some(blocked) = blocked else {
        return Decision::in_terminating_namespace(previous, has_finalizer(parent));
    };
    let mut status = previous;
    let reported = status.conditions_mut();
    let events = conditions::warnings(reported, std::slice::from_ref(&blocked));
    *reported = conditions::upsert(reported, &blocked, parent.meta().generation, now);
    let mut decision = Decision::status(status);
    if cascading {
        decision.actions.extend(children.into_iter().map(Action::Delete));
    }
    decision.events = events;
    decision
}
