//! GitOps tools read the operator's status right. kstatus (sigs.k8s.io/cli-utils, the library
//! behind Flux's health checks, Helm 4's `--wait` and kpt; built by hack/build-tools.sh as
//! `kstatus`) judges real objects in every state the test brings about, with the operator
//! running and stopped; and a tenant chart installed with the project's Helm `--wait` returns
//! when its tenant is Ready, or fails, naming the object, when only a person can help.

use crate::support;

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ce_operator::{
    api::{CEUser, HasConditions, Organization},
    model::conditions::{ConditionType, Reason},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use support::{Operator, TestNamespace, apply, client, install_crds, kubectl_ok, repo_root, tool, wait_until};

/// kstatus's verdict on every object of `kind` in `ns`: name → (status, message).
fn kstatus(ns: &str, kind: &str) -> BTreeMap<String, (String, String)> {
    let list = kubectl_ok(&["get", kind, "-n", ns, "-o", "json"]);
    let mut child = Command::new(tool("kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kstatus (hack/build-tools.sh kstatus)");
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (object, rest) = line.split_once(' ').unwrap();
            let (status, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = object.split_once('/').unwrap().1;
            (name.to_owned(), (status.to_owned(), message.to_owned()))
        })
        .collect()
}

/// A JSON value as a Lua table constructor (objects and arrays as tables, as Argo CD's
/// gopher-lua hands an object to a health check).
fn lua(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "nil".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The chart's Argo CD health check (charts/ce-operator/files/argocd/health.lua) run by a
/// real Lua 5.1 on `object`: its status (Healthy, Progressing, Degraded) and message.
fn argocd_health(object: &serde_json::Value) -> (String, String) {
    let script = repo_root().join("charts/ce-operator/files/argocd/health.lua");
    let program = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\n\", hs.message)",
        lua(object),
        script.to_str().unwrap()
    );
    let out = Command::new("lua5.1")
        .arg("-e")
        .arg(&program)
        .output()
        .expect("run lua5.1");
    assert!(out.status.success(), "lua: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

/// kstatus's word for the Argo CD health status the check gives.
fn as_kstatus(argocd: &str) -> &str {
    match argocd {
        "Healthy" => "Current",
        "Degraded" => "Failed",
        "Progressing" => "InProgress",
        other => other,
    }
}

/// What kstatus must conclude of an object the operator has judged, from the reasons of its
/// own conditions (`Reason::progress`, the one place that decides it).
fn expected(conditions: &[Condition]) -> &'static str {
    let raised: Vec<_> = conditions
        .iter()
        .filter_map(|c| Reason::parse(&c.reason))
        .filter_map(Reason::progress)
        .collect();
    if raised.contains(&ConditionType::Stalled) {
        "Failed"
    } else if raised.contains(&ConditionType::Reconciling) {
        "InProgress"
    } else {
        "Current"
    }
}

/// Objects in a state of each kind: Ready; a problem only a person can fix (a duplicate
/// e-mail, org-admin outside the default account, a Secret of the generated name that is
/// someone else's, a second safelist); and one waiting for an object that may still come
/// (an account that does not exist).
fn tenant() -> &'static str {
    "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme, defaultAccountName: hq}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: hq}
spec: {organizationRef: {name: acme}, default: true}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: eu}
spec: {organizationRef: {name: acme}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: sam}
spec: {accountRef: {name: hq}, email: sam@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: kim}
spec: {accountRef: {name: eu}, email: kim@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: lost}
spec: {accountRef: {name: nowhere}, email: lost@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: squat}
spec: {accountRef: {name: hq}, email: squat@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: sam-org-admin}
spec: {userRef: {name: sam}, role: org-admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: kim-org-admin}
spec: {userRef: {name: kim}, role: org-admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {name: acme-list}
spec: {organizationRef: {name: acme}, elements: [salesforce]}
"
}

/// Qualified: `rolebindings` alone is RBAC's.
const KINDS: [&str; 5] = [
    "organizations.ce.tenancy.io",
    "accounts.ce.tenancy.io",
    "ceusers.ce.tenancy.io",
    "rolebindings.ce.tenancy.io",
    "elementsafelists.ce.tenancy.io",
];

/// An object of the namespace as `kubectl get -o json` shows it.
struct Object {
    kind: &'static str,
    name: String,
    json: serde_json::Value,
}

impl Object {
    fn conditions(&self) -> Vec<Condition> {
        serde_json::from_value(self.json["status"]["conditions"].clone()).unwrap_or_default()
    }

    /// Whether the operator has judged its latest generation.
    fn judged(&self) -> bool {
        self.json["status"]["observedGeneration"] == self.json["metadata"]["generation"]
    }
}

/// Every object of the five kinds in the namespace.
fn objects(ns: &str) -> Vec<Object> {
    KINDS
        .iter()
        .flat_map(|kind| {
            let list: serde_json::Value =
                serde_json::from_str(&kubectl_ok(&["get", kind, "-n", ns, "-o", "json"])).unwrap();
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| Object {
                    kind,
                    name: item["metadata"]["name"].as_str().unwrap().to_owned(),
                    json: item.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn kstatus_reads_every_state_right_with_the_operator_running_and_stopped() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "kstatus").await;
    let mut operator = Operator::start(&ns.name);
    // Someone else's Secret at squat's generated name.
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "squat-user-secret",
        "-n",
        &ns.name,
        "--from-literal=secret=theirs",
    ]);
    apply(&ns.name, tenant());
    apply(
        &ns.name,
        "{apiVersion: ce.tenancy.io/v1alpha1, kind: ElementSafelist, metadata: {name: acme-second}, spec: {organizationRef: {name: acme}, elements: [box]}}",
    );
    wait_until("the operator to judge every object", support::TIMEOUT, || async {
        let all = objects(&ns.name);
        all.len() == 11 && all.iter().all(|o| o.judged() && !o.conditions().is_empty())
    })
    .await;

    // kstatus agrees with the operator's reasons on every object, so does the chart's Argo CD
    // health check, and the table holds.
    let mut verdicts = BTreeMap::new();
    for kind in KINDS {
        for (name, verdict) in kstatus(&ns.name, kind) {
            verdicts.insert(name, verdict);
        }
    }
    for object in objects(&ns.name) {
        let (kind, name) = (object.kind, &object.name);
        let (status, message) = &verdicts[name];
        assert_eq!(
            status,
            expected(&object.conditions()),
            "{kind}/{name}: kstatus says {status} ({message})"
        );
        let (health, said) = argocd_health(&object.json);
        assert_eq!(
            as_kstatus(&health),
            status,
            "{kind}/{name}: Argo CD says {health} ({said})"
        );
    }
    let status_of = |name: &str| verdicts[name].0.as_str();
    for (name, status) in [
        ("acme", "Current"),
        ("hq", "Current"),
        ("sam", "Current"),
        ("sam-org-admin", "Current"),
        ("acme-list", "Current"),
        ("lost", "InProgress"),
        ("kim-org-admin", "Failed"),
        ("squat", "Failed"),
        ("acme-second", "Failed"),
    ] {
        assert_eq!(status_of(name), status, "{name}: {:?}", verdicts[name]);
    }
    assert!(
        verdicts["squat"].1.contains("Delete or rename it"),
        "a Failed object says what to do: {:?}",
        verdicts["squat"]
    );

    // With the operator stopped: an object it has not seen, and a spec it has not seen, read
    // InProgress (not Current, as an object without status would).
    operator.kill();
    apply(
        &ns.name,
        "{apiVersion: ce.tenancy.io/v1alpha1, kind: CEUser, metadata: {name: late}, spec: {accountRef: {name: hq}, email: late@acme.example}}",
    );
    let orgs: kube::Api<Organization> = ns.api();
    orgs.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"displayName": "Acme Corp"}})),
    )
    .await
    .unwrap();
    let users = kstatus(&ns.name, KINDS[2]);
    assert_eq!(users["late"].0, "InProgress", "{:?}", users["late"]);
    assert_eq!(kstatus(&ns.name, KINDS[0])["acme"].0, "InProgress");
    for object in objects(&ns.name)
        .iter()
        .filter(|o| o.name == "late" || o.name == "acme")
    {
        assert_eq!(argocd_health(&object.json).0, "Progressing", "{}", object.name);
    }

    // The operator back: both Current.
    operator.restart();
    wait_until("late and acme to read Current", support::TIMEOUT, || async {
        kstatus(&ns.name, KINDS[2])["late"].0 == "Current" && kstatus(&ns.name, KINDS[0])["acme"].0 == "Current"
    })
    .await;
}

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(tool("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(support::kubeconfig_path())
        .output()
        .expect("run helm")
}

#[tokio::test]
async fn helm_wait_returns_when_the_tenant_is_ready_and_fails_naming_a_stalled_object() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "helm-wait").await;
    let _operator = Operator::start(&ns.name);
    let chart = repo_root().join("tests/fixtures/tenant-chart");
    let chart = chart.to_str().unwrap();

    // 100 users: `helm install --wait` returns only once every object is Ready.
    let started = Instant::now();
    let out = helm(&[
        "install",
        "acme",
        chart,
        "-n",
        &ns.name,
        "--set",
        "users=100",
        "--wait",
        "--timeout",
        "120s",
    ]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("helm install --wait of a 100-user tenant returned after {took:?}");
    let users: kube::Api<CEUser> = ns.api();
    let listed = users.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 100);
    for user in &listed {
        assert!(
            user.has_condition("Ready", "True", "Ready") && user.has_condition("SecretReady", "True", "SecretIssued"),
            "{} was not ready when helm returned: {:?}",
            user.metadata.name.as_deref().unwrap_or_default(),
            user.status
        );
    }
    let orgs: kube::Api<Organization> = ns.api();
    assert!(
        orgs.get("acme")
            .await
            .unwrap()
            .has_condition("AdminPresent", "True", "OrgAdminPresent")
    );

    // A duplicate e-mail: helm fails before its timeout, naming the object and the reason.
    let timeout = Duration::from_secs(120);
    let started = Instant::now();
    let out = helm(&[
        "install",
        "globex",
        chart,
        "-n",
        &ns.name,
        "--set",
        "users=3",
        "--set",
        "duplicateEmail=true",
        "--wait",
        "--timeout",
        "120s",
    ]);
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "helm --wait succeeded with a stalled object");
    assert!(
        said.contains("globex-u2") && said.contains("Failed") && said.contains("e-mail"),
        "the failure names the object and the reason: {said}"
    );
    assert!(took < timeout / 2, "helm waited {took:?}, not failing fast");
    eprintln!("helm install --wait failed after {took:?} on a stalled object: {said}");
}

/// Every object a backup tool would export from `ns`: the five kinds, the Secrets the
/// operator issued and its issuance key (the test operator keeps it in the namespace), as
/// JSON with what a restore cannot keep stripped (uid, resourceVersion, generation, times,
/// managed fields, status) and the owner references as `owners` says.
fn export(ns: &str, owners: OwnerReferences) -> Vec<serde_json::Value> {
    let mut lists = KINDS
        .iter()
        .map(|kind| kubectl_ok(&["get", kind, "-n", ns, "-o", "json"]))
        .collect::<Vec<_>>();
    lists.push(kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/managed-by=ce-operator",
        "-o",
        "json",
    ]));
    lists.push(kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        ns,
        "--field-selector",
        "metadata.name=ce-operator-issuance-key",
        "-o",
        "json",
    ]));
    lists
        .iter()
        .flat_map(|list| {
            let list: serde_json::Value = serde_json::from_str(list).unwrap();
            list["items"].as_array().unwrap().clone()
        })
        .map(|mut item| {
            let meta = item["metadata"].as_object_mut().unwrap();
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
            ] {
                meta.remove(field);
            }
            if owners == OwnerReferences::Stripped {
                meta.remove("ownerReferences");
            }
            item.as_object_mut().unwrap().remove("status");
            item
        })
        .collect()
}

/// How a backup tool leaves the owner references of what it restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerReferences {
    /// Removed (Velero may do so).
    Stripped,
    /// As exported: naming UIDs of the lost cluster, which the garbage collector takes for
    /// owners that are gone.
    Stale,
}

/// Issue 27 (backup and restore, owner references stripped) with issue 26's restore rule:
/// a tenant exported, its namespace lost, and everything applied again with the operator
/// running: its issuance key first, then the Secrets, then the objects, each group
/// shuffled. Every secret keeps its value (each Secret is adopted again: its seal verifies),
/// none is issued anew, every object is Ready. Before seals, a Secret without its controller
/// reference was someone else's (SecretConflict), and no user became ready.
#[tokio::test]
async fn a_restore_without_owner_references_keeps_every_secret() {
    restore_keeps_every_secret(OwnerReferences::Stripped, 20).await;
}

/// The same restore with the owner references as exported and in the worst order (every
/// object before any Secret), by the restore identity, with the chart's restore policy
/// (MutatingAdmissionPolicy, `restore.enabled`) in force: it removes the references on the
/// way in, and marks each Organization and CEUser so that the operator waits for its Secret.
/// Without the policy the garbage collector deletes each restored Secret (its owner's UID is
/// gone) and every secret is issued anew; without the mark, every object issues before its
/// Secret is back.
#[tokio::test]
async fn a_restore_with_stale_owner_references_keeps_every_secret() {
    let users = std::env::var("CE_RESTORE_USERS").map_or(20, |n| n.parse().unwrap());
    restore_keeps_every_secret(OwnerReferences::Stale, users).await;
}

async fn restore_keeps_every_secret(owners: OwnerReferences, user_count: usize) {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "restore").await;
    let mut operator = Operator::start(&ns.name);
    let tenant = support::helm_template(&[
        "acme",
        "tests/fixtures/tenant-chart",
        "--set",
        &format!("users={user_count}"),
    ]);
    apply(&ns.name, &tenant);
    let users: kube::Api<CEUser> = ns.api();
    let all_ready = || async {
        let listed = users.list(&Default::default()).await.unwrap().items;
        listed.len() == user_count
            && listed.iter().all(|u| {
                u.has_condition("Ready", "True", "Ready") && u.has_condition("SecretReady", "True", "SecretIssued")
            })
    };
    wait_until("the tenant to converge", support::TIMEOUT, all_ready).await;
    let backup = export(&ns.name, owners);
    let values = |objects: &[serde_json::Value]| -> BTreeMap<String, String> {
        objects
            .iter()
            .filter(|o| o["kind"] == "Secret" && o["metadata"]["name"] != "ce-operator-issuance-key")
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                    o["data"]["secret"].to_string(),
                )
            })
            .collect()
    };
    let before = values(&backup);
    assert_eq!(before.len(), user_count + 1, "a Secret per user and the organization");

    // The cluster is lost: the operator stops, the namespace goes.
    operator.kill();
    for kind in ["organizations.ce.tenancy.io/acme", "accounts.ce.tenancy.io/acme-hq"] {
        kubectl_ok(&[
            "patch",
            kind,
            "-n",
            &ns.name,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    kubectl_ok(&["delete", "namespace", &ns.name, "--wait=true", "--timeout=120s"]);

    // Rebuilt: the namespace, the issuance key, the operator, then everything else in an
    // order unlike the one it was made in.
    let started = Instant::now();
    kubectl_ok(&["create", "namespace", &ns.name]);
    let (key, mut rest): (Vec<_>, Vec<_>) = backup
        .into_iter()
        .partition(|o| o["metadata"]["name"] == "ce-operator-issuance-key");
    apply(&ns.name, &key[0].to_string());
    operator.restart();
    // Without the restore policy, Secrets before the objects they belong to (as Velero
    // restores them): an object whose Secret is not back yet gets a new one. With it, the
    // objects first. Within each group, any order.
    use rand::seq::SliceRandom;
    rest.shuffle(&mut rand::rng());
    rest.sort_by_key(|o| (o["kind"] == "Secret") == (owners == OwnerReferences::Stale));
    let manifest = rest.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n---\n");
    match owners {
        OwnerReferences::Stripped => apply(&ns.name, &manifest),
        OwnerReferences::Stale => {
            let restorer = restore_identity(&ns.name).await;
            let out = support::kubectl_with_input(
                &["apply", "-n", &ns.name, &format!("--as={restorer}"), "-f", "-"],
                &manifest,
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    wait_until("the restored tenant to converge", support::TIMEOUT, all_ready).await;
    let took = started.elapsed();

    let after = values(&export(&ns.name, OwnerReferences::Stripped));
    assert_eq!(after, before, "every secret has the value it had");
    let events: kube::Api<k8s_openapi::api::core::v1::Event> = ns.api();
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    let count = |reason: &str| reasons.iter().filter(|r| *r == reason).count();
    assert_eq!(
        count("SecretIssued") + count("SecretRecreated"),
        0,
        "nothing re-issued: {reasons:?}"
    );
    assert_eq!(count("SecretAdopted"), user_count + 1, "{reasons:?}");
    eprintln!(
        "restored {user_count} users and their organization ({owners:?} owner references) in {took:?}, 0 secrets re-issued"
    );
    if owners == OwnerReferences::Stale {
        kubectl_ok(&[
            "delete",
            "mutatingadmissionpolicy,mutatingadmissionpolicybinding",
            &format!("{}-ce-operator-restore", ns.name),
        ]);
    }
}

/// A restore identity for namespace `ns` (every verb on Secrets and the CE kinds there) and
/// the chart's MutatingAdmissionPolicy for it, scoped to `ns`, once the API server applies it.
async fn restore_identity(ns: &str) -> String {
    let restorer = format!("restorer-{ns}");
    kubectl_ok(&[
        "create",
        "role",
        "restorer",
        "-n",
        ns,
        "--verb=*",
        // The finalizers subresources too, as a backup tool holds them: whoever may set
        // blockOwnerDeletion may restore a stale owner reference (what the policy is for).
        "--resource=secrets,organizations.ce.tenancy.io,accounts.ce.tenancy.io,ceusers.ce.tenancy.io,rolebindings.ce.tenancy.io,elementsafelists.ce.tenancy.io,organizations.ce.tenancy.io/finalizers,ceusers.ce.tenancy.io/finalizers",
    ]);
    kubectl_ok(&[
        "create",
        "rolebinding",
        "restorer",
        "-n",
        ns,
        "--role=restorer",
        &format!("--user={restorer}"),
    ]);
    let policy = support::helm_template(&[
        ns,
        "charts/ce-operator",
        "--kube-version",
        "1.36.0",
        "--api-versions",
        "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
        "--set",
        &format!("secretGuard.restoreUsers={{{restorer}}}"),
        "--set",
        &format!("watchNamespace={ns}"),
        "--show-only",
        "templates/restore.yaml",
    ]);
    apply(ns, &policy);
    // In force once a dry-run create by the restorer comes back without the reference.
    let probe = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: probe\n  ownerReferences: [{apiVersion: ce.tenancy.io/v1alpha1, kind: CEUser, name: gone, uid: 0f0f0f0f-0000-0000-0000-000000000000}]\n";
    wait_until("the restore policy to be in force", support::TIMEOUT, || async {
        let out = support::kubectl_with_input(
            &[
                "create",
                "--dry-run=server",
                "-n",
                ns,
                &format!("--as={restorer}"),
                "-o",
                "json",
                "-f",
                "-",
            ],
            probe,
        );
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
                s["metadata"]
                    .get("ownerReferences")
                    .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty))
            })
    })
    .await;
    restorer
}
