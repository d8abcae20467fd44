//! Names and labels of the objects the operator generates.

/// Finalizer that holds an Organization or Account while it still has children.
pub const FINALIZER: &str = "ce.tenancy.io/children";
/// Annotation whose new value asks for a secret rotation.
pub const ROTATE_ANNOTATION: &str = "ce.tenancy.io/rotate-secret";
/// Set by the chart's restore policy on the objects a restore identity creates: their
/// Secret may still be on its way (`secrets::restore_wait_until`).
pub const RESTORED_ANNOTATION: &str = "ce.tenancy.io/restored";
/// Field manager of every write the operator makes.
pub const MANAGER: &str = "ce-operator";

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_ORGANIZATION: &str = "ce.tenancy.io/organization";
pub const LABEL_ACCOUNT: &str = "ce.tenancy.io/account";
pub const LABEL_USER: &str = "ce.tenancy.io/user";
/// Which kind of object a generated Secret belongs to: `organization` or `user`.
pub const LABEL_SECRET_OF: &str = "ce.tenancy.io/secret-of";

pub fn organization_secret(org: &str) -> String {
    format!("{org}-org-secret")
}

pub fn user_secret(user: &str) -> String {
    format!("{user}-user-secret")
}

/// The kind and name of the object a generated Secret name belongs to (the inverse of
/// `organization_secret` and `user_secret`).
pub fn secret_holder(secret: &str) -> Option<(&'static str, &str)> {
    if let Some(user) = secret.strip_suffix("-user-secret") {
        return Some(("CEUser", user));
    }
    secret.strip_suffix("-org-secret").map(|org| ("Organization", org))
}

/// The default account the operator creates when none is declared.
pub fn default_account(org: &str, declared: Option<&str>) -> String {
    declared.map_or_else(|| format!("{org}-default"), str::to_owned)
}

/// The CEUser the operator creates for `spec.owner`.
pub fn owner_user(org: &str) -> String {
    format!("{org}-owner")
}

/// The org-admin RoleBinding of the owner.
pub fn owner_binding(org: &str) -> String {
    format!("{org}-owner-org-admin")
}

/// A DNS label (RFC 1123), the shape of an element key and of most object names: 1 to 63
/// lower-case letters, digits and `-`, starting and ending with a letter or digit. The CRD
/// schema's `DNS_LABEL_PATTERN` and `ELEMENT_KEY_PATTERN` say the same.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=63).contains(&bytes.len()) && bytes.iter().all(inner) && edge(bytes.first()) && edge(bytes.last())
}

/// A DNS subdomain (RFC 1123), the shape of an object's name: DNS labels joined by `.`, at
/// most 253 characters.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MAX_ORGANIZATION_NAME, MAX_USER_NAME};

    #[test]
    fn a_generated_secret_name_names_its_holder() {
        assert_eq!(secret_holder(&user_secret("jane")), Some(("CEUser", "jane")));
        assert_eq!(
            secret_holder(&organization_secret("acme")),
            Some(("Organization", "acme"))
        );
        assert_eq!(secret_holder("ce-operator-issuance-key"), None);
    }

    #[test]
    fn generated_names_fit_their_limits_at_the_longest_allowed_input() {
        let org = "o".repeat(MAX_ORGANIZATION_NAME);
        let user = "u".repeat(MAX_USER_NAME);
        assert!(organization_secret(&org).len() <= 63);
        assert!(user_secret(&user).len() <= 63);
        assert!(owner_user(&org).len() <= MAX_USER_NAME);
        assert!(user_secret(&owner_user(&org)).len() <= 63);
        assert!(owner_binding(&org).len() <= 63);
        assert!(default_account(&org, None).len() <= 63);
    }

    #[test]
    fn default_account_name_is_derived_unless_declared() {
        assert_eq!(default_account("acme", None), "acme-default");
        assert_eq!(default_account("acme", Some("acme-hq")), "acme-hq");
    }

    #[test]
    fn organization_and_user_secrets_of_the_same_name_do_not_collide() {
        assert_ne!(organization_secret("acme"), user_secret("acme"));
    }
}
