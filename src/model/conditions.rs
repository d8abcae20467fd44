//! Status conditions: building them, merging them into what an object already reports, and
//! telling which transitions deserve an event. The one place condition handling lives.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

pub const READY: &str = "Ready";
pub const SECRET_READY: &str = "SecretReady";
pub const ADMIN_PRESENT: &str = "AdminPresent";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
pub const DENYLIST_CONFLICT: &str = "DenylistConflict";

/// A condition as the operator wants it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn ok(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn failed(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The conditions to report: `desired`, in order, each keeping its previous
/// `lastTransitionTime` unless its status changed. Conditions not desired are dropped.
pub fn merge(previous: &[Condition], desired: &[Desired], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = status_str(d.status);
            let since = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The conditions with `desired` set (merged as above) and every other type kept as it is.
pub fn upsert(previous: &[Condition], desired: &Desired, generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let updated = merge(previous, std::slice::from_ref(desired), generation, now);
    let mut conditions: Vec<Condition> = previous.iter().filter(|c| c.type_ != desired.type_).cloned().collect();
    conditions.extend(updated);
    conditions
}

/// Reasons for a state that resolves by itself within seconds (not worth a Warning event).
pub const TRANSIENT_REASONS: [&str; 2] = ["DefaultAccountPending", "DeletingChildren"];

/// Whether a condition of this type and status reports a problem. Most conditions are
/// positive (False is the problem); DeletionBlocked and DenylistConflict are negative.
pub fn is_problem(type_: &str, status: bool) -> bool {
    match type_ {
        DELETION_BLOCKED | DENYLIST_CONFLICT => status,
        _ => !status,
    }
}

/// Whether `desired` is a new occurrence compared with what was reported: a condition that
/// now reports a problem with a reason it did not have before. Events are emitted only then, so a
/// violation is announced once, not on every reconcile.
pub fn is_new_failure(previous: &[Condition], desired: &Desired) -> bool {
    let status = status_str(desired.status);
    is_problem(desired.type_, desired.status)
        && !TRANSIENT_REASONS.contains(&desired.reason.as_str())
        && !previous
            .iter()
            .any(|c| c.type_ == desired.type_ && c.status == status && c.reason == desired.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let first = merge(&[], &[Desired::ok(READY, "Ready", "fine")], Some(1), at(100));
        let again = merge(&first, &[Desired::ok(READY, "Ready", "still fine")], Some(2), at(200));
        assert_eq!(again[0].last_transition_time, Time(at(100)));
        assert_eq!(again[0].message, "still fine");
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn a_changed_status_gets_a_new_transition_time() {
        let first = merge(&[], &[Desired::ok(READY, "Ready", "fine")], Some(1), at(100));
        let failed = merge(
            &first,
            &[Desired::failed(READY, "AccountNotFound", "no")],
            Some(1),
            at(200),
        );
        assert_eq!(failed[0].status, "False");
        assert_eq!(failed[0].last_transition_time, Time(at(200)));
    }

    #[test]
    fn merging_the_same_thing_twice_is_equal() {
        let desired = [
            Desired::ok(READY, "Ready", "fine"),
            Desired::failed(SECRET_READY, "SecretConflict", "x"),
        ];
        let first = merge(&[], &desired, Some(3), at(100));
        assert_eq!(merge(&first, &desired, Some(3), at(999)), first);
    }

    #[test]
    fn upsert_replaces_one_type_and_keeps_the_others() {
        let first = merge(
            &[],
            &[
                Desired::ok(READY, "Ready", "fine"),
                Desired::ok(SECRET_READY, "SecretIssued", "s"),
            ],
            Some(1),
            at(1),
        );
        let blocked = upsert(
            &first,
            &Desired::ok(DELETION_BLOCKED, "ChildrenExist", "x"),
            Some(2),
            at(5),
        );
        assert_eq!(blocked.len(), 3);
        assert_eq!(blocked[0], first[0]);
        let again = upsert(
            &blocked,
            &Desired::ok(DELETION_BLOCKED, "ChildrenExist", "x"),
            Some(2),
            at(9),
        );
        assert_eq!(again, blocked);
    }

    #[test]
    fn failures_are_new_only_when_their_reason_is() {
        let failed = Desired::failed(READY, "DuplicateEmail", "dup");
        assert!(is_new_failure(&[], &failed));
        let reported = merge(&[], std::slice::from_ref(&failed), None, at(1));
        assert!(!is_new_failure(&reported, &failed));
        assert!(is_new_failure(
            &reported,
            &Desired::failed(READY, "AccountNotFound", "gone")
        ));
        assert!(!is_new_failure(&[], &Desired::ok(READY, "Ready", "ok")));
        assert!(!is_new_failure(
            &[],
            &Desired::failed(READY, "DefaultAccountPending", "soon")
        ));
        // Negative conditions report a problem when True.
        assert!(is_new_failure(
            &[],
            &Desired::new(DENYLIST_CONFLICT, true, "SafelistedDeniedElements", "x")
        ));
        assert!(!is_new_failure(
            &[],
            &Desired::new(DENYLIST_CONFLICT, false, "NoConflict", "x")
        ));
    }
}
