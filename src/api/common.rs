//! Types shared by the five resources: references, roles, privileges, conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every ce-operator resource.
pub const GROUP: &str = "ce.tenancy.io";
/// kubectl category shared by the five kinds: `kubectl get ce` lists them all.
pub const CATEGORY: &str = "ce";

/// RFC 1123 label: what a name that also ends up in a label value must look like.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// An element (connector) key as the source platform spells them: lowercase letters,
/// digits and hyphens, starting with a letter or digit.
pub const ELEMENT_KEY_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A pragmatic e-mail check (local part, one `@`, a dotted domain); full RFC 5322 is not
/// the API server's job.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$";

/// A reference to another object of this operator in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub struct LocalRef {
    /// Name of the referenced object, in the same namespace as this one.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
}

impl LocalRef {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A reference to an object by namespace and name; only the super-organization link may
/// cross namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct NamespacedRef {
    /// Namespace of the referenced object.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Name of the referenced object.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
}

/// Names the Secret that holds a generated secret; the value itself is never in status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret, in the object's namespace.
    pub name: String,
}

/// The four roles of the model. Only `org-admin` and `admin` are assigned by hand;
/// `org` and `default-user` are assigned by the system from the user's account.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum Role {
    /// Organization administrator: everything, organization-wide.
    #[serde(rename = "org-admin")]
    OrgAdmin,
    /// Account administrator: the organization administrator's powers within the user's
    /// own account, without managing accounts or security.
    #[serde(rename = "admin")]
    Admin,
    /// Organization user: system-assigned to every user of the default account.
    #[serde(rename = "org")]
    Org,
    /// Default user: system-assigned to every user of any other account.
    #[serde(rename = "default-user")]
    DefaultUser,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::OrgAdmin, Role::Admin, Role::Org, Role::DefaultUser];

    /// The key as the API spells it (`org-admin`, `admin`, `org`, `default-user`).
    pub fn key(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org-admin",
            Role::Admin => "admin",
            Role::Org => "org",
            Role::DefaultUser => "default-user",
        }
    }

    /// Whether the system assigns this role from the user's account.
    pub fn is_system_assigned(self) -> bool {
        matches!(self, Role::Org | Role::DefaultUser)
    }

    /// Where the role's privileges hold: org-admin and org ("best suited to permissions at
    /// the org-level") across the organization; admin and default-user in the user's account.
    pub fn scope(self) -> super::RoleScope {
        match self {
            Role::OrgAdmin | Role::Org => super::RoleScope::Organization,
            Role::Admin | Role::DefaultUser => super::RoleScope::Account,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// A privilege, spelled as the source platform spells it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Privilege {
    /// Manage security settings (password policy, two-factor authentication, secrets).
    ManageSecurity,
    /// Create, update and delete accounts.
    ManageAccounts,
    /// Create, update and delete users.
    ManageUsers,
    /// Change which privileges each role holds.
    ConfigureRoles,
    /// Manage the organization's element safelist.
    ManageElementOrgLists,
    /// See activity (logs, events).
    ViewActivity,
    /// Create elements (connectors).
    CreateElements,
    /// Create formula templates.
    CreateFormulaTemplates,
    /// Create virtual data resources.
    CreateVirtualDataResources,
    /// Manage transformations.
    ManageTransformations,
    /// View element instances of other users of the same account.
    ViewAccountElementInstances,
    /// Use element instances of other users of the same account.
    UseAccountElementInstances,
    /// Modify element instances of other users of the same account.
    EditAccountElementInstances,
    /// Delete element instances of other users of the same account.
    DeleteAccountElementInstances,
}

impl Privilege {
    pub const ALL: [Privilege; 14] = [
        Privilege::ManageSecurity,
        Privilege::ManageAccounts,
        Privilege::ManageUsers,
        Privilege::ConfigureRoles,
        Privilege::ManageElementOrgLists,
        Privilege::ViewActivity,
        Privilege::CreateElements,
        Privilege::CreateFormulaTemplates,
        Privilege::CreateVirtualDataResources,
        Privilege::ManageTransformations,
        Privilege::ViewAccountElementInstances,
        Privilege::UseAccountElementInstances,
        Privilege::EditAccountElementInstances,
        Privilege::DeleteAccountElementInstances,
    ];

    /// The key as the API spells it (camelCase).
    pub fn key(self) -> &'static str {
        match self {
            Privilege::ManageSecurity => "manageSecurity",
            Privilege::ManageAccounts => "manageAccounts",
            Privilege::ManageUsers => "manageUsers",
            Privilege::ConfigureRoles => "configureRoles",
            Privilege::ManageElementOrgLists => "manageElementOrgLists",
            Privilege::ViewActivity => "viewActivity",
            Privilege::CreateElements => "createElements",
            Privilege::CreateFormulaTemplates => "createFormulaTemplates",
            Privilege::CreateVirtualDataResources => "createVirtualDataResources",
            Privilege::ManageTransformations => "manageTransformations",
            Privilege::ViewAccountElementInstances => "viewAccountElementInstances",
            Privilege::UseAccountElementInstances => "useAccountElementInstances",
            Privilege::EditAccountElementInstances => "editAccountElementInstances",
            Privilege::DeleteAccountElementInstances => "deleteAccountElementInstances",
        }
    }
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}
