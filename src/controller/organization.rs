//! The Organization controller: default account, owner, organization secret, privilege
//! matrix, counts, AdminPresent, and deletion that waits for (or cascades to) children.

use std::{collections::BTreeMap, sync::Arc};

use kube::{
    Api, Resource, ResourceExt,
    api::ObjectMeta,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context, Error, Result, api_for, controller_owner, delete_all, ensure_finalizer, name_list, publish,
    remove_finalizer, secret, stores::Stores, warn_new_failures, write_status,
};
use crate::{
    api::{
        Account, AccountSpec, CEUser, CEUserSpec, ElementVisibility, LocalRef, Organization, OrganizationStatus, Role,
        RoleBinding, RoleBindingSpec, RolePrivileges, SecretRef,
    },
    model::{
        conditions::{self, ADMIN_PRESENT, DELETION_BLOCKED, DENYLIST_CONFLICT, Desired, READY},
        names::{self, LABEL_ORGANIZATION, LABEL_SECRET_OF},
        privileges::Matrix,
        safelist::{self, Link},
        tenancy::{self, BoundUser, Verdict},
    },
};

/// Condition type reporting whether the organization's role customisations were applied.
pub const ROLES_APPLIED: &str = "RolesApplied";

pub async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Action> {
    if org.meta().deletion_timestamp.is_some() {
        return finalize(&org, &ctx).await;
    }
    ensure_finalizer(&ctx.client, org.as_ref()).await?;
    apply(&org, &ctx).await
}

async fn apply(org: &Organization, ctx: &Context) -> Result<Action> {
    let ns = org.namespace().ok_or(Error::Missing("namespace"))?;
    let name = org.name_any();
    let previous = org.status.clone().unwrap_or_default();
    let mut desired = Vec::new();

    // The default account: the oldest declared one, or one the operator creates.
    let accounts = ctx.stores.accounts_of(&ns, &name);
    let mut wake_after = None;
    let default_account = match tenancy::default_account(&accounts, org.meta().uid.as_deref()) {
        Some(account) => Ok(account.name_any()),
        None => match creation_grace_left(org) {
            // Give a multi-document apply the moment it needs to declare one.
            Some(left) => {
                wake_after = Some(left);
                Err(Desired::failed(
                    READY,
                    "DefaultAccountPending",
                    format!(
                        "no account declares default: true; the operator creates {} shortly",
                        names::default_account(&name, org.spec.default_account_name.as_deref())
                    ),
                ))
            }
            None => create_default_account(ctx, org)
                .await?
                .map_err(|conflict| Desired::failed(READY, "DefaultAccountNameTaken", conflict)),
        },
    };
    if let Ok(default) = &default_account {
        remove_superseded_default(ctx, org, &accounts, default).await?;
    }
    let default_ready = match &default_account {
        Ok(_) => Desired::ok(
            READY,
            "Ready",
            "the organization secret is issued and the default account exists",
        ),
        Err(failed) => failed.clone(),
    };

    // The owner: a user of the default account with an org-admin binding, as sign-up does.
    if let (Some(owner), Ok(account)) = (&org.spec.owner, &default_account) {
        ensure_owner(ctx, org, owner, account).await?;
    }

    let secret = secret::reconcile(
        ctx,
        org,
        secret::Wanted {
            name: names::organization_secret(&name),
            labels: BTreeMap::from([
                (LABEL_ORGANIZATION.into(), name.clone()),
                (LABEL_SECRET_OF.into(), "organization".into()),
            ]),
            length: usize::try_from(org.spec.security.secret_length).unwrap_or(32),
            grace: secret::grace_period(&org.spec.security.rotation_grace_period),
        },
        previous.secret_fingerprint.as_deref(),
        secret::secret_conflicted(&previous.conditions),
    )
    .await?;
    let secret_ok = secret.condition.status;

    // The super-organization link, and what it denies.
    let target = org
        .spec
        .super_organization_ref
        .as_ref()
        .and_then(|r| ctx.stores.organization(&r.namespace, &r.name));
    let link = safelist::judge_link(org, &ns, target.as_deref());
    // Ready reports the first problem: the default account, the secret, then the link.
    let ready = if !default_ready.status {
        default_ready
    } else if !secret_ok {
        Desired::failed(READY, secret.condition.reason.clone(), secret.condition.message.clone())
    } else if let Link::Refused { reason, message } = &link {
        Desired::failed(READY, *reason, message.clone())
    } else {
        default_ready
    };
    desired.push(ready);
    desired.push(secret.condition.clone());
    let denied = match link {
        Link::Accepted { mut denylist } => {
            denylist.sort();
            denylist
        }
        Link::None | Link::Refused { .. } => Vec::new(),
    };
    let element_visibility = ElementVisibility {
        safelist: ctx.stores.effective_safelist(&ns, &name).map(|s| s.name_any()),
        denied_elements: denied,
    };
    if let Some(whitelabel) = &org.spec.whitelabel {
        desired.push(denylist_conflicts(&ctx.stores, org, &ns, &whitelabel.element_denylist));
    }

    let matrix = Matrix::new(&org.spec.roles);
    desired.push(if matrix.refused_revocations.is_empty() {
        Desired::ok(ROLES_APPLIED, "RolesApplied", "the role customisations are applied")
    } else {
        Desired::failed(
            ROLES_APPLIED,
            "ProtectedPrivilegeRevoked",
            format!(
                "org-admin keeps {} so that the organization cannot lock itself out; remove them from the org-admin revoke list",
                name_list(matrix.refused_revocations.iter().map(|p| p.key()))
            ),
        )
    });

    let users = ctx.stores.users_of(&ns, &name);
    let admins = org_admins(&ctx.stores, &ns, org.meta().uid.as_deref(), &accounts);
    // Only judged once there is a default account: before, no one can hold org-admin yet,
    // and a brand-new organization would warn about it while its tree is still landing.
    let admin_present = if default_account.is_err() {
        None
    } else if admins.is_empty() {
        Some(Desired::failed(
            ADMIN_PRESENT,
            "NoOrgAdmin",
            "no user holds org-admin: bind org-admin to a user of the default account (or set spec.owner)",
        ))
    } else {
        Some(Desired::ok(
            ADMIN_PRESENT,
            "OrgAdminPresent",
            format!("org-admin held by {}", name_list(admins.iter().map(String::as_str))),
        ))
    };
    desired.extend(admin_present);

    let status = OrganizationStatus {
        conditions: conditions::merge(&previous.conditions, &desired, org.meta().generation, super::now()),
        observed_generation: org.meta().generation,
        secret_ref: secret_ok.then(|| SecretRef {
            name: names::organization_secret(&name),
        }),
        secret_fingerprint: secret.fingerprint,
        last_rotation_time: secret.last_rotation_time,
        last_rotation_request: secret.last_rotation_request,
        default_account: default_account.ok(),
        accounts: Some(i32::try_from(accounts.len().max(1)).unwrap_or(i32::MAX)),
        users: Some(i32::try_from(users.len()).unwrap_or(i32::MAX)),
        privileges: matrix
            .entries()
            .map(|(role, privileges)| RolePrivileges {
                role,
                privileges: privileges.iter().copied().collect(),
            })
            .collect(),
        element_visibility: Some(element_visibility),
    };
    warn_new_failures(ctx, org, &previous.conditions, &desired).await;
    write_status(&ctx.client, org, org.status.as_ref(), &status).await?;
    let requeue = [secret.requeue_after, wake_after].into_iter().flatten().min();
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// How long a new organization waits for a declared default account before the operator
/// creates one: `kubectl apply -f` of an organization with its accounts lands within it,
/// and a client-side apply would otherwise race the operator's create (AlreadyExists).
const DEFAULT_ACCOUNT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The part of the grace period left, if the organization is younger than it.
fn creation_grace_left(org: &Organization) -> Option<std::time::Duration> {
    let created = org.meta().creation_timestamp.as_ref()?.0;
    let age = super::now().duration_since(created);
    let left = k8s_openapi::jiff::SignedDuration::try_from(DEFAULT_ACCOUNT_GRACE).ok()? - age;
    (left > k8s_openapi::jiff::SignedDuration::ZERO).then(|| left.unsigned_abs())
}

/// Creates the default account; Err(message) if its name is taken by an account that is not
/// a default account of this organization.
async fn create_default_account(ctx: &Context, org: &Organization) -> Result<Result<String, String>> {
    let name = names::default_account(&org.name_any(), org.spec.default_account_name.as_deref());
    let api: Api<Account> = api_for(&ctx.client, org)?;
    let mut account = Account::new(
        &name,
        AccountSpec {
            organization_ref: LocalRef::new(org.name_any()),
            display_name: Some("Company Default Account".into()),
            default: true,
            allow_cascading_deletion: false,
        },
    );
    account.metadata.owner_references = Some(vec![controller_owner(org)?]);
    match api.create(&super::post_params(), &account).await {
        Ok(_) => {
            publish(
                ctx,
                org,
                EventType::Normal,
                "DefaultAccountCreated",
                format!("created the default account {name}"),
            )
            .await;
            Ok(Ok(name))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Already there: ours (the cache lags) or someone else's.
            let existing = api.get(&name).await?;
            if existing.spec.default && existing.spec.organization_ref.name == org.name_any() {
                Ok(Ok(name))
            } else {
                Ok(Err(format!(
                    "no account declares default: true, and the default account name {name} is taken by an account that is not this organization's default; set spec.defaultAccountName to a free name, or declare a default account"
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A super-organization's report of member safelists that list what it denies.
fn denylist_conflicts(stores: &Stores, org: &Organization, ns: &str, denylist: &[String]) -> Desired {
    let mut conflicts = Vec::new();
    for member in stores.members_of(ns, &org.name_any()) {
        let member_ns = member.namespace().unwrap_or_default();
        if !matches!(
            safelist::judge_link(&member, &member_ns, Some(org)),
            Link::Accepted { .. }
        ) {
            continue;
        }
        if let Some(list) = stores.effective_safelist(&member_ns, &member.name_any()) {
            let (_, denied) = safelist::visibility(Some(&list.spec.elements), denylist);
            if !denied.is_empty() {
                conflicts.push(format!(
                    "{member_ns}/{} safelists {}",
                    member.name_any(),
                    denied.join(", ")
                ));
            }
        }
    }
    conflicts.sort();
    if conflicts.is_empty() {
        Desired::new(
            DENYLIST_CONFLICT,
            false,
            "NoConflict",
            "no member organization safelists a denied element",
        )
    } else {
        Desired::new(
            DENYLIST_CONFLICT,
            true,
            "SafelistedDeniedElements",
            format!(
                "{}: deny wins, those elements stay hidden. Remove them from the members' safelists or from spec.whitelabel.elementDenylist",
                conflicts.join("; ")
            ),
        )
    }
}

/// Deletes the default account the operator created once a declared one supersedes it,
/// provided nobody has put users in it (then it stays, reported as a duplicate).
async fn remove_superseded_default(
    ctx: &Context,
    org: &Organization,
    accounts: &[Arc<Account>],
    default: &str,
) -> Result<()> {
    let ns = org.namespace().ok_or(Error::Missing("namespace"))?;
    let superseded: Vec<Arc<Account>> = accounts
        .iter()
        .filter(|a| a.spec.default && a.name_any() != default)
        .filter(|a| tenancy::is_controlled_by(a.as_ref(), org.meta().uid.as_deref()))
        .filter(|a| ctx.stores.users_of_account(&ns, &a.name_any()).is_empty())
        .cloned()
        .collect();
    for account in &superseded {
        publish(
            ctx,
            org,
            EventType::Normal,
            "DefaultAccountSuperseded",
            format!(
                "the declared default account {default} supersedes {}, which the operator had created; it is deleted",
                account.name_any()
            ),
        )
        .await;
    }
    delete_all(&ctx.client, &superseded).await
}

/// Creates the owner user and its org-admin binding, both owned by the organization, if they
/// do not exist. Existing ones are left as they are (the owner may have been edited since).
async fn ensure_owner(ctx: &Context, org: &Organization, owner: &crate::api::Owner, account: &str) -> Result<()> {
    let ns = org.namespace().ok_or(Error::Missing("namespace"))?;
    let user_name = names::owner_user(&org.name_any());
    let binding_name = names::owner_binding(&org.name_any());
    let params = super::post_params();
    let meta = |name: &str| -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![controller_owner(org)?]),
            ..Default::default()
        })
    };
    if ctx.stores.user(&ns, &user_name).is_none() {
        let user = CEUser {
            metadata: meta(&user_name)?,
            spec: CEUserSpec {
                account_ref: LocalRef::new(account),
                email: owner.email.clone(),
                display_name: owner.display_name.clone(),
            },
            status: None,
        };
        if created(
            Api::<CEUser>::namespaced(ctx.client.clone(), &ns)
                .create(&params, &user)
                .await,
        )? {
            publish(
                ctx,
                org,
                EventType::Normal,
                "OwnerCreated",
                format!(
                    "created the owner {user_name} ({}) in the default account {account}",
                    owner.email
                ),
            )
            .await;
        }
    }
    if ctx
        .stores
        .bindings_of_user(&ns, &user_name)
        .iter()
        .all(|b| b.name_any() != binding_name)
    {
        let binding = RoleBinding {
            metadata: meta(&binding_name)?,
            spec: RoleBindingSpec {
                user_ref: LocalRef::new(&user_name),
                role: Role::OrgAdmin,
                override_system_role: false,
            },
            status: None,
        };
        created(
            Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
                .create(&params, &binding)
                .await,
        )?;
    }
    Ok(())
}

/// Ok(true) if created, Ok(false) if it already existed.
fn created<T>(result: kube::Result<T>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The users of the organization that hold an effective org-admin binding.
fn org_admins(stores: &Stores, ns: &str, org_uid: Option<&str>, accounts: &[Arc<Account>]) -> Vec<String> {
    let default = tenancy::default_account(accounts, org_uid).map(|a| a.name_any());
    let mut admins: Vec<String> = stores
        .org_admin_bindings(ns)
        .iter()
        .filter_map(|binding| {
            let user = stores.user(ns, &binding.spec.user_ref.name)?;
            let account = accounts.iter().find(|a| a.name_any() == user.spec.account_ref.name)?;
            let account_is_default = default.as_deref() == Some(account.name_any().as_str());
            let bound = BoundUser::Resolved {
                user: &user,
                account,
                account_is_default,
            };
            matches!(
                tenancy::judge_binding(binding, bound),
                Verdict::Effective {
                    role: Role::OrgAdmin,
                    ..
                }
            )
            .then(|| user.name_any())
        })
        .collect();
    admins.sort();
    admins.dedup();
    admins
}

/// Deletion: wait for the children to go (or delete them when cascading), then let go.
async fn finalize(org: &Organization, ctx: &Context) -> Result<Action> {
    let ns = org.namespace().ok_or(Error::Missing("namespace"))?;
    let name = org.name_any();
    let uid = org.meta().uid.as_deref();
    let accounts = ctx.stores.accounts_of(&ns, &name);
    let users = ctx.stores.users_of(&ns, &name);
    let bindings: Vec<Arc<RoleBinding>> = users
        .iter()
        .flat_map(|u| ctx.stores.bindings_of_user(&ns, &u.name_any()))
        .collect();
    let safelists = ctx.stores.safelists_of(&ns, &name);

    // What the operator generated for the organization goes with it (garbage collector).
    let blocking: Vec<String> = accounts
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
        .collect();
    if blocking.is_empty() {
        remove_finalizer(&ctx.client, org).await?;
        return Ok(Action::await_change());
    }
    let blocked = if org.spec.allow_cascading_deletion {
        delete_all(&ctx.client, &bindings).await?;
        delete_all(&ctx.client, &users).await?;
        delete_all(&ctx.client, &accounts).await?;
        delete_all(&ctx.client, &safelists).await?;
        Desired::ok(
            DELETION_BLOCKED,
            "DeletingChildren",
            format!(
                "allowCascadingDeletion is set: deleting {}",
                name_list(blocking.iter().map(String::as_str))
            ),
        )
    } else {
        Desired::ok(
            DELETION_BLOCKED,
            "ChildrenExist",
            format!(
                "the organization still has {}; delete them, or set spec.allowCascadingDeletion: true to delete them with it",
                name_list(blocking.iter().map(String::as_str))
            ),
        )
    };
    let previous = org.status.clone().unwrap_or_default();
    warn_new_failures(ctx, org, &previous.conditions, std::slice::from_ref(&blocked)).await;
    let status = OrganizationStatus {
        conditions: conditions::upsert(&previous.conditions, &blocked, org.meta().generation, super::now()),
        ..previous.clone()
    };
    write_status(&ctx.client, org, org.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}
