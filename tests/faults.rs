//! Faults survived, judged by what the API server holds: the API server restarting under the
//! operator, the operator killed mid-convergence, and the leader killed under load with a
//! standby taking over. The tests of this binary take `SERIAL` (an API server restart
//! disturbs everything running against it).

mod support;

use std::{collections::BTreeMap, process::Command};

use ce_operator::api::{CEUser, HasConditions, Organization};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::ListParams};
use sha2::{Digest, Sha256};
use support::{Operator, TIMEOUT, TestNamespace, apply, client, install_crds, kubeconfig_path, repo_root, wait_until};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users of the load the operators are killed under.
const USERS: usize = 300;

/// Organization acme with its default account hq and `users` users u0, u1, ….
fn tenant(users: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {displayName: Acme, defaultAccountName: hq}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {name: hq}\nspec: {organizationRef: {name: acme}, default: true}\n",
    );
    for u in 0..users {
        yaml.push_str(&format!(
            "---\napiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: u{u}}}\nspec: {{accountRef: {{name: hq}}, email: u{u}@acme.example}}\n"
        ));
    }
    yaml
}

/// The Secrets of the namespace by name.
async fn secrets(ns: &TestNamespace) -> BTreeMap<String, Secret> {
    ns.api::<Secret>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect()
}

/// Applies the tenant with `users` users while the test goes on (kubectl creates them one
/// after another, so the operator works on the first while the last are not there yet).
fn apply_in_background(ns: &TestNamespace, users: usize) -> std::thread::JoinHandle<()> {
    let name = ns.name.clone();
    std::thread::spawn(move || apply(&name, &tenant(users)))
}

async fn user_secrets(ns: &TestNamespace) -> usize {
    secrets(ns).await.keys().filter(|n| n.ends_with("-user-secret")).count()
}

fn fingerprint(secret: &Secret) -> String {
    let value = &secret.data.as_ref().unwrap()["secret"].0;
    Sha256::digest(value)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until every user is Ready, then checks what the API server holds: one Secret per
/// user and one for the organization, each owned by its object, and each user's status
/// naming the fingerprint of the value its Secret holds (nothing half-written).
async fn converged_and_consistent(ns: &TestNamespace, users: usize) {
    let api: Api<CEUser> = ns.api();
    wait_until(&format!("{users} users Ready"), TIMEOUT * 2, || async {
        api.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.len() == users
                && l.items
                    .iter()
                    .all(|u| u.has_condition("SecretReady", "True", "SecretIssued"))
        })
    })
    .await;
    let orgs: Api<Organization> = ns.api();
    support::wait_condition(&orgs, "acme", "SecretReady", "True", "SecretIssued").await;
    let held = secrets(ns).await;
    let generated: Vec<&Secret> = held
        .values()
        .filter(|s| s.name_any().ends_with("-user-secret") || s.name_any().ends_with("-org-secret"))
        .collect();
    assert_eq!(
        generated.len(),
        users + 1,
        "one Secret per user and one for the organization"
    );
    for user in api.list(&ListParams::default()).await.unwrap().items {
        let secret = &held[&format!("{}-user-secret", user.name_any())];
        let owner = &secret.owner_references()[0];
        assert_eq!(
            Some(&owner.uid),
            user.uid().as_ref(),
            "{} owned by its user",
            secret.name_any()
        );
        assert_eq!(
            user.status.as_ref().and_then(|s| s.secret_fingerprint.as_deref()),
            Some(fingerprint(secret).as_str()),
            "{}: the status names the value the Secret holds",
            user.name_any()
        );
    }
}

#[tokio::test]
async fn the_operator_recovers_from_an_api_server_restart() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-apiserver").await;
    let operator = Operator::start(&ns.name);
    apply(&ns.name, &tenant(5));
    converged_and_consistent(&ns, 5).await;
    let before = secrets(&ns).await;

    let dir = kubeconfig_path().parent().unwrap();
    let status = Command::new(repo_root().join("hack/cluster.sh"))
        .args(["restart", "apiserver", "--dir"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "hack/cluster.sh restart apiserver failed");

    // Its watches come back: users created after the restart converge, and nothing that
    // existed was re-issued.
    let reconciles = operator.metric("ce_operator_reconciles_total").await;
    apply(&ns.name, &tenant(8));
    converged_and_consistent(&ns, 8).await;
    let after = secrets(&ns).await;
    for (name, secret) in before
        .iter()
        .filter(|(n, _)| n.ends_with("-user-secret") || n.ends_with("-org-secret"))
    {
        assert_eq!(
            fingerprint(&after[name]),
            fingerprint(secret),
            "{name} changed across the restart"
        );
    }
    assert!(operator.metric("ce_operator_reconciles_total").await > reconciles);
}

#[tokio::test]
async fn an_operator_killed_mid_convergence_leaves_nothing_half_done() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-kill").await;
    let mut operator = Operator::start(&ns.name);
    // Killed as soon as the first user Secret exists, while the load is still being applied.
    let applying = apply_in_background(&ns, USERS);
    wait_until("a user Secret issued", TIMEOUT, || async {
        user_secrets(&ns).await > 0
    })
    .await;
    operator.kill();
    applying.join().unwrap();
    eprintln!("killed with {} of {USERS} user Secrets issued", user_secrets(&ns).await);
    operator.restart();
    converged_and_consistent(&ns, USERS).await;
}

#[tokio::test]
async fn the_standby_takes_over_a_leader_killed_under_load() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-failover").await;
    let (mut first, second) = support::leader_and_standby(&ns.name, "4").await;
    let applying = apply_in_background(&ns, USERS);
    wait_until("a user Secret issued", TIMEOUT, || async {
        user_secrets(&ns).await > 0
    })
    .await;
    first.kill();
    applying.join().unwrap();
    eprintln!(
        "leader killed with {} of {USERS} user Secrets issued",
        user_secrets(&ns).await
    );
    converged_and_consistent(&ns, USERS).await;
    assert_eq!(second.metric("ce_operator_leader").await, 1.0, "the standby leads");
    assert!(second.metric("ce_operator_reconciles_total").await > 0.0);
}

/// Secrets created cluster-wide, as the API server counts them.
async fn secret_creates(client: &kube::Client) -> u64 {
    support::apiserver_requests(client)
        .await
        .into_iter()
        .filter(|(k, _)| k.verb == "POST" && k.resource == "secrets")
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn a_terminating_namespace_goes_without_the_operator_creating_or_retrying_anything() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-terminating").await;
    // Without the webhook: its certificate Secret would live in this namespace too.
    let operator = Operator::start_with(&ns.name, &ns.name, &["--webhook=false"]);
    apply(&ns.name, &tenant(USERS));
    converged_and_consistent(&ns, USERS).await;

    let creates = secret_creates(&client).await;
    let errors = operator.metric("ce_operator_reconcile_errors_total").await;
    let started = std::time::Instant::now();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&ns.name, &Default::default()).await.unwrap();
    support::wait_gone(&namespaces, &ns.name, TIMEOUT * 3).await;
    eprintln!("the namespace with {USERS} users went in {:?}", started.elapsed());
    assert_eq!(
        secret_creates(&client).await,
        creates,
        "a Secret was created while the namespace was terminating"
    );
    assert_eq!(
        operator.metric("ce_operator_reconcile_errors_total").await,
        errors,
        "the operator failed and retried reconciles in the terminating namespace"
    );
}

#[tokio::test]
async fn etcd_paused_mid_load_neither_crashes_nor_hot_loops_the_operator() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-etcd").await;
    let operator = Operator::start(&ns.name);
    let applying = apply_in_background(&ns, USERS);
    wait_until("a user Secret issued", TIMEOUT, || async {
        user_secrets(&ns).await > 0
    })
    .await;
    let errors = operator.metric("ce_operator_reconcile_errors_total").await;
    let etcd = format!("^ce-cluster:{}:etcd", kubeconfig_path().parent().unwrap().display());
    let signal = |sig: &str| {
        let status = Command::new("pkill").args([sig, "-f", &etcd]).status().unwrap();
        assert!(status.success(), "pkill {sig} etcd");
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(10)); // the fault's duration, not a wait
    signal("-CONT");
    applying.join().unwrap();
    converged_and_consistent(&ns, USERS).await;
    assert!(
        operator
            .pid()
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    );
    let failed = operator.metric("ce_operator_reconcile_errors_total").await - errors;
    eprintln!("reconciles failed while etcd was paused: {failed}");
    // Per-object backoff (1 s, doubling) allows about four attempts per object in 10 s.
    assert!(
        failed <= 5.0 * (USERS as f64 + 2.0),
        "{failed} failed reconciles: a hot loop"
    );
}

#[tokio::test]
async fn a_conflicting_writer_on_a_status_does_not_start_a_write_loop() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-conflict").await;
    let operator = Operator::start(&ns.name);
    apply(&ns.name, &tenant(1));
    converged_and_consistent(&ns, 1).await;
    let users: Api<CEUser> = ns.api();
    let status_writes = "ce_operator_status_writes_total{controller=\"CEUser\"}";
    let before = operator.metric(status_writes).await;

    // Another client rewrites u0's fingerprint for 30 s, every 200 ms.
    let window = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    let mut foreign = 0u32;
    while started.elapsed() < window {
        let wrong = serde_json::json!({"status": {"secretFingerprint": format!("{foreign:016x}")}});
        users
            .patch_status(
                "u0",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&wrong),
            )
            .await
            .unwrap();
        foreign += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // the writer's pace
    }
    // Once it stops, the operator puts the status right.
    converged_and_consistent(&ns, 1).await;
    let writes = operator.metric(status_writes).await - before;
    eprintln!(
        "foreign status writes: {foreign} in {window:?}; the operator's: {writes} ({:.0} per minute)",
        writes * 60.0 / window.as_secs_f64()
    );
    // At most one correction per foreign write: no loop of its own.
    assert!(
        writes <= f64::from(foreign) + 1.0,
        "{writes} operator status writes for {foreign} foreign ones"
    );
    assert!(writes >= 1.0, "the operator never corrected the status");
}
