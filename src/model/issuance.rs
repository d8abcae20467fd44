//! Which secret values the operator issued, and so which Secrets authenticate.
//!
//! Beside every value it writes, the operator records a seal: an HMAC-SHA256, under its
//! issuance key, of the value's digest and the object the value was issued for (namespace,
//! kind, name). Anyone with Secret rights in a tenant namespace can write a Secret that
//! names a CEUser as its controller, but not its seal; so only the Secret the operator
//! issued, at its generated name, authenticates, and a value changed by hand stops
//! authenticating (its owner reports `SecretUnverified`). The seal survives a backup: a
//! restored Secret whose seal verifies is the operator's, whatever uid its owner reference
//! names (the restore rule), as long as the key is restored with it.
//!
//! The key comes from the caller (`runtime` keeps it in a Secret of the operator's
//! namespace), so this stays pure.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use k8s_openapi::jiff::Timestamp;
use ring::hmac;

use super::{
    authz::Matched,
    names,
    secrets::{Digest, SecretFacts},
};
use crate::api::GROUP;

/// Secret annotation: the seal of the current value.
pub const ANNOTATION_SEAL: &str = "ce.tenancy.io/seal";
/// Secret annotation: the seal of the previous value, during a rotation's grace period.
pub const ANNOTATION_PREVIOUS_SEAL: &str = "ce.tenancy.io/previous-seal";
/// Bytes of an issuance key.
pub const KEY_BYTES: usize = 32;

/// The operator's issuance key. Its Debug output is redacted.
pub struct IssuanceKey(hmac::Key);

/// An issuance key shorter than `KEY_BYTES`.
#[derive(Debug, thiserror::Error)]
#[error("an issuance key needs at least {KEY_BYTES} bytes, this one has {0}")]
pub struct KeyTooShort(pub usize);

impl IssuanceKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyTooShort> {
        if bytes.len() < KEY_BYTES {
            return Err(KeyTooShort(bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// A fixed key, for tests.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self::from_bytes(&[7; KEY_BYTES]).expect("long enough")
    }
}

impl std::fmt::Debug for IssuanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuanceKey(redacted)")
    }
}

/// The kinds that hold a generated secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderKind {
    Organization,
    CEUser,
}

impl HolderKind {
    pub fn of(kind: &str) -> Option<Self> {
        match kind {
            "Organization" => Some(Self::Organization),
            "CEUser" => Some(Self::CEUser),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "Organization",
            Self::CEUser => "CEUser",
        }
    }

    /// The name of the Secret the operator generates for the object `name` of this kind.
    pub fn secret_name(self, name: &str) -> String {
        match self {
            Self::Organization => names::organization_secret(name),
            Self::CEUser => names::user_secret(name),
        }
    }
}

/// The object a value is issued for: what its seal binds it to. Not the uid: a restore
/// gives every object a new one, and the value must stay the object's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub namespace: &'a str,
    pub kind: HolderKind,
    pub name: &'a str,
}

impl Holder<'_> {
    fn message(&self, digest: &Digest) -> Vec<u8> {
        // Length-prefixed fields: no two holders share a message.
        let mut message = Vec::with_capacity(96);
        for field in [
            "ce-operator issued secret v1".as_bytes(),
            self.namespace.as_bytes(),
            self.kind.as_str().as_bytes(),
            self.name.as_bytes(),
            digest,
        ] {
            message.extend_from_slice(&(field.len() as u32).to_be_bytes());
            message.extend_from_slice(field);
        }
        message
    }
}

/// The seal of a value with this digest issued for `holder`, as the annotation holds it.
pub fn seal(key: &IssuanceKey, holder: &Holder<'_>, digest: &Digest) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(&key.0, &holder.message(digest)))
}

/// Whether `seal` is the seal of this digest for `holder` (compared in constant time).
pub fn verifies(key: &IssuanceKey, holder: &Holder<'_>, digest: &Digest, seal: Option<&str>) -> bool {
    let Some(tag) = seal.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()) else {
        return false;
    };
    hmac::verify(&key.0, &holder.message(digest), &tag).is_ok()
}

/// Whether the current value of a Secret is one the operator issued for `holder`.
pub fn current_issued(key: &IssuanceKey, holder: &Holder<'_>, facts: &SecretFacts) -> bool {
    facts
        .current
        .is_some_and(|d| verifies(key, holder, &d, facts.seal.as_deref()))
}

/// The object a Secret authenticates as, when a caller presents a value with digest
/// `presented`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vouched {
    pub kind: HolderKind,
    pub name: String,
    /// The uid the Secret's controller reference names (the caller checks that it is the
    /// object that exists now).
    pub uid: String,
    pub matched: Matched,
}

/// Whether Secret `secret_name` of `namespace`, as `facts` describe it, authenticates a
/// presented value, and as whom. Only the Secret the operator issued does: its controller
/// reference names a kind of this API group; it has the generated name of that object; and
/// the value matched is the current one, or the previous one within its grace period, with
/// its seal. Everything else (a planted Secret, a value changed by hand, a previous value
/// without its seal) authenticates nobody.
pub fn vouches(
    key: &IssuanceKey,
    namespace: &str,
    secret_name: &str,
    facts: &SecretFacts,
    presented: &Digest,
    now: Timestamp,
) -> Option<Vouched> {
    let controller = facts.controller.as_ref()?;
    if controller.group != GROUP {
        return None;
    }
    let kind = HolderKind::of(&controller.kind)?;
    if kind.secret_name(&controller.name) != secret_name {
        return None;
    }
    let holder = Holder {
        namespace,
        kind,
        name: &controller.name,
    };
    let matched = super::authz::matched(facts, presented, now)?;
    let seal = match matched {
        Matched::Current => facts.seal.as_deref(),
        Matched::Previous => facts.previous_seal.as_deref(),
    };
    verifies(key, &holder, presented, seal).then(|| Vouched {
        kind,
        name: controller.name.clone(),
        uid: controller.uid.clone(),
        matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::secrets::{Controller, digest};

    const NS: &str = "t";

    fn jane() -> Holder<'static> {
        Holder {
            namespace: NS,
            kind: HolderKind::CEUser,
            name: "jane",
        }
    }

    /// Jane's Secret as the operator issues it, holding `value`.
    fn issued(key: &IssuanceKey, value: &[u8]) -> SecretFacts {
        SecretFacts {
            controller: Some(Controller {
                group: GROUP.into(),
                kind: "CEUser".into(),
                name: "jane".into(),
                uid: "uid-jane".into(),
            }),
            current: Some(digest(value)),
            seal: Some(seal(key, &jane(), &digest(value))),
            ..Default::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn the_issued_secret_vouches_for_its_holder() {
        let key = IssuanceKey::for_tests();
        let facts = issued(&key, b"v");
        let vouched = vouches(&key, NS, "jane-user-secret", &facts, &digest(b"v"), at(0)).unwrap();
        assert_eq!(
            vouched,
            Vouched {
                kind: HolderKind::CEUser,
                name: "jane".into(),
                uid: "uid-jane".into(),
                matched: Matched::Current,
            }
        );
        assert!(vouches(&key, NS, "jane-user-secret", &facts, &digest(b"other"), at(0)).is_none());
    }

    #[test]
    fn a_planted_secret_vouches_for_nobody() {
        let key = IssuanceKey::for_tests();
        let good = issued(&key, b"v");
        let v = digest(b"v");
        let vouch = |name: &str, facts: &SecretFacts| vouches(&key, NS, name, facts, &v, at(0));
        // Another name, same content: a copy does not authenticate.
        assert!(vouch("any-name", &good).is_none());
        // No seal, or a seal made under another key.
        assert!(
            vouch(
                "jane-user-secret",
                &SecretFacts {
                    seal: None,
                    ..good.clone()
                }
            )
            .is_none()
        );
        let other_key = IssuanceKey::from_bytes(&[8; KEY_BYTES]).unwrap();
        assert!(vouch("jane-user-secret", &issued(&other_key, b"v")).is_none());
        // A seal for another holder (bob's seal copied onto a Secret naming jane).
        let bob = Holder { name: "bob", ..jane() };
        let copied = SecretFacts {
            seal: Some(seal(&key, &bob, &v)),
            ..good.clone()
        };
        assert!(vouch("jane-user-secret", &copied).is_none());
        // The same namespace and name in another API group.
        let mut foreign = good.clone();
        foreign.controller.as_mut().unwrap().group = "evil.example.com".into();
        assert!(vouch("jane-user-secret", &foreign).is_none());
        // No controller reference at all.
        assert!(
            vouch(
                "jane-user-secret",
                &SecretFacts {
                    controller: None,
                    ..good.clone()
                }
            )
            .is_none()
        );
        // The seal binds the namespace.
        assert!(vouches(&key, "other", "jane-user-secret", &good, &v, at(0)).is_none());
        assert!(vouch("jane-user-secret", &good).is_some());
    }

    #[test]
    fn a_previous_value_vouches_only_with_its_seal_and_within_its_grace() {
        let key = IssuanceKey::for_tests();
        let old = digest(b"old");
        let rotated = SecretFacts {
            previous: Some(old),
            previous_expires: Some(at(100)),
            previous_seal: Some(seal(&key, &jane(), &old)),
            ..issued(&key, b"new")
        };
        let vouch = |facts: &SecretFacts, now| vouches(&key, NS, "jane-user-secret", facts, &old, at(now));
        assert_eq!(vouch(&rotated, 50).unwrap().matched, Matched::Previous);
        assert!(vouch(&rotated, 100).is_none());
        // Only `previous` and an expiry, no seal of it: planted.
        let unsealed = SecretFacts {
            previous_seal: None,
            ..rotated.clone()
        };
        assert!(vouch(&unsealed, 50).is_none());
        // The current value's seal does not cover the previous value.
        let swapped = SecretFacts {
            previous_seal: rotated.seal.clone(),
            ..rotated
        };
        assert!(vouch(&swapped, 50).is_none());
    }

    #[test]
    fn seals_tell_holders_apart_and_survive_a_new_uid() {
        let key = IssuanceKey::for_tests();
        let d = digest(b"v");
        let s = seal(&key, &jane(), &d);
        assert!(verifies(&key, &jane(), &d, Some(&s)));
        let org = Holder {
            kind: HolderKind::Organization,
            ..jane()
        };
        assert!(!verifies(&key, &org, &d, Some(&s)));
        // Fields cannot be shifted into one another ("a"+"bc" against "ab"+"c").
        let shifted = Holder {
            namespace: "tj",
            name: "ane",
            ..jane()
        };
        assert!(!verifies(&key, &shifted, &d, Some(&s)));
        assert!(!verifies(&key, &jane(), &d, Some("not base64!")));
        assert!(!verifies(&key, &jane(), &d, None));
        // A restored Secret names an old uid: the seal does not depend on it.
        let mut restored = issued(&key, b"v");
        restored.controller.as_mut().unwrap().uid = "uid-before-restore".into();
        assert!(current_issued(&key, &jane(), &restored));
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert!(IssuanceKey::from_bytes(&[1; 16]).is_err());
        assert_eq!(format!("{:?}", IssuanceKey::for_tests()), "IssuanceKey(redacted)");
    }

    /// The kinds that hold issued secrets, by name, and no other.
    #[test]
    fn holder_kinds_are_named_both_ways() {
        for kind in [HolderKind::Organization, HolderKind::CEUser] {
            assert_eq!(HolderKind::of(kind.as_str()), Some(kind));
        }
        assert_eq!(HolderKind::of("Account"), None);
    }
}
