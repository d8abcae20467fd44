//! Who may act: the seeds' Security section as one rule. A CE user acting on the tenancy
//! (through `kubectl`, judged by the admission webhook) may make a change only if its roles
//! and privileges allow it; platform identities (the operator, cluster administrators, the
//! identities the chart names) are outside these rules, and Kubernetes RBAC alone decides.
//!
//! What the seeds leave open, decided here:
//! - The Security section ("the organization administrator is the only user with access")
//!   is read as the privileges it consists of: `manageSecurity` for the organization's
//!   settings, `configureRoles` for the role matrix, `manageAccounts` for accounts. They are
//!   judged in the organization scope, so an account administrator never has them, whatever
//!   the matrix says; an organization may grant them to `org` (every user of the default
//!   account) on purpose. What org-admin may never lose is `roles_applied`'s protected set.
//! - Organization fields outside roles, security, owner and display name (the default
//!   account's name, the super-organization link, whitelabel settings, cascading deletion)
//!   are settings of the organization: `manageSecurity` too; a super-organization's
//!   `elementDenylist` is its element list: `manageElementOrgLists`.
//! - Creating or deleting an Organization, and anything in another organization, is never a
//!   tenant's: a platform identity does it.

use std::collections::BTreeSet;

use super::{privileges::Matrix, user::Identity};
use crate::api::{Organization, Privilege, Role, RoleScope};

/// Who makes a change.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// The operator, a cluster administrator, or an identity the chart names: RBAC decides.
    Platform,
    /// A CE user in effect, of organization `identity.organization`.
    Tenant { user: &'a str, identity: &'a Identity },
    /// A Kubernetes identity that is neither: no CE user of the change's organization has it.
    Unknown { username: &'a str },
}

/// A change, with what it takes to judge it (resolved from the caches by the caller).
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    Organization {
        old: Option<&'a Organization>,
        new: Option<&'a Organization>,
    },
    Account {
        organization: &'a str,
    },
    /// `accounts`: the user's account before and after (a move needs both).
    CEUser {
        organization: &'a str,
        accounts: (&'a str, &'a str),
    },
    /// A binding created or deleted for a user of `account`, with the organization's matrix.
    RoleBinding {
        organization: &'a str,
        account: &'a str,
        role: Role,
        matrix: &'a Matrix,
    },
    ElementSafelist {
        organization: &'a str,
    },
}

/// Why a change is refused: a sentence a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

/// Whether `actor` may make `change`.
pub fn judge(actor: &Actor<'_>, change: &Change<'_>) -> Result<(), Denied> {
    let (user, identity) = match actor {
        Actor::Platform => return Ok(()),
        Actor::Unknown { username } => {
            return Err(Denied(format!(
                "{username:?} is not a CE user of organization {} in this namespace, nor a platform identity; ask an org-admin to make the change",
                change.organization().unwrap_or("(a new organization)")
            )));
        }
        Actor::Tenant { user, identity } => (*user, *identity),
    };
    let organization = match change.organization() {
        Some(org) if org == identity.organization => org,
        Some(other) => {
            return Err(Denied(format!(
                "user {user} of organization {} cannot change anything of organization {other}",
                identity.organization
            )));
        }
        None => {
            return Err(Denied(format!(
                "user {user} cannot create or delete organizations; a platform administrator does"
            )));
        }
    };
    let org_wide = |privilege: Privilege, what: &str| -> Result<(), Denied> {
        if identity.scopes.organization.contains(&privilege) {
            Ok(())
        } else {
            Err(Denied(format!(
                "{what} needs the {} privilege organization-wide in {organization}, which user {user} does not hold",
                privilege
            )))
        }
    };
    match *change {
        Change::Organization { old, new } => {
            let (Some(old), Some(new)) = (old, new) else {
                return Err(Denied(format!(
                    "user {user} cannot create or delete organizations; a platform administrator does"
                )));
            };
            for (field, privilege) in organization_fields_changed(old, new) {
                org_wide(privilege, &format!("changing spec.{field}"))?;
            }
            Ok(())
        }
        Change::Account { .. } => org_wide(Privilege::ManageAccounts, "an account change"),
        Change::ElementSafelist { .. } => org_wide(Privilege::ManageElementOrgLists, "a safelist change"),
        Change::CEUser {
            accounts: (from, to), ..
        } => {
            for account in BTreeSet::from([from, to]) {
                covers(identity, user, Privilege::ManageUsers, account, "a user change")?;
            }
            Ok(())
        }
        Change::RoleBinding {
            account, role, matrix, ..
        } => {
            covers(identity, user, Privilege::ManageUsers, account, "a role binding")?;
            if role == Role::OrgAdmin && !identity.roles.contains(&Role::OrgAdmin) {
                return Err(Denied(format!(
                    "only an org-admin grants or revokes org-admin; user {user} is not one"
                )));
            }
            // Nobody grants more than they hold, where the role holds.
            let held: Vec<Privilege> = matrix
                .privileges(role)
                .iter()
                .copied()
                .filter(|p| match role.scope() {
                    RoleScope::Organization => !identity.scopes.organization.contains(p),
                    RoleScope::Account => !identity.holds_in(*p, account),
                })
                .collect();
            if let Some(missing) = held.first() {
                let scope = match role.scope() {
                    RoleScope::Organization => "organization-wide".to_owned(),
                    RoleScope::Account => format!("in account {account}"),
                };
                return Err(Denied(format!(
                    "role {} holds {} {scope}, which user {user} does not hold there: nobody grants more than they hold",
                    role, missing
                )));
            }
            Ok(())
        }
    }
}

/// Whether a tenant sees an account of its organization (through the tenant API): its own,
/// or one it may manage (every account with `manageAccounts`, those whose users it manages).
/// What it does not see is answered as absent, never as forbidden.
pub fn sees_account(identity: &Identity, account: &str) -> bool {
    identity.account == account
        || identity.scopes.organization.contains(&Privilege::ManageAccounts)
        || identity.holds_in(Privilege::ManageUsers, account)
}

/// Whether tenant `me` sees user `user` of account `account` of its organization: itself, or
/// a user it may manage.
pub fn sees_user(identity: &Identity, me: &str, user: &str, account: &str) -> bool {
    me == user || identity.holds_in(Privilege::ManageUsers, account)
}

fn covers(identity: &Identity, user: &str, privilege: Privilege, account: &str, what: &str) -> Result<(), Denied> {
    if identity.holds_in(privilege, account) {
        return Ok(());
    }
    Err(Denied(format!(
        "{what} in account {account} needs the {} privilege there (account-wide in one's own account, organization-wide elsewhere), which user {user} does not hold",
        privilege
    )))
}

/// The fields of an Organization's spec an update changes, with the privilege each needs.
fn organization_fields_changed(old: &Organization, new: &Organization) -> Vec<(&'static str, Privilege)> {
    let (a, b) = (&old.spec, &new.spec);
    fn denylist(o: &Organization) -> Option<&Vec<String>> {
        o.spec.whitelabel.as_ref().map(|w| &w.element_denylist)
    }
    fn ours(o: &Organization) -> Vec<(&String, &String)> {
        o.metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("ce.tenancy.io/"))
            .collect()
    }
    let rest = |o: &Organization| {
        o.spec.whitelabel.as_ref().map(|w| {
            let mut w = w.clone();
            w.element_denylist.clear();
            w
        })
    };
    [
        ("roles", a.roles != b.roles, Privilege::ConfigureRoles),
        ("security", a.security != b.security, Privilege::ManageSecurity),
        ("owner", a.owner != b.owner, Privilege::ManageSecurity),
        (
            "displayName",
            a.display_name != b.display_name,
            Privilege::ManageSecurity,
        ),
        (
            "defaultAccountName",
            a.default_account_name != b.default_account_name,
            Privilege::ManageSecurity,
        ),
        (
            "superOrganizationRef",
            a.super_organization_ref != b.super_organization_ref,
            Privilege::ManageSecurity,
        ),
        (
            "allowCascadingDeletion",
            a.allow_cascading_deletion != b.allow_cascading_deletion,
            Privilege::ManageSecurity,
        ),
        (
            "whitelabel.elementDenylist",
            denylist(old) != denylist(new),
            Privilege::ManageElementOrgLists,
        ),
        ("whitelabel", rest(old) != rest(new), Privilege::ManageSecurity),
        // The operator's annotations (a secret rotation request) are a security setting.
        (
            "metadata.annotations",
            ours(old) != ours(new),
            Privilege::ManageSecurity,
        ),
    ]
    .into_iter()
    .filter(|(_, changed, _)| *changed)
    .map(|(field, _, privilege)| (field, privilege))
    .collect()
}

impl Change<'_> {
    /// The organization the change is in; None for creating or deleting one.
    pub fn organization(&self) -> Option<&str> {
        match self {
            Change::Organization {
                old: Some(org),
                new: Some(_),
            } => org.metadata.name.as_deref(),
            Change::Organization { .. } => None,
            Change::Account { organization }
            | Change::CEUser { organization, .. }
            | Change::RoleBinding { organization, .. }
            | Change::ElementSafelist { organization } => Some(organization),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::RoleCustomization,
        model::{fixtures::*, privileges::default_privileges},
    };

    /// The identity a user of `account` in acme holds with `roles` under `matrix`.
    fn identity(account: &str, roles: &[Role], matrix: &Matrix) -> Identity {
        Identity {
            organization: "acme".into(),
            account: account.into(),
            system_role: if account == "hq" { Role::Org } else { Role::DefaultUser },
            roles: roles.to_vec(),
            scopes: crate::model::user::scopes(matrix, roles),
        }
    }

    struct People {
        org_admin: Identity,
        admin_eu: Identity,
        plain_eu: Identity,
    }

    fn people(matrix: &Matrix) -> People {
        People {
            org_admin: identity("hq", &[Role::OrgAdmin, Role::Org], matrix),
            admin_eu: identity("eu", &[Role::Admin, Role::DefaultUser], matrix),
            plain_eu: identity("eu", &[Role::DefaultUser], matrix),
        }
    }

    fn tenant<'a>(identity: &'a Identity) -> Actor<'a> {
        Actor::Tenant {
            user: "someone",
            identity,
        }
    }

    fn allowed(identity: &Identity, change: &Change<'_>) -> bool {
        judge(&tenant(identity), change).is_ok()
    }

    fn refusal(identity: &Identity, change: &Change<'_>) -> String {
        judge(&tenant(identity), change).expect_err("refused").0
    }

    #[test]
    fn a_tenant_sees_itself_and_what_it_may_manage() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        for account in ["hq", "eu", "apac"] {
            assert!(sees_account(&p.org_admin, account), "org-admin sees {account}");
            assert!(
                sees_user(&p.org_admin, "sam", "x", account),
                "org-admin sees users of {account}"
            );
        }
        assert!(sees_account(&p.admin_eu, "eu"));
        assert!(!sees_account(&p.admin_eu, "hq"), "an admin sees no other account");
        assert!(sees_user(&p.admin_eu, "jane", "joe", "eu"));
        assert!(!sees_user(&p.admin_eu, "jane", "sam", "hq"));
        assert!(sees_account(&p.plain_eu, "eu"), "a user sees its own account");
        // manageAccounts organization-wide, without manageUsers: every account, no user.
        let customised = Matrix::new(&[RoleCustomization {
            role: Role::Org,
            grant: vec![Privilege::ManageAccounts],
            revoke: Vec::new(),
        }]);
        let account_manager = identity("hq", &[Role::Org], &customised);
        assert!(
            sees_account(&account_manager, "apac"),
            "manageAccounts sees every account"
        );
        assert!(!sees_user(&account_manager, "kim", "lee", "apac"));
        assert!(sees_user(&p.plain_eu, "joe", "joe", "eu"), "a user sees itself");
        assert!(
            !sees_user(&p.plain_eu, "joe", "jane", "eu"),
            "a plain user sees no one else"
        );
    }

    #[test]
    fn accounts_need_manage_accounts_organization_wide() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let change = Change::Account { organization: "acme" };
        assert!(allowed(&p.org_admin, &change));
        let said = refusal(&p.admin_eu, &change);
        assert!(
            said.contains("manageAccounts") && said.contains("organization-wide"),
            "{said}"
        );
        assert!(!allowed(&p.plain_eu, &change));
        assert!(judge(&Actor::Platform, &change).is_ok());
        let unknown = judge(&Actor::Unknown { username: "eve@x" }, &change).unwrap_err().0;
        assert!(unknown.contains("not a CE user of organization acme"), "{unknown}");
    }

    #[test]
    fn users_need_manage_users_in_a_scope_covering_their_account() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let user_in = |from: &'static str, to: &'static str| Change::CEUser {
            organization: "acme",
            accounts: (from, to),
        };
        for account in ["hq", "eu", "apac"] {
            assert!(
                allowed(&p.org_admin, &user_in(account, account)),
                "org-admin in {account}"
            );
        }
        assert!(
            allowed(&p.admin_eu, &user_in("eu", "eu")),
            "an admin in its own account"
        );
        let said = refusal(&p.admin_eu, &user_in("hq", "hq"));
        assert!(said.contains("manageUsers") && said.contains("account hq"), "{said}");
        assert!(
            !allowed(&p.admin_eu, &user_in("eu", "hq")),
            "moving a user out of its account"
        );
        assert!(!allowed(&p.plain_eu, &user_in("eu", "eu")));
    }

    #[test]
    fn bindings_grant_no_more_than_the_granter_holds() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let bind = |account: &'static str, role: Role| Change::RoleBinding {
            organization: "acme",
            account,
            role,
            matrix: &matrix,
        };
        assert!(allowed(&p.org_admin, &bind("hq", Role::OrgAdmin)));
        assert!(allowed(&p.org_admin, &bind("eu", Role::Admin)));
        assert!(
            allowed(&p.admin_eu, &bind("eu", Role::Admin)),
            "admin in its own account"
        );
        assert!(!allowed(&p.admin_eu, &bind("hq", Role::Admin)), "admin elsewhere");
        let said = refusal(&p.admin_eu, &bind("eu", Role::OrgAdmin));
        assert!(said.contains("only an org-admin grants or revokes org-admin"), "{said}");
        assert!(!allowed(&p.plain_eu, &bind("eu", Role::Admin)));

        // An org-admin without createElements (revoked) cannot grant admin, which has it.
        let customised = Matrix::new(&[RoleCustomization {
            role: Role::OrgAdmin,
            grant: Vec::new(),
            revoke: vec![Privilege::CreateElements],
        }]);
        let limited = identity("hq", &[Role::OrgAdmin, Role::Org], &customised);
        let said = refusal(
            &limited,
            &Change::RoleBinding {
                organization: "acme",
                account: "eu",
                role: Role::Admin,
                matrix: &customised,
            },
        );
        assert!(
            said.contains("createElements") && said.contains("nobody grants more"),
            "{said}"
        );
        assert!(default_privileges(Role::Admin).contains(&Privilege::CreateElements));
    }

    #[test]
    fn organization_settings_need_the_security_section_privileges() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let old = org_with("acme", serde_json::json!({"displayName": "Acme"}));
        let update = |spec: serde_json::Value| org_with("acme", spec);
        let cases = [
            (
                update(serde_json::json!({"displayName": "Acme Corp"})),
                "displayName",
                "manageSecurity",
            ),
            (
                update(
                    serde_json::json!({"displayName": "Acme", "roles": [{"role": "admin", "grant": ["viewActivity"]}]}),
                ),
                "roles",
                "configureRoles",
            ),
            (
                update(serde_json::json!({"displayName": "Acme", "security": {"secretLength": 48}})),
                "security",
                "manageSecurity",
            ),
            (
                update(serde_json::json!({"displayName": "Acme", "owner": {"email": "new@acme.example"}})),
                "owner",
                "manageSecurity",
            ),
        ];
        for (new, field, privilege) in &cases {
            let change = Change::Organization {
                old: Some(&old),
                new: Some(new),
            };
            assert!(allowed(&p.org_admin, &change), "{field}");
            let said = refusal(&p.admin_eu, &change);
            assert!(
                said.contains(&format!("spec.{field}")) && said.contains(privilege),
                "{field}: {said}"
            );
        }
        // A secret rotation requested on the organization is a security setting.
        let mut rotate = old.clone();
        rotate.metadata.annotations = Some([("ce.tenancy.io/rotate-secret".to_owned(), "r1".to_owned())].into());
        let said = refusal(
            &p.admin_eu,
            &Change::Organization {
                old: Some(&old),
                new: Some(&rotate),
            },
        );
        assert!(
            said.contains("metadata.annotations") && said.contains("manageSecurity"),
            "{said}"
        );
        // Nothing changed (a status-only or no-op apply) needs nothing.
        assert!(allowed(
            &p.plain_eu,
            &Change::Organization {
                old: Some(&old),
                new: Some(&old)
            }
        ));
        // Creating or deleting an organization is never a tenant's.
        for change in [
            Change::Organization {
                old: None,
                new: Some(&old),
            },
            Change::Organization {
                old: Some(&old),
                new: None,
            },
        ] {
            assert!(refusal(&p.org_admin, &change).contains("platform administrator"));
        }
    }

    #[test]
    fn element_lists_need_manage_element_org_lists() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let change = Change::ElementSafelist { organization: "acme" };
        assert!(allowed(&p.org_admin, &change));
        assert!(refusal(&p.admin_eu, &change).contains("manageElementOrgLists"));
        // A super-organization's denylist is its element list.
        let old = super_org("acme", &["tenants"], &["box"]);
        let new = super_org("acme", &["tenants"], &["box", "slack"]);
        let denylist = Change::Organization {
            old: Some(&old),
            new: Some(&new),
        };
        assert!(allowed(&p.org_admin, &denylist));
        let said = refusal(&p.admin_eu, &denylist);
        assert!(
            said.contains("whitelabel.elementDenylist") && said.contains("manageElementOrgLists"),
            "{said}"
        );
        let widened = super_org("acme", &["tenants", "more"], &["box"]);
        let settings = refusal(
            &p.admin_eu,
            &Change::Organization {
                old: Some(&old),
                new: Some(&widened),
            },
        );
        assert!(
            settings.contains("spec.whitelabel ") && settings.contains("manageSecurity"),
            "{settings}"
        );
    }

    #[test]
    fn nothing_in_another_organization() {
        let matrix = Matrix::new(&[]);
        let p = people(&matrix);
        let elsewhere = [
            Change::Account { organization: "globex" },
            Change::ElementSafelist { organization: "globex" },
            Change::CEUser {
                organization: "globex",
                accounts: ("ghq", "ghq"),
            },
        ];
        for change in &elsewhere {
            let said = refusal(&p.org_admin, change);
            assert!(said.contains("cannot change anything of organization globex"), "{said}");
        }
    }
}
