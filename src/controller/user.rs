//! The CEUser controller: resolve → `model::user::decide` → act.

use std::sync::Arc;

use kube::{Resource, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, Reconciler, Result,
    act::{self, Outcome, object_name},
    relations::{Wiring, default_siblings, identity_changed, named, own_change, refs},
    secret,
};
use crate::{
    api::{Account, CEUser, Organization, RoleBinding},
    cache::{Cache, SecretEntry, resolve::ResolvedIdentity},
    model::{
        names,
        secrets::SecretFacts,
        user::{self, Inputs},
    },
};

pub(super) struct Resolved {
    identity: ResolvedIdentity,
    secret: Option<SecretFacts>,
    namespace_terminating: bool,
}

pub(super) fn resolve(cache: &Cache, user: &CEUser) -> Resolved {
    let ns = user.namespace().unwrap_or_default();
    Resolved {
        identity: ResolvedIdentity::of(cache, user),
        secret: cache
            .secret(&ns, &names::user_secret(&user.name_any()))
            .map(|s| s.facts.clone()),
        namespace_terminating: cache.namespace_terminating(&ns),
    }
}

impl Reconciler for CEUser {
    fn relations(wiring: &mut Wiring<'_, Self>) {
        // Its own changes, and the users that share its e-mail (who holds it).
        wiring.on::<CEUser>(|cache, change| {
            let mut wake = own_change(cache, change);
            if change.old.is_none() || change.new.is_none() || change.changed(|u| u.spec.email.to_ascii_lowercase()) {
                let ns = change.namespace();
                let (before, after) = change.before_after(|u| u.spec.email.clone());
                for email in [before, after].into_iter().flatten() {
                    wake.extend(refs(
                        cache
                            .users_with_email(&ns, &email)
                            .into_iter()
                            .filter(|u| u.name_any() != change.name()),
                    ));
                }
            }
            wake
        });
        // The organization: its matrix, its security settings, its existence.
        wiring.on::<Organization>(|cache, change| {
            if change.changed(|o| o.meta().generation) || identity_changed(change) {
                refs(cache.users_of(&change.namespace(), &change.name()))
            } else {
                Vec::new()
            }
        });
        // The account: its existence and default-ness (the system role).
        wiring.on::<Account>(|cache, change| {
            let ns = change.namespace();
            let mut wake = Vec::new();
            if change.old.is_none() || change.new.is_none() || change.changed(|a| a.spec.default) {
                wake.extend(refs(cache.users_of_account(&ns, &change.name())));
                wake.extend(default_siblings(cache, change, |a| {
                    refs(cache.users_of_account(&ns, &a.name_any()))
                }));
            }
            wake
        });
        // Its bindings: its roles.
        wiring.on::<RoleBinding>(|_, change| vec![named(&change.namespace(), &change.object().spec.user_ref.name)]);
        wiring.on::<SecretEntry>(|_, change| match change.object().owner() {
            Some(("CEUser", name)) => vec![named(&change.namespace(), name)],
            _ => Vec::new(),
        });
    }

    async fn reconcile(user: Arc<CEUser>, ctx: Arc<Context>) -> Result<Requeue> {
        let mut resolved = resolve(&ctx.cache, &user);
        let length = resolved
            .identity
            .organization
            .as_ref()
            .map_or(32, |o| usize::try_from(o.spec.security.secret_length).unwrap_or(32));
        let fresh = super::secret::generate(length).map_err(|source| super::Error::Random {
            object: object_name(user.as_ref()),
            source,
        })?;
        if resolved.secret.is_none() {
            let issued = user.status.as_ref().is_some_and(|s| s.secret_fingerprint.is_some());
            let name = names::user_secret(&user.name_any());
            resolved.secret =
                secret::read_if_reported(&ctx, user.as_ref(), issued, &object_name(user.as_ref()), &name).await?;
        }
        loop {
            let decision = user::decide(&Inputs {
                identity: resolved.identity.inputs(&user),
                secret: resolved.secret.as_ref(),
                fresh_secret: &fresh,
                issuance_key: ctx.cache.issuance_key(),
                namespace_terminating: resolved.namespace_terminating,
                now: crate::clock::now(),
            });
            match act::carry_out(&ctx, user.as_ref(), decision).await? {
                Outcome::Done(requeue) => return Ok(requeue),
                // Someone else's Secret of that name: decide again, knowing it (once).
                Outcome::SecretExists(facts) if resolved.secret.is_none() => resolved.secret = Some(*facts),
                Outcome::SecretExists(_) => return Ok(Requeue::await_change()),
            }
        }
    }
}
