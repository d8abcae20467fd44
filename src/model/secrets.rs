//! Secret values and the pure secret plan.
//!
//! A secret is generated once from the OS CSPRNG (the caller draws it), never overwritten,
//! rotated on request with a grace period for the previous value. The operator never reads a
//! secret back: it knows each Secret by the SHA-256 digests of its values (`SecretFacts`), and
//! rotates with a JSON patch that copies the current value to `previous` on the server.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::{SignedDuration, Timestamp},
};
use sha2::{Digest as _, Sha256};

use super::{
    conditions::{ConditionType, Desired, Event, Reason},
    issuance::{ANNOTATION_PREVIOUS_SEAL, ANNOTATION_SEAL, Holder, HolderKind, IssuanceKey, current_issued, seal},
    names::{LABEL_ACCOUNT, LABEL_MANAGED_BY, LABEL_ORGANIZATION, LABEL_SECRET_OF, LABEL_USER, MANAGER},
};

/// Data key of the current secret.
pub const KEY_CURRENT: &str = "secret";
/// Data key of the previous secret during a rotation's grace period.
pub const KEY_PREVIOUS: &str = "previous";
/// Secret annotation: when the previous secret is removed (RFC 3339).
pub const ANNOTATION_PREVIOUS_EXPIRES: &str = "ce.tenancy.io/previous-expires-at";
/// Secret annotation: the rotation request (annotation value) this Secret has acted on, so
/// that a restart or a lost status never rotates twice.
pub const ANNOTATION_ROTATION_REQUEST: &str = "ce.tenancy.io/rotation-request";
/// Secret annotation: when the current value was issued by a rotation.
pub const ANNOTATION_ROTATED_AT: &str = "ce.tenancy.io/rotated-at";

/// The fewest random bytes a secret may have: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// The SHA-256 digest of a secret value.
pub type Digest = [u8; 32];

/// A secret value. Its Debug output is redacted, so that logging a plan never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// A new secret of these random bytes, as URL-safe base64 without padding. The model
    /// draws no randomness itself: the caller gives at least `MIN_SECRET_BYTES` bytes from the
    /// operating system's CSPRNG (`controller::generate_secret`).
    pub fn of_random_bytes(bytes: &[u8]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A value a caller presented (to the authorization endpoint): held only while it is
    /// digested.
    pub fn from_presented(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// A fixed value, for tests.
    pub fn from_static(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Digest {
        digest(self.0.as_bytes())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(fingerprint {})", fingerprint_of(&self.digest()))
    }
}

pub fn digest(value: &[u8]) -> Digest {
    Sha256::digest(value).into()
}

/// The first 16 hex digits of a secret's SHA-256: enough to tell secrets apart, useless to
/// recover one.
pub fn fingerprint_of(digest: &Digest) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn fingerprint(value: &[u8]) -> String {
    fingerprint_of(&digest(value))
}

/// What the operator knows of a generated Secret: who controls it, the digests of its
/// values and its rotation bookkeeping. Never a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretFacts {
    /// The controller owner reference, if any.
    pub controller: Option<Controller>,
    pub resource_version: Option<String>,
    /// Digest of the `secret` key; None when the key is missing.
    pub current: Option<Digest>,
    /// Digest of the `previous` key, during a rotation's grace period.
    pub previous: Option<Digest>,
    pub previous_expires: Option<Timestamp>,
    /// The rotation request this Secret has acted on ("" when issued without one).
    pub rotation_request: Option<String>,
    pub rotated_at: Option<Timestamp>,
    /// The seals of the current and previous values (`issuance`): a MAC, not a secret.
    pub seal: Option<String>,
    pub previous_seal: Option<String>,
    /// Whether the Secret has annotations at all (a patch adds to the map, or creates it).
    pub annotated: bool,
    /// The operator's labels on it, as `labels_digest` (0: none of them).
    pub labels: u64,
}

/// A controller owner reference, as far as the operator reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controller {
    /// The API group of the owner ("" for the core group).
    pub group: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl SecretFacts {
    pub fn controller_uid(&self) -> Option<&str> {
        self.controller.as_ref().map(|c| c.uid.as_str())
    }
}

/// The label keys the operator sets on the Secrets it generates (and puts back when they are
/// changed); other labels are someone else's and left alone.
pub const OWN_LABELS: [&str; 5] = [
    LABEL_MANAGED_BY,
    LABEL_ORGANIZATION,
    LABEL_ACCOUNT,
    LABEL_USER,
    LABEL_SECRET_OF,
];

/// A digest of the operator's labels among `labels` (`OWN_LABELS`; others are ignored), so
/// that the caches keep eight bytes per Secret rather than its labels. 0 when there are none.
pub fn labels_digest<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut own: Vec<(&str, &str)> = labels.into_iter().filter(|(k, _)| OWN_LABELS.contains(k)).collect();
    if own.is_empty() {
        return 0;
    }
    own.sort_unstable();
    // Fixed keys: the digest is the same in every process and on every run.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    own.hash(&mut hasher);
    hasher.finish()
}

/// The digest of the labels a generated Secret carries (`generated_labels(labels)`), without
/// building them: every reconcile compares it with the Secret's.
pub fn generated_labels_digest(labels: &std::collections::BTreeMap<String, String>) -> u64 {
    labels_digest(
        labels
            .iter()
            .filter(|(k, _)| *k != LABEL_MANAGED_BY)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(LABEL_MANAGED_BY, MANAGER)]),
    )
}

/// The labels a generated Secret carries: the owner's `labels` and `managed-by`.
pub fn generated_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let mut all = labels.clone();
    all.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    all
}

impl SecretFacts {
    pub fn of(secret: &Secret) -> Self {
        let value = |key: &str| secret.data.as_ref()?.get(key).map(|b| digest(&b.0));
        let annotation = |key: &str| secret.metadata.annotations.as_ref()?.get(key).cloned();
        Self {
            controller: secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| Controller {
                    group: r.api_version.rsplit_once('/').map_or("", |(group, _)| group).to_owned(),
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    uid: r.uid.clone(),
                }),
            resource_version: secret.metadata.resource_version.clone(),
            current: value(KEY_CURRENT),
            previous: value(KEY_PREVIOUS),
            previous_expires: annotation(ANNOTATION_PREVIOUS_EXPIRES).and_then(|t| t.parse().ok()),
            rotation_request: annotation(ANNOTATION_ROTATION_REQUEST),
            rotated_at: annotation(ANNOTATION_ROTATED_AT).and_then(|t| t.parse().ok()),
            seal: annotation(ANNOTATION_SEAL),
            previous_seal: annotation(ANNOTATION_PREVIOUS_SEAL),
            annotated: secret.metadata.annotations.as_ref().is_some_and(|a| !a.is_empty()),
            labels: labels_digest(
                secret
                    .metadata
                    .labels
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        }
    }

    /// Whether the previous value still authenticates at `now`.
    pub fn previous_valid_at(&self, now: Timestamp) -> bool {
        self.previous.is_some() && self.previous_expires.is_some_and(|expires| now < expires)
    }
}

#[cfg(test)]
impl SecretFacts {
    /// A Secret as the operator issues it for `holder` (under `IssuanceKey::for_tests`), its
    /// controller `uid`, holding `value`.
    pub fn issued_for(holder: &Holder<'_>, uid: &str, value: &[u8]) -> Self {
        Self {
            controller: Some(Controller {
                group: crate::api::GROUP.into(),
                kind: holder.kind.as_str().into(),
                name: holder.name.into(),
                uid: uid.into(),
            }),
            current: Some(digest(value)),
            seal: Some(seal(&IssuanceKey::for_tests(), holder, &digest(value))),
            rotation_request: Some(String::new()),
            ..Default::default()
        }
    }
}

/// What to do with an object's generated Secret.
#[derive(Debug, PartialEq)]
pub enum SecretPlan {
    /// Create the Secret with this value. `rotation_request` is recorded as acted on (a
    /// request present when the secret is first issued is satisfied by it).
    Issue {
        value: SecretValue,
        /// The value's seal (`issuance::seal`).
        seal: String,
        rotation_request: String,
    },
    /// Move the current value to `previous` and store a new one, if the Secret is still at
    /// `resource_version`.
    Rotate {
        value: SecretValue,
        /// The new value's seal; the current seal becomes the previous one.
        seal: String,
        request: String,
        rotated_at: Timestamp,
        expires: Timestamp,
        resource_version: Option<String>,
        annotated: bool,
    },
    /// Remove the previous value, its grace period over (and its seal, if it has one).
    DropPrevious {
        resource_version: Option<String>,
        sealed: bool,
    },
    /// Make the object the controller of a Secret that has none and holds a value issued
    /// for it: a Secret restored from a backup with its owner references stripped.
    Adopt { resource_version: Option<String> },
    /// Put the operator's labels back (someone else changed them); the data is not touched.
    Relabel,
    /// Nothing to do (including: someone else's Secret, or one without a value, left untouched).
    Unchanged,
}

/// What the owner of a Secret (an Organization, a CEUser) says about it: read from its
/// metadata in one place, for every kind that holds a Secret.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// What the values issued for it are sealed to.
    pub holder: Holder<'a>,
    pub uid: Option<&'a str>,
    /// Its rotation annotation.
    pub requested_rotation: Option<&'a str>,
    /// Until when its missing Secret may still be restored (`restore_wait_until`): no value
    /// is issued before, so that a restore in any order keeps every secret.
    pub restore_wait_until: Option<Timestamp>,
}

impl<'a> Owner<'a> {
    pub fn of(kind: HolderKind, meta: &'a ObjectMeta) -> Self {
        Self {
            holder: Holder {
                namespace: meta.namespace.as_deref().unwrap_or_default(),
                kind,
                name: meta.name.as_deref().unwrap_or_default(),
            },
            uid: meta.uid.as_deref(),
            requested_rotation: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(super::names::ROTATE_ANNOTATION))
                .map(String::as_str),
            restore_wait_until: restore_wait_until(meta),
        }
    }
}

/// Everything the secret plan depends on.
pub struct SecretInputs<'a> {
    /// The Secret's name, for messages.
    pub name: &'a str,
    /// The object the Secret is for, as its metadata describes it.
    pub owner: Owner<'a>,
    /// The key the operator seals the values it issues with.
    pub key: &'a IssuanceKey,
    /// The Secret as known (None: it does not exist).
    pub observed: Option<&'a SecretFacts>,
    /// The fingerprint of the secret the owner's status reports (Some: a secret was issued
    /// before, so a missing Secret was deleted by someone).
    pub reported_fingerprint: Option<&'a str>,
    /// A fresh value, drawn by the caller, used if one is issued.
    pub fresh: &'a SecretValue,
    /// The labels the Secret carries besides `managed-by` (`generated_labels`).
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub grace: Duration,
    pub now: Timestamp,
}

/// The plan and what the owner reports about its secret.
#[derive(Debug, PartialEq)]
pub struct SecretOutcome {
    pub plan: SecretPlan,
    /// SecretReady.
    pub condition: Desired,
    pub fingerprint: Option<String>,
    pub last_rotation_time: Option<Time>,
    pub last_rotation_request: Option<String>,
    /// When the previous value is due to be removed.
    pub requeue_after: Option<Duration>,
    pub events: Vec<Event>,
}

impl SecretOutcome {
    fn refused(reason: Reason, message: String) -> Self {
        Self {
            plan: SecretPlan::Unchanged,
            condition: Desired::new(ConditionType::SecretReady, reason, message),
            fingerprint: None,
            last_rotation_time: None,
            last_rotation_request: None,
            requeue_after: None,
            events: Vec::new(),
        }
    }
}

fn issued(name: &str) -> Desired {
    Desired::new(
        ConditionType::SecretReady,
        Reason::SecretIssued,
        format!("the secret is in Secret {name}, key `{KEY_CURRENT}`"),
    )
}

fn non_empty(request: Option<&str>) -> Option<String> {
    request.filter(|r| !r.is_empty()).map(str::to_owned)
}

/// How long a restored object waits for its Secret before a new one is issued: long enough
/// for a restore of thousands of objects in any order (`kubectl apply` of 2,000 objects takes
/// about a minute), short enough that a restore without Secrets soon gets new ones.
pub const RESTORE_WAIT: Duration = Duration::from_secs(300);

/// Until when the object described by `meta` waits for a restored Secret: it carries the
/// restore policy's annotation, and was created less than `RESTORE_WAIT` ago.
pub fn restore_wait_until(meta: &ObjectMeta) -> Option<Timestamp> {
    let restored = meta
        .annotations
        .as_ref()?
        .contains_key(super::names::RESTORED_ANNOTATION);
    let created = meta.creation_timestamp.as_ref()?.0;
    restored.then(|| created + SignedDuration::try_from(RESTORE_WAIT).unwrap_or(SignedDuration::ZERO))
}

/// Decides what to do with an object's Secret: issue it, rotate it on request, drop the
/// previous value after the grace period, or leave it as it is. A Secret the object does not
/// control, one without a value and one whose value the operator did not issue are never
/// written (they authenticate nobody: `issuance::vouches`), except that a Secret with no
/// controller holding a value issued for this object is adopted (a restore).
pub fn plan(inputs: &SecretInputs<'_>) -> SecretOutcome {
    let name = inputs.name;
    let owner_kind = inputs.owner.holder.kind.as_str();
    let Some(facts) = inputs.observed else {
        if let Some(until) = inputs.owner.restore_wait_until.filter(|until| *until > inputs.now)
            && inputs.reported_fingerprint.is_none()
        {
            let wait = inputs.now.duration_until(until).unsigned_abs();
            return SecretOutcome {
                requeue_after: Some(wait),
                ..SecretOutcome::refused(
                    Reason::SecretAwaitingRestore,
                    format!(
                        "this {owner_kind} was restored and Secret {name} is not back yet; it is adopted when it comes, or a new secret is issued in {}s",
                        wait.as_secs().max(1)
                    ),
                )
            };
        }
        let request = inputs.owner.requested_rotation.unwrap_or_default().to_owned();
        let event = if inputs.reported_fingerprint.is_some() {
            Event::warning(
                Reason::SecretRecreated,
                format!(
                    "Secret {name} was deleted; a new secret was issued, and clients holding the old one must get the new one"
                ),
            )
        } else {
            Event::normal(Reason::SecretIssued, format!("issued a new secret into Secret {name}"))
        };
        let digest = inputs.fresh.digest();
        return SecretOutcome {
            condition: issued(name),
            fingerprint: Some(fingerprint_of(&digest)),
            last_rotation_time: None,
            last_rotation_request: non_empty(Some(&request)),
            requeue_after: None,
            events: vec![event],
            plan: SecretPlan::Issue {
                value: inputs.fresh.clone(),
                seal: seal(inputs.key, &inputs.owner.holder, &digest),
                rotation_request: request,
            },
        };
    };
    let sealed = current_issued(inputs.key, &inputs.owner.holder, facts);
    if inputs.owner.uid.is_none() || facts.controller_uid() != inputs.owner.uid {
        if let (None, Some(current), true) = (&facts.controller, facts.current, sealed)
            && inputs.owner.uid.is_some()
            && inputs
                .reported_fingerprint
                .is_none_or(|f| f == fingerprint_of(&current))
        {
            return adopt(inputs, facts, &current);
        }
        return SecretOutcome::refused(
            Reason::SecretConflict,
            format!(
                "Secret {name} already exists and is not owned by this {owner_kind}; it is left untouched. Delete or rename it to have a secret issued"
            ),
        );
    }
    let Some(current) = facts.current else {
        return SecretOutcome::refused(
            Reason::SecretInvalid,
            format!(
                "Secret {name} has no key `{KEY_CURRENT}`; it is left untouched. Delete it to have a new secret issued"
            ),
        );
    };
    if !sealed {
        return SecretOutcome::refused(
            Reason::SecretUnverified,
            format!(
                "Secret {name} holds a value this operator did not issue (written or changed by someone else, or sealed with another issuance key); it authenticates nobody and is left untouched. Delete it to have a new secret issued"
            ),
        );
    }
    if let Some(request) = inputs
        .owner
        .requested_rotation
        .filter(|r| Some(*r) != facts.rotation_request.as_deref())
    {
        let expires = inputs.now + SignedDuration::try_from(inputs.grace).unwrap_or(SignedDuration::ZERO);
        let digest = inputs.fresh.digest();
        let new_fingerprint = fingerprint_of(&digest);
        return SecretOutcome {
            condition: issued(name),
            fingerprint: Some(new_fingerprint.clone()),
            last_rotation_time: Some(Time(inputs.now)),
            last_rotation_request: non_empty(Some(request)),
            requeue_after: Some(inputs.grace + Duration::from_secs(1)),
            events: vec![rotated_event(&new_fingerprint, &fingerprint_of(&current), expires)],
            plan: SecretPlan::Rotate {
                value: inputs.fresh.clone(),
                seal: seal(inputs.key, &inputs.owner.holder, &digest),
                request: request.to_owned(),
                rotated_at: inputs.now,
                expires,
                resource_version: facts.resource_version.clone(),
                annotated: facts.annotated,
            },
        };
    }
    let mut outcome = kept(facts, &current, name);
    if let (Some(_), Some(expires)) = (facts.previous, facts.previous_expires) {
        let left = expires.duration_since(inputs.now);
        if left <= SignedDuration::ZERO {
            outcome.plan = SecretPlan::DropPrevious {
                resource_version: facts.resource_version.clone(),
                sealed: facts.previous_seal.is_some(),
            };
            outcome.events.push(Event::normal(
                Reason::PreviousSecretRemoved,
                format!("the grace period ended; the previous secret was removed from Secret {name}"),
            ));
        } else {
            // Wake up when the grace period ends (plus a second: timestamps are whole seconds).
            outcome.requeue_after = Some(left.unsigned_abs() + Duration::from_secs(1));
        }
    }
    if outcome.plan == SecretPlan::Unchanged && facts.labels != generated_labels_digest(inputs.labels) {
        outcome.plan = SecretPlan::Relabel;
    }
    outcome
}

/// The outcome of a Secret kept as it is.
fn kept(facts: &SecretFacts, current: &Digest, name: &str) -> SecretOutcome {
    SecretOutcome {
        plan: SecretPlan::Unchanged,
        condition: issued(name),
        fingerprint: Some(fingerprint_of(current)),
        last_rotation_time: facts.rotated_at.map(Time),
        last_rotation_request: non_empty(facts.rotation_request.as_deref()),
        requeue_after: None,
        events: Vec::new(),
    }
}

/// A Secret with no controller whose value was issued for this object: restored from a
/// backup whose tool stripped the owner references. Adopting it keeps every client working.
/// Not when the owner reports another fingerprint: then this is an old value put back by
/// someone, not a restore (a restore brings no status).
fn adopt(inputs: &SecretInputs<'_>, facts: &SecretFacts, current: &Digest) -> SecretOutcome {
    let mut outcome = kept(facts, current, inputs.name);
    outcome.plan = SecretPlan::Adopt {
        resource_version: facts.resource_version.clone(),
    };
    outcome.events.push(Event::normal(
        Reason::SecretAdopted,
        format!(
            "adopted Secret {}, which holds a secret this operator issued for this {} (fingerprint {}): restored from a backup; clients keep working",
            inputs.name,
            inputs.owner.holder.kind.as_str(),
            fingerprint_of(current)
        ),
    ));
    outcome
}

/// The activity event of a rotation (fingerprints only).
pub fn rotated_event(new: &str, old: &str, expires: Timestamp) -> Event {
    Event::normal(
        Reason::SecretRotated,
        format!(
            "issued a new secret (fingerprint {new}); the previous one (fingerprint {old}) stays valid until {expires}"
        ),
    )
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
    use crate::model::issuance::verifies;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    static KEY: std::sync::LazyLock<IssuanceKey> = std::sync::LazyLock::new(IssuanceKey::for_tests);

    const JANE: Holder<'static> = Holder {
        namespace: "t",
        kind: HolderKind::CEUser,
        name: "jane",
    };

    const JANE_OWNER: Owner<'static> = Owner {
        holder: JANE,
        uid: Some("uid-jane"),
        requested_rotation: None,
        restore_wait_until: None,
    };

    fn inputs<'a>(observed: Option<&'a SecretFacts>, fresh: &'a SecretValue) -> SecretInputs<'a> {
        SecretInputs {
            name: "jane-user-secret",
            owner: JANE_OWNER,
            key: &KEY,
            observed,
            reported_fingerprint: None,
            fresh,
            labels: jane_labels(),
            grace: Duration::from_secs(60),
            now: at(1000),
        }
    }

    /// The labels of jane's Secret, besides `managed-by`.
    fn jane_labels() -> &'static std::collections::BTreeMap<String, String> {
        static LABELS: std::sync::LazyLock<std::collections::BTreeMap<String, String>> =
            std::sync::LazyLock::new(|| {
                [
                    (LABEL_USER, "jane"),
                    (LABEL_ACCOUNT, "eu"),
                    (LABEL_ORGANIZATION, "acme"),
                    (LABEL_SECRET_OF, "user"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
            });
        &LABELS
    }

    fn digest_of(labels: &std::collections::BTreeMap<String, String>) -> u64 {
        labels_digest(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Jane's Secret as the operator issued it, holding `current`.
    fn owned(current: &str) -> SecretFacts {
        SecretFacts {
            controller: Some(Controller {
                group: crate::api::GROUP.into(),
                kind: "CEUser".into(),
                name: "jane".into(),
                uid: "uid-jane".into(),
            }),
            resource_version: Some("7".into()),
            current: Some(digest(current.as_bytes())),
            seal: Some(seal(&KEY, &JANE, &digest(current.as_bytes()))),
            rotation_request: Some(String::new()),
            labels: generated_labels_digest(jane_labels()),
            ..Default::default()
        }
    }

    #[test]
    fn changed_labels_are_put_back_on_an_owned_secret_only() {
        assert_eq!(
            generated_labels_digest(jane_labels()),
            digest_of(&generated_labels(jane_labels())),
            "the digest of the generated labels, computed without building them"
        );
        let fresh = SecretValue::from_static("new");
        assert_eq!(plan(&inputs(Some(&owned("v")), &fresh)).plan, SecretPlan::Unchanged);
        // Another value, a label missing (managed-by: the Secret left the operator's watch),
        // all of them gone: put back.
        let mut wrong = generated_labels(jane_labels());
        wrong.insert(LABEL_ACCOUNT.into(), "intruder".into());
        let mut unmanaged = generated_labels(jane_labels());
        unmanaged.remove(LABEL_MANAGED_BY);
        for labels in [digest_of(&wrong), digest_of(&unmanaged), 0] {
            let facts = SecretFacts { labels, ..owned("v") };
            let outcome = plan(&inputs(Some(&facts), &fresh));
            assert_eq!(outcome.plan, SecretPlan::Relabel);
            assert_eq!(outcome.fingerprint, Some(fingerprint(b"v")), "the value is kept");
            assert!(outcome.events.is_empty());
        }
        // Labels that are not the operator's do not count.
        let mut extra = generated_labels(jane_labels());
        extra.insert("backup".into(), "daily".into());
        let facts = SecretFacts {
            labels: digest_of(&extra),
            ..owned("v")
        };
        assert_eq!(plan(&inputs(Some(&facts), &fresh)).plan, SecretPlan::Unchanged);
        // Someone else's Secret, or one without a value, is left untouched, labels and all.
        let mut foreign = SecretFacts {
            labels: 0,
            ..owned("v")
        };
        foreign.controller.as_mut().unwrap().uid = "uid-other".into();
        assert_eq!(plan(&inputs(Some(&foreign), &fresh)).plan, SecretPlan::Unchanged);
        let invalid = SecretFacts {
            current: None,
            labels: 0,
            ..owned("v")
        };
        assert_eq!(plan(&inputs(Some(&invalid), &fresh)).plan, SecretPlan::Unchanged);
    }

    #[test]
    fn fingerprint_is_a_sha256_prefix_and_debug_never_shows_the_value() {
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01cfea");
        let value = SecretValue::from_static("abc");
        assert_eq!(format!("{value:?}"), "SecretValue(fingerprint ba7816bf8f01cfea)");
    }

    #[test]
    fn an_absent_secret_is_issued_and_a_deleted_one_reissued_with_a_warning() {
        let fresh = SecretValue::from_static("new");
        let outcome = plan(&inputs(None, &fresh));
        assert!(
            matches!(&outcome.plan, SecretPlan::Issue { value, rotation_request, .. } if value == &fresh && rotation_request.is_empty())
        );
        let SecretPlan::Issue { seal: issued_seal, .. } = &outcome.plan else {
            unreachable!()
        };
        assert!(verifies(&KEY, &JANE, &fresh.digest(), Some(issued_seal)));
        assert_eq!(outcome.fingerprint, Some(fingerprint(b"new")));
        assert!(outcome.condition.status());
        assert_eq!(
            outcome.events,
            vec![Event::normal(
                Reason::SecretIssued,
                "issued a new secret into Secret jane-user-secret"
            )]
        );

        let recreated = plan(&SecretInputs {
            reported_fingerprint: Some("0123456789abcdef"),
            ..inputs(None, &fresh)
        });
        assert!(matches!(recreated.plan, SecretPlan::Issue { .. }));
        assert!(recreated.events[0].warning && recreated.events[0].reason == Reason::SecretRecreated);
    }

    #[test]
    fn a_restored_object_waits_for_its_secret_then_issues() {
        let fresh = SecretValue::from_static("new");
        let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            creation_timestamp: Some(Time(at(100))),
            ..Default::default()
        };
        assert_eq!(restore_wait_until(&meta), None, "not restored: no wait");
        meta.annotations = Some([(crate::model::names::RESTORED_ANNOTATION.to_owned(), "true".to_owned())].into());
        let until = restore_wait_until(&meta);
        assert_eq!(until, Some(at(100 + RESTORE_WAIT.as_secs() as i64)));
        let restored = |now, reported| {
            plan(&SecretInputs {
                owner: Owner {
                    restore_wait_until: until,
                    ..JANE_OWNER
                },
                reported_fingerprint: reported,
                now: at(now),
                ..inputs(None, &fresh)
            })
        };
        let waiting = restored(110, None);
        assert_eq!(waiting.plan, SecretPlan::Unchanged);
        assert_eq!(waiting.condition.reason, Reason::SecretAwaitingRestore);
        assert_eq!(waiting.requeue_after, Some(RESTORE_WAIT - Duration::from_secs(10)));
        assert!(waiting.events.is_empty());
        let over = 100 + RESTORE_WAIT.as_secs() as i64;
        assert!(
            matches!(restored(over, None).plan, SecretPlan::Issue { .. }),
            "the wait is over"
        );
        // A Secret deleted after one was issued is not awaited.
        assert!(matches!(
            restored(110, Some("0123456789abcdef")).plan,
            SecretPlan::Issue { .. }
        ));
    }

    #[test]
    fn a_request_present_at_issue_is_satisfied_by_it() {
        let fresh = SecretValue::from_static("new");
        let outcome = plan(&SecretInputs {
            owner: Owner {
                requested_rotation: Some("r1"),
                ..JANE_OWNER
            },
            ..inputs(None, &fresh)
        });
        assert!(matches!(&outcome.plan, SecretPlan::Issue { rotation_request, .. } if rotation_request == "r1"));
        assert_eq!(outcome.last_rotation_request.as_deref(), Some("r1"));
    }

    #[test]
    fn a_foreign_or_invalid_secret_is_left_untouched() {
        let fresh = SecretValue::from_static("new");
        // No controller, and a value not issued for jane.
        let foreign = SecretFacts {
            controller: None,
            seal: None,
            ..owned("x")
        };
        let outcome = plan(&inputs(Some(&foreign), &fresh));
        assert_eq!(outcome.plan, SecretPlan::Unchanged);
        assert_eq!(outcome.condition.reason, Reason::SecretConflict);
        assert!(!outcome.condition.status());
        assert_eq!(outcome.fingerprint, None);

        let mut other_owner = owned("x");
        other_owner.controller.as_mut().unwrap().uid = "someone-else".into();
        assert_eq!(
            plan(&inputs(Some(&other_owner), &fresh)).condition.reason,
            Reason::SecretConflict
        );

        let invalid = SecretFacts {
            current: None,
            ..owned("x")
        };
        let outcome = plan(&inputs(Some(&invalid), &fresh));
        assert_eq!(outcome.plan, SecretPlan::Unchanged);
        assert_eq!(outcome.condition.reason, Reason::SecretInvalid);
    }

    #[test]
    fn an_owned_secret_at_rest_is_unchanged() {
        let fresh = SecretValue::from_static("new");
        let facts = owned("current");
        let outcome = plan(&inputs(Some(&facts), &fresh));
        assert_eq!(outcome.plan, SecretPlan::Unchanged);
        assert_eq!(outcome.fingerprint, Some(fingerprint(b"current")));
        assert!(outcome.events.is_empty() && outcome.requeue_after.is_none());
    }

    #[test]
    fn a_new_request_rotates_once_with_the_grace_period() {
        let fresh = SecretValue::from_static("new");
        let facts = owned("current");
        let outcome = plan(&SecretInputs {
            owner: Owner {
                requested_rotation: Some("r1"),
                ..JANE_OWNER
            },
            ..inputs(Some(&facts), &fresh)
        });
        match &outcome.plan {
            SecretPlan::Rotate {
                value,
                request,
                rotated_at,
                expires,
                resource_version,
                ..
            } => {
                assert_eq!(value, &fresh);
                assert_eq!(request, "r1");
                assert_eq!(*rotated_at, at(1000));
                assert_eq!(*expires, at(1060));
                assert_eq!(resource_version.as_deref(), Some("7"));
            }
            other => panic!("expected a rotation, got {other:?}"),
        }
        assert_eq!(outcome.fingerprint, Some(fingerprint(b"new")));
        assert_eq!(outcome.last_rotation_request.as_deref(), Some("r1"));
        assert_eq!(outcome.requeue_after, Some(Duration::from_secs(61)));
        assert_eq!(outcome.events[0].reason, Reason::SecretRotated);
        assert!(outcome.events[0].note.contains(&fingerprint(b"current")));

        // The same request again, once acted on, does nothing.
        let acted = SecretFacts {
            rotation_request: Some("r1".into()),
            ..owned("new")
        };
        let again = plan(&SecretInputs {
            owner: Owner {
                requested_rotation: Some("r1"),
                ..JANE_OWNER
            },
            ..inputs(Some(&acted), &fresh)
        });
        assert_eq!(again.plan, SecretPlan::Unchanged);
    }

    #[test]
    fn the_previous_value_waits_for_its_grace_period_then_goes() {
        let fresh = SecretValue::from_static("new");
        let rotated = SecretFacts {
            previous: Some(digest(b"old")),
            previous_expires: Some(at(1030)),
            rotated_at: Some(at(970)),
            rotation_request: Some("r1".into()),
            ..owned("current")
        };
        let waiting = plan(&inputs(Some(&rotated), &fresh));
        assert_eq!(waiting.plan, SecretPlan::Unchanged);
        assert_eq!(waiting.requeue_after, Some(Duration::from_secs(31)));
        assert_eq!(waiting.last_rotation_time, Some(Time(at(970))));
        assert!(rotated.previous_valid_at(at(1029)) && !rotated.previous_valid_at(at(1030)));

        let expired = plan(&SecretInputs {
            now: at(1030),
            ..inputs(Some(&rotated), &fresh)
        });
        assert_eq!(
            expired.plan,
            SecretPlan::DropPrevious {
                resource_version: Some("7".into()),
                sealed: false,
            }
        );
        assert_eq!(expired.events[0].reason, Reason::PreviousSecretRemoved);
        assert_eq!(expired.fingerprint, Some(fingerprint(b"current")));
    }

    #[test]
    fn a_value_the_operator_did_not_issue_is_reported_and_left_untouched() {
        let fresh = SecretValue::from_static("new");
        // Changed by hand (the seal is the old value's), planted at the generated name with
        // jane as controller and no seal, or sealed for someone else.
        let changed = SecretFacts {
            current: Some(digest(b"chosen")),
            ..owned("v")
        };
        let planted = SecretFacts {
            seal: None,
            ..owned("v")
        };
        let bobs = SecretFacts {
            seal: Some(seal(&KEY, &Holder { name: "bob", ..JANE }, &digest(b"v"))),
            ..owned("v")
        };
        for facts in [changed, planted, bobs] {
            // Even when a rotation is requested: rotating would seal the unverified value as
            // the previous one.
            for requested_rotation in [None, Some("r9")] {
                let outcome = plan(&SecretInputs {
                    owner: Owner {
                        requested_rotation,
                        ..JANE_OWNER
                    },
                    ..inputs(Some(&facts), &fresh)
                });
                assert_eq!(outcome.plan, SecretPlan::Unchanged);
                assert_eq!(outcome.condition.reason, Reason::SecretUnverified);
                assert!(!outcome.condition.status());
                assert_eq!(
                    outcome.fingerprint, None,
                    "an unverified value has no fingerprint in status"
                );
                assert!(outcome.condition.message.contains("Delete it"));
            }
        }
    }

    #[test]
    fn a_restored_secret_is_adopted_and_a_planted_one_is_not() {
        let fresh = SecretValue::from_static("new");
        // A restore: owner references stripped, seal kept, the owner's status empty.
        let restored = SecretFacts {
            controller: None,
            ..owned("v")
        };
        let outcome = plan(&inputs(Some(&restored), &fresh));
        assert_eq!(
            outcome.plan,
            SecretPlan::Adopt {
                resource_version: Some("7".into())
            }
        );
        assert_eq!(outcome.fingerprint, Some(fingerprint(b"v")), "the value is kept");
        assert_eq!(outcome.events[0].reason, Reason::SecretAdopted);
        assert!(outcome.condition.status());
        // The owner reports this very value (the status came back too): adopted.
        let same = plan(&SecretInputs {
            reported_fingerprint: Some(&fingerprint(b"v")),
            ..inputs(Some(&restored), &fresh)
        });
        assert!(matches!(same.plan, SecretPlan::Adopt { .. }));
        // The owner reports another value: an old value put back, not a restore.
        let replayed = plan(&SecretInputs {
            reported_fingerprint: Some(&fingerprint(b"newer")),
            ..inputs(Some(&restored), &fresh)
        });
        assert_eq!(replayed.condition.reason, Reason::SecretConflict);
        // No seal, or a seal for someone else: planted, never adopted.
        for seal_of in [None, Some(seal(&KEY, &Holder { name: "bob", ..JANE }, &digest(b"v")))] {
            let planted = SecretFacts {
                seal: seal_of,
                ..restored.clone()
            };
            let outcome = plan(&inputs(Some(&planted), &fresh));
            assert_eq!(outcome.plan, SecretPlan::Unchanged);
            assert_eq!(outcome.condition.reason, Reason::SecretConflict);
        }
        // A Secret controlled by another object is never taken, sealed or not.
        let mut other = owned("v");
        other.controller.as_mut().unwrap().uid = "uid-before-restore".into();
        assert_eq!(
            plan(&inputs(Some(&other), &fresh)).condition.reason,
            Reason::SecretConflict
        );
    }

    #[test]
    fn a_rotation_seals_the_new_value_and_the_drop_removes_the_previous_seal() {
        let fresh = SecretValue::from_static("new");
        let outcome = plan(&SecretInputs {
            owner: Owner {
                requested_rotation: Some("r1"),
                ..JANE_OWNER
            },
            ..inputs(Some(&owned("current")), &fresh)
        });
        let SecretPlan::Rotate { seal: new_seal, .. } = &outcome.plan else {
            panic!("expected a rotation, got {:?}", outcome.plan)
        };
        assert!(verifies(&KEY, &JANE, &digest(b"new"), Some(new_seal)));
        let rotated = SecretFacts {
            previous: Some(digest(b"current")),
            previous_expires: Some(at(900)),
            previous_seal: owned("current").seal,
            ..owned("new")
        };
        assert!(matches!(
            plan(&inputs(Some(&rotated), &fresh)).plan,
            SecretPlan::DropPrevious { sealed: true, .. }
        ));
    }

    #[test]
    fn grace_periods_parse_as_go_durations() {
        assert_eq!(grace_period("24h"), Duration::from_secs(86400));
        assert_eq!(grace_period("1h30m"), Duration::from_secs(5400));
        assert_eq!(grace_period("5s"), Duration::from_secs(5));
        assert_eq!(grace_period("nonsense"), Duration::from_secs(86400));
    }

    /// What the caches keep of a Secret: its controller, version, the digests of its values,
    /// the previous value's expiry and its labels' digest, read from the Secret itself.
    #[test]
    fn the_facts_of_a_secret_are_read_from_it() {
        use k8s_openapi::{ByteString, api::core::v1::Secret};
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "jane-user-secret", "namespace": "t", "resourceVersion": "42",
                "labels": {"app.kubernetes.io/managed-by": "ce-operator"},
                "annotations": {ANNOTATION_PREVIOUS_EXPIRES: "2026-01-01T00:00:00Z"},
                "ownerReferences": [{"apiVersion": "ce.tenancy.io/v1alpha1", "kind": "CEUser", "name": "jane", "uid": "u1", "controller": true}],
            },
        }))
        .unwrap();
        let mut secret = secret;
        secret.data = Some(
            [(KEY_CURRENT, "now"), (KEY_PREVIOUS, "before")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        let facts = SecretFacts::of(&secret);
        let controller = facts.controller.expect("its controller");
        assert_eq!(
            (controller.group.as_str(), controller.kind.as_str()),
            ("ce.tenancy.io", "CEUser")
        );
        assert_eq!((controller.name.as_str(), controller.uid.as_str()), ("jane", "u1"));
        assert_eq!(facts.resource_version.as_deref(), Some("42"));
        assert_eq!(facts.current, Some(digest(b"now")));
        assert_eq!(facts.previous, Some(digest(b"before")));
        assert_eq!(facts.previous_expires, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(
            facts.labels,
            generated_labels_digest(&std::collections::BTreeMap::new())
        );
        assert!(facts.annotated, "a Secret with annotations");
        secret.metadata.annotations = None;
        assert!(!SecretFacts::of(&secret).annotated, "a Secret without");
    }
}
