//! Issue 27: a cluster rebuilt from an etcd snapshot taken mid-load, with the operator running
//! through it. The restore rewinds the whole cluster (this module's single test runs alone on
//! it: `hack/test.sh`).

use crate::support;

use std::{collections::BTreeMap, process::Command, time::Instant};

use ce_operator::api::{Account, CEUser, HasConditions, Organization};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::ListParams};
use support::{Operator, TIMEOUT, TestNamespace, apply, client, install_crds, kubeconfig_path, repo_root};

/// The tenant chart's objects for `users` users of organization acme (declared default
/// account), and organization globex with an owner and no default account: the operator
/// creates globex-default and the owner user, the writes a restore could duplicate.
fn tenant(users: usize) -> String {
    support::helm_template(&[
        "acme",
        "tests/fixtures/tenant-chart",
        "--set",
        &format!("users={users}"),
    ])
}

const GLOBEX: &str = "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {name: globex}\nspec: {displayName: Globex, owner: {email: ceo@globex.example}}\n";

fn snapshot(action: &str, file: &std::path::Path) {
    let status = Command::new(repo_root().join("hack/cluster.sh"))
        .args(["snapshot", action])
        .arg(file)
        .arg("--dir")
        .arg(kubeconfig_path().parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "hack/cluster.sh snapshot {action} failed");
}

/// The issued Secrets of the namespace: name → (value, resourceVersion).
async fn secrets(api: &Api<Secret>) -> BTreeMap<String, (String, String)> {
    let listed = api
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=ce-operator"))
        .await
        .unwrap();
    listed
        .items
        .into_iter()
        .map(|s| {
            let value = s
                .data
                .as_ref()
                .and_then(|d| d.get("secret"))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default();
            (
                s.metadata.name.unwrap_or_default(),
                (value, s.metadata.resource_version.unwrap_or_default()),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_etcd_snapshot_restored_mid_load_loses_nothing_and_changes_no_secret() {
    const SETTLED: usize = 50;
    const LOAD: usize = 100;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "etcd-restore").await;
    let operator = Operator::start(&ns.name);
    let pid = operator.pid();
    let (users, secret_api, accounts, orgs): (Api<CEUser>, Api<Secret>, Api<Account>, Api<Organization>) =
        (ns.api(), ns.api(), ns.api(), ns.api());
    // Converged: at least `count` users Ready with their secret, and every organization Ready
    // with the default account its status names (the generated one included) existing.
    // What keeps the tenant from having converged with `count` users: nothing, or the first
    // few objects that are not there yet, with their conditions (printed on a timeout).
    let unready = |count: usize| {
        let (users, orgs, accounts) = (users.clone(), orgs.clone(), accounts.clone());
        async move {
            let lp = ListParams::default();
            let listed = users.list(&lp).await.map(|l| l.items).unwrap_or_default();
            let organizations = orgs.list(&lp).await.map(|l| l.items).unwrap_or_default();
            let present: Vec<String> = accounts
                .list(&lp)
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| a.metadata.name)
                .collect();
            let conditions = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
                c.iter()
                    .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut missing: Vec<String> = listed
                .iter()
                .filter(|u| {
                    !(u.has_condition("Ready", "True", "Ready")
                        && u.has_condition("SecretReady", "True", "SecretIssued"))
                })
                .map(|u| format!("user {}: {}", u.name_any(), conditions(u.conditions())))
                .chain(
                    organizations
                        .iter()
                        .filter(|o| {
                            !(o.has_condition("Ready", "True", "Ready")
                                && o.status
                                    .as_ref()
                                    .and_then(|s| s.default_account.as_ref())
                                    .is_some_and(|d| present.contains(d)))
                        })
                        .map(|o| {
                            format!(
                                "organization {}: {} (default account {:?}; accounts {present:?})",
                                o.name_any(),
                                conditions(o.conditions()),
                                o.status.as_ref().and_then(|s| s.default_account.as_ref())
                            )
                        }),
                )
                .collect();
            if listed.len() < count {
                missing.insert(0, format!("{} users of {count}", listed.len()));
            }
            missing.truncate(5);
            missing
        }
    };
    let converged = |what: &'static str, count: usize| {
        let unready = &unready;
        support::poll_until(what, TIMEOUT, support::POLL, move || async move {
            let missing = unready(count).await;
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{missing:#?}"))
            }
        })
    };

    apply(&ns.name, &tenant(SETTLED));
    converged("the settled tenant to converge", SETTLED).await;
    let settled = secrets(&secret_api).await;

    // Load: 50 more users and a new organization whose default account and owner the operator
    // creates, and the snapshot taken while it does.
    // The snapshot holds the load as applied and none of the operator's work on it (frozen
    // meanwhile), so that the restore takes back everything the operator did since: the
    // new organization's owner, binding and default account, half the Secrets.
    operator.freeze(true);
    apply(&ns.name, &format!("{}---\n{GLOBEX}", tenant(LOAD)));
    let file = kubeconfig_path().with_file_name("etcd-restore.snapshot");
    snapshot("save", &file);
    operator.freeze(false);
    converged("the load to converge", LOAD + 1).await;

    // The cluster is rebuilt from the snapshot; the operator runs through it.
    let restoring = Instant::now();
    snapshot("restore", &file);
    let _ = std::fs::remove_file(&file);
    let restored = restoring.elapsed();
    let at_restore = secrets(&secret_api).await;
    let in_snapshot = users.list(&ListParams::default()).await.unwrap().items.len();
    let converging = Instant::now();
    converged("the restored cluster to converge", in_snapshot).await;
    let converged = converging.elapsed();
    let after = secrets(&secret_api).await;

    // Nothing lost: every secret clients held before the load is there with its value, and no
    // Secret the snapshot held was written again (same value, same resourceVersion).
    for (name, (value, _)) in &settled {
        assert_eq!(after.get(name).map(|(v, _)| v), Some(value), "{name} kept its value");
    }
    for (name, held) in &at_restore {
        assert_eq!(after.get(name), Some(held), "{name} untouched since the restore");
    }
    // No duplicate default account, for the declared one or the generated one.
    for org in ["acme", "globex"] {
        let defaults: Vec<String> = accounts
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| a.spec.organization_ref.name == org)
            .filter(|a| !a.has_condition("Ready", "False", "DuplicateDefaultAccount"))
            .filter(|a| a.spec.default || a.metadata.name.as_deref() == Some(&format!("{org}-default")))
            .filter_map(|a| a.metadata.name)
            .collect();
        assert_eq!(defaults.len(), 1, "{org}: one default account: {defaults:?}");
        let status = orgs.get(org).await.unwrap();
        assert!(
            status.has_condition("Ready", "True", "Ready"),
            "{org}: {:?}",
            status.status
        );
    }
    // The operator ran through it: the same process.
    assert_eq!(operator.pid(), pid);
    assert!(
        operator.log_text().lines().all(|l| !l.contains("watch stopped")),
        "a watch stopped during the restore"
    );
    eprintln!(
        "etcd restore took {restored:?}; {in_snapshot} users in the snapshot, {} Secrets in it, {} issued after it, converged {converged:?} after the API server was back; 0 secrets changed",
        at_restore.len(),
        after.len() - at_restore.len()
    );
}
