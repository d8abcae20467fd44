//! The CEUser controller: resolves account and organization, the system role, e-mail
//! uniqueness, effective roles and privileges, and the user secret.

use std::{collections::BTreeMap, sync::Arc};

use kube::{Resource, ResourceExt, runtime::controller::Action};

use super::{Context, Error, Result, secret, warn_new_failures, write_status};
use crate::{
    api::{CEUser, CEUserStatus, SecretRef},
    model::{
        conditions::{self, Desired, READY},
        names::{self, LABEL_ACCOUNT, LABEL_ORGANIZATION, LABEL_SECRET_OF, LABEL_USER},
        privileges::Matrix,
        tenancy::{self, BoundUser},
    },
};

pub async fn reconcile(user: Arc<CEUser>, ctx: Arc<Context>) -> Result<Action> {
    apply(&user, &ctx).await
}

async fn apply(user: &CEUser, ctx: &Context) -> Result<Action> {
    let ns = user.namespace().ok_or(Error::Missing("namespace"))?;
    let name = user.name_any();
    let previous = user.status.clone().unwrap_or_default();
    let account_name = &user.spec.account_ref.name;
    let mut status = CEUserStatus {
        observed_generation: user.meta().generation,
        ..Default::default()
    };

    let account = ctx.stores.account(&ns, account_name);
    let org = account
        .as_ref()
        .and_then(|a| ctx.stores.organization(&ns, &a.spec.organization_ref.name));
    let mut requeue = None;
    let desired = match (&account, &org) {
        (None, _) => vec![Desired::failed(
            READY,
            "AccountNotFound",
            format!(
                "Account {account_name} does not exist in namespace {ns}; the user becomes ready once it does (or fix spec.accountRef)"
            ),
        )],
        (Some(account), None) => vec![Desired::failed(
            READY,
            "OrganizationNotFound",
            format!(
                "Organization {} of account {account_name} does not exist; the user becomes ready once it does",
                account.spec.organization_ref.name
            ),
        )],
        (Some(account), Some(org)) => {
            let org_name = org.name_any();
            let accounts = ctx.stores.accounts_of(&ns, &org_name);
            let in_default = tenancy::default_account(&accounts, org.meta().uid.as_deref())
                .is_some_and(|d| d.name_any() == *account_name);
            let system_role = tenancy::system_role(in_default);
            let verdicts: Vec<_> = ctx
                .stores
                .bindings_of_user(&ns, &name)
                .iter()
                .map(|b| {
                    tenancy::judge_binding(
                        b,
                        BoundUser::Resolved {
                            user,
                            account,
                            account_is_default: in_default,
                        },
                    )
                })
                .collect();
            let roles = tenancy::effective_roles(system_role, &verdicts);
            status.organization = Some(org_name.clone());
            status.account = Some(account_name.clone());
            status.system_role = Some(system_role);
            status.privileges = Matrix::new(&org.spec.roles).union(&roles);
            status.roles = roles;

            let same_email = ctx.stores.users_with_email(&ns, &org_name, &user.spec.email);
            let holder = tenancy::email_holder(&user.spec.email, &same_email).map(|u| u.name_any());
            if holder.as_deref().is_some_and(|h| h != name) {
                vec![Desired::failed(
                    READY,
                    "DuplicateEmail",
                    format!(
                        "{} is already the e-mail of user {} in organization {org_name}; no secret is issued for this user. Change spec.email or delete one of them",
                        user.spec.email,
                        holder.unwrap_or_default()
                    ),
                )]
            } else {
                let secret = secret::reconcile(
                    ctx,
                    user,
                    secret::Wanted {
                        name: names::user_secret(&name),
                        labels: BTreeMap::from([
                            (LABEL_ORGANIZATION.into(), org_name.clone()),
                            (LABEL_ACCOUNT.into(), account_name.clone()),
                            (LABEL_USER.into(), name.clone()),
                            (LABEL_SECRET_OF.into(), "user".into()),
                        ]),
                        length: usize::try_from(org.spec.security.secret_length).unwrap_or(32),
                        grace: secret::grace_period(&org.spec.security.rotation_grace_period),
                    },
                    previous.secret_fingerprint.as_deref(),
                    secret::secret_conflicted(&previous.conditions),
                )
                .await?;
                requeue = secret.requeue_after;
                if secret.condition.status {
                    status.secret_ref = Some(SecretRef {
                        name: names::user_secret(&name),
                    });
                }
                status.secret_fingerprint = secret.fingerprint;
                status.last_rotation_time = secret.last_rotation_time;
                status.last_rotation_request = secret.last_rotation_request;
                let ready = if secret.condition.status {
                    Desired::ok(
                        READY,
                        "Ready",
                        format!("user of account {account_name} in organization {org_name}"),
                    )
                } else {
                    Desired::failed(READY, secret.condition.reason.clone(), secret.condition.message.clone())
                };
                vec![ready, secret.condition]
            }
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, user.meta().generation, super::now());
    warn_new_failures(ctx, user, &previous.conditions, &desired).await;
    write_status(&ctx.client, user, user.status.as_ref(), &status).await?;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}
