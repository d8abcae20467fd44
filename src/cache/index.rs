//! A secondary index over a cache: a key (namespace, value) to the objects with that key,
//! kept from the watch streams right after the store is updated.

use std::{collections::HashMap, sync::RwLock};

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
