//! The Account controller: resolves the organization, decides default-ness, counts users,
//! and holds deletion while users remain (or cascades to them).

use std::sync::Arc;

use kube::{Resource, ResourceExt, runtime::controller::Action};

use super::{
    Context, Error, Result, delete_all, ensure_finalizer, name_list, remove_finalizer, warn_new_failures, write_status,
};
use crate::{
    api::{Account, AccountStatus, RoleBinding},
    model::{
        conditions::{self, DELETION_BLOCKED, Desired, READY},
        tenancy,
    },
};

pub async fn reconcile(account: Arc<Account>, ctx: Arc<Context>) -> Result<Action> {
    if account.meta().deletion_timestamp.is_some() {
        return finalize(&account, &ctx).await;
    }
    ensure_finalizer(&ctx.client, account.as_ref()).await?;
    apply(&account, &ctx).await
}

async fn apply(account: &Account, ctx: &Context) -> Result<Action> {
    let ns = account.namespace().ok_or(Error::Missing("namespace"))?;
    let org_name = &account.spec.organization_ref.name;
    let previous = account.status.clone().unwrap_or_default();
    let users = ctx.stores.users_of_account(&ns, &account.name_any()).len();

    let (ready, organization, is_default) = match ctx.stores.organization(&ns, org_name) {
        None => (
            Desired::failed(
                READY,
                "OrganizationNotFound",
                format!(
                    "Organization {org_name} does not exist in namespace {ns}; the account becomes ready once it does (or fix spec.organizationRef)"
                ),
            ),
            None,
            None,
        ),
        Some(org) => {
            let accounts = ctx.stores.accounts_of(&ns, org_name);
            let default = tenancy::default_account(&accounts, org.meta().uid.as_deref()).map(|a| a.name_any());
            let is_default = default.as_deref() == Some(account.name_any().as_str());
            let ready = if account.spec.default && !is_default {
                Desired::failed(
                    READY,
                    "DuplicateDefaultAccount",
                    format!(
                        "organization {org_name} already has the default account {}; this one is treated as an ordinary account. Set default: false (recreate it) or delete it",
                        default.unwrap_or_default()
                    ),
                )
            } else {
                Desired::ok(READY, "Ready", format!("account of organization {org_name}"))
            };
            (ready, Some(org_name.clone()), Some(is_default))
        }
    };
    let desired = [ready];
    let status = AccountStatus {
        conditions: conditions::merge(&previous.conditions, &desired, account.meta().generation, super::now()),
        observed_generation: account.meta().generation,
        organization,
        default: is_default,
        users: Some(i32::try_from(users).unwrap_or(i32::MAX)),
    };
    warn_new_failures(ctx, account, &previous.conditions, &desired).await;
    write_status(&ctx.client, account, account.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}

async fn finalize(account: &Account, ctx: &Context) -> Result<Action> {
    let ns = account.namespace().ok_or(Error::Missing("namespace"))?;
    let users = ctx.stores.users_of_account(&ns, &account.name_any());
    if users.is_empty() {
        remove_finalizer(&ctx.client, account).await?;
        return Ok(Action::await_change());
    }
    let names = name_list(users.iter().map(|u| u.meta().name.as_deref().unwrap_or_default()));
    let blocked = if account.spec.allow_cascading_deletion {
        let bindings: Vec<Arc<RoleBinding>> = users
            .iter()
            .flat_map(|u| ctx.stores.bindings_of_user(&ns, &u.name_any()))
            .collect();
        delete_all(&ctx.client, &bindings).await?;
        delete_all(&ctx.client, &users).await?;
        Desired::ok(
            DELETION_BLOCKED,
            "DeletingChildren",
            format!("allowCascadingDeletion is set: deleting users {names}"),
        )
    } else {
        Desired::ok(
            DELETION_BLOCKED,
            "ChildrenExist",
            format!(
                "the account still has users {names}; delete them, or set spec.allowCascadingDeletion: true to delete them with it"
            ),
        )
    };
    let previous = account.status.clone().unwrap_or_default();
    warn_new_failures(ctx, account, &previous.conditions, std::slice::from_ref(&blocked)).await;
    let status = AccountStatus {
        conditions: conditions::upsert(&previous.conditions, &blocked, account.meta().generation, super::now()),
        ..previous.clone()
    };
    write_status(&ctx.client, account, account.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}
