//! The operator as a production process: metrics and health endpoints, leader election with
//! takeover, and graceful shutdown on SIGTERM.

mod support;

use std::time::Duration;

use ce_operator::api::CEUser;
use k8s_openapi::api::coordination::v1::Lease;
use support::{
    Operator, TIMEOUT, TestNamespace, apply, client, http_get, install_crds, leader_and_standby, wait_for, wait_ready,
    wait_until,
};

const TREE: &str = "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme}
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
";

fn user(name: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: {name}}}\nspec: {{accountRef: {{name: eu}}, email: {name}@acme.example}}\n"
    )
}

fn is_leader(addr: &str) -> bool {
    http_get(addr, "/metrics")
        .1
        .lines()
        .any(|l| l == "ce_operator_leader 1")
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "metrics").await;
    let operator = Operator::start(&ns.name);
    let addr = operator.http_addr().await;
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok".to_string()));
    wait_until("/readyz to answer 200", TIMEOUT, || async {
        http_get(&addr, "/readyz").0 == 200
    })
    .await;

    apply(&ns.name, TREE);
    wait_ready(&ns.api::<CEUser>(), "jane").await;
    wait_ready(&ns.api::<ce_operator::api::Organization>(), "acme").await;
    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    for expected in [
        "ce_operator_reconciles_total{controller=\"CEUser\"}",
        "ce_operator_reconcile_duration_seconds_bucket{",
        "ce_operator_objects{kind=\"CEUser\",ready=\"True\",reason=\"Ready\"} 1",
        "ce_operator_objects{kind=\"Organization\",ready=\"True\",reason=\"Ready\"} 1",
        "ce_operator_secrets_issued_total{owner=\"user\"} 1",
        "ce_operator_secrets_issued_total{owner=\"organization\"} 1",
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}:\n{text}");
    }
    assert!(
        is_leader(&addr),
        "a single replica without leader election does not report leading"
    );
    ns.delete().await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies_and_the_lease_is_released_on_sigterm() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "leader").await;
    let (mut first, mut second) = leader_and_standby(&ns.name, "4").await;
    let second_addr = second.http_addr().await;
    // The standby is healthy and ready, but does not lead (and so does not reconcile).
    assert!(http_get(&second_addr, "/readyz").1.contains("standby"));
    assert!(!is_leader(&second_addr));

    apply(&ns.name, TREE);
    wait_ready(&ns.api::<CEUser>(), "jane").await;
    // Judged from the standby's own counters: it reconciled nothing, and it does not lead.
    assert!(first.metric("ce_operator_reconciles_total").await > 0.0);
    assert_eq!(
        second.metric("ce_operator_reconciles_total").await,
        0.0,
        "the standby reconciled"
    );
    assert_eq!(second.metric("ce_operator_leader").await, 0.0);
    let leases: kube::Api<Lease> = ns.api();
    let holder = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    };
    let first_holder = holder(&leases.get("ce-operator").await.unwrap());
    assert!(!first_holder.is_empty(), "the leader holds no lease");

    // The leader dies without releasing the lease: the standby takes over once it expires.
    first.kill();
    let started = std::time::Instant::now();
    wait_until("the standby to take over", Duration::from_secs(30), || async {
        is_leader(&second_addr)
    })
    .await;
    let takeover = started.elapsed();
    assert!(
        takeover < Duration::from_secs(15),
        "takeover took {takeover:?} with a 4 s lease"
    );
    let second_holder = holder(&leases.get("ce-operator").await.unwrap());
    assert!(
        !second_holder.is_empty() && second_holder != first_holder,
        "after the takeover the lease is held by {second_holder:?} (before: {first_holder:?})"
    );
    apply(&ns.name, &user("john"));
    wait_ready(&ns.api::<CEUser>(), "john").await;

    // SIGTERM: in-flight work finishes, the lease is released, the process exits cleanly.
    assert!(second.terminate().await, "the operator did not exit cleanly on SIGTERM");
    wait_for(&leases, "ce-operator", "the lease released", TIMEOUT, |l| {
        holder(l).is_empty()
    })
    .await;
    ns.delete().await;
}

/// Two replicas that both read the Lease as free both try to take it, by a server-side apply
/// without force (what kube-lease-manager does). The API server refuses the second only if the
/// first's field manager owns `holderIdentity`, so each replica must apply as its own manager.
/// Against the real API server, with the managers the operator uses: the second gets 409 and the
/// first keeps the Lease. (With one manager shared by all replicas both applies succeeded and
/// two replicas led at once; a race too narrow to reproduce reliably with two processes.)
#[tokio::test]
async fn of_two_replicas_that_find_the_lease_free_only_the_first_takes_it() {
    use kube::api::{Patch, PatchParams};
    let client = client().await;
    let ns = TestNamespace::new(&client, "lease-race").await;
    let leases: kube::Api<Lease> = ns.api();
    let take = |identity: &str| {
        let leases = leases.clone();
        let params = PatchParams::apply(&ce_operator::runtime::lease_field_manager(identity));
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "spec": {
                "holderIdentity": identity,
                "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()),
                "leaseDurationSeconds": 15,
            },
        });
        async move { leases.patch("ce-operator", &params, &Patch::Apply(lease)).await }
    };
    // A free Lease, as a replica creates it before taking it.
    let free = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("ce-operator".into()),
            ..Default::default()
        },
        spec: Default::default(),
    };
    leases.create(&Default::default(), &free).await.unwrap();
    take("replica-a").await.expect("the first replica takes the free lease");
    match take("replica-b").await {
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        other => panic!("the second replica was not refused: {other:?}"),
    }
    let lease = leases.get("ce-operator").await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("replica-a"));
    ns.delete().await;
}

/// SIGTERM on a namespace with no tenancy objects at all (a fresh install), as leader and
/// as standby: each replica exits cleanly (`terminate` gives up and fails after 30 s, a
/// pod's grace period), and the leader releases its lease.
#[tokio::test]
async fn sigterm_exits_promptly_with_no_objects_as_leader_and_as_standby() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "empty-sigterm").await;
    let (mut leader, mut standby) = leader_and_standby(&ns.name, "15").await;
    for (what, replica) in [("standby", &mut standby), ("leader", &mut leader)] {
        let started = std::time::Instant::now();
        assert!(replica.terminate().await, "the {what} did not exit cleanly on SIGTERM");
        let took = started.elapsed();
        eprintln!("the {what} exited {took:?} after SIGTERM");
    }
    let leases: kube::Api<Lease> = ns.api();
    wait_for(&leases, "ce-operator", "the lease released", TIMEOUT, |l| {
        l.spec
            .as_ref()
            .is_none_or(|s| s.holder_identity.as_deref().unwrap_or("").is_empty())
    })
    .await;
}
