//! Who wakes whom. Each controller module declares, beside its reconcile, which changes of
//! other kinds (and of its own) wake which of its objects: one mapper per relation. `wire`
//! registers them as cache hooks, so a trigger is sent only after the cache it reads is
//! updated. A unit test checks that every kind a reconcile reads has a relation.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::{Resource, ResourceExt, runtime::reflector::ObjectRef};

use super::Reconciler;
use crate::{
    api::{Account, HasStatus, Organization},
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

/// The first window after a quiet spell; each window whose changes were folded into a wake at
/// its end is followed by one twice as long, up to `COUNT_WINDOW_MAX`, for as long as changes
/// keep coming (a bulk import of 100,000 users lasts minutes).
const COUNT_WINDOW: Duration = Duration::from_secs(10);
const COUNT_WINDOW_MAX: Duration = Duration::from_secs(60);

/// How long the first change after a quiet window waits for the ones that come with it (a
/// `kubectl apply` of a file of users).
const COUNT_FOLD: Duration = Duration::from_millis(250);

/// Wakes for a count (an account's users, an organization's users): the first change after a
/// quiet window wakes the object within `COUNT_FOLD`; changes that keep coming are folded
/// into one wake at the end of each window, the windows growing while they do. A bulk import
/// then writes an account's status a few times, not once per user; a trailing debounce would
/// instead starve the object for as long as the import lasts.
struct Throttle<K: Resource<DynamicType = ()>> {
    trigger: Trigger<K>,
    fold: Duration,
    first: Duration,
    max: Duration,
    windows: Arc<Mutex<Windows<K>>>,
}

struct Windows<K: Resource<DynamicType = ()>> {
    open: HashMap<ObjectRef<K>, Window>,
    /// The number of windows after the last pruning.
    pruned_to: usize,
}

#[derive(Clone, Copy)]
struct Window {
    ends: tokio::time::Instant,
    length: Duration,
    /// A wake is due at the end.
    due: bool,
}

impl<K: Resource<DynamicType = ()> + 'static> Throttle<K> {
    fn new(trigger: Trigger<K>, fold: Duration, first: Duration, max: Duration) -> Self {
        Self {
            trigger,
            fold,
            first,
            max,
            windows: Arc::new(Mutex::new(Windows {
                open: HashMap::new(),
                pruned_to: 0,
            })),
        }
    }

    fn send(&self, object: ObjectRef<K>) {
        let now = tokio::time::Instant::now();
        let mut windows = self.windows.lock().expect("throttle lock");
        // When the wake is due, and how long the window it opens lasts.
        let (at, next) = match windows.open.get(&object) {
            Some(Window { due: true, .. }) => return,
            Some(window) if window.ends > now => (window.ends, (window.length * 2).min(self.max)),
            _ => (now + self.fold, self.first),
        };
        let due = Window {
            ends: at,
            length: next,
            due: true,
        };
        windows.open.insert(object.clone(), due);
        // Ended windows are forgotten now and then (amortized), so deleted objects do not linger.
        if windows.open.len() > 2 * windows.pruned_to + 64 {
            windows.open.retain(|_, w| w.due || w.ends > now);
            windows.pruned_to = windows.open.len();
        }
        let (trigger, windows) = (self.trigger.clone(), self.windows.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            // The wake opens the next window.
            let opened = Window {
                ends: tokio::time::Instant::now() + next,
                length: next,
                due: false,
            };
            windows
                .lock()
                .expect("throttle lock")
                .open
                .insert(object.clone(), opened);
            trigger.send([object]);
        });
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

    /// A namespace whose deletion has just started wakes every object of `K` in it: they
    /// let go of their finalizers at once.
    pub fn on_namespace_deletion(&mut self) {
        self.on::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>(|cache, change| {
            terminating_now(change)
                .map(|ns| {
                    refs(
                        cache
                            .all::<K>()
                            .into_iter()
                            .filter(|o| o.meta().namespace.as_deref() == Some(ns)),
                    )
                })
                .unwrap_or_default()
        });
    }

    /// Changes of kind `S` change a count of the objects of `K` that `mapper` names: they
    /// wake them through a `Throttle`, except objects being deleted, which wait for exactly
    /// these changes (their children going) and are woken at once.
    pub fn on_count<S: Cached>(
        &mut self,
        mapper: impl Fn(&Cache, &Change<S>) -> Vec<ObjectRef<K>> + Send + Sync + 'static,
    ) {
        self.sources.insert(S::WATCHED);
        let throttle = Throttle::new(self.trigger.clone(), COUNT_FOLD, COUNT_WINDOW, COUNT_WINDOW_MAX);
        let trigger = self.trigger.clone();
        self.hooks.on::<S>(move |cache, change| {
            for object in mapper(cache, change) {
                let deleting = cache
                    .get::<K>(object.namespace.as_deref().unwrap_or_default(), &object.name)
                    .is_some_and(|o| o.meta().deletion_timestamp.is_some());
                if deleting {
                    trigger.send([object]);
                } else {
                    throttle.send(object);
                }
            }
        });
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
    let foreign = !echo && old.status() != new.status();
    if foreign {
        cache.foreign_status(new.as_ref());
    }
    let wake = meta(old) != meta(new) || foreign;
    if wake {
        vec![ObjectRef::from_obj(new.as_ref())]
    } else {
        Vec::new()
    }
}

/// When an account's default-ness changes, so may the rank of the organization's other
/// declared default accounts: the objects to wake are its default siblings (`map` turns
/// each into what depends on it).
pub fn default_siblings<T>(cache: &Cache, change: &Change<Account>, map: impl Fn(&Arc<Account>) -> Vec<T>) -> Vec<T> {
    let (before, after) = change.before_after(|a| a.spec.default);
    if before != Some(true) && after != Some(true) {
        return Vec::new();
    }
    let account = change.object();
    cache
        .accounts_of(&change.namespace(), &account.spec.organization_ref.name)
        .iter()
        .filter(|a| a.spec.default && a.name_any() != account.name_any())
        .flat_map(map)
        .collect()
}

/// Whether an organization appeared, went, or was replaced (its uid decides which default
/// account the operator generated).
pub fn identity_changed(change: &Change<Organization>) -> bool {
    change.changed(|o| o.meta().uid.clone())
}

/// The namespace of a change that has just started its deletion.
pub fn terminating_now<K: Resource>(change: &Change<K>) -> Option<&str> {
    let deleting = |k: &K| k.meta().deletion_timestamp.is_some();
    let (before, after) = change.before_after(deleting);
    (after == Some(true) && before != Some(true)).then(|| change.object().meta().name.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Account;

    fn active() -> (Trigger<Account>, UnboundedReceiver<ObjectRef<Account>>) {
        let (tx, rx) = unbounded();
        let trigger = Trigger {
            tx,
            active: Arc::new(AtomicBool::new(true)),
        };
        (trigger, rx)
    }

    /// The wakes sent so far (after letting due timers run).
    async fn sent(rx: &mut UnboundedReceiver<ObjectRef<Account>>) -> Vec<String> {
        tokio::task::yield_now().await;
        let mut names = Vec::new();
        while let Ok(r) = rx.try_recv() {
            names.push(r.name);
        }
        names
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_folds_a_burst_then_a_stream_into_one_wake_per_growing_window() {
        let (trigger, mut rx) = active();
        let secs = Duration::from_secs;
        let throttle = Throttle::new(trigger, Duration::from_millis(250), secs(10), secs(30));
        let (eu, us) = (named::<Account>("t", "eu"), named::<Account>("t", "us"));
        let step = |millis| tokio::time::advance(Duration::from_millis(millis));

        // A burst after a quiet spell: one wake, a fold later.
        throttle.send(eu.clone());
        step(100).await;
        throttle.send(eu.clone());
        assert!(sent(&mut rx).await.is_empty());
        step(150).await;
        assert_eq!(sent(&mut rx).await, ["eu"], "the burst wakes once");
        // A stream within the 10 s window that wake opened: one wake at its end; another
        // object has its own window.
        step(1_000).await;
        throttle.send(eu.clone());
        step(1_000).await;
        throttle.send(eu.clone());
        throttle.send(us.clone());
        step(250).await;
        assert_eq!(sent(&mut rx).await, ["us"]);
        step(7_000).await;
        assert!(sent(&mut rx).await.is_empty());
        step(1_000).await;
        assert_eq!(sent(&mut rx).await, ["eu"], "one wake at the window's end (10.25 s)");
        // The stream goes on: the next window is twice as long (ends at 30.5 s), the one after
        // capped at 30 s (ends at 60.5 s).
        step(5_000).await;
        throttle.send(eu.clone());
        step(14_000).await;
        assert!(sent(&mut rx).await.is_empty(), "a 20 s window");
        step(1_000).await;
        assert_eq!(sent(&mut rx).await, ["eu"]);
        throttle.send(eu.clone());
        step(29_000).await;
        assert!(sent(&mut rx).await.is_empty(), "a 30 s window");
        step(1_000).await;
        assert_eq!(sent(&mut rx).await, ["eu"]);
        // Quiet for a whole window: the next change wakes a fold later again, and the window
        // it opens is the first length again.
        step(31_000).await;
        throttle.send(eu.clone());
        step(250).await;
        assert_eq!(sent(&mut rx).await, ["eu"]);
        throttle.send(eu.clone());
        step(10_000).await;
        assert_eq!(sent(&mut rx).await, ["eu"]);
    }
}
