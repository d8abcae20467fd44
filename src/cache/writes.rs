//! This process's own writes, as the caches see them: which watch events are their echoes,
//! which statuses someone else changed since, what a reconcile anticipates before the echo
//! lands, and statuses compared in their canonical form (a write is never made over an equal
//! status).

use std::{any::Any, collections::HashSet, sync::Arc};

use kube::{Resource, runtime::reflector::ObjectRef};

use super::{Cache, Cached, Change};
use crate::api::HasStatus;

/// This process's writes to an object that the watch has not echoed yet: the
/// resourceVersion of each, oldest first (two writes can be made before the first echo
/// lands, and that echo is no other writer's), and the status hash of the latest.
pub(super) struct OwnWrite {
    pub(super) resource_versions: Vec<String>,
    pub(super) status: u64,
    /// The latest status itself (of the kind's status type).
    pub(super) written: Arc<dyn Any + Send + Sync>,
}

impl OwnWrite {
    fn latest(&self) -> Option<u64> {
        version(self.resource_versions.last().map(String::as_str))
    }
}

/// A resourceVersion as a number: opaque by contract, an etcd revision in practice; only
/// used to tell whether the cache has caught up with a write, and None if it is not a number.
pub(super) fn version(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

/// A status as the API server stores it: nulls, empty objects and empty lists are the same
/// as absent (server-side apply prunes an emptied field to null), so two statuses that differ
/// only there are the same status, and one is never written over the other.
pub fn canonical_status<S: serde::Serialize>(status: &S) -> serde_json::Value {
    fn prune(value: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match value {
            Value::Null => None,
            Value::Object(map) => {
                let map: serde_json::Map<String, Value> =
                    map.into_iter().filter_map(|(k, v)| Some((k, prune(v)?))).collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            Value::Array(items) if items.is_empty() => None,
            other => Some(other),
        }
    }
    prune(serde_json::to_value(status).unwrap_or_default()).unwrap_or_default()
}

/// A hash of a status (in its canonical form), to tell statuses apart without a copy.
pub fn status_hash<S: serde::Serialize>(status: &S) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    canonical_status(status).to_string().hash(&mut hasher);
    hasher.finish()
}

impl Cache {
    /// Records that this process wrote `uid`, which is now at resourceVersion `rv` with the
    /// status `written`, of hash `status` (see `status_hash`).
    pub fn note_own_write(&self, uid: &str, rv: &str, status: u64, written: Arc<dyn Any + Send + Sync>) {
        let mut writes = self.own_writes.lock().expect("own writes lock");
        let write = writes.entry(uid.to_owned()).or_insert_with(|| OwnWrite {
            resource_versions: Vec::new(),
            status,
            written: written.clone(),
        });
        write.resource_versions.push(rv.to_owned());
        write.status = status;
        write.written = written;
    }

    /// `obj` with the status this process last wrote to it, if `obj` is older than that
    /// write (its echo not applied yet): a reconcile decides from what the object holds.
    /// From the older status, a Secret deleted right after its issuance was reported looked
    /// never issued, and was recreated without the warning that clients hold a stale one.
    pub fn with_own_status<K: Cached + HasStatus>(&self, obj: Arc<K>) -> Arc<K> {
        let written = {
            let writes = self.own_writes.lock().expect("own writes lock");
            obj.meta()
                .uid
                .as_deref()
                .and_then(|uid| writes.get(uid))
                .and_then(|w| Some((w.latest()?, w.written.clone())))
        };
        let Some((at, written)) = written else { return obj };
        let newer = version(obj.meta().resource_version.as_deref()).is_none_or(|seen| at > seen);
        match written.downcast::<K::Status>() {
            Ok(status) if newer => {
                let mut obj = (*obj).clone();
                obj.set_status((*status).clone());
                Arc::new(obj)
            }
            _ => obj,
        }
    }

    /// Starts keeping the objects whose status someone else changed (the controllers start).
    pub fn note_foreign_statuses(&self) {
        self.foreign_statuses
            .lock()
            .expect("foreign statuses lock")
            .get_or_insert_with(HashSet::new);
    }

    /// Someone else changed the status of `obj` (a watched change that is not an echo).
    pub fn foreign_status<K: Resource>(&self, obj: &K) {
        if let (Some(noted), Some(uid)) = (
            self.foreign_statuses.lock().expect("foreign statuses lock").as_mut(),
            obj.meta().uid.as_deref(),
        ) {
            noted.insert(uid.to_owned());
        }
    }

    /// Whether someone else changed the status of `uid` since this process last wrote it.
    pub fn status_is_foreign(&self, uid: &str) -> bool {
        self.foreign_statuses
            .lock()
            .expect("foreign statuses lock")
            .as_ref()
            .is_some_and(|noted| noted.contains(uid))
    }

    /// This process wrote the status of `uid`: whatever someone else wrote before is gone.
    pub fn status_written(&self, uid: &str) {
        if let Some(noted) = self.foreign_statuses.lock().expect("foreign statuses lock").as_mut() {
            noted.remove(uid);
        }
    }

    /// Whether a watched object is the echo of one of this process's writes to it. The
    /// records of that write and of any older one go (events arrive in order: an older
    /// write's echo that has not come was skipped, by a relist).
    pub fn is_own_echo<K: Resource>(&self, obj: &K) -> bool {
        let (Some(uid), Some(rv)) = (obj.meta().uid.as_deref(), obj.meta().resource_version.as_deref()) else {
            return false;
        };
        let mut writes = self.own_writes.lock().expect("own writes lock");
        let Some(written) = writes.get_mut(uid) else {
            return false;
        };
        let Some(at) = written.resource_versions.iter().position(|w| w == rv) else {
            return false;
        };
        written.resource_versions.drain(..=at);
        if written.resource_versions.is_empty() {
            writes.remove(uid);
        }
        true
    }

    /// What a reconcile of `obj` compares its desired status with: the hash of this
    /// process's latest write to it if the cache has not shown that write yet, else the
    /// object as the cache holds it now (None if gone), whose status is then current.
    ///
    /// `obj` is the reconcile's snapshot, taken when it started: the echo of the previous
    /// write may have been applied since, and its record dropped (`is_own_echo`). Comparing
    /// with the snapshot's older status would then take a status the API server no longer
    /// holds for the current one (a revoked role kept). So the record is read first, then
    /// the store: whichever moment the echo lands, one of the two shows the write.
    pub fn status_now<K: Cached>(&self, obj: &K) -> (Option<u64>, Option<Arc<K>>) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let written = {
            let writes = self.own_writes.lock().expect("own writes lock");
            writes.get(&uid).map(|w| (w.latest(), w.status))
        };
        let now = K::slot(self).store.get(&ObjectRef::from_obj(obj));
        let cached = version(now.as_deref().unwrap_or(obj).meta().resource_version.as_deref());
        match written {
            Some((Some(written), status)) if cached.is_none_or(|cached| written > cached) => (Some(status), now),
            Some((written, _)) => {
                // The cache shows the write: forget it (unless a newer one replaced it).
                let mut writes = self.own_writes.lock().expect("own writes lock");
                if writes.get(&uid).is_some_and(|w| w.latest() == written) {
                    writes.remove(&uid);
                }
                (None, now)
            }
            None => (None, now),
        }
    }

    /// Something this process just created or changed, to be seen before the watch shows it.
    pub fn anticipate<K: Cached>(&self, obj: K) {
        let reference = ObjectRef::from_obj(&obj);
        let kind = K::slot(self);
        let old = kind.get(&reference);
        let obj = Arc::new(obj);
        if kind.expect(reference, obj.clone()) {
            K::index(self, &Change { old, new: Some(obj) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CEUserStatus, PrivilegeScopes};
    use crate::cache::Snapshot;

    /// User john (uid u1) at resourceVersion `rv`, with `roles` in its status.
    fn user(rv: &str, roles: Vec<crate::api::Role>) -> crate::api::CEUser {
        let mut user: crate::api::CEUser = serde_json::from_value(serde_json::json!({
            "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "CEUser",
            "metadata": {"name": "john", "namespace": "t", "uid": "u1", "resourceVersion": rv},
            "spec": {"accountRef": {"name": "hq"}, "email": "john@acme.example"},
        }))
        .unwrap();
        user.status = Some(CEUserStatus {
            roles,
            ..Default::default()
        });
        user
    }

    #[test]
    fn statuses_that_differ_only_in_empty_fields_are_the_same() {
        let absent = CEUserStatus::default();
        let empty = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes::default()),
            ..Default::default()
        };
        assert_eq!(canonical_status(&absent), canonical_status(&empty));
        assert_eq!(status_hash(&absent), status_hash(&empty));
        let stored: CEUserStatus =
            serde_json::from_value(serde_json::json!({"privilegeScopes": null, "roles": []})).unwrap();
        assert_eq!(canonical_status(&stored), canonical_status(&empty));
        let held = CEUserStatus {
            privilege_scopes: Some(PrivilegeScopes {
                organization: vec![crate::api::Privilege::ViewActivity],
                account: vec![],
            }),
            ..Default::default()
        };
        assert_ne!(canonical_status(&held), canonical_status(&empty));
    }

    /// The lost revoke: a reconcile started on a snapshot older than this process's last
    /// write, whose echo then arrived (dropping the record) before the reconcile compared.
    #[test]
    fn a_status_is_compared_with_the_write_whatever_moment_its_echo_lands() {
        use crate::api::Role;
        let revoked = user("2", vec![Role::DefaultUser]);
        let bound = user("3", vec![Role::Admin, Role::DefaultUser]);
        let mut snapshot = Snapshot::new(None);
        snapshot.apply([revoked.clone()]);
        let cache = snapshot.cache.clone();
        // The bind's write (rv 3), its echo not applied yet: compared with the write.
        cache.note_own_write("u1", "3", status_hash(&bound.status), Arc::new(()));
        assert_eq!(cache.status_now(&revoked).0, Some(status_hash(&bound.status)));
        // The echo applied and its record dropped, while the next reconcile still holds the
        // snapshot at rv 2: compared with the cache now, which holds the bound status.
        snapshot.apply([bound.clone()]);
        assert!(cache.is_own_echo(&bound));
        let (unseen, now) = cache.status_now(&revoked);
        assert_eq!(unseen, None);
        assert_eq!(now.and_then(|u| u.status.clone()), bound.status);
    }

    /// A reconcile of an object older than this process's last write to it decides from the
    /// status written (a Secret deleted right after its fingerprint was reported is then
    /// known as issued before); once the object is as new as the write, from the object.
    #[test]
    fn a_reconcile_decides_from_the_status_written_until_the_object_shows_it() {
        use crate::api::Role;
        let cache = Snapshot::new(None).cache.clone();
        let before = Arc::new(user("2", vec![Role::DefaultUser]));
        let bound = user("3", vec![Role::Admin, Role::DefaultUser]);
        let written = bound.status.clone().unwrap();
        cache.note_own_write("u1", "3", status_hash(&written), Arc::new(written));
        let decided_from = cache.with_own_status(before.clone());
        assert_eq!(decided_from.status, bound.status, "the write's status");
        assert_eq!(decided_from.metadata, before.metadata, "the object's own metadata");
        let later = Arc::new(user("4", vec![]));
        assert!(
            Arc::ptr_eq(&cache.with_own_status(later.clone()), &later),
            "newer: as it is"
        );
        let other = Snapshot::new(None).cache.clone();
        assert!(
            Arc::ptr_eq(&other.with_own_status(before.clone()), &before),
            "no write: as it is"
        );
    }

    /// A bind and a revoke written before the bind's echo lands: both echoes are this
    /// process's (taking the first for another writer's change spaced the user's next
    /// corrections out by half a minute); a change between them is someone else's.
    #[test]
    fn every_write_made_before_the_first_echo_is_known_by_its_echo() {
        use crate::api::Role;
        let cache = Snapshot::new(None).cache.clone();
        let bound = user("3", vec![Role::Admin]);
        let foreign = user("4", vec![]);
        let revoked = user("5", vec![Role::DefaultUser]);
        cache.note_own_write("u1", "3", status_hash(&bound.status), Arc::new(()));
        cache.note_own_write("u1", "5", status_hash(&revoked.status), Arc::new(()));
        assert!(cache.is_own_echo(&bound));
        assert!(!cache.is_own_echo(&foreign));
        // Until the latest write's echo, the reconcile compares with that write.
        assert_eq!(cache.status_now(&bound).0, Some(status_hash(&revoked.status)));
        assert!(cache.is_own_echo(&revoked));
        assert!(!cache.is_own_echo(&revoked), "an echo is known once");
        // A write whose echo a relist skipped is dropped with the next echo.
        cache.note_own_write("u1", "7", 1, Arc::new(()));
        cache.note_own_write("u1", "8", 2, Arc::new(()));
        assert!(cache.is_own_echo(&user("8", vec![])));
        assert!(!cache.is_own_echo(&user("7", vec![])));
    }
}
