//! Element visibility and the ElementSafelist decision: an organization's safelist against
//! its super-organization's denylist, and whether a super-organization accepts a link.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{
    Decision,
    conditions::{self, ConditionType, Desired, Reason},
    super_organization::{Link, SuperOrganization, judge_link},
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

/// The visibility an organization gets under its super-organization link, and the
/// safelisted elements the denylist overrides (deny wins: they are not visible, and the
/// conflict is reported on both sides). A link that names a super-organization but is not
/// accepted shows nothing: a denylist that cannot be read is never taken as empty.
pub fn visibility(safelist: Option<&[String]>, link: &Link) -> (Visible, Vec<String>) {
    let denylist = match link {
        Link::Refused { .. } => return (Visible::Only(BTreeSet::new()), Vec::new()),
        Link::None | Link::Accepted { .. } => link.denylist(),
    };
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
    if let Link::Refused { reason, message } = &link {
        return judged(Desired::new(
            ConditionType::Ready,
            *reason,
            format!("{message}; until then no element is visible to organization {org_name}"),
        ));
    }
    let (visible, conflicts) = visibility(Some(&list.spec.elements), &link);
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

    fn denying(elements: &[&str]) -> Link {
        Link::Accepted {
            denylist: strings(elements),
        }
    }

    #[test]
    fn a_link_not_accepted_shows_nothing() {
        let refused = Link::Refused {
            reason: Reason::SuperOrganizationNotFound,
            message: String::new(),
        };
        for safelist in [None, Some(&strings(&["salesforce"])[..])] {
            let (visible, conflicts) = visibility(safelist, &refused);
            assert_eq!(visible, Visible::Only(BTreeSet::new()));
            assert!(conflicts.is_empty());
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_safelist_shows_everything_not_denied() {
        let (visible, conflicts) = visibility(None, &denying(&["box"]));
        assert_eq!(visible, Visible::AllExcept(set(&["box"])));
        assert!(visible.contains("salesforce") && !visible.contains("box"));
        assert!(conflicts.is_empty());
    }

    #[test]
    fn an_empty_safelist_shows_nothing() {
        let (visible, _) = visibility(Some(&[]), &Link::None);
        assert_eq!(visible, Visible::Only(BTreeSet::new()));
        assert!(!visible.contains("salesforce"));
    }

    #[test]
    fn deny_wins_over_safelist_and_is_reported() {
        let (visible, conflicts) = visibility(
            Some(&strings(&["salesforce", "box", "hubspot"])),
            &denying(&["box", "dropbox"]),
        );
        assert_eq!(visible, Visible::Only(set(&["hubspot", "salesforce"])));
        assert_eq!(conflicts, strings(&["box"]));
        assert!(!visible.contains("box") && !visible.contains("dropbox"));
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
                case: "unresolved link: fails closed",
                list: &first,
                organization: Some(&linked),
                parent: SuperOrganization::Missing,
                reason: Reason::SuperOrganizationNotFound,
                effective: &[],
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
