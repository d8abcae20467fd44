//! Per-object exponential backoff of failed reconciles: about 1 s, doubling up to 5 min,
//! with jitter, reset when the object reconciles again without error. A persistent failure
//! (RBAC removed, an API server down) costs one attempt per object per 5 minutes, not a
//! steady stream against a struggling control plane.

use std::{collections::HashMap, sync::Mutex, time::Duration};

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

/// Consecutive failures per (controller, namespace/name).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<(&'static str, String), u32>>,
}

impl Backoff {
    /// Records a failure and returns how long to wait before the next attempt.
    pub fn failed(&self, controller: &'static str, object: String) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry((controller, object)).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n, rand::random_range(0.8..1.2))
    }

    /// Forgets the failures of an object that reconciled.
    pub fn succeeded(&self, controller: &'static str, object: String) {
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&(controller, object));
    }

    /// How many objects of `controller` wait in backoff.
    pub fn waiting(&self, controller: &'static str) -> usize {
        self.failures
            .lock()
            .expect("backoff lock")
            .keys()
            .filter(|(c, _)| *c == controller)
            .count()
    }
}

/// The wait after `failures` consecutive failures, scaled by `jitter`.
fn delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << exponent).min(MAX).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| delay(n, 1.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(delay(u32::MAX, 1.0), MAX);
    }

    #[test]
    fn success_resets_and_objects_are_counted_per_controller() {
        let backoff = Backoff::default();
        let first = backoff.failed("CEUser", "t/jane".into());
        let second = backoff.failed("CEUser", "t/jane".into());
        assert!(first < Duration::from_millis(1300) && second > Duration::from_millis(1500));
        backoff.failed("Account", "t/eu".into());
        assert_eq!(backoff.waiting("CEUser"), 1);
        backoff.succeeded("CEUser", "t/jane".into());
        assert_eq!(backoff.waiting("CEUser"), 0);
        assert!(backoff.failed("CEUser", "t/jane".into()) < Duration::from_millis(1300));
    }
}
