//! Who makes a change through the API server (`kubectl`, a controller, a GitOps tool), judged
//! by `model::actor`: a platform identity, or the CE user its Kubernetes identity names.

use kube::{
    ResourceExt,
    core::{DynamicObject, admission::AdmissionRequest},
};

use super::admit::Admit;
use crate::{
    api::CEUser,
    cache::{Cache, resolve::ResolvedIdentity},
    model::actor::{self, Actor, Change},
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
    macro_rules! by_kind {
        ($($kind:ident => $field:ident,)*) => {
            match request.kind.kind.as_str() {
                $(stringify!($kind) => <crate::api::$kind as Admit>::actor(cache, &ns, request, &judge),)*
                _ => None,
            }
        };
    }
    let why = crate::kinds::for_each_kind!(by_kind);
    why.map(|why| format!("{} {ns}/{}: {why}", request.kind.kind, request.name))
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
