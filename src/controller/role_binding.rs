//! The RoleBinding controller: judges each binding against the invariants and reports
//! where it applies.

use std::sync::Arc;

use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, events::EventType},
};

use super::{Context, Error, Result, publish, warn_new_failures, write_status};
use crate::{
    api::{Account, RoleBinding, RoleBindingStatus},
    model::{
        conditions::{self, Desired, READY},
        tenancy::{self, BoundUser, Verdict},
    },
};

pub async fn reconcile(binding: Arc<RoleBinding>, ctx: Arc<Context>) -> Result<Action> {
    apply(&binding, &ctx).await
}

async fn apply(binding: &RoleBinding, ctx: &Context) -> Result<Action> {
    let ns = binding.namespace().ok_or(Error::Missing("namespace"))?;
    let previous = binding.status.clone().unwrap_or_default();
    let user = ctx.stores.user(&ns, &binding.spec.user_ref.name);
    let account: Option<Arc<Account>> = user
        .as_ref()
        .and_then(|u| ctx.stores.account(&ns, &u.spec.account_ref.name));
    let mut status = RoleBindingStatus {
        observed_generation: binding.meta().generation,
        ..Default::default()
    };
    let bound = match (&user, &account) {
        (None, _) => BoundUser::Missing,
        (Some(user), None) => BoundUser::NoAccount(user),
        (Some(user), Some(account)) => {
            let org = &account.spec.organization_ref.name;
            let accounts = ctx.stores.accounts_of(&ns, org);
            let account_is_default = tenancy::default_account(
                &accounts,
                ctx.stores
                    .organization(&ns, org)
                    .and_then(|o| o.meta().uid.clone())
                    .as_deref(),
            )
            .is_some_and(|d| d.name_any() == account.name_any());
            status.organization = Some(org.clone());
            status.account = Some(account.name_any());
            BoundUser::Resolved {
                user,
                account,
                account_is_default,
            }
        }
    };
    let ready = match tenancy::judge_binding(binding, bound) {
        Verdict::Effective {
            role,
            scope,
            overrides_system_role,
        } => {
            status.scope = Some(scope);
            if overrides_system_role {
                let message = format!(
                    "{role} is bound by hand with overrideSystemRole: the system's role assignment for this user is overridden (discouraged)"
                );
                let already_warned = previous
                    .conditions
                    .iter()
                    .any(|c| c.type_ == READY && c.reason == "SystemRoleOverridden");
                if !already_warned {
                    publish(
                        ctx,
                        binding,
                        EventType::Warning,
                        "SystemRoleOverridden",
                        message.clone(),
                    )
                    .await;
                }
                Desired::ok(READY, "SystemRoleOverridden", message)
            } else {
                Desired::ok(
                    READY,
                    "Bound",
                    format!("{role} is in effect for user {}", binding.spec.user_ref.name),
                )
            }
        }
        Verdict::Refused { reason, message } => Desired::failed(READY, reason, message),
    };
    let desired = [ready];
    status.conditions = conditions::merge(&previous.conditions, &desired, binding.meta().generation, super::now());
    warn_new_failures(ctx, binding, &previous.conditions, &desired).await;
    write_status(&ctx.client, binding, binding.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}
