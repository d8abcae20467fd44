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

/// The privileges, each with its key as the API spells it: the enum, its list, its key and its
/// parse are generated from this one list.
macro_rules! privileges {
    ($($(#[doc = $doc:literal])* $variant:ident => $key:literal,)*) => {
        /// A privilege, spelled as the source platform spells it.
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
        pub enum Privilege {
            $($(#[doc = $doc])* #[serde(rename = $key)] $variant,)*
        }

        impl Privilege {
            pub const ALL: [Privilege; [$($key),*].len()] = [$(Privilege::$variant),*];

            /// The key as the API spells it (camelCase).
            pub fn key(self) -> &'static str {
                match self {
                    $(Privilege::$variant => $key,)*
                }
            }

            /// The privilege of a key as the API spells it (`createElements`; case matters).
            pub fn parse(key: &str) -> Option<Privilege> {
                match key.trim() {
                    $($key => Some(Privilege::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

privileges! {
    /// Manage security settings (password policy, two-factor authentication, secrets).
    ManageSecurity => "manageSecurity",
    /// Create, update and delete accounts.
    ManageAccounts => "manageAccounts",
    /// Create, update and delete users.
    ManageUsers => "manageUsers",
    /// Change which privileges each role holds.
    ConfigureRoles => "configureRoles",
    /// Manage the organization's element safelist.
    ManageElementOrgLists => "manageElementOrgLists",
    /// See activity (logs, events).
    ViewActivity => "viewActivity",
    /// Create elements (connectors).
    CreateElements => "createElements",
    /// Create formula templates.
    CreateFormulaTemplates => "createFormulaTemplates",
    /// Create virtual data resources.
    CreateVirtualDataResources => "createVirtualDataResources",
    /// Manage transformations.
    ManageTransformations => "manageTransformations",
    /// View element instances of other users of the same account.
    ViewAccountElementInstances => "viewAccountElementInstances",
    /// Use element instances of other users of the same account.
    UseAccountElementInstances => "useAccountElementInstances",
    /// Modify element instances of other users of the same account.
    EditAccountElementInstances => "editAccountElementInstances",
    /// Delete element instances of other users of the same account.
    DeleteAccountElementInstances => "deleteAccountElementInstances",
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}
