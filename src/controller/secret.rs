//! The I/O of the secret plan: what is known of an object's Secret, and carrying out
//! `Issue`, `Rotate` and `DropPrevious`. Values are written, never read back: a rotation
//! copies the current value to `previous` on the server (a JSON patch guarded by the
//! resourceVersion), so the operator holds a value only between drawing and writing it.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Resource,
    api::{ObjectMeta, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    Context,
    error::{Error, ObjectName, Result, already_exists},
    write::{controller_owner, post_params},
};
use crate::{
    api::HasConditions,
    cache::SecretEntry,
    metrics::SecretLabels,
    model::{
        conditions::ConditionType,
        issuance::{ANNOTATION_PREVIOUS_SEAL, ANNOTATION_SEAL},
        secrets::{
            ANNOTATION_PREVIOUS_EXPIRES, ANNOTATION_ROTATED_AT, ANNOTATION_ROTATION_REQUEST, KEY_CURRENT, KEY_PREVIOUS,
            MIN_SECRET_BYTES, OWN_LABELS, SecretFacts, SecretPlan, SecretValue, generated_labels,
            generated_labels_digest,
        },
    },
};

/// How carrying out a plan ended.
pub enum SecretDone {
    Done,
    /// A Secret of that name exists that the caches did not show: decide again with it.
    Exists(Box<SecretFacts>),
    /// A correction held back this long (`corrections`).
    Held(std::time::Duration),
}

fn api(ctx: &Context, object: &ObjectName) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &object.namespace)
}

/// What is known of an object's Secret that the cache does not hold, read when the object
/// reports its secret not ready (someone else's Secret, which the label-selected watch does
/// not see) or `issued` (its status names a fingerprint): then the Secret was deleted, or its
/// labels were changed so that the watch no longer selects it, and creating it would only be
/// refused. A Secret never issued is not read: it is created directly.
pub async fn read_if_reported<K: HasConditions>(
    ctx: &Context,
    owner: &K,
    issued: bool,
    object: &ObjectName,
    name: &str,
) -> Result<Option<SecretFacts>> {
    let reported_not_ready = owner
        .condition(ConditionType::SecretReady.as_str())
        .is_some_and(|c| c.status != "True");
    if !reported_not_ready && !issued {
        return Ok(None);
    }
    read(ctx, object, name).await
}

async fn read(ctx: &Context, object: &ObjectName, name: &str) -> Result<Option<SecretFacts>> {
    let secret = api(ctx, object)
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            object: object.clone(),
            secret: name.to_owned(),
            source,
        })?;
    Ok(secret.as_ref().map(SecretFacts::of))
}

fn secret_labels<K: Resource<DynamicType = ()>>() -> SecretLabels {
    SecretLabels {
        owner: if K::kind(&()) == "Organization" {
            "organization"
        } else {
            "user"
        },
    }
}

/// Carries out `plan` on Secret `name` of `owner`.
pub async fn carry_out<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner: &K,
    object: &ObjectName,
    name: &str,
    labels: BTreeMap<String, String>,
    plan: SecretPlan,
) -> Result<SecretDone> {
    let secrets = api(ctx, object);
    let (step, patch): (fn(ObjectName, String, kube::Error) -> Error, Value) = match plan {
        SecretPlan::Unchanged => return Ok(SecretDone::Done),
        SecretPlan::Relabel => return relabel(ctx, object, name, &labels).await,
        SecretPlan::Issue {
            value,
            seal,
            rotation_request,
        } => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(generated_labels(&labels)),
                    annotations: Some(BTreeMap::from([
                        (ANNOTATION_ROTATION_REQUEST.to_owned(), rotation_request),
                        (ANNOTATION_SEAL.to_owned(), seal),
                    ])),
                    owner_references: controller_owner(owner).map(|r| vec![r]),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(
                    KEY_CURRENT.to_owned(),
                    ByteString(value.expose().as_bytes().to_vec()),
                )])),
                ..Default::default()
            };
            return match secrets.create(&post_params(), &secret).await {
                Ok(created) => {
                    ctx.cache.anticipate(SecretEntry::of(created));
                    ctx.metrics.secrets_issued.get_or_create(&secret_labels::<K>()).inc();
                    Ok(SecretDone::Done)
                }
                Err(e) if already_exists(&e) => match read(ctx, object, name).await? {
                    Some(facts) => Ok(SecretDone::Exists(Box::new(facts))),
                    None => Err(Error::IssueSecret {
                        object: object.clone(),
                        secret: name.to_owned(),
                        source: e,
                    }),
                },
                Err(source) => Err(Error::IssueSecret {
                    object: object.clone(),
                    secret: name.to_owned(),
                    source,
                }),
            };
        }
        SecretPlan::Rotate {
            value,
            seal,
            request,
            rotated_at,
            expires,
            resource_version,
            annotated,
        } => {
            let annotations = [
                (ANNOTATION_ROTATION_REQUEST, request),
                (ANNOTATION_ROTATED_AT, rotated_at.to_string()),
                (ANNOTATION_PREVIOUS_EXPIRES, expires.to_string()),
                (ANNOTATION_SEAL, seal),
            ];
            let mut ops = vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
                json!({"op": "copy", "from": pointer("data", KEY_CURRENT), "path": pointer("data", KEY_PREVIOUS)}),
                json!({"op": "replace", "path": pointer("data", KEY_CURRENT), "value": STANDARD.encode(value.expose())}),
            ];
            // The plan rotates only a sealed value, so the annotations exist and the current
            // seal moves with its value (before the new seal replaces it).
            if annotated {
                ops.push(json!({"op": "copy", "from": pointer("metadata/annotations", ANNOTATION_SEAL), "path": pointer("metadata/annotations", ANNOTATION_PREVIOUS_SEAL)}));
                ops.extend(
                    annotations
                        .map(|(k, v)| json!({"op": "add", "path": pointer("metadata/annotations", k), "value": v})),
                );
            } else {
                let map: BTreeMap<&str, String> = annotations.into_iter().collect();
                ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": map}));
            }
            (
                |object, secret, source| Error::RotateSecret { object, secret, source },
                Value::Array(ops),
            )
        }
        SecretPlan::DropPrevious {
            resource_version,
            sealed,
        } => {
            let mut ops = vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
                json!({"op": "remove", "path": pointer("data", KEY_PREVIOUS)}),
                json!({"op": "remove", "path": pointer("metadata/annotations", ANNOTATION_PREVIOUS_EXPIRES)}),
            ];
            if sealed {
                ops.push(json!({"op": "remove", "path": pointer("metadata/annotations", ANNOTATION_PREVIOUS_SEAL)}));
            }
            (
                |object, secret, source| Error::DropPreviousSecret { object, secret, source },
                Value::Array(ops),
            )
        }
        SecretPlan::Adopt { resource_version } => (
            |object, secret, source| Error::AdoptSecret { object, secret, source },
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
                {"op": "add", "path": "/metadata/ownerReferences", "value": controller_owner(owner).into_iter().collect::<Vec<_>>()},
            ]),
        ),
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a well-formed JSON patch");
    let patched = secrets
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|source| step(object.clone(), name.to_owned(), source))?;
    let entry = SecretEntry::of(patched);
    if entry.facts.previous.is_some() {
        ctx.metrics.secrets_rotated.get_or_create(&secret_labels::<K>()).inc();
    }
    ctx.cache.anticipate(entry);
    Ok(SecretDone::Done)
}

/// Puts the operator's labels back on Secret `name`: a merge patch of those keys only (other
/// labels are someone else's), the values those of `labels` and `managed-by`, any other of
/// the operator's keys removed. Always a correction of someone else's write, so spaced out
/// when it repeats (`corrections`).
async fn relabel(
    ctx: &Context,
    object: &ObjectName,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<SecretDone> {
    let wanted = generated_labels(labels);
    let digest = generated_labels_digest(labels);
    let key = format!("{}/{name}", object.namespace);
    if let Some(wait) = ctx.corrections.wait("Secret", &key, digest) {
        return Ok(SecretDone::Held(wait));
    }
    let mut patch = serde_json::Map::new();
    for own in OWN_LABELS {
        patch.insert(
            own.to_owned(),
            wanted.get(own).map_or(Value::Null, |v| Value::from(v.as_str())),
        );
    }
    let patched = api(ctx, object)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": patch}})),
        )
        .await
        .map_err(|source| Error::RelabelSecret {
            object: object.clone(),
            secret: name.to_owned(),
            source,
        })?;
    ctx.cache.anticipate(SecretEntry::of(patched));
    if let Some(next) = ctx.corrections.made("Secret", &key, digest, true)
        && next > std::time::Duration::from_secs(1)
    {
        tracing::info!(secret = %key, next_in_s = next.as_secs(), "another writer keeps changing this Secret's labels; corrections are spaced out");
    }
    Ok(SecretDone::Done)
}

/// A JSON pointer to `key` under `parent` ("/" and "~" escaped as RFC 6901 wants).
fn pointer(parent: &str, key: &str) -> String {
    format!("/{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// A new secret of `bytes` random bytes (never fewer than `MIN_SECRET_BYTES`, 256 bits), from
/// the operating system's CSPRNG.
pub fn generate(bytes: usize) -> Result<SecretValue, rand::rand_core::OsError> {
    use rand::{TryRngCore, rngs::OsRng};
    let mut buf = vec![0u8; bytes.max(MIN_SECRET_BYTES)];
    OsRng.try_fill_bytes(&mut buf)?;
    Ok(SecretValue::of_random_bytes(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_requested_entropy_and_are_url_safe() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let s = generate(32).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(s.expose()).unwrap().len(), 32);
        assert!(
            s.expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let long = generate(100).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(long.expose()).unwrap().len(), 100);
        // Never fewer than 256 bits.
        let short = generate(4).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(short.expose()).unwrap().len(), 32);
        let all: std::collections::HashSet<_> = (0..100).map(|_| generate(32).unwrap().expose().to_owned()).collect();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn pointers_escape_annotation_keys() {
        assert_eq!(
            pointer("metadata/annotations", "ce.tenancy.io/rotated-at"),
            "/metadata/annotations/ce.tenancy.io~1rotated-at"
        );
        assert_eq!(pointer("data", "secret"), "/data/secret");
    }
}
