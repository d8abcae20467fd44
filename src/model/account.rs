//! The Account decision: its organization, whether it is the default account, its user
//! count, and a deletion that waits for (or cascades to) its users.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{
    Action, Child, Decision,
    conditions::{self, ConditionType, Desired, Reason},
    deletion, has_finalizer, name_list,
    tenancy::{self, DefaultCandidates},
};
use crate::api::{Account, AccountStatus, CEUser, Organization, RoleBinding};

/// Everything the Account decision depends on.
pub struct Inputs<'a> {
    pub account: &'a Account,
    pub organization: Option<&'a Organization>,
    /// The organization's candidates for its default account, this one included.
    pub default_candidates: &'a DefaultCandidates,
    /// The users of this account.
    pub users: &'a [Arc<CEUser>],
    /// The RoleBindings of those users (resolved only while the account is being deleted).
    pub bindings: &'a [Arc<RoleBinding>],
    pub namespace_terminating: bool,
    pub now: Timestamp,
}

/// The message of a default account that another, older one overrides.
pub fn duplicate_default_message(org: &str, default: &str) -> String {
    format!(
        "organization {org} already has the default account {default}; this one is treated as an ordinary account. Set default: false (recreate it) or delete it"
    )
}

/// Whether children hold the account's deletion, and why: None when it has no users.
pub fn deletion_blocked(account: &Account, users: &[Arc<CEUser>]) -> Option<Desired> {
    (!users.is_empty()).then(|| {
        let users = format!("users {}", name_list(users.iter().map(|u| u.name_any())));
        deletion::blocked("the account", account.spec.allow_cascading_deletion, &users)
    })
}

/// Whether candidate `name` is the default account the operator created.
fn default_candidate_is_generated(candidates: &DefaultCandidates, name: &str, org_uid: Option<&str>) -> bool {
    candidates
        .accounts
        .iter()
        .any(|a| a.name_any() == name && tenancy::is_controlled_by(a.as_ref(), org_uid))
}

/// The account's Ready condition, and whether it is its organization's default account
/// (None while the organization is missing).
pub fn ready(inputs: &Inputs<'_>) -> (Desired, Option<bool>) {
    let account = inputs.account;
    let ns = account.namespace().unwrap_or_default();
    let org_name = &account.spec.organization_ref.name;
    let Some(org) = inputs.organization else {
        return (
            Desired::new(
                ConditionType::Ready,
                Reason::OrganizationNotFound,
                format!(
                    "Organization {org_name} does not exist in namespace {ns}; the account becomes ready once it does (or fix spec.organizationRef)"
                ),
            ),
            None,
        );
    };
    let org_uid = org.meta().uid.as_deref();
    let default = inputs.default_candidates.default_account(org_uid);
    let is_default = default.is_some_and(|d| d.name_any() == account.name_any());
    let ready = if account.spec.default && !is_default {
        let default = default.map(ResourceExt::name_any).unwrap_or_default();
        let message = if inputs.default_candidates.with_users.contains(&default)
            && default_candidate_is_generated(inputs.default_candidates, &default, org_uid)
        {
            format!(
                "organization {org_name}'s default account {default}, which the operator created, holds users; a declared default account supersedes it only while it is empty (else its users, the owner among them, would lose their role). Set default: false, or empty {default} first"
            )
        } else {
            duplicate_default_message(org_name, &default)
        };
        Desired::new(ConditionType::Ready, Reason::DuplicateDefaultAccount, message)
    } else {
        Desired::new(
            ConditionType::Ready,
            Reason::Ready,
            format!("account of organization {org_name}"),
        )
    };
    (ready, Some(is_default))
}

pub fn decide(inputs: &Inputs<'_>) -> Decision<AccountStatus> {
    let account = inputs.account;
    let previous = account.status.clone().unwrap_or_default();
    if inputs.namespace_terminating {
        return Decision::in_terminating_namespace(previous, has_finalizer(account));
    }
    if account.meta().deletion_timestamp.is_some() {
        return finalize(inputs, previous);
    }
    let (ready, is_default) = ready(inputs);
    let organization = inputs.organization.map(|_| account.spec.organization_ref.name.clone());
    let desired = [ready];
    let status = AccountStatus {
        conditions: conditions::merge(&previous.conditions, &desired, account.meta().generation, inputs.now),
        observed_generation: account.meta().generation,
        organization,
        default: is_default,
        users: Some(i32::try_from(inputs.users.len()).unwrap_or(i32::MAX)),
    };
    let mut decision = Decision::status(status);
    if !has_finalizer(account) {
        decision.actions.push(Action::AddFinalizer);
    }
    decision.events = conditions::warnings(&previous.conditions, &desired);
    decision
}

/// Deletion: wait for the users to go (or delete them, and their bindings, when cascading).
fn finalize(inputs: &Inputs<'_>, previous: AccountStatus) -> Decision<AccountStatus> {
    let account = inputs.account;
    let bindings = inputs.bindings.iter().map(|b| Child::RoleBinding(b.name_any()));
    let users = inputs.users.iter().map(|u| Child::User(u.name_any()));
    deletion::finalize(
        account,
        previous,
        deletion_blocked(account, inputs.users),
        account.spec.allow_cascading_deletion,
        bindings.chain(users),
        inputs.now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::Role, model::fixtures::*};

    struct World {
        org: Organization,
        accounts: Vec<Arc<Account>>,
        users: Vec<Arc<CEUser>>,
        bindings: Vec<Arc<RoleBinding>>,
    }

    fn world() -> World {
        World {
            org: org("acme"),
            accounts: arcs(&[
                aged(account("hq", "acme", true), 10),
                aged(account("second-hq", "acme", true), 20),
                account("eu", "acme", false),
            ]),
            users: arcs(&[user("jane", "eu", "jane@acme.example")]),
            bindings: arcs(&[binding("jane-admin", "jane", Role::Admin, false)]),
        }
    }

    fn decide_for(
        w: &World,
        account: &Account,
        org: Option<&Organization>,
        users: &[Arc<CEUser>],
    ) -> Decision<AccountStatus> {
        decide(&Inputs {
            account,
            organization: org,
            default_candidates: &DefaultCandidates::empty(w.accounts.clone()),
            users,
            bindings: &w.bindings,
            namespace_terminating: false,
            now: at(100),
        })
    }

    #[test]
    fn account_decisions_table() {
        let w = world();
        let hq = w.accounts[0].as_ref();
        let second = w.accounts[1].as_ref();
        let eu = w.accounts[2].as_ref();
        // (case, account, organization present, expected reason, default, users)
        let cases = [
            ("organization missing", eu, false, Reason::OrganizationNotFound, None, 1),
            ("ordinary account", eu, true, Reason::Ready, Some(false), 1),
            ("the oldest declared default", hq, true, Reason::Ready, Some(true), 0),
            (
                "a second declared default",
                second,
                true,
                Reason::DuplicateDefaultAccount,
                Some(false),
                0,
            ),
        ];
        for (case, account, has_org, reason, default, users) in cases {
            let users = if users > 0 { w.users.clone() } else { Vec::new() };
            let decision = decide_for(&w, account, has_org.then_some(&w.org), &users);
            let status = &decision.status;
            assert_eq!(status.conditions[0].reason, reason.as_str(), "{case}");
            assert_eq!(status.default, default, "{case}");
            assert_eq!(status.users, Some(users.len() as i32), "{case}");
            assert_eq!(
                decision.actions,
                vec![Action::AddFinalizer],
                "{case}: the finalizer is added while alive"
            );
        }
        let duplicate = decide_for(&w, second, Some(&w.org), &[]);
        assert!(
            duplicate.status.conditions[0]
                .message
                .contains("already has the default account hq")
        );
        assert_eq!(duplicate.events[0].reason, Reason::DuplicateDefaultAccount);
    }

    /// A second declared default account is told why the first stays: an older declared one
    /// is simply first; the one the operator generated stays only while it holds users.
    #[test]
    fn a_second_default_account_is_told_why_the_first_stays() {
        let w = world();
        let said = |accounts: Vec<Arc<Account>>, with_users: &[&str]| {
            let candidates = DefaultCandidates {
                accounts,
                with_users: with_users.iter().map(|s| s.to_string()).collect(),
            };
            let decision = decide(&Inputs {
                account: w.accounts[1].as_ref(),
                organization: Some(&w.org),
                default_candidates: &candidates,
                users: &[],
                bindings: &[],
                namespace_terminating: false,
                now: at(100),
            });
            decision.status.conditions[0].message.clone()
        };
        // hq, declared and holding users, generated by nobody.
        let declared = said(w.accounts.clone(), &["hq"]);
        assert!(declared.contains("already has the default account hq"), "{declared}");
        assert!(!declared.contains("which the operator created"), "{declared}");
        // hq generated by the operator (controlled by the organization), holding users.
        let generated = arcs(&[
            aged(owned_by(account("hq", "acme", true), &w.org), 10),
            w.accounts[1].as_ref().clone(),
        ]);
        let kept = said(generated.clone(), &["hq"]);
        assert!(kept.contains("which the operator created, holds users"), "{kept}");
        // ... and without users: superseded, so the second is the default and Ready.
        let superseded = said(generated, &[]);
        assert!(!superseded.contains("default account"), "{superseded}");
    }

    #[test]
    fn deletion_waits_for_users_then_lets_go() {
        let w = world();
        let eu = deleting(with_finalizer(w.accounts[2].as_ref().clone()));
        let held = decide_for(&w, &eu, Some(&w.org), &w.users);
        let blocked = held
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "DeletionBlocked")
            .unwrap();
        assert_eq!(
            (blocked.status.as_str(), blocked.reason.as_str()),
            ("True", "ChildrenExist")
        );
        assert!(blocked.message.contains("users jane"));
        assert!(
            held.actions.is_empty(),
            "nothing is deleted without allowCascadingDeletion"
        );

        let mut cascading = eu.clone();
        cascading.spec.allow_cascading_deletion = true;
        let cascade = decide_for(&w, &cascading, Some(&w.org), &w.users);
        assert_eq!(
            cascade.actions,
            vec![
                Action::Delete(Child::RoleBinding("jane-admin".into())),
                Action::Delete(Child::User("jane".into()))
            ]
        );
        assert!(cascade.events.is_empty(), "cascading is transient: no warning");

        let empty = decide_for(&w, &eu, Some(&w.org), &[]);
        assert_eq!(empty.actions, vec![Action::RemoveFinalizer]);
    }

    #[test]
    fn in_a_terminating_namespace_only_the_finalizer_goes() {
        let w = world();
        let eu = with_finalizer(w.accounts[2].as_ref().clone());
        let decision = decide(&Inputs {
            account: &eu,
            organization: None,
            default_candidates: &DefaultCandidates::empty(w.accounts.clone()),
            users: &w.users,
            bindings: &w.bindings,
            namespace_terminating: true,
            now: at(100),
        });
        assert_eq!(decision.actions, vec![Action::RemoveFinalizer]);
        assert_eq!(decision.status, AccountStatus::default(), "no status change");
        assert!(decision.events.is_empty());
    }
}
