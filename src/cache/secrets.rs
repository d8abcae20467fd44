//! The operator's own Secrets, as the caches hold them: metadata and the digests of their
//! values (`SecretFacts`), never a value. The digests are also indexed, so that the
//! authorization endpoint finds the owner of a presented secret in memory.

use std::{borrow::Cow, collections::HashMap, sync::RwLock};

use k8s_openapi::{NamespaceResourceScope, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::Resource;

use super::index::Key;
use crate::model::{
    names,
    secrets::{Digest, SecretFacts},
};

/// A generated Secret without its values.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretEntry {
    /// Name, namespace, uid, resourceVersion and owner references only.
    pub metadata: ObjectMeta,
    pub facts: SecretFacts,
}

impl SecretEntry {
    /// Takes what the operator needs from a Secret; the values are digested and dropped.
    pub fn of(secret: Secret) -> Self {
        let facts = SecretFacts::of(&secret);
        let meta = secret.metadata;
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                owner_references: meta.owner_references,
                ..Default::default()
            },
            facts,
        }
    }

    /// The kind and name of the object this Secret was generated for: its controller, or,
    /// for a Secret without one (restored, to be adopted), the object its generated name
    /// belongs to.
    pub fn owner(&self) -> Option<(&str, &str)> {
        let controller = self
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true));
        if let Some(controller) = controller {
            return Some((controller.kind.as_str(), controller.name.as_str()));
        }
        let name = self.metadata.name.as_deref()?;
        names::secret_holder(name)
    }
}

impl Resource for SecretEntry {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Secrets by the digests of their current and previous values.
#[derive(Default)]
pub struct Digests {
    by_digest: RwLock<HashMap<Digest, Vec<Key>>>,
}

impl Digests {
    pub fn update(&self, secret: &Key, old: Option<&SecretFacts>, new: Option<&SecretFacts>) {
        let digests = |facts: Option<&SecretFacts>| -> Vec<Digest> {
            facts.map_or_else(Vec::new, |f| f.current.into_iter().chain(f.previous).collect())
        };
        let (old, new) = (digests(old), digests(new));
        if old == new {
            return;
        }
        let mut map = self.by_digest.write().expect("digest lock");
        for digest in &old {
            if let Some(secrets) = map.get_mut(digest) {
                secrets.retain(|s| s != secret);
                if secrets.is_empty() {
                    map.remove(digest);
                }
            }
        }
        for digest in new {
            let secrets = map.entry(digest).or_default();
            if !secrets.contains(secret) {
                secrets.push(secret.clone());
            }
        }
    }

    /// The Secrets holding a value with this digest (as current or previous value).
    pub fn get(&self, digest: &Digest) -> Vec<Key> {
        self.by_digest
            .read()
            .expect("digest lock")
            .get(digest)
            .cloned()
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.by_digest.read().expect("digest lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::OwnerReference};

    use super::*;
    use crate::model::secrets::{KEY_CURRENT, digest};

    #[test]
    fn an_entry_keeps_digests_not_values() {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("jane-user-secret".into()),
                namespace: Some("t".into()),
                labels: Some(BTreeMap::from([("a".into(), "b".into())])),
                owner_references: Some(vec![OwnerReference {
                    kind: "CEUser".into(),
                    name: "jane".into(),
                    uid: "u".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(KEY_CURRENT.into(), ByteString(b"value".to_vec()))])),
            ..Default::default()
        };
        let entry = SecretEntry::of(secret);
        assert_eq!(entry.facts.current, Some(digest(b"value")));
        assert_eq!(entry.owner(), Some(("CEUser", "jane")));
        assert!(entry.metadata.labels.is_none());
        assert!(!format!("{entry:?}").contains("value\""));
    }

    #[test]
    fn digests_follow_rotation() {
        let index = Digests::default();
        let key: Key = ("t".into(), "s".into());
        let first = SecretFacts {
            current: Some(digest(b"one")),
            ..Default::default()
        };
        index.update(&key, None, Some(&first));
        assert_eq!(index.get(&digest(b"one")), vec![key.clone()]);
        let rotated = SecretFacts {
            current: Some(digest(b"two")),
            previous: Some(digest(b"one")),
            ..Default::default()
        };
        index.update(&key, Some(&first), Some(&rotated));
        assert_eq!(index.get(&digest(b"one")), vec![key.clone()]);
        assert_eq!(index.get(&digest(b"two")), vec![key.clone()]);
        let dropped = SecretFacts {
            current: Some(digest(b"two")),
            ..Default::default()
        };
        index.update(&key, Some(&rotated), Some(&dropped));
        assert!(index.get(&digest(b"one")).is_empty());
        index.update(&key, Some(&dropped), None);
        assert!(index.is_empty());
    }
}
