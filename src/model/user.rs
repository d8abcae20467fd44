//! The CEUser decision: who the user is (account, organization, system role, roles,
//! privileges and where they hold), whether it holds its e-mail, and its user secret.
//!
//! `identity` and `email_conflict` are also what the authorization endpoint asks before it
//! lets a caller in, and what admission asks of a new user.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{
    Action, Decision,
    conditions::{self, ConditionType, Desired, Reason},
    issuance::{HolderKind, IssuanceKey},
    names::{self, LABEL_ACCOUNT, LABEL_ORGANIZATION, LABEL_SECRET_OF, LABEL_USER},
    privileges::Matrix,
    secrets::{self, Owner, SecretFacts, SecretInputs, SecretValue},
    tenancy::{self, BoundUser, DefaultCandidates},
};
use crate::api::{
    Account, CEUser, CEUserStatus, Organization, Privilege, PrivilegeScopes, Role, RoleBinding, RoleScope, SecretRef,
};

/// Who a user is, as far as roles and privileges go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub organization: String,
    pub account: String,
    pub system_role: Role,
    /// Effective roles, sorted.
    pub roles: Vec<Role>,
    /// Privileges by where they hold.
    pub scopes: PrivilegeScopes,
}

impl Identity {
    /// Every privilege the user holds somewhere, sorted.
    pub fn privileges(&self) -> Vec<Privilege> {
        let mut all: Vec<Privilege> = self
            .scopes
            .organization
            .iter()
            .chain(&self.scopes.account)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether the user holds `privilege` for something in account `account` of its
    /// organization: organization-wide privileges cover every account, the others only the
    /// user's own.
    pub fn holds_in(&self, privilege: Privilege, account: &str) -> bool {
        self.scopes.organization.contains(&privilege)
            || (account == self.account && self.scopes.account.contains(&privilege))
    }
}

/// What the identity of a user depends on.
pub struct IdentityInputs<'a> {
    pub user: &'a CEUser,
    pub account: Option<&'a Account>,
    /// The account's organization.
    pub organization: Option<&'a Organization>,
    /// The organization's candidates for its default account (to tell the default account).
    pub default_candidates: &'a DefaultCandidates,
    /// The user's RoleBindings.
    pub bindings: &'a [Arc<RoleBinding>],
    /// The users of the same organization with the same e-mail (case-insensitively), this one
    /// included.
    pub same_email: &'a [Arc<CEUser>],
}

/// The user's identity, or why it has none (its account or organization is missing).
pub fn identity(inputs: &IdentityInputs<'_>) -> Result<Identity, Desired> {
    let user = inputs.user;
    let ns = user.namespace().unwrap_or_default();
    let account_name = &user.spec.account_ref.name;
    let Some(account) = inputs.account else {
        return Err(Desired::new(
            ConditionType::Ready,
            Reason::AccountNotFound,
            format!(
                "Account {account_name} does not exist in namespace {ns}; the user becomes ready once it does (or fix spec.accountRef)"
            ),
        ));
    };
    let Some(org) = inputs.organization else {
        return Err(Desired::new(
            ConditionType::Ready,
            Reason::OrganizationNotFound,
            format!(
                "Organization {} of account {account_name} does not exist; the user becomes ready once it does",
                account.spec.organization_ref.name
            ),
        ));
    };
    let in_default = inputs
        .default_candidates
        .default_account(org.meta().uid.as_deref())
        .is_some_and(|d| d.name_any() == *account_name);
    let system_role = tenancy::system_role(in_default);
    let verdicts: Vec<_> = inputs
        .bindings
        .iter()
        .map(|b| {
            tenancy::judge_binding(
                b,
                BoundUser::Resolved {
                    user,
                    account,
                    account_is_default: in_default,
                    override_allowed: org.spec.security.allow_system_role_override,
                },
            )
        })
        .collect();
    let roles = tenancy::effective_roles(system_role, &verdicts);
    let scopes = scopes(&Matrix::new(&org.spec.roles), &roles);
    Ok(Identity {
        organization: org.name_any(),
        account: account_name.clone(),
        system_role,
        roles,
        scopes,
    })
}

/// Where the privileges of `roles` hold: those of organization-scoped roles everywhere in the
/// organization, the others only in the user's own account.
pub fn scopes(matrix: &Matrix, roles: &[Role]) -> PrivilegeScopes {
    let in_scope = |scope: RoleScope| roles.iter().filter(move |r| r.scope() == scope);
    let organization = matrix.union(in_scope(RoleScope::Organization));
    let account = matrix
        .union(in_scope(RoleScope::Account))
        .into_iter()
        .filter(|p| !organization.contains(p))
        .collect();
    PrivilegeScopes { organization, account }
}

/// Why `user` may not use its e-mail: an older user of organization `org` holds it.
pub fn email_conflict(user: &CEUser, same_email: &[Arc<CEUser>], org: &str) -> Option<Desired> {
    let holder = tenancy::email_holder(&user.spec.email, same_email)?;
    (holder.name_any() != user.name_any()).then(|| {
        Desired::new(
            ConditionType::Ready,
            Reason::DuplicateEmail,
            format!(
                "{} is already the e-mail of user {} in organization {org}; no secret is issued for this user. Change spec.email or delete one of them",
                user.spec.email,
                holder.name_any()
            ),
        )
    })
}

/// The identity of a user that may authenticate: resolved, and holding its e-mail.
pub fn authenticated(inputs: &IdentityInputs<'_>) -> Result<Identity, Desired> {
    let identity = identity(inputs)?;
    match email_conflict(inputs.user, inputs.same_email, &identity.organization) {
        Some(conflict) => Err(conflict),
        None => Ok(identity),
    }
}

/// Everything the CEUser decision depends on.
pub struct Inputs<'a> {
    pub identity: IdentityInputs<'a>,
    /// The user's Secret, as known.
    pub secret: Option<&'a SecretFacts>,
    /// A fresh value, drawn by the caller, used if a secret is issued.
    pub fresh_secret: &'a SecretValue,
    /// The key the operator seals the values it issues with.
    pub issuance_key: &'a IssuanceKey,
    pub namespace_terminating: bool,
    pub now: Timestamp,
}

pub fn decide(inputs: &Inputs<'_>) -> Decision<CEUserStatus> {
    let user = inputs.identity.user;
    let previous = user.status.clone().unwrap_or_default();
    // Nothing is created for a user on its way out.
    if inputs.namespace_terminating || user.meta().deletion_timestamp.is_some() {
        return Decision::status(previous);
    }
    let name = user.name_any();
    let mut status = CEUserStatus {
        observed_generation: user.meta().generation,
        ..Default::default()
    };
    let mut decision_actions = Vec::new();
    let mut events = Vec::new();
    let mut requeue_after = None;
    let desired = match identity(&inputs.identity) {
        Err(unresolved) => vec![unresolved],
        Ok(identity) => {
            status.organization = Some(identity.organization.clone());
            status.account = Some(identity.account.clone());
            status.system_role = Some(identity.system_role);
            status.privileges = identity.privileges();
            status.roles = identity.roles.clone();
            let scopes = &identity.scopes;
            status.privilege_scopes =
                (!scopes.organization.is_empty() || !scopes.account.is_empty()).then(|| scopes.clone());
            match email_conflict(user, inputs.identity.same_email, &identity.organization) {
                Some(conflict) => vec![conflict],
                None => {
                    let org = inputs.identity.organization.expect("an identity has an organization");
                    let secret_name = names::user_secret(&name);
                    let labels = user_secret_labels(&identity.organization, &identity.account, &name);
                    let outcome = secrets::plan(&SecretInputs {
                        name: &secret_name,
                        owner: Owner::of(HolderKind::CEUser, user.meta()),
                        key: inputs.issuance_key,
                        observed: inputs.secret,
                        reported_fingerprint: previous.secret_fingerprint.as_deref(),
                        fresh: inputs.fresh_secret,
                        labels: &labels,
                        grace: secrets::grace_period(&org.spec.security.rotation_grace_period),
                        now: inputs.now,
                    });
                    let ready = if outcome.condition.is_problem() {
                        outcome.condition.mirrored_as(ConditionType::Ready)
                    } else {
                        status.secret_ref = Some(SecretRef {
                            name: secret_name.clone(),
                        });
                        Desired::new(
                            ConditionType::Ready,
                            Reason::Ready,
                            format!(
                                "user of account {} in organization {}",
                                identity.account, identity.organization
                            ),
                        )
                    };
                    status.secret_fingerprint = outcome.fingerprint;
                    status.last_rotation_time = outcome.last_rotation_time;
                    status.last_rotation_request = outcome.last_rotation_request;
                    requeue_after = outcome.requeue_after;
                    events.extend(outcome.events);
                    decision_actions.push(Action::Secret {
                        name: secret_name,
                        labels,
                        plan: outcome.plan,
                    });
                    vec![ready, outcome.condition]
                }
            }
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, user.meta().generation, inputs.now);
    let mut warnings = conditions::warnings(&previous.conditions, &desired);
    warnings.extend(events);
    Decision {
        status,
        actions: decision_actions,
        events: warnings,
        requeue_after,
    }
}

/// The labels of a user's Secret (besides `managed-by`).
pub fn user_secret_labels(organization: &str, account: &str, user: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ORGANIZATION.into(), organization.to_owned()),
        (LABEL_ACCOUNT.into(), account.to_owned()),
        (LABEL_USER.into(), user.to_owned()),
        (LABEL_SECRET_OF.into(), "user".into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SecretPlan, fixtures::*, issuance::Holder};
    use Privilege::*;

    const JANE: Holder<'static> = Holder {
        namespace: NS,
        kind: HolderKind::CEUser,
        name: "jane",
    };

    /// The digest of the labels of jane's Secret (account eu of acme).
    fn jane_labels() -> u64 {
        secrets::generated_labels_digest(&user_secret_labels("acme", "eu", "jane"))
    }

    struct World {
        org: Organization,
        accounts: Vec<Arc<Account>>,
    }

    fn world() -> World {
        let acme = org_with(
            "acme",
            serde_json::json!({"displayName": "Acme", "security": {"allowSystemRoleOverride": true}, "roles": [{"role": "admin", "revoke": ["deleteAccountElementInstances"]}, {"role": "default-user", "grant": ["viewActivity"]}]}),
        );
        World {
            org: acme,
            accounts: arcs(&[account("hq", "acme", true), account("eu", "acme", false)]),
        }
    }

    fn identity_of(w: &World, user: &CEUser, bindings: &[Arc<RoleBinding>]) -> Result<Identity, Desired> {
        let account = w
            .accounts
            .iter()
            .find(|a| a.name_any() == user.spec.account_ref.name)
            .map(AsRef::as_ref);
        identity(&IdentityInputs {
            user,
            account,
            organization: Some(&w.org),
            default_candidates: &DefaultCandidates::empty(w.accounts.clone()),
            bindings,
            same_email: &[],
        })
    }

    struct IdentityCase<'a> {
        case: &'a str,
        user: &'a CEUser,
        bindings: Vec<RoleBinding>,
        roles: Vec<Role>,
        organization: Vec<Privilege>,
        account: Vec<Privilege>,
    }

    #[test]
    fn system_roles_follow_the_account_and_privileges_carry_their_scope() {
        let w = world();
        let sam = user("sam", "hq", "sam@acme.example");
        let jane = user("jane", "eu", "jane@acme.example");
        let admin_privileges = vec![
            ManageUsers,
            ViewActivity,
            CreateElements,
            CreateFormulaTemplates,
            CreateVirtualDataResources,
            ManageTransformations,
            ViewAccountElementInstances,
            UseAccountElementInstances,
            EditAccountElementInstances,
        ];
        let cases = [
            IdentityCase {
                case: "org user",
                user: &sam,
                bindings: vec![],
                roles: vec![Role::Org],
                organization: vec![],
                account: vec![],
            },
            IdentityCase {
                case: "default user",
                user: &jane,
                bindings: vec![],
                roles: vec![Role::DefaultUser],
                organization: vec![],
                account: vec![ViewActivity],
            },
            IdentityCase {
                case: "account admin: its revoked privilege is gone",
                user: &jane,
                bindings: vec![binding("jane-admin", "jane", Role::Admin, false)],
                roles: vec![Role::Admin, Role::DefaultUser],
                organization: vec![],
                account: admin_privileges,
            },
            IdentityCase {
                case: "org-admin: everything, organization-wide",
                user: &sam,
                bindings: vec![binding("sam-oa", "sam", Role::OrgAdmin, false)],
                roles: vec![Role::OrgAdmin, Role::Org],
                organization: Privilege::ALL.to_vec(),
                account: vec![],
            },
            IdentityCase {
                case: "org-admin refused outside the default account",
                user: &jane,
                bindings: vec![binding("jane-oa", "jane", Role::OrgAdmin, false)],
                roles: vec![Role::DefaultUser],
                organization: vec![],
                account: vec![ViewActivity],
            },
            IdentityCase {
                case: "override replaces the system role",
                user: &jane,
                bindings: vec![binding("jane-org", "jane", Role::Org, true)],
                roles: vec![Role::Org],
                organization: vec![],
                account: vec![],
            },
        ];
        for IdentityCase {
            case,
            user,
            bindings,
            roles,
            organization,
            account,
        } in cases
        {
            let identity = identity_of(&w, user, &arcs(&bindings)).unwrap();
            assert_eq!(identity.roles, roles, "{case}");
            assert_eq!(identity.scopes.organization, organization, "{case}");
            assert_eq!(identity.scopes.account, account, "{case}");
        }
        let admin = identity_of(&w, &jane, &arcs(&[binding("a", "jane", Role::Admin, false)])).unwrap();
        assert!(admin.holds_in(ViewAccountElementInstances, "eu"));
        assert!(
            !admin.holds_in(ViewAccountElementInstances, "hq"),
            "account privileges stay in the account"
        );
        let org_admin = identity_of(&w, &sam, &arcs(&[binding("o", "sam", Role::OrgAdmin, false)])).unwrap();
        assert!(
            org_admin.holds_in(ViewAccountElementInstances, "eu"),
            "org-admin covers every account"
        );
    }

    #[test]
    fn the_older_user_holds_an_email() {
        let older = aged(user("a-older", "eu", "jane@acme.example"), 10);
        let newer = aged(user("b-newer", "hq", "JANE@acme.example"), 20);
        let both = arcs(&[newer.clone(), older.clone()]);
        assert_eq!(email_conflict(&older, &both, "acme"), None);
        let conflict = email_conflict(&newer, &both, "acme").unwrap();
        assert_eq!(conflict.reason, Reason::DuplicateEmail);
        assert!(conflict.message.contains("a-older"));
    }

    fn decide_for(
        w: &World,
        user: &CEUser,
        account: Option<&Account>,
        organization: Option<&Organization>,
        secret: Option<&SecretFacts>,
        same_email: &[Arc<CEUser>],
    ) -> Decision<CEUserStatus> {
        decide(&Inputs {
            identity: IdentityInputs {
                user,
                account,
                organization,
                default_candidates: &DefaultCandidates::empty(w.accounts.clone()),
                bindings: &[],
                same_email,
            },
            secret,
            fresh_secret: &SecretValue::from_static("fresh"),
            issuance_key: &IssuanceKey::for_tests(),
            namespace_terminating: false,
            now: at(100),
        })
    }

    struct Case<'a> {
        case: &'a str,
        account: Option<&'a Account>,
        organization: Option<&'a Organization>,
        secret: Option<&'a SecretFacts>,
        same_email: &'a [Arc<CEUser>],
        reason: Reason,
        plan: &'a str,
    }

    fn plan_of(decision: &Decision<CEUserStatus>) -> &'static str {
        decision
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Secret { plan, .. } => Some(match plan {
                    SecretPlan::Issue { .. } => "issue",
                    SecretPlan::Rotate { .. } => "rotate",
                    SecretPlan::DropPrevious { .. } => "drop",
                    SecretPlan::Adopt { .. } => "adopt",
                    SecretPlan::Relabel => "relabel",
                    SecretPlan::Unchanged => "unchanged",
                }),
                _ => None,
            })
            .unwrap_or("none")
    }

    #[test]
    fn user_decisions_table() {
        let w = world();
        let jane = user("jane", "eu", "jane@acme.example");
        let eu = w.accounts[1].as_ref();
        let owned = SecretFacts {
            labels: jane_labels(),
            ..SecretFacts::issued_for(&JANE, "uid-jane", b"value")
        };
        let older = arcs(&[aged(user("first", "hq", "jane@acme.example"), 0), jane.clone()]);
        let foreign = SecretFacts::default();
        let org = Some(&w.org);
        let cases = [
            Case {
                case: "account missing",
                account: None,
                organization: None,
                secret: None,
                same_email: &[],
                reason: Reason::AccountNotFound,
                plan: "none",
            },
            Case {
                case: "organization missing",
                account: Some(eu),
                organization: None,
                secret: None,
                same_email: &[],
                reason: Reason::OrganizationNotFound,
                plan: "none",
            },
            Case {
                case: "duplicate e-mail: no secret",
                account: Some(eu),
                organization: org,
                secret: None,
                same_email: &older,
                reason: Reason::DuplicateEmail,
                plan: "none",
            },
            Case {
                case: "new user: issue",
                account: Some(eu),
                organization: org,
                secret: None,
                same_email: &[],
                reason: Reason::Ready,
                plan: "issue",
            },
            Case {
                case: "at rest",
                account: Some(eu),
                organization: org,
                secret: Some(&owned),
                same_email: &[],
                reason: Reason::Ready,
                plan: "unchanged",
            },
            Case {
                case: "someone else's Secret",
                account: Some(eu),
                organization: org,
                secret: Some(&foreign),
                same_email: &[],
                reason: Reason::SecretConflict,
                plan: "unchanged",
            },
        ];
        for Case {
            case,
            account,
            organization,
            secret,
            same_email,
            reason,
            plan,
        } in cases
        {
            let decision = decide_for(&w, &jane, account, organization, secret, same_email);
            assert_eq!(decision.status.conditions[0].reason, reason.as_str(), "{case}");
            assert_eq!(plan_of(&decision), plan, "{case}");
        }
        let issued = decide_for(&w, &jane, Some(eu), org, None, &[]);
        // The generation the status answers for (what GitOps tools wait on).
        assert_eq!(issued.status.observed_generation, jane.metadata.generation);
        assert!(issued.status.observed_generation.is_some());
        assert_eq!(issued.status.secret_fingerprint, Some(secrets::fingerprint(b"fresh")));
        assert_eq!(
            issued.status.secret_ref.as_ref().map(|r| r.name.as_str()),
            Some("jane-user-secret")
        );
        assert_eq!(issued.status.system_role, Some(Role::DefaultUser));
        let conflicted = decide_for(&w, &jane, Some(eu), org, Some(&foreign), &[]);
        assert_eq!(conflicted.status.secret_ref, None);
        assert_eq!(conflicted.status.secret_fingerprint, None);

        // Where each privilege holds: sam, of role org in the default account, holds a grant to
        // org organization-wide; jane, default-user, hers in her account only.
        let sam = user("sam", "hq", "sam@acme.example");
        let granting = org_with(
            "acme",
            serde_json::json!({"displayName": "Acme", "roles": [{"role": "org", "grant": ["viewActivity"]}]}),
        );
        let hq = w.accounts[0].as_ref();
        let org_wide = decide_for(&w, &sam, Some(hq), Some(&granting), None, &[]);
        let scopes = org_wide.status.privilege_scopes.expect("sam's scopes");
        assert_eq!(
            (scopes.organization, scopes.account),
            (vec![Privilege::ViewActivity], vec![])
        );
        let scopes = issued.status.privilege_scopes.expect("jane's scopes");
        assert_eq!(
            (scopes.organization, scopes.account),
            (vec![], vec![Privilege::ViewActivity])
        );
        // Nothing is issued for a user on its way out.
        let leaving = decide_for(&w, &deleting(jane.clone()), Some(eu), org, None, &[]);
        assert_eq!(plan_of(&leaving), "none");
        assert!(leaving.actions.is_empty(), "{:?}", leaving.actions);
        // The labels of its Secret, which tools select it by.
        let labels = user_secret_labels("acme", "eu", "jane");
        let expected = [
            (LABEL_ORGANIZATION, "acme"),
            (LABEL_ACCOUNT, "eu"),
            (LABEL_USER, "jane"),
            (LABEL_SECRET_OF, "user"),
        ];
        assert_eq!(labels, expected.map(|(k, v)| (k.to_owned(), v.to_owned())).into());
    }

    #[test]
    fn at_rest_the_status_does_not_change() {
        let w = world();
        let eu = w.accounts[1].as_ref();
        let mut jane = user("jane", "eu", "jane@acme.example");
        let owned = SecretFacts {
            labels: jane_labels(),
            ..SecretFacts::issued_for(&JANE, "uid-jane", b"value")
        };
        let first = decide_for(&w, &jane, Some(eu), Some(&w.org), Some(&owned), &[]);
        jane.status = Some(first.status);
        let again = decide_for(&w, &jane, Some(eu), Some(&w.org), Some(&owned), &[]);
        assert_eq!(Some(&again.status), jane.status.as_ref());
        assert!(again.events.is_empty());
    }
}
