//! The generated Secrets of organizations and users: issued once, never overwritten,
//! rotated on request with a grace period for the previous value.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Resource, ResourceExt, api::ObjectMeta, runtime::events::EventType};

use super::{Context, Error, Result, api_for, controller_owner, now, publish};
use crate::model::{
    conditions::{Desired, SECRET_READY},
    names::{LABEL_MANAGED_BY, MANAGER, ROTATE_ANNOTATION},
    secrets::{self, ANNOTATION_PREVIOUS_EXPIRES, ANNOTATION_ROTATION_REQUEST, KEY_CURRENT, KEY_PREVIOUS},
};

/// Secret annotation: when the current value was issued by a rotation.
const ANNOTATION_ROTATED_AT: &str = "ce.tenancy.io/rotated-at";

/// What a generated Secret should be.
pub struct Wanted {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Random bytes per secret.
    pub length: usize,
    /// How long the previous value survives a rotation.
    pub grace: Duration,
}

/// What the Secret is, for the owner's status.
pub struct Observed {
    pub condition: Desired,
    pub fingerprint: Option<String>,
    pub last_rotation_time: Option<Time>,
    pub last_rotation_request: Option<String>,
    /// When the previous value is due to be removed.
    pub requeue_after: Option<Duration>,
}

impl Observed {
    fn failed(reason: &str, message: String) -> Self {
        Self {
            condition: Desired::failed(SECRET_READY, reason, message),
            fingerprint: None,
            last_rotation_time: None,
            last_rotation_request: None,
            requeue_after: None,
        }
    }
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret.data.as_ref()?.get(key).map(|b| b.0.as_slice())
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text?.parse().ok()
}

/// Ensures the owner's Secret exists and reports it. `had_secret` says whether the owner's
/// status shows a secret was issued before (then a missing Secret was deleted by someone);
/// `conflicted` whether it reported a Secret of that name it does not own.
pub async fn reconcile<K>(
    ctx: &Context,
    owner: &K,
    wanted: Wanted,
    previous_fingerprint: Option<&str>,
    conflicted: bool,
) -> Result<Observed>
where
    K: Resource<DynamicType = ()>,
{
    let api: Api<Secret> = api_for(&ctx.client, owner)?;
    let requested = owner.annotations().get(ROTATE_ANNOTATION).cloned();
    // A secret not issued yet is created right away (one request instead of a read and a
    // create); otherwise, and after a conflict, the Secret is read first.
    let had_secret = previous_fingerprint.is_some();
    if let Some(observed) = unchanged(
        ctx,
        owner,
        &wanted,
        previous_fingerprint,
        conflicted,
        requested.as_deref(),
    ) {
        return Ok(observed);
    }
    let existing = if had_secret || conflicted {
        api.get_opt(&wanted.name).await?
    } else {
        None
    };
    let secret = match existing {
        Some(secret) => secret,
        None => match issue(&api, owner, &wanted, requested.as_deref()).await? {
            Some(secret) => {
                let (type_, reason, note) = if had_secret {
                    (
                        EventType::Warning,
                        "SecretRecreated",
                        format!(
                            "Secret {} was deleted; a new secret was issued, and clients holding the old one must get the new one",
                            wanted.name
                        ),
                    )
                } else {
                    (
                        EventType::Normal,
                        "SecretIssued",
                        format!("issued a new secret into Secret {}", wanted.name),
                    )
                };
                publish(ctx, owner, type_, reason, note).await;
                ctx.metrics.secrets_issued.get_or_create(&owner_label::<K>()).inc();
                secret
            }
            // It exists already (someone else's, or ours while the status lagged): read it.
            None => api.get(&wanted.name).await?,
        },
    };

    if !crate::model::tenancy::is_controlled_by(&secret, owner.meta().uid.as_deref()) {
        return Ok(Observed::failed(
            "SecretConflict",
            format!(
                "Secret {} already exists and is not owned by this {}; it is left untouched. Delete or rename it to have a secret issued",
                wanted.name,
                K::kind(&())
            ),
        ));
    }
    let Some(current) = value(&secret, KEY_CURRENT) else {
        return Ok(Observed::failed(
            "SecretInvalid",
            format!(
                "Secret {} has no key `{KEY_CURRENT}`; it is left untouched. Delete it to have a new secret issued",
                wanted.name
            ),
        ));
    };

    let acted_on = annotation(&secret, ANNOTATION_ROTATION_REQUEST);
    let secret = if requested.is_some() && requested.as_deref() != acted_on {
        let rotated = rotate(
            &api,
            &secret,
            current,
            &wanted,
            requested.as_deref().unwrap_or_default(),
        )
        .await?;
        ctx.metrics.secrets_rotated.get_or_create(&owner_label::<K>()).inc();
        let expires = annotation(&rotated, ANNOTATION_PREVIOUS_EXPIRES)
            .unwrap_or_default()
            .to_owned();
        publish(
            ctx,
            owner,
            EventType::Normal,
            "SecretRotated",
            format!(
                "issued a new secret (fingerprint {}); the previous one (fingerprint {}) stays valid until {expires}",
                secrets::fingerprint(value(&rotated, KEY_CURRENT).unwrap_or_default()),
                secrets::fingerprint(current)
            ),
        )
        .await;
        rotated
    } else {
        secret
    };

    let mut requeue_after = None;
    let secret = match parse_time(annotation(&secret, ANNOTATION_PREVIOUS_EXPIRES)) {
        Some(expires) if value(&secret, KEY_PREVIOUS).is_some() => {
            let left = expires.duration_since(now());
            if left <= SignedDuration::ZERO {
                let trimmed = drop_previous(&api, &secret).await?;
                publish(
                    ctx,
                    owner,
                    EventType::Normal,
                    "PreviousSecretRemoved",
                    format!(
                        "the grace period ended; the previous secret was removed from Secret {}",
                        wanted.name
                    ),
                )
                .await;
                trimmed
            } else {
                // Wake up when the grace period ends (plus a second, as timestamps are whole seconds).
                requeue_after = Some(left.unsigned_abs() + Duration::from_secs(1));
                secret
            }
        }
        _ => secret,
    };

    Ok(Observed {
        condition: ready_condition(&wanted),
        fingerprint: value(&secret, KEY_CURRENT).map(secrets::fingerprint),
        last_rotation_time: parse_time(annotation(&secret, ANNOTATION_ROTATED_AT)).map(Time),
        last_rotation_request: annotation(&secret, ANNOTATION_ROTATION_REQUEST)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        requeue_after,
    })
}

fn owner_label<K: Resource<DynamicType = ()>>() -> crate::metrics::SecretLabels {
    let owner = if K::kind(&()) == "Organization" {
        "organization"
    } else {
        "user"
    };
    crate::metrics::SecretLabels { owner }
}

/// The common case at rest and on restart, answered from the cache of the operator's own
/// Secrets (metadata only) without reading the Secret: it exists, this object owns it, no
/// rotation is asked for and no previous value waits to expire. None when the Secret must be
/// read.
fn unchanged<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner: &K,
    wanted: &Wanted,
    previous_fingerprint: Option<&str>,
    conflicted: bool,
    requested: Option<&str>,
) -> Option<Observed> {
    let fingerprint = previous_fingerprint.filter(|_| !conflicted)?;
    let cached = ctx.stores.secret(owner.meta().namespace.as_deref()?, &wanted.name)?;
    let annotations = cached.metadata.annotations.clone().unwrap_or_default();
    let acted_on = annotations.get(ANNOTATION_ROTATION_REQUEST).map(String::as_str);
    let fresh = crate::model::tenancy::is_controlled_by(cached.as_ref(), owner.meta().uid.as_deref())
        && (requested.is_none() || requested == acted_on)
        && !annotations.contains_key(ANNOTATION_PREVIOUS_EXPIRES);
    fresh.then(|| Observed {
        condition: ready_condition(wanted),
        fingerprint: Some(fingerprint.to_owned()),
        last_rotation_time: parse_time(annotations.get(ANNOTATION_ROTATED_AT).map(String::as_str)).map(Time),
        last_rotation_request: acted_on.filter(|s| !s.is_empty()).map(str::to_owned),
        requeue_after: None,
    })
}

fn ready_condition(wanted: &Wanted) -> Desired {
    Desired::ok(
        SECRET_READY,
        "SecretIssued",
        format!("the secret is in Secret {}, key `{KEY_CURRENT}`", wanted.name),
    )
}

/// Creates the Secret with a new value. None if a Secret of that name appeared meanwhile.
async fn issue<K: Resource<DynamicType = ()>>(
    api: &Api<Secret>,
    owner: &K,
    wanted: &Wanted,
    requested: Option<&str>,
) -> Result<Option<Secret>> {
    let mut labels = wanted.labels.clone();
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    // A rotation request already present when the secret is first issued is satisfied by it.
    let annotations = BTreeMap::from([(
        ANNOTATION_ROTATION_REQUEST.to_owned(),
        requested.unwrap_or_default().to_owned(),
    )]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(wanted.name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_owner(owner)?]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEY_CURRENT.to_owned(),
            ByteString(secrets::generate(wanted.length)?.into_bytes()),
        )])),
        ..Default::default()
    };
    match api.create(&super::post_params(), &secret).await {
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(Error::from(e)),
    }
}

/// Replaces the current value with a new one, keeping the old one as `previous` until the
/// grace period ends. Guarded by resourceVersion: a concurrent change fails and retries.
async fn rotate(api: &Api<Secret>, secret: &Secret, current: &[u8], wanted: &Wanted, request: &str) -> Result<Secret> {
    let mut rotated = secret.clone();
    let data = rotated.data.get_or_insert_with(BTreeMap::new);
    data.insert(KEY_PREVIOUS.into(), ByteString(current.to_vec()));
    data.insert(
        KEY_CURRENT.into(),
        ByteString(secrets::generate(wanted.length)?.into_bytes()),
    );
    let issued = now();
    let expires = issued + SignedDuration::try_from(wanted.grace).unwrap_or(SignedDuration::ZERO);
    let annotations = rotated.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_ROTATION_REQUEST.into(), request.into());
    annotations.insert(ANNOTATION_ROTATED_AT.into(), issued.to_string());
    annotations.insert(ANNOTATION_PREVIOUS_EXPIRES.into(), expires.to_string());
    replace(api, rotated).await
}

/// Removes the previous value once its grace period has ended.
async fn drop_previous(api: &Api<Secret>, secret: &Secret) -> Result<Secret> {
    let mut trimmed = secret.clone();
    if let Some(data) = trimmed.data.as_mut() {
        data.remove(KEY_PREVIOUS);
    }
    if let Some(annotations) = trimmed.metadata.annotations.as_mut() {
        annotations.remove(ANNOTATION_PREVIOUS_EXPIRES);
    }
    replace(api, trimmed).await
}

/// Writes a changed Secret back, guarded by its resourceVersion: a concurrent change fails
/// the write (and the reconcile retries) instead of being lost.
async fn replace(api: &Api<Secret>, mut secret: Secret) -> Result<Secret> {
    secret.metadata.managed_fields = None;
    Ok(api.replace(&secret.name_any(), &super::post_params(), &secret).await?)
}

/// Whether the owner last reported a Secret of the generated name that it does not own.
pub fn secret_conflicted(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == SECRET_READY && c.reason == "SecretConflict")
}

/// Parses a rotation grace period (validated by the schema, so a bad one is a bug; it then
/// falls back to the default of 24h rather than failing the reconcile).
pub fn grace_period(text: &str) -> Duration {
    text.parse::<kube::core::Duration>()
        .map(Duration::from)
        .unwrap_or(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_parse_as_go_durations() {
        assert_eq!(grace_period("24h"), Duration::from_secs(86400));
        assert_eq!(grace_period("1h30m"), Duration::from_secs(5400));
        assert_eq!(grace_period("5s"), Duration::from_secs(5));
        assert_eq!(grace_period("nonsense"), Duration::from_secs(86400));
    }
}
