//! The activity log: `events.k8s.io/v1` Events about the tenancy objects, in the background
//! of the reconciles. Repeats of an event within a few minutes update one Event's series, as
//! kube's `Recorder` does; unlike it, what is remembered per event is a hash and what a
//! series update needs, not a copy of the Event (which at one event per issued secret was
//! about 1.5 KB of steady memory per user), and old entries are swept once a minute, not
//! scanned on every publish.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tracing::{debug, warn};

use super::error::{namespace_not_found, namespace_terminating};

use crate::model::conditions::Event;

/// How long a repeat counts as the same occurrence (kube's `Recorder` uses the same).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often entries older than the window are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Publishes events as `controller` (`reportingController`) from `instance`.
pub struct Events(Arc<Publisher>);

struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_key: HashMap<u64, Published>,
    swept: Option<Instant>,
}

/// An Event this process created, for the next repeat of it.
struct Published {
    name: String,
    count: i32,
    last: Instant,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> Self {
        Self(Arc::new(Publisher {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or(controller).to_owned(),
            recent: Mutex::default(),
        }))
    }

    /// Publishes in the background: a failure is logged, never returned, since events are
    /// the activity log, not part of converging.
    pub fn publish(&self, regarding: ObjectReference, event: Event) {
        let publisher = self.0.clone();
        tokio::spawn(async move { publisher.publish(&regarding, &event).await });
    }
}

impl Publisher {
    /// Creates the event about `regarding`, or counts a repeat of it on the Event created
    /// for the first occurrence.
    async fn publish(&self, regarding: &ObjectReference, event: &Event) {
        let key = key_of(regarding, event);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let now = Timestamp::now();
        let repeat = self.recent.lock().expect("events lock").repeat(key, Instant::now());
        let result = match repeat {
            Some((name, count)) => {
                let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                    .map(drop)
            }
            None => {
                let created = api
                    .create(&PostParams::default(), &self.event(regarding, event, now))
                    .await;
                if let Ok(created) = &created {
                    let name = created.metadata.name.clone().unwrap_or_default();
                    self.recent
                        .lock()
                        .expect("events lock")
                        .first(key, name, Instant::now());
                }
                created.map(drop)
            }
        };
        match result {
            Ok(()) => {}
            // The namespace is going or gone, and the object with it: nobody will read this.
            Err(e) if namespace_terminating(&e) || namespace_not_found(&e) => {
                debug!(
                    reason = event.reason.as_str(),
                    namespace, "event dropped: its namespace is being deleted"
                );
            }
            Err(e) => warn!(reason = event.reason.as_str(), error = %e, "could not publish event"),
        }
    }

    fn event(&self, regarding: &ObjectReference, event: &Event, now: Timestamp) -> KubeEvent {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some("Reconcile".into()),
            reason: Some(event.reason.as_str().into()),
            note: Some(event.note.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

impl Recent {
    /// The name and new count of the Event to update if `key` was published within the
    /// window; sweeps what is older, at most once a minute.
    fn repeat(&mut self, key: u64, now: Instant) -> Option<(String, i32)> {
        if self.swept.is_none_or(|at| now - at > SWEEP_EVERY) {
            self.by_key.retain(|_, p| now - p.last < SERIES_WINDOW);
            self.swept = Some(now);
        }
        let published = self.by_key.get_mut(&key).filter(|p| now - p.last < SERIES_WINDOW)?;
        // The first occurrence has no series; the first repeat makes it a series of two.
        published.count += 1;
        published.last = now;
        Some((published.name.clone(), published.count))
    }

    fn first(&mut self, key: u64, name: String, now: Instant) {
        let published = Published {
            name,
            count: 1,
            last: now,
        };
        self.by_key.insert(key, published);
    }
}

/// What makes two events the same occurrence: the object (by uid, so a recreated object
/// starts afresh), the type, the reason and the note.
fn key_of(regarding: &ObjectReference, event: &Event) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        event.warning,
        event.reason.as_str(),
        &event.note,
    )
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_count_on_the_first_event_and_old_ones_are_swept() {
        let mut recent = Recent::default();
        let start = Instant::now();
        assert_eq!(recent.repeat(1, start), None, "nothing published yet");
        recent.first(1, "jane.1".into(), start);
        let later = start + Duration::from_secs(10);
        assert_eq!(recent.repeat(1, later), Some(("jane.1".into(), 2)));
        assert_eq!(recent.repeat(1, later), Some(("jane.1".into(), 3)));
        assert_eq!(recent.repeat(2, later), None, "another event is not a repeat");
        // The window counts from the last occurrence.
        let quiet = later + SERIES_WINDOW;
        assert_eq!(
            recent.repeat(1, quiet),
            None,
            "a repeat after the window is a new event"
        );
        assert!(recent.by_key.is_empty(), "entries older than the window are dropped");
    }
}
