//! Who a caller is and what it may do, from the caches: the decision every transport (the
//! gateway check over HTTP and gRPC, `/v1/decisions`, the tenant API, `can-i`) shares.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::{
    api::CEUser,
    cache::{
        Cache,
        resolve::{Parent, ResolvedIdentity},
    },
    model::{
        authz::{self, Decision, Owner, Request},
        issuance::{self, HolderKind},
        safelist,
        secrets::Digest,
        super_organization,
        user::Identity,
    },
};

/// An authenticated (or, for `can-i`, named) caller.
#[derive(Debug)]
pub struct Caller {
    pub namespace: String,
    pub user: String,
    pub identity: Arc<Identity>,
}

/// What the decisions derive from the caches, remembered until the caches change: at rest,
/// who a caller is and what its organization sees cost a lookup, not a walk over its account,
/// organization, bindings and safelists. An entry is used only while the cache's epoch is the
/// one it was derived at.
#[derive(Default)]
pub struct Derived {
    /// `admit`, by user uid.
    identities: Memo<Result<Arc<Identity>, Decision>>,
    /// The elements an organization sees, by `namespace/organization`.
    visibility: Memo<Option<Arc<safelist::Visible>>>,
}

/// Values by key, each with the cache epoch it was derived at.
struct Memo<V> {
    entries: std::sync::RwLock<HashMap<String, (u64, V)>>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            entries: Default::default(),
        }
    }
}

impl<V: Clone> Memo<V> {
    /// The value remembered for `key` if the caches have not changed since, else `derive()`.
    fn get(&self, cache: &Cache, key: &str, derive: impl FnOnce() -> V) -> V {
        // Read before deriving: a change applied meanwhile makes the entry stale at once.
        let epoch = cache.epoch();
        if let Some((at, value)) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(key)
            && *at == epoch
        {
            return value.clone();
        }
        let value = derive();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Bounded by the keys asked for since the last change (what went goes then).
        if entries.values().next().is_some_and(|(at, _)| *at != epoch) {
            entries.retain(|_, (at, _)| *at == epoch);
        }
        entries.insert(key.to_owned(), (epoch, value.clone()));
        value
    }
}

/// The object of a kind whose own Secret, as the operator issued it, holds this digest as
/// its current value or its still valid previous one (`issuance::vouches`): its namespace,
/// name and uid (the Secret's controller).
struct Holder {
    namespace: String,
    name: String,
    uid: String,
}

/// Every Secret holding the digest is tried, so that a Secret someone else planted with the
/// same value (it vouches for nobody) never hides the one the operator issued.
fn holder(cache: &Cache, digest: &Digest, kind: HolderKind, now: Timestamp) -> Option<Holder> {
    cache.secrets_with_digest(digest).into_iter().find_map(|entry| {
        let namespace = entry.namespace().unwrap_or_default();
        let vouched = issuance::vouches(
            cache.issuance_key(),
            &namespace,
            &entry.name_any(),
            &entry.facts,
            digest,
            now,
        )?;
        (vouched.kind == kind).then_some(Holder {
            namespace,
            name: vouched.name,
            uid: vouched.uid,
        })
    })
}

/// Authenticates `Authorization: User <secret>, Organization <secret>`. The holder must be
/// the object that exists now (a Secret left behind by a deleted and recreated object
/// authenticates nobody).
pub fn authenticate(
    cache: &Cache,
    derived: &Derived,
    authorization: Option<&str>,
    now: Timestamp,
) -> Result<Caller, Decision> {
    let header = authorization
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| Decision::unauthenticated("missing_credentials", "no Authorization header"))?;
    let credentials = authz::parse_credentials(header)
        .map_err(|why| Decision::unauthenticated("malformed_credentials", format!("malformed Authorization: {why}")))?;
    let (user_digest, org_digest) = (credentials.user.digest(), credentials.organization.digest());
    drop(credentials);
    let unknown_user = || Decision::unauthenticated("unknown_user_secret", "the user secret is not one in effect");
    let found = holder(cache, &user_digest, HolderKind::CEUser, now).ok_or_else(unknown_user)?;
    let user = cache
        .user(&found.namespace, &found.name)
        .filter(|u| u.uid().as_deref() == Some(found.uid.as_str()))
        .ok_or_else(unknown_user)?;
    let identity = match user.metadata.uid.as_deref() {
        Some(uid) => derived
            .identities
            .get(cache, uid, || admit(cache, &user).map(Arc::new))?,
        None => Arc::new(admit(cache, &user)?),
    };
    let unknown_org = || {
        Decision::unauthenticated(
            "unknown_organization_secret",
            "the organization secret is not one in effect",
        )
    };
    let org = holder(cache, &org_digest, HolderKind::Organization, now).ok_or_else(unknown_org)?;
    cache
        .organization(&org.namespace, &org.name)
        .filter(|o| o.uid().as_deref() == Some(org.uid.as_str()))
        .ok_or_else(unknown_org)?;
    if let Some(mismatch) = authz::belong_together(&identity, &found.namespace, &org.namespace, &org.name) {
        return Err(mismatch);
    }
    Ok(Caller {
        namespace: found.namespace,
        user: found.name,
        identity,
    })
}

/// A user that may act: in effect (account and organization exist, holds its e-mail) and
/// not being deleted.
fn admit(cache: &Cache, user: &CEUser) -> Result<Identity, Decision> {
    if user.metadata.deletion_timestamp.is_some() {
        return Err(Decision::unauthenticated("user_not_ready", "the user is being deleted"));
    }
    ResolvedIdentity::authenticated(cache, user).map_err(|why| {
        Decision::unauthenticated("user_not_ready", format!("the user is not in effect: {}", why.message))
    })
}

/// The caller named `user` in `ns`, without a secret (`ce-operator can-i`).
pub fn named(cache: &Cache, ns: &str, user: &str) -> Result<Caller, Decision> {
    let found = cache
        .user(ns, user)
        .ok_or_else(|| Decision::unauthenticated("unknown_user", format!("no CEUser {user} in namespace {ns}")))?;
    Ok(Caller {
        namespace: ns.to_owned(),
        user: user.to_owned(),
        identity: Arc::new(admit(cache, &found)?),
    })
}

/// What `caller` may do: `request` judged by `model::authz::decide`.
pub fn authorize(cache: &Cache, derived: &Derived, caller: &Caller, request: &Request) -> Decision {
    let ns = &caller.namespace;
    let element_visible = request.element.as_ref().map(|element| {
        let org_name = &caller.identity.organization;
        let visible = derived.visibility.get(cache, &format!("{ns}/{org_name}"), || {
            let org = cache.organization(ns, org_name)?;
            let safelists = cache.safelists_of(ns, &org.name_any());
            let listed = safelist::effective(&safelists).map(|l| l.spec.elements.as_slice());
            let parent = Parent::of(cache, &org);
            let link = super_organization::judge_link(&org, ns, parent.lookup());
            Some(Arc::new(safelist::visibility(listed, &link).0))
        });
        visible.is_some_and(|v| v.contains(element))
    });
    let owner_user = request.instance.as_ref().and_then(|i| cache.user(ns, &i.owner));
    let owner_org = owner_user.as_ref().and_then(|u| cache.organization_of_user(u));
    let owner = request.instance.as_ref().map(|_| match &owner_user {
        None => Owner::Missing,
        Some(u) => Owner::Found {
            account: &u.spec.account_ref.name,
            organization: owner_org.as_deref(),
        },
    });
    authz::decide(&authz::Inputs {
        user: &caller.user,
        identity: &caller.identity,
        request,
        element_visible,
        owner,
    })
}

/// Authenticates and authorizes in one step.
pub fn check(
    cache: &Cache,
    derived: &Derived,
    authorization: Option<&str>,
    request: &Request,
    now: Timestamp,
) -> (Decision, Option<Caller>) {
    // A check that no object could pass is the route's mistake: refused, never skipped.
    if let Some(why) = request.malformed() {
        return (Decision::invalid(why), None);
    }
    match authenticate(cache, derived, authorization, now) {
        Err(decision) => (decision, None),
        Ok(caller) => (authorize(cache, derived, &caller, request), Some(caller)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::Role,
        cache::testing::TestCache,
        model::{
            authz::Outcome,
            fixtures::{account, binding, in_namespace, org, safelist, user},
        },
    };

    #[test]
    fn a_remembered_identity_is_decided_again_once_the_caches_change() {
        let mut snapshot = TestCache::new(None);
        let jane = in_namespace(user("jane", "hq", "jane@acme.example"), "t");
        snapshot
            .apply([in_namespace(org("acme"), "t")])
            .apply([in_namespace(account("hq", "acme", true), "t")])
            .apply([jane.clone()]);
        let derived = Derived::default();
        let admitted = |cache: &Cache| {
            derived
                .identities
                .get(cache, "uid-jane", || admit(cache, &jane).map(Arc::new))
        };
        let roles = |cache: &Cache| admitted(cache).expect("admitted").roles.clone();
        assert_eq!(roles(&snapshot.cache), [Role::Org]);
        let remembered = admitted(&snapshot.cache).unwrap();
        assert!(
            Arc::ptr_eq(&remembered, &admitted(&snapshot.cache).unwrap()),
            "at rest the identity is looked up, not decided again"
        );
        snapshot.apply([in_namespace(binding("jane-admin", "jane", Role::OrgAdmin, false), "t")]);
        assert_eq!(
            roles(&snapshot.cache),
            [Role::OrgAdmin, Role::Org],
            "a binding added since"
        );

        // The organization's visible elements, remembered the same way.
        let caller = Caller {
            namespace: "t".into(),
            user: "jane".into(),
            identity: admitted(&snapshot.cache).unwrap(),
        };
        let slack = Request {
            element: Some("slack".into()),
            ..Request::default()
        };
        let listing = |elements: &[&str], version: &str| {
            let mut list = in_namespace(safelist("acme-list", "acme", elements), "t");
            list.metadata.resource_version = Some(version.into());
            list
        };
        snapshot.apply([listing(&["hubspot"], "1")]);
        let outcome = |cache: &Cache| authorize(cache, &derived, &caller, &slack).outcome;
        assert_eq!(outcome(&snapshot.cache), Outcome::Forbidden);
        snapshot.apply([listing(&["hubspot", "slack"], "2")]);
        assert_eq!(outcome(&snapshot.cache), Outcome::Allowed, "a safelist changed since");
    }
}
