//! A kind's store, with what this process wrote that the store does not show yet, the count
//! of objects the types cannot read, and the tallies of Ready conditions the metrics read.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use kube::{
    Resource,
    runtime::reflector::{ObjectRef, Store},
};

use super::{Change, writes::version};

/// A kind's store, and what this process created or changed that the store does not show
/// yet ("expectations", as the ReplicaSet controller has them): a reconcile right after a
/// write sees it, and never re-creates or re-reads it.
pub struct Kind<K: Resource<DynamicType = ()> + 'static> {
    pub(super) store: Store<K>,
    pub(super) expected: RwLock<HashMap<ObjectRef<K>, Arc<K>>>,
    /// The highest resourceVersion of the watch's events since it last listed: a write at or
    /// below it is in the store already, or was overtaken there (deleted, or out of the
    /// watch's label selector), so it is not expected. Read and written under `expected`'s
    /// lock, so that an expectation and the event that overtakes it are never missed.
    watched_up_to: AtomicU64,
    /// Objects of this kind the API server holds but the Rust types cannot read (kept out
    /// of the store; see `watch::Malformed`).
    pub(super) malformed: std::sync::atomic::AtomicUsize,
    /// The stored objects by their Ready condition (kinds with conditions), kept as changes
    /// arrive: a scrape reads a few counts instead of scanning every object (at 100,000
    /// users, polled every 200 ms, the scan was about half of the operator's CPU).
    pub(super) ready: Mutex<BTreeMap<ReadyKey, usize>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Kind<K> {
    pub(super) fn new(store: Store<K>) -> Self {
        Self {
            store,
            expected: RwLock::default(),
            watched_up_to: AtomicU64::new(0),
            malformed: Default::default(),
            ready: Mutex::default(),
        }
    }

    pub(super) fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store
            .get(key)
            .or_else(|| self.expected.read().expect("expectations lock").get(key).cloned())
    }

    /// The objects this process wrote that the store does not show yet.
    pub(super) fn expectations(&self) -> Vec<Arc<K>> {
        self.expected
            .read()
            .expect("expectations lock")
            .values()
            .cloned()
            .collect()
    }

    /// Forgets the expectation of `written` if it is still the one for `key` (not replaced
    /// by a later write) and the store does not hold the object: whether it was forgotten.
    pub(super) fn forget(&self, key: &ObjectRef<K>, written: &Arc<K>) -> bool {
        let mut expected = self.expected.write().expect("expectations lock");
        if self.store.get(key).is_some() || !expected.get(key).is_some_and(|e| Arc::ptr_eq(e, written)) {
            return false;
        }
        expected.remove(key);
        true
    }

    /// Expects `written` (a write of this process) until the store shows it: whether it is
    /// expected, which it is not if the watch has gone past it already. A write's response
    /// can come after the watch's event of a later change: a Secret relabelled out of the
    /// watch's selector right after the operator's relabel was expected for ever, and its
    /// labels never corrected again.
    pub(super) fn expect(&self, key: ObjectRef<K>, written: Arc<K>) -> bool {
        let mut expected = self.expected.write().expect("expectations lock");
        let watched = self.watched_up_to.load(Ordering::Relaxed);
        if version(written.meta().resource_version.as_deref()).is_some_and(|at| at <= watched) {
            return false;
        }
        expected.insert(key, written);
        true
    }

    /// A relist begins: resourceVersions start again from what it lists.
    pub(super) fn relisting(&self) {
        let _expected = self.expected.write().expect("expectations lock");
        self.watched_up_to.store(0, Ordering::Relaxed);
    }

    /// Forgets an expectation once the store caught up with it (or the object went), after
    /// a watch event at resourceVersion `at` (None: no event).
    pub(super) fn settle(&self, key: &ObjectRef<K>, stored: Option<&K>, at: Option<&str>) {
        let mut expected = self.expected.write().expect("expectations lock");
        if let Some(at) = version(at) {
            self.watched_up_to.fetch_max(at, Ordering::Relaxed);
        }
        let Some(waiting) = expected.get(key) else { return };
        let caught_up = match stored {
            None => true,
            Some(stored) => {
                let at = |k: &K| version(k.meta().resource_version.as_deref());
                stored.meta().uid != waiting.meta().uid || at(stored) >= at(waiting)
            }
        };
        if caught_up {
            expected.remove(key);
        }
    }
}

/// A Ready condition's status ("True", "False", "Unknown" when absent) and reason (empty when
/// absent; "Other" for a reason the operator does not know, so the label set stays bounded).
type ReadyKey = (&'static str, &'static str);

fn ready_key(obj: &impl crate::api::HasConditions) -> ReadyKey {
    let ready = obj.condition("Ready");
    let status = match ready.map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    };
    let reason = match ready {
        None => "",
        Some(c) => crate::model::conditions::Reason::parse(&c.reason).map_or("Other", |r| r.as_str()),
    };
    (status, reason)
}

/// Moves the object of `change` between the Ready tallies of its kind.
pub(super) fn tally<K>(kind: &Kind<K>, change: &Change<K>)
where
    K: Resource<DynamicType = ()> + crate::api::HasConditions + 'static,
{
    let (old, new) = change.before_after(ready_key);
    if old == new {
        return;
    }
    let mut ready = kind.ready.lock().unwrap_or_else(|e| e.into_inner());
    // A count that is not there (a deletion of an object the store never held) stays absent.
    if let Some(old) = old
        && let std::collections::btree_map::Entry::Occupied(mut count) = ready.entry(old)
    {
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
        }
    }
    if let Some(new) = new {
        *ready.entry(new).or_default() += 1;
    }
}

/// The Ready tallies of one kind.
pub(super) fn ready_counts<K: Resource<DynamicType = ()>>(kind: &'static str, slot: &Kind<K>) -> Vec<ReadyCount> {
    let ready = slot.ready.lock().unwrap_or_else(|e| e.into_inner());
    ready
        .iter()
        .map(|(&(ready, reason), &count)| ReadyCount {
            kind,
            ready,
            reason,
            count,
        })
        .collect()
}

/// How many objects of a kind have a Ready condition with this status and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyCount {
    pub kind: &'static str,
    pub ready: &'static str,
    /// Empty when there is no Ready condition yet.
    pub reason: &'static str,
    pub count: usize,
}
