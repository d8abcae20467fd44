//! What the webhook judges of each kind of the registry: one `Admit` impl per kind, over the
//! cache layer's resolvers (`cache::resolve`) and the model's rules (`model::admission`,
//! `model::actor`), so that the webhook itself is one generic review (`answer_for`).

use std::sync::Arc;

use kube::{
    Resource, ResourceExt,
    core::{DynamicObject, admission::AdmissionRequest},
};
use serde::de::DeserializeOwned;

use super::{stored, typed};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, Role, RoleBinding},
    cache::{
        Cache,
        resolve::{self, Parent, ResolvedAccount, ResolvedBinding, ResolvedIdentity, ResolvedSafelist, members},
    },
    model::{
        account,
        actor::Change,
        admission::{self, Finding},
        privileges::Matrix,
        super_organization,
        tenancy::DefaultCandidates,
    },
};

/// A kind the webhook reviews.
pub(super) trait Admit: Resource<DynamicType = ()> + DeserializeOwned + Clone {
    /// The model's findings before a change (on the stored object, if any) and after it
    /// (on `new`): the review refuses only what the change adds.
    fn findings(cache: &Cache, ns: &str, new: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>);

    /// Why deleting `stored` (not being deleted yet) is refused: a parent with children
    /// (without `allowCascadingDeletion`), the last org-admin of an organization that stays.
    fn deletion(_cache: &Cache, _ns: &str, _stored: &Self) -> Option<Finding> {
        None
    }

    /// Who may make the change of `request` (`model::actor`): its refusal, from `judge`
    /// called with the change's organization and the change, or a refusal of its own when
    /// whose it is cannot be told.
    fn actor(
        cache: &Cache,
        ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String>;
}

/// The findings of a kind judged the same way before and after.
fn symmetric<K>(new: &K, old: Option<&K>, findings: impl Fn(&K) -> Vec<Finding>) -> (Vec<Finding>, Vec<Finding>) {
    (old.map(&findings).unwrap_or_default(), findings(new))
}

/// The object of a request: the new version, or the stored one for a deletion.
fn object<K: Resource + DeserializeOwned>(request: &AdmissionRequest<DynamicObject>) -> Option<K> {
    object_new(request).or_else(|| stored(request))
}

fn object_new<K: Resource + DeserializeOwned>(request: &AdmissionRequest<DynamicObject>) -> Option<K> {
    if request.operation == kube::core::admission::Operation::Delete {
        return None;
    }
    typed(request.object.as_ref(), request).ok().flatten()
}

impl Admit for Organization {
    fn findings(cache: &Cache, ns: &str, org: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>) {
        let name = org.name_any();
        let link = super_organization::judge_link(org, ns, Parent::of(cache, org).lookup());
        let old_link = old.map(|old| super_organization::judge_link(old, ns, Parent::of(cache, old).lookup()));
        let members = if org.spec.whitelabel.is_some() {
            members(cache, ns, &name)
        } else {
            Vec::new()
        };
        (
            old.map(admission::organization_findings_before).unwrap_or_default(),
            admission::organization_findings(org, old.zip(old_link.as_ref()), &link, &members),
        )
    }

    fn deletion(cache: &Cache, ns: &str, org: &Self) -> Option<Finding> {
        let name = org.name_any();
        admission::organization_deletion(
            org,
            &cache.accounts_of(ns, &name),
            &cache.users_of(ns, &name),
            &cache.safelists_of(ns, &name),
        )
    }

    fn actor(
        _cache: &Cache,
        _ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String> {
        let (old, new) = (stored::<Self>(request), object_new::<Self>(request));
        judge(
            &request.name,
            Change::Organization {
                old: old.as_ref(),
                new: new.as_ref(),
            },
        )
    }
}

impl Admit for Account {
    fn findings(cache: &Cache, _ns: &str, new: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>) {
        symmetric(new, old, |account| {
            let resolved = ResolvedAccount::of(cache, account);
            // The children matter to the reconciler's cascading deletion, not to a change.
            admission::account_findings(&account::Inputs {
                account,
                organization: resolved.organization.as_deref(),
                default_candidates: &resolved.default_candidates,
                users: &[],
                bindings: &[],
                namespace_terminating: false,
                now: crate::clock::now(),
            })
        })
    }

    fn deletion(cache: &Cache, ns: &str, account: &Self) -> Option<Finding> {
        admission::account_deletion(account, &cache.users_of_account(ns, &account.name_any()))
    }

    fn actor(
        _cache: &Cache,
        _ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String> {
        let account = object::<Self>(request)?;
        let org = &account.spec.organization_ref.name;
        judge(org, Change::Account { organization: org })
    }
}

impl Admit for CEUser {
    fn findings(cache: &Cache, _ns: &str, new: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>) {
        symmetric(new, old, |user| {
            admission::user_findings(&ResolvedIdentity::of(cache, user).inputs(user))
        })
    }

    fn deletion(cache: &Cache, ns: &str, user: &Self) -> Option<Finding> {
        let admins = OrgAdmins::of(cache, ns, user)?;
        admission::user_deletion(
            &user.name_any(),
            &admins.org,
            &admins.bindings,
            &admins.accounts,
            admins.org_uid.as_deref(),
        )
    }

    fn actor(
        cache: &Cache,
        ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String> {
        let (old, new) = (stored::<Self>(request), object_new::<Self>(request));
        let to = &new.as_ref().or(old.as_ref())?.spec.account_ref.name;
        let from = old.as_ref().map_or(to, |o| &o.spec.account_ref.name);
        match cache.account(ns, to) {
            Some(account) => {
                let org = &account.spec.organization_ref.name;
                judge(
                    org,
                    Change::CEUser {
                        organization: org,
                        accounts: (from, to),
                    },
                )
            }
            None => Some(format!(
                "account {to} does not exist, so whose user this is cannot be told; create the account first"
            )),
        }
    }
}

impl Admit for RoleBinding {
    fn findings(cache: &Cache, _ns: &str, new: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>) {
        symmetric(new, old, |binding| {
            let resolved = ResolvedBinding::of(cache, binding);
            admission::binding_findings(&resolved.inputs(binding, crate::clock::now()))
        })
    }

    fn deletion(cache: &Cache, ns: &str, binding: &Self) -> Option<Finding> {
        if binding.spec.role != Role::OrgAdmin {
            return None;
        }
        let user = cache.user(ns, &binding.spec.user_ref.name)?;
        let admins = OrgAdmins::of(cache, ns, &user)?;
        admission::binding_deletion(
            binding,
            &admins.org,
            &admins.bindings,
            &admins.accounts,
            admins.org_uid.as_deref(),
        )
    }

    fn actor(
        cache: &Cache,
        ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String> {
        let binding = object::<Self>(request)?;
        let bound = &binding.spec.user_ref.name;
        let found = cache
            .user(ns, bound)
            .and_then(|u| Some((u.spec.account_ref.name.clone(), cache.organization_of_user(&u)?)));
        match found {
            Some((account, org)) => {
                let roles = cache.organization(ns, &org).map(|o| o.spec.roles.clone());
                let matrix = Matrix::new(&roles.unwrap_or_default());
                judge(
                    &org,
                    Change::RoleBinding {
                        organization: &org,
                        account: &account,
                        role: binding.spec.role,
                        matrix: &matrix,
                    },
                )
            }
            None => Some(format!(
                "user {bound} (or its account or organization) does not exist, so who may bind it cannot be told; create the user first"
            )),
        }
    }
}

impl Admit for ElementSafelist {
    fn findings(cache: &Cache, _ns: &str, new: &Self, old: Option<&Self>) -> (Vec<Finding>, Vec<Finding>) {
        symmetric(new, old, |list| {
            let resolved = ResolvedSafelist::of(cache, list);
            admission::safelist_findings(&resolved.inputs(list, crate::clock::now()))
        })
    }

    fn actor(
        _cache: &Cache,
        _ns: &str,
        request: &AdmissionRequest<DynamicObject>,
        judge: &dyn Fn(&str, Change<'_>) -> Option<String>,
    ) -> Option<String> {
        let list = object::<Self>(request)?;
        let org = &list.spec.organization_ref.name;
        judge(org, Change::ElementSafelist { organization: org })
    }
}

/// What the last-org-admin rule reads for the organization of `user`: None when it has none
/// or is itself being deleted (then its admins go with it).
struct OrgAdmins {
    org: String,
    org_uid: Option<String>,
    bindings: Vec<(Arc<RoleBinding>, Option<Arc<CEUser>>)>,
    accounts: DefaultCandidates,
}

impl OrgAdmins {
    fn of(cache: &Cache, ns: &str, user: &CEUser) -> Option<Self> {
        let org_name = cache.organization_of_user(user)?;
        let org = cache.organization(ns, &org_name)?;
        if org.meta().deletion_timestamp.is_some() {
            return None;
        }
        let bindings = cache
            .org_admin_bindings(ns)
            .into_iter()
            .map(|b| {
                let user = cache.user(ns, &b.spec.user_ref.name);
                (b, user)
            })
            .collect();
        Some(Self {
            accounts: resolve::candidates(cache, ns, cache.accounts_of(ns, &org_name)),
            org_uid: org.uid(),
            bindings,
            org: org_name,
        })
    }
}
