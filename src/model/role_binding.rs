//! The RoleBinding decision: whether the binding takes effect, and where.

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{
    Action, Decision,
    conditions::{self, ConditionType, Desired, Reason},
    tenancy::{self, BoundUser, DefaultCandidates, Verdict},
};
use crate::api::{Account, CEUser, Organization, RoleBinding, RoleBindingStatus};

/// Everything the RoleBinding decision depends on.
pub struct Inputs<'a> {
    pub binding: &'a RoleBinding,
    pub user: Option<&'a CEUser>,
    /// The user's account.
    pub account: Option<&'a Account>,
    /// The account's organization.
    pub organization: Option<&'a Organization>,
    /// The organization's candidates for its default account (to tell the default account).
    pub default_candidates: &'a DefaultCandidates,
    pub now: Timestamp,
}

/// The binding's Ready condition, from its verdict.
pub fn ready(binding: &RoleBinding, verdict: &Verdict) -> Desired {
    match verdict {
        Verdict::Effective {
            role,
            overrides_system_role: true,
            ..
        } => Desired::new(
            ConditionType::Ready,
            Reason::SystemRoleOverridden,
            tenancy::override_message(*role),
        ),
        Verdict::Effective { role, .. } => Desired::new(
            ConditionType::Ready,
            Reason::Bound,
            format!("{role} is in effect for user {}", binding.spec.user_ref.name),
        ),
        Verdict::Refused { reason, message } => Desired::new(ConditionType::Ready, *reason, message.clone()),
    }
}

/// Where the binding's user stands.
pub fn bound_user<'a>(inputs: &Inputs<'a>) -> BoundUser<'a> {
    match (inputs.user, inputs.account) {
        (None, _) => BoundUser::Missing,
        (Some(user), None) => BoundUser::NoAccount(user),
        (Some(user), Some(account)) => {
            let org_uid = inputs.organization.and_then(|o| o.meta().uid.as_deref());
            let account_is_default = inputs
                .default_candidates
                .default_account(org_uid)
                .is_some_and(|d| d.name_any() == account.name_any());
            BoundUser::Resolved {
                user,
                account,
                account_is_default,
                override_allowed: inputs
                    .organization
                    .is_some_and(|o| o.spec.security.allow_system_role_override),
            }
        }
    }
}

pub fn decide(inputs: &Inputs<'_>) -> Decision<RoleBindingStatus> {
    let binding = inputs.binding;
    let previous = binding.status.clone().unwrap_or_default();
    let mut status = RoleBindingStatus {
        observed_generation: binding.meta().generation,
        ..Default::default()
    };
    if let Some(account) = inputs.account {
        status.organization = Some(account.spec.organization_ref.name.clone());
        status.account = Some(account.name_any());
    }
    let verdict = tenancy::judge_binding(binding, bound_user(inputs));
    if let Verdict::Effective { scope, .. } = &verdict {
        status.scope = Some(*scope);
    }
    let desired = [ready(binding, &verdict)];
    status.conditions = conditions::merge(&previous.conditions, &desired, binding.meta().generation, inputs.now);
    let mut decision = Decision::status(status);
    decision.events = conditions::warnings(&previous.conditions, &desired);
    // The organization's own binding of its owner is not pinned: the organization keeps it
    // for whichever user holds the declared owner's e-mail, and goes with it.
    let generated = binding
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "Organization");
    if let Some(user) = inputs.user
        && !generated
        && tenancy::pin(binding, user) == tenancy::Pin::Unpinned
        && binding.meta().deletion_timestamp.is_none()
        && let Some(uid) = user.meta().uid.clone()
    {
        decision.actions.push(Action::PinToUser {
            user: user.name_any(),
            uid,
        });
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{Role, RoleScope},
        model::fixtures::*,
    };

    /// One row of the table: a binding of a user, and what it comes to.
    struct Case<'a> {
        case: &'a str,
        binding: RoleBinding,
        user: Option<&'a CEUser>,
        reason: Reason,
        scope: Option<RoleScope>,
        warned: bool,
    }

    /// `binding` owned by `kind` `name` (uid `uid`), as a controller or not.
    fn owned(
        mut binding: RoleBinding,
        api_version: &str,
        kind: &str,
        name: &str,
        uid: &str,
        controller: bool,
    ) -> RoleBinding {
        binding.metadata.owner_references.get_or_insert_with(Vec::new).push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
                uid: uid.into(),
                controller: controller.then_some(true),
                ..Default::default()
            },
        );
        binding
    }

    #[test]
    fn a_binding_is_pinned_to_its_user_and_grants_nothing_to_a_namesake_or_when_owned_elsewhere() {
        let acme = org("acme");
        let accounts = arcs(&[account("hq", "acme", true)]);
        let sam = user("sam", "hq", "sam@acme.example");
        let candidates = DefaultCandidates::empty(accounts.clone());
        let decide_with = |binding: &RoleBinding| {
            decide(&Inputs {
                binding,
                user: Some(&sam),
                account: Some(&accounts[0]),
                organization: Some(&acme),
                default_candidates: &candidates,
                now: at(100),
            })
        };
        let fresh = binding("sam-oa", "sam", Role::OrgAdmin, false);
        let unpinned = decide_with(&fresh);
        assert_eq!(unpinned.status.conditions[0].reason, Reason::Bound.as_str());
        assert_eq!(
            unpinned.actions,
            vec![Action::PinToUser {
                user: "sam".into(),
                uid: "uid-sam".into()
            }]
        );
        let pinned = owned(
            fresh.clone(),
            "ce.tenancy.io/v1alpha1",
            "CEUser",
            "sam",
            "uid-sam",
            false,
        );
        let at_rest = decide_with(&pinned);
        assert_eq!(at_rest.status.conditions[0].reason, Reason::Bound.as_str());
        assert!(at_rest.actions.is_empty(), "pinned once");
        // The organization's own binding of its owner keeps its controller, and is pinned too.
        let generated = owned(
            pinned.clone(),
            "ce.tenancy.io/v1alpha1",
            "Organization",
            "acme",
            "uid-acme",
            true,
        );
        assert_eq!(
            decide_with(&generated).status.conditions[0].reason,
            Reason::Bound.as_str()
        );

        let earlier = owned(
            fresh.clone(),
            "ce.tenancy.io/v1alpha1",
            "CEUser",
            "sam",
            "uid-earlier-sam",
            false,
        );
        let replaced = decide_with(&earlier);
        assert_eq!(replaced.status.conditions[0].reason, Reason::UserReplaced.as_str());
        assert!(replaced.status.scope.is_none(), "grants nothing");
        assert!(replaced.actions.is_empty(), "never re-pinned to the namesake");

        for (api_version, kind, name) in [
            ("v1", "ConfigMap", "decoy"),
            ("ce.tenancy.io/v1alpha1", "CEUser", "someone-else"),
            ("evil.example.com/v1", "CEUser", "sam"),
            ("ce.tenancy.io/v1alpha1", "Account", "hq"),
        ] {
            let foreign = owned(pinned.clone(), api_version, kind, name, "uid-x", false);
            let decision = decide_with(&foreign);
            assert_eq!(
                decision.status.conditions[0].reason,
                Reason::ForeignOwner.as_str(),
                "{api_version} {kind} {name}"
            );
            let findings = crate::model::admission::binding_findings(&Inputs {
                binding: &foreign,
                user: Some(&sam),
                account: Some(&accounts[0]),
                organization: Some(&acme),
                default_candidates: &candidates,
                now: at(100),
            });
            assert_eq!(findings[0].reason, Reason::ForeignOwner);
            let review = crate::model::admission::review("RoleBinding", "t", "sam-oa", &[], &findings);
            assert!(review.denial.is_some(), "refused at admission too");
        }
    }

    #[test]
    fn role_binding_decisions_table() {
        // An organization that allows overrides (the override cases).
        let mut acme = org("acme");
        acme.spec.security.allow_system_role_override = true;
        let accounts = arcs(&[account("hq", "acme", true), account("eu", "acme", false)]);
        let sam = user("sam", "hq", "sam@acme.example");
        let jane = user("jane", "eu", "jane@acme.example");
        let orphan = user("orphan", "gone", "o@acme.example");
        let cases = [
            Case {
                case: "user missing",
                binding: binding("b", "nobody", Role::Admin, false),
                user: None,
                reason: Reason::UserNotFound,
                scope: None,
                warned: true,
            },
            Case {
                case: "account missing",
                binding: binding("b", "orphan", Role::Admin, false),
                user: Some(&orphan),
                reason: Reason::AccountNotFound,
                scope: None,
                warned: true,
            },
            Case {
                case: "admin in its account",
                binding: binding("b", "jane", Role::Admin, false),
                user: Some(&jane),
                reason: Reason::Bound,
                scope: Some(RoleScope::Account),
                warned: false,
            },
            Case {
                case: "org-admin in the default account",
                binding: binding("b", "sam", Role::OrgAdmin, false),
                user: Some(&sam),
                reason: Reason::Bound,
                scope: Some(RoleScope::Organization),
                warned: false,
            },
            Case {
                case: "org-admin elsewhere",
                binding: binding("b", "jane", Role::OrgAdmin, false),
                user: Some(&jane),
                reason: Reason::OrgAdminRequiresDefaultAccount,
                scope: None,
                warned: true,
            },
            Case {
                case: "system role without override",
                binding: binding("b", "jane", Role::DefaultUser, false),
                user: Some(&jane),
                reason: Reason::SystemAssignedRole,
                scope: None,
                warned: true,
            },
            Case {
                case: "system role with override",
                binding: binding("b", "jane", Role::Org, true),
                user: Some(&jane),
                reason: Reason::SystemRoleOverridden,
                scope: Some(RoleScope::Organization),
                warned: true,
            },
        ];
        for Case {
            case,
            binding,
            user,
            reason,
            scope,
            warned,
        } in cases
        {
            let account = user
                .and_then(|u| accounts.iter().find(|a| a.name_any() == u.spec.account_ref.name))
                .map(AsRef::as_ref);
            let decision = decide(&Inputs {
                binding: &binding,
                user,
                account,
                organization: Some(&acme),
                default_candidates: &DefaultCandidates::empty(accounts.clone()),
                now: at(100),
            });
            assert_eq!(decision.status.conditions[0].reason, reason.as_str(), "{case}");
            assert_eq!(decision.status.scope, scope, "{case}");
            assert_eq!(decision.events.len(), usize::from(warned), "{case}");
            if let Some(account) = account {
                assert_eq!(decision.status.account.as_deref(), Some(account.name_any().as_str()));
            }
        }
    }

    #[test]
    fn a_warning_is_not_repeated_once_reported() {
        // An organization that allows overrides (the override cases).
        let mut acme = org("acme");
        acme.spec.security.allow_system_role_override = true;
        let accounts = arcs(&[account("hq", "acme", true), account("eu", "acme", false)]);
        let jane = user("jane", "eu", "jane@acme.example");
        let mut overriding = binding("b", "jane", Role::Org, true);
        let inputs = |b: &RoleBinding| {
            decide(&Inputs {
                binding: b,
                user: Some(&jane),
                account: Some(&accounts[1]),
                organization: Some(&acme),
                default_candidates: &DefaultCandidates::empty(accounts.clone()),
                now: at(100),
            })
        };
        let first = inputs(&overriding);
        assert_eq!(first.events.len(), 1);
        overriding.status = Some(first.status);
        let again = inputs(&overriding);
        assert!(again.events.is_empty());
        assert_eq!(
            Some(&again.status),
            overriding.status.as_ref(),
            "at rest nothing changes"
        );
    }

    /// The decision for `binding` of `user`, in organization acme whose one account, hq, is
    /// its default.
    fn decide_in_acme(binding: &RoleBinding, user: &CEUser) -> Decision<RoleBindingStatus> {
        let accounts = arcs(&[account("hq", "acme", true)]);
        decide(&Inputs {
            binding,
            user: Some(user),
            account: Some(&accounts[0]),
            organization: Some(&org("acme")),
            default_candidates: &DefaultCandidates::empty(accounts.clone()),
            now: at(100),
        })
    }

    /// The organization's own binding of its owner is never pinned to a user: it follows
    /// whichever user holds the owner's e-mail, and goes with the organization.
    #[test]
    fn the_organizations_owner_binding_is_not_pinned() {
        let owner = user("acme-owner", "hq", "ceo@acme.example");
        let generated = owned(
            binding("acme-owner-org-admin", "acme-owner", Role::OrgAdmin, false),
            "ce.tenancy.io/v1alpha1",
            "Organization",
            "acme",
            "uid-acme",
            true,
        );
        let decision = decide_in_acme(&generated, &owner);
        assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    }

    /// The status answers for the binding's generation (what GitOps tools wait on).
    #[test]
    fn the_status_names_the_generation_it_answers_for() {
        let sam = user("sam", "hq", "sam@acme.example");
        let decision = decide_in_acme(&binding("sam-admin", "sam", Role::Admin, false), &sam);
        assert_eq!(decision.status.observed_generation, Some(1));
    }
}
