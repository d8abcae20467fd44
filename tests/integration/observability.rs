//! The chart's observability, checked without a cluster: the alert rules pass promtool's check
//! and their unit tests, the chart renders them (and the Grafana dashboard) only when asked, and
//! every metric the alerts and the dashboard query is one the operator exports.
//!
//! Needs `.local/bin/promtool` and `.local/bin/helm` (`hack/build-tools.sh`).

use crate::support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use ce_operator::metrics::{
    AdmissionLabels, ApiRequestLabels, AuthzLabels, BackoffLabels, ControllerLabels, ErrorLabels, KindLabels, Metrics,
    ObjectLabels, SecretLabels,
};
use serde_json::Value;
use support::{repo_root, tool};

const ALERTS: &str = "charts/ce-operator/files/alerts.yaml";
const ALERT_TESTS: &str = "tests/alerts/alerts_test.yaml";
const DASHBOARD: &str = "charts/ce-operator/dashboards/ce-operator.json";

/// promtool is part of the test tools: a missing one is a setup error, not a reason to skip.
fn promtool() -> PathBuf {
    let path = tool("promtool");
    assert!(
        path.exists(),
        "{} is missing: run `hack/build-tools.sh promtool`",
        path.display()
    );
    path
}

/// Runs `command` in the repository root and returns its stdout, failing with its output.
fn run_ok(command: &mut Command) -> String {
    let out = command
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{command:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn alerts() -> Value {
    serde_saphyr::from_str(&read(ALERTS)).unwrap_or_else(|e| panic!("parse {ALERTS}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("parse {DASHBOARD}: {e}"))
}

/// The manifests `helm template` renders with these `--set` values.
fn render(values: &[&str]) -> Vec<Value> {
    let mut args = vec!["ce", "charts/ce-operator", "-n", "ce-system"];
    for value in values {
        args.extend(["--set", value]);
    }
    let text = support::helm_template(&args);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("parse helm output: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Every alert expression, with its alert's name.
fn alert_exprs(alerts: &Value) -> Vec<(String, String)> {
    let groups = alerts["groups"].as_array().expect("groups is a list");
    let rules = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules is a list"));
    rules
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            (format!("alert {name}"), r["expr"].as_str().expect("expr").to_owned())
        })
        .collect()
}

/// Every query of the dashboard, with its panel's title: the panels' targets (also those
/// nested in collapsed rows).
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a target has an expr");
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The sample names the operator exports: from each `# TYPE` line, with the suffixes of its
/// type (a counter only as `_total`, a histogram only as its series). A labelled family is
/// rendered only once it has a child, so each gets one first.
fn exported_names() -> BTreeSet<String> {
    let metrics = Metrics::default();
    let controller = "CEUser";
    metrics.record_reconcile(controller, Duration::ZERO);
    let step = "issue_secret";
    metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels { controller, step })
        .inc();
    metrics
        .objects_in_backoff
        .get_or_create(&BackoffLabels { controller })
        .set(0);
    metrics
        .status_writes
        .get_or_create(&ControllerLabels { controller })
        .inc();
    metrics
        .malformed_objects
        .get_or_create(&KindLabels { kind: controller })
        .set(0);
    let (kind, ready, reason) = (controller, "True", "Ready");
    metrics.set_object_counts([(ObjectLabels { kind, ready, reason }, 1)]);
    metrics
        .secrets_issued
        .get_or_create(&SecretLabels { owner: "user" })
        .inc();
    metrics
        .secrets_rotated
        .get_or_create(&SecretLabels { owner: "user" })
        .inc();
    let request = ApiRequestLabels {
        verb: "APPLY",
        resource: "ceusers/status".into(),
        code: 200,
    };
    metrics.api_requests.get_or_create(&request).inc();
    let (operation, result) = ("CREATE", "allowed");
    let admission = AdmissionLabels {
        kind,
        operation,
        result,
    };
    metrics.admission_reviews.get_or_create(&admission).inc();
    metrics
        .admission_duration
        .get_or_create(&KindLabels { kind })
        .observe(0.001);
    let (outcome, code) = ("allowed", "allowed");
    metrics
        .authz_decisions
        .get_or_create(&AuthzLabels { outcome, code })
        .inc();
    let text = metrics.render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE <name> <type>");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    // 14 families: 11 single series, 3 histograms of 3.
    assert!(names.len() >= 20, "metrics missing from:\n{text}");
    names
}

/// The identifiers of a PromQL expression that name an operator metric (`ce_operator_…`),
/// outside string literals (label values).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            // Backquoted strings have no escapes.
            while let Some(s) = chars.next() {
                if s == '\\' && c != '`' {
                    chars.next();
                } else if s == c {
                    break;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            let mut word = String::from(c);
            while let Some(&n) = chars
                .peek()
                .filter(|n| n.is_ascii_alphanumeric() || **n == '_' || **n == ':')
            {
                word.push(n);
                chars.next();
            }
            if word.starts_with("ce_operator_") {
                names.push(word);
            }
        }
    }
    names
}

#[test]
fn the_tokenizer_finds_metric_names_but_not_label_values() {
    let expr = r#"sum(rate(ce_operator_a_total{job="ce_operator_b", x='ce_operator_c\'', y=`ce_operator_d`}[5m]))
        / on() x_ce_operator_e + ce_operator_f:rate5m"#;
    assert_eq!(metric_names(expr), ["ce_operator_a_total", "ce_operator_f:rate5m"]);
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = promtool();
    run_ok(Command::new(&promtool).args(["check", "rules", ALERTS]));
    let tested = run_ok(Command::new(&promtool).args(["test", "rules", ALERT_TESTS]));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_in_the_readme() {
    let alerts = alerts();
    let readme = read("README.md");
    let rules = alerts["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap());
    let mut count = 0;
    for rule in rules {
        let name = rule["alert"].as_str().expect("only alerting rules");
        assert!(
            ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for annotation in ["summary", "description"] {
            assert!(rule["annotations"][annotation].is_string(), "{name}: {annotation}");
        }
        // The anchor GitHub makes of the heading `### <alert name>`.
        let url = format!(
            "https://github.com/ce-operator/ce-operator/blob/main/README.md#{}",
            name.to_lowercase()
        );
        assert_eq!(rule["annotations"]["runbook_url"], url.as_str(), "{name}: runbook_url");
        assert!(
            readme.contains(&format!("\n### {name}\n")),
            "README.md has no runbook for {name}"
        );
        count += 1;
    }
    assert_eq!(count, 7, "the seven alerts of the chart");
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let exported = exported_names();
    let dashboard = dashboard();
    let queries = dashboard_exprs(&dashboard);
    assert!(queries.len() > 10, "the dashboard has few queries: {queries:?}");
    let mut unknown = Vec::new();
    let mut without_metric = Vec::new();
    for (place, expr) in queries.iter().chain(&alert_exprs(&alerts())) {
        let names = metric_names(expr);
        if names.is_empty() {
            without_metric.push(format!("{place}: {expr}"));
        }
        unknown.extend(
            names
                .into_iter()
                .filter(|n| !exported.contains(n))
                .map(|n| format!("{place}: {n}")),
        );
    }
    assert!(
        unknown.is_empty(),
        "metrics the operator does not export:\n  {}\nexported: {exported:?}",
        unknown.join("\n  ")
    );
    assert!(
        without_metric.is_empty(),
        "queries of no operator metric:\n  {}",
        without_metric.join("\n  ")
    );
}

/// Each dashboard query, with Grafana's variables replaced, is valid PromQL: promtool checks
/// them as recording rules.
#[test]
fn the_dashboard_queries_parse_as_promql() {
    let promtool = promtool();
    let dashboard = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_exprs(&dashboard).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "2m")
            .replace("$__interval", "1m")
            .replace("$namespace", ".*");
        assert!(
            !expr.contains('$'),
            "a Grafana variable this test does not know: {expr}"
        );
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let path = std::env::temp_dir().join(format!("ce-operator-dashboard-rules-{}.yaml", std::process::id()));
    std::fs::write(&path, rules).unwrap();
    let checked = Command::new(&promtool)
        .args(["check", "rules", "--lint=none"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let checked = checked.expect("run promtool");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn every_dashboard_panel_queries_the_chosen_prometheus() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39));
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "no datasource variable of type prometheus"
    );
    fn walk(panels: &Value) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
                for target in panel["targets"].as_array().into_iter().flatten() {
                    assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
                }
            }
            walk(&panel["panels"]);
        }
    }
    walk(&dashboard["panels"]);
}

#[test]
fn the_chart_renders_the_alerts_and_the_dashboard_only_when_enabled() {
    let defaults = render(&[]);
    assert!(of_kind(&defaults, "Deployment").len() == 1, "the chart renders");
    assert!(
        of_kind(&defaults, "PrometheusRule").is_empty(),
        "a PrometheusRule by default"
    );
    assert!(
        of_kind(&defaults, "ConfigMap")
            .iter()
            .all(|c| c["data"].get("ce-operator.json").is_none()),
        "a dashboard by default"
    );

    let enabled = render(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "grafanaDashboard.enabled=true",
    ]);
    let rules = of_kind(&enabled, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        rule["spec"]["groups"],
        alerts()["groups"],
        "the rule's groups are not {ALERTS}'s"
    );

    let maps = of_kind(&enabled, "ConfigMap");
    let map = maps
        .iter()
        .find(|c| c["data"].get("ce-operator.json").is_some())
        .expect("a ConfigMap with the dashboard");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["namespace"], "ce-system");
    let shipped: Value = serde_json::from_str(map["data"]["ce-operator.json"].as_str().unwrap()).expect("JSON");
    assert_eq!(shipped, dashboard(), "the ConfigMap does not hold {DASHBOARD}");

    // The sidecar's label and namespace are the installer's.
    let custom = render(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.label=dashboards",
        "grafanaDashboard.labelValue=ce",
        "grafanaDashboard.namespace=monitoring",
    ]);
    let map = of_kind(&custom, "ConfigMap")
        .into_iter()
        .find(|c| c["data"].get("ce-operator.json").is_some())
        .expect("a ConfigMap with the dashboard");
    assert_eq!(map["metadata"]["labels"]["dashboards"], "ce");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
}

/// Prometheus text as the operator's registry writes it (OpenMetrics: `_total`, `# EOF`).
const METRICS_TEXT: &str = r#"# HELP ce_operator_reconciles Reconciles run.
# TYPE ce_operator_reconciles counter
ce_operator_reconciles_total{controller="CEUser"} 3
ce_operator_reconciles_total{controller="Account"} 2
# TYPE ce_operator_leader gauge
ce_operator_leader 1
# TYPE d histogram
d_bucket{kind="CEUser",le="0.005"} 1
d_bucket{kind="CEUser",le="+Inf"} 4
d_bucket{kind="Account",le="0.005"} 2
d_bucket{kind="Account",le="+Inf"} 2
d_sum{kind="CEUser"} 0.5
d_count{kind="CEUser"} 4
# EOF
"#;

#[test]
fn the_metrics_text_is_read_by_name_and_labels() {
    let m = support::Metrics::parse(METRICS_TEXT);
    assert_eq!(m.sum("ce_operator_reconciles_total", &[]), 5.0);
    assert_eq!(m.sum("ce_operator_reconciles_total", &[("controller", "CEUser")]), 3.0);
    assert_eq!(m.sum("ce_operator_reconciles_total", &[("controller", "Team")]), 0.0);
    assert_eq!(m.sum("ce_operator_leader", &[]), 1.0);
    assert_eq!(m.sum("d_count", &[("kind", "CEUser")]), 4.0);
    assert_eq!(
        m.sum_by("ce_operator_reconciles_total", &["controller"]),
        BTreeMap::from([(vec!["Account".to_owned()], 2.0), (vec!["CEUser".to_owned()], 3.0)])
    );
    assert_eq!(m.buckets("d", &[]), vec![(0.005, 3.0), (f64::INFINITY, 6.0)]);
    assert_eq!(
        m.buckets("d", &[("kind", "CEUser")]),
        vec![(0.005, 1.0), (f64::INFINITY, 4.0)]
    );
}
