//! Element visibility and the ElementSafelist decision: an organization's safelist against
//! its super-organization's denylist, and whether a super-organization accepts a link.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{
    Decision,
    conditions::{self, ConditionType, Desired, Reason},
    tenancy,
};
use crate::api::{ElementSafelist, ElementSafelistStatus, Organization};

/// What an organization's accounts and users may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visible {
    /// No safelist: every element except the denied ones.
    AllExcept(BTreeSet<String>),
    /// A safelist: only these elements (the safelist minus the denied ones). Empty means
    /// nothing is visible, which differs from having no safelist.
    Only(BTreeSet<String>),
}

impl Visible {
    pub fn contains(&self, element: &str) -> bool {
        match self {
            Visible::AllExcept(denied) => !denied.contains(element),
            Visible::Only(allowed) => allowed.contains(element),
        }
    }
}

/// The visibility an organization gets, and the safelisted elements the denylist overrides
/// (deny wins: they are not visible, and the conflict is reported on both sides).
pub fn visibility(safelist: Option<&[String]>, denylist: &[String]) -> (Visible, Vec<String>) {
    let denied: BTreeSet<String> = denylist.iter().cloned().collect();
    match safelist {
        None => (Visible::AllExcept(denied), Vec::new()),
        Some(elements) => {
            let listed: BTreeSet<String> = elements.iter().cloned().collect();
            let conflicts = listed.intersection(&denied).cloned().collect();
            (Visible::Only(listed.difference(&denied).cloned().collect()), conflicts)
        }
    }
}

/// The super-organization an organization names, as found in the caches.
#[derive(Clone, Copy, Debug)]
pub enum SuperOrganization<'a> {
    Found(&'a Organization),
    Missing,
    /// In a namespace this operator does not watch (`--namespace`); `watched` is the one it does.
    NotWatched {
        watched: &'a str,
    },
}

/// How a super-organization link stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The organization names no super-organization.
    None,
    /// Accepted: the super-organization's denylist applies.
    Accepted { denylist: Vec<String> },
    /// Refused or unresolved, with a condition reason and a message for a person.
    Refused { reason: Reason, message: String },
}

impl Link {
    /// The denylist that applies (empty unless the link is accepted).
    pub fn denylist(&self) -> &[String] {
        match self {
            Link::Accepted { denylist } => denylist,
            Link::None | Link::Refused { .. } => &[],
        }
    }
}

/// Judges an organization's `superOrganizationRef` against the super-organization it names.
pub fn judge_link(org: &Organization, org_namespace: &str, target: SuperOrganization<'_>) -> Link {
    let Some(reference) = &org.spec.super_organization_ref else {
        return Link::None;
    };
    let named = format!("{}/{}", reference.namespace, reference.name);
    let target = match target {
        SuperOrganization::Found(target) => target,
        SuperOrganization::Missing => {
            return Link::Refused {
                reason: Reason::SuperOrganizationNotFound,
                message: format!("super-organization {named} does not exist; the link takes effect once it does"),
            };
        }
        SuperOrganization::NotWatched { watched } => {
            return Link::Refused {
                reason: Reason::SuperOrganizationNotWatched,
                message: format!(
                    "super-organization {named} is in namespace {}, which this operator does not watch (--namespace={watched}); run it over all namespaces, or over both, for the link to take effect",
                    reference.namespace
                ),
            };
        }
    };
    let Some(whitelabel) = &target.spec.whitelabel else {
        return Link::Refused {
            reason: Reason::SuperOrganizationRejected,
            message: format!("{named} is not a super-organization (it has no spec.whitelabel)"),
        };
    };
    if !whitelabel.allowed_namespaces.iter().any(|ns| ns == org_namespace) {
        return Link::Refused {
            reason: Reason::SuperOrganizationRejected,
            message: format!(
                "super-organization {named} does not allow organizations of namespace {org_namespace}; add it to its spec.whitelabel.allowedNamespaces"
            ),
        };
    }
    Link::Accepted {
        denylist: whitelabel.element_denylist.clone(),
    }
}

/// The safelist in effect for an organization, among the safelists naming it: the oldest.
pub fn effective<'a>(safelists: impl IntoIterator<Item = &'a Arc<ElementSafelist>>) -> Option<&'a ElementSafelist> {
    safelists
        .into_iter()
        .map(AsRef::as_ref)
        .min_by(|a, b| tenancy::by_age(*a, *b))
}

/// The message of safelisted elements that the super-organization denies.
pub fn denied_message(conflicts: &[String], super_organization: &str) -> String {
    format!(
        "{} denied by super-organization {super_organization} and not visible: safelist and denylist are mutually exclusive. Remove them from spec.elements, or have the super-organization remove them from its elementDenylist",
        conflicts.join(", ")
    )
}

/// The message of a safelist that another one of the same organization overrides.
pub fn duplicate_message(org: &str, effective: &str) -> String {
    format!(
        "organization {org} already has the safelist {effective}; this one has no effect. Merge its elements into that one and delete this one"
    )
}

/// Everything the ElementSafelist decision depends on.
pub struct Inputs<'a> {
    pub list: &'a ElementSafelist,
    pub organization: Option<&'a Organization>,
    /// The safelists naming the same organization, this one included.
    pub siblings: &'a [Arc<ElementSafelist>],
    /// The organization's super-organization (if it names one).
    pub super_organization: SuperOrganization<'a>,
    pub now: Timestamp,
}

/// Where a safelist stands: its Ready condition, the elements it makes visible, and those
/// the super-organization denies.
pub struct Judgement {
    pub ready: Desired,
    pub effective: Vec<String>,
    pub conflicts: Vec<String>,
}

/// One safelist per organization, and the super-organization's denylist winning over it.
pub fn judge(inputs: &Inputs<'_>) -> Judgement {
    let list = inputs.list;
    let ns = list.namespace().unwrap_or_default();
    let org_name = &list.spec.organization_ref.name;
    let judged = |ready| Judgement {
        ready,
        effective: Vec::new(),
        conflicts: Vec::new(),
    };
    let Some(org) = inputs.organization else {
        return judged(Desired::new(
            ConditionType::Ready,
            Reason::OrganizationNotFound,
            format!(
                "Organization {org_name} does not exist in namespace {ns}; the safelist applies once it does (or fix spec.organizationRef)"
            ),
        ));
    };
    if let Some(winner) = effective(inputs.siblings).filter(|w| w.name_any() != list.name_any()) {
        return judged(Desired::new(
            ConditionType::Ready,
            Reason::DuplicateSafelist,
            duplicate_message(org_name, &winner.name_any()),
        ));
    }
    let link = judge_link(org, &ns, inputs.super_organization);
    let (visible, conflicts) = visibility(Some(&list.spec.elements), link.denylist());
    let effective: Vec<String> = match visible {
        Visible::Only(elements) => elements.into_iter().collect(),
        Visible::AllExcept(_) => Vec::new(),
    };
    let ready = if conflicts.is_empty() {
        Desired::new(
            ConditionType::Ready,
            Reason::Ready,
            format!("{} elements are visible to organization {org_name}", effective.len()),
        )
    } else {
        let parent = org
            .spec
            .super_organization_ref
            .as_ref()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .unwrap_or_default();
        Desired::new(
            ConditionType::Ready,
            Reason::DeniedBySuperOrganization,
            denied_message(&conflicts, &parent),
        )
    };
    Judgement {
        ready,
        effective,
        conflicts,
    }
}

pub fn decide(inputs: &Inputs<'_>) -> Decision<ElementSafelistStatus> {
    let list = inputs.list;
    let previous = list.status.clone().unwrap_or_default();
    let Judgement {
        ready,
        effective,
        conflicts,
    } = judge(inputs);
    let desired = [ready];
    let status = ElementSafelistStatus {
        conditions: conditions::merge(&previous.conditions, &desired, list.meta().generation, inputs.now),
        observed_generation: list.meta().generation,
        effective_elements: effective,
        conflicts,
    };
    let mut decision = Decision::status(status);
    decision.events = conditions::warnings(&previous.conditions, &desired);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_safelist_shows_everything_not_denied() {
        let (visible, conflicts) = visibility(None, &strings(&["box"]));
        assert_eq!(visible, Visible::AllExcept(set(&["box"])));
        assert!(visible.contains("salesforce") && !visible.contains("box"));
        assert!(conflicts.is_empty());
    }

    #[test]
    fn an_empty_safelist_shows_nothing() {
        let (visible, _) = visibility(Some(&[]), &[]);
        assert_eq!(visible, Visible::Only(BTreeSet::new()));
        assert!(!visible.contains("salesforce"));
    }

    #[test]
    fn deny_wins_over_safelist_and_is_reported() {
        let (visible, conflicts) = visibility(
            Some(&strings(&["salesforce", "box", "hubspot"])),
            &strings(&["box", "dropbox"]),
        );
        assert_eq!(visible, Visible::Only(set(&["hubspot", "salesforce"])));
        assert_eq!(conflicts, strings(&["box"]));
        assert!(!visible.contains("box") && !visible.contains("dropbox"));
    }

    fn refused(link: Link) -> Reason {
        match link {
            Link::Refused { reason, .. } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn links_are_accepted_only_from_allowed_namespaces_of_a_super_organization() {
        let child = org_linked("acme", "partners", "big");
        let partner = super_org("big", &["tenants"], &["box"]);
        assert_eq!(
            judge_link(&child, "tenants", SuperOrganization::Found(&partner)),
            Link::Accepted {
                denylist: strings(&["box"])
            }
        );
        assert_eq!(
            refused(judge_link(&child, "elsewhere", SuperOrganization::Found(&partner))),
            Reason::SuperOrganizationRejected
        );
        assert_eq!(
            refused(judge_link(&child, "tenants", SuperOrganization::Missing)),
            Reason::SuperOrganizationNotFound
        );
        assert_eq!(
            refused(judge_link(&child, "tenants", SuperOrganization::Found(&org("plain")))),
            Reason::SuperOrganizationRejected
        );
        let not_watched = judge_link(&child, "tenants", SuperOrganization::NotWatched { watched: "tenants" });
        match &not_watched {
            Link::Refused { reason, message } => {
                assert_eq!(*reason, Reason::SuperOrganizationNotWatched);
                assert!(message.contains("--namespace=tenants"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            judge_link(&org("plain"), "tenants", SuperOrganization::Missing),
            Link::None
        );
    }

    fn decide_for(
        list: &ElementSafelist,
        org: Option<&Organization>,
        siblings: &[Arc<ElementSafelist>],
        parent: SuperOrganization<'_>,
    ) -> Decision<ElementSafelistStatus> {
        decide(&Inputs {
            list,
            organization: org,
            siblings,
            super_organization: parent,
            now: at(100),
        })
    }

    struct Case<'a> {
        case: &'a str,
        list: &'a ElementSafelist,
        organization: Option<&'a Organization>,
        parent: SuperOrganization<'a>,
        reason: Reason,
        effective: &'a [&'a str],
        conflicts: &'a [&'a str],
    }

    #[test]
    fn safelist_decisions_table() {
        let acme = org("acme");
        let linked = org_linked("acme", "partners", "big");
        let partner = super_org("big", &["tenants"], &["box"]);
        let first = aged(safelist("first", "acme", &["salesforce", "box"]), 10);
        let second = aged(safelist("second", "acme", &["hubspot"]), 20);
        let both = [Arc::new(first.clone()), Arc::new(second.clone())];
        let cases = [
            Case {
                case: "missing organization",
                list: &first,
                organization: None,
                parent: SuperOrganization::Missing,
                reason: Reason::OrganizationNotFound,
                effective: &[],
                conflicts: &[],
            },
            Case {
                case: "alone",
                list: &first,
                organization: Some(&acme),
                parent: SuperOrganization::Missing,
                reason: Reason::Ready,
                effective: &["box", "salesforce"],
                conflicts: &[],
            },
            Case {
                case: "the newer of two",
                list: &second,
                organization: Some(&acme),
                parent: SuperOrganization::Missing,
                reason: Reason::DuplicateSafelist,
                effective: &[],
                conflicts: &[],
            },
            Case {
                case: "denied by the super-organization",
                list: &first,
                organization: Some(&linked),
                parent: SuperOrganization::Found(&partner),
                reason: Reason::DeniedBySuperOrganization,
                effective: &["salesforce"],
                conflicts: &["box"],
            },
            Case {
                case: "unresolved link: no denylist",
                list: &first,
                organization: Some(&linked),
                parent: SuperOrganization::Missing,
                reason: Reason::Ready,
                effective: &["box", "salesforce"],
                conflicts: &[],
            },
        ];
        for Case {
            case,
            list,
            organization,
            parent,
            reason,
            effective,
            conflicts,
        } in cases
        {
            let decision = decide_for(list, organization, &both, parent);
            let ready = &decision.status.conditions[0];
            assert_eq!(ready.reason, reason.as_str(), "{case}: {}", ready.message);
            assert_eq!(decision.status.effective_elements, strings(effective), "{case}");
            assert_eq!(decision.status.conflicts, strings(conflicts), "{case}");
            // A problem is announced once, with the condition's words.
            assert_eq!(decision.events.len(), usize::from(reason != Reason::Ready), "{case}");
        }
        let denied = decide_for(&first, Some(&linked), &both, SuperOrganization::Found(&partner));
        assert!(
            denied.status.conditions[0]
                .message
                .contains("box denied by super-organization partners/big")
        );
        let duplicate = decide_for(&second, Some(&acme), &both, SuperOrganization::Missing);
        assert!(
            duplicate.status.conditions[0]
                .message
                .contains("already has the safelist first")
        );
    }
}
