//! Resolution of the tenancy tree and its invariants, over objects already read from the
//! cluster: which account is the default, which user holds an e-mail, which role bindings
//! take effect.

use std::{cmp::Ordering, collections::BTreeSet, sync::Arc};

use kube::{Resource, ResourceExt};

use crate::api::{Account, CEUser, Role, RoleBinding, RoleScope};
use crate::model::conditions::Reason;

/// The deterministic age order of the invariant table: older creationTimestamp first, then
/// name, so that two replicas or two runs always pick the same winner.
pub fn by_age<K: Resource>(a: &K, b: &K) -> Ordering {
    // Borrowed, not cloned: the authorization endpoint compares on every request.
    fn key<K: Resource>(k: &K) -> (Option<k8s_openapi::jiff::Timestamp>, Option<&str>) {
        (
            k.meta().creation_timestamp.as_ref().map(|t| t.0),
            k.meta().name.as_deref(),
        )
    }
    key(a).cmp(&key(b))
}

/// Whether `obj` is controlled by (was generated for) the object with uid `owner_uid`.
pub fn is_controlled_by<K: Resource>(obj: &K, owner_uid: Option<&str>) -> bool {
    owner_uid.is_some_and(|uid| {
        obj.meta()
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    })
}

/// The accounts that may be an organization's default: those declaring `default: true`
/// (others are ignored), and the names of those that hold users.
#[derive(Clone, Debug, Default)]
pub struct DefaultCandidates {
    pub accounts: Vec<Arc<Account>>,
    pub with_users: BTreeSet<String>,
}

impl DefaultCandidates {
    /// Candidates none of which holds users.
    pub fn empty(accounts: Vec<Arc<Account>>) -> Self {
        Self {
            accounts,
            with_users: BTreeSet::new(),
        }
    }

    /// The default account (`org_uid` is the organization's): the oldest that declares
    /// `default: true`, where accounts someone declared rank before the one the operator
    /// created for the organization while that one holds no users. The operator creates one
    /// only when none is declared; a declared one that lands later (a multi-document apply
    /// racing the operator) still wins, but never takes the default away from users already
    /// in the generated one (the owner, an org-admin).
    pub fn default_account(&self, org_uid: Option<&str>) -> Option<&Account> {
        let supersedable = |a: &Account| is_controlled_by(a, org_uid) && !self.with_users.contains(&a.name_any());
        self.accounts
            .iter()
            .map(Arc::as_ref)
            .filter(|a| a.spec.default)
            .min_by(|a, b| supersedable(a).cmp(&supersedable(b)).then_with(|| by_age(*a, *b)))
    }
}

/// The system role of a user: `org` in the default account, `default-user` elsewhere.
pub fn system_role(in_default_account: bool) -> Role {
    if in_default_account {
        Role::Org
    } else {
        Role::DefaultUser
    }
}

/// The user that holds `email` within an organization: the oldest user with that address
/// (compared case-insensitively). Any other user with it is a duplicate.
pub fn email_holder<'a, U>(email: &str, users: impl IntoIterator<Item = &'a U>) -> Option<&'a CEUser>
where
    U: std::borrow::Borrow<CEUser> + 'a,
{
    users
        .into_iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|u| u.spec.email.eq_ignore_ascii_case(email))
        .min_by(|a, b| by_age(*a, *b))
}

/// What a RoleBinding amounts to, given the user it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The role applies, within `scope`. `overrides_system_role` when a system role was
    /// bound by hand (accepted, with a warning).
    Effective {
        role: Role,
        scope: RoleScope,
        overrides_system_role: bool,
    },
    /// The role does not apply, for `reason` (a condition reason) explained by `message`.
    Refused { reason: Reason, message: String },
}

/// Where the user of a binding stands, as resolved from the cluster.
pub enum BoundUser<'a> {
    Missing,
    /// The user exists but its account does not (yet).
    NoAccount(&'a CEUser),
    Resolved {
        user: &'a CEUser,
        account: &'a Account,
        account_is_default: bool,
        /// The organization's `security.allowSystemRoleOverride`.
        override_allowed: bool,
    },
}

/// How a RoleBinding's owner references stand to the CEUser it binds. A binding is pinned to
/// its user by an owner reference with the user's uid (the operator adds it): a later user of
/// the same name is not the one it was made for. Only its user, or the organization that
/// generated it (the owner's binding), may own it: deleting anything else must never remove
/// a grant behind the webhook's back (the garbage collector is exempt from review).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// No reference to the user yet.
    Unpinned,
    Pinned,
    /// Pinned to an earlier user of that name, uid given.
    Replaced(String),
    /// Owned by something else: kind and name.
    Foreign(String, String),
}

pub fn pin(binding: &RoleBinding, user: &CEUser) -> Pin {
    let mut pinned = Pin::Unpinned;
    for owner in binding.meta().owner_references.iter().flatten() {
        let ours = owner.api_version.split('/').next() == Some(crate::api::GROUP);
        match owner.kind.as_str() {
            "CEUser" if ours && owner.name == binding.spec.user_ref.name => {
                if user.meta().uid.as_deref() != Some(owner.uid.as_str()) {
                    return Pin::Replaced(owner.uid.clone());
                }
                pinned = Pin::Pinned;
            }
            "Organization" if ours && owner.controller == Some(true) => {}
            kind => return Pin::Foreign(kind.to_owned(), owner.name.clone()),
        }
    }
    pinned
}

/// Judges a RoleBinding against the invariants: the user exists and is the one the binding
/// was made for, the binding is owned by nothing else, org-admin only in the default
/// account, system roles only with overrideSystemRole.
pub fn judge_binding(binding: &RoleBinding, user: BoundUser<'_>) -> Verdict {
    let role = binding.spec.role;
    let user_name = &binding.spec.user_ref.name;
    if let BoundUser::NoAccount(existing) | BoundUser::Resolved { user: existing, .. } = user {
        match pin(binding, existing) {
            Pin::Replaced(uid) => {
                return Verdict::Refused {
                    reason: Reason::UserReplaced,
                    message: format!(
                        "the binding was made for an earlier CEUser {user_name} (uid {uid}), which was deleted; it grants nothing to the CEUser of that name now. Delete it (the garbage collector does shortly) and bind the new user anew"
                    ),
                };
            }
            Pin::Foreign(kind, name) => {
                return Verdict::Refused {
                    reason: Reason::ForeignOwner,
                    message: format!(
                        "the binding has an owner reference to {kind} {name}; only its CEUser (or the organization that generated it) may own a RoleBinding, so that deleting something else never removes a grant unreviewed. Remove that owner reference"
                    ),
                };
            }
            Pin::Unpinned | Pin::Pinned => {}
        }
    }
    let (account, account_is_default, override_allowed) = match user {
        BoundUser::Missing => {
            return Verdict::Refused {
                reason: Reason::UserNotFound,
                message: format!(
                    "CEUser {user_name} does not exist in this namespace; the role takes effect once it does (or fix spec.userRef)"
                ),
            };
        }
        BoundUser::NoAccount(user) => {
            return Verdict::Refused {
                reason: Reason::AccountNotFound,
                message: format!(
                    "the account {} of CEUser {user_name} does not exist; the role takes effect once it does",
                    user.spec.account_ref.name
                ),
            };
        }
        BoundUser::Resolved {
            account,
            account_is_default,
            override_allowed,
            ..
        } => (account, account_is_default, override_allowed),
    };
    if role == Role::OrgAdmin && !account_is_default {
        return Verdict::Refused {
            reason: Reason::OrgAdminRequiresDefaultAccount,
            message: format!(
                "org-admin can only be held by a user of the organization's default account; CEUser {user_name} is in account {}. Bind admin instead, or use a user of the default account",
                account.name_any()
            ),
        };
    }
    if role.is_system_assigned() && !binding.spec.override_system_role {
        return Verdict::Refused {
            reason: Reason::SystemAssignedRole,
            message: format!(
                "{role} is assigned by the system (org in the default account, default-user elsewhere); bind org-admin or admin, or set overrideSystemRole: true to override the system's choice (discouraged)"
            ),
        };
    }
    if role.is_system_assigned() && !override_allowed {
        return Verdict::Refused {
            reason: Reason::SystemRoleOverrideNotAllowed,
            message: format!(
                "overrideSystemRole binds {role} by hand, which this organization does not allow ({role} outside the system's choice widens or narrows a user's scope); set the Organization's spec.security.allowSystemRoleOverride: true to allow it, or bind org-admin or admin"
            ),
        };
    }
    Verdict::Effective {
        role,
        scope: role.scope(),
        overrides_system_role: role.is_system_assigned(),
    }
}

/// Why a bound system role is accepted but discouraged (the seeds: "this overrides the
/// system's assignment of the roles and is not recommended").
pub fn override_message(role: Role) -> String {
    format!(
        "{role} is bound by hand with overrideSystemRole: the system's role assignment for this user is overridden (discouraged)"
    )
}

/// The users of an organization who hold an effective org-admin binding, sorted and without
/// duplicates. `bindings` are org-admin bindings with their user (None if it does not exist),
/// `accounts` the organization's accounts and `default` its default account.
pub fn org_admins<'a>(
    bindings: impl IntoIterator<Item = (&'a RoleBinding, Option<&'a CEUser>)>,
    accounts: &[std::sync::Arc<Account>],
    default: Option<&str>,
) -> Vec<String> {
    let mut admins: Vec<String> = bindings
        .into_iter()
        .filter_map(|(binding, user)| {
            let user = user?;
            let account = accounts.iter().find(|a| a.name_any() == user.spec.account_ref.name)?;
            // Only org-admin counts here, which no override gives.
            let bound = BoundUser::Resolved {
                user,
                account,
                account_is_default: default == Some(account.name_any().as_str()),
                override_allowed: false,
            };
            matches!(
                judge_binding(binding, bound),
                Verdict::Effective {
                    role: Role::OrgAdmin,
                    ..
                }
            )
            .then(|| user.name_any())
        })
        .collect();
    admins.sort();
    admins.dedup();
    admins
}

/// A user's effective roles: the roles of its effective bindings, plus the system role
/// unless a binding overrides it. Sorted, without duplicates.
pub fn effective_roles<'a>(system_role: Role, verdicts: impl IntoIterator<Item = &'a Verdict>) -> Vec<Role> {
    let mut roles = BTreeSet::new();
    let mut overridden = false;
    for verdict in verdicts {
        if let Verdict::Effective {
            role,
            overrides_system_role,
            ..
        } = verdict
        {
            roles.insert(*role);
            overridden |= overrides_system_role;
        }
    }
    if !overridden {
        roles.insert(system_role);
    }
    roles.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::*;
    use crate::api::{AccountSpec, CEUserSpec, LocalRef, RoleBindingSpec};

    fn aged<K: Resource>(mut k: K, secs: i64) -> K {
        k.meta_mut().creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
        k
    }

    fn account(name: &str, default: bool, secs: i64) -> Account {
        let spec = AccountSpec {
            organization_ref: LocalRef::new("acme"),
            display_name: None,
            default,
            allow_cascading_deletion: false,
        };
        aged(Account::new(name, spec), secs)
    }

    fn user(name: &str, email: &str, secs: i64) -> CEUser {
        let spec = CEUserSpec {
            account_ref: LocalRef::new("acct"),
            email: email.into(),
            display_name: None,
        };
        aged(CEUser::new(name, spec), secs)
    }

    fn binding(role: Role, override_system_role: bool) -> RoleBinding {
        RoleBinding::new(
            "b",
            RoleBindingSpec {
                user_ref: LocalRef::new("jane"),
                role,
                override_system_role,
            },
        )
    }

    /// The default among `accounts`, none of which holds users.
    fn default_account(accounts: &[Account], org_uid: Option<&str>) -> Option<String> {
        DefaultCandidates::empty(accounts.iter().cloned().map(Arc::new).collect())
            .default_account(org_uid)
            .map(ResourceExt::name_any)
    }

    #[test]
    fn the_oldest_declared_default_account_wins_whatever_the_order() {
        let accounts = [
            account("b-newer", true, 20),
            account("plain", false, 1),
            account("a-older", true, 10),
        ];
        assert_eq!(default_account(&accounts, None).unwrap(), "a-older");
        let reversed: Vec<_> = accounts.iter().rev().cloned().collect();
        assert_eq!(default_account(&reversed, None).unwrap(), "a-older");
        assert!(default_account(&[account("plain", false, 1)], None).is_none());
    }

    #[test]
    fn a_declared_default_ranks_before_the_one_the_operator_created() {
        let mut generated = account("acme-default", true, 1);
        generated.metadata.owner_references =
            Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "ce.tenancy.io/v1alpha1".into(),
                kind: "Organization".into(),
                name: "acme".into(),
                uid: "org-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
        let accounts = [generated.clone(), account("declared-later", true, 5)];
        assert_eq!(default_account(&accounts, Some("org-uid")).unwrap(), "declared-later");
        // Without a declared one, the generated one is the default.
        assert_eq!(
            default_account(&[generated.clone()], Some("org-uid")).unwrap(),
            "acme-default"
        );
        // Once the generated one holds users, a declared one no longer takes it over.
        let in_use = DefaultCandidates {
            accounts: accounts.iter().cloned().map(Arc::new).collect(),
            with_users: BTreeSet::from(["acme-default".to_owned()]),
        };
        assert_eq!(
            in_use.default_account(Some("org-uid")).unwrap().name_any(),
            "acme-default"
        );
    }

    #[test]
    fn same_age_is_broken_by_name() {
        let accounts = [account("zeta", true, 10), account("alpha", true, 10)];
        assert_eq!(default_account(&accounts, None).unwrap(), "alpha");
    }

    #[test]
    fn system_role_follows_the_account() {
        assert_eq!(system_role(true), Role::Org);
        assert_eq!(system_role(false), Role::DefaultUser);
    }

    #[test]
    fn the_oldest_user_holds_an_email_case_insensitively() {
        let users = [
            user("second", "Jane@Acme.example", 20),
            user("first", "jane@acme.example", 10),
            user("other", "x@acme.example", 1),
        ];
        assert_eq!(email_holder("JANE@acme.example", &users).unwrap().name_any(), "first");
        assert!(email_holder("nobody@acme.example", &users).is_none());
    }

    #[test]
    fn bindings_are_judged_against_the_invariants() {
        let jane = user("jane", "jane@acme.example", 1);
        let default = account("hq", true, 1);
        let other = account("eu", false, 1);
        let resolved = |account_is_default| BoundUser::Resolved {
            user: &jane,
            account: if account_is_default { &default } else { &other },
            account_is_default,
            override_allowed: true,
        };
        let refused = |v: Verdict| match v {
            Verdict::Refused { reason, .. } => reason,
            v => panic!("expected a refusal, got {v:?}"),
        };
        assert_eq!(
            refused(judge_binding(&binding(Role::Admin, false), BoundUser::Missing)),
            Reason::UserNotFound
        );
        assert_eq!(
            refused(judge_binding(&binding(Role::Admin, false), BoundUser::NoAccount(&jane))),
            Reason::AccountNotFound
        );
        assert_eq!(
            refused(judge_binding(&binding(Role::OrgAdmin, false), resolved(false))),
            Reason::OrgAdminRequiresDefaultAccount
        );
        assert_eq!(
            refused(judge_binding(&binding(Role::Org, false), resolved(true))),
            Reason::SystemAssignedRole
        );
        assert_eq!(
            refused(judge_binding(&binding(Role::DefaultUser, false), resolved(false))),
            Reason::SystemAssignedRole
        );
        assert_eq!(
            judge_binding(&binding(Role::OrgAdmin, false), resolved(true)),
            Verdict::Effective {
                role: Role::OrgAdmin,
                scope: RoleScope::Organization,
                overrides_system_role: false
            }
        );
        assert_eq!(
            judge_binding(&binding(Role::Admin, false), resolved(false)),
            Verdict::Effective {
                role: Role::Admin,
                scope: RoleScope::Account,
                overrides_system_role: false
            }
        );
        // An override widens org to organization scope outside the default account: only
        // where the organization allows it.
        let disallowed = BoundUser::Resolved {
            user: &jane,
            account: &other,
            account_is_default: false,
            override_allowed: false,
        };
        assert_eq!(
            refused(judge_binding(&binding(Role::Org, true), disallowed)),
            Reason::SystemRoleOverrideNotAllowed
        );
        assert_eq!(
            judge_binding(&binding(Role::Org, true), resolved(false)),
            Verdict::Effective {
                role: Role::Org,
                scope: RoleScope::Organization,
                overrides_system_role: true
            }
        );
    }

    #[test]
    fn effective_roles_are_the_system_role_plus_bound_roles_unless_overridden() {
        let admin = Verdict::Effective {
            role: Role::Admin,
            scope: RoleScope::Account,
            overrides_system_role: false,
        };
        let refused = Verdict::Refused {
            reason: Reason::UserNotFound,
            message: String::new(),
        };
        assert_eq!(effective_roles(Role::DefaultUser, []), vec![Role::DefaultUser]);
        assert_eq!(
            effective_roles(Role::DefaultUser, [&admin, &refused, &admin]),
            vec![Role::Admin, Role::DefaultUser]
        );
        let override_org = Verdict::Effective {
            role: Role::Org,
            scope: RoleScope::Organization,
            overrides_system_role: true,
        };
        assert_eq!(effective_roles(Role::DefaultUser, [&override_org]), vec![Role::Org]);
    }

    /// A system role bound by hand is accepted with the seeds' warning, naming the role.
    #[test]
    fn an_override_is_told_with_its_role() {
        let message = override_message(Role::Org);
        assert!(
            message.starts_with("org is bound by hand with overrideSystemRole"),
            "{message}"
        );
        assert!(message.contains("discouraged"), "{message}");
    }

    /// A binding owned by an organization only as its controller (the organization's own
    /// binding of its owner); any other owner makes it someone else's.
    #[test]
    fn a_binding_owned_by_an_organization_not_as_controller_is_foreign() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let user = CEUser::new(
            "sam",
            CEUserSpec {
                account_ref: LocalRef::new("hq"),
                email: "sam@acme.example".into(),
                display_name: None,
            },
        );
        let owned = |controller: Option<bool>, api_version: &str| {
            let mut binding = RoleBinding::new(
                "sam-oa",
                RoleBindingSpec {
                    user_ref: LocalRef::new("sam"),
                    role: Role::OrgAdmin,
                    override_system_role: false,
                },
            );
            binding.metadata.owner_references = Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: "Organization".into(),
                name: "acme".into(),
                uid: "uid-acme".into(),
                controller,
                ..Default::default()
            }]);
            binding
        };
        assert_eq!(pin(&owned(Some(true), "ce.tenancy.io/v1alpha1"), &user), Pin::Unpinned);
        assert!(matches!(
            pin(&owned(None, "ce.tenancy.io/v1alpha1"), &user),
            Pin::Foreign(..)
        ));
        assert!(matches!(
            pin(&owned(Some(true), "other.example/v1"), &user),
            Pin::Foreign(..)
        ));
    }

    /// Controlled by an owner means a controller reference with the owner's uid: neither a
    /// plain owner reference with that uid, nor a controller of another uid.
    #[test]
    fn controlled_means_the_controller_reference_of_that_uid() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let owned = |uid: &str, controller: Option<bool>| {
            let mut account = crate::model::fixtures::account("hq", "acme", false);
            account.metadata.owner_references = Some(vec![OwnerReference {
                uid: uid.into(),
                controller,
                ..Default::default()
            }]);
            account
        };
        assert!(is_controlled_by(&owned("u1", Some(true)), Some("u1")));
        assert!(!is_controlled_by(&owned("u1", None), Some("u1")));
        assert!(!is_controlled_by(&owned("u2", Some(true)), Some("u1")));
        assert!(!is_controlled_by(&owned("u1", Some(true)), None));
    }
}
