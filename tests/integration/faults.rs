//! Faults survived, judged by what the API server holds: the API server restarting under the
//! operator, the operator killed mid-convergence, and the leader killed under load with a
//! standby taking over. The tests of this module take `SERIAL` (an API server restart
//! disturbs everything running against it).

use crate::support;

use std::{collections::BTreeMap, process::Command};

use ce_operator::api::{Account, CEUser, HasConditions, Organization};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::ListParams};
use sha2::{Digest, Sha256};
use support::{Operator, TIMEOUT, TestNamespace, apply, client, install_crds, kubeconfig_path, repo_root, wait_until};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users of the load the operators are killed under.
const USERS: usize = 300;

/// Organization acme with its declared default account hq and `users` users u0, u1, ….
/// The organization names no `defaultAccountName`, so that a default account the operator
/// generated (wrongly: one is declared) would be `acme-default`, not the declared `hq`.
fn tenant(users: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {displayName: Acme}\n---\napiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {name: hq}\nspec: {organizationRef: {name: acme}, default: true}\n",
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

/// A Secret's value, shortened; a Secret without one is a value of its own (a recorder must
/// record it, not panic on it).
fn fingerprint(secret: &Secret) -> String {
    match secret.data.as_ref().and_then(|d| d.get("secret")) {
        Some(value) => Sha256::digest(&value.0)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        None => "(no `secret` key)".to_owned(),
    }
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

/// Every value each generated Secret of a namespace has held, recorded from a watch that
/// runs beside the test (values as they appear, not only the last).
struct SecretValues {
    seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SecretValues {
    async fn record(ns: &TestNamespace) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<
            String,
            std::collections::BTreeSet<String>,
        >::new()));
        let (synced_tx, synced) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let seen = seen.clone();
            let api = ns.api::<Secret>();
            async move {
                let mut synced_tx = Some(synced_tx);
                // Survives the API server going away: the watcher re-lists with backoff.
                let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
                while let Some(event) = events.next().await {
                    let secret = match event {
                        Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = synced_tx.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    let name = secret.name_any();
                    if name.ends_with("-user-secret") || name.ends_with("-org-secret") {
                        let mut seen = seen.lock().unwrap();
                        seen.entry(name).or_default().insert(fingerprint(&secret));
                    }
                }
            }
        });
        synced.await.expect("the Secret watch lists");
        Self { seen, task }
    }

    /// Waits until the recorder has seen `expected` generated Secrets (its watch may still be
    /// in backoff after a fault), then fails naming every Secret that held more than one value.
    async fn assert_one_value_each(&self, expected: usize) {
        wait_until(&format!("the recorder to see {expected} Secrets"), TIMEOUT, || async {
            self.seen.lock().unwrap().len() >= expected
        })
        .await;
        assert!(!self.task.is_finished(), "the Secret recorder stopped before the end");
        let seen = self.seen.lock().unwrap();
        let several: Vec<_> = seen.iter().filter(|(_, values)| values.len() > 1).collect();
        assert!(several.is_empty(), "Secrets that held more than one value: {several:?}");
        assert_eq!(seen.len(), expected, "generated Secrets observed");
    }
}

impl Drop for SecretValues {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every Account name a namespace has held, recorded from a watch that runs beside the test
/// (a generated default account removed again once the declared one supersedes it is caught
/// too, not only one that is still there at the end).
struct AccountsSeen {
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AccountsSeen {
    async fn record(ns: &TestNamespace) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let (synced_tx, synced) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let seen = seen.clone();
            let api = ns.api::<Account>();
            async move {
                let mut synced_tx = Some(synced_tx);
                let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Apply(a) | watcher::Event::InitApply(a)) => {
                            seen.lock().unwrap().insert(a.name_any());
                        }
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = synced_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
        synced.await.expect("the Account watch lists");
        Self { seen, task }
    }
}

impl Drop for AccountsSeen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Exactly one default account, the declared hq, as the API server holds it: the only Account
/// there is and ever was (`seen`), the only one whose status says it is the default, and the
/// organization's status names it. A default account generated beside it (`acme-default`:
/// the tenant names no `defaultAccountName`) fails each of these.
async fn one_default_account(ns: &TestNamespace, seen: &AccountsSeen) {
    let accounts: Api<Account> = ns.api();
    // The account's status is written by its own reconcile, which may trail the users'.
    let hq = support::wait_for(&accounts, "hq", "status.default", TIMEOUT, |a| {
        a.status.as_ref().and_then(|s| s.default).is_some()
    })
    .await;
    assert_eq!(
        hq.status.unwrap().default,
        Some(true),
        "the declared hq is not the default"
    );
    let all = accounts.list(&ListParams::default()).await.unwrap().items;
    let names: Vec<String> = all.iter().map(|a| a.name_any()).collect();
    assert_eq!(names, ["hq"], "Accounts besides the declared default");
    let defaults: Vec<&str> = all
        .iter()
        .filter(|a| a.spec.default || a.status.as_ref().and_then(|s| s.default) == Some(true))
        .map(|a| a.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(defaults, ["hq"], "Accounts marked default (spec or status)");
    let orgs: Api<Organization> = ns.api();
    let org = orgs.get("acme").await.unwrap();
    assert_eq!(
        org.status.and_then(|s| s.default_account).as_deref(),
        Some("hq"),
        "the organization's default account"
    );
    assert!(!seen.task.is_finished(), "the Account recorder stopped before the end");
    let ever: Vec<String> = seen.seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        ever,
        ["hq"],
        "Accounts the namespace held at some point during the test"
    );
}

/// Users of the bulk create the API server is restarted under.
const BULK_USERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_recovers_from_an_api_server_restart_mid_load() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-apiserver").await;
    let operator = Operator::start(&ns.name);
    let values = SecretValues::record(&ns).await;
    let accounts = AccountsSeen::record(&ns).await;
    // The bulk create runs in the background; the API server goes away under it (kubectl
    // then fails, as any client would), and the client applies the whole tenant again after.
    let name = ns.name.clone();
    let applying = std::thread::spawn(move || {
        support::kubectl_with_input(&["apply", "-n", &name, "-f", "-"], &tenant(BULK_USERS))
    });
    wait_until("a tenth of the user Secrets issued", TIMEOUT, || async {
        user_secrets(&ns).await >= BULK_USERS / 10
    })
    .await;
    let before = secrets(&ns).await;
    let reconciles = operator.metric("ce_operator_reconciles_total", &[]).await;
    let dir = kubeconfig_path().parent().unwrap();
    let restarting = std::time::Instant::now();
    let status = Command::new(repo_root().join("hack/cluster.sh"))
        .args(["restart", "apiserver", "--dir"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "hack/cluster.sh restart apiserver failed");
    let issued = before.keys().filter(|n| n.ends_with("-user-secret")).count();
    eprintln!(
        "API server restarted in {:?} with {issued} user Secrets issued",
        restarting.elapsed()
    );
    // Mid-load: Secrets were left to issue when the API server went.
    assert!(
        issued < BULK_USERS,
        "the restart came after the load: nothing was in flight"
    );
    let converging = std::time::Instant::now();
    let _ = applying.join().unwrap();
    apply(&ns.name, &tenant(BULK_USERS));

    // Its watches come back without a restart of the operator: everything converges, and
    // nothing issued before the restart was issued again.
    converged_and_consistent(&ns, BULK_USERS).await;
    eprintln!("converged {:?} after the restart", converging.elapsed());
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
    values.assert_one_value_each(BULK_USERS + 1).await;
    one_default_account(&ns, &accounts).await;
    assert!(operator.metric("ce_operator_reconciles_total", &[]).await > reconciles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_five_times_mid_convergence_leaves_nothing_half_done() {
    use rand::Rng;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-kill").await;
    let values = SecretValues::record(&ns).await;
    let accounts = AccountsSeen::record(&ns).await;
    let mut operator = Operator::start(&ns.name);
    let applying = apply_in_background(&ns, USERS);
    // Five kills, each at a random point of its fifth of the first four fifths of the load
    // (by user Secrets issued): a restarted operator issues its backlog in a burst, so that a
    // kill late in the last fifth could come after the last Secret. Polled every 20 ms, so
    // that the kill comes close to its point.
    let mut rng = rand::rng();
    let span = USERS * 4 / 5;
    for fifth in 0..5 {
        let at = span * fifth / 5 + rng.random_range(1..span / 5);
        support::poll_until(
            &format!("{at} user Secrets issued"),
            TIMEOUT,
            std::time::Duration::from_millis(20),
            || async {
                let issued = user_secrets(&ns).await;
                if issued >= at {
                    Ok(())
                } else {
                    Err(format!("{issued} issued"))
                }
            },
        )
        .await;
        operator.kill();
        let issued = user_secrets(&ns).await;
        eprintln!("kill {}: {issued} of {USERS} user Secrets issued", fifth + 1);
        // Mid-load: the dead operator left Secrets to issue (read after the kill, so that none
        // it issued before dying is missed).
        assert!(
            issued < USERS,
            "kill {} came after the load: nothing was in flight",
            fifth + 1
        );
        operator.restart();
    }
    let restarted = std::time::Instant::now();
    applying.join().unwrap();
    converged_and_consistent(&ns, USERS).await;
    eprintln!("converged {:?} after the fifth restart", restarted.elapsed());
    values.assert_one_value_each(USERS + 1).await;
    one_default_account(&ns, &accounts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_leader_killed_under_load() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-failover").await;
    let values = SecretValues::record(&ns).await;
    let accounts = AccountsSeen::record(&ns).await;
    let lease = std::time::Duration::from_secs(4);
    let (mut first, second) = support::leader_and_standby(&ns.name, &lease.as_secs().to_string()).await;
    let (leader, standby) = (first.lease_identity().await, second.lease_identity().await);
    assert_eq!(
        support::lease_holder(&client, &ns.name, "ce-operator").await,
        leader,
        "the first replica holds the lease"
    );
    let applying = apply_in_background(&ns, USERS);
    wait_until("a tenth of the user Secrets issued", TIMEOUT, || async {
        user_secrets(&ns).await >= USERS / 10
    })
    .await;
    first.kill();
    let killed = std::time::Instant::now();
    let issued = user_secrets(&ns).await;
    eprintln!("leader killed with {issued} of {USERS} user Secrets issued");
    // Mid-load (read after the kill, before the standby leads): Secrets were left to issue.
    assert!(issued < USERS, "the kill came after the load: nothing was in flight");
    // Judged by the Lease as the API server holds it: the standby's identity is the holder.
    let bound = lease + std::time::Duration::from_secs(5);
    wait_until("the standby to hold the lease", bound, || async {
        support::lease_holder(&client, &ns.name, "ce-operator").await == standby
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("the standby took the lease {takeover:?} after the kill (lease {lease:?}, bound {bound:?})");
    wait_until("the standby to report leading", TIMEOUT, || async {
        second.metric("ce_operator_leader", &[]).await == 1.0
    })
    .await;
    applying.join().unwrap();
    converged_and_consistent(&ns, USERS).await;
    eprintln!("converged {:?} after the kill", killed.elapsed());
    values.assert_one_value_each(USERS + 1).await;
    one_default_account(&ns, &accounts).await;
    assert!(second.metric("ce_operator_reconciles_total", &[]).await > 0.0);
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

/// The test cluster's controller manager, frozen (SIGSTOP) while this lives: its namespace
/// controller leaves a terminating namespace's content alone. Thawed when dropped, a failing
/// test's unwinding included, so that the cluster works for the tests after it.
struct ControllerManagerFrozen;

impl ControllerManagerFrozen {
    fn signal(sig: &str) -> bool {
        let pattern = format!(
            "^ce-cluster:{}:kube-controller-manager",
            kubeconfig_path().parent().unwrap().display()
        );
        Command::new("pkill")
            .args([sig, "-f", &pattern])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn freeze() -> Self {
        assert!(Self::signal("-STOP"), "pkill -STOP kube-controller-manager");
        Self
    }
}

impl Drop for ControllerManagerFrozen {
    fn drop(&mut self) {
        // No assertion: a panic while unwinding would abort the test binary.
        Self::signal("-CONT");
    }
}

/// Waits until namespace `ns` is gone: how long that took from `since`.
async fn gone(client: &kube::Client, ns: &str, since: std::time::Instant) -> std::time::Duration {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    support::wait_gone(&namespaces, ns, TIMEOUT * 3).await;
    since.elapsed()
}

#[tokio::test]
async fn a_terminating_namespace_goes_without_the_operator_creating_or_retrying_anything() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    // The same namespace (the tenant and its Secrets), deleted with no operator running: the
    // operator is stopped once it has converged, and its finalizers are removed by hand. Both
    // namespaces are deleted at once, so that the machine's load (the other tests) weighs on
    // both times alike.
    let baseline = TestNamespace::new(&client, "fault-terminating-baseline").await;
    let mut operator = Operator::start_with(&baseline.name, &baseline.name, &["--webhook=false"]);
    apply(&baseline.name, &tenant(BULK_USERS));
    converged_and_consistent(&baseline, BULK_USERS).await;
    operator.kill();
    for kind in ["organization/acme", "account/hq"] {
        support::kubectl_ok(&[
            "patch",
            kind,
            "-n",
            &baseline.name,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }

    let ns = TestNamespace::new(&client, "fault-terminating").await;
    // Without the webhook: its certificate Secret would live in this namespace too.
    let operator = Operator::start_with(&ns.name, &ns.name, &["--webhook=false"]);
    apply(&ns.name, &tenant(BULK_USERS));
    converged_and_consistent(&ns, BULK_USERS).await;
    let creates = secret_creates(&client).await;
    let errors = operator.metric("ce_operator_reconcile_errors_total", &[]).await;
    let logged = operator.log_text().len();
    // The namespace controller's order is a map's: it may delete the Secrets before the users
    // that hold them, or after. The worst order is made here: with the controller manager
    // frozen, both namespaces are Terminating and nothing is deleted yet; once the operator
    // has seen it (it lets go of the organization's finalizer at once), the user Secrets go
    // first. Users that are not being deleted, whose Secrets are gone: the operator must
    // still create nothing (the API server would refuse it, and it would retry).
    let frozen = ControllerManagerFrozen::freeze();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in [&ns.name, &baseline.name] {
        namespaces.delete(name, &Default::default()).await.unwrap();
    }
    support::wait_for(
        &ns.api::<Organization>(),
        "acme",
        "the operator to let go of the organization's finalizer in the terminating namespace",
        TIMEOUT,
        |o| o.metadata.finalizers.as_ref().is_none_or(Vec::is_empty),
    )
    .await;
    ns.api::<Secret>()
        .delete_collection(
            &Default::default(),
            &ListParams::default().labels(&format!("{}=user", ce_operator::model::names::LABEL_SECRET_OF)),
        )
        .await
        .expect("the user Secrets deleted");
    operator.come_to_rest(std::time::Duration::from_secs(2), TIMEOUT).await;
    drop(frozen);
    let thawed = std::time::Instant::now();
    let (with, without) = tokio::join!(gone(&client, &ns.name, thawed), gone(&client, &baseline.name, thawed));
    eprintln!(
        "a namespace with {BULK_USERS} users went in {with:?} with the operator running, {without:?} without ({:.2}x)",
        with.as_secs_f64() / without.as_secs_f64()
    );
    // Its log since the deletion began: about this namespace at most the one line that says
    // it is being deleted, and nothing at WARN or ERROR, no retry scheduled (`retry_in_ms`).
    let log = operator.log_text();
    let about: Vec<&str> = log[logged..]
        .lines()
        .filter(|l| l.contains(&ns.name) && !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .collect();
    let complaints: Vec<&&str> = about
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("retry_in_ms"))
        .collect();
    assert!(
        complaints.is_empty(),
        "the operator complained or retried in the terminating namespace:\n{complaints:#?}"
    );
    assert!(
        about.len() <= 1,
        "more than one line about the terminating namespace:\n{about:#?}"
    );
    assert_eq!(
        secret_creates(&client).await,
        creates,
        "a Secret was created while the namespace was terminating"
    );
    assert_eq!(
        operator.metric("ce_operator_reconcile_errors_total", &[]).await,
        errors,
        "the operator failed and retried reconciles in the terminating namespace"
    );
    // The bound the issue sets.
    assert!(
        with <= without.mul_f64(1.5),
        "{with:?} with the operator against {without:?} without"
    );
}

#[tokio::test]
async fn etcd_paused_mid_load_neither_crashes_nor_hot_loops_the_operator() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-etcd").await;
    let mut operator = Operator::start(&ns.name);
    let applying = apply_in_background(&ns, USERS);
    wait_until("a user Secret issued", TIMEOUT, || async {
        user_secrets(&ns).await > 0
    })
    .await;
    let errors = operator.metric("ce_operator_reconcile_errors_total", &[]).await;
    let reconciles = operator.metric("ce_operator_reconciles_total", &[]).await;
    let etcd = format!("^ce-cluster:{}:etcd", kubeconfig_path().parent().unwrap().display());
    let signal = |sig: &str| {
        let status = Command::new("pkill").args([sig, "-f", &etcd]).status().unwrap();
        assert!(status.success(), "pkill {sig} etcd");
    };
    signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(10)); // the fault's duration, not a wait
    // Read while etcd is still paused (the operator answers /metrics from memory).
    let reconciled_while_paused = operator.metric("ce_operator_reconciles_total", &[]).await - reconciles;
    signal("-CONT");
    let resumed = std::time::Instant::now();
    // Reaped if it exited: a crashed operator is not taken for a live one (a zombie), as a look
    // at /proc/<pid> would.
    if let Some(status) = operator.exit_status() {
        panic!("the operator exited while etcd was paused: {status}");
    }
    applying.join().unwrap();
    converged_and_consistent(&ns, USERS).await;
    eprintln!("converged {:?} after etcd resumed", resumed.elapsed());
    if let Some(status) = operator.exit_status() {
        panic!("the operator exited after etcd resumed: {status}");
    }
    let converged = operator.metric("ce_operator_reconciles_total", &[]).await;
    let at_rest = operator
        .come_to_rest(std::time::Duration::from_secs(1), REST_WITHIN)
        .await;
    let failed = operator.metric("ce_operator_reconcile_errors_total", &[]).await - errors;
    let after_resume = at_rest - reconciles - reconciled_while_paused;
    eprintln!(
        "reconciles: {reconciled_while_paused} ended while etcd was paused, {after_resume} from its resumption to rest ({} after convergence); {failed} failed",
        at_rest - converged
    );
    // The API server holds requests while etcd is paused: a reconcile that writes waits, one
    // that has nothing to write ends, and nothing new wakes an object (no watch event comes).
    // So at most about one reconcile per object ends in the pause. (The requests held take
    // every concurrency slot, so this bound alone cannot tell a hot loop.)
    let objects = USERS as f64 + 2.0;
    assert!(
        reconciled_while_paused <= objects,
        "{reconciled_while_paused} reconciles ended while etcd was paused: a hot loop"
    );
    // Once etcd is back, the held writes complete and each object is woken by its own
    // writes' echoes a few times, then nothing: an operator that requeues what it just
    // reconciled never comes to rest (`Operator::come_to_rest` fails), one that retries in a loop
    // exceeds these per-object bounds. Where writes fail fast instead, the backoff is tested
    // by `writes_refused_for_thirty_seconds_…`.
    assert!(
        after_resume <= 6.0 * objects,
        "{after_resume} reconciles between etcd's resumption and rest, for {objects} objects: a loop"
    );
    assert!(failed <= 5.0 * objects, "{failed} failed reconciles: a hot loop");
}

/// How long an operator whose work is done may take to stop reconciling.
const REST_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// How long `writes_refused_…` refuses the operator's writes: long enough that backoff (5
/// attempts per object) and a fixed retry (15 at 2 s) are far apart.
const REFUSED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A ValidatingWebhookConfiguration that refuses, at once, the operator's writes in
/// `namespace` (Secret creates, CEUser status writes): it points at a closed port with
/// failurePolicy Fail, as an admission controller that is down would.
fn refusing_webhook(namespace: &str) -> k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("refuse-{namespace}")},
        "webhooks": [{
            "name": "refuse.faults.test",
            "clientConfig": {"url": "https://127.0.0.1:1/refuse"},
            "rules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["secrets"]},
                {"apiGroups": ["ce.tenancy.io"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["ceusers/status"]},
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 1,
        }],
    }))
    .unwrap()
}

#[tokio::test]
async fn writes_refused_for_thirty_seconds_are_retried_with_backoff_not_in_a_hot_loop() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-refused").await;
    let operator = Operator::start(&ns.name);
    let applying = apply_in_background(&ns, USERS);
    wait_until("a tenth of the user Secrets issued", TIMEOUT, || async {
        user_secrets(&ns).await >= USERS / 10
    })
    .await;
    // Unlike a paused etcd (the API server holds the requests until it is back, so nothing
    // fails), refused writes fail in milliseconds: only the backoff stands between them and
    // a hot loop.
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let refusing = refusing_webhook(&ns.name);
    let errors = operator.metric("ce_operator_reconcile_errors_total", &[]).await;
    webhooks.create(&Default::default(), &refusing).await.unwrap();
    std::thread::sleep(REFUSED_FOR); // the fault's duration, not a wait
    webhooks
        .delete(&refusing.metadata.name.clone().unwrap(), &Default::default())
        .await
        .unwrap();
    let lifted = std::time::Instant::now();
    let failed = operator.metric("ce_operator_reconcile_errors_total", &[]).await - errors;
    applying.join().unwrap();
    converged_and_consistent(&ns, USERS).await;
    eprintln!(
        "converged {:?} after the writes were let through again",
        lifted.elapsed()
    );
    let refused = user_secrets(&ns).await;
    eprintln!(
        "reconciles failed while writes were refused for {REFUSED_FOR:?}: {failed} ({USERS} users, {refused} Secrets at the end)"
    );
    assert!(failed > 0.0, "nothing was refused: the fault did not bite");
    // Per-object backoff (1 s doubling, jittered by ±20 %) allows attempts at about 0, 1, 3, 7
    // and 15 s: at most 5 per object in 30 s, 6 with the jitter at its shortest. A retry every
    // 2 s without backoff makes 15; every 5 s, 6 or 7.
    assert!(
        failed <= 6.0 * (USERS as f64 + 2.0),
        "{failed} failed reconciles in {REFUSED_FOR:?}: more than 6 per object, so no backoff"
    );
}

/// The labels the operator gives user u0's Secret (of account hq of acme).
fn u0_secret_labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/managed-by", "ce-operator"),
        ("ce.tenancy.io/organization", "acme"),
        ("ce.tenancy.io/account", "hq"),
        ("ce.tenancy.io/user", "u0"),
        ("ce.tenancy.io/secret-of", "user"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Writes to one resource (and subresource) by the API server's own count, summed over codes:
/// the difference between two snapshots of `apiserver_request_total` (`support::is_write`).
fn writes_between(
    before: &BTreeMap<support::ApiRequests, u64>,
    after: &BTreeMap<support::ApiRequests, u64>,
    resource: &str,
    subresource: &str,
) -> u64 {
    support::between(before, after)
        .into_iter()
        .filter(|(k, _)| support::is_write(&k.verb) && k.resource == resource && k.subresource == subresource)
        .map(|(_, n)| n)
        .sum()
}

/// Corrections the operator makes to one object fought over, at most: at once, then spaced
/// out 1 s doubling (0, 1, 3, 7, 15, 31 s into the fight: see `controller::corrections`),
/// whatever the other writer's pace. For the 30 s fight below that is 5 during it and 1 after.
const CORRECTIONS_PER_FIGHT: u64 = 6;

/// Fault 5: two other writers, for 30 s, every 200 ms: one rewrites user u0's status (its
/// fingerprint), the other the labels of u0's Secret (a wrong account, and `managed-by`
/// removed, which takes it out of the operator's watch). The operator's writes to each object,
/// counted by the API server (its writes there less the test's own), stay within
/// `CORRECTIONS_PER_FIGHT` however many foreign writes there were; both objects are right
/// again once the writers stop.
#[tokio::test]
async fn conflicting_writers_on_a_status_and_on_a_secrets_labels_do_not_start_a_write_loop() {
    use kube::api::{Patch, PatchParams};
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-conflict").await;
    // Without the webhook, whose certificate Secret would live in this namespace too.
    let operator = Operator::start_with(&ns.name, &ns.name, &["--webhook=false"]);
    apply(&ns.name, &tenant(1));
    converged_and_consistent(&ns, 1).await;
    let users: Api<CEUser> = ns.api();
    let secrets_api: Api<Secret> = ns.api();
    let secret = "u0-user-secret";
    assert_eq!(
        secrets_api.get(secret).await.unwrap().metadata.labels.unwrap(),
        u0_secret_labels(),
        "the operator's labels before the fight"
    );
    let fingerprint_before = fingerprint(&secrets_api.get(secret).await.unwrap());
    let before = support::apiserver_requests(&client).await;
    let own_status_writes = || operator.metric("ce_operator_status_writes_total", &[("controller", "CEUser")]);
    let own_count_before = own_status_writes().await;

    let window = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    let (mut status_writes, mut label_writes) = (0u64, 0u64);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200)); // the writers' pace
    while started.elapsed() < window {
        tick.tick().await;
        let n = status_writes;
        let wrong = serde_json::json!({"status": {"secretFingerprint": format!("{n:016x}")}});
        status_writes += 1;
        users
            .patch_status("u0", &PatchParams::default(), &Patch::Merge(&wrong))
            .await
            .unwrap();
        let relabelled = serde_json::json!({"metadata": {"labels": {
            "ce.tenancy.io/account": format!("intruder-{n}"),
            "app.kubernetes.io/managed-by": null,
        }}});
        label_writes += 1;
        secrets_api
            .patch(secret, &PatchParams::default(), &Patch::Merge(&relabelled))
            .await
            .unwrap();
    }
    let stopped = std::time::Instant::now();
    // Once they stop, the operator puts both right (its next correction is due at most a
    // minute later): the status names the Secret's value again (which no one changed), and
    // the Secret carries the operator's labels.
    wait_until(
        "the operator to correct u0's status and its Secret's labels",
        TIMEOUT,
        || async {
            let status = users.get("u0").await.ok().and_then(|u| u.status?.secret_fingerprint);
            status.as_deref() == Some(fingerprint_before.as_str())
                && secrets_api
                    .get(secret)
                    .await
                    .is_ok_and(|s| s.metadata.labels == Some(u0_secret_labels()))
        },
    )
    .await;
    let settled = stopped.elapsed();
    converged_and_consistent(&ns, 1).await;
    assert_eq!(
        fingerprint(&secrets_api.get(secret).await.unwrap()),
        fingerprint_before,
        "the Secret's value changed"
    );
    let after = support::apiserver_requests(&client).await;
    let status = writes_between(&before, &after, "ceusers", "status") - status_writes;
    let labels = writes_between(&before, &after, "secrets", "") - label_writes;
    let others = writes_between(&before, &after, "ceusers", "");
    let own_count = own_status_writes().await - own_count_before;
    let fight = window + settled;
    let per_minute = |n: u64| n as f64 * 60.0 / fight.as_secs_f64();
    eprintln!(
        "in {fight:?} ({window:?} of fighting, right again {settled:?} after): \
         foreign writes {status_writes} to u0's status and {label_writes} to its Secret; \
         the operator's, by the API server: {status} to the status ({:.1} per minute; {own_count} by its own count), \
         {labels} to the Secret ({:.1} per minute)",
        per_minute(status),
        per_minute(labels),
    );
    assert!(status >= 1, "the operator never corrected the status");
    assert!(labels >= 1, "the operator never put the labels back");
    assert!(
        status <= CORRECTIONS_PER_FIGHT,
        "{status} operator writes to u0's status against {status_writes} foreign ones: more than {CORRECTIONS_PER_FIGHT}, a write loop"
    );
    assert!(
        labels <= CORRECTIONS_PER_FIGHT,
        "{labels} operator writes to u0's Secret against {label_writes} foreign ones: more than {CORRECTIONS_PER_FIGHT}, a write loop"
    );
    assert_eq!(others, 0, "writes to CEUsers other than their status");
}

/// Stores `object` straight into etcd under the key the API server uses for it, as an object
/// written before a schema was tightened would be: no validation, no defaulting.
fn put_into_etcd(key: &str, object: &serde_json::Value) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let env = std::fs::read_to_string(kubeconfig_path().with_file_name("env")).unwrap();
    let port = env
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .expect("ETCD_PORT in the cluster's env file");
    let body = serde_json::json!({
        "key": STANDARD.encode(key),
        "value": STANDARD.encode(object.to_string()),
    });
    let out = Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{port}/v3/kv/put"),
            "-d",
        ])
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcd put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_does_not_wedge_the_operator() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "fault-malformed").await;
    // The webhook on a fixed port, so that it is the same across the restart below.
    let webhook_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut operator = Operator::start_with(&ns.name, &ns.name, &["--webhook-addr", &webhook_addr]);
    support::cover_with_webhook(&ns.name, &ns.name);
    let _webhook = support::TestWebhook::install(
        &client,
        &support::webhook_config_name(&ns.name),
        &operator.webhook_addr().await,
        &ns.name,
    )
    .await;
    apply(&ns.name, &tenant(1));
    converged_and_consistent(&ns, 1).await;

    // A CEUser whose e-mail is a number and an Account whose organizationRef is a string: no
    // client can create them through the API server today, and serde cannot read them.
    let stored = |kind: &str, name: &str, spec: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "ce.tenancy.io/v1alpha1",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": ns.name,
                "uid": format!("00000000-0000-4000-8000-{:012x}", name.len()),
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": spec,
        })
    };
    let etcd_key = |plural: &str, name: &str| format!("/registry/ce.tenancy.io/{plural}/{}/{name}", ns.name);
    put_into_etcd(
        &etcd_key("ceusers", "bad"),
        &stored(
            "CEUser",
            "bad",
            serde_json::json!({"accountRef": {"name": "hq"}, "email": 42}),
        ),
    );
    put_into_etcd(
        &etcd_key("accounts", "broken"),
        &stored("Account", "broken", serde_json::json!({"organizationRef": "acme"})),
    );
    let untyped = |kind: kube::core::ApiResource| {
        kube::Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), &ns.name, &kind)
    };
    let (bad_users, bad_accounts) = (
        untyped(kube::core::ApiResource::erase::<CEUser>(&())),
        untyped(kube::core::ApiResource::erase::<ce_operator::api::Account>(&())),
    );
    wait_until("the API server serves the malformed objects", TIMEOUT, || async {
        bad_users.get_opt("bad").await.is_ok_and(|o| o.is_some())
            && bad_accounts.get_opt("broken").await.is_ok_and(|o| o.is_some())
    })
    .await;
    let users: Api<CEUser> = ns.api();

    // Seen by a running operator's watch, then by a fresh operator's initial list, streamed
    // and then listed: each time the others keep converging, and the bad ones are counted and
    // named in the log.
    for (round, phase) in ["watch", "streamed list", "list"].into_iter().enumerate() {
        match phase {
            "streamed list" => operator.restart(),
            "list" => operator.restart_with(&["--initial-list", "list"]),
            _ => {}
        }
        let users_now = 2 + round;
        let applied = std::time::Instant::now();
        apply(&ns.name, &tenant(users_now));
        wait_until(
            &format!("{phase}: users Ready beside the malformed ones"),
            TIMEOUT,
            || async {
                // A typed list fails on the bad object too: read the good ones by name.
                let mut all = true;
                for u in 0..users_now {
                    all &= users
                        .get_opt(&format!("u{u}"))
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|u| u.has_condition("Ready", "True", "Ready"));
                }
                all
            },
        )
        .await;
        eprintln!(
            "{phase}: {users_now} users Ready beside the malformed objects {:?} after the apply",
            applied.elapsed()
        );
        wait_until(&format!("{phase}: the malformed objects counted"), TIMEOUT, || async {
            let malformed = "ce_operator_malformed_objects";
            operator.metric(malformed, &[("kind", "CEUser")]).await == 1.0
                && operator.metric(malformed, &[("kind", "Account")]).await == 1.0
        })
        .await;
        // The fresh operator read the existing users the way the phase says (its own count).
        if phase != "watch" {
            let lists = operator
                .metric(
                    "ce_operator_api_requests_total",
                    &[("verb", "LIST"), ("resource", "ceusers")],
                )
                .await;
            assert_eq!(lists > 0.0, phase == "list", "{phase}: {lists} LISTs of ceusers");
        }
        let log = operator.log_of_this_start();
        for name in ["name=bad", "name=broken"] {
            assert!(
                log.lines().any(|l| l.contains("cannot be read") && l.contains(name)),
                "{phase}: the log names the malformed object {name}:\n{log}"
            );
        }
    }

    // Through the webhook, which cannot read the stored versions either: the account can be
    // deleted and the user fixed, and the fixed user is then reconciled like any other.
    support::kubectl_ok(&["delete", "account", "broken", "-n", &ns.name, "--wait=true"]);
    support::kubectl_ok(&[
        "patch",
        "ceuser",
        "bad",
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"email":"bad@acme.example"}}"#,
    ]);
    support::wait_ready(&users, "bad").await;
    wait_until("nothing counted malformed any more", TIMEOUT, || async {
        operator.metric("ce_operator_malformed_objects", &[]).await == 0.0
    })
    .await;
}
