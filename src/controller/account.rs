//! The Account controller: resolve → `model::account::decide` → act.

use std::sync::Arc;

use kube::{Resource, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    act::{self, Outcome},
    relations::{Wiring, default_siblings, identity_changed, named, own_change, refs},
};
use crate::{
    api::{Account, CEUser, Organization, RoleBinding},
    cache::{Cache, resolve::ResolvedAccount},
    model::account::{self, Inputs},
};

pub(super) struct Resolved {
    account: ResolvedAccount,
    users: Vec<Arc<CEUser>>,
    bindings: Vec<Arc<RoleBinding>>,
    namespace_terminating: bool,
}

pub(super) fn resolve(cache: &Cache, account: &Account) -> Resolved {
    let ns = account.namespace().unwrap_or_default();
    let users = cache.users_of_account(&ns, &account.name_any());
    // Bindings matter only to a cascading deletion.
    let bindings = if account.meta().deletion_timestamp.is_some() {
        users
            .iter()
            .flat_map(|u| cache.bindings_of_user(&ns, &u.name_any()))
            .collect()
    } else {
        Vec::new()
    };
    Resolved {
        account: ResolvedAccount::of(cache, account),
        users,
        bindings,
        namespace_terminating: cache.namespace_terminating(&ns),
    }
}

impl Reconciler for Account {
    fn relations(wiring: &mut Wiring<'_, Self>) {
        wiring.on::<Account>(|cache, change| {
            let mut wake = own_change(cache, change);
            wake.extend(default_siblings(cache, change, |a| refs([a.clone()])));
            wake
        });
        wiring.on::<Organization>(|cache, change| {
            if identity_changed(change) {
                refs(cache.accounts_of(&change.namespace(), &change.name()))
            } else {
                Vec::new()
            }
        });
        // Users: the count, and a deletion waiting for them. A default account's first user
        // or last one changes which default account ranks first (`DefaultCandidates`).
        wiring.on_count::<CEUser>(|cache, change| {
            if change.old.is_some() && change.new.is_some() {
                return Vec::new();
            }
            let ns = change.namespace();
            let account = &change.object().spec.account_ref.name;
            let mut wake = vec![named(&ns, account)];
            if let Some(account) = cache.account(&ns, account).filter(|a| a.spec.default) {
                wake.extend(
                    refs(cache.default_account_candidates(&ns, &account.spec.organization_ref.name))
                        .into_iter()
                        .filter(|r| r.name != account.name_any()),
                );
            }
            wake
        });
        // Bindings: a cascading deletion deletes them first.
        wiring.on::<RoleBinding>(|cache, change| {
            let ns = change.namespace();
            cache
                .user(&ns, &change.object().spec.user_ref.name)
                .and_then(|u| cache.account(&ns, &u.spec.account_ref.name))
                .filter(|a| a.meta().deletion_timestamp.is_some())
                .map(|a| refs([a]))
                .unwrap_or_default()
        });
        wiring.on_namespace_deletion();
    }

    async fn reconcile(account: Arc<Account>, ctx: Arc<Context>) -> Result<Requeue> {
        let resolved = resolve(&ctx.cache, &account);
        let decision = account::decide(&Inputs {
            account: &account,
            organization: resolved.account.organization.as_deref(),
            default_candidates: &resolved.account.default_candidates,
            users: &resolved.users,
            bindings: &resolved.bindings,
            namespace_terminating: resolved.namespace_terminating,
            now: crate::clock::now(),
        });
        match act::carry_out(&ctx, account.as_ref(), decision).await? {
            Outcome::Done(requeue) => Ok(requeue),
            Outcome::SecretExists(_) => Ok(Requeue::await_change()),
        }
    }
}
