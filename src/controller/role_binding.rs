//! The RoleBinding controller: resolve → `model::role_binding::decide` → act.

use std::sync::Arc;

use kube::{ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    account::{default_siblings, identity_changed},
    act::{self, Outcome},
    relations::{Wiring, own_change, refs},
};
use crate::{
    api::{Account, CEUser, Organization, RoleBinding},
    cache::{Cache, resolve},
    model::{
        role_binding::{self, Inputs},
        tenancy::DefaultCandidates,
    },
};

pub(super) struct Resolved {
    user: Option<Arc<CEUser>>,
    account: Option<Arc<Account>>,
    organization: Option<Arc<Organization>>,
    default_candidates: DefaultCandidates,
}

pub(super) fn resolve(cache: &Cache, binding: &RoleBinding) -> Resolved {
    let ns = binding.namespace().unwrap_or_default();
    let user = cache.user(&ns, &binding.spec.user_ref.name);
    let account = user.as_ref().and_then(|u| cache.account(&ns, &u.spec.account_ref.name));
    let org = account.as_ref().map(|a| a.spec.organization_ref.name.clone());
    Resolved {
        organization: org.as_deref().and_then(|org| cache.organization(&ns, org)),
        default_candidates: org
            .as_deref()
            .map(|org| resolve::default_candidates(cache, &ns, org))
            .unwrap_or_default(),
        user,
        account,
    }
}

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
        let resolved = resolve(&ctx.cache, &binding);
        let decision = role_binding::decide(&Inputs {
            binding: &binding,
            user: resolved.user.as_deref(),
            account: resolved.account.as_deref(),
            organization: resolved.organization.as_deref(),
            default_candidates: &resolved.default_candidates,
            now: crate::clock::now(),
        });
        match act::carry_out(&ctx, binding.as_ref(), decision).await? {
            Outcome::Done(requeue) => Ok(requeue),
            Outcome::SecretExists(_) => Ok(Requeue::await_change()),
        }
    }
}
