//! The Organization controller: resolve → `model::organization::decide` → act.

use std::{collections::HashMap, sync::Arc};

use kube::{Resource, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    act::{self, Outcome, object_name},
    relations::{Wiring, named, own_change, refs},
    secret,
};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
    cache::{
        Cache, SecretEntry,
        resolve::{Parent, members},
    },
    model::{
        issuance::IssuanceKey,
        names,
        organization::{self, Inputs, Member},
        secrets::{SecretFacts, SecretValue},
    },
};

/// What the decision reads, from the caches.
pub(super) struct Resolved {
    accounts: Vec<Arc<Account>>,
    account_users: HashMap<String, usize>,
    default_name_holder: Option<Arc<Account>>,
    owner_user: Option<Arc<CEUser>>,
    owner_binding: Option<Arc<RoleBinding>>,
    org_admin_bindings: Vec<(Arc<RoleBinding>, Option<Arc<CEUser>>)>,
    safelists: Vec<Arc<ElementSafelist>>,
    parent: Parent,
    members: Vec<Member>,
    secret: Option<SecretFacts>,
    users: Vec<Arc<CEUser>>,
    bindings: Vec<Arc<RoleBinding>>,
    namespace_terminating: bool,
}

pub(super) fn resolve(cache: &Cache, org: &Organization) -> Resolved {
    let ns = org.namespace().unwrap_or_default();
    let name = org.name_any();
    let accounts = cache.accounts_of(&ns, &name);
    let account_users = accounts
        .iter()
        .map(|a| (a.name_any(), cache.user_count(&ns, &a.name_any())))
        .collect();
    let owner = org.spec.owner.is_some();
    let deleting = org.meta().deletion_timestamp.is_some();
    let users = if deleting {
        cache.users_of(&ns, &name)
    } else {
        Vec::new()
    };
    let bindings = users
        .iter()
        .flat_map(|u| cache.bindings_of_user(&ns, &u.name_any()))
        .collect();
    Resolved {
        default_name_holder: cache.account(
            &ns,
            &names::default_account(&name, org.spec.default_account_name.as_deref()),
        ),
        owner_user: owner.then(|| cache.user(&ns, &names::owner_user(&name))).flatten(),
        owner_binding: owner
            .then(|| cache.get::<RoleBinding>(&ns, &names::owner_binding(&name)))
            .flatten(),
        org_admin_bindings: cache
            .org_admin_bindings(&ns)
            .into_iter()
            .map(|b| {
                let user = cache.user(&ns, &b.spec.user_ref.name);
                (b, user)
            })
            .collect(),
        safelists: cache.safelists_of(&ns, &name),
        parent: Parent::of(cache, org),
        members: match &org.spec.whitelabel {
            Some(_) => members(cache, &ns, &name),
            None => Vec::new(),
        },
        secret: cache
            .secret(&ns, &names::organization_secret(&name))
            .map(|s| s.facts.clone()),
        accounts,
        account_users,
        users,
        bindings,
        namespace_terminating: cache.namespace_terminating(&ns),
    }
}

impl Resolved {
    fn inputs<'a>(&'a self, org: &'a Organization, fresh: &'a SecretValue, key: &'a IssuanceKey) -> Inputs<'a> {
        Inputs {
            org,
            now: crate::clock::now(),
            namespace_terminating: self.namespace_terminating,
            accounts: &self.accounts,
            account_users: &self.account_users,
            default_name_holder: self.default_name_holder.as_deref(),
            owner_user: self.owner_user.as_deref(),
            owner_binding: self.owner_binding.as_deref(),
            org_admin_bindings: &self.org_admin_bindings,
            safelists: &self.safelists,
            super_organization: self.parent.lookup(),
            members: &self.members,
            secret: self.secret.as_ref(),
            fresh_secret: fresh,
            issuance_key: key,
            users: &self.users,
            bindings: &self.bindings,
        }
    }
}

/// The organization a change of an object in its tree concerns.
fn org_named(ns: &str, name: &str) -> Vec<kube::runtime::reflector::ObjectRef<Organization>> {
    vec![named(ns, name)]
}

impl Reconciler for Organization {
    const DEBOUNCE: Option<std::time::Duration> = Some(super::BURST_DEBOUNCE);

    fn relations(wiring: &mut Wiring<'_, Self>) {
        // Its own changes; a member's link wakes its super-organization (DenylistConflict),
        // and a super-organization's spec wakes its members (their link).
        wiring.on::<Organization>(|cache, change| {
            let mut wake = own_change(cache, change);
            let (before, after) = change.before_after(|o| o.spec.super_organization_ref.clone());
            for parent in [before.flatten(), after.flatten()].into_iter().flatten() {
                wake.extend(org_named(&parent.namespace, &parent.name));
            }
            if change.changed(|o| (o.meta().generation, o.meta().uid.clone())) {
                wake.extend(refs(cache.members_of(&change.namespace(), &change.name())));
            }
            wake
        });
        // Accounts: counts, the default account, the default account's name being taken.
        wiring.on::<Account>(|cache, change| {
            let ns = change.namespace();
            let mut wake = org_named(&ns, &change.object().spec.organization_ref.name);
            if change.old.is_none() || change.new.is_none() {
                let account = change.name();
                wake.extend(refs(cache.all::<Organization>().into_iter().filter(|o| {
                    o.namespace().as_deref() == Some(ns.as_str())
                        && names::default_account(&o.name_any(), o.spec.default_account_name.as_deref()) == account
                })));
            }
            wake
        });
        // Users: the count and the org-admins' readiness (throttled), the owner (at once).
        wiring.on_count::<CEUser>(|cache, change| {
            cache
                .organization_of_user(change.object())
                .map(|org| org_named(&change.namespace(), &org))
                .unwrap_or_default()
        });
        wiring.on::<CEUser>(|_, change| {
            change
                .name()
                .strip_suffix("-owner")
                .map(|org| org_named(&change.namespace(), org))
                .unwrap_or_default()
        });
        // org-admin bindings (AdminPresent) and the owner's binding.
        wiring.on::<RoleBinding>(|cache, change| {
            let ns = change.namespace();
            let binding = change.object();
            let mut wake: Vec<_> = cache
                .user(&ns, &binding.spec.user_ref.name)
                .and_then(|u| cache.organization_of_user(&u))
                .map(|org| org_named(&ns, &org))
                .unwrap_or_default();
            if let Some(org) = change.name().strip_suffix("-owner-org-admin") {
                wake.extend(org_named(&ns, org));
            }
            wake
        });
        // Safelists: the one in effect, and the super-organization's conflict report.
        wiring.on::<ElementSafelist>(|cache, change| {
            let ns = change.namespace();
            let org = &change.object().spec.organization_ref.name;
            let mut wake = org_named(&ns, org);
            if let Some(parent) = cache
                .organization(&ns, org)
                .and_then(|o| o.spec.super_organization_ref.clone())
            {
                wake.extend(org_named(&parent.namespace, &parent.name));
            }
            wake
        });
        wiring.on::<SecretEntry>(|_, change| match change.object().owner() {
            Some(("Organization", name)) => org_named(&change.namespace(), name),
            _ => Vec::new(),
        });
        wiring.on_namespace_deletion();
    }

    async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Requeue> {
        let fresh = super::secret::generate(usize::try_from(org.spec.security.secret_length).unwrap_or(32)).map_err(
            |source| super::Error::Random {
                object: object_name(org.as_ref()),
                source,
            },
        )?;
        let mut resolved = resolve(&ctx.cache, &org);
        if resolved.secret.is_none() {
            let issued = org.status.as_ref().is_some_and(|s| s.secret_fingerprint.is_some());
            let name = names::organization_secret(&org.name_any());
            resolved.secret =
                secret::read_if_reported(&ctx, org.as_ref(), issued, &object_name(org.as_ref()), &name).await?;
        }
        loop {
            let decision = organization::decide(&resolved.inputs(&org, &fresh, ctx.cache.issuance_key()));
            match act::carry_out(&ctx, org.as_ref(), decision).await? {
                Outcome::Done(requeue) => return Ok(requeue),
                // Someone else's Secret of that name: decide again, knowing it (once).
                Outcome::SecretExists(facts) if resolved.secret.is_none() => resolved.secret = Some(*facts),
                Outcome::SecretExists(_) => return Ok(Requeue::await_change()),
            }
        }
    }
}
