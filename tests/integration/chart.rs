//! The Helm chart against the real cluster: it lints, renders to manifests the API server
//! accepts, installs, and its RBAC is enough for the whole operator and no more. The
//! operator runs out of cluster with the chart's ServiceAccount identity (a TokenRequest
//! token), over all namespaces: the tests of this module take `SERIAL` to run one at a
//! time, and `hack/test.sh` runs the module alone, so no other operator runs meanwhile.

use crate::support;

use std::{path::PathBuf, process::Command};

use ce_operator::api::{CEUser, ElementSafelist, HasConditions, Organization, RoleBinding};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use support::{
    Operator, TIMEOUT, TestNamespace, apply, client, install_crds, kubeconfig_path, repo_root, tool, wait_condition,
    wait_for, wait_gone, wait_ready,
};

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(tool("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .output()
        .expect("run helm")
}

fn chart() -> String {
    repo_root().join("charts/ce-operator").display().to_string()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log lines where RBAC refused the operator something (the API server's "is forbidden:
/// User … cannot …"); not the other 403s, such as writing into a namespace being deleted by an
/// earlier test.
fn rbac_denials(log: &str) -> impl Iterator<Item = &str> {
    log.lines()
        .filter(|l| l.contains("forbidden") && l.contains(" cannot "))
}

/// One test at a time: the RBAC test's operator watches every namespace.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A release of the chart, uninstalled when dropped (also when a test fails: the chart's
/// ValidatingWebhookConfiguration covers every namespace and must not outlive the test).
struct Release {
    name: String,
    namespace: String,
    /// The operator's ServiceAccount, and a kubeconfig with a token of it.
    sa_name: String,
    sa_kubeconfig: PathBuf,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", &self.name, "-n", &self.namespace]);
    }
}

/// Installs the chart as `release` into `namespace`, with `values` (`--set` arguments).
async fn install(client: &kube::Client, release: &str, namespace: &str, values: &[&str]) -> Release {
    let mut args = vec!["install", release, "-n", namespace];
    let chart = chart();
    args.insert(2, &chart);
    for value in values {
        args.extend(["--set", value]);
    }
    ok(helm(&args), "helm install");
    let sa_name = format!("{release}-ce-operator");
    let sa_kubeconfig = std::env::temp_dir().join(format!("{release}-kubeconfig"));
    support::service_account_kubeconfig(client, namespace, &sa_name, &sa_kubeconfig).await;
    Release {
        name: release.to_owned(),
        namespace: namespace.to_owned(),
        sa_name,
        sa_kubeconfig,
    }
}

/// The negative control of the test below: with one verb the operator needs taken out of
/// the chart's ClusterRole (creating Secrets), the operator reports forbidden on its own
/// metrics and the tenant does not converge. If this passed with the verb present, the
/// RBAC test above could not tell least privilege from too little.
#[tokio::test]
async fn a_verb_missing_from_the_chart_rbac_fails_visibly() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let system = TestNamespace::new(&client, "ce-norbac").await;
    let release = format!("ce-{}", &system.name[system.name.len() - 6..]);
    // Without the webhook: this test is about RBAC.
    let installed = install(&client, &release, &system.name, &["webhook.enabled=false"]).await;
    let (sa_name, sa_kubeconfig) = (&installed.sa_name, &installed.sa_kubeconfig);
    let role = support::kubectl_ok(&["get", "clusterrole", sa_name, "-o", "json"]);
    let mut role: serde_json::Value = serde_json::from_str(&role).unwrap();
    for rule in role["rules"].as_array_mut().unwrap() {
        if rule["resources"].as_array().unwrap().iter().any(|r| r == "secrets") {
            rule["verbs"].as_array_mut().unwrap().retain(|v| v != "create");
        }
    }
    let out = support::kubectl_with_input(&["apply", "-f", "-"], &role.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let tenants = TestNamespace::new(&client, "norbac-tenants").await;
    // Its issuance key made beforehand: without `create` the operator could not make it, and
    // would stop at start (visibly too, but before the path this test is about).
    support::kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "ce-operator-issuance-key",
        "-n",
        &system.name,
        "--from-literal=key=0123456789abcdef0123456789abcdef",
    ]);
    let operator = Operator::start_all_namespaces_as(
        &format!("{release}-operator"),
        sa_kubeconfig,
        &[
            "--namespace",
            &tenants.name,
            "--webhook=false",
            "--issuance-key-namespace",
            &system.name,
        ],
    );
    apply(
        &tenants.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {displayName: Acme}\n",
    );
    support::wait_until("the operator to report a failed Secret write", TIMEOUT, || async {
        operator
            .metric("ce_operator_reconcile_errors_total", &[("controller", "Organization")])
            .await
            > 0.0
    })
    .await;
    let orgs: Api<Organization> = tenants.api();
    let acme = orgs.get("acme").await.unwrap();
    assert!(
        !acme.has_condition("SecretReady", "True", "SecretIssued"),
        "the organization converged without the verb"
    );
    assert!(
        rbac_denials(&operator.log_text()).any(|l| l.contains("cannot create resource") && l.contains("secrets")),
        "{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn the_chart_installs_and_its_rbac_runs_the_operator_with_least_privilege() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let system = TestNamespace::new(&client, "ce-system").await;
    let release = format!("ce-{}", &system.name[system.name.len() - 6..]);

    ok(helm(&["lint", &chart()]), "helm lint");
    // Everything the chart renders is accepted by the API server (server-side dry run): as
    // installed by default, and with the authorization endpoints' gRPC and mutual TLS.
    let render_and_dry_run = |values: &str| {
        let rendered = ok(
            helm(&["template", &release, &chart(), "-n", &system.name, "--set", values]),
            &format!("helm template --set {values}"),
        );
        let path = std::env::temp_dir().join(format!("{release}.yaml"));
        std::fs::write(&path, &rendered).unwrap();
        support::kubectl_ok(&[
            "apply",
            "--dry-run=server",
            "-n",
            &system.name,
            "-f",
            path.to_str().unwrap(),
        ]);
        rendered
    };
    render_and_dry_run("serviceMonitor.enabled=false");
    let rendered = render_and_dry_run(
        "authz.grpc.enabled=true,authz.tls.secretName=gateway-tls,authz.tls.clientCAKey=ca.crt,\
         webhook.clientAuth.caConfigMap=kube-root-ca.crt,webhook.clientAuth.names={ce-webhook-client}",
    );
    // The NetworkPolicy: the API server for the webhook, the gateways' namespaces for the
    // authorization endpoints (no CNI here enforces it: what the API server accepts is tested).
    let with_policy = render_and_dry_run(
        "networkPolicy.enabled=true,networkPolicy.authzFromNamespaces={gateways},\
         networkPolicy.webhookFrom[0].ipBlock.cidr=10.244.0.1/32",
    );
    for expected in ["kind: NetworkPolicy", r#"values: ["gateways"]"#, "cidr: 10.244.0.1/32"] {
        assert!(with_policy.contains(expected), "{expected} not rendered");
    }
    // ... with flags the operator has, and the Secret mounted where they point.
    let help = Command::new(env!("CARGO_BIN_EXE_ce-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in [
        "--authz-grpc-addr=0.0.0.0:8083",
        "--authz-tls-cert-file=/etc/ce-operator/authz-tls/tls.crt",
        "--authz-tls-key-file=/etc/ce-operator/authz-tls/tls.key",
        "--authz-tls-client-ca-file=/etc/ce-operator/authz-tls/ca.crt",
        "--webhook-client-ca-file=/etc/ce-operator/webhook-client-ca/ca.crt",
        "--webhook-client-name=ce-webhook-client",
    ] {
        assert!(rendered.contains(arg), "{arg} not rendered");
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "the operator has no {flag}");
    }
    for expected in [
        "secretName: gateway-tls",
        "mountPath: /etc/ce-operator/authz-tls",
        "name: grpc-authz",
        "mountPath: /etc/ce-operator/webhook-client-ca",
        "name: kube-root-ca.crt",
    ] {
        assert!(rendered.contains(expected), "{expected} not rendered");
    }
    // A bad value is refused by values.schema.json, naming the field.
    for (value, field) in [
        ("logging.format=xml", "logging/format"),
        ("replicaCount=-1", "replicaCount"),
        ("webhook.failurePolicy=Sometimes", "webhook/failurePolicy"),
        ("image.repository=ghcr.io/Bad Name", "image/repository"),
        ("image.tag=v1:latest", "image/tag"),
        ("shutdownDelaySeconds=-5", "shutdownDelaySeconds"),
    ] {
        let bad = helm(&["template", &release, &chart(), "--set", value]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            !bad.status.success() && stderr.contains(field),
            "--set {value} must be refused naming {field}: {stderr}"
        );
    }

    let installed = install(&client, &release, &system.name, &[]).await;
    let (sa_name, sa_kubeconfig) = (installed.sa_name.clone(), installed.sa_kubeconfig.clone());

    // The operator with the chart's identity, leader election on, over all namespaces.
    let tenants = TestNamespace::new(&client, "chart-tenants").await;
    let _operator = Operator::start_all_namespaces_as(
        &format!("{release}-operator"),
        &sa_kubeconfig,
        &[
            "--leader-election",
            "--lease-namespace",
            &system.name,
            "--lease-name",
            &sa_name,
            "--webhook-secret",
            &format!("{sa_name}-webhook-tls"),
            "--webhook-secret-namespace",
            &system.name,
            "--webhook-config-name",
            &sa_name,
        ],
    );
    // The chart's webhook configuration, pointed at the operator running out of cluster (the
    // test cluster has no Service network): the operator keeps its caBundle with the
    // chart's RBAC.
    let addr = _operator.webhook_addr().await;
    support::kubectl_ok(&[
        "patch",
        "validatingwebhookconfiguration",
        &sa_name,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"replace","path":"/webhooks/0/clientConfig","value":{{"url":"https://{addr}/validate"}}}}]"#
        ),
    ]);
    let configs: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    wait_for(&configs, &sa_name, "the operator to write the caBundle", TIMEOUT, |c| {
        c.webhooks.iter().flatten().all(|w| w.client_config.ca_bundle.is_some())
    })
    .await;
    let examples = std::fs::read_to_string(repo_root().join("examples/20-organization.yaml")).unwrap();
    let tree = format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        examples.replace("namespace: tenants", "").replace(
            "superOrganizationRef:\n    namespace: partners\n    name: bigpartner",
            ""
        ),
        std::fs::read_to_string(repo_root().join("examples/30-accounts.yaml"))
            .unwrap()
            .replace("namespace: tenants", ""),
        std::fs::read_to_string(repo_root().join("examples/40-users.yaml"))
            .unwrap()
            .replace("namespace: tenants", ""),
        std::fs::read_to_string(repo_root().join("examples/50-role-bindings.yaml"))
            .unwrap()
            .replace("namespace: tenants", ""),
        std::fs::read_to_string(repo_root().join("examples/60-safelist.yaml"))
            .unwrap()
            .replace("namespace: tenants", ""),
    );
    apply(&tenants.name, &tree);
    let orgs: Api<Organization> = tenants.api();
    let users: Api<CEUser> = tenants.api();
    wait_ready(&orgs, "acme").await;
    for user in ["sam", "jane", "api-bot", "acme-owner"] {
        wait_ready(&users, user).await;
    }
    for binding in ["jane-admin", "sam-org-admin", "acme-owner-org-admin"] {
        wait_ready(&tenants.api::<RoleBinding>(), binding).await;
    }
    wait_ready(&tenants.api::<ElementSafelist>(), "acme").await;
    wait_condition(&orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    // The chart's webhook refuses a violation from a person, and its matchConditions let the
    // operator's ServiceAccount through (it never blocks the operator's own writes).
    let violation = "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: jane-org-admin}\nspec: {userRef: {name: jane}, role: org-admin}\n";
    let refused = support::kubectl_with_input(
        &["-n", &tenants.name, "apply", "--dry-run=server", "-f", "-"],
        violation,
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("spec.role: org-admin can only be held"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let as_operator = format!("--as=system:serviceaccount:{}:{sa_name}", system.name);
    let exempt = support::kubectl_with_input(
        &[
            "-n",
            &tenants.name,
            "apply",
            "--dry-run=server",
            &as_operator,
            "-f",
            "-",
        ],
        violation,
    );
    assert!(exempt.status.success(), "{}", String::from_utf8_lossy(&exempt.stderr));
    // Every other write path of the controllers, under the chart's identity too.
    controller_paths(&tenants, &users, &sa_kubeconfig, &sa_name).await;
    // Rotation (Secret update) and cascading deletion (deletes, finalizers, garbage collection).
    users
        .patch(
            "jane",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"metadata": {"annotations": {"ce.tenancy.io/rotate-secret": "1"}}})),
        )
        .await
        .unwrap();
    wait_for(&users, "jane", "rotated", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.last_rotation_request.as_deref() == Some("1"))
    })
    .await;
    orgs.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"allowCascadingDeletion": true}})),
    )
    .await
    .unwrap();
    orgs.delete("acme", &DeleteParams::default()).await.unwrap();
    wait_gone(&orgs, "acme", TIMEOUT).await;
    wait_gone(&users, "jane", TIMEOUT).await;
    wait_gone(&tenants.api::<Secret>(), "acme-org-secret", TIMEOUT).await;
    let log = _operator.log_text();
    assert!(
        rbac_denials(&log).next().is_none(),
        "the chart's RBAC refused the operator something:\n{log}"
    );

    // And no more than that: exactly these rights, by the API server's own answers.
    assert_exact_rights(&client, &installed, &tenants.name).await;

    ok(helm(&["uninstall", &release, "-n", &system.name]), "helm uninstall");
    drop(installed);
    tenants.delete().await;
    system.delete().await;
}

/// The controllers' write paths beyond a tenant converging: a Secret's labels following its
/// owner (relabel), a generated default account then superseded by a declared one (create,
/// delete), and a repeated warning counted on one Event (its series: a patch of the Event).
async fn controller_paths(
    tenants: &TestNamespace,
    users: &Api<CEUser>,
    sa_kubeconfig: &std::path::Path,
    webhook: &str,
) {
    use ce_operator::model::names::LABEL_ACCOUNT;
    use k8s_openapi::api::events::v1::Event;
    // A label of jane's Secret gone stale (as an older version, or a restore, leaves it;
    // written here with the operator's own identity, the only one the Secret guard lets
    // change it): the operator puts it back.
    let label = format!("{LABEL_ACCOUNT}=stale");
    let out = Command::new(tool("kubectl"))
        .args(["--kubeconfig"])
        .arg(sa_kubeconfig)
        .args([
            "-n",
            &tenants.name,
            "label",
            "secret",
            "jane-user-secret",
            &label,
            "--overwrite",
        ])
        .output()
        .unwrap();
    ok(out, "kubectl label");
    wait_for(
        &tenants.api::<Secret>(),
        "jane-user-secret",
        "its account label back",
        TIMEOUT,
        |s| {
            let labels = s.metadata.labels.as_ref();
            labels.and_then(|l| l.get(LABEL_ACCOUNT)).map(String::as_str) == Some("acme-eu")
        },
    )
    .await;

    let accounts: Api<ce_operator::api::Account> = tenants.api();
    apply(
        &tenants.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: beta}\nspec: {displayName: Beta}\n",
    );
    wait_for(
        &accounts,
        "beta-default",
        "the generated default account",
        TIMEOUT,
        |_| true,
    )
    .await;
    apply(
        &tenants.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {name: beta-main}\nspec: {organizationRef: {name: beta}, default: true}\n",
    );
    wait_gone(&accounts, "beta-default", TIMEOUT).await;

    // A repeated warning: a second user with jane's e-mail, twice (the e-mail changed away and
    // back), with the chart's webhook out of this namespace's way meanwhile (it would refuse the
    // duplicate at once, and the reconciler would never warn).
    let selector = support::kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        webhook,
        "-o",
        "jsonpath={.webhooks[0].namespaceSelector}",
    ]);
    let set_selector = |value: &str| {
        let patch = format!(r#"[{{"op":"replace","path":"/webhooks/0/namespaceSelector","value":{value}}}]"#);
        support::kubectl_ok(&[
            "patch",
            "validatingwebhookconfiguration",
            webhook,
            "--type=json",
            "-p",
            &patch,
        ]);
    };
    set_selector(r#"{"matchLabels":{"ce-test":"no-namespace-has-this"}}"#);
    let twin = |email: &str| {
        format!(
            "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: jane-twin}}\nspec: {{accountRef: {{name: acme-eu}}, email: {email}}}\n"
        )
    };
    for email in ["jane@acme.example", "twin@acme.example", "jane@acme.example"] {
        apply(&tenants.name, &twin(email));
        let (status, reason) = if email.starts_with("jane") {
            ("False", "DuplicateEmail")
        } else {
            ("True", "Ready")
        };
        wait_condition(users, "jane-twin", "Ready", status, reason).await;
    }
    users.delete("jane-twin", &DeleteParams::default()).await.unwrap();
    set_selector(if selector.is_empty() { "{}" } else { &selector });
    let events: Api<Event> = tenants.api();
    support::wait_until("the repeated warning counted on one Event", TIMEOUT, || async {
        let all = events.list(&Default::default()).await.unwrap().items;
        all.iter()
            .any(|e| e.reason.as_deref() == Some("DuplicateEmail") && e.series.as_ref().is_some_and(|s| s.count == 2))
    })
    .await;
}

/// The verbs a SubjectAccessReview asks about for each resource.
const VERBS: [&str; 7] = ["get", "list", "watch", "create", "update", "patch", "delete"];

/// The rights the chart gives the operator (default values, webhook on), as (API group,
/// resource, namespace: "" for a tenant namespace, "release" for the release's, verbs): every
/// other (resource, verb) of `VERBS` below is refused. Changing the chart's RBAC changes this
/// table, on purpose.
const RIGHTS: &[(&str, &str, &str, &[&str])] = &[
    ("ce.tenancy.io", "organizations", "", &["get", "list", "watch", "patch"]),
    (
        "ce.tenancy.io",
        "accounts",
        "",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "ce.tenancy.io",
        "ceusers",
        "",
        &["get", "list", "watch", "create", "delete"],
    ),
    (
        "ce.tenancy.io",
        "rolebindings",
        "",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "ce.tenancy.io",
        "elementsafelists",
        "",
        &["get", "list", "watch", "delete"],
    ),
    ("ce.tenancy.io", "organizations/status", "", &["patch"]),
    ("ce.tenancy.io", "accounts/status", "", &["patch"]),
    ("ce.tenancy.io", "ceusers/status", "", &["patch"]),
    ("ce.tenancy.io", "rolebindings/status", "", &["patch"]),
    ("ce.tenancy.io", "elementsafelists/status", "", &["patch"]),
    ("ce.tenancy.io", "organizations/finalizers", "", &["update"]),
    ("ce.tenancy.io", "ceusers/finalizers", "", &["update"]),
    ("ce.tenancy.io", "accounts/finalizers", "", &[]),
    (
        "",
        "secrets",
        "",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "namespaces", "", &["get", "list", "watch"]),
    ("", "configmaps", "", &[]),
    ("", "pods", "", &[]),
    ("", "serviceaccounts", "", &[]),
    ("events.k8s.io", "events", "", &["create", "patch"]),
    ("", "events", "", &[]),
    (
        "coordination.k8s.io",
        "leases",
        "release",
        &["get", "list", "watch", "create", "update", "patch"],
    ),
    ("coordination.k8s.io", "leases", "", &[]),
    ("rbac.authorization.k8s.io", "rolebindings", "", &[]),
    ("rbac.authorization.k8s.io", "clusterroles", "", &[]),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies", "", &[]),
];

/// Asks the API server (SubjectAccessReview) about every (resource, verb) of `RIGHTS` for the
/// chart's ServiceAccount, and compares with the table: one refused right the operator needs,
/// or one granted it does not, fails with the whole difference.
async fn assert_exact_rights(client: &kube::Client, release: &Release, tenants: &str) {
    use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let user = format!("system:serviceaccount:{}:{}", release.namespace, release.sa_name);
    let groups = vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{}", release.namespace),
        "system:authenticated".to_owned(),
    ];
    let mut wrong = Vec::new();
    for &(group, resource, namespace, granted) in RIGHTS {
        let (resource, subresource) = resource.split_once('/').map_or((resource, None), |(r, s)| (r, Some(s)));
        let namespace = if namespace == "release" {
            &release.namespace
        } else {
            tenants
        };
        for verb in VERBS {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.clone()),
                    groups: Some(groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(group.to_owned()),
                        resource: Some(resource.to_owned()),
                        subresource: subresource.map(str::to_owned),
                        namespace: Some(namespace.to_owned()),
                        verb: Some(verb.to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&Default::default(), &review).await.unwrap();
            let allowed = answer.status.is_some_and(|s| s.allowed);
            if allowed != granted.contains(&verb) {
                let full = subresource.map_or(resource.to_owned(), |s| format!("{resource}/{s}"));
                wrong.push(format!("{verb} {group}/{full} in {namespace}: allowed={allowed}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the chart's RBAC differs from RIGHTS:\n{}",
        wrong.join("\n")
    );
}

/// A Secret as `kubectl create` writes it, with `labels` and a controller reference to
/// `owner` (apiVersion, kind) when given.
fn secret_manifest(name: &str, labels: &str, owner: Option<(&str, &str)>) -> String {
    let owner = owner.map_or_else(String::new, |(api_version, kind)| {
        format!(
            "  ownerReferences: [{{apiVersion: {api_version}, kind: {kind}, name: sam, uid: 0f0f0f0f-0000-0000-0000-000000000000, controller: true}}]\n"
        )
    });
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n{owner}stringData: {{secret: chosen-by-the-writer}}\n"
    )
}

/// Issue 26 (High): the chart's ValidatingAdmissionPolicy refuses a Secret that poses as
/// one the operator issued (its label, or a controller reference to a ce.tenancy.io
/// object), written or changed by anyone but the operator's ServiceAccount and the restore
/// identity the values name; a tenant may still delete one, and write any other Secret.
/// Without the policy (before this chart version) every refused write below went through.
#[tokio::test]
async fn the_secret_guard_lets_only_the_operator_and_the_restore_identity_write_issued_secrets() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let system = TestNamespace::new(&client, "ce-guard").await;
    let release = format!("ce-{}", &system.name[system.name.len() - 6..]);
    let installed = install(
        &client,
        &release,
        &system.name,
        &["webhook.enabled=false", "secretGuard.restoreUsers={backup-restorer}"],
    )
    .await;
    let tenants = TestNamespace::new(&client, "guard-tenants").await;
    // A tenant, and the backup tool's identity, with every verb on Secrets in the namespace.
    let tenant = "tenant-admin@example.com";
    for args in [
        ["create", "role", "secrets", "--verb=*", "--resource=secrets"].as_slice(),
        &[
            "create",
            "rolebinding",
            "secrets",
            "--role=secrets",
            &format!("--user={tenant}"),
            "--user=backup-restorer",
        ],
    ] {
        let mut args = args.to_vec();
        args.extend(["-n", &tenants.name]);
        support::kubectl_ok(&args);
    }
    let operator = format!("system:serviceaccount:{}:{}", system.name, installed.sa_name);
    let write = |who: &str, verb: &str, manifest: &str| {
        support::kubectl_with_input(
            &[verb, "-n", &tenants.name, &format!("--as={who}"), "-f", "-"],
            manifest,
        )
    };
    // Refused by the guard, not by anything else (RBAC, a malformed manifest).
    let guarded = |out: std::process::Output| {
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ValidatingAdmissionPolicy")
    };
    let labelled = secret_manifest("planted", "app.kubernetes.io/managed-by: ce-operator", None);
    // The API server loads a new policy within a second or so: wait until it bites (a dry
    // run, so that nothing is written before it does).
    support::wait_until("the secret guard to be in force", TIMEOUT, || async {
        let dry_run = [
            "create",
            "--dry-run=server",
            "-n",
            &tenants.name,
            &format!("--as={tenant}"),
            "-f",
            "-",
        ];
        guarded(support::kubectl_with_input(&dry_run, &labelled))
    })
    .await;
    let refused = write(tenant, "create", &labelled);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("only the operator") && stderr.contains("Delete it"),
        "the refusal says why and what to do: {stderr}"
    );
    let owned = secret_manifest("owned", "", Some(("ce.tenancy.io/v1alpha1", "CEUser")));
    assert!(
        guarded(write(tenant, "create", &owned)),
        "a controller reference alone is guarded"
    );
    let plain = secret_manifest("plain", "app: mine", Some(("v1", "ConfigMap")));
    let out = write(tenant, "create", &plain);
    assert!(
        out.status.success(),
        "any other Secret: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The operator's ServiceAccount and the restore identity write them.
    let out = write(&operator, "create", &labelled);
    assert!(
        out.status.success(),
        "the operator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = secret_manifest("restored", "app.kubernetes.io/managed-by: ce-operator", None);
    let out = write("backup-restorer", "create", &restored);
    assert!(
        out.status.success(),
        "the restore identity: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Changing one (its value, or taking its label away) is refused to the tenant; deleting
    // it is not (the operator issues a new secret).
    let changed = labelled.replace("chosen-by-the-writer", "changed-by-the-tenant");
    assert!(guarded(write(tenant, "apply", &changed)), "a changed value");
    let unlabelled = secret_manifest("planted", "", None);
    assert!(guarded(write(tenant, "apply", &unlabelled)), "a label taken away");
    let out = support::kubectl(&[
        "delete",
        "secret",
        "planted",
        "-n",
        &tenants.name,
        &format!("--as={tenant}"),
    ]);
    assert!(
        out.status.success(),
        "deleting: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the chart's ServiceAccount may `verb` Secrets in `namespace`, by the API server's
/// own SubjectAccessReview (`kubectl auth can-i`).
fn sa_can(release: &Release, verb: &str, namespace: &str) -> bool {
    let who = format!("--as=system:serviceaccount:{}:{}", release.namespace, release.sa_name);
    let out = support::kubectl(&["auth", "can-i", verb, "secrets", "-n", namespace, &who]);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Issue 26 (Medium, cluster-wide Secret rights): with `watchNamespace` set, the chart gave
/// the operator every verb on every Secret of the cluster. Now it holds Secret rights in the
/// watched namespace and (for its own certificate and issuance key) its release namespace
/// only, and the operator converges a tenant with exactly those rights.
#[tokio::test]
async fn with_a_watched_namespace_secret_rights_are_that_namespaces_and_the_operators_own() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let system = TestNamespace::new(&client, "ce-scoped").await;
    let tenants = TestNamespace::new(&client, "scoped-tenants").await;
    let release = format!("ce-{}", &system.name[system.name.len() - 6..]);
    let watched = format!("watchNamespace={}", tenants.name);
    // The webhook on (its certificate is one of the operator's own Secrets), its
    // configuration matching no namespace: this test has no Service network to reach it.
    let installed = install(
        &client,
        &release,
        &system.name,
        &[
            watched.as_str(),
            "webhook.namespaceSelector.matchLabels.ce-test-none=none",
        ],
    )
    .await;

    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(
            sa_can(&installed, verb, &tenants.name),
            "{verb} in the watched namespace"
        );
    }
    for verb in ["get", "create", "patch"] {
        assert!(sa_can(&installed, verb, &system.name), "{verb} in its own namespace");
    }
    for namespace in ["default", "kube-system"] {
        for verb in ["get", "list", "create"] {
            assert!(!sa_can(&installed, verb, namespace), "{verb} secrets in {namespace}");
        }
    }

    // The operator with exactly those rights converges a tenant: its webhook certificate and
    // issuance key in its own namespace, the tenant's Secrets in the watched one.
    let operator = Operator::start_all_namespaces_as(
        &format!("{release}-operator"),
        &installed.sa_kubeconfig,
        &[
            "--namespace",
            &tenants.name,
            "--issuance-key-namespace",
            &system.name,
            "--webhook-secret",
            &format!("{}-webhook-tls", installed.sa_name),
            "--webhook-secret-namespace",
            &system.name,
            "--webhook-config-name",
            &installed.sa_name,
        ],
    );
    apply(
        &tenants.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {displayName: Acme, owner: {email: ceo@acme.example}}\n",
    );
    wait_condition(
        &tenants.api::<Organization>(),
        "acme",
        "SecretReady",
        "True",
        "SecretIssued",
    )
    .await;
    wait_condition(
        &tenants.api::<CEUser>(),
        "acme-owner",
        "SecretReady",
        "True",
        "SecretIssued",
    )
    .await;
    let own: Api<Secret> = system.api();
    wait_for(
        &own,
        &format!("{}-webhook-tls", installed.sa_name),
        "the webhook certificate",
        TIMEOUT,
        |_| true,
    )
    .await;
    assert!(own.get_opt("ce-operator-issuance-key").await.unwrap().is_some());
    assert!(
        rbac_denials(&operator.log_text()).next().is_none(),
        "{}",
        operator.log_text()
    );
}
