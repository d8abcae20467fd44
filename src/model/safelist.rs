//! Element visibility: an organization's safelist against its super-organization's denylist,
//! and whether a super-organization accepts an organization's link.

use std::collections::BTreeSet;

use crate::api::Organization;

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

/// How a super-organization link stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The organization names no super-organization.
    None,
    /// Accepted: the super-organization's denylist applies.
    Accepted { denylist: Vec<String> },
    /// Refused or unresolved, with a condition reason and a message for a person.
    Refused { reason: &'static str, message: String },
}

/// Judges an organization's `superOrganizationRef` against the super-organization it names
/// (`target`, None when it does not exist).
pub fn judge_link(org: &Organization, org_namespace: &str, target: Option<&Organization>) -> Link {
    let Some(reference) = &org.spec.super_organization_ref else {
        return Link::None;
    };
    let named = format!("{}/{}", reference.namespace, reference.name);
    let Some(target) = target else {
        return Link::Refused {
            reason: "SuperOrganizationNotFound",
            message: format!("super-organization {named} does not exist; the link takes effect once it does"),
        };
    };
    let Some(whitelabel) = &target.spec.whitelabel else {
        return Link::Refused {
            reason: "SuperOrganizationRejected",
            message: format!("{named} is not a super-organization (it has no spec.whitelabel)"),
        };
    };
    if !whitelabel.allowed_namespaces.iter().any(|ns| ns == org_namespace) {
        return Link::Refused {
            reason: "SuperOrganizationRejected",
            message: format!(
                "super-organization {named} does not allow organizations of namespace {org_namespace}; add it to its spec.whitelabel.allowedNamespaces"
            ),
        };
    }
    Link::Accepted {
        denylist: whitelabel.element_denylist.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NamespacedRef, OrganizationSpec, Whitelabel};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

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

    fn org(super_ref: Option<(&str, &str)>, whitelabel: Option<Whitelabel>) -> Organization {
        let mut spec: OrganizationSpec = serde_json::from_value(serde_json::json!({"displayName": "x"})).unwrap();
        spec.super_organization_ref = super_ref.map(|(ns, name)| NamespacedRef {
            namespace: ns.into(),
            name: name.into(),
        });
        spec.whitelabel = whitelabel;
        Organization::new("x", spec)
    }

    #[test]
    fn links_are_accepted_only_from_allowed_namespaces() {
        let child = org(Some(("partners", "big")), None);
        let partner = org(
            None,
            Some(Whitelabel {
                allowed_namespaces: strings(&["tenants"]),
                element_denylist: strings(&["box"]),
            }),
        );
        assert_eq!(
            judge_link(&child, "tenants", Some(&partner)),
            Link::Accepted {
                denylist: strings(&["box"])
            }
        );
        let refused = |link| match link {
            Link::Refused { reason, .. } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refused(judge_link(&child, "elsewhere", Some(&partner))),
            "SuperOrganizationRejected"
        );
        assert_eq!(
            refused(judge_link(&child, "tenants", None)),
            "SuperOrganizationNotFound"
        );
        assert_eq!(
            refused(judge_link(&child, "tenants", Some(&org(None, None)))),
            "SuperOrganizationRejected"
        );
        assert_eq!(judge_link(&org(None, None), "tenants", None), Link::None);
    }
}
