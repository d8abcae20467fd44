//! Admission: the model's rules applied to a change before it is stored, so that
//! `kubectl apply` fails at once with the reason the reconciler would report.
//!
//! The findings come from the very functions the reconcilers call (a condition's reason and
//! message); this module only says which reasons refuse a change, and frames the message.
//! A change is refused only for a violation it introduces: re-applying an object that
//! already violates a rule (it got in before the webhook) is let through, warned about, and
//! left to the reconciler's condition. A reference to something that does not exist yet is
//! never refused: GitOps tools apply a folder in any order.

use std::{collections::BTreeSet, sync::Arc};

use kube::ResourceExt;

use super::{
    account,
    conditions::{Desired, Reason},
    organization::{self, Member},
    privileges::Matrix,
    role_binding, safelist, super_organization,
    tenancy::{self, DefaultCandidates, Verdict},
    user,
};
use crate::api::{Account, CEUser, ElementSafelist, Organization, RoleBinding};

/// A rule a change breaks, or a reference it makes to something missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub reason: Reason,
    pub message: String,
}

impl From<&Desired> for Finding {
    fn from(desired: &Desired) -> Self {
        Self {
            reason: desired.reason,
            message: desired.message.clone(),
        }
    }
}

/// The answer to a change: refused (with why), and warnings kubectl prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    pub denial: Option<String>,
    pub warnings: Vec<String>,
}

/// What admission does with a finding of this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Treatment {
    /// A conflict with objects that exist: refused (if the change introduces it).
    Deny,
    /// A missing reference or a discouraged choice: let through with a warning.
    Warn,
    /// Not admission's business.
    Ignore,
}

fn treatment(reason: Reason) -> Treatment {
    match reason {
        Reason::OrgAdminRequiresDefaultAccount
        | Reason::DeniedBySuperOrganization
        | Reason::SafelistedDeniedElements
        | Reason::DuplicateDefaultAccount
        | Reason::DuplicateEmail
        | Reason::DuplicateSafelist
        | Reason::ProtectedPrivilegeRevoked
        | Reason::NoOrgAdmin
        | Reason::ForeignOwner
        | Reason::UserReplaced
        | Reason::SystemRoleOverrideNotAllowed
        | Reason::SuperOrganizationLinkLocked
        | Reason::ChildrenExist => Treatment::Deny,
        Reason::OrganizationNotFound
        | Reason::AccountNotFound
        | Reason::UserNotFound
        | Reason::SuperOrganizationNotFound
        | Reason::SuperOrganizationRejected
        | Reason::SuperOrganizationNotWatched
        | Reason::SystemAssignedRole
        | Reason::SystemRoleOverridden => Treatment::Warn,
        _ => Treatment::Ignore,
    }
}

/// The field a finding is about, for the message.
fn field(reason: Reason) -> &'static str {
    match reason {
        Reason::OrganizationNotFound | Reason::DuplicateSafelist => "spec.organizationRef",
        Reason::AccountNotFound => "spec.accountRef",
        Reason::UserNotFound => "spec.userRef",
        Reason::OrgAdminRequiresDefaultAccount | Reason::SystemAssignedRole | Reason::NoOrgAdmin => "spec.role",
        Reason::SystemRoleOverridden | Reason::SystemRoleOverrideNotAllowed => "spec.overrideSystemRole",
        Reason::DeniedBySuperOrganization => "spec.elements",
        Reason::SafelistedDeniedElements => "spec.whitelabel.elementDenylist",
        Reason::DuplicateDefaultAccount => "spec.default",
        Reason::DuplicateEmail => "spec.email",
        Reason::ProtectedPrivilegeRevoked => "spec.roles",
        Reason::SuperOrganizationNotFound
        | Reason::SuperOrganizationRejected
        | Reason::SuperOrganizationNotWatched
        | Reason::SuperOrganizationLinkLocked => "spec.superOrganizationRef",
        Reason::ChildrenExist => "spec.allowCascadingDeletion",
        Reason::ForeignOwner | Reason::UserReplaced => "metadata.ownerReferences",
        _ => "metadata",
    }
}

/// The review of a change of object `kind ns/name`, from the findings on the object before
/// (an update) and after the change.
pub fn review(kind: &str, ns: &str, name: &str, before: &[Finding], after: &[Finding]) -> Review {
    let had: BTreeSet<Reason> = before.iter().map(|f| f.reason).collect();
    let framed = |f: &Finding| format!("{kind} {ns}/{name}: {}: {}", field(f.reason), f.message);
    let mut review = Review::default();
    for finding in after {
        match treatment(finding.reason) {
            Treatment::Deny if !had.contains(&finding.reason) => {
                review.denial.get_or_insert_with(|| framed(finding));
            }
            Treatment::Deny | Treatment::Warn => review.warnings.push(framed(finding)),
            Treatment::Ignore => {}
        }
    }
    review
}

/// The review of a deletion.
pub fn review_deletion(kind: &str, ns: &str, name: &str, finding: Option<Finding>) -> Review {
    let finding = finding.into_iter().collect::<Vec<_>>();
    review(kind, ns, name, &[], &finding)
}

fn problem(desired: &Desired) -> Option<Finding> {
    desired.is_problem().then(|| desired.into())
}

/// An Account: its organization, and whether it would be a second default account.
pub fn account_findings(inputs: &account::Inputs<'_>) -> Vec<Finding> {
    problem(&account::ready(inputs).0).into_iter().collect()
}

/// A CEUser: its account and organization, and whether its e-mail is taken.
pub fn user_findings(inputs: &user::IdentityInputs<'_>) -> Vec<Finding> {
    match user::authenticated(inputs) {
        Ok(_) => Vec::new(),
        Err(refusal) => vec![(&refusal).into()],
    }
}

/// A RoleBinding: its user, and whether the role may take effect for it.
pub fn binding_findings(inputs: &role_binding::Inputs<'_>) -> Vec<Finding> {
    let verdict = tenancy::judge_binding(inputs.binding, role_binding::bound_user(inputs));
    let ready = role_binding::ready(inputs.binding, &verdict);
    match verdict {
        Verdict::Effective {
            overrides_system_role: true,
            ..
        }
        | Verdict::Refused { .. } => vec![(&ready).into()],
        Verdict::Effective { .. } => Vec::new(),
    }
}

/// An ElementSafelist: its organization, a second safelist, elements the super-organization
/// denies.
pub fn safelist_findings(inputs: &safelist::Inputs<'_>) -> Vec<Finding> {
    problem(&safelist::judge(inputs).ready).into_iter().collect()
}

/// An Organization: a lock-out in its role customisations, its super-organization link and,
/// for a super-organization, the elements it newly denies that members safelist (`old` is
/// the organization before an update).
pub fn organization_findings(
    org: &Organization,
    old: Option<(&Organization, &super_organization::Link)>,
    link: &super_organization::Link,
    members: &[Member],
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = problem(&organization::roles_applied(&Matrix::new(&org.spec.roles)))
        .into_iter()
        .collect();
    if let Some((reason, message)) = old.and_then(|(old, old_link)| super_organization::link_change(old, old_link, org))
    {
        findings.push(Finding { reason, message });
    }
    let old = old.map(|(old, _)| old);
    if let super_organization::Link::Refused { reason, message } = link {
        findings.push(Finding {
            reason: *reason,
            message: message.clone(),
        });
    }
    if let Some(whitelabel) = &org.spec.whitelabel {
        let denied_before: BTreeSet<&String> = old
            .and_then(|o| o.spec.whitelabel.as_ref())
            .map(|w| w.element_denylist.iter().collect())
            .unwrap_or_default();
        let added: Vec<String> = whitelabel
            .element_denylist
            .iter()
            .filter(|e| !denied_before.contains(e))
            .cloned()
            .collect();
        let conflicts = organization::denylist_conflicts(org, &added, members);
        findings.extend(problem(&organization::denylist_condition(&conflicts)));
    }
    findings
}

/// What an organization's findings were before an update (only the rules a later change
/// could newly break: the role customisations).
pub fn organization_findings_before(old: &Organization) -> Vec<Finding> {
    problem(&organization::roles_applied(&Matrix::new(&old.spec.roles)))
        .into_iter()
        .collect()
}

/// Deleting an organization that still has children, without allowCascadingDeletion.
pub fn organization_deletion(
    org: &Organization,
    accounts: &[Arc<Account>],
    users: &[Arc<CEUser>],
    safelists: &[Arc<ElementSafelist>],
) -> Option<Finding> {
    let blocking = organization::blocking_children(org, accounts, users, safelists);
    organization::deletion_blocked(org, &blocking).map(|d| (&d).into())
}

/// Deleting an account that still has users, without allowCascadingDeletion.
pub fn account_deletion(account: &Account, users: &[Arc<CEUser>]) -> Option<Finding> {
    account::deletion_blocked(account, users).map(|d| (&d).into())
}

/// The refusal of deleting the last org-admin binding of organization `org`: `bindings` are
/// the namespace's org-admin bindings with their users, `accounts` the organization's
/// accounts.
pub fn binding_deletion(
    binding: &RoleBinding,
    org: &str,
    bindings: &[(Arc<RoleBinding>, Option<Arc<CEUser>>)],
    accounts: &DefaultCandidates,
    org_uid: Option<&str>,
) -> Option<Finding> {
    let name = binding.name_any();
    last_org_admin(bindings, accounts, org_uid, |b, _| b.name_any() == name).map(|left| Finding {
        reason: left.reason,
        message: format!(
            "it is the last org-admin binding of organization {org}; deleting it would leave the organization without an org-admin ({}). Bind org-admin to another user of the default account first, or delete the organization",
            left.message
        ),
    })
}

/// The refusal of deleting CEUser `user`, the last org-admin of organization `org` (its
/// bindings would go with it, by the garbage collector, which no webhook reviews).
pub fn user_deletion(
    user: &str,
    org: &str,
    bindings: &[(Arc<RoleBinding>, Option<Arc<CEUser>>)],
    accounts: &DefaultCandidates,
    org_uid: Option<&str>,
) -> Option<Finding> {
    last_org_admin(bindings, accounts, org_uid, |b, _| b.spec.user_ref.name == user).map(|left| Finding {
        reason: left.reason,
        message: format!(
            "{user} is the last org-admin of organization {org}; deleting the user would leave the organization without an org-admin ({}). Bind org-admin to another user of the default account first, or delete the organization",
            left.message
        ),
    })
}

/// What AdminPresent would report if the bindings `going` selects went, when that leaves no
/// org-admin where there was one.
fn last_org_admin(
    bindings: &[(Arc<RoleBinding>, Option<Arc<CEUser>>)],
    accounts: &DefaultCandidates,
    org_uid: Option<&str>,
    going: impl Fn(&RoleBinding, Option<&CEUser>) -> bool,
) -> Option<Desired> {
    let default = accounts.default_account(org_uid).map(|a| a.name_any());
    let admins = |without: bool| {
        tenancy::org_admins(
            bindings
                .iter()
                .filter(|(b, u)| !(without && going(b, u.as_deref())))
                .map(|(b, u)| (b.as_ref(), u.as_deref())),
            &accounts.accounts,
            default.as_deref(),
        )
    };
    (!admins(false).is_empty() && admins(true).is_empty()).then(|| organization::admin_present(&[]))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::{
        api::Role,
        model::{fixtures::*, super_organization::SuperOrganization},
    };

    fn finding(reason: Reason) -> Finding {
        Finding {
            reason,
            message: "why".into(),
        }
    }

    #[test]
    fn only_introduced_conflicts_are_refused_and_missing_references_are_warned() {
        let refused = review("CEUser", "t", "jane", &[], &[finding(Reason::DuplicateEmail)]);
        assert_eq!(refused.denial.as_deref(), Some("CEUser t/jane: spec.email: why"));
        // Already there before the change: let through, warned, left to the reconciler.
        let kept = review(
            "CEUser",
            "t",
            "jane",
            &[finding(Reason::DuplicateEmail)],
            &[finding(Reason::DuplicateEmail)],
        );
        assert_eq!(kept.denial, None);
        assert_eq!(kept.warnings, vec!["CEUser t/jane: spec.email: why"]);
        let missing = review("CEUser", "t", "jane", &[], &[finding(Reason::AccountNotFound)]);
        assert_eq!(missing.denial, None);
        assert_eq!(missing.warnings.len(), 1);
        assert_eq!(
            review("X", "t", "x", &[], &[finding(Reason::DefaultAccountPending)]),
            Review::default()
        );
    }

    fn now() -> Timestamp {
        at(100)
    }

    #[test]
    fn a_binding_org_admin_outside_the_default_account_is_refused_with_the_condition_words() {
        let acme = org("acme");
        let accounts = arcs(&[account("hq", "acme", true), account("eu", "acme", false)]);
        let jane = user("jane", "eu", "jane@acme.example");
        let binding = binding("jane-oa", "jane", Role::OrgAdmin, false);
        let inputs = role_binding::Inputs {
            binding: &binding,
            user: Some(&jane),
            account: Some(&accounts[1]),
            organization: Some(&acme),
            default_candidates: &DefaultCandidates::empty(accounts.clone()),
            now: now(),
        };
        let findings = binding_findings(&inputs);
        let decided = role_binding::decide(&inputs);
        assert_eq!(findings[0].reason, Reason::OrgAdminRequiresDefaultAccount);
        assert_eq!(
            findings[0].message, decided.status.conditions[0].message,
            "the same words"
        );
        let review = review("RoleBinding", NS, "jane-oa", &[], &findings);
        assert!(
            review
                .denial
                .unwrap()
                .starts_with("RoleBinding tenants/jane-oa: spec.role: org-admin can only")
        );
        // The user does not exist yet: never refused, warned.
        let early = role_binding::Inputs {
            user: None,
            account: None,
            ..inputs
        };
        let review = super::review("RoleBinding", NS, "jane-oa", &[], &binding_findings(&early));
        assert_eq!(review.denial, None);
        assert!(review.warnings[0].contains("does not exist"));
    }

    #[test]
    fn an_override_is_refused_unless_the_organization_allows_it_and_then_warned_about() {
        let mut acme = org("acme");
        let accounts = arcs(&[account("eu", "acme", false)]);
        let jane = user("jane", "eu", "j@a.example");
        let b = binding("b", "jane", Role::Org, true);
        let findings_in = |acme: &Organization| {
            binding_findings(&role_binding::Inputs {
                binding: &b,
                user: Some(&jane),
                account: Some(&accounts[0]),
                organization: Some(acme),
                default_candidates: &DefaultCandidates::empty(accounts.clone()),
                now: now(),
            })
        };
        let refused = review("RoleBinding", NS, "b", &[], &findings_in(&acme));
        assert!(
            refused
                .denial
                .as_deref()
                .is_some_and(|d| d.contains("allowSystemRoleOverride")),
            "{refused:?}"
        );
        acme.spec.security.allow_system_role_override = true;
        let review = review("RoleBinding", NS, "b", &[], &findings_in(&acme));
        assert_eq!(review.denial, None);
        assert!(
            review.warnings[0].contains("overrideSystemRole"),
            "{:?}",
            review.warnings
        );
    }

    #[test]
    fn a_second_default_account_is_refused_but_a_declared_one_supersedes_an_empty_generated_one() {
        let acme = org("acme");
        let declared = aged(account("hq", "acme", true), 10);
        let candidate = aged(account("second", "acme", true), 200);
        let siblings = arcs(&[declared.clone(), candidate.clone()]);
        let inputs = account::Inputs {
            account: &candidate,
            organization: Some(&acme),
            default_candidates: &DefaultCandidates::empty(siblings.clone()),
            users: &[],
            bindings: &[],
            namespace_terminating: false,
            now: now(),
        };
        assert_eq!(account_findings(&inputs)[0].reason, Reason::DuplicateDefaultAccount);
        let generated = owned_by(aged(account("acme-default", "acme", true), 10), &acme);
        let siblings = arcs(&[generated, candidate.clone()]);
        let empty = DefaultCandidates::empty(siblings.clone());
        let supersedes = account::Inputs {
            default_candidates: &empty,
            ..inputs
        };
        assert!(account_findings(&supersedes).is_empty());
        // Not once the generated one holds users (the owner): they would lose their role.
        let in_use = DefaultCandidates {
            accounts: siblings,
            with_users: BTreeSet::from(["acme-default".to_owned()]),
        };
        let takes_away = account::Inputs {
            default_candidates: &in_use,
            ..supersedes
        };
        let findings = account_findings(&takes_away);
        assert_eq!(findings[0].reason, Reason::DuplicateDefaultAccount);
        assert!(findings[0].message.contains("holds users"), "{}", findings[0].message);
        let refused = review("Account", NS, "second", &[], &findings).denial.unwrap();
        assert!(refused.contains("acme-default"), "{refused}");
    }

    #[test]
    fn a_super_organization_may_not_newly_deny_what_members_safelist() {
        let old = super_org("big", &["tenants"], &["box"]);
        let mut new = old.clone();
        new.spec.whitelabel.as_mut().unwrap().element_denylist = strings(&["box", "hubspot"]);
        let member = Member {
            org: Arc::new(org_linked("acme", "partners", "big")),
            safelists: arcs(&[safelist("acme", "acme", &["box", "hubspot", "salesforce"])]),
        };
        let findings = organization_findings(
            &new,
            Some((&old, &super_organization::Link::None)),
            &super_organization::Link::None,
            std::slice::from_ref(&member),
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].reason, Reason::SafelistedDeniedElements);
        assert!(
            findings[0].message.starts_with("tenants/acme safelists hubspot:"),
            "{}",
            findings[0].message
        );
        // Re-applying the same denylist (box already conflicting) is not refused.
        assert!(
            organization_findings(
                &old,
                Some((&old, &super_organization::Link::None)),
                &super_organization::Link::None,
                &[member]
            )
            .is_empty()
        );
    }

    #[test]
    fn a_lockout_is_refused() {
        let lockout = org_with(
            "acme",
            serde_json::json!({"displayName": "A", "roles": [{"role": "org-admin", "revoke": ["manageUsers"]}]}),
        );
        let findings = organization_findings(&lockout, None, &super_organization::Link::None, &[]);
        assert_eq!(findings[0].reason, Reason::ProtectedPrivilegeRevoked);
        assert!(
            review("Organization", NS, "acme", &[], &findings)
                .denial
                .unwrap()
                .contains("spec.roles: org-admin keeps manageUsers")
        );
    }

    #[test]
    fn safelists_refuse_denied_elements_and_a_second_list() {
        let linked = org_linked("acme", "partners", "big");
        let partner = super_org("big", &["tenants"], &["box"]);
        let first = aged(safelist("first", "acme", &["salesforce"]), 10);
        let candidate = aged(safelist("second", "acme", &["box"]), 200);
        let both = arcs(&[first.clone(), candidate.clone()]);
        let inputs = |list, siblings| safelist::Inputs {
            list,
            organization: Some(&linked),
            siblings,
            super_organization: SuperOrganization::Found(&partner),
            now: now(),
        };
        assert_eq!(
            safelist_findings(&inputs(&candidate, &both))[0].reason,
            Reason::DuplicateSafelist
        );
        let alone = arcs(std::slice::from_ref(&candidate));
        let denied = safelist_findings(&inputs(&candidate, &alone));
        assert_eq!(denied[0].reason, Reason::DeniedBySuperOrganization);
        assert!(
            denied[0]
                .message
                .contains("box denied by super-organization partners/big")
        );
    }

    #[test]
    fn the_last_org_admins_user_may_not_be_deleted() {
        let acme = org("acme");
        let accounts = arcs(&[account("hq", "acme", true)]);
        let candidates = DefaultCandidates::empty(accounts.clone());
        let sam = Arc::new(user("sam", "hq", "sam@acme.example"));
        let kim = Arc::new(user("kim", "hq", "kim@acme.example"));
        let sam_oa = Arc::new(binding("sam-oa", "sam", Role::OrgAdmin, false));
        let kim_oa = Arc::new(binding("kim-oa", "kim", Role::OrgAdmin, false));
        let uid = acme.uid();
        let one = vec![(sam_oa.clone(), Some(sam.clone()))];
        let last = user_deletion("sam", "acme", &one, &candidates, uid.as_deref()).unwrap();
        assert_eq!(last.reason, Reason::NoOrgAdmin);
        assert!(
            last.message.starts_with("sam is the last org-admin"),
            "{}",
            last.message
        );
        let two = vec![(sam_oa, Some(sam)), (kim_oa, Some(kim))];
        assert_eq!(user_deletion("sam", "acme", &two, &candidates, uid.as_deref()), None);
        // A user who is no org-admin goes freely.
        assert_eq!(user_deletion("jane", "acme", &one, &candidates, uid.as_deref()), None);
    }

    #[test]
    fn deleting_the_last_org_admin_or_a_parent_with_children_is_refused() {
        let acme = org("acme");
        let accounts = arcs(&[account("hq", "acme", true)]);
        let sam = Arc::new(user("sam", "hq", "s@a.example"));
        let kim = Arc::new(user("kim", "hq", "k@a.example"));
        let sam_oa = Arc::new(binding("sam-oa", "sam", Role::OrgAdmin, false));
        let kim_oa = Arc::new(binding("kim-oa", "kim", Role::OrgAdmin, false));
        let one = vec![(sam_oa.clone(), Some(sam.clone()))];
        let last = binding_deletion(
            &sam_oa,
            "acme",
            &one,
            &DefaultCandidates::empty(accounts.clone()),
            acme.uid().as_deref(),
        )
        .unwrap();
        assert_eq!(last.reason, Reason::NoOrgAdmin);
        assert!(last.message.contains("last org-admin binding of organization acme"));
        let two = vec![(sam_oa.clone(), Some(sam)), (kim_oa, Some(kim))];
        assert_eq!(
            binding_deletion(
                &sam_oa,
                "acme",
                &two,
                &DefaultCandidates::empty(accounts.clone()),
                acme.uid().as_deref()
            ),
            None
        );

        let users = arcs(&[user("jane", "hq", "j@a.example")]);
        let blocked = organization_deletion(&acme, &accounts, &users, &[]).unwrap();
        assert_eq!(blocked.reason, Reason::ChildrenExist);
        assert!(blocked.message.contains("account hq, user jane"));
        let mut cascading = acme.clone();
        cascading.spec.allow_cascading_deletion = true;
        let review = review_deletion(
            "Organization",
            NS,
            "acme",
            organization_deletion(&cascading, &accounts, &users, &[]),
        );
        assert_eq!(review, Review::default(), "cascading: allowed");
        assert_eq!(
            account_deletion(&accounts[0], &users).map(|f| f.reason),
            Some(Reason::ChildrenExist)
        );
    }

    /// A finding names the field to change: the review's refusal (or warning) says it.
    #[test]
    fn each_refusal_names_the_field_to_change() {
        let cases = [
            (Reason::OrganizationNotFound, "spec.organizationRef"),
            (Reason::DuplicateSafelist, "spec.organizationRef"),
            (Reason::AccountNotFound, "spec.accountRef"),
            (Reason::UserNotFound, "spec.userRef"),
            (Reason::OrgAdminRequiresDefaultAccount, "spec.role"),
            (Reason::SystemAssignedRole, "spec.role"),
            (Reason::NoOrgAdmin, "spec.role"),
            (Reason::SystemRoleOverridden, "spec.overrideSystemRole"),
            (Reason::SystemRoleOverrideNotAllowed, "spec.overrideSystemRole"),
            (Reason::DeniedBySuperOrganization, "spec.elements"),
            (Reason::SafelistedDeniedElements, "spec.whitelabel.elementDenylist"),
            (Reason::DuplicateDefaultAccount, "spec.default"),
            (Reason::DuplicateEmail, "spec.email"),
            (Reason::ProtectedPrivilegeRevoked, "spec.roles"),
            (Reason::SuperOrganizationNotFound, "spec.superOrganizationRef"),
            (Reason::SuperOrganizationRejected, "spec.superOrganizationRef"),
            (Reason::SuperOrganizationNotWatched, "spec.superOrganizationRef"),
            (Reason::SuperOrganizationLinkLocked, "spec.superOrganizationRef"),
            (Reason::ChildrenExist, "spec.allowCascadingDeletion"),
            (Reason::ForeignOwner, "metadata.ownerReferences"),
            (Reason::UserReplaced, "metadata.ownerReferences"),
        ];
        for (reason, field) in cases {
            // Refused, or (a warning's reason) let through with the warning.
            let review = review("Account", NS, "eu", &[], &[finding(reason)]);
            let said = review.denial.unwrap_or_else(|| review.warnings.join("\n"));
            assert!(said.contains(field), "{reason:?}: {said}");
        }
    }

    /// An update is refused only for what it adds: a role customisation that was already
    /// refused before the update is not the update's fault.
    #[test]
    fn an_update_keeping_an_earlier_problem_is_not_refused_for_it() {
        let broken = org_with(
            "acme",
            serde_json::json!({"displayName": "Acme", "roles": [{"role": "org-admin", "revoke": ["manageSecurity"]}]}),
        );
        let before = organization_findings_before(&broken);
        assert!(!before.is_empty(), "the earlier problem is found before the update");
        let link = super_organization::judge_link(&broken, NS, SuperOrganization::Missing);
        let after = organization_findings(&broken, None, &link, &[]);
        assert!(review("Organization", NS, "acme", &before, &after).denial.is_none());
        assert!(review("Organization", NS, "acme", &[], &after).denial.is_some());
    }

    /// A deletion is refused with its finding, and let through without one.
    #[test]
    fn a_deletion_is_refused_only_with_a_finding() {
        let refused = review_deletion("Organization", NS, "acme", Some(finding(Reason::ChildrenExist)));
        let denial = refused.denial.expect("refused");
        assert!(denial.contains("acme") && denial.contains("why"), "{denial}");
        assert!(review_deletion("Organization", NS, "acme", None).denial.is_none());
    }

    /// A user is refused for its account missing or its e-mail taken in the organization,
    /// and let through otherwise.
    #[test]
    fn a_user_is_refused_for_a_missing_account_or_a_taken_email() {
        let acme = org("acme");
        let accounts = arcs(&[account("hq", "acme", true)]);
        let candidates = tenancy::DefaultCandidates::empty(accounts.clone());
        let first = aged(user("first", "hq", "jane@acme.example"), 0);
        let jane = user("jane", "hq", "JANE@acme.example");
        let both = arcs(&[first, jane.clone()]);
        let findings = |account: Option<&Account>, same_email: &[Arc<CEUser>]| {
            user_findings(&user::IdentityInputs {
                user: &jane,
                account,
                organization: Some(&acme),
                default_candidates: &candidates,
                bindings: &[],
                same_email,
            })
        };
        let reasons = |f: Vec<Finding>| f.into_iter().map(|f| f.reason).collect::<Vec<_>>();
        assert_eq!(reasons(findings(Some(&accounts[0]), &both[1..])), []);
        assert_eq!(reasons(findings(Some(&accounts[0]), &both)), [Reason::DuplicateEmail]);
        assert_eq!(reasons(findings(None, &both[1..])), [Reason::AccountNotFound]);
    }
}
