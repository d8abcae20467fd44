//! The admission webhook end to end: the real kube-apiserver calls the operator's webhook
//! over TLS, through a ValidatingWebhookConfiguration like the chart's (pointing at the local
//! operator, and covering only the test's namespace).

use crate::support;

use std::{
    process::Output,
    time::{Duration, Instant},
};

use ce_operator::api::{Account, CEUser, ElementSafelist, HasConditions, Organization, Role, RoleBinding};
use k8s_openapi::api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use support::{
    Operator, TIMEOUT, TestNamespace, TestWebhook, apply, client, cover_with_webhook, install_crds, kubectl,
    kubectl_with_input, wait_condition, wait_for, wait_ready, wait_until, webhook_config_name,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A change the model forbids, the message it must be refused with, and how the
/// reconciler reports it when it gets in without the webhook.
struct Violation {
    what: &'static str,
    /// kubectl arguments (with `-n <ns>` added) and stdin.
    args: Vec<String>,
    input: String,
    refused_with: String,
}

fn apply_args() -> Vec<String> {
    vec!["apply".into(), "-f".into(), "-".into()]
}

fn violations(ns: &str) -> Vec<Violation> {
    let doc = |kind: &str, name: &str, spec: &str| {
        format!("apiVersion: ce.tenancy.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    vec![
        Violation {
            what: "org-admin outside the default account",
            args: apply_args(),
            input: doc(
                "RoleBinding",
                "jane-org-admin",
                "{userRef: {name: jane}, role: org-admin}",
            ),
            refused_with: format!(
                "RoleBinding {ns}/jane-org-admin: spec.role: org-admin can only be held by a user of the organization's default account; CEUser jane is in account eu"
            ),
        },
        Violation {
            what: "a safelisted element on the super-organization's denylist",
            args: apply_args(),
            input: doc(
                "ElementSafelist",
                "acme-list",
                "{organizationRef: {name: acme}, elements: [salesforce, box]}",
            ),
            refused_with: format!(
                "ElementSafelist {ns}/acme-list: spec.elements: box denied by super-organization {ns}/big"
            ),
        },
        Violation {
            what: "a denied element a member safelists (vice versa)",
            args: apply_args(),
            input: doc(
                "Organization",
                "big",
                &format!(
                    "{{displayName: Big, whitelabel: {{allowedNamespaces: [{ns}], elementDenylist: [box, salesforce]}}}}"
                ),
            ),
            refused_with: format!(
                "Organization {ns}/big: spec.whitelabel.elementDenylist: {ns}/acme safelists salesforce"
            ),
        },
        Violation {
            what: "a second default account",
            args: apply_args(),
            input: doc("Account", "hq2", "{organizationRef: {name: acme}, default: true}"),
            refused_with: format!(
                "Account {ns}/hq2: spec.default: organization acme already has the default account hq"
            ),
        },
        Violation {
            what: "an e-mail taken in the organization (case-insensitively)",
            args: apply_args(),
            input: doc("CEUser", "jane2", "{accountRef: {name: hq}, email: JANE@acme.example}"),
            refused_with: format!(
                "CEUser {ns}/jane2: spec.email: JANE@acme.example is already the e-mail of user jane in organization acme"
            ),
        },
        Violation {
            what: "a second safelist",
            args: apply_args(),
            input: doc(
                "ElementSafelist",
                "acme-second",
                "{organizationRef: {name: acme}, elements: [zendesk]}",
            ),
            refused_with: format!(
                "ElementSafelist {ns}/acme-second: spec.organizationRef: organization acme already has the safelist acme-list"
            ),
        },
        Violation {
            what: "a role customisation that locks org-admin out",
            args: apply_args(),
            input: doc(
                "Organization",
                "acme",
                &format!(
                    "{{displayName: Acme, defaultAccountName: hq, superOrganizationRef: {{namespace: {ns}, name: big}}, roles: [{{role: org-admin, revoke: [manageSecurity]}}]}}"
                ),
            ),
            refused_with: format!(
                "Organization {ns}/acme: spec.roles: org-admin keeps manageSecurity so that the organization cannot lock itself out"
            ),
        },
        Violation {
            what: "deleting the last org-admin binding",
            args: vec![
                "delete".into(),
                "rolebinding.ce.tenancy.io".into(),
                "sam-org-admin".into(),
            ],
            input: String::new(),
            refused_with: format!(
                "RoleBinding {ns}/sam-org-admin: spec.role: it is the last org-admin binding of organization acme"
            ),
        },
        Violation {
            what: "deleting an organization with children",
            args: vec!["delete".into(), "organization".into(), "acme".into()],
            input: String::new(),
            refused_with: format!(
                "Organization {ns}/acme: spec.allowCascadingDeletion: the organization still has account eu, account hq, user jane"
            ),
        },
        Violation {
            what: "deleting an account with users",
            args: vec!["delete".into(), "account".into(), "eu".into()],
            input: String::new(),
            refused_with: format!("Account {ns}/eu: spec.allowCascadingDeletion: the account still has users jane"),
        },
    ]
}

fn run(ns: &str, args: &[String], input: &str, dry_run: bool) -> Output {
    let mut all: Vec<&str> = vec!["-n", ns];
    all.extend(args.iter().map(String::as_str));
    if dry_run {
        all.push("--dry-run=server");
    }
    kubectl_with_input(&all, input)
}

/// Starts an operator on a fresh namespace covered by its webhook.
async fn setup(prefix: &str) -> (TestNamespace, Operator, TestWebhook) {
    let client = client().await;
    install_crds(&client).await;
    support::with_webhook(&client, prefix).await
}

async fn converge_tenant(ns: &TestNamespace) {
    apply(&ns.name, &support::super_org_tenant(&ns.name, "salesforce"));
    wait_ready(&ns.api::<Organization>(), "acme").await;
    wait_ready(&ns.api::<ElementSafelist>(), "acme-list").await;
    wait_ready(&ns.api::<RoleBinding>(), "sam-org-admin").await;
    wait_ready(&ns.api::<CEUser>(), "jane").await;
    wait_condition(
        &ns.api::<Organization>(),
        "acme",
        "AdminPresent",
        "True",
        "OrgAdminPresent",
    )
    .await;
}

#[tokio::test]
async fn each_rule_refuses_the_change_at_once_and_the_reconciler_reports_what_slips_past() {
    let (ns, _operator, webhook) = setup("admission").await;
    converge_tenant(&ns).await;

    for v in violations(&ns.name) {
        for dry_run in [true, false] {
            let out = run(&ns.name, &v.args, &v.input, dry_run);
            assert!(!out.status.success(), "{} was accepted (dry run: {dry_run})", v.what);
            let said = stderr(&out);
            assert!(
                said.contains("denied the request") && said.contains(&v.refused_with),
                "{}: {said}",
                v.what
            );
        }
    }
    // Nothing of that got in.
    assert!(
        ns.api::<RoleBinding>()
            .get_opt("jane-org-admin")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ns.api::<Organization>()
            .get("acme")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // A member cannot leave its super-organization's denylist by editing itself: removing or
    // changing a link in effect is refused (only the super-organization ends it).
    for patch in [
        r#"{"spec":{"superOrganizationRef":null}}"#.to_owned(),
        format!(
            r#"{{"spec":{{"superOrganizationRef":{{"namespace":"{}","name":"other"}}}}}}"#,
            ns.name
        ),
    ] {
        let out = support::kubectl(&[
            "-n",
            &ns.name,
            "patch",
            "organization",
            "acme",
            "--type=merge",
            "-p",
            &patch,
        ]);
        assert!(!out.status.success(), "{patch} was admitted");
        assert!(
            stderr(&out).contains(&format!(
                "Organization {}/acme: spec.superOrganizationRef: the link to super-organization {}/big is in effect",
                ns.name, ns.name
            )),
            "{patch}: {}",
            stderr(&out)
        );
    }

    // A system role bound by hand: refused unless the organization allows overrides ...
    let override_binding = "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: jane-org}\nspec: {userRef: {name: jane}, role: org, overrideSystemRole: true}\n";
    let out = kubectl_with_input(&["-n", &ns.name, "apply", "-f", "-"], override_binding);
    assert!(
        !out.status.success(),
        "an override was admitted where it is not allowed"
    );
    assert!(stderr(&out).contains("allowSystemRoleOverride"), "{}", stderr(&out));
    support::kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "organization",
        "acme",
        "--type=merge",
        "-p",
        r#"{"spec":{"security":{"allowSystemRoleOverride":true}}}"#,
    ]);
    // ... then admitted with a warning, as is a reference to what does not exist yet.
    let out = kubectl_with_input(
        &["-n", &ns.name, "apply", "-f", "-"],
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: jane-org}\nspec: {userRef: {name: jane}, role: org, overrideSystemRole: true}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: ghost-admin}\nspec: {userRef: {name: ghost}, role: admin}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("Warning:") && said.contains("overrideSystemRole: the system's role assignment"),
        "{said}"
    );
    assert!(said.contains("CEUser ghost does not exist in this namespace"), "{said}");

    // Without the webhook, every violation gets in, and the reconciler reports it: the
    // conditions stay the backstop. (Deletions last: a deleted organization only reports
    // what holds its deletion.)
    drop(webhook);
    let (changes, deletions): (Vec<_>, Vec<_>) = violations(&ns.name).into_iter().partition(|v| v.args[0] == "apply");
    for v in &changes {
        let out = run(&ns.name, &v.args, &v.input, false);
        assert!(
            out.status.success(),
            "{} was refused without the webhook: {}",
            v.what,
            stderr(&out)
        );
    }
    let orgs = ns.api::<Organization>();
    let lists = ns.api::<ElementSafelist>();
    wait_condition(
        &ns.api::<RoleBinding>(),
        "jane-org-admin",
        "Ready",
        "False",
        "OrgAdminRequiresDefaultAccount",
    )
    .await;
    wait_condition(&lists, "acme-second", "Ready", "False", "DuplicateSafelist").await;
    wait_condition(&orgs, "big", "DenylistConflict", "True", "SafelistedDeniedElements").await;
    wait_condition(&orgs, "acme", "RolesApplied", "False", "ProtectedPrivilegeRevoked").await;
    wait_condition(&ns.api::<Account>(), "hq2", "Ready", "False", "DuplicateDefaultAccount").await;
    wait_condition(&ns.api::<CEUser>(), "jane2", "Ready", "False", "DuplicateEmail").await;
    // Deny wins on both sides: neither box nor salesforce is effective.
    let list = wait_for(&lists, "acme-list", "box and salesforce denied", TIMEOUT, |l| {
        l.status.as_ref().is_some_and(|s| s.conflicts == ["box", "salesforce"])
    })
    .await;
    assert!(list.has_condition("Ready", "False", "DeniedBySuperOrganization"));
    assert!(list.status.unwrap().effective_elements.is_empty());

    let [last_admin, org, account] = deletions.try_into().map_err(|_| "three deletions").unwrap();
    let out = run(&ns.name, &last_admin.args, &last_admin.input, false);
    assert!(out.status.success(), "{}: {}", last_admin.what, stderr(&out));
    wait_condition(&orgs, "acme", "AdminPresent", "False", "NoOrgAdmin").await;
    for v in [&org, &account] {
        // They stay, held by their finalizers: do not wait for them to go.
        let mut args = v.args.clone();
        args.push("--wait=false".into());
        let out = run(&ns.name, &args, &v.input, false);
        assert!(out.status.success(), "{}: {}", v.what, stderr(&out));
    }
    wait_condition(&orgs, "acme", "DeletionBlocked", "True", "ChildrenExist").await;
    wait_condition(&ns.api::<Account>(), "eu", "DeletionBlocked", "True", "ChildrenExist").await;
}

/// The files of one tenant, named so that `kubectl apply -f dir/` applies them in `order`.
fn tenant_dir(root: &std::path::Path, i: usize, order: &[usize]) {
    let files = [
        (
            "organization",
            format!(
                "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {{name: org{i}}}\nspec: {{displayName: Org {i}, defaultAccountName: hq{i}, owner: {{email: owner{i}@example.com}}}}\n"
            ),
        ),
        (
            "accounts",
            format!(
                "apiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {{name: hq{i}}}\nspec: {{organizationRef: {{name: org{i}}}, default: true}}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {{name: eu{i}}}\nspec: {{organizationRef: {{name: org{i}}}}}\n"
            ),
        ),
        (
            "users",
            format!(
                "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: sam{i}}}\nspec: {{accountRef: {{name: hq{i}}}, email: sam{i}@example.com}}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: jane{i}}}\nspec: {{accountRef: {{name: eu{i}}}, email: jane{i}@example.com}}\n"
            ),
        ),
        (
            "bindings",
            format!(
                "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {{name: sam{i}-org-admin}}\nspec: {{userRef: {{name: sam{i}}}, role: org-admin}}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {{name: jane{i}-admin}}\nspec: {{userRef: {{name: jane{i}}}, role: admin}}\n"
            ),
        ),
        (
            "safelist",
            format!(
                "apiVersion: ce.tenancy.io/v1alpha1\nkind: ElementSafelist\nmetadata: {{name: org{i}}}\nspec: {{organizationRef: {{name: org{i}}}, elements: [salesforce]}}\n"
            ),
        ),
    ];
    // Zero-padded, so that the folders' name order is the tenants' order.
    let dir = root.join(format!("tenant-{i:03}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (position, file) in order.iter().enumerate() {
        let (name, content) = &files[*file];
        std::fs::write(dir.join(format!("{position}-{name}.yaml")), content).unwrap();
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

#[tokio::test]
async fn a_tenant_applied_as_a_folder_in_every_order_is_admitted_and_converges() {
    let (ns, _operator, _webhook) = setup("orders").await;
    let root = std::env::temp_dir().join(format!("ce-orders-{}", ns.name));
    let orders = permutations(5);
    assert_eq!(orders.len(), 120);
    for (i, order) in orders.iter().enumerate() {
        tenant_dir(&root, i, order);
    }
    // One apply of the whole tree, as a GitOps tool applies a repository: kubectl walks the
    // folders in name order and applies each object in turn, so every tenant reaches the API
    // server in its folder's order (checked below from what kubectl reports, one line per
    // object as it is applied).
    let out = kubectl(&[
        "-n",
        &ns.name,
        "apply",
        "-R",
        "-f",
        root.to_str().unwrap(),
        "-o",
        "name",
    ]);
    assert!(out.status.success(), "a tenant was refused: {}", stderr(&out));
    let applied = String::from_utf8(out.stdout).unwrap();
    let mut files_applied = vec![Vec::new(); orders.len()];
    for line in applied.lines() {
        let (kind, name) = line.split_once('/').expect("kind/name");
        let file = [
            "organization.",
            "account.",
            "ceuser.",
            "rolebinding.",
            "elementsafelist.",
        ]
        .iter()
        .position(|prefix| kind.starts_with(prefix))
        .unwrap_or_else(|| panic!("unexpected object {line}"));
        let tenant: usize = name
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap();
        let seen = &mut files_applied[tenant];
        if seen.last() != Some(&file) {
            seen.push(file);
        }
    }
    assert_eq!(
        files_applied, orders,
        "the tenants did not reach the API server in their folders' order"
    );
    let users = ns.api::<CEUser>();
    let bindings = ns.api::<RoleBinding>();
    for i in 0..orders.len() {
        wait_ready(&users, &format!("jane{i}")).await;
        wait_ready(&bindings, &format!("sam{i}-org-admin")).await;
        wait_ready(&bindings, &format!("jane{i}-admin")).await;
        wait_condition(
            &ns.api::<Organization>(),
            &format!("org{i}"),
            "AdminPresent",
            "True",
            "OrgAdminPresent",
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn with_the_operator_down_tenancy_writes_are_refused_and_the_cluster_still_works() {
    let (ns, mut operator, _webhook) = setup("down").await;
    converge_tenant(&ns).await;
    operator.kill();
    let out = kubectl_with_input(
        &["-n", &ns.name, "apply", "-f", "-"],
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {name: kim}\nspec: {accountRef: {name: eu}, email: kim@acme.example}\n",
    );
    assert!(!out.status.success(), "a tenancy write got in with the webhook down");
    let said = stderr(&out);
    assert!(
        said.contains("failed calling webhook \"validate.ce.tenancy.io\""),
        "{said}"
    );
    // The webhook covers only ce.tenancy.io kinds: the rest of the cluster is unaffected.
    let client = client().await;
    let config_maps: Api<ConfigMap> = ns.api();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("still-works".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("a ConfigMap");
    config_maps
        .delete("still-works", &DeleteParams::default())
        .await
        .unwrap();
    let _other = TestNamespace::new(&client, "down-other").await;
}

#[tokio::test]
async fn a_standby_replica_answers_admission_reviews() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "standby").await;
    let shared = [
        "--leader-election",
        "--lease-namespace",
        &ns.name,
        // Takeover is not what this test is about: a long lease keeps a loaded run from failing over.
        "--lease-duration",
        "15",
        "--webhook-secret",
        "ce-webhook-standby",
        "--webhook-config-name",
        &webhook_config_name(&ns.name),
    ];
    let leader = Operator::start_with(&ns.name, &format!("{}-leader", ns.name), &shared);
    wait_until("the first replica to lead", TIMEOUT, || async {
        leader.metric("ce_operator_leader", &[]).await == 1.0
    })
    .await;
    let standby = Operator::start_with(&ns.name, &format!("{}-standby", ns.name), &shared);
    cover_with_webhook(&ns.name, &ns.name);
    // The configuration points at the standby only.
    let _webhook = TestWebhook::install(
        &client,
        &webhook_config_name(&ns.name),
        &standby.webhook_addr().await,
        &ns.name,
    )
    .await;
    converge_tenant(&ns).await;
    let v = &violations(&ns.name)[0];
    wait_until("the standby to serve the leader's certificate", TIMEOUT, || async {
        let out = run(&ns.name, &v.args, &v.input, true);
        stderr(&out).contains(&v.refused_with)
    })
    .await;
    assert!(standby.metric("ce_operator_admission_reviews_total", &[]).await > 0.0);
    assert_eq!(
        standby.metric("ce_operator_reconciles_total", &[]).await,
        0.0,
        "the standby reconciled"
    );
    assert_eq!(standby.metric("ce_operator_leader", &[]).await, 0.0);
}

/// The SHA-256 of the certificate served at `addr`.
fn served_certificate(addr: &str) -> String {
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn certificates_rotate_with_an_overlap_and_no_request_fails() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "rotation").await;
    // Renewal starts with a third of 24 s left, every 16 s or so; the overlap is 3 s.
    let operator = Operator::start_with(&ns.name, &ns.name, &["--webhook-cert-validity", "24s"]);
    cover_with_webhook(&ns.name, &ns.name);
    let addr = operator.webhook_addr().await;
    let webhook = TestWebhook::install(&client, &webhook_config_name(&ns.name), &addr, &ns.name).await;
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let bundle = |c: &ValidatingWebhookConfiguration| {
        c.webhooks.as_ref().unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0
    };
    let first_bundle = bundle(&configs.get(&webhook.name).await.unwrap());
    wait_until("the webhook to serve its certificate", TIMEOUT, || {
        let served = served_certificate(&addr).contains("Fingerprint");
        async move { served }
    })
    .await;
    let first_cert = served_certificate(&addr);
    apply(&ns.name, &support::super_org_tenant(&ns.name, "salesforce"));

    // A client writes through the webhook for two full rotations: no request may fail.
    let accounts: Api<Account> = ns.api();
    let started = Instant::now();
    let mut bundles = vec![first_bundle.clone()];
    let mut certs = vec![first_cert.clone()];
    let mut writes = 0;
    // Until two rotations were seen (each: [old] -> [old, new] -> [new] in the bundle, and a
    // new served certificate), or a minute, when the assertions below say which is missing.
    while (bundles.len() < 5 || certs.len() < 3) && started.elapsed() < Duration::from_secs(60) {
        let account: Account = serde_json::from_value(serde_json::json!({
            "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "Account",
            "metadata": {"name": format!("a{writes}")},
            "spec": {"organizationRef": {"name": "acme"}}
        }))
        .unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap_or_else(|e| panic!("write {writes} failed at {:?}: {e}", started.elapsed()));
        writes += 1;
        let current = bundle(&configs.get(&webhook.name).await.unwrap());
        if bundles.last() != Some(&current) {
            bundles.push(current);
        }
        // A certificate that could not be read is a failure, never a change.
        let cert = served_certificate(&addr);
        assert!(
            cert.contains("Fingerprint"),
            "the served certificate could not be read: {cert}"
        );
        if certs.last() != Some(&cert) {
            certs.push(cert);
        }
    }
    assert!(writes > 50, "only {writes} writes");
    // Two rotations: [a] -> [a, b] -> [b] -> [b, c] -> [c].
    assert!(bundles.len() >= 5, "the bundle went through {} states", bundles.len());
    assert!(
        bundles
            .iter()
            .any(|b| String::from_utf8_lossy(b).matches("BEGIN CERTIFICATE").count() == 2),
        "no overlap: the bundle never held two CAs"
    );
    assert!(
        certs.len() >= 3,
        "the served certificate changed {} times",
        certs.len() - 1
    );
    assert!(
        operator
            .metric("ce_operator_webhook_certificate_expiry_timestamp_seconds", &[])
            .await
            > 0.0
    );
}

/// Issue 26 (High): an Organization with an owner and no declared default account gets
/// `acme-default` and its owner there, bound org-admin. A declared default account applied
/// afterwards took the default over: the owner became `default-user`, its binding stopped
/// granting and the organization had no org-admin. Now the webhook refuses it, naming the
/// reason, and without the webhook the reconciler keeps the generated default (the declared
/// one reports DuplicateDefaultAccount) and the owner keeps org-admin.
#[tokio::test]
async fn a_declared_default_account_never_takes_the_default_from_the_owner() {
    let (ns, _operator, webhook) = setup("supersede").await;
    apply(
        &ns.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {displayName: Acme, owner: {email: owner@acme.example}}\n",
    );
    let orgs = ns.api::<Organization>();
    wait_condition(&orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    let hq2 = "apiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {name: hq2}\nspec: {organizationRef: {name: acme}, default: true}\n";
    let args = ["apply".to_owned(), "-f".to_owned(), "-".to_owned()];
    for dry_run in [true, false] {
        let out = run(&ns.name, &args, hq2, dry_run);
        assert!(!out.status.success(), "admitted (dry run: {dry_run})");
        let said = stderr(&out);
        assert!(
            said.contains("denied the request") && said.contains("acme-default") && said.contains("holds users"),
            "{said}"
        );
    }

    drop(webhook);
    let out = run(&ns.name, &args, hq2, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let accounts = ns.api::<Account>();
    wait_condition(&accounts, "hq2", "Ready", "False", "DuplicateDefaultAccount").await;
    let generated = accounts.get("acme-default").await.unwrap();
    assert_eq!(
        generated.status.and_then(|s| s.default),
        Some(true),
        "acme-default stays the default"
    );
    let owner = ns.api::<CEUser>().get("acme-owner").await.unwrap();
    let roles = owner.status.unwrap();
    assert_eq!(roles.system_role, Some(Role::Org));
    assert!(roles.roles.contains(&Role::OrgAdmin), "{:?}", roles.roles);
    wait_ready(&ns.api::<RoleBinding>(), "acme-owner-org-admin").await;
    let acme = orgs.get("acme").await.unwrap();
    assert!(acme.has_condition("AdminPresent", "True", "OrgAdminPresent"));
}

/// POSTs `review` to the webhook at `addr` with curl, presenting the client certificate
/// `client` of the test cluster's PKI (its file stem) if any: the HTTP status (0: no answer,
/// the TLS handshake refused) and the body.
fn post_review(addr: &str, review: &str, client: Option<&str>) -> (u16, String) {
    let pki = support::cluster_ca_path().parent().unwrap().to_owned();
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-sk",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        "content-type: application/json",
    ])
    .args(["--max-time", "10", "--data-binary", review])
    .arg(format!("https://{addr}/validate"));
    if let Some(stem) = client {
        curl.arg("--cert").arg(pki.join(format!("{stem}.crt")));
        curl.arg("--key").arg(pki.join(format!("{stem}.key")));
    }
    let out = curl.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Issue 26 (Medium): the webhook answered any AdmissionReview, so a pod with no RBAC
/// learnt who holds an e-mail in any namespace (the refusal names the user). Now only the
/// API server gets answers: a client certificate of the cluster's CA with the name its
/// admission configuration presents. Without one, or with another user's certificate of the
/// same CA, the handshake is refused; the API server's own reviews still work.
#[tokio::test]
async fn only_the_api_server_gets_answers_from_the_webhook() {
    let (ns, operator, _webhook) = setup("webhook-clients").await;
    converge_tenant(&ns).await;
    let addr = operator.webhook_addr().await;
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4b1d0000-0000-0000-0000-000000000001",
            "kind": {"group": "ce.tenancy.io", "version": "v1alpha1", "kind": "CEUser"},
            "resource": {"group": "ce.tenancy.io", "version": "v1alpha1", "resource": "ceusers"},
            "operation": "CREATE",
            "namespace": ns.name,
            "name": "probe",
            // A crafted review claims whatever identity it likes: a cluster administrator's
            // here, so that the rules of who may act let it through to the object's rules.
            "userInfo": {"username": "curious-pod", "groups": ["system:masters"]},
            "object": {
                "apiVersion": "ce.tenancy.io/v1alpha1",
                "kind": "CEUser",
                "metadata": {"name": "probe", "namespace": ns.name},
                "spec": {"accountRef": {"name": "hq"}, "email": "sam@acme.example"},
            },
        },
    })
    .to_string();
    // The API server's identity: answered, and the answer is the leak.
    let (code, body) = post_review(&addr, &review, Some("webhook-client"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("sam"),
        "the answer names the holder of the e-mail: {body}"
    );
    // Anyone else: no answer at all.
    for client in [None, Some("admin"), Some("operator")] {
        let (code, body) = post_review(&addr, &review, client);
        assert_eq!(code, 0, "client {client:?} got an answer: {body}");
    }
    // The API server's reviews go on: a duplicate e-mail through kubectl is refused by it.
    let out = kubectl_with_input(
        &["-n", &ns.name, "apply", "-f", "-"],
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {name: probe}\nspec: {accountRef: {name: hq}, email: sam@acme.example}\n",
    );
    assert!(
        !out.status.success(),
        "a duplicate e-mail got in: {} {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let said = stderr(&out);
    assert!(said.contains("denied the request") && said.contains("sam"), "{said}");
}

/// Issue 26 (Low, three holes of one kind): a RoleBinding named its user by name only, so a
/// new CEUser of a deleted org-admin's name became org-admin; the last org-admin went
/// unreviewed by deleting its CEUser (its bindings then go by the garbage collector, which
/// no webhook reviews), or by giving its binding an owner reference to a ConfigMap and
/// deleting that. Now a binding is pinned to its user's uid (an owner reference the operator
/// adds), grants nothing to a namesake, and goes with its user; deleting the last org-admin's
/// user is refused; and a binding owned by anything else grants nothing and is refused.
#[tokio::test]
async fn a_binding_is_its_users_and_the_last_org_admin_cannot_be_removed_sideways() {
    let (ns, _operator, _webhook) = setup("binding-pins").await;
    converge_tenant(&ns).await;
    let users = ns.api::<CEUser>();
    let bindings = ns.api::<RoleBinding>();
    // A second org-admin in the default account, so that the first may go.
    apply(
        &ns.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {name: kim}\nspec: {accountRef: {name: hq}, email: kim@acme.example}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: kim-org-admin}\nspec: {userRef: {name: kim}, role: org-admin}\n",
    );
    wait_ready(&bindings, "kim-org-admin").await;
    let kim_uid = users.get("kim").await.unwrap().metadata.uid.unwrap();
    let pinned = wait_for(&bindings, "kim-org-admin", "the binding pinned to kim", TIMEOUT, |b| {
        b.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "CEUser" && o.uid == kim_uid)
    })
    .await;
    assert!(
        pinned
            .metadata
            .owner_references
            .unwrap()
            .iter()
            .all(|o| o.controller != Some(true))
    );

    // kim goes, and a namesake comes at once: it is not org-admin.
    users.delete("kim", &DeleteParams::default()).await.unwrap();
    support::wait_gone(&users, "kim", TIMEOUT).await;
    apply(
        &ns.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {name: kim}\nspec: {accountRef: {name: hq}, email: kim@acme.example}\n",
    );
    let newcomer_uid = users.get("kim").await.unwrap().metadata.uid.unwrap();
    let newcomer = wait_for(&users, "kim", "the newcomer judged", TIMEOUT, |u| {
        u.metadata.uid.as_deref() == Some(newcomer_uid.as_str())
            && u.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == u.metadata.generation)
            && u.has_condition("Ready", "True", "Ready")
    })
    .await;
    let roles = newcomer.status.unwrap().roles;
    assert!(
        !roles.contains(&Role::OrgAdmin),
        "a namesake inherited org-admin: {roles:?}"
    );
    // The binding made for the first kim goes with it.
    support::wait_gone(&bindings, "kim-org-admin", TIMEOUT).await;

    // sam is the last org-admin now: deleting the user is refused, naming why.
    let out = kubectl(&["-n", &ns.name, "delete", "ceuser", "sam"]);
    assert!(!out.status.success(), "the last org-admin's user was deleted");
    let said = stderr(&out);
    assert!(
        said.contains("denied the request") && said.contains("last org-admin"),
        "{said}"
    );
    // ... and so is owning its binding by something someone can delete unreviewed.
    let configmaps: Api<ConfigMap> = ns.api();
    let decoy = configmaps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("decoy".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let patch = format!(
        r#"{{"metadata":{{"ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"decoy","uid":"{}"}}]}}}}"#,
        decoy.metadata.uid.unwrap()
    );
    let out = kubectl(&[
        "-n",
        &ns.name,
        "patch",
        "rolebinding.ce.tenancy.io",
        "sam-org-admin",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(!out.status.success(), "a foreign owner was admitted");
    let said = stderr(&out);
    assert!(
        said.contains("denied the request") && said.contains("owner reference to ConfigMap decoy"),
        "{said}"
    );
    assert!(users.get_opt("sam").await.unwrap().is_some());
    let acme = ns.api::<Organization>().get("acme").await.unwrap();
    assert!(acme.has_condition("AdminPresent", "True", "OrgAdminPresent"));
}
