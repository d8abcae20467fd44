//! Who makes a change through the API server (`kubectl`, a controller, a GitOps tool), judged
//! by `model::actor`: a platform identity, or the CE user its Kubernetes identity names.

use kube::{
    ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, Operation},
    },
};

use super::{stored, typed};
use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, RoleBinding},
    cache::{Cache, resolve::ResolvedIdentity},
    model::{
        actor::{self, Actor, Change},
        privileges::Matrix,
    },
};

/// The identity the tenant API writes as (impersonated), so that the API server's RBAC, audit
/// log and this webhook see a tenant's change, not the operator's. It names the CE user that
/// acts in `TENANT_API_USER_EXTRA` of `userInfo.extra`; only an identity allowed to
/// impersonate it (the operator's) can set that.
pub const TENANT_API_USER: &str = "ce.tenancy.io:tenant-api";
pub const TENANT_API_USER_EXTRA: &str = "ce.tenancy.io/user";

/// Who is outside the CE rules, and how a Kubernetes identity names its CE user.
#[derive(Clone, Debug, Default)]
pub struct Tenancy {
    /// Usernames outside the CE rules, besides the built-in ones (`is_platform`): e.g. the
    /// ServiceAccount of a GitOps controller that applies tenants.
    pub platform_users: Vec<String>,
    /// Groups outside the CE rules, besides `system:masters`.
    pub platform_groups: Vec<String>,
    /// A CE user is named by its e-mail: the username without this prefix (e.g. `oidc:`, the
    /// API server's `--oidc-username-prefix`) ...
    pub username_prefix: String,
    /// ... or, when set, the first value of this key of `userInfo.extra` (a claim the
    /// authenticator copies there).
    pub email_extra: Option<String>,
}

impl Tenancy {
    /// Cluster administrators, the control plane's own controllers (the garbage collector and
    /// the namespace controller delete CE objects), and the identities the values name.
    fn is_platform(&self, username: &str, groups: &[String]) -> bool {
        username.starts_with("system:serviceaccount:kube-system:")
            || username == "system:kube-controller-manager"
            || username == "system:apiserver"
            || self.platform_users.iter().any(|u| u == username)
            || groups
                .iter()
                .any(|g| g == "system:masters" || self.platform_groups.contains(g))
    }

    /// The e-mail a Kubernetes identity presents.
    fn email<'a>(&self, request: &'a AdmissionRequest<DynamicObject>) -> Option<&'a str> {
        let info = &request.user_info;
        match &self.email_extra {
            Some(key) => info.extra.as_ref()?.get(key)?.first().map(String::as_str),
            None => info.username.as_deref()?.strip_prefix(self.username_prefix.as_str()),
        }
    }
}

/// The refusal of `request` by the actor rule, or None when its maker may make it.
pub fn refusal(cache: &Cache, tenancy: &Tenancy, request: &AdmissionRequest<DynamicObject>) -> Option<String> {
    let info = &request.user_info;
    let username = info.username.as_deref().unwrap_or_default();
    if tenancy.is_platform(username, info.groups.as_deref().unwrap_or_default()) {
        return None;
    }
    let ns = request.namespace.clone().unwrap_or_default();
    let judge = |org: &str, change: Change<'_>| judged(cache, tenancy, request, &ns, org, change);
    let why = match request.kind.kind.as_str() {
        "Organization" => {
            let (old, new) = (stored::<Organization>(request), object_new::<Organization>(request));
            judge(
                &request.name,
                Change::Organization {
                    old: old.as_ref(),
                    new: new.as_ref(),
                },
            )
        }
        "Account" => {
            let account = object::<Account>(request)?;
            let org = &account.spec.organization_ref.name;
            judge(org, Change::Account { organization: org })
        }
        "ElementSafelist" => {
            let list = object::<ElementSafelist>(request)?;
            let org = &list.spec.organization_ref.name;
            judge(org, Change::ElementSafelist { organization: org })
        }
        "CEUser" => {
            let (old, new) = (stored::<CEUser>(request), object_new::<CEUser>(request));
            let to = &new.as_ref().or(old.as_ref())?.spec.account_ref.name;
            let from = old.as_ref().map_or(to, |o| &o.spec.account_ref.name);
            match cache.account(&ns, to) {
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
        "RoleBinding" => {
            let binding = object::<RoleBinding>(request)?;
            let bound = &binding.spec.user_ref.name;
            let found = cache
                .user(&ns, bound)
                .and_then(|u| Some((u.spec.account_ref.name.clone(), cache.organization_of_user(&u)?)));
            match found {
                Some((account, org)) => {
                    let roles = cache.organization(&ns, &org).map(|o| o.spec.roles.clone());
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
        _ => None,
    };
    why.map(|why| format!("{} {ns}/{}: {why}", request.kind.kind, request.name))
}

/// The object of a request: the new version, or the stored one for a deletion.
fn object<K: kube::Resource + serde::de::DeserializeOwned>(request: &AdmissionRequest<DynamicObject>) -> Option<K> {
    object_new(request).or_else(|| stored(request))
}

fn object_new<K: kube::Resource + serde::de::DeserializeOwned>(request: &AdmissionRequest<DynamicObject>) -> Option<K> {
    if request.operation == Operation::Delete {
        return None;
    }
    typed(request.object.as_ref(), request).ok().flatten()
}

/// Judges `change`, in organization `org`, by the request's maker.
fn judged(
    cache: &Cache,
    tenancy: &Tenancy,
    request: &AdmissionRequest<DynamicObject>,
    ns: &str,
    org: &str,
    change: Change<'_>,
) -> Option<String> {
    let username = request.user_info.username.as_deref().unwrap_or_default();
    // The tenant API names its CE user; anyone else, the CE user of that e-mail in the
    // change's organization, else of another one there.
    let candidates = if username == TENANT_API_USER {
        let named = request
            .user_info
            .extra
            .as_ref()
            .and_then(|e| e.get(TENANT_API_USER_EXTRA));
        named
            .and_then(|names| names.first())
            .and_then(|name| cache.user(ns, name))
            .into_iter()
            .collect()
    } else {
        tenancy
            .email(request)
            .map(|email| cache.users_with_email(ns, email))
            .unwrap_or_default()
    };
    let in_org = |u: &&std::sync::Arc<CEUser>| cache.organization_of_user(u).as_deref() == Some(org);
    let Some(found) = candidates.iter().find(in_org).or(candidates.first()) else {
        return actor::judge(&Actor::Unknown { username }, &change).err().map(|d| d.0);
    };
    let name = found.name_any();
    match ResolvedIdentity::authenticated(cache, found) {
        Ok(identity) => actor::judge(
            &Actor::Tenant {
                user: &name,
                identity: &identity,
            },
            &change,
        )
        .err()
        .map(|d| d.0),
        Err(why) => Some(format!(
            "{username:?} is CE user {name}, which is not in effect: {}",
            why.message
        )),
    }
}
