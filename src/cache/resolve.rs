//! Resolving the inputs of the model's decisions from the caches, once per kind, for every
//! enforcement point: the reconcilers, the admission webhook (and the tenant API's review)
//! and the authorization endpoint read a user's identity, a binding's user and organization,
//! a safelist's organization and siblings, an account's default candidates, a
//! super-organization link and its members the same way.
//!
//! Each resolver takes the object as it is judged, and puts it among its siblings in place
//! of the stored version: a reconciler judges the stored object (the same), the webhook a
//! change not stored yet.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::Cache;
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
    model::{
        conditions::Desired,
        organization::Member,
        role_binding, safelist,
        super_organization::SuperOrganization,
        tenancy::DefaultCandidates,
        user::{self, Identity, IdentityInputs},
    },
};

/// The super-organization an organization names, as found.
pub enum Parent {
    None,
    Found(Arc<Organization>),
    Missing,
    NotWatched(String),
}

impl Parent {
    pub fn of(cache: &Cache, org: &Organization) -> Parent {
        let Some(reference) = &org.spec.super_organization_ref else {
            return Parent::None;
        };
        if !cache.watches_namespace(&reference.namespace) {
            return Parent::NotWatched(cache.scope().unwrap_or_default().to_owned());
        }
        match cache.organization(&reference.namespace, &reference.name) {
            Some(parent) => Parent::Found(parent),
            None => Parent::Missing,
        }
    }

    pub fn lookup(&self) -> SuperOrganization<'_> {
        match self {
            Parent::Found(parent) => SuperOrganization::Found(parent),
            Parent::None | Parent::Missing => SuperOrganization::Missing,
            Parent::NotWatched(watched) => SuperOrganization::NotWatched { watched },
        }
    }
}

/// The organizations naming super-organization `ns/name`, each with the safelists naming it.
pub fn members(cache: &Cache, ns: &str, name: &str) -> Vec<Member> {
    cache
        .members_of(ns, name)
        .into_iter()
        .map(|member| {
            let safelists = cache.safelists_of(&member.namespace().unwrap_or_default(), &member.name_any());
            Member { org: member, safelists }
        })
        .collect()
}

/// `accounts` (of namespace `ns`) as candidates for an organization's default account, with
/// which of those declaring `default: true` hold users.
pub fn candidates(cache: &Cache, ns: &str, accounts: Vec<Arc<Account>>) -> DefaultCandidates {
    let with_users = accounts
        .iter()
        .filter(|a| a.spec.default && cache.has_users(ns, &a.name_any()))
        .map(|a| a.name_any())
        .collect();
    DefaultCandidates { accounts, with_users }
}

/// The candidates for the default account of organization `org`.
pub fn default_candidates(cache: &Cache, ns: &str, org: &str) -> DefaultCandidates {
    candidates(cache, ns, cache.default_account_candidates(ns, org))
}

/// `list` with `candidate` in place of its stored version (or added). A candidate that is the
/// stored version (the same resourceVersion: a reconcile, an authorization) costs no copy.
pub fn with_candidate<K: Resource + Clone>(list: Vec<Arc<K>>, candidate: &K) -> Vec<Arc<K>> {
    let meta = candidate.meta();
    let stored = |o: &K| o.meta().resource_version.is_some() && o.meta().resource_version == meta.resource_version;
    if list.iter().any(|o| o.meta().name == meta.name && stored(o)) {
        return list;
    }
    let mut list: Vec<Arc<K>> = list.into_iter().filter(|o| o.meta().name != meta.name).collect();
    list.push(Arc::new(candidate.clone()));
    list
}

/// What the model's account rules read besides the account's children: its organization, and
/// the organization's default candidates with this account among them.
pub struct ResolvedAccount {
    pub organization: Option<Arc<Organization>>,
    pub default_candidates: DefaultCandidates,
}

impl ResolvedAccount {
    pub fn of(cache: &Cache, account: &Account) -> Self {
        let ns = account.namespace().unwrap_or_default();
        let org = &account.spec.organization_ref.name;
        let siblings = with_candidate(cache.default_account_candidates(&ns, org), account);
        Self {
            organization: cache.organization(&ns, org),
            default_candidates: candidates(cache, &ns, siblings),
        }
    }
}

/// What the model's RoleBinding rules read: the bound user, its account and organization, and
/// the organization's default candidates (org-admin binds only in the default account).
pub struct ResolvedBinding {
    pub user: Option<Arc<CEUser>>,
    pub account: Option<Arc<Account>>,
    pub organization: Option<Arc<Organization>>,
    pub default_candidates: DefaultCandidates,
}

impl ResolvedBinding {
    pub fn of(cache: &Cache, binding: &RoleBinding) -> Self {
        let ns = binding.namespace().unwrap_or_default();
        let user = cache.user(&ns, &binding.spec.user_ref.name);
        let account = user.as_ref().and_then(|u| cache.account(&ns, &u.spec.account_ref.name));
        let org = account.as_ref().map(|a| a.spec.organization_ref.name.clone());
        Self {
            organization: org.as_deref().and_then(|org| cache.organization(&ns, org)),
            default_candidates: org
                .as_deref()
                .map(|org| default_candidates(cache, &ns, org))
                .unwrap_or_default(),
            user,
            account,
        }
    }

    pub fn inputs<'a>(&'a self, binding: &'a RoleBinding, now: Timestamp) -> role_binding::Inputs<'a> {
        role_binding::Inputs {
            binding,
            user: self.user.as_deref(),
            account: self.account.as_deref(),
            organization: self.organization.as_deref(),
            default_candidates: &self.default_candidates,
            now,
        }
    }
}

/// What the model's safelist rules read: its organization, the organization's safelists
/// (this one among them) and its super-organization.
pub struct ResolvedSafelist {
    pub organization: Option<Arc<Organization>>,
    pub siblings: Vec<Arc<ElementSafelist>>,
    pub parent: Parent,
}

impl ResolvedSafelist {
    pub fn of(cache: &Cache, list: &ElementSafelist) -> Self {
        let ns = list.namespace().unwrap_or_default();
        let org = &list.spec.organization_ref.name;
        let organization = cache.organization(&ns, org);
        Self {
            parent: organization.as_deref().map_or(Parent::None, |o| Parent::of(cache, o)),
            siblings: with_candidate(cache.safelists_of(&ns, org), list),
            organization,
        }
    }

    pub fn inputs<'a>(&'a self, list: &'a ElementSafelist, now: Timestamp) -> safelist::Inputs<'a> {
        safelist::Inputs {
            list,
            organization: self.organization.as_deref(),
            siblings: &self.siblings,
            super_organization: self.parent.lookup(),
            now,
        }
    }
}

/// What a user's identity reads, from the caches.
pub struct ResolvedIdentity {
    pub account: Option<Arc<Account>>,
    pub organization: Option<Arc<Organization>>,
    pub default_candidates: DefaultCandidates,
    pub bindings: Vec<Arc<RoleBinding>>,
    pub same_email: Vec<Arc<CEUser>>,
}

impl ResolvedIdentity {
    pub fn of(cache: &Cache, user: &CEUser) -> Self {
        let ns = user.namespace().unwrap_or_default();
        let account = cache.account(&ns, &user.spec.account_ref.name);
        let org_name = account.as_ref().map(|a| a.spec.organization_ref.name.clone());
        let organization = org_name.as_deref().and_then(|org| cache.organization(&ns, org));
        let default_candidates = org_name
            .as_deref()
            .map(|org| default_candidates(cache, &ns, org))
            .unwrap_or_default();
        // Users of the same organization with the same e-mail, this one included.
        let same_email = cache
            .users_with_email(&ns, &user.spec.email)
            .into_iter()
            .filter(|u| org_name.is_some() && cache.organization_of_user(u) == org_name);
        let same_email = with_candidate(same_email.collect(), user);
        Self {
            bindings: cache.bindings_of_user(&ns, &user.name_any()),
            account,
            organization,
            default_candidates,
            same_email,
        }
    }

    pub fn inputs<'a>(&'a self, user: &'a CEUser) -> IdentityInputs<'a> {
        IdentityInputs {
            user,
            account: self.account.as_deref(),
            organization: self.organization.as_deref(),
            default_candidates: &self.default_candidates,
            bindings: &self.bindings,
            same_email: &self.same_email,
        }
    }

    /// The identity `user` has now (`model::user::authenticated` over what the caches hold),
    /// or why it is not in effect: how the webhook, the authorization endpoint and the tenant
    /// API tell who a user is.
    pub fn authenticated(cache: &Cache, user: &CEUser) -> Result<Identity, Desired> {
        user::authenticated(&Self::of(cache, user).inputs(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cache::testing::TestCache,
        model::fixtures::{NS, account, org, safelist, user},
    };

    fn names<K: Resource>(list: &[Arc<K>]) -> Vec<(String, Option<String>)> {
        let mut names: Vec<_> = list
            .iter()
            .map(|o| {
                (
                    o.meta().name.clone().unwrap_or_default(),
                    o.meta().resource_version.clone(),
                )
            })
            .collect();
        names.sort();
        names
    }

    /// Every resolver judges the object it is given among its siblings, in place of the stored
    /// version: the webhook's candidate is seen as it would be, not as it was (and a new one at
    /// all); a reconcile's object, the stored one, costs no copy.
    #[test]
    fn the_judged_object_stands_among_its_siblings_in_place_of_the_stored_version() {
        let mut stored = safelist("first", "acme", &["salesforce"]);
        stored.metadata.resource_version = Some("7".into());
        let mut t = TestCache::new(None);
        t.apply([org("acme")]).apply([stored.clone()]);
        let cache = &t.cache;

        let mut changed = stored.clone();
        changed.spec.elements = vec!["slack".into()];
        changed.metadata.resource_version = None;
        let siblings = ResolvedSafelist::of(cache, &changed).siblings;
        assert_eq!(siblings.len(), 1);
        assert_eq!(
            siblings[0].spec.elements,
            ["slack"],
            "the candidate, not the stored version"
        );

        let new = safelist("second", "acme", &[]);
        let siblings = ResolvedSafelist::of(cache, &new).siblings;
        assert_eq!(
            names(&siblings),
            [("first".into(), Some("7".into())), ("second".into(), None)]
        );

        let reconciled = ResolvedSafelist::of(cache, &stored).siblings;
        let in_cache = cache.safelists_of(NS, "acme");
        assert!(Arc::ptr_eq(&reconciled[0], &in_cache[0]), "the stored object itself");

        let candidate = account("eu", "acme", true);
        let resolved = ResolvedAccount::of(cache, &candidate);
        assert_eq!(names(&resolved.default_candidates.accounts), [("eu".into(), None)]);

        t.apply([account("eu", "acme", true)])
            .apply([user("jane", "eu", "jane@acme.example")]);
        let twin = user("jane-twin", "eu", "JANE@acme.example");
        let same_email = ResolvedIdentity::of(&t.cache, &twin).same_email;
        assert_eq!(names(&same_email), [("jane".into(), None), ("jane-twin".into(), None)]);
    }
}
