//! The operator as a production process: metrics and health endpoints, leader election with
//! takeover, and graceful shutdown on SIGTERM.

use crate::support;

use std::time::Duration;

use ce_operator::api::{CEUser, HasConditions};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use support::{
    Operator, TIMEOUT, TestNamespace, apply, client, http_get, install_crds, leader_and_standby, lease_holder,
    wait_ready, wait_until,
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
    support::Metrics::parse(&http_get(addr, "/metrics").1).sum("ce_operator_leader", &[]) == 1.0
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
    let expected = [
        "ce_operator_reconciles_total{controller=\"CEUser\"}",
        "ce_operator_reconcile_duration_seconds_bucket{",
        "ce_operator_objects{kind=\"CEUser\",ready=\"True\",reason=\"Ready\"} 1",
        "ce_operator_objects{kind=\"Organization\",ready=\"True\",reason=\"Ready\"} 1",
        "ce_operator_secrets_issued_total{owner=\"user\"} 1",
        "ce_operator_secrets_issued_total{owner=\"organization\"} 1",
    ];
    // The objects gauge counts the operator's own caches, which see the Ready status a
    // moment after the API server holds it: wait for it rather than read it once.
    wait_until("/metrics to count the tree as ready", TIMEOUT, || async {
        let (code, text) = http_get(&addr, "/metrics");
        code == 200 && expected.iter().all(|e| text.contains(e))
    })
    .await;
    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    for expected in expected {
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
    assert!(first.metric("ce_operator_reconciles_total", &[]).await > 0.0);
    assert_eq!(
        second.metric("ce_operator_reconciles_total", &[]).await,
        0.0,
        "the standby reconciled"
    );
    assert_eq!(second.metric("ce_operator_leader", &[]).await, 0.0);
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
    stop_leader(&client, &ns.name, "new leader", &mut second).await;
    assert_eq!(lease_holder(&client, &ns.name, LEASE).await, "", "the lease released");
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

/// How soon a replica must exit after SIGTERM (the bound), measured from the signal.
const EXIT: Duration = Duration::from_secs(2);

/// The Lease the replicas of `leader_and_standby` elect on.
const LEASE: &str = "ce-operator";

/// SIGTERMs `replica`: it must exit cleanly within `EXIT`.
async fn stop(what: &str, replica: &mut Operator) -> Duration {
    let took = replica
        .terminate(EXIT)
        .await
        .unwrap_or_else(|e| panic!("the {what}: {e}"));
    eprintln!("the {what} exited {took:?} after SIGTERM");
    took
}

/// SIGTERMs the leader: it exits within `EXIT` and, by the time it has, the API server no
/// longer shows it holding the Lease (released: free, or already taken by a standby).
async fn stop_leader(client: &kube::Client, ns: &str, what: &str, leader: &mut Operator) {
    let identity = leader.lease_identity().await;
    assert_eq!(
        lease_holder(client, ns, LEASE).await,
        identity,
        "the {what} does not hold the lease before SIGTERM"
    );
    stop(what, leader).await;
    let holder = lease_holder(client, ns, LEASE).await;
    assert_ne!(holder, identity, "the {what} exited without releasing the lease");
    eprintln!("the lease after the {what} exited: {holder:?}");
}

/// SIGTERMs the standby: it exits within `EXIT` and leaves the leader's Lease alone.
async fn stop_standby(client: &kube::Client, ns: &str, standby: &mut Operator, leader: &Operator) {
    let identity = leader.lease_identity().await;
    stop("standby", standby).await;
    assert_eq!(
        lease_holder(client, ns, LEASE).await,
        identity,
        "the standby's exit changed the leader's lease"
    );
}

/// How long a standby may take to hold a lease its leader released: it watches the Lease and
/// takes it once free, well within this (a third of the tests' 15 s lease, so that a standby
/// that waited for the lease to expire instead fails).
const TAKEOVER: Duration = Duration::from_secs(5);

/// Waits until `standby` holds the lease its leader just released, within `TAKEOVER`.
async fn standby_takes_the_released_lease(client: &kube::Client, ns: &str, standby: &Operator) {
    let identity = standby.lease_identity().await;
    let released = std::time::Instant::now();
    wait_until("the standby to take the released lease", TAKEOVER, || async {
        lease_holder(client, ns, LEASE).await == identity
    })
    .await;
    eprintln!(
        "the standby took the lease {:?} after the leader exited",
        released.elapsed()
    );
}

/// Waits until a replica without leader election runs its controllers (SIGTERM must stop
/// them, not an operator still starting).
async fn wait_controllers(operator: &Operator) {
    wait_until("the controllers to start", TIMEOUT, || async {
        operator.log_text().contains("starting controllers")
    })
    .await;
}

/// SIGTERM in a namespace with no tenancy objects at all (a fresh install): without leader
/// election, as standby and as leader (no standby left), each replica exits cleanly within 2 s
/// of the signal, and the leader's lease is free when it has.
#[tokio::test]
async fn sigterm_with_no_tenancy_objects_exits_within_2_s_and_releases_the_lease() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "empty-sigterm").await;
    let mut single = Operator::start(&ns.name);
    wait_controllers(&single).await;
    stop("replica without leader election", &mut single).await;

    let (mut leader, mut standby) = leader_and_standby(&ns.name, "15").await;
    stop_standby(&client, &ns.name, &mut standby, &leader).await;
    stop_leader(&client, &ns.name, "leader", &mut leader).await;
    assert_eq!(
        lease_holder(&client, &ns.name, LEASE).await,
        "",
        "no standby left: the lease is free"
    );
}

/// SIGTERM where only some kinds have objects (an Organization, and the default account and
/// Secret the operator generates for it; no users, bindings or safelists): without leader
/// election, and a leader handing over to its standby, which then stops too.
#[tokio::test]
async fn sigterm_with_only_some_kinds_present_exits_within_2_s_and_releases_the_lease() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "some-kinds-sigterm").await;
    let org = TREE.split("---").next().unwrap();
    let mut single = Operator::start(&ns.name);
    apply(&ns.name, org);
    wait_ready(&ns.api::<ce_operator::api::Organization>(), "acme").await;
    stop("replica without leader election", &mut single).await;

    let (mut leader, mut standby) = leader_and_standby(&ns.name, "15").await;
    stop_leader(&client, &ns.name, "leader", &mut leader).await;
    standby_takes_the_released_lease(&client, &ns.name, &standby).await;
    wait_until("the new leader to report leading", TIMEOUT, || async {
        standby.metric("ce_operator_leader", &[]).await == 1.0
    })
    .await;
    stop_leader(&client, &ns.name, "new leader", &mut standby).await;
    assert_eq!(
        lease_holder(&client, &ns.name, LEASE).await,
        "",
        "no standby left: the lease is free"
    );
}

/// Users u0, u1, … of account eu (of `TREE`).
fn users(n: usize) -> String {
    (0..n).map(|u| format!("---\n{}", user(&format!("u{u}")))).collect()
}

/// Users of the load SIGTERM comes during.
const LOAD: usize = 150;

/// SIGTERM during a bulk create (kubectl creating `LOAD` users one after another while the
/// operator issues their Secrets): without leader election, and a leader with a standby, which
/// takes the released lease and converges the rest.
#[tokio::test]
async fn sigterm_mid_load_exits_within_2_s_and_releases_the_lease() {
    let client = client().await;
    install_crds(&client).await;
    let user_secrets = |ns: &TestNamespace| {
        let api = ns.api::<k8s_openapi::api::core::v1::Secret>();
        async move {
            api.list(&Default::default()).await.map_or(0, |l| {
                l.items
                    .iter()
                    .filter(|s| s.name_any().ends_with("-user-secret"))
                    .count()
            })
        }
    };
    let manifest = format!("{TREE}{}", users(LOAD));
    for election in [false, true] {
        let ns = TestNamespace::new(&client, "load-sigterm").await;
        let (mut first, second) = if election {
            let (leader, standby) = leader_and_standby(&ns.name, "15").await;
            (leader, Some(standby))
        } else {
            (Operator::start(&ns.name), None)
        };
        let applying = {
            let (name, manifest) = (ns.name.clone(), manifest.clone());
            std::thread::spawn(move || apply(&name, &manifest))
        };
        wait_until("a tenth of the user Secrets issued", TIMEOUT, || async {
            user_secrets(&ns).await >= LOAD / 10
        })
        .await;
        let issued = user_secrets(&ns).await;
        // Mid-load: kubectl still creating users, or Secrets left to issue, at the signal.
        assert!(
            !applying.is_finished() || issued < LOAD,
            "SIGTERM came after the load: nothing was in flight"
        );
        match &second {
            None => {
                stop("replica without leader election mid-load", &mut first).await;
            }
            Some(standby) => {
                stop_leader(&client, &ns.name, "leader mid-load", &mut first).await;
                standby_takes_the_released_lease(&client, &ns.name, standby).await;
            }
        }
        eprintln!("({issued} of {LOAD} user Secrets issued at SIGTERM)");
        applying.join().unwrap();
        if let Some(mut standby) = second {
            // The standby finishes what the leader left.
            let api = ns.api::<CEUser>();
            wait_until(&format!("{LOAD} users Ready"), TIMEOUT * 2, || async {
                api.list(&Default::default()).await.is_ok_and(|l| {
                    l.items.len() == LOAD + 1
                        && l.items
                            .iter()
                            .all(|u| u.condition("Ready").is_some_and(|c| c.status == "True"))
                })
            })
            .await;
            stop_leader(&client, &ns.name, "new leader", &mut standby).await;
        }
    }
}
