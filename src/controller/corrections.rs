//! Corrections of what someone else wrote over the operator's own writes: a status another
//! client rewrote, the labels of a generated Secret changed. The first is put right at once;
//! when the same object needs the same correction again and again (another controller, a
//! script in a loop), the corrections are spaced out, 1 s doubling to a minute, so that two
//! writers fighting over one object do not become a write loop whose pace the other sets.
//! At most 6 corrections of an object in any minute (0, 1, 3, 7, 15, 31 s into a fight), then
//! one a minute; a fight is over after 5 minutes without one.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);
/// How long after its last correction a fight is forgotten.
const OVER: Duration = Duration::from_secs(300);

/// The fights under way, per (kind, namespace/name).
#[derive(Default)]
pub struct Corrections {
    fights: Mutex<Fights>,
}

#[derive(Default)]
struct Fights {
    open: HashMap<(&'static str, String), Fight>,
    /// The number of fights after the last pruning.
    pruned_to: usize,
}

#[derive(Clone, Copy, Debug)]
struct Fight {
    /// What the last correction wrote (a digest): another value is not the same correction.
    wrote: u64,
    last: Instant,
    /// The next correction of the same value waits until `last + window`.
    window: Duration,
}

impl Corrections {
    /// Whether a correction of `object` writing `value` (a digest of what is written) may be
    /// made now; if not, how long until it may.
    pub fn wait(&self, kind: &'static str, object: &str, value: u64) -> Option<Duration> {
        self.wait_at(kind, object, value, Instant::now())
    }

    /// Records a write of `value` to `object` made now, if it was a correction: `correction`
    /// (the caller saw someone else's write), or the same value as the fight's last correction
    /// (written again, so someone changed it in between). How long the next correction of the
    /// same value has to wait, if recorded.
    pub fn made(&self, kind: &'static str, object: &str, value: u64, correction: bool) -> Option<Duration> {
        self.made_at(kind, object, value, correction, Instant::now())
    }

    fn wait_at(&self, kind: &'static str, object: &str, value: u64, now: Instant) -> Option<Duration> {
        let fights = self.fights.lock().expect("corrections lock");
        let fight = fights.open.get(&(kind, object.to_owned()))?;
        let due = fight.last + fight.window;
        (fight.wrote == value && now < due).then(|| due - now)
    }

    fn made_at(
        &self,
        kind: &'static str,
        object: &str,
        value: u64,
        correction: bool,
        now: Instant,
    ) -> Option<Duration> {
        let mut fights = self.fights.lock().expect("corrections lock");
        let key = (kind, object.to_owned());
        let window = match fights.open.get(&key) {
            Some(fight) if fight.wrote == value && now < fight.last + OVER => (fight.window * 2).min(MAX),
            _ if correction => FIRST,
            _ => return None,
        };
        fights.open.insert(
            key,
            Fight {
                wrote: value,
                last: now,
                window,
            },
        );
        // Fights over are forgotten now and then (amortized), so deleted objects do not linger.
        if fights.open.len() > 2 * fights.pruned_to + 64 {
            fights.open.retain(|_, f| now < f.last + OVER);
            fights.pruned_to = fights.open.len();
        }
        Some(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Corrections made by a writer that corrects whenever allowed, against another writer
    /// that changes the object every `every` for `lasting`: the seconds at which they were made.
    fn fight(every: Duration, lasting: Duration) -> Vec<u64> {
        let corrections = Corrections::default();
        let start = Instant::now();
        let mut made = Vec::new();
        let mut pending_since: Option<Instant> = None;
        let step = Duration::from_millis(100);
        let mut t = Duration::ZERO;
        while t <= lasting + MAX * 2 {
            let now = start + t;
            if t <= lasting && t.as_millis().is_multiple_of(every.as_millis()) {
                pending_since.get_or_insert(now);
            }
            if pending_since.is_some() && corrections.wait_at("CEUser", "t/u0", 7, now).is_none() {
                corrections.made_at("CEUser", "t/u0", 7, true, now);
                made.push(t.as_secs());
                pending_since = None;
            }
            t += step;
        }
        made
    }

    #[test]
    fn a_fight_is_corrected_at_once_then_ever_more_rarely() {
        // Another writer every 200 ms for two minutes: 6 corrections in the first minute, then
        // one a minute, and one after it stopped.
        let made = fight(Duration::from_millis(200), Duration::from_secs(120));
        assert_eq!(made, [0, 1, 3, 7, 15, 31, 63, 123]);
        // However fast the other writer, no more in any minute than 6.
        let fast = fight(Duration::from_millis(100), Duration::from_secs(300));
        for (i, &t) in fast.iter().enumerate() {
            assert!(fast[i..].iter().take_while(|&&u| u < t + 60).count() <= 6, "{fast:?}");
        }
    }

    #[test]
    fn another_value_or_a_quiet_spell_is_not_the_same_fight() {
        let corrections = Corrections::default();
        let t0 = Instant::now();
        assert_eq!(corrections.wait_at("CEUser", "t/u0", 1, t0), None);
        // A write that is no correction, of an object not fought over, is not recorded.
        assert_eq!(corrections.made_at("CEUser", "t/u0", 1, false, t0), None);
        assert_eq!(corrections.wait_at("CEUser", "t/u0", 1, t0), None);
        assert_eq!(corrections.made_at("CEUser", "t/u0", 1, true, t0), Some(FIRST));
        let soon = t0 + Duration::from_millis(300);
        assert_eq!(
            corrections.wait_at("CEUser", "t/u0", 1, soon),
            Some(Duration::from_millis(700))
        );
        // A different value (the object's state changed) is written at once.
        assert_eq!(corrections.wait_at("CEUser", "t/u0", 2, soon), None);
        // Other objects are not held.
        assert_eq!(corrections.wait_at("CEUser", "t/u1", 1, soon), None);
        assert_eq!(corrections.wait_at("Secret", "t/u0", 1, soon), None);
        // The window doubles while the fight goes on (the same value written again is part of
        // it, seen as someone else's write or not), and starts over after it ended.
        let second = t0 + Duration::from_secs(1);
        assert_eq!(corrections.made_at("CEUser", "t/u0", 1, false, second), Some(FIRST * 2));
        let later = second + OVER;
        assert_eq!(corrections.wait_at("CEUser", "t/u0", 1, later), None);
        assert_eq!(corrections.made_at("CEUser", "t/u0", 1, false, later), None);
        assert_eq!(corrections.made_at("CEUser", "t/u0", 1, true, later), Some(FIRST));
    }
}
