//! A secondary index over a cache: a key (namespace, value) to the objects with that key,
//! kept from the watch streams around each store update (an object is filed under its new
//! keys before the store shows it, and leaves its old ones after); and each kind's indexes.

use std::{collections::HashMap, sync::RwLock};

use kube::Resource;

use super::{Cache, Change};
use crate::api::{Account, CEUser, ElementSafelist, Organization, Role, RoleBinding};

/// (namespace, name) of an object, or (namespace, key value) of an index key.
pub type Key = (String, String);

/// Objects by key. Lookups re-check the store (an object may have changed key or gone while
/// a watch re-listed), so the index may briefly hold more than is true, never less.
///
/// The objects of a key are a list, not a set: most keys hold one object (a user's email)
/// or a few, where a set would cost four times the memory; the longest lists (an
/// organization's accounts) are searched only when one of them changes.
#[derive(Default)]
pub struct Index {
    entries: RwLock<HashMap<Key, Vec<Key>>>,
}

/// Adds `object` to `objects` once.
fn insert(objects: &mut Vec<Key>, object: &Key) {
    if !objects.contains(object) {
        if objects.len() < 4 {
            // A short list gets no spare room (a push would make room for four).
            objects.reserve_exact(1);
        }
        objects.push(object.clone());
    }
}

impl Index {
    /// Moves `object` from `old` to `new` (None: absent).
    pub fn update(&self, object: &Key, old: Option<Key>, new: Option<Key>) {
        if old == new {
            if let Some(key) = new {
                // Inserting is idempotent: also heals an entry missed during a re-list.
                let mut entries = self.entries.write().expect("index lock");
                insert(entries.entry(key).or_default(), object);
            }
            return;
        }
        let mut entries = self.entries.write().expect("index lock");
        if let Some(old) = old
            && let Some(objects) = entries.get_mut(&old)
        {
            objects.retain(|o| o != object);
            if objects.is_empty() {
                entries.remove(&old);
            }
        }
        if let Some(new) = new {
            insert(entries.entry(new).or_default(), object);
        }
    }

    /// The objects under `key`.
    pub fn get(&self, key: &Key) -> Vec<Key> {
        let entries = self.entries.read().expect("index lock");
        entries.get(key).cloned().unwrap_or_default()
    }

    /// Whether an object under `key` satisfies `pred`, looking no further than the first.
    pub fn any(&self, key: &Key, pred: impl Fn(&Key) -> bool) -> bool {
        let entries = self.entries.read().expect("index lock");
        entries.get(key).is_some_and(|objects| objects.iter().any(pred))
    }

    /// How many objects are under `key` (an upper bound, see above).
    pub fn count(&self, key: &Key) -> usize {
        let entries = self.entries.read().expect("index lock");
        entries.get(key).map_or(0, Vec::len)
    }
}

pub fn key(ns: &str, value: &str) -> Key {
    (ns.to_owned(), value.to_owned())
}

/// The secondary indexes of one of the registry's kinds, kept as its changes arrive.
pub(super) trait Indexed: Sized {
    fn index(_cache: &Cache, _change: &Change<Self>) {}
}

/// Moves the object of `change` between index keys computed by `key_of`.
fn reindex<K: Resource>(index: &Index, change: &Change<K>, key_of: impl Fn(&K) -> Option<Key>) {
    let object = key(&change.namespace(), &change.name());
    let (old, new) = change.before_after(&key_of);
    index.update(&object, old.flatten(), new.flatten());
}

impl Indexed for Organization {
    fn index(cache: &Cache, change: &Change<Self>) {
        reindex(&cache.members_by_super, change, |o| {
            o.spec
                .super_organization_ref
                .as_ref()
                .map(|r| key(&r.namespace, &r.name))
        });
    }
}

impl Indexed for Account {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.accounts_by_org, change, |a| {
            Some(key(&ns, &a.spec.organization_ref.name))
        });
        reindex(&cache.default_accounts_by_org, change, |a| {
            a.spec.default.then(|| key(&ns, &a.spec.organization_ref.name))
        });
    }
}

impl Indexed for CEUser {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.users_by_account, change, |u| {
            Some(key(&ns, &u.spec.account_ref.name))
        });
        reindex(&cache.users_by_email, change, |u| {
            Some(key(&ns, &u.spec.email.to_ascii_lowercase()))
        });
    }
}

impl Indexed for RoleBinding {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.bindings_by_user, change, |b| {
            Some(key(&ns, &b.spec.user_ref.name))
        });
        reindex(&cache.org_admins_by_namespace, change, |b| {
            (b.spec.role == Role::OrgAdmin).then(|| key(&ns, ""))
        });
    }
}

impl Indexed for ElementSafelist {
    fn index(cache: &Cache, change: &Change<Self>) {
        let ns = change.namespace();
        reindex(&cache.safelists_by_org, change, |s| {
            Some(key(&ns, &s.spec.organization_ref.name))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_move_between_keys_and_empty_keys_go() {
        let index = Index::default();
        let jane = key("t", "jane");
        index.update(&jane, None, Some(key("t", "eu")));
        index.update(&key("t", "john"), None, Some(key("t", "eu")));
        assert_eq!(index.count(&key("t", "eu")), 2);
        index.update(&jane, Some(key("t", "eu")), Some(key("t", "us")));
        assert_eq!(index.get(&key("t", "us")), vec![jane.clone()]);
        assert_eq!(index.get(&key("t", "eu")), vec![key("t", "john")]);
        index.update(&jane, Some(key("t", "us")), None);
        assert_eq!(index.count(&key("t", "us")), 0);
        assert!(!index.entries.read().unwrap().contains_key(&key("t", "us")));
        // Same key again: no duplicate.
        index.update(&key("t", "john"), Some(key("t", "eu")), Some(key("t", "eu")));
        assert_eq!(index.count(&key("t", "eu")), 1);
    }
}
