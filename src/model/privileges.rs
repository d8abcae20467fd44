//! The privilege matrix: which privileges each role holds by default, and how an
//! organization's grants and revocations change it.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Privilege, Role, RoleCustomization};

use Privilege::*;

/// Privileges org-admin always keeps, so that an organization can never lock itself out of
/// its own administration. Revoking them is reported and not applied.
pub const ORG_ADMIN_PROTECTED: [Privilege; 4] = [ManageSecurity, ConfigureRoles, ManageAccounts, ManageUsers];

/// The default privileges of a role, from the seeds (shared/seeds):
/// - org-admin: "manage all aspects of security; create elements, formula templates, and
///   virtual data resources for the organization; and can access all logs in Activity"
///   (002/003, Manage Roles); `manageElementOrgLists` "is enabled for Organization
///   Administrators by default" (002, Role-Based Element Listing). So: every privilege.
/// - admin: "the same function of the Organization Administrator, but only on the account
///   ... cannot create or manage accounts or set security rules" (002/003). Role
///   configuration lives in the Security section (000), and the element org list is an
///   organization-level setting enabled for org-admins, so those are off too. The four
///   `...AccountElementInstances` privileges "are granted to account administrators by
///   default" (002/003).
/// - org and default-user: "non-administrator" roles whose access "the system generates
///   ... with respect to the default settings" (002/003): no privileges by default; an
///   organization grants what it wants them to have.
pub fn default_privileges(role: Role) -> BTreeSet<Privilege> {
    match role {
        Role::OrgAdmin => Privilege::ALL.into_iter().collect(),
        Role::Admin => [
            ManageUsers,
            ViewActivity,
            CreateElements,
            CreateFormulaTemplates,
            CreateVirtualDataResources,
            ManageTransformations,
            ViewAccountElementInstances,
            UseAccountElementInstances,
            EditAccountElementInstances,
            DeleteAccountElementInstances,
        ]
        .into_iter()
        .collect(),
        Role::Org | Role::DefaultUser => BTreeSet::new(),
    }
}

/// An organization's effective privilege matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    roles: BTreeMap<Role, BTreeSet<Privilege>>,
    /// Revocations that were not applied because they would lock the organization out.
    pub refused_revocations: Vec<Privilege>,
}

impl Matrix {
    /// The defaults, changed by the organization's customisations: grants are added, then
    /// revocations removed (a privilege in both is rejected by the schema; should one slip
    /// through, revoke wins), except that org-admin keeps its protected privileges.
    pub fn new(customizations: &[RoleCustomization]) -> Self {
        let mut roles: BTreeMap<Role, BTreeSet<Privilege>> =
            Role::ALL.into_iter().map(|r| (r, default_privileges(r))).collect();
        let mut refused = BTreeSet::new();
        for custom in customizations {
            let privileges = roles.entry(custom.role).or_default();
            privileges.extend(custom.grant.iter().copied());
            for revoked in &custom.revoke {
                if custom.role == Role::OrgAdmin && ORG_ADMIN_PROTECTED.contains(revoked) {
                    refused.insert(*revoked);
                } else {
                    privileges.remove(revoked);
                }
            }
        }
        Self {
            roles,
            refused_revocations: refused.into_iter().collect(),
        }
    }

    pub fn privileges(&self, role: Role) -> &BTreeSet<Privilege> {
        static EMPTY: BTreeSet<Privilege> = BTreeSet::new();
        self.roles.get(&role).unwrap_or(&EMPTY)
    }

    /// The union of the privileges of `roles`, sorted.
    pub fn union<'a>(&self, roles: impl IntoIterator<Item = &'a Role>) -> Vec<Privilege> {
        let all: BTreeSet<Privilege> = roles
            .into_iter()
            .flat_map(|r| self.privileges(*r).iter().copied())
            .collect();
        all.into_iter().collect()
    }

    /// Every role with its privileges, in role order.
    pub fn entries(&self) -> impl Iterator<Item = (Role, &BTreeSet<Privilege>)> {
        self.roles.iter().map(|(r, p)| (*r, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(role: Role, grant: &[Privilege], revoke: &[Privilege]) -> RoleCustomization {
        RoleCustomization {
            role,
            grant: grant.to_vec(),
            revoke: revoke.to_vec(),
        }
    }

    /// Every role × every privilege, spelled out: the table a reviewer checks against the seeds.
    #[test]
    fn the_default_matrix_role_by_privilege() {
        let expected: [(Privilege, [bool; 4]); 14] = [
            //                                [org-admin, admin, org, default-user]
            (ManageSecurity, [true, false, false, false]),
            (ManageAccounts, [true, false, false, false]),
            (ManageUsers, [true, true, false, false]),
            (ConfigureRoles, [true, false, false, false]),
            (ManageElementOrgLists, [true, false, false, false]),
            (ViewActivity, [true, true, false, false]),
            (CreateElements, [true, true, false, false]),
            (CreateFormulaTemplates, [true, true, false, false]),
            (CreateVirtualDataResources, [true, true, false, false]),
            (ManageTransformations, [true, true, false, false]),
            (ViewAccountElementInstances, [true, true, false, false]),
            (UseAccountElementInstances, [true, true, false, false]),
            (EditAccountElementInstances, [true, true, false, false]),
            (DeleteAccountElementInstances, [true, true, false, false]),
        ];
        let matrix = Matrix::new(&[]);
        for (privilege, holders) in expected {
            for (role, holds) in Role::ALL.into_iter().zip(holders) {
                assert_eq!(
                    matrix.privileges(role).contains(&privilege),
                    holds,
                    "{role} {privilege}"
                );
            }
        }
        assert!(matrix.refused_revocations.is_empty());
    }

    #[test]
    fn grants_add_and_revocations_remove() {
        let matrix = Matrix::new(&[
            custom(Role::Admin, &[], &[DeleteAccountElementInstances]),
            custom(Role::Org, &[ViewActivity], &[]),
        ]);
        assert!(!matrix.privileges(Role::Admin).contains(&DeleteAccountElementInstances));
        assert!(matrix.privileges(Role::Admin).contains(&EditAccountElementInstances));
        assert_eq!(
            matrix.privileges(Role::Org).iter().copied().collect::<Vec<_>>(),
            vec![ViewActivity]
        );
        assert!(matrix.privileges(Role::DefaultUser).is_empty());
    }

    #[test]
    fn revoke_wins_over_grant_for_the_same_privilege() {
        let matrix = Matrix::new(&[custom(Role::DefaultUser, &[ViewActivity], &[ViewActivity])]);
        assert!(!matrix.privileges(Role::DefaultUser).contains(&ViewActivity));
    }

    #[test]
    fn org_admin_cannot_be_locked_out() {
        let matrix = Matrix::new(&[custom(
            Role::OrgAdmin,
            &[],
            &[ManageSecurity, ManageUsers, ViewActivity],
        )]);
        let org_admin = matrix.privileges(Role::OrgAdmin);
        assert!(ORG_ADMIN_PROTECTED.iter().all(|p| org_admin.contains(p)));
        assert!(
            !org_admin.contains(&ViewActivity),
            "unprotected revocations still apply"
        );
        assert_eq!(matrix.refused_revocations, vec![ManageSecurity, ManageUsers]);
    }

    #[test]
    fn the_union_is_sorted_and_deduplicated() {
        let matrix = Matrix::new(&[custom(Role::Org, &[ViewActivity, CreateElements], &[])]);
        let union = matrix.union(&[Role::Org, Role::Admin]);
        let mut sorted = union.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(union, sorted);
        assert!(union.contains(&ViewActivity) && union.contains(&ManageUsers));
    }
}
