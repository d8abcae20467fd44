//! Prometheus metrics of the operator, served as text on `/metrics`.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// The failed step (`Error::metric_label`).
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackoffLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: &'static str,
    /// CREATE, UPDATE or DELETE.
    pub operation: &'static str,
    /// allowed, warned, denied or error.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// allowed, unauthenticated, forbidden, invalid, or unavailable (503: caches not synced).
    pub outcome: &'static str,
    /// Why (`model::authz::Decision::code`): failed authentications are counted by reason.
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: &'static str,
    /// "True", "False" or "Unknown" (no Ready condition yet).
    pub ready: &'static str,
    /// The Ready condition's reason ("" before there is one; "Other" for one the operator
    /// does not know).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabels {
    /// "organization" or "user".
    pub owner: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// As the API server names it: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE.
    pub verb: &'static str,
    /// The resource, with its subresource: `ceusers/status`.
    pub resource: String,
    /// The response's HTTP status; 0 when none came.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantApiLabels {
    /// The route as the OpenAPI document names it: `PUT /users/{userId}/roles/{roleKey}`.
    pub route: &'static str,
    /// The answer's HTTP status.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub objects_in_backoff: Family<BackoffLabels, Gauge>,
    pub status_writes: Family<ControllerLabels, Counter>,
    pub objects: Family<ObjectLabels, Gauge>,
    pub malformed_objects: Family<KindLabels, Gauge>,
    /// The label sets of `objects` set by the last `set_object_counts`.
    objects_reported: std::sync::Mutex<std::collections::HashSet<ObjectLabels>>,
    pub secrets_issued: Family<SecretLabels, Counter>,
    pub secrets_rotated: Family<SecretLabels, Counter>,
    pub leader: Gauge,
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    pub admission_duration: Family<KindLabels, Histogram>,
    pub webhook_certificate_expiry: Gauge,
    pub authz_decisions: Family<AuthzLabels, Counter>,
    pub authz_duration: Histogram,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    pub tenant_api_requests: Family<TenantApiLabels, Counter>,
    pub tenant_api_duration: Family<RouteLabels, Histogram>,
    /// The refusal line of the authorization endpoint, which any API caller can cause.
    pub authz_refusal_log: LogLimit,
    /// The failure line of the admission webhook.
    pub admission_failure_log: LogLimit,
}

/// A budget for a log line that callers can cause at will (a refusal, a failed review): a flood
/// of bad requests must not flood the log or fill the node's disk. Past the budget, lines are
/// dropped and counted (`ce_operator_log_lines_suppressed_total{line}`), so the flood still
/// shows, in the metrics.
pub struct LogLimit {
    budget: governor::DefaultDirectRateLimiter,
    suppressed: Counter,
}

impl std::fmt::Debug for LogLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLimit")
            .field("suppressed", &self.suppressed.get())
            .finish()
    }
}

impl LogLimit {
    /// 20 lines a second, in bursts of up to 100.
    fn new(suppressed: &Family<LineLabels, Counter>, line: &'static str) -> Self {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(20).expect("non-zero"))
            .allow_burst(std::num::NonZeroU32::new(100).expect("non-zero"));
        Self {
            budget: governor::RateLimiter::direct(quota),
            suppressed: suppressed.get_or_create(&LineLabels { line }).clone(),
        }
    }

    /// Whether to write the line now; if not, it is counted as suppressed.
    pub fn allows(&self) -> bool {
        let allowed = self.budget.check().is_ok();
        if !allowed {
            self.suppressed.inc();
        }
        allowed
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LineLabels {
    pub line: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ce_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let objects_in_backoff = Family::<BackoffLabels, Gauge>::default();
        let status_writes = Family::<ControllerLabels, Counter>::default();
        // From 100 µs: a reconcile that writes nothing (resolve, decide, compare) takes tens
        // of microseconds, and whether that grows with the store is worth seeing.
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let objects = Family::<ObjectLabels, Gauge>::default();
        let malformed_objects = Family::<KindLabels, Gauge>::default();
        let secrets_issued = Family::<SecretLabels, Counter>::default();
        let secrets_rotated = Family::<SecretLabels, Counter>::default();
        let leader = Gauge::default();
        let admission_reviews = Family::<AdmissionLabels, Counter>::default();
        let admission_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1])
        });
        let webhook_certificate_expiry = Gauge::default();
        let authz_decisions = Family::<AuthzLabels, Counter>::default();
        let authz_duration = Histogram::new([
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
        ]);
        registry.register("reconciles", "Reconciles run, per controller", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and were retried, by the step that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "objects_in_backoff",
            "Objects whose last reconcile failed, waiting to be retried",
            objects_in_backoff.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes (only ever of a status that changed)",
            status_writes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            reconcile_duration.clone(),
        );
        registry.register("objects", "Objects per kind, by their Ready condition", objects.clone());
        registry.register(
            "malformed_objects",
            "Objects the API server holds that this operator version cannot read (ignored; see the log)",
            malformed_objects.clone(),
        );
        registry.register(
            "secrets_issued",
            "Secrets generated (first issue or re-issue)",
            secrets_issued.clone(),
        );
        registry.register("secrets_rotated", "Secrets rotated on request", secrets_rotated.clone());
        registry.register(
            "leader",
            "Whether this instance holds the leader lease (1) or not (0)",
            leader.clone(),
        );
        registry.register(
            "admission_reviews",
            "Admission reviews answered, by kind, operation and result",
            admission_reviews.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time an admission review took to answer",
            admission_duration.clone(),
        );
        registry.register(
            "webhook_certificate_expiry_timestamp_seconds",
            "When the served webhook certificate expires (Unix time)",
            webhook_certificate_expiry.clone(),
        );
        registry.register(
            "authz_decisions",
            "Authorization decisions, by outcome and reason code",
            authz_decisions.clone(),
        );
        registry.register(
            "authz_duration_seconds",
            "Time an authorization decision took (from the caches)",
            authz_duration.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests this operator made to the Kubernetes API, by verb, resource and response code",
            api_requests.clone(),
        );
        let tenant_api_requests = Family::<TenantApiLabels, Counter>::default();
        registry.register(
            "tenant_api_requests",
            "Requests to the tenant API, by route and answer",
            tenant_api_requests.clone(),
        );
        // A read answers from the caches (microseconds); a write waits for the API server
        // and for the caches to hold it (milliseconds).
        let tenant_api_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "tenant_api_duration_seconds",
            "Time a tenant API request took, writes until the caches hold them",
            tenant_api_duration.clone(),
        );
        let log_lines_suppressed = Family::<LineLabels, Counter>::default();
        registry.register(
            "log_lines_suppressed",
            "Log lines dropped because callers caused more than the line's budget (20/s)",
            log_lines_suppressed.clone(),
        );
        let authz_refusal_log = LogLimit::new(&log_lines_suppressed, "authorization_refused");
        let admission_failure_log = LogLimit::new(&log_lines_suppressed, "admission_review_failed");
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            objects_in_backoff,
            status_writes,
            objects,
            objects_reported: Default::default(),
            malformed_objects,
            secrets_issued,
            secrets_rotated,
            leader,
            admission_reviews,
            admission_duration,
            webhook_certificate_expiry,
            authz_decisions,
            authz_duration,
            api_requests,
            tenant_api_requests,
            tenant_api_duration,
            authz_refusal_log,
            admission_failure_log,
        }
    }
}

impl Metrics {
    pub fn record_reconcile(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Sets the objects gauge to these counts and drops the label sets no longer present (a
    /// reason that no object reports any more disappears rather than staying at its last value).
    pub fn set_object_counts(&self, counts: impl IntoIterator<Item = (ObjectLabels, i64)>) {
        let mut reported = self.objects_reported.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::take(&mut *reported);
        for (labels, count) in counts {
            self.objects.get_or_create(&labels).set(count);
            reported.insert(labels);
        }
        for gone in previous.difference(&reported) {
            self.objects.remove(gone);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_past_its_budget_is_dropped_and_counted() {
        let metrics = Metrics::default();
        let allowed = (0..1_000).filter(|_| metrics.authz_refusal_log.allows()).count();
        // The burst, and at most a few more refilled while the loop ran.
        assert!((100..110).contains(&allowed), "{allowed} lines allowed");
        assert!(metrics.render().contains(&format!(
            "ce_operator_log_lines_suppressed_total{{line=\"authorization_refused\"}} {}",
            1_000 - allowed
        )));
    }

    #[test]
    fn renders_prometheus_text_with_the_recorded_values() {
        let metrics = Metrics::default();
        metrics.record_reconcile("CEUser", Duration::from_millis(3));
        metrics.record_reconcile("CEUser", Duration::from_millis(3));
        metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: "CEUser",
                step: "write_status",
            })
            .inc();
        let ready = |reason| ObjectLabels {
            kind: "CEUser",
            ready: "True",
            reason,
        };
        metrics.set_object_counts([(ready("Ready"), 7), (ready("Other"), 1)]);
        metrics.set_object_counts([(ready("Ready"), 7)]);
        metrics.leader.set(1);
        let text = metrics.render();
        assert!(
            text.contains("ce_operator_reconciles_total{controller=\"CEUser\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ce_operator_reconcile_errors_total{controller=\"CEUser\",step=\"write_status\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ce_operator_objects{kind=\"CEUser\",ready=\"True\",reason=\"Ready\"} 7"),
            "{text}"
        );
        assert!(
            !text.contains("reason=\"Other\""),
            "a label set no longer reported stays: {text}"
        );
        assert!(text.lines().any(|l| l == "ce_operator_leader 1"), "{text}");
        assert!(text.contains("ce_operator_reconcile_duration_seconds_bucket"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
