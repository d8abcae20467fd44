//! `Organization`: the top of the tenancy hierarchy, one customer of the platform.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DNS_LABEL_PATTERN, ELEMENT_KEY_PATTERN, EMAIL_PATTERN, NamespacedRef, Privilege, Role, SecretRef};

/// Longest Organization name: the owner user `<name>-owner` and its Secret
/// `<name>-owner-user-secret` must still be valid names and label values (63 characters).
pub const MAX_ORGANIZATION_NAME: usize = 45;

/// A Go-style duration such as `30m`, `24h` or `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// Desired state of an Organization.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ce.tenancy.io",
    version = "v1alpha1",
    kind = "Organization",
    namespaced,
    status = "OrganizationStatus",
    shortname = "ceorg",
    category = "ce",
    derive = "PartialEq",
    doc = "An Organization is one customer of the platform: the top of the tenancy hierarchy. The operator generates its organization secret, ensures it has exactly one default account, and reports accounts, users and the effective role privileges in status.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 45").message("metadata.name must be at most 45 characters: the owner user <name>-owner and its Secret <name>-owner-user-secret must fit in 63"),
    printcolumn(name = "Default-Account", type_ = "string", json_path = ".status.defaultAccount", description = "The organization's default account"),
    printcolumn(name = "Accounts", type_ = "integer", json_path = ".status.accounts", description = "Number of accounts"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.users", description = "Number of users"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the organization is ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) ready", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.whitelabel) && has(self.superOrganizationRef))").message("whitelabel and superOrganizationRef are mutually exclusive: a super-organization cannot itself belong to a super-organization"))]
#[x_kube(validation = kube::core::Rule::new("!has(oldSelf.defaultAccountName) || has(self.defaultAccountName)").message("defaultAccountName cannot be removed once set"))]
pub struct OrganizationSpec {
    /// Human-readable name of the organization, e.g. "Acme Corp".
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,

    /// The first user of the organization. When set, the operator creates this user in the
    /// default account with an org-admin RoleBinding, as signing up does in the source
    /// platform. Optional: org-admins can also be bound by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,

    /// Name of the default account ("Company Default Account"). If no Account in the
    /// namespace declares `default: true` for this organization, the operator creates one
    /// with this name. Defaults to `<organization>-default`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("defaultAccountName is immutable"))]
    pub default_account_name: Option<String>,

    /// Per-role customisation of the default privilege matrix: for each role, privileges to
    /// grant on top of its defaults and privileges to revoke. At most one entry per role.
    /// org-admin always keeps manageSecurity, configureRoles, manageAccounts and manageUsers:
    /// revoking those is reported and not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["role".into()]))]
    pub roles: Vec<RoleCustomization>,

    /// Security settings of the organization: secret length, rotation grace period,
    /// password policy and two-factor requirement.
    #[serde(default)]
    pub security: Security,

    /// Joins this organization to a super-organization (a whitelabel partner), whose element
    /// denylist then applies to it. The super-organization must list this organization's
    /// namespace in `whitelabel.allowedNamespaces`. Not allowed together with `whitelabel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_organization_ref: Option<NamespacedRef>,

    /// Makes this organization a super-organization (a whitelabel partner) that other
    /// organizations may join. Not allowed together with `superOrganizationRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelabel: Option<Whitelabel>,

    /// When true, deleting the organization also deletes its accounts, users, role bindings
    /// and safelists. When false (the default), deletion waits, with a DeletionBlocked
    /// condition naming what remains, until they are gone.
    #[serde(default)]
    pub allow_cascading_deletion: bool,
}

/// The organization's first user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// E-mail address of the owner; unique among the organization's users.
    #[schemars(length(min = 3, max = 254), regex(pattern = EMAIL_PATTERN))]
    pub email: String,
    /// Human-readable name of the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
}

/// Privileges granted or revoked for one role, relative to the default matrix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("!has(self.grant) || !has(self.revoke) || self.grant.all(p, !(p in self.revoke))").message("a privilege cannot be both granted and revoked for the same role"))]
pub struct RoleCustomization {
    /// The role to customise: org-admin, admin, org or default-user.
    pub role: Role,
    /// Privileges this role gets in addition to its defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 14))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub grant: Vec<Privilege>,
    /// Default privileges this role loses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 14))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub revoke: Vec<Privilege>,
}

/// Security settings of an organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    /// Length in bytes of generated organization and user secrets, drawn from the OS
    /// random generator (32 bytes = 256 bits). From 32 to 128; default 32. Applies to
    /// secrets issued after a change; existing secrets are never rewritten.
    #[serde(default = "default_secret_length")]
    #[schemars(range(min = 32, max = 128))]
    pub secret_length: i32,

    /// How long the previous secret stays valid after a rotation, as a duration such as
    /// `30m` or `24h`. At most 2160h (90 days); default 24h.
    #[serde(default = "default_rotation_grace_period")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("!self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) <= duration('2160h')").message("rotationGracePeriod must be at most 2160h (90 days)"))]
    pub rotation_grace_period: String,

    /// Password policy for the organization's users (kept for the platform that
    /// authenticates them; the operator itself issues only API secrets).
    #[serde(default)]
    pub password_policy: PasswordPolicy,

    /// Whether users must use two-factor authentication. Default false.
    #[serde(default)]
    pub two_factor_required: bool,

    /// Whether RoleBindings in this organization may bind the roles the system assigns
    /// (`org`, `default-user`) by hand with `overrideSystemRole: true`. Default false: such a
    /// binding grants nothing (`SystemRoleOverrideNotAllowed`), since `org` outside the
    /// default account gives a user organization-wide scope.
    #[serde(default)]
    pub allow_system_role_override: bool,
}

fn default_secret_length() -> i32 {
    32
}

fn default_rotation_grace_period() -> String {
    "24h".into()
}

impl Default for Security {
    fn default() -> Self {
        Self {
            secret_length: default_secret_length(),
            rotation_grace_period: default_rotation_grace_period(),
            password_policy: PasswordPolicy::default(),
            two_factor_required: false,
            allow_system_role_override: false,
        }
    }
}

/// Password rules for the organization's users.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicy {
    /// Minimum password length, from 8 to 128; default 12.
    #[serde(default = "default_min_password_length")]
    #[schemars(range(min = 8, max = 128))]
    pub min_length: i32,
    /// Require upper- and lower-case letters. Default true.
    #[serde(default = "default_true")]
    pub require_mixed_case: bool,
    /// Require at least one digit. Default true.
    #[serde(default = "default_true")]
    pub require_digit: bool,
    /// Require at least one symbol. Default false.
    #[serde(default)]
    pub require_symbol: bool,
}

fn default_min_password_length() -> i32 {
    12
}

fn default_true() -> bool {
    true
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: default_min_password_length(),
            require_mixed_case: true,
            require_digit: true,
            require_symbol: false,
        }
    }
}

/// What makes an organization a super-organization (a whitelabel partner).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Whitelabel {
    /// Namespaces whose organizations may join this super-organization with
    /// `superOrganizationRef`. A link from any other namespace is rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub allowed_namespaces: Vec<String>,

    /// Elements (by key) that no member organization may see or safelist. Deny wins over
    /// a member's safelist; the conflict is reported on both sides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 63), regex(pattern = ELEMENT_KEY_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub element_denylist: Vec<String>,
}

/// Observed state of an Organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// Conditions: Ready, SecretReady, AdminPresent, DenylistConflict, DeletionBlocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The Secret holding the organization secret (key `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// First 16 hex digits of the SHA-256 of the current organization secret, to tell which
    /// secret a client holds without revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_fingerprint: Option<String>,

    /// When the organization secret was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,

    /// The value of the `ce.tenancy.io/rotate-secret` annotation the last rotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,

    /// Name of the organization's default account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_account: Option<String>,

    /// Number of accounts of the organization, the default account included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<i32>,

    /// Number of users across the organization's accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i32>,

    /// The effective privilege matrix: for each role, its privileges after this
    /// organization's grants and revocations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<RolePrivileges>,

    /// Which elements the organization's accounts and users may see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_visibility: Option<ElementVisibility>,
}

/// The privileges one role holds in this organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct RolePrivileges {
    /// The role.
    pub role: Role,
    /// Its effective privileges, sorted.
    #[serde(default)]
    pub privileges: Vec<Privilege>,
}

/// Element visibility of an organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElementVisibility {
    /// Name of the ElementSafelist in effect; absent when no safelist restricts the
    /// organization (then every element not denied is visible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safelist: Option<String>,
    /// Elements denied by the super-organization, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_elements: Vec<String>,
    /// True while the organization names a super-organization that does not accept the link
    /// (missing, refusing, or not watched): no element is visible until it does, since a
    /// denylist that cannot be read is never taken as empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

has_status!(Organization => OrganizationStatus);
