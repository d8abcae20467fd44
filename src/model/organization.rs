//! The Organization decision: its default account, owner, organization secret, privilege
//! matrix, counts, AdminPresent, super-organization link and denylist conflicts, and a
//! deletion that waits for (or cascades to) its children.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};

use super::{
    Action, Child, Decision,
    conditions::{self, ConditionType, Desired, Event, Reason},
    deletion, has_finalizer,
    issuance::{HolderKind, IssuanceKey},
    name_list,
    names::{self, LABEL_ORGANIZATION, LABEL_SECRET_OF},
    privileges::Matrix,
    safelist,
    secrets::{self, Owner, SecretFacts, SecretInputs, SecretValue},
    super_organization::{self, Link, SuperOrganization},
    tenancy::{self, DefaultCandidates},
};
use crate::api::{
    Account, CEUser, ElementSafelist, ElementVisibility, Organization, OrganizationStatus, RoleBinding, RolePrivileges,
    SecretRef,
};

/// How long a new organization waits for a declared default account before the operator
/// creates one: `kubectl apply -f` of an organization with its accounts lands within it,
/// and a client-side apply would otherwise race the operator's create (AlreadyExists).
pub const DEFAULT_ACCOUNT_GRACE: Duration = Duration::from_secs(3);

/// An organization that names a super-organization, with the safelists naming it.
pub struct Member {
    pub org: Arc<Organization>,
    pub safelists: Vec<Arc<ElementSafelist>>,
}

/// Everything the Organization decision depends on.
pub struct Inputs<'a> {
    pub org: &'a Organization,
    pub now: Timestamp,
    pub namespace_terminating: bool,
    /// The accounts naming this organization.
    pub accounts: &'a [Arc<Account>],
    /// Users per account name (of the accounts above).
    pub account_users: &'a HashMap<String, usize>,
    /// The account that has the default account's name (of any organization), if any.
    pub default_name_holder: Option<&'a Account>,
    /// The owner's user and binding, by their generated names, if they exist.
    pub owner_user: Option<&'a CEUser>,
    pub owner_binding: Option<&'a RoleBinding>,
    /// The namespace's org-admin bindings, each with its user if that exists.
    pub org_admin_bindings: &'a [(Arc<RoleBinding>, Option<Arc<CEUser>>)],
    /// The safelists naming this organization.
    pub safelists: &'a [Arc<ElementSafelist>],
    pub super_organization: SuperOrganization<'a>,
    /// For a super-organization: the organizations naming it.
    pub members: &'a [Member],
    /// The organization's Secret, as known.
    pub secret: Option<&'a SecretFacts>,
    /// A fresh value, drawn by the caller, used if a secret is issued.
    pub fresh_secret: &'a SecretValue,
    /// The key the operator seals the values it issues with.
    pub issuance_key: &'a IssuanceKey,
    /// While being deleted: the users of its accounts, and their bindings.
    pub users: &'a [Arc<CEUser>],
    pub bindings: &'a [Arc<RoleBinding>],
}

/// Where the default account stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultAccount {
    /// It exists (declared, or created by the operator).
    Exists(String),
    /// None is declared; the operator creates one with this name.
    Create(String),
    /// None yet: a young organization waits this long for a declared one.
    Pending(Duration),
    /// None, and the name is taken by an account that is not this organization's default.
    NameTaken(String),
}

impl DefaultAccount {
    /// The default account's name, once it exists or is being created.
    pub fn name(&self) -> Option<&str> {
        match self {
            DefaultAccount::Exists(name) | DefaultAccount::Create(name) => Some(name),
            DefaultAccount::Pending(_) | DefaultAccount::NameTaken(_) => None,
        }
    }

    /// Ready's view of it: None when fine.
    fn problem(&self, org: &str) -> Option<Desired> {
        match self {
            DefaultAccount::Exists(_) | DefaultAccount::Create(_) => None,
            DefaultAccount::Pending(_) => Some(Desired::new(
                ConditionType::Ready,
                Reason::DefaultAccountPending,
                format!(
                    "no account declares default: true; the operator creates {} shortly",
                    names::default_account(org, None)
                ),
            )),
            DefaultAccount::NameTaken(name) => Some(Desired::new(
                ConditionType::Ready,
                Reason::DefaultAccountNameTaken,
                format!(
                    "no account declares default: true, and the default account name {name} is taken by an account that is not this organization's default; set spec.defaultAccountName to a free name, or declare a default account"
                ),
            )),
        }
    }
}

/// The default account: the oldest declared one; or, after a grace period, one the operator
/// creates, unless its name is taken.
pub fn default_account(inputs: &Inputs<'_>) -> DefaultAccount {
    let org = inputs.org;
    let candidates = DefaultCandidates {
        accounts: inputs.accounts.to_vec(),
        with_users: inputs
            .account_users
            .iter()
            .filter(|(_, users)| **users > 0)
            .map(|(name, _)| name.clone())
            .collect(),
    };
    if let Some(account) = candidates.default_account(org.meta().uid.as_deref()) {
        return DefaultAccount::Exists(account.name_any());
    }
    let created = org.meta().creation_timestamp.as_ref().map_or(inputs.now, |t| t.0);
    let left = SignedDuration::try_from(DEFAULT_ACCOUNT_GRACE).unwrap_or_default() - inputs.now.duration_since(created);
    if left > SignedDuration::ZERO {
        return DefaultAccount::Pending(left.unsigned_abs());
    }
    let name = names::default_account(&org.name_any(), org.spec.default_account_name.as_deref());
    match inputs.default_name_holder {
        Some(_) => DefaultAccount::NameTaken(name),
        None => DefaultAccount::Create(name),
    }
}

/// What the owner (`spec.owner`) needs: the user and its org-admin binding, or a report
/// that the user of the owner's name is someone else.
fn owner(inputs: &Inputs<'_>, default: &str, actions: &mut Vec<Action>, events: &mut Vec<Event>) -> Option<Desired> {
    let org = inputs.org;
    let declared = org.spec.owner.as_ref()?;
    let user_name = names::owner_user(&org.name_any());
    match inputs.owner_user {
        None => {
            actions.push(Action::CreateOwner {
                name: user_name.clone(),
                account: default.to_owned(),
                email: declared.email.clone(),
                display_name: declared.display_name.clone(),
            });
            events.push(Event::normal(
                Reason::OwnerCreated,
                format!(
                    "created the owner {user_name} ({}) in the default account {default}",
                    declared.email
                ),
            ));
        }
        Some(user) => {
            // A user the operator did not create is the owner only if it is the one declared:
            // never make someone else org-admin because of its name.
            let generated = tenancy::is_controlled_by(user, org.meta().uid.as_deref());
            let declared_one =
                user.spec.email.eq_ignore_ascii_case(&declared.email) && user.spec.account_ref.name == default;
            if !generated && !declared_one {
                return Some(Desired::new(
                    ConditionType::Ready,
                    Reason::OwnerConflict,
                    format!(
                        "CEUser {user_name} exists ({} in account {}) and is not the owner declared in spec.owner ({} in the default account {default}); it is not made org-admin. Delete or rename that user, or change spec.owner",
                        user.spec.email, user.spec.account_ref.name, declared.email
                    ),
                ));
            }
        }
    }
    if inputs.owner_binding.is_none() {
        actions.push(Action::CreateOwnerBinding {
            name: names::owner_binding(&org.name_any()),
            user: user_name,
        });
    }
    None
}

/// RolesApplied: whether the organization's customisations take effect in full.
pub fn roles_applied(matrix: &Matrix) -> Desired {
    if matrix.refused_revocations.is_empty() {
        Desired::new(
            ConditionType::RolesApplied,
            Reason::RolesApplied,
            "the role customisations are applied",
        )
    } else {
        Desired::new(
            ConditionType::RolesApplied,
            Reason::ProtectedPrivilegeRevoked,
            format!(
                "org-admin keeps {} so that the organization cannot lock itself out; remove them from the org-admin revoke list",
                name_list(matrix.refused_revocations.iter().map(|p| p.key()))
            ),
        )
    }
}

/// AdminPresent, from the users who hold org-admin.
pub fn admin_present(admins: &[String]) -> Desired {
    if admins.is_empty() {
        Desired::new(
            ConditionType::AdminPresent,
            Reason::NoOrgAdmin,
            "no user holds org-admin: bind org-admin to a user of the default account (or set spec.owner)",
        )
    } else {
        Desired::new(
            ConditionType::AdminPresent,
            Reason::OrgAdminPresent,
            format!("org-admin held by {}", name_list(admins)),
        )
    }
}

/// The members of super-organization `org` that safelist elements of
/// `denylist`: "member-ns/member safelists a, b", sorted. Only accepted links count.
pub fn denylist_conflicts(org: &Organization, denylist: &[String], members: &[Member]) -> Vec<String> {
    let mut conflicts: Vec<String> = members
        .iter()
        .filter_map(|member| {
            let member_ns = member.org.namespace().unwrap_or_default();
            let accepted = matches!(
                super_organization::judge_link(&member.org, &member_ns, SuperOrganization::Found(org)),
                Link::Accepted { .. }
            );
            let list = safelist::effective(&member.safelists).filter(|_| accepted)?;
            let denying = Link::Accepted {
                denylist: denylist.to_vec(),
            };
            let (_, denied) = safelist::visibility(Some(&list.spec.elements), &denying);
            (!denied.is_empty())
                .then(|| format!("{member_ns}/{} safelists {}", member.org.name_any(), denied.join(", ")))
        })
        .collect();
    conflicts.sort();
    conflicts
}

/// DenylistConflict of a super-organization, from its conflicts.
pub fn denylist_condition(conflicts: &[String]) -> Desired {
    if conflicts.is_empty() {
        Desired::new(
            ConditionType::DenylistConflict,
            Reason::NoConflict,
            "no member organization safelists a denied element",
        )
    } else {
        Desired::new(
            ConditionType::DenylistConflict,
            Reason::SafelistedDeniedElements,
            format!(
                "{}: deny wins, those elements stay hidden. Remove them from the members' safelists or from spec.whitelabel.elementDenylist",
                conflicts.join("; ")
            ),
        )
    }
}

/// The children that hold an organization's deletion: what someone declared (what the
/// operator generated goes with the organization, through the garbage collector).
pub fn blocking_children(
    org: &Organization,
    accounts: &[Arc<Account>],
    users: &[Arc<CEUser>],
    safelists: &[Arc<ElementSafelist>],
) -> Vec<String> {
    let uid = org.meta().uid.as_deref();
    accounts
        .iter()
        .filter(|a| !tenancy::is_controlled_by(a.as_ref(), uid))
        .map(|a| format!("account {}", a.name_any()))
        .chain(
            users
                .iter()
                .filter(|u| !tenancy::is_controlled_by(u.as_ref(), uid))
                .map(|u| format!("user {}", u.name_any())),
        )
        .chain(safelists.iter().map(|s| format!("safelist {}", s.name_any())))
        .collect()
}

/// DeletionBlocked of an organization with these blocking children: None when there are none.
pub fn deletion_blocked(org: &Organization, blocking: &[String]) -> Option<Desired> {
    (!blocking.is_empty()).then(|| {
        deletion::blocked(
            "the organization",
            org.spec.allow_cascading_deletion,
            &name_list(blocking),
        )
    })
}

pub fn decide(inputs: &Inputs<'_>) -> Decision<OrganizationStatus> {
    let org = inputs.org;
    let previous = org.status.clone().unwrap_or_default();
    if inputs.namespace_terminating {
        return Decision::in_terminating_namespace(previous, has_finalizer(org));
    }
    if org.meta().deletion_timestamp.is_some() {
        return finalize(inputs, previous);
    }
    let ns = org.namespace().unwrap_or_default();
    let name = org.name_any();
    let mut actions = Vec::new();
    let mut events = Vec::new();
    if !has_finalizer(org) {
        actions.push(Action::AddFinalizer);
    }

    let default = default_account(inputs);
    let mut requeue_after = match default {
        DefaultAccount::Pending(left) => Some(left),
        _ => None,
    };
    match &default {
        DefaultAccount::Create(account) => {
            actions.push(Action::CreateDefaultAccount { name: account.clone() });
            events.push(Event::normal(
                Reason::DefaultAccountCreated,
                format!("created the default account {account}"),
            ));
        }
        DefaultAccount::Exists(account) => {
            // A default account the operator created goes once a declared one supersedes it,
            // provided nobody has put users in it (then it stays, reported as a duplicate).
            for superseded in inputs.accounts.iter().filter(|a| {
                a.spec.default
                    && a.name_any() != *account
                    && tenancy::is_controlled_by(a.as_ref(), org.meta().uid.as_deref())
                    && inputs.account_users.get(&a.name_any()).copied().unwrap_or(0) == 0
            }) {
                actions.push(Action::Delete(Child::Account(superseded.name_any())));
                events.push(Event::normal(
                    Reason::DefaultAccountSuperseded,
                    format!(
                        "the declared default account {account} supersedes {}, which the operator had created; it is deleted",
                        superseded.name_any()
                    ),
                ));
            }
        }
        DefaultAccount::Pending(_) | DefaultAccount::NameTaken(_) => {}
    }
    let owner_problem = default
        .name()
        .and_then(|account| owner(inputs, account, &mut actions, &mut events));

    let secret_name = names::organization_secret(&name);
    let labels = organization_secret_labels(&name);
    let secret = secrets::plan(&SecretInputs {
        name: &secret_name,
        owner: Owner::of(HolderKind::Organization, org.meta()),
        key: inputs.issuance_key,
        observed: inputs.secret,
        reported_fingerprint: previous.secret_fingerprint.as_deref(),
        fresh: inputs.fresh_secret,
        labels: &labels,
        grace: secrets::grace_period(&org.spec.security.rotation_grace_period),
        now: inputs.now,
    });
    requeue_after = [requeue_after, secret.requeue_after].into_iter().flatten().min();
    let link = super_organization::judge_link(org, &ns, inputs.super_organization);

    // Ready reports the first problem: the default account, the secret, the link, the owner.
    let ready = default
        .problem(&name)
        .or_else(|| {
            secret
                .condition
                .is_problem()
                .then(|| secret.condition.mirrored_as(ConditionType::Ready))
        })
        .or_else(|| match &link {
            Link::Refused { reason, message } => Some(Desired::new(ConditionType::Ready, *reason, message.clone())),
            Link::None | Link::Accepted { .. } => None,
        })
        .or(owner_problem)
        .unwrap_or_else(|| {
            Desired::new(
                ConditionType::Ready,
                Reason::Ready,
                "the organization secret is issued and the default account exists",
            )
        });
    let mut desired = vec![ready, secret.condition.clone()];
    if let Some(whitelabel) = &org.spec.whitelabel {
        desired.push(denylist_condition(&denylist_conflicts(
            org,
            &whitelabel.element_denylist,
            inputs.members,
        )));
    }
    let matrix = Matrix::new(&org.spec.roles);
    desired.push(roles_applied(&matrix));
    // Judged once the default account exists: before, no one can hold org-admin yet, and a
    // brand-new organization would warn while its tree is still landing. An owner binding
    // created right now counts.
    if let DefaultAccount::Exists(account) = &default {
        let mut admins = tenancy::org_admins(
            inputs
                .org_admin_bindings
                .iter()
                .map(|(b, u)| (b.as_ref(), u.as_deref())),
            inputs.accounts,
            Some(account),
        );
        if actions.iter().any(|a| matches!(a, Action::CreateOwnerBinding { .. })) {
            admins.push(names::owner_user(&name));
            admins.sort();
            admins.dedup();
        }
        desired.push(admin_present(&admins));
    }

    let mut denied = link.denylist().to_vec();
    denied.sort();
    let users: usize = inputs
        .accounts
        .iter()
        .map(|a| inputs.account_users.get(&a.name_any()).copied().unwrap_or(0))
        .sum();
    let status = OrganizationStatus {
        conditions: conditions::merge(&previous.conditions, &desired, org.meta().generation, inputs.now),
        observed_generation: org.meta().generation,
        secret_ref: (!secret.condition.is_problem()).then(|| SecretRef {
            name: secret_name.clone(),
        }),
        secret_fingerprint: secret.fingerprint,
        last_rotation_time: secret.last_rotation_time,
        last_rotation_request: secret.last_rotation_request,
        default_account: default.name().map(str::to_owned),
        accounts: Some(i32::try_from(inputs.accounts.len()).unwrap_or(i32::MAX)),
        users: Some(i32::try_from(users).unwrap_or(i32::MAX)),
        privileges: matrix
            .entries()
            .map(|(role, privileges)| RolePrivileges {
                role,
                privileges: privileges.iter().copied().collect(),
            })
            .collect(),
        element_visibility: Some(ElementVisibility {
            safelist: safelist::effective(inputs.safelists).map(|s| s.name_any()),
            denied_elements: denied,
            withheld: matches!(link, Link::Refused { .. }),
        }),
    };
    actions.push(Action::Secret {
        name: secret_name,
        labels,
        plan: secret.plan,
    });
    let mut all_events = conditions::warnings(&previous.conditions, &desired);
    all_events.extend(events);
    all_events.extend(secret.events);
    Decision {
        status,
        actions,
        events: all_events,
        requeue_after,
    }
}

/// Deletion: wait for the children to go (or delete them when cascading), then let go.
fn finalize(inputs: &Inputs<'_>, previous: OrganizationStatus) -> Decision<OrganizationStatus> {
    let org = inputs.org;
    let blocking = blocking_children(org, inputs.accounts, inputs.users, inputs.safelists);
    let children = inputs
        .bindings
        .iter()
        .map(|b| Child::RoleBinding(b.name_any()))
        .chain(inputs.users.iter().map(|u| Child::User(u.name_any())))
        .chain(inputs.accounts.iter().map(|a| Child::Account(a.name_any())))
        .chain(inputs.safelists.iter().map(|s| Child::Safelist(s.name_any())));
    deletion::finalize(
        org,
        previous,
        deletion_blocked(org, &blocking),
        org.spec.allow_cascading_deletion,
        children,
        inputs.now,
    )
}

/// The labels of an organization's Secret (besides `managed-by`).
pub fn organization_secret_labels(organization: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ORGANIZATION.into(), organization.to_owned()),
        (LABEL_SECRET_OF.into(), "organization".into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::Role,
        model::{SecretPlan, fixtures::*, issuance::Holder},
    };

    /// A world around organization acme (created at second 1; decisions at second 100).
    struct World {
        org: Organization,
        accounts: Vec<Arc<Account>>,
        account_users: HashMap<String, usize>,
        holder: Option<Account>,
        owner_user: Option<CEUser>,
        owner_binding: Option<RoleBinding>,
        admin_bindings: Vec<(Arc<RoleBinding>, Option<Arc<CEUser>>)>,
        safelists: Vec<Arc<ElementSafelist>>,
        parent: Option<Organization>,
        members: Vec<Member>,
        secret: Option<SecretFacts>,
        users: Vec<Arc<CEUser>>,
        bindings: Vec<Arc<RoleBinding>>,
        now: Timestamp,
    }

    fn world(org: Organization) -> World {
        World {
            org,
            accounts: Vec::new(),
            account_users: HashMap::new(),
            holder: None,
            owner_user: None,
            owner_binding: None,
            admin_bindings: Vec::new(),
            safelists: Vec::new(),
            parent: None,
            members: Vec::new(),
            secret: None,
            users: Vec::new(),
            bindings: Vec::new(),
            now: at(100),
        }
    }

    fn owned_secret(org: &Organization) -> SecretFacts {
        let name = org.name_any();
        let ns = org.namespace().unwrap_or_default();
        let holder = Holder {
            namespace: &ns,
            kind: HolderKind::Organization,
            name: &name,
        };
        SecretFacts {
            labels: secrets::generated_labels_digest(&organization_secret_labels(&name)),
            ..SecretFacts::issued_for(&holder, org.meta().uid.as_deref().unwrap_or_default(), b"org-secret")
        }
    }

    fn decide_in(w: &World) -> Decision<OrganizationStatus> {
        decide(&Inputs {
            org: &w.org,
            now: w.now,
            namespace_terminating: false,
            accounts: &w.accounts,
            account_users: &w.account_users,
            default_name_holder: w.holder.as_ref(),
            owner_user: w.owner_user.as_ref(),
            owner_binding: w.owner_binding.as_ref(),
            org_admin_bindings: &w.admin_bindings,
            safelists: &w.safelists,
            super_organization: match &w.parent {
                Some(parent) => SuperOrganization::Found(parent),
                None => SuperOrganization::Missing,
            },
            members: &w.members,
            secret: w.secret.as_ref(),
            fresh_secret: &SecretValue::from_static("fresh"),
            issuance_key: &IssuanceKey::for_tests(),
            users: &w.users,
            bindings: &w.bindings,
        })
    }

    fn condition(
        status: &OrganizationStatus,
        type_: ConditionType,
    ) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        status.conditions.iter().find(|c| c.type_ == type_.as_str())
    }

    fn reason(status: &OrganizationStatus, type_: ConditionType) -> &str {
        condition(status, type_).map_or("<none>", |c| c.reason.as_str())
    }

    #[test]
    fn the_default_account_is_declared_awaited_created_or_reported_taken() {
        // Declared: it is the default, nothing is created.
        let mut w = world(org("acme"));
        w.accounts = arcs(&[account("hq", "acme", true)]);
        let declared = decide_in(&w);
        assert_eq!(declared.status.default_account.as_deref(), Some("hq"));
        assert!(
            !declared
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateDefaultAccount { .. }))
        );

        // Young and none declared: wait, and look again when the grace period ends.
        let mut young = world(org("acme"));
        young.now = at(2);
        let pending = decide_in(&young);
        assert_eq!(reason(&pending.status, ConditionType::Ready), "DefaultAccountPending");
        assert_eq!(pending.requeue_after, Some(Duration::from_secs(2)));
        assert!(
            pending.events.iter().all(|e| e.reason != Reason::DefaultAccountPending),
            "transient: no warning"
        );

        // After the grace period: create it, named after spec.defaultAccountName or the organization.
        let created = decide_in(&world(org("acme")));
        assert!(created.actions.contains(&Action::CreateDefaultAccount {
            name: "acme-default".into()
        }));
        assert_eq!(created.status.default_account.as_deref(), Some("acme-default"));
        assert!(created.events.iter().any(|e| e.reason == Reason::DefaultAccountCreated));
        let named = decide_in(&world(org_with(
            "acme",
            serde_json::json!({"displayName": "A", "defaultAccountName": "acme-hq"}),
        )));
        assert!(
            named
                .actions
                .contains(&Action::CreateDefaultAccount { name: "acme-hq".into() })
        );

        // The name is taken by an ordinary account (or another organization's).
        let mut taken = world(org("acme"));
        taken.holder = Some(account("acme-default", "other", false));
        let decision = decide_in(&taken);
        assert_eq!(
            reason(&decision.status, ConditionType::Ready),
            "DefaultAccountNameTaken"
        );
        assert!(
            !decision
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateDefaultAccount { .. }))
        );
        assert_eq!(decision.status.default_account, None);
    }

    #[test]
    fn a_generated_default_account_goes_once_a_declared_one_supersedes_it_if_empty() {
        let acme = org("acme");
        let generated = aged(owned_by(account("acme-default", "acme", true), &acme), 5);
        let declared = aged(account("hq", "acme", true), 50);
        let mut w = world(acme);
        w.accounts = arcs(&[generated, declared]);
        let decision = decide_in(&w);
        assert_eq!(
            decision.status.default_account.as_deref(),
            Some("hq"),
            "declared ranks first"
        );
        assert!(
            decision
                .actions
                .contains(&Action::Delete(Child::Account("acme-default".into())))
        );
        assert!(
            decision
                .events
                .iter()
                .any(|e| e.reason == Reason::DefaultAccountSuperseded)
        );

        w.account_users.insert("acme-default".into(), 1);
        let kept = decide_in(&w);
        assert!(
            !kept.actions.iter().any(|a| matches!(a, Action::Delete(_))),
            "users in it: it stays"
        );
    }

    #[test]
    fn the_owner_is_created_bound_and_never_someone_else() {
        let acme = org_with(
            "acme",
            serde_json::json!({"displayName": "A", "owner": {"email": "ceo@acme.example"}}),
        );
        let mut w = world(acme.clone());
        w.accounts = arcs(&[account("hq", "acme", true)]);
        let fresh = decide_in(&w);
        assert!(fresh.actions.contains(&Action::CreateOwner {
            name: "acme-owner".into(),
            account: "hq".into(),
            email: "ceo@acme.example".into(),
            display_name: None
        }));
        assert!(fresh.actions.contains(&Action::CreateOwnerBinding {
            name: "acme-owner-org-admin".into(),
            user: "acme-owner".into()
        }));
        assert_eq!(
            reason(&fresh.status, ConditionType::AdminPresent),
            "OrgAdminPresent",
            "the owner binding being created counts"
        );

        // Its binding deleted: recreated.
        w.owner_user = Some(owned_by(user("acme-owner", "hq", "ceo@acme.example"), &acme));
        let rebind = decide_in(&w);
        assert!(!rebind.actions.iter().any(|a| matches!(a, Action::CreateOwner { .. })));
        assert!(
            rebind
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateOwnerBinding { .. }))
        );

        // A user declared by hand that matches spec.owner is the owner.
        w.owner_user = Some(user("acme-owner", "hq", "CEO@acme.example"));
        assert!(
            decide_in(&w)
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateOwnerBinding { .. }))
        );

        // Someone else under the owner's name is reported and never bound (privilege escalation).
        for impostor in [
            user("acme-owner", "hq", "attacker@elsewhere.example"),
            user("acme-owner", "eu", "ceo@acme.example"),
        ] {
            w.owner_user = Some(impostor);
            let decision = decide_in(&w);
            assert_eq!(reason(&decision.status, ConditionType::Ready), "OwnerConflict");
            assert!(
                !decision
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::CreateOwnerBinding { .. }))
            );
            assert!(
                decision
                    .events
                    .iter()
                    .any(|e| e.warning && e.reason == Reason::OwnerConflict)
            );
        }
    }

    #[test]
    fn admin_present_follows_effective_org_admin_bindings() {
        let acme = org("acme");
        let mut w = world(acme);
        w.accounts = arcs(&[account("hq", "acme", true), account("eu", "acme", false)]);
        assert_eq!(reason(&decide_in(&w).status, ConditionType::AdminPresent), "NoOrgAdmin");
        let sam = Arc::new(user("sam", "hq", "sam@acme.example"));
        let jane = Arc::new(user("jane", "eu", "jane@acme.example"));
        w.admin_bindings = vec![(Arc::new(binding("jane-oa", "jane", Role::OrgAdmin, false)), Some(jane))];
        assert_eq!(
            reason(&decide_in(&w).status, ConditionType::AdminPresent),
            "NoOrgAdmin",
            "refused bindings do not count"
        );
        w.admin_bindings
            .push((Arc::new(binding("sam-oa", "sam", Role::OrgAdmin, false)), Some(sam)));
        w.admin_bindings
            .push((Arc::new(binding("ghost-oa", "ghost", Role::OrgAdmin, false)), None));
        let present = decide_in(&w);
        assert_eq!(reason(&present.status, ConditionType::AdminPresent), "OrgAdminPresent");
        assert!(
            condition(&present.status, ConditionType::AdminPresent)
                .unwrap()
                .message
                .ends_with("by sam")
        );
        // No default account yet: not judged.
        let mut none = world(org("acme"));
        none.now = at(2);
        assert!(condition(&decide_in(&none).status, ConditionType::AdminPresent).is_none());
    }

    #[test]
    fn counts_are_true_counts() {
        let mut w = world(org("acme"));
        w.now = at(2); // no account yet, still pending
        assert_eq!(decide_in(&w).status.accounts, Some(0), "no account: 0, not 1");
        w.accounts = arcs(&[account("hq", "acme", true), account("eu", "acme", false)]);
        w.account_users = HashMap::from([("hq".into(), 2), ("eu".into(), 3)]);
        let status = decide_in(&w).status;
        assert_eq!((status.accounts, status.users), (Some(2), Some(5)));
    }

    #[test]
    fn ready_reports_the_first_problem_in_order() {
        let mut w = world(org_linked("acme", "partners", "big"));
        w.accounts = arcs(&[account("hq", "acme", true)]);
        w.secret = Some(SecretFacts::default()); // someone else's Secret
        assert_eq!(reason(&decide_in(&w).status, ConditionType::Ready), "SecretConflict");
        w.secret = Some(owned_secret(&w.org));
        assert_eq!(
            reason(&decide_in(&w).status, ConditionType::Ready),
            "SuperOrganizationNotFound"
        );
        w.parent = Some(super_org("big", &["elsewhere"], &[]));
        assert_eq!(
            reason(&decide_in(&w).status, ConditionType::Ready),
            "SuperOrganizationRejected"
        );
        w.parent = Some(super_org("big", &["tenants"], &["box"]));
        let ready = decide_in(&w);
        assert_eq!(reason(&ready.status, ConditionType::Ready), "Ready");
        assert_eq!(
            ready.status.element_visibility.unwrap().denied_elements,
            strings(&["box"])
        );
        assert!(ready.actions.iter().any(|a| matches!(
            a,
            Action::Secret {
                plan: SecretPlan::Unchanged,
                ..
            }
        )));
    }

    #[test]
    fn roles_applied_refuses_a_lockout() {
        let mut w = world(org_with(
            "acme",
            serde_json::json!({"displayName": "A", "roles": [{"role": "org-admin", "revoke": ["manageSecurity", "viewActivity"]}]}),
        ));
        w.accounts = arcs(&[account("hq", "acme", true)]);
        let status = decide_in(&w).status;
        assert_eq!(
            reason(&status, ConditionType::RolesApplied),
            "ProtectedPrivilegeRevoked"
        );
        assert!(
            condition(&status, ConditionType::RolesApplied)
                .unwrap()
                .message
                .contains("manageSecurity")
        );
    }

    #[test]
    fn a_super_organization_reports_members_that_safelist_what_it_denies() {
        let big = super_org("big", &["tenants"], &["box", "dropbox"]);
        let mut w = world(big);
        w.accounts = arcs(&[account("big-default", "big", true)]);
        let member = Arc::new(org_linked("acme", "partners", "big"));
        let outsider = Arc::new(in_namespace(org_linked("initech", "partners", "big"), "other"));
        let list = |org: &str| arcs(&[safelist(org, org, &["box", "salesforce"])]);
        w.members = vec![
            Member {
                org: member,
                safelists: list("acme"),
            },
            Member {
                org: outsider,
                safelists: list("initech"),
            },
        ];
        let status = decide_in(&w).status;
        let conflict = condition(&status, ConditionType::DenylistConflict).unwrap();
        assert_eq!(
            (conflict.status.as_str(), conflict.reason.as_str()),
            ("True", "SafelistedDeniedElements")
        );
        assert!(
            conflict.message.starts_with("tenants/acme safelists box:"),
            "{}",
            conflict.message
        );
        assert!(!conflict.message.contains("initech"), "a rejected link does not count");
        w.members.truncate(0);
        assert_eq!(
            reason(&decide_in(&w).status, ConditionType::DenylistConflict),
            "NoConflict"
        );
    }

    #[test]
    fn deletion_waits_for_declared_children_and_cascades_when_allowed() {
        let acme = with_finalizer(deleting(org("acme")));
        let mut w = world(acme.clone());
        w.accounts = arcs(&[
            account("eu", "acme", false),
            owned_by(account("acme-default", "acme", true), &acme),
        ]);
        w.users = arcs(&[
            user("jane", "eu", "j@a.example"),
            owned_by(user("acme-owner", "acme-default", "c@a.example"), &acme),
        ]);
        w.bindings = arcs(&[binding("jane-admin", "jane", Role::Admin, false)]);
        w.safelists = arcs(&[safelist("acme", "acme", &[])]);
        let held = decide_in(&w);
        let blocked = condition(&held.status, ConditionType::DeletionBlocked).unwrap();
        assert_eq!(
            (blocked.status.as_str(), blocked.reason.as_str()),
            ("True", "ChildrenExist")
        );
        assert_eq!(
            blocked.message,
            "the organization still has account eu, user jane, safelist acme; delete them, or set spec.allowCascadingDeletion: true to delete them with it"
        );
        assert!(held.actions.is_empty());

        w.org.spec.allow_cascading_deletion = true;
        let cascade = decide_in(&w);
        assert_eq!(
            reason(&cascade.status, ConditionType::DeletionBlocked),
            "DeletingChildren"
        );
        assert_eq!(cascade.actions.len(), 6, "{:?}", cascade.actions);

        // Only generated children left: they go with it (garbage collector).
        w.accounts.retain(|a| a.name_any() == "acme-default");
        w.users.retain(|u| u.name_any() == "acme-owner");
        w.safelists.clear();
        assert_eq!(decide_in(&w).actions, vec![Action::RemoveFinalizer]);
    }

    /// The default account the operator generated stays the default while it holds users,
    /// whatever account is declared default later (its users would lose their role); empty,
    /// it is superseded.
    #[test]
    fn a_generated_default_with_users_is_not_superseded() {
        let mut w = world(org("acme"));
        let generated = aged(owned_by(account("acme-default", "acme", true), &w.org), 5);
        w.accounts = arcs(&[generated, aged(account("hq", "acme", true), 50)]);
        w.account_users = HashMap::from([("acme-default".to_owned(), 2), ("hq".to_owned(), 0)]);
        let default = |w: &World| decide_in(w).status.default_account;
        assert_eq!(default(&w).as_deref(), Some("acme-default"));
        w.account_users = HashMap::from([("acme-default".to_owned(), 0), ("hq".to_owned(), 3)]);
        assert_eq!(default(&w).as_deref(), Some("hq"));
    }

    /// The status names the organization's Secret only when it holds the organization's
    /// secret: a Secret of that name that is someone else's is reported, not referenced.
    #[test]
    fn the_status_names_the_secret_only_when_it_is_the_organizations() {
        let mut w = world(org("acme"));
        w.secret = Some(owned_secret(&w.org));
        assert!(decide_in(&w).status.secret_ref.is_some());
        w.secret = Some(SecretFacts {
            controller: None,
            seal: None,
            ..owned_secret(&w.org)
        });
        let foreign = decide_in(&w);
        assert!(foreign.status.secret_ref.is_none(), "{:?}", foreign.status.secret_ref);
    }

    /// The labels of the organization's Secret, which tools select it by.
    #[test]
    fn the_organization_secret_is_labelled_with_its_organization() {
        let labels = organization_secret_labels("acme");
        assert_eq!(labels.get(LABEL_ORGANIZATION).map(String::as_str), Some("acme"));
        assert_eq!(labels.get(LABEL_SECRET_OF).map(String::as_str), Some("organization"));
        assert_eq!(labels.len(), 2);
    }

    /// The status publishes the organization's privilege matrix: every role, with its
    /// privileges after the organization's customisations.
    #[test]
    fn the_status_publishes_each_roles_privileges() {
        let w = world(org_with(
            "acme",
            serde_json::json!({"displayName": "Acme", "roles": [{"role": "admin", "revoke": ["manageUsers"]}]}),
        ));
        let published = decide_in(&w).status.privileges;
        let roles: Vec<Role> = published.iter().map(|r| r.role).collect();
        assert_eq!(roles, [Role::OrgAdmin, Role::Admin, Role::Org, Role::DefaultUser]);
        let of = |role: Role| &published.iter().find(|r| r.role == role).unwrap().privileges;
        assert_eq!(of(Role::OrgAdmin).len(), crate::api::Privilege::ALL.len());
        assert!(!of(Role::Admin).contains(&crate::api::Privilege::ManageUsers));
        assert!(!of(Role::Admin).is_empty());
    }

    /// The finalizer that keeps an organization until its children go is added once.
    #[test]
    fn the_finalizer_is_added_once() {
        let mut w = world(org("acme"));
        assert!(decide_in(&w).actions.contains(&Action::AddFinalizer));
        w.org = with_finalizer(w.org.clone());
        assert!(!decide_in(&w).actions.contains(&Action::AddFinalizer));
    }

    /// The operator creates the default account when the grace period has passed, to the
    /// second: not before, and not one second after.
    #[test]
    fn the_default_account_is_created_when_the_grace_period_ends() {
        let mut w = world(org("acme"));
        let created = w.org.meta().creation_timestamp.as_ref().unwrap().0;
        let grace = SignedDuration::try_from(DEFAULT_ACCOUNT_GRACE).unwrap();
        let default = |w: &World| decide_in(w).status.default_account;
        w.now = created + grace - SignedDuration::from_secs(1);
        assert_eq!(default(&w), None, "pending");
        w.now = created + grace;
        assert_eq!(default(&w).as_deref(), Some("acme-default"), "created");
    }
}
