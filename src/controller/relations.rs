//! Who wakes whom. Each controller module declares, beside its reconcile, which changes of
//! other kinds (and of its own) wake which of its objects: one mapper per relation. `wire`
//! registers them as cache hooks, so a trigger is sent only after the cache it reads is
//! updated. A unit test checks that every kind a reconcile reads has a relation.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::{Resource, runtime::reflector::ObjectRef};

use super::Reconciler;
use crate::{
    api::HasStatus,
    cache::{Cache, Cached, Change, Hooks, Watched},
    model::names::ROTATE_ANNOTATION,
};

/// Where the reconcile requests of kind `K` go. Inactive (a standby) it drops them: the
/// caches keep up, and the leader's first pass covers everything.
pub struct Trigger<K: Resource<DynamicType = ()>> {
    tx: UnboundedSender<ObjectRef<K>>,
    active: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()>> Clone for Trigger<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            active: self.active.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Trigger<K> {
    pub fn send(&self, objects: impl IntoIterator<Item = ObjectRef<K>>) {
        if self.active.load(Ordering::Acquire) {
            for obj in objects {
                // Fails only when the controller is gone (shutdown).
                let _ = self.tx.unbounded_send(obj);
            }
        }
    }
}

/// The relations of kind `K` being declared.
pub struct Wiring<'h, K: Cached> {
    hooks: &'h mut Hooks,
    trigger: Trigger<K>,
    sources: BTreeSet<Watched>,
}

impl<K: Cached> Wiring<'_, K> {
    /// Changes of kind `S` wake the objects of `K` that `mapper` names.
    pub fn on<S: Cached>(&mut self, mapper: impl Fn(&Cache, &Change<S>) -> Vec<ObjectRef<K>> + Send + Sync + 'static) {
        self.sources.insert(S::WATCHED);
        let trigger = self.trigger.clone();
        self.hooks
            .on::<S>(move |cache, change| trigger.send(mapper(cache, change)));
    }
}

/// A controller wired to the caches, not running yet.
pub struct Wired<K: Resource<DynamicType = ()>> {
    pub trigger: Trigger<K>,
    pub requests: UnboundedReceiver<ObjectRef<K>>,
    /// The kinds whose changes wake it.
    pub sources: BTreeSet<Watched>,
}

impl<K: Resource<DynamicType = ()>> Wired<K> {
    /// Starts sending requests (this replica leads).
    pub fn activate(&self) {
        self.trigger.active.store(true, Ordering::Release);
    }
}

/// Registers the relations of `K`.
pub fn wire<K: Reconciler>(hooks: &mut Hooks) -> Wired<K> {
    let (tx, requests) = unbounded();
    let trigger = Trigger {
        tx,
        active: Arc::new(AtomicBool::new(false)),
    };
    let mut wiring = Wiring {
        hooks,
        trigger: trigger.clone(),
        sources: BTreeSet::new(),
    };
    K::relations(&mut wiring);
    Wired {
        trigger,
        requests,
        sources: wiring.sources,
    }
}

/// A reference to the object with this namespace and name.
pub fn named<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(ns)
}

pub fn refs<K: Resource<DynamicType = ()>>(objects: impl IntoIterator<Item = Arc<K>>) -> Vec<ObjectRef<K>> {
    objects.into_iter().map(|o| ObjectRef::from_obj(o.as_ref())).collect()
}

/// The own-changes relation: an object wakes itself when something its reconcile reads
/// changed (generation, deletion, finalizers, the rotation annotation), or when someone else
/// changed its status. Its own status writes (their echoes) do not wake it: no reconcile
/// storms, and no second reconcile of every object after its first status write.
pub fn own_change<K: Cached + HasStatus>(cache: &Cache, change: &Change<K>) -> Vec<ObjectRef<K>> {
    let (Some(old), Some(new)) = (&change.old, &change.new) else {
        // New: reconcile it. Gone: nothing left to reconcile.
        return change.new.iter().map(|n| ObjectRef::from_obj(n.as_ref())).collect();
    };
    let echo = cache.is_own_echo(new.as_ref());
    let meta = |k: &K| {
        (
            k.meta().generation,
            k.meta().deletion_timestamp.is_some(),
            k.meta().finalizers.clone(),
            k.meta()
                .annotations
                .as_ref()
                .and_then(|a| a.get(ROTATE_ANNOTATION).cloned()),
        )
    };
    let wake = meta(old) != meta(new) || (!echo && old.status() != new.status());
    if wake {
        vec![ObjectRef::from_obj(new.as_ref())]
    } else {
        Vec::new()
    }
}
