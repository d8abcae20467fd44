//! The ElementSafelist controller: resolve → `model::safelist::decide` → act.

use std::sync::Arc;

use kube::{Resource, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    act::{self, Outcome},
    relations::{Wiring, own_change, refs},
};
use crate::{
    api::{ElementSafelist, Organization},
    cache::resolve::ResolvedSafelist,
    model::safelist,
};

impl Reconciler for ElementSafelist {
    fn relations(wiring: &mut Wiring<'_, Self>) {
        // Its own changes, and which of an organization's safelists is in effect.
        wiring.on::<ElementSafelist>(|cache, change| {
            let mut wake = own_change(cache, change);
            if change.old.is_none() || change.new.is_none() {
                let org = &change.object().spec.organization_ref.name;
                wake.extend(refs(
                    cache
                        .safelists_of(&change.namespace(), org)
                        .into_iter()
                        .filter(|s| s.name_any() != change.name()),
                ));
            }
            wake
        });
        // Its organization (existence, link) and, through the link, the super-organization's
        // denylist, for every member.
        wiring.on::<Organization>(|cache, change| {
            if !change.changed(|o| (o.meta().generation, o.meta().uid.clone())) {
                return Vec::new();
            }
            let ns = change.namespace();
            let mut wake = refs(cache.safelists_of(&ns, &change.name()));
            for member in cache.members_of(&ns, &change.name()) {
                wake.extend(refs(
                    cache.safelists_of(&member.namespace().unwrap_or_default(), &member.name_any()),
                ));
            }
            wake
        });
    }

    async fn reconcile(list: Arc<ElementSafelist>, ctx: Arc<Context>) -> Result<Requeue> {
        let resolved = ResolvedSafelist::of(&ctx.cache, &list);
        let decision = safelist::decide(&resolved.inputs(&list, crate::clock::now()));
        match act::carry_out(&ctx, list.as_ref(), decision).await? {
            Outcome::Done(requeue) => Ok(requeue),
            Outcome::SecretExists(_) => Ok(Requeue::await_change()),
        }
    }
}
