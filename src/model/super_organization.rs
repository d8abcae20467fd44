//! Super-organization links: whether a super-organization accepts an organization's
//! `superOrganizationRef`, and who may change a link.
//!
//! The denylist fails closed: an organization that names a super-organization sees no element
//! until the link is accepted (`safelist::visibility`), so a missing, refused or unreadable
//! super-organization never lifts a denial. And while a link is accepted, only the
//! super-organization can end it (`link_change`).

use super::conditions::Reason;
use crate::api::Organization;

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

/// Whether an update of an organization may change its `superOrganizationRef` from `old`
/// (the link as it stands) to `new`: not while the old link is accepted, or the member could
/// escape the super-organization's denylist by editing its own object. The super-organization
/// ends a link (it removes the namespace from `allowedNamespaces`, or is deleted); then the
/// member may change or remove its reference.
pub fn link_change(old: &Organization, old_link: &Link, new: &Organization) -> Option<(Reason, String)> {
    let (Link::Accepted { .. }, Some(reference)) = (old_link, &old.spec.super_organization_ref) else {
        return None;
    };
    (new.spec.super_organization_ref.as_ref() != Some(reference)).then(|| {
        (
            Reason::SuperOrganizationLinkLocked,
            format!(
                "the link to super-organization {}/{} is in effect and only the super-organization can end it (by removing this namespace from its spec.whitelabel.allowedNamespaces); keep spec.superOrganizationRef as it is",
                reference.namespace, reference.name
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;

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

    #[test]
    fn only_the_super_organization_ends_a_link_in_effect() {
        let child = org_linked("acme", "partners", "big");
        let elsewhere = org_linked("acme", "partners", "other");
        let detached = org("acme");
        let partner = super_org("big", &["tenants"], &["box"]);
        let accepted = judge_link(&child, "tenants", SuperOrganization::Found(&partner));
        for new in [&elsewhere, &detached] {
            assert_eq!(
                link_change(&child, &accepted, new).map(|(r, _)| r),
                Some(Reason::SuperOrganizationLinkLocked)
            );
        }
        assert_eq!(link_change(&child, &accepted, &child), None, "unchanged");
        // Once the super-organization refuses it (or is gone), the member may move.
        let refused = judge_link(&child, "elsewhere", SuperOrganization::Found(&partner));
        let gone = judge_link(&child, "tenants", SuperOrganization::Missing);
        for link in [&refused, &gone] {
            assert_eq!(link_change(&child, link, &detached), None);
        }
        // Linking where there was no link only adds a denylist.
        assert_eq!(link_change(&detached, &Link::None, &child), None);
    }
}
