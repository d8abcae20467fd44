//! The ElementSafelist controller: one safelist per organization, and the super-organization's
//! denylist winning over it.

use std::sync::Arc;

use kube::{Resource, ResourceExt, runtime::controller::Action};

use super::{Context, Error, Result, warn_new_failures, write_status};
use crate::{
    api::{ElementSafelist, ElementSafelistStatus},
    model::{
        conditions::{self, Desired, READY},
        safelist::{self, Link, Visible},
    },
};

pub async fn reconcile(safelist: Arc<ElementSafelist>, ctx: Arc<Context>) -> Result<Action> {
    apply(&safelist, &ctx).await
}

async fn apply(list: &ElementSafelist, ctx: &Context) -> Result<Action> {
    let ns = list.namespace().ok_or(Error::Missing("namespace"))?;
    let org_name = &list.spec.organization_ref.name;
    let previous = list.status.clone().unwrap_or_default();
    let mut status = ElementSafelistStatus {
        observed_generation: list.meta().generation,
        ..Default::default()
    };

    let ready = match ctx.stores.organization(&ns, org_name) {
        None => Desired::failed(
            READY,
            "OrganizationNotFound",
            format!(
                "Organization {org_name} does not exist in namespace {ns}; the safelist applies once it does (or fix spec.organizationRef)"
            ),
        ),
        Some(org) => match ctx.stores.effective_safelist(&ns, org_name) {
            Some(effective) if effective.name_any() != list.name_any() => Desired::failed(
                READY,
                "DuplicateSafelist",
                format!(
                    "organization {org_name} already has the safelist {}; this one has no effect. Merge its elements into that one and delete this one",
                    effective.name_any()
                ),
            ),
            _ => {
                let target = org
                    .spec
                    .super_organization_ref
                    .as_ref()
                    .and_then(|r| ctx.stores.organization(&r.namespace, &r.name));
                let denylist = match safelist::judge_link(&org, &ns, target.as_deref()) {
                    Link::Accepted { denylist } => denylist,
                    Link::None | Link::Refused { .. } => Vec::new(),
                };
                let (visible, conflicts) = safelist::visibility(Some(&list.spec.elements), &denylist);
                if let Visible::Only(elements) = visible {
                    status.effective_elements = elements.into_iter().collect();
                }
                if conflicts.is_empty() {
                    Desired::ok(
                        READY,
                        "Ready",
                        format!(
                            "{} elements are visible to organization {org_name}",
                            status.effective_elements.len()
                        ),
                    )
                } else {
                    let parent = org
                        .spec
                        .super_organization_ref
                        .as_ref()
                        .map(|r| format!("{}/{}", r.namespace, r.name))
                        .unwrap_or_default();
                    let message = format!(
                        "{} denied by super-organization {parent} and not visible: safelist and denylist are mutually exclusive. Remove them from spec.elements, or have the super-organization remove them from its elementDenylist",
                        conflicts.join(", ")
                    );
                    status.conflicts = conflicts;
                    Desired::failed(READY, "DeniedBySuperOrganization", message)
                }
            }
        },
    };
    let desired = [ready];
    status.conditions = conditions::merge(&previous.conditions, &desired, list.meta().generation, super::now());
    warn_new_failures(ctx, list, &previous.conditions, &desired).await;
    write_status(&ctx.client, list, list.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}
