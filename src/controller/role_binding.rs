//! The RoleBinding controller: resolve → `model::role_binding::decide` → act.

use std::sync::Arc;

use kube::{ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    act::{self, Outcome},
    relations::{Wiring, default_siblings, identity_changed, own_change, refs},
};
use crate::{
    api::{Account, CEUser, Organization, RoleBinding},
    cache::{Cache, resolve::ResolvedBinding},
    model::role_binding,
};

/// The bindings of the users of an account.
fn bindings_of_account(
    cache: &Cache,
    ns: &str,
    account: &str,
) -> Vec<kube::runtime::reflector::ObjectRef<RoleBinding>> {
    cache
        .users_of_account(ns, account)
        .iter()
        .flat_map(|u| refs(cache.bindings_of_user(ns, &u.name_any())))
        .collect()
}

impl Reconciler for RoleBinding {
    fn relations(wiring: &mut Wiring<'_, Self>) {
        wiring.on::<RoleBinding>(own_change);
        // Its user: whether it exists, and its account.
        wiring.on::<CEUser>(|cache, change| {
            if change.old.is_none() || change.new.is_none() {
                refs(cache.bindings_of_user(&change.namespace(), &change.name()))
            } else {
                Vec::new()
            }
        });
        // The user's account: its existence and default-ness (org-admin needs the default).
        wiring.on::<Account>(|cache, change| {
            let ns = change.namespace();
            if change.old.is_none() || change.new.is_none() || change.changed(|a| a.spec.default) {
                let mut wake = bindings_of_account(cache, &ns, &change.name());
                wake.extend(default_siblings(cache, change, |a| {
                    bindings_of_account(cache, &ns, &a.name_any())
                }));
                wake
            } else {
                Vec::new()
            }
        });
        // The organization: which default account it generated.
        // The organization: which default account it generated (its uid), and whether it
        // allows overriding system roles.
        wiring.on::<Organization>(|cache, change| {
            if !identity_changed(change) && !change.changed(|o| o.spec.security.allow_system_role_override) {
                return Vec::new();
            }
            let ns = change.namespace();
            cache
                .accounts_of(&ns, &change.name())
                .iter()
                .flat_map(|a| bindings_of_account(cache, &ns, &a.name_any()))
                .collect()
        });
    }

    async fn reconcile(binding: Arc<RoleBinding>, ctx: Arc<Context>) -> Result<Requeue> {
        let resolved = ResolvedBinding::of(&ctx.cache, &binding);
        let decision = role_binding::decide(&resolved.inputs(&binding, crate::clock::now()));
        match act::carry_out(&ctx, binding.as_ref(), decision).await? {
            Outcome::Done(requeue) => Ok(requeue),
            Outcome::SecretExists(_) => Ok(Requeue::await_change()),
        }
    }
}
