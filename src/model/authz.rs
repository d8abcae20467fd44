//! The authorization decision an API gateway asks for on every request: do the presented
//! secrets belong together and to a user in effect, and do that user's privileges, scopes
//! and organization's element visibility allow what the request does. Pure: the caller
//! resolves the objects from its caches (`authz`) or from a list (`ce-operator can-i`).

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{
    names,
    secrets::{Digest, SecretFacts, SecretValue},
    user::Identity,
};
use crate::api::Privilege;

/// The two secrets a caller presents.
pub struct Credentials {
    pub user: SecretValue,
    pub organization: SecretValue,
}

/// Parses the platform's `Authorization: User <user secret>, Organization <organization
/// secret>` (the two parts in either order, whitespace tolerant). The error says what is
/// wrong without repeating anything presented.
pub fn parse_credentials(header: &str) -> Result<Credentials, &'static str> {
    let (mut user, mut organization) = (None, None);
    for part in header.split(',') {
        let mut words = part.split_whitespace();
        let (Some(scheme), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err("expected `User <user secret>, Organization <organization secret>`");
        };
        let slot = if scheme.eq_ignore_ascii_case("user") {
            &mut user
        } else if scheme.eq_ignore_ascii_case("organization") {
            &mut organization
        } else {
            return Err("expected the parts `User <secret>` and `Organization <secret>`");
        };
        if slot.replace(SecretValue::from_presented(value)).is_some() {
            return Err("a part is given twice");
        }
    }
    match (user, organization) {
        (Some(user), Some(organization)) => Ok(Credentials { user, organization }),
        (None, _) => Err("the `User <secret>` part is missing"),
        (_, None) => Err("the `Organization <secret>` part is missing"),
    }
}

/// Which value of its Secret a presented secret is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    Current,
    /// The previous value, within the rotation's grace period.
    Previous,
}

/// Whether `presented` is the current value of a Secret, or its previous value while the
/// grace period lasts. Digests are compared in constant time.
pub fn matched(facts: &SecretFacts, presented: &Digest, now: Timestamp) -> Option<Matched> {
    let equal = |d: &Option<Digest>| d.is_some_and(|d| bool::from(d.ct_eq(presented)));
    if equal(&facts.current) {
        Some(Matched::Current)
    } else if equal(&facts.previous) && facts.previous_valid_at(now) {
        Some(Matched::Previous)
    } else {
        None
    }
}

/// An element-instance action, and the privilege it takes on another user's instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceAction {
    View,
    Use,
    Edit,
    Delete,
}

impl InstanceAction {
    pub fn privilege(self) -> Privilege {
        match self {
            InstanceAction::View => Privilege::ViewAccountElementInstances,
            InstanceAction::Use => Privilege::UseAccountElementInstances,
            InstanceAction::Edit => Privilege::EditAccountElementInstances,
            InstanceAction::Delete => Privilege::DeleteAccountElementInstances,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_lowercase())).ok()
    }
}

/// What a request does, as the gateway describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Privileges the caller must hold (in the instance owner's account, when there is one).
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    /// An element that must be visible to the caller's organization.
    #[serde(default)]
    pub element: Option<String>,
    /// An element instance the request acts on.
    #[serde(default)]
    pub instance: Option<Instance>,
}

impl Request {
    /// Why a gateway's description of a request cannot be judged, if it cannot: an element
    /// key or an instance owner that no object could have. Such a check is refused (400),
    /// never skipped and never compared loosely (`Slack` is not `slack`).
    pub fn malformed(&self) -> Option<String> {
        if let Some(element) = self.element.as_deref().filter(|e| !names::is_dns_label(e)) {
            return Some(format!(
                "element {element:?} is not an element key (lower-case letters, digits and -)"
            ));
        }
        if let Some(instance) = self.instance.as_ref().filter(|i| !names::is_dns_subdomain(&i.owner)) {
            return Some(format!("instance owner {:?} is not a user name", instance.owner));
        }
        None
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The CEUser that owns the instance.
    pub owner: String,
    pub action: InstanceAction,
}

/// Where the owner of an instance stands.
pub enum Owner<'a> {
    Missing,
    /// The owner's account and that account's organization (None when unresolved).
    Found {
        account: &'a str,
        organization: Option<&'a str>,
    },
}

/// How a decision ends: the HTTP status a gateway gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    /// 401: credentials missing, malformed, unknown, or not belonging together.
    Unauthenticated,
    /// 403: authenticated, not allowed.
    Forbidden,
    /// 400: the question itself could not be read (a gateway route sets a header wrong).
    Invalid,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::Invalid => "invalid",
        }
    }
}

/// A decision, with a reason for a person and a short code for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// A stable label: `allowed`, or why not (`unknown_user_secret`, `missing_privilege`, …).
    pub code: &'static str,
    pub reason: String,
}

impl Decision {
    pub fn allowed(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Allowed,
            code: "allowed",
            reason: reason.into(),
        }
    }

    pub fn unauthenticated(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Unauthenticated,
            code,
            reason: reason.into(),
        }
    }

    pub fn forbidden(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Forbidden,
            code,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Invalid,
            code: "invalid_request",
            reason: reason.into(),
        }
    }

    /// The reason a caller is told. Where the precise one would say who exists (a user
    /// secret known but not its organization's, a user of another organization) the caller
    /// learns only that it failed; the precise reason stays in the metrics (`code`) and the
    /// log. What a caller sent itself (missing or malformed credentials, a missing
    /// privilege, an element not visible) is told as it is.
    pub fn told_to_caller(&self) -> &str {
        match self.code {
            "unknown_user_secret" | "unknown_organization_secret" | "secrets_mismatch" | "user_not_ready" => {
                "the credentials are not valid: both secrets must be ones in effect, of one user and its organization"
            }
            "unknown_instance_owner" | "other_organization" => {
                "the instance owner is not a user of the caller's organization"
            }
            _ => &self.reason,
        }
    }
}

/// The organization secret's holder must be the user's own organization: a valid pair of
/// secrets from two organizations authenticates nobody.
pub fn belong_together(
    identity: &Identity,
    user_namespace: &str,
    org_namespace: &str,
    org_name: &str,
) -> Option<Decision> {
    (user_namespace != org_namespace || identity.organization != org_name).then(|| {
        Decision::unauthenticated(
            "secrets_mismatch",
            "the user secret and the organization secret do not belong to the same organization",
        )
    })
}

/// Everything an authorization decision reads about an authenticated caller.
pub struct Inputs<'a> {
    /// The caller's CEUser name.
    pub user: &'a str,
    pub identity: &'a Identity,
    pub request: &'a Request,
    /// Whether the requested element is visible to the caller's organization (None when the
    /// request names none).
    pub element_visible: Option<bool>,
    /// The requested instance's owner (None when the request names none).
    pub owner: Option<Owner<'a>>,
}

/// Privileges, element visibility and instance ownership, for an authenticated caller.
/// org-admin and org privileges hold across the organization; admin and default-user ones
/// only in the caller's own account (`Identity::holds_in`). Never across organizations.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let identity = inputs.identity;
    // The account the privileges must cover: the instance owner's, else anywhere.
    let mut scope_account: Option<&str> = None;
    if let (Some(instance), Some(owner)) = (&inputs.request.instance, &inputs.owner) {
        match owner {
            Owner::Missing => {
                return Decision::forbidden(
                    "unknown_instance_owner",
                    format!("no user {} in the caller's organization", instance.owner),
                );
            }
            Owner::Found { organization, .. } if *organization != Some(identity.organization.as_str()) => {
                return Decision::forbidden(
                    "other_organization",
                    format!(
                        "the instance of {} belongs to another organization than {}",
                        instance.owner, identity.organization
                    ),
                );
            }
            Owner::Found { account, .. } => {
                if instance.owner != inputs.user {
                    let needed = instance.action.privilege();
                    if !identity.holds_in(needed, account) {
                        return Decision::forbidden(
                            "missing_privilege",
                            format!(
                                "{} {}'s instance (account {account}) takes {} in that account; the caller's roles ({}) do not give it there",
                                action_word(instance.action),
                                instance.owner,
                                needed.key(),
                                role_list(identity),
                            ),
                        );
                    }
                }
                scope_account = Some(account);
            }
        }
    }
    for privilege in &inputs.request.privileges {
        let held = match scope_account {
            Some(account) => identity.holds_in(*privilege, account),
            None => identity.privileges().contains(privilege),
        };
        if !held {
            let place = scope_account.map(|a| format!(" in account {a}")).unwrap_or_default();
            return Decision::forbidden(
                "missing_privilege",
                format!(
                    "the caller's roles ({}) do not give {}{place}",
                    role_list(identity),
                    privilege.key()
                ),
            );
        }
    }
    if let (Some(element), Some(false)) = (&inputs.request.element, inputs.element_visible) {
        return Decision::forbidden(
            "element_not_visible",
            format!(
                "element {element} is not visible to organization {} (not on its safelist, or denied by its super-organization)",
                identity.organization
            ),
        );
    }
    Decision::allowed("allowed")
}

fn action_word(action: InstanceAction) -> &'static str {
    match action {
        InstanceAction::View => "viewing",
        InstanceAction::Use => "using",
        InstanceAction::Edit => "editing",
        InstanceAction::Delete => "deleting",
    }
}

/// The caller's roles, comma-separated, as the API spells them.
pub fn role_list(identity: &Identity) -> String {
    identity.roles.iter().map(|r| r.key()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{PrivilegeScopes, Role},
        model::secrets::digest,
    };
    use Privilege::*;

    #[test]
    fn a_caller_is_not_told_who_exists() {
        let told = |d: Decision| d.told_to_caller().to_owned();
        let unknown_user = told(Decision::unauthenticated("unknown_user_secret", "no jane"));
        let other_org = told(Decision::unauthenticated("unknown_organization_secret", "not acme's"));
        let mismatch = told(Decision::unauthenticated("secrets_mismatch", "jane is of globex"));
        assert!(
            unknown_user == other_org && other_org == mismatch,
            "{unknown_user} / {other_org} / {mismatch}"
        );
        assert_eq!(
            told(Decision::forbidden("unknown_instance_owner", "no user bob in acme")),
            told(Decision::forbidden(
                "other_organization",
                "bob's instance belongs to globex"
            ))
        );
        for told in [
            unknown_user,
            told(Decision::forbidden("other_organization", "bob of globex")),
        ] {
            assert!(
                !told.contains("jane") && !told.contains("bob") && !told.contains("globex"),
                "{told}"
            );
        }
        // What the caller sent itself is told as it is.
        assert_eq!(
            told(Decision::forbidden("missing_privilege", "takes createElements")),
            "takes createElements"
        );
        assert_eq!(
            told(Decision::unauthenticated(
                "missing_credentials",
                "no Authorization header"
            )),
            "no Authorization header"
        );
    }

    #[test]
    fn a_check_no_object_could_match_is_malformed_not_skipped() {
        let element = |e: &str| Request {
            element: Some(e.into()),
            ..Request::default()
        };
        let owner = |o: &str| Request {
            instance: Some(Instance {
                owner: o.into(),
                action: InstanceAction::View,
            }),
            ..Request::default()
        };
        for bad in [
            element("Slack"),
            element(""),
            element("slack "),
            element("a,b"),
            element("-x"),
            owner("Jane"),
            owner("jane,bob"),
            owner(""),
        ] {
            assert!(bad.malformed().is_some(), "{bad:?} must be refused");
        }
        for good in [
            Request::default(),
            element("slack"),
            element("x-1"),
            owner("jane"),
            owner("jane.bots"),
        ] {
            assert_eq!(good.malformed(), None, "{good:?}");
        }
        assert!(!names::is_dns_label(&"a".repeat(64)));
        assert!(names::is_dns_label(&"a".repeat(63)));
    }

    fn identity(roles: &[Role], organization: &[Privilege], account: &[Privilege]) -> Identity {
        Identity {
            organization: "acme".into(),
            account: "sales".into(),
            system_role: Role::DefaultUser,
            roles: roles.to_vec(),
            scopes: PrivilegeScopes {
                organization: organization.to_vec(),
                account: account.to_vec(),
            },
        }
    }

    fn on_instance(owner: &str, action: InstanceAction) -> Request {
        Request {
            instance: Some(Instance {
                owner: owner.into(),
                action,
            }),
            ..Default::default()
        }
    }

    fn decide_for(identity: &Identity, request: &Request, owner: Option<Owner<'_>>) -> Decision {
        decide(&Inputs {
            user: "jane",
            identity,
            request,
            element_visible: None,
            owner,
        })
    }

    #[test]
    fn credentials_parse_in_either_order_and_never_echo() {
        let c = parse_credentials("User  u-secret ,Organization o-secret").unwrap();
        assert_eq!((c.user.expose(), c.organization.expose()), ("u-secret", "o-secret"));
        let c = parse_credentials("organization o-secret, user u-secret").unwrap();
        assert_eq!((c.user.expose(), c.organization.expose()), ("u-secret", "o-secret"));
        for bad in [
            "",
            "Bearer x",
            "User u-secret",
            "Organization o",
            "User a, User b",
            "User a b, Organization c",
        ] {
            let error = parse_credentials(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(!error.contains("u-secret") && !error.contains(" a,"), "{error}");
        }
    }

    #[test]
    fn the_previous_secret_holds_only_during_the_grace_period() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let facts = SecretFacts {
            current: Some(digest(b"new")),
            previous: Some(digest(b"old")),
            previous_expires: Some("2026-01-01T00:01:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(matched(&facts, &digest(b"new"), now), Some(Matched::Current));
        assert_eq!(matched(&facts, &digest(b"old"), now), Some(Matched::Previous));
        let later: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(matched(&facts, &digest(b"old"), later), None);
        assert_eq!(matched(&facts, &digest(b"other"), now), None);
    }

    /// The scope table: for each way of holding `viewAccountElementInstances`, whose
    /// instances in which account the caller may view.
    #[test]
    fn instance_privileges_follow_their_scope() {
        let org_wide = identity(&[Role::OrgAdmin, Role::Org], &[ViewAccountElementInstances], &[]);
        let account_only = identity(&[Role::Admin, Role::DefaultUser], &[], &[ViewAccountElementInstances]);
        let none = identity(&[Role::DefaultUser], &[], &[]);
        let same = || Owner::Found {
            account: "sales",
            organization: Some("acme"),
        };
        let other_account = || Owner::Found {
            account: "hq",
            organization: Some("acme"),
        };
        let other_org = || Owner::Found {
            account: "sales",
            organization: Some("globex"),
        };
        let view = on_instance("kim", InstanceAction::View);
        let table: [(&Identity, Owner<'_>, Outcome); 8] = [
            (&org_wide, same(), Outcome::Allowed),
            (&org_wide, other_account(), Outcome::Allowed),
            (&org_wide, other_org(), Outcome::Forbidden),
            (&account_only, same(), Outcome::Allowed),
            (&account_only, other_account(), Outcome::Forbidden),
            (&account_only, other_org(), Outcome::Forbidden),
            (&none, same(), Outcome::Forbidden),
            (&none, Owner::Missing, Outcome::Forbidden),
        ];
        for (i, (who, owner, expected)) in table.into_iter().enumerate() {
            let decision = decide_for(who, &view, Some(owner));
            assert_eq!(decision.outcome, expected, "row {i}: {decision:?}");
        }
        // Edit takes the edit privilege, not the view one.
        let edit = on_instance("kim", InstanceAction::Edit);
        let denied = decide_for(&account_only, &edit, Some(same()));
        assert_eq!(denied.code, "missing_privilege");
        assert!(
            denied.reason.contains("editAccountElementInstances"),
            "{}",
            denied.reason
        );
        // The refusal says what was attempted, on whose instance.
        for (action, word) in [
            (InstanceAction::View, "viewing kim's instance"),
            (InstanceAction::Use, "using kim's instance"),
            (InstanceAction::Edit, "editing kim's instance"),
            (InstanceAction::Delete, "deleting kim's instance"),
        ] {
            let denied = decide_for(&none, &on_instance("kim", action), Some(same()));
            assert!(denied.reason.starts_with(word), "{}", denied.reason);
        }
    }

    #[test]
    fn own_instances_need_no_privilege_but_stay_in_the_organization() {
        let none = identity(&[Role::DefaultUser], &[], &[]);
        let own = on_instance("jane", InstanceAction::Delete);
        let mine = Owner::Found {
            account: "sales",
            organization: Some("acme"),
        };
        assert_eq!(decide_for(&none, &own, Some(mine)).outcome, Outcome::Allowed);
        let elsewhere = Owner::Found {
            account: "sales",
            organization: Some("globex"),
        };
        assert_eq!(decide_for(&none, &own, Some(elsewhere)).code, "other_organization");
    }

    #[test]
    fn privileges_and_elements() {
        let admin = identity(&[Role::Admin], &[], &[CreateElements]);
        let wants = |privileges: Vec<Privilege>| Request {
            privileges,
            ..Default::default()
        };
        assert_eq!(
            decide_for(&admin, &wants(vec![CreateElements]), None).outcome,
            Outcome::Allowed
        );
        let denied = decide_for(&admin, &wants(vec![CreateElements, ManageSecurity]), None);
        assert_eq!(denied.outcome, Outcome::Forbidden);
        assert!(
            denied.reason.contains("manageSecurity") && denied.reason.contains("admin"),
            "{}",
            denied.reason
        );
        let element = Request {
            element: Some("sfdc".into()),
            ..Default::default()
        };
        let with = |visible| {
            decide(&Inputs {
                user: "jane",
                identity: &admin,
                request: &element,
                element_visible: Some(visible),
                owner: None,
            })
        };
        assert_eq!(with(true).outcome, Outcome::Allowed);
        assert_eq!(with(false).code, "element_not_visible");
    }

    #[test]
    fn secrets_of_two_organizations_do_not_belong_together() {
        let id = identity(&[Role::Org], &[], &[]);
        assert_eq!(belong_together(&id, "t", "t", "acme"), None);
        assert!(belong_together(&id, "t", "t", "globex").is_some());
        assert!(belong_together(&id, "t", "u", "acme").is_some());
    }

    #[test]
    fn keys_parse_as_the_api_spells_them() {
        assert_eq!(Privilege::parse("createElements"), Some(CreateElements));
        assert_eq!(Privilege::parse("CreateElements"), None);
        assert_eq!(InstanceAction::parse("Delete"), Some(InstanceAction::Delete));
        assert_eq!(InstanceAction::parse("own"), None);
        assert_eq!(ManageSecurity.key(), "manageSecurity");
    }

    /// The outcomes' metric labels: bounded, distinct and as the dashboards and alerts read them.
    #[test]
    fn outcomes_are_labelled_as_the_dashboards_read_them() {
        let labels = [
            Outcome::Allowed,
            Outcome::Unauthenticated,
            Outcome::Forbidden,
            Outcome::Invalid,
        ]
        .map(Outcome::label);
        assert_eq!(labels, ["allowed", "unauthenticated", "forbidden", "invalid"]);
    }
}
