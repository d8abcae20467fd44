//! At rest, and across a restart, the operator writes nothing: judged from the API server's
//! own request counters (`apiserver_request_total`), not from what the objects look like.
//! `hack/test.sh` runs this module alone on a cluster, so the counters
//! see no other test's writes.

use crate::support;

use std::{collections::BTreeMap, time::Duration};

use ce_operator::api::{CEUser, Organization, Role, RoleBinding};
use kube::{Api, Client, api::DeleteParams};

use support::{
    ApiRequests, Operator, TIMEOUT, TestNamespace, apiserver_requests, apply, client, install_crds, wait_condition,
    wait_for, wait_ready, wait_until,
};

const TENANT: &str = "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme, owner: {email: ceo@acme.example}, security: {rotationGracePeriod: 1h}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: eu}
spec: {organizationRef: {name: acme}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: jane}
spec: {accountRef: {name: eu}, email: jane@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: john}
spec: {accountRef: {name: eu}, email: john@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: jane-admin}
spec: {userRef: {name: jane}, role: admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {name: acme}
spec: {organizationRef: {name: acme}, elements: [salesforce]}
";

/// The API server's write counters for what the operator writes (the five kinds and their
/// status, Secrets, Events). Deletes are left out: the namespace controller may still be
/// emptying earlier tests' namespaces.
async fn writes(client: &Client) -> BTreeMap<ApiRequests, u64> {
    apiserver_requests(client)
        .await
        .into_iter()
        .filter(|(k, _)| {
            let managed = matches!(
                k.resource.as_str(),
                "organizations" | "accounts" | "ceusers" | "rolebindings" | "elementsafelists" | "secrets" | "events"
            ) && (k.group == "ce.tenancy.io" || k.resource != "rolebindings");
            managed && support::is_write(&k.verb)
        })
        .collect()
}

/// What was written between two samples.
fn written(before: &BTreeMap<ApiRequests, u64>, after: &BTreeMap<ApiRequests, u64>) -> Vec<String> {
    support::between(before, after)
        .into_iter()
        .filter(|(_, d)| *d > 0)
        .map(|(key, d)| format!("{d} x {} {}/{}", key.verb, key.resource, key.subresource))
        .collect()
}

/// The write requests the operator counted (`ce_operator_api_requests_total`).
async fn own_writes(operator: &Operator) -> f64 {
    let metrics = support::Metrics::parse(&support::http_get(&operator.http_addr().await, "/metrics").1);
    ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
        .iter()
        .map(|verb| metrics.sum("ce_operator_api_requests_total", &[("verb", verb)]))
        .sum()
}

/// The API server's counters are cluster-wide: one test's writes would show in the other's
/// window. They take turns.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until whatever was in flight has landed: the operator's reconcile counter stops
/// moving between two samples.
async fn settled(operator: &Operator) {
    operator.come_to_rest(Duration::from_millis(1500), TIMEOUT).await;
}

#[tokio::test]
async fn at_rest_and_across_a_restart_the_operator_writes_nothing() {
    let _alone = ALONE.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "quiet").await;
    let mut operator = Operator::start(&ns.name);
    apply(&ns.name, TENANT);
    let users: Api<CEUser> = ns.api();
    let bindings: Api<RoleBinding> = ns.api();
    let orgs: Api<Organization> = ns.api();
    for user in ["jane", "john", "acme-owner"] {
        wait_ready(&users, user).await;
    }
    // Bind and revoke a role, each revoke right after the bind shows (the operator's own
    // write may not have reached its cache yet), and rotate a secret: the states a converged
    // tenant goes through.
    let has_admin = |users: Api<CEUser>, has: bool| async move {
        // Polled tightly: the point is to act within milliseconds of the write.
        let started = std::time::Instant::now();
        while users
            .get("john")
            .await
            .unwrap()
            .status
            .is_none_or(|s| s.roles.contains(&Role::Admin) != has)
        {
            assert!(started.elapsed() < TIMEOUT, "john never had admin == {has}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "RoleBinding",
        "metadata": {"name": "john-admin"}, "spec": {"userRef": {"name": "john"}, "role": "admin"}
    }))
    .unwrap();
    for _ in 0..10 {
        bindings.create(&Default::default(), &binding).await.unwrap();
        has_admin(users.clone(), true).await;
        bindings.delete("john-admin", &DeleteParams::default()).await.unwrap();
        has_admin(users.clone(), false).await;
    }
    support::kubectl_ok(&[
        "-n",
        &ns.name,
        "annotate",
        "ceuser",
        "jane",
        "ce.tenancy.io/rotate-secret=r1",
    ]);
    wait_for(&users, "jane", "rotated", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.last_rotation_request.as_deref() == Some("r1"))
    })
    .await;
    wait_for(&orgs, "acme", "3 users counted", TIMEOUT, |o| {
        o.status.as_ref().is_some_and(|s| s.users == Some(3))
    })
    .await;
    let accounts: Api<ce_operator::api::Account> = ns.api();
    wait_for(&accounts, "eu", "2 users counted", TIMEOUT, |a| {
        a.status.as_ref().is_some_and(|s| s.users == Some(2))
    })
    .await;
    wait_condition(&orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    wait_ready(&bindings, "jane-admin").await;

    settled(&operator).await;
    // The operator's own count of its requests: one Secret created per user and organization
    // (three users, acme), one for its webhook's serving certificate and one for its issuance
    // key (`model::issuance`).
    assert_eq!(
        operator
            .metric(
                "ce_operator_api_requests_total",
                &[("verb", "POST"), ("resource", "secrets"), ("code", "201")]
            )
            .await,
        6.0
    );

    // A window at rest: the API server sees no write, nor does the operator count one.
    let before = writes(&client).await;
    let own_before = own_writes(&operator).await;
    tokio::time::sleep(Duration::from_secs(10)).await; // a measurement window, not a wait
    let at_rest = written(&before, &writes(&client).await);
    assert!(at_rest.is_empty(), "the operator wrote at rest: {at_rest:?}");
    assert_eq!(
        own_writes(&operator).await,
        own_before,
        "the operator counted writes at rest"
    );

    // Killed and started again: it reconciles every object, and writes nothing. Counted per
    // kind (a total could be made of one object reconciled many times): acme; eu and the
    // generated default account; jane, john and the owner; jane-admin and the owner's
    // binding; the safelist.
    let objects = [
        ("Organization", 1.0),
        ("Account", 2.0),
        ("CEUser", 3.0),
        ("RoleBinding", 2.0),
        ("ElementSafelist", 1.0),
    ];
    let before = writes(&client).await;
    operator.restart();
    wait_until(
        "the restarted operator to reconcile every object of each kind",
        TIMEOUT,
        || async {
            for (kind, count) in objects {
                if operator.reconciles(kind).await < count {
                    return false;
                }
            }
            true
        },
    )
    .await;
    settled(&operator).await;
    let on_restart = written(&before, &writes(&client).await);
    assert!(on_restart.is_empty(), "the restart wrote: {on_restart:?}");
    assert_eq!(operator.metric("ce_operator_status_writes_total", &[]).await, 0.0);
    assert_eq!(
        own_writes(&operator).await,
        0.0,
        "the restarted operator counted writes"
    );
    assert!(
        operator
            .metric(
                "ce_operator_api_requests_total",
                &[("verb", "WATCH"), ("resource", "ceusers")]
            )
            .await
            >= 1.0,
        "the restarted operator's requests are counted (its watches stream the existing objects)"
    );
    drop(ns);
}

/// `--resync-period`: every object is reconciled again without being woken (a safety net
/// against a lost wake), and, the tenant being converged, nothing is written.
#[tokio::test]
async fn a_resync_reconciles_every_object_again_and_writes_nothing() {
    let _alone = ALONE.lock().await;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "resync").await;
    let operator = Operator::start_with(&ns.name, &ns.name, &["--resync-period", "5s"]);
    apply(&ns.name, TENANT);
    let users: Api<CEUser> = ns.api();
    for user in ["jane", "john", "acme-owner"] {
        wait_ready(&users, user).await;
    }
    let accounts: Api<ce_operator::api::Account> = ns.api();
    wait_for(&accounts, "eu", "2 users counted", TIMEOUT, |a| {
        a.status.as_ref().is_some_and(|s| s.users == Some(2))
    })
    .await;
    settled(&operator).await;

    let (before, own_before) = (writes(&client).await, own_writes(&operator).await);
    let reconciled = operator.metric("ce_operator_reconciles_total", &[]).await;
    // As in the test above: the organization, two accounts, three users, two bindings, the safelist.
    let objects = 9.0;
    wait_until("a resync of every object", TIMEOUT, || async {
        operator.metric("ce_operator_reconciles_total", &[]).await >= reconciled + objects
    })
    .await;
    let resynced = written(&before, &writes(&client).await);
    assert!(resynced.is_empty(), "the resync wrote: {resynced:?}");
    assert_eq!(own_writes(&operator).await, own_before, "the operator counted writes");
    drop(ns);
}
