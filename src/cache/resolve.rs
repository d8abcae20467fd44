//! Resolving the inputs of the model's decisions from the caches, where more than one
//! enforcement point needs them: the reconcilers, the admission webhook and the
//! authorization endpoint resolve a user's identity, a super-organization link and a
//! super-organization's members the same way.

use std::sync::Arc;

use kube::ResourceExt;

use super::Cache;
use crate::{
    api::{Account, CEUser, Organization, RoleBinding},
    model::{
        conditions::Desired,
        organization::Member,
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
            .filter(|u| {
                u.name_any() == user.name_any() || (org_name.is_some() && cache.organization_of_user(u) == org_name)
            })
            .collect();
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
