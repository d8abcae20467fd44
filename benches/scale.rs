//! Scale benchmark of ce-operator against the real API server (`make bench`).
//!
//! Starts the release operator as a separate process on a fresh namespace, creates the load,
//! and measures convergence, quiet at rest and across a restart (from the API server's own request metrics),
//! memory (from /proc), change latency, API requests per object and the cost of the admission
//! webhook (the same server-side dry-runs without and with it). Prints a table and writes the
//! figures as JSON under target/bench/, with what the operator wrote for the load.
//!
//! With `--floor WRITTEN` it measures the honest floor instead (`floor_main`): the same
//! creates and the writes the operator must make, by a bare client, on a cluster of its own.
//! hack/bench.sh runs both, each on a fresh cluster, in alternating order over runs.
//!
//!   cargo bench --bench scale -- [--quick] [--orgs N] [--accounts N] [--users N] [--bindings N] [--rest-secs N] [--samples N] [--admission-requests N] [--admission-rate N] [--floor WRITTEN]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

#[path = "common/mod.rs"]
mod common;

use ce_operator::api::{
    Account, AccountSpec, CEUser, CEUserSpec, HasConditions, LocalRef, Organization, Role, RoleBinding, RoleBindingSpec,
};
use common::{
    CLIENT_CONCURRENCY, Metrics, Operator, admin_binding, apiserver_metrics, arg, between, client, cluster_pid,
    cpu_seconds, create_all, free_port, grant_or_revoke, install_crds, is_write, kubeconfig, meta, percentile, root,
};
use futures::{StreamExt, stream};
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
struct Scale {
    orgs: usize,
    accounts: usize,
    users: usize,
    bindings: usize,
    rest_secs: u64,
    samples: usize,
    admission_requests: usize,
    admission_rate: f64,
    /// Leave the load in place at the end, for profiling the operator on a converged state.
    keep: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    scale: Option<Scale>,
    objects: usize,
    convergence_secs: f64,
    /// When the load's last create returned: convergence minus this is the operator's tail.
    load_created_secs: f64,
    /// What the operator wrote (statuses, Secrets' metadata), for the honest floor (`--floor`).
    written: String,
    writes_at_rest: u64,
    rest_window_secs: u64,
    restart_ready_secs: f64,
    restart_confirmed_secs: f64,
    writes_on_restart: u64,
    peak_rss_mib: f64,
    steady_rss_mib: f64,
    bytes_per_object: f64,
    latency_p50_ms: f64,
    latency_p95_ms: f64,
    latency_p99_ms: f64,
    latency_samples: usize,
    /// A CEUser reconcile's p99 while converging (with its writes), and on restart (nothing
    /// to write: resolve from the caches, decide, compare): the second shows whether a
    /// reconcile's cost grows with the store.
    reconcile_p99_ms: Quantile,
    restart_reconcile_p50_ms: Quantile,
    restart_reconcile_p99_ms: Quantile,
    /// The operator's requests (its own count), and every client's but the load's (the API
    /// server's count: the garbage collector's GETs of new Secrets' owners among them).
    requests_per_object: f64,
    all_requests_per_object: f64,
    /// CPU seconds each process used while converging: on two shared cores, the operator's
    /// own CPU and whatever extra the API server does for it are what the floor does not pay.
    cpu_converging: CpuSeconds,
    /// CPU seconds from the restart to ready (the initial lists): where the restart's time goes.
    cpu_restart: CpuSeconds,
    /// The API server's cache consistency checks of ceusers, secrets and events in each phase
    /// (converging, restart, change latency): each re-reads every object of its resource from
    /// etcd, a background cost of the API server (on by default since 1.34) that lands at
    /// random.
    cache_checks: [u64; 3],
    per_verb: Vec<VerbRow>,
    /// The API server's etcd requests for the load's resources while converging: (resource,
    /// operation, count).
    etcd_requests: Vec<(String, String, u64)>,
    admission: Admission,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
struct CpuSeconds {
    operator: f64,
    apiserver: f64,
    etcd: f64,
    /// The garbage collector among its controllers: it follows every Secret's owner.
    controller_manager: f64,
    load_client: f64,
}

impl CpuSeconds {
    fn now(operator: Option<u32>) -> Self {
        let of = |pid: Option<u32>| pid.map_or(0.0, cpu_seconds);
        Self {
            operator: of(operator),
            apiserver: of(cluster_pid("kube-apiserver")),
            etcd: of(cluster_pid("etcd")),
            controller_manager: of(cluster_pid("kube-controller-manager")),
            load_client: of(Some(std::process::id())),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            operator: self.operator - before.operator,
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
            controller_manager: self.controller_manager - before.controller_manager,
            load_client: self.load_client - before.load_client,
        }
    }
}

/// The status the operator wrote on each object of a kind, by name.
async fn written_statuses<K>(api: &Api<K>) -> BTreeMap<String, serde_json::Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Serialize,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let status = serde_json::to_value(&o).unwrap()["status"].take();
            (o.name_any(), status)
        })
        .collect()
}

/// A quantile of the CEUser controller's reconcile duration since `operator` started, in
/// milliseconds.
fn user_reconcile_ms(operator: &Operator, q: f64) -> Quantile {
    let buckets = operator
        .metrics()
        .buckets("ce_operator_reconcile_duration_seconds", &[("controller", "CEUser")]);
    histogram_quantile_ms(&[], &buckets, q)
}

/// Server-side dry-run RoleBindings (half `admin`, allowed; half `org-admin`, mostly denied),
/// sent as fast as they are taken without and then with the webhook covering the namespace,
/// then at a fixed rate with it.
#[derive(Debug, Default, Serialize)]
struct Admission {
    requests: usize,
    denied: usize,
    without_p50_ms: f64,
    without_p99_ms: f64,
    with_p50_ms: f64,
    with_p99_ms: f64,
    with_per_sec: f64,
    /// The fixed rate (per second) of the paced dry-runs, and their client-side latency.
    rate: f64,
    paced_requests: usize,
    paced_p50_ms: f64,
    paced_p99_ms: f64,
    /// During the paced dry-runs: the API server's own
    /// `apiserver_admission_webhook_admission_duration_seconds`.
    apiserver_p50_ms: Quantile,
    apiserver_p99_ms: Quantile,
    /// During the paced dry-runs: the operator's `ce_operator_admission_duration_seconds`.
    operator_p50_ms: Quantile,
    operator_p99_ms: Quantile,
    /// The same paced dry-runs by a tenant's own identity (an admin of org0's default
    /// account), so that every review also judges who acts (`model::actor`): client and
    /// operator p50 / p99, and how many the actor rule refused.
    tenant_denied: usize,
    tenant_p50_ms: f64,
    tenant_p99_ms: f64,
    tenant_operator_p50_ms: Quantile,
    tenant_operator_p99_ms: Quantile,
}

/// The API server's request counters: (verb, resource or resource/subresource) -> count.
async fn apiserver_requests(client: &Client) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for (key, n) in common::apiserver_requests(client).await {
        let resource = match key.subresource.as_str() {
            "" => key.resource,
            sub => format!("{}/{sub}", key.resource),
        };
        *counts.entry((key.verb, resource)).or_insert(0) += n;
    }
    counts
}

/// How many cache consistency checks of the resources holding the load (ceusers, secrets,
/// events) the API server has run (`apiserver_storage_consistency_checks_total`), from its
/// metrics text.
fn cache_checks(metrics: &str) -> u64 {
    let metrics = Metrics::parse(metrics);
    ["ceusers", "secrets", "events"]
        .iter()
        .map(|resource| metrics.sum("apiserver_storage_consistency_checks_total", &[("resource", resource)]) as u64)
        .sum()
}

/// The API server's requests to etcd for the load's resources (`etcd_requests_total`), from
/// its metrics text: (resource, operation) -> count. Where converging and the floor make the
/// same API requests, a difference here is the API server's own extra work (an update retried
/// on a stale cached object, a consistent read).
fn etcd_requests(metrics: &str) -> BTreeMap<(String, String), u64> {
    const LOAD: [&str; 6] = [
        "organizations",
        "accounts",
        "ceusers",
        "rolebindings",
        "secrets",
        "events",
    ];
    pairs(Metrics::parse(metrics).sum_by("etcd_requests_total", &["resource", "operation"]))
        .into_iter()
        .filter(|((resource, _), _)| LOAD.contains(&resource.as_str()))
        .collect()
}

/// The operator's own count of its requests (`ce_operator_api_requests_total`), by verb and
/// resource.
fn operator_requests(operator: &Operator) -> BTreeMap<(String, String), u64> {
    pairs(
        operator
            .metrics()
            .sum_by("ce_operator_api_requests_total", &["verb", "resource"]),
    )
}

/// Counts by two labels, as `sum_by` gives them, keyed by the pair.
fn pairs(sums: BTreeMap<Vec<String>, f64>) -> BTreeMap<(String, String), u64> {
    sums.into_iter()
        .map(|(labels, n)| {
            let [a, b] = <[String; 2]>::try_from(labels).expect("two labels");
            ((a, b), n as u64)
        })
        .collect()
}

/// The operator's requests during convergence by verb and resource (its own count), against
/// what converging needs: one Secret and one activity event per organization and user, one
/// status write per object, the finalizer of each organization and account, and each
/// binding's pin to its user.
fn per_verb(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
    scale: &Scale,
) -> Vec<VerbRow> {
    const KINDS: [&str; 4] = ["organizations", "accounts", "ceusers", "rolebindings"];
    let (orgs, accounts, users) = (scale.orgs, scale.orgs * scale.accounts, scale.orgs * scale.users);
    let bindings = scale.orgs * scale.bindings.min(scale.users);
    let created = [orgs, accounts, users, bindings].map(|n| n as u64);
    let mut rows = Vec::new();
    for ((verb, resource), delta) in between(before, after) {
        let necessary = match (verb.as_str(), resource.as_str()) {
            ("POST", "secrets" | "events") => Some((orgs + users) as u64),
            ("PATCH", "organizations") => Some(orgs as u64),
            ("PATCH", "accounts") => Some(accounts as u64),
            ("PATCH", "rolebindings") => Some(bindings as u64),
            ("APPLY" | "PATCH", r) if r.ends_with("/status") => KINDS
                .iter()
                .position(|k| r == format!("{k}/status"))
                .map(|i| created[i]),
            _ => None,
        };
        if delta > 0 {
            rows.push(VerbRow {
                verb,
                resource,
                requests: delta,
                necessary,
            });
        }
    }
    rows
}

#[derive(Debug, Serialize)]
struct VerbRow {
    verb: String,
    resource: String,
    requests: u64,
    necessary: Option<u64>,
}

/// Writes to what the operator manages (the five kinds, Secrets, Events) between two
/// samples; the ones found are printed by verb and resource.
fn operator_writes(
    what: &str,
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
) -> u64 {
    const RESOURCES: [&str; 7] = [
        "organizations",
        "accounts",
        "ceusers",
        "rolebindings",
        "elementsafelists",
        "secrets",
        "events",
    ];
    let mut sum = 0;
    for ((verb, resource), delta) in between(before, after) {
        let kind = resource.split('/').next().unwrap_or_default();
        if delta > 0 && is_write(&verb) && RESOURCES.contains(&kind) {
            eprintln!("bench: {what}: {delta} x {verb} {resource}");
            sum += delta;
        }
    }
    sum
}

fn total(counts: &BTreeMap<(String, String), u64>) -> u64 {
    counts.values().sum()
}

/// The load: organizations, each with `accounts` accounts (the first one its default), users
/// spread over them, and admin bindings on the first users.
fn load(scale: &Scale) -> (Vec<Organization>, Vec<Account>, Vec<CEUser>, Vec<RoleBinding>) {
    let mut orgs = Vec::new();
    let mut accounts = Vec::new();
    let mut users = Vec::new();
    let mut bindings = Vec::new();
    for o in 0..scale.orgs {
        let org = format!("org{o}");
        let mut spec: ce_operator::api::OrganizationSpec =
            serde_json::from_value(serde_json::json!({"displayName": org})).unwrap();
        spec.default_account_name = Some(format!("{org}-a0"));
        orgs.push(Organization::new(&org, spec));
        for a in 0..scale.accounts {
            accounts.push(Account::new(
                &format!("{org}-a{a}"),
                AccountSpec {
                    organization_ref: LocalRef::new(&org),
                    display_name: None,
                    default: a == 0,
                    allow_cascading_deletion: false,
                },
            ));
        }
        for u in 0..scale.users {
            let account = format!("{org}-a{}", u % scale.accounts.max(1));
            let name = format!("{org}-u{u}");
            users.push(CEUser::new(
                &name,
                CEUserSpec {
                    account_ref: LocalRef::new(account),
                    email: format!("{name}@bench.example"),
                    display_name: None,
                },
            ));
            if u < scale.bindings {
                bindings.push(RoleBinding::new(
                    &format!("{name}-admin"),
                    RoleBindingSpec {
                        user_ref: LocalRef::new(&name),
                        role: Role::Admin,
                        override_system_role: false,
                    },
                ));
            }
        }
    }
    (orgs, accounts, users, bindings)
}

/// How many objects of `api` are Ready and `settled`.
async fn count_ready<K>(api: &Api<K>, settled: impl Fn(&K) -> bool) -> usize
where
    K: Resource + HasConditions + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|o| o.condition("Ready").is_some_and(|c| c.status == "True"))
                .filter(|o| settled(o))
                .count()
        })
        .unwrap_or(0)
}

/// Whether an account counts every one of its `users`: its count follows its users'
/// creation, and may still be catching up once the account is Ready.
fn counts_its_users(users: &[CEUser]) -> impl Fn(&Account) -> bool {
    let mut expected: BTreeMap<String, i32> = BTreeMap::new();
    for u in users {
        *expected.entry(u.spec.account_ref.name.clone()).or_default() += 1;
    }
    move |a| {
        let counted = a.status.as_ref().and_then(|s| s.users).unwrap_or(0);
        counted == expected.get(&a.name_any()).copied().unwrap_or(0)
    }
}

/// Starts the release operator on `namespace` with its webhook on `webhook`.
fn start_operator(kubeconfig: &Path, namespace: &str, webhook: &Webhook, log: PathBuf) -> Operator {
    let args: Vec<String> = [
        "--webhook-addr",
        &webhook.addr,
        "--webhook-dns-name",
        "127.0.0.1",
        "--webhook-secret",
        "ce-bench-webhook",
        "--webhook-secret-namespace",
        namespace,
        "--webhook-config-name",
        &webhook.config,
        "--authz-addr",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec();
    Operator::start(kubeconfig, namespace, &args, log)
}

/// The admission webhook of the benchmark's operator: its address, and a configuration (the
/// chart's, redirected by hack/local-webhook.py) that covers the namespaces labelled
/// `ce.tenancy.io/webhook=<config>` — none until the admission phase labels the namespace, so
/// that convergence is measured as before.
struct Webhook {
    addr: String,
    config: String,
}

impl Webhook {
    fn install(kubeconfig: &Path, config: &str) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let script = format!(
            "{bin}/helm template ce charts/ce-operator --namespace ce-system --show-only templates/webhook.yaml \
             | python3 hack/local-webhook.py {config} https://{addr}/validate ce-operator {config} \
             | {bin}/kubectl --kubeconfig {kubeconfig} apply --server-side --field-manager=ce-bench -f -",
            bin = root().join(".local/bin").display(),
            kubeconfig = kubeconfig.display(),
        );
        let status = Command::new("bash")
            .args(["-c", &script])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "installing the webhook configuration failed");
        Self {
            addr,
            config: config.to_owned(),
        }
    }
}

/// A quantile read from a histogram. Inside the first bucket (or past the last) there is
/// nothing to interpolate from, so it is reported as a bound, not as a figure; an empty
/// histogram reports none.
#[derive(Clone, Copy, Debug, Default, Serialize)]
enum Quantile {
    #[default]
    NoData,
    AtMost(f64),
    Above(f64),
    Ms(f64),
}

impl std::fmt::Display for Quantile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantile::NoData => f.write_str("no data"),
            Quantile::AtMost(ms) => write!(f, "≤ {ms:.2}"),
            Quantile::Above(ms) => write!(f, "> {ms:.2}"),
            Quantile::Ms(ms) => write!(f, "{ms:.2}"),
        }
    }
}

/// The `q` quantile (0..1) of the observations between two histogram samples, interpolated
/// within the bucket as Prometheus' histogram_quantile does; in milliseconds.
fn histogram_quantile_ms(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Quantile {
    let bounds: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, n)| {
            let earlier = before.iter().find(|(b, _)| *b == bound).map_or(0.0, |&(_, n)| n);
            (bound, n - earlier)
        })
        .collect();
    let total = bounds.last().map_or(0.0, |&(_, total)| total);
    if total <= 0.0 {
        return Quantile::NoData;
    }
    let rank = q * total;
    let mut lower: Option<(f64, f64)> = None;
    for (bound, count) in bounds {
        if count >= rank {
            return match lower {
                None => Quantile::AtMost(bound * 1000.0),
                Some((below, _)) if bound.is_infinite() => Quantile::Above(below * 1000.0),
                Some((below, below_count)) => {
                    let width = count - below_count;
                    let within = if width > 0.0 { (rank - below_count) / width } else { 1.0 };
                    Quantile::Ms((below + (bound - below) * within) * 1000.0)
                }
            };
        }
        lower = Some((bound, count));
    }
    Quantile::NoData
}

/// One server-side dry-run: its latency (ms) and whether it was denied.
async fn dry_run(api: &Api<RoleBinding>, binding: &RoleBinding) -> (f64, bool) {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let t = Instant::now();
    let denied = match api.create(&params, binding).await {
        Ok(_) => false,
        Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => true,
        Err(e) => panic!("dry-run {}: {e}", binding.name_any()),
    };
    (t.elapsed().as_secs_f64() * 1000.0, denied)
}

fn sorted_latencies(results: Vec<(f64, bool)>) -> (Vec<f64>, usize) {
    let denied = results.iter().filter(|r| r.1).count();
    let mut latencies: Vec<f64> = results.into_iter().map(|r| r.0).collect();
    latencies.sort_by(f64::total_cmp);
    (latencies, denied)
}

/// Sends `bindings` as dry-runs at the client concurrency (as fast as the API server
/// takes them): sorted latencies (ms), how many were denied, and the wall time.
async fn dry_runs(api: &Api<RoleBinding>, bindings: &[RoleBinding]) -> (Vec<f64>, usize, Duration) {
    let started = Instant::now();
    let results: Vec<(f64, bool)> = stream::iter(bindings.iter().map(|b| dry_run(api, b)))
        .buffer_unordered(CLIENT_CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let (latencies, denied) = sorted_latencies(results);
    (latencies, denied, elapsed)
}

/// Sends `bindings` as dry-runs at a fixed `rate` per second (open loop: a request does not
/// wait for the one before): sorted latencies (ms).
async fn dry_runs_at(api: &Api<RoleBinding>, bindings: &[RoleBinding], rate: f64) -> Vec<f64> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut sent = tokio::task::JoinSet::new();
    for binding in bindings {
        tick.tick().await;
        let (api, binding) = (api.clone(), binding.clone());
        sent.spawn(async move { dry_run(&api, &binding).await });
    }
    sorted_latencies(sent.join_all().await).0
}

/// The admission phase: the same dry-runs without the webhook, then with it.
async fn admission(
    client: &Client,
    kubeconfig: &Path,
    operator: &Operator,
    webhook: &Webhook,
    ns: &str,
    users: &[CEUser],
    scale: &Scale,
) -> Admission {
    let (n, rate) = (scale.admission_requests, scale.admission_rate);
    let bindings: Vec<RoleBinding> = (0..n)
        .map(|i| {
            let user = users[i % users.len()].name_any();
            let role = if i % 2 == 0 { Role::Admin } else { Role::OrgAdmin };
            RoleBinding::new(
                &format!("{user}-dry-{i}"),
                RoleBindingSpec {
                    user_ref: LocalRef::new(&user),
                    role,
                    override_system_role: false,
                },
            )
        })
        .collect();
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let (without, _, _) = dry_runs(&api, &bindings).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = serde_json::json!({"metadata": {"labels": {"ce.tenancy.io/webhook": webhook.config}}});
    namespaces
        .patch(ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    // Covered once an org-admin outside the default account is refused at once.
    let probe = bindings.iter().find(|b| b.spec.role == Role::OrgAdmin).unwrap();
    let waited = Instant::now();
    while dry_runs(&api, std::slice::from_ref(probe)).await.1 == 0 {
        assert!(waited.elapsed() < Duration::from_secs(60), "the webhook never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = || async {
        let apiserver = apiserver_metrics(client).await;
        (
            Metrics::parse(&apiserver).buckets(
                "apiserver_admission_webhook_admission_duration_seconds",
                &[("name", "validate.ce.tenancy.io")],
            ),
            operator
                .metrics()
                .buckets("ce_operator_admission_duration_seconds", &[]),
        )
    };
    let (with, denied, elapsed) = dry_runs(&api, &bindings).await;
    // At a fixed rate: the webhook's latency as the API server and the operator see it.
    let paced = &bindings[..bindings.len().min((rate * 10.0) as usize)];
    let (apiserver_before, operator_before) = metrics().await;
    let paced_latencies = dry_runs_at(&api, paced, rate).await;
    let (apiserver_after, operator_after) = metrics().await;
    // The same, by a tenant acting itself: RBAC lets its group write bindings here; the
    // webhook then judges whether its CE roles do.
    let group = "ce-bench-tenants";
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {group}, namespace: {ns}}}\nrules: [{{apiGroups: [ce.tenancy.io], resources: [rolebindings], verbs: [create]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {group}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {group}}}\nsubjects: [{{kind: Group, name: {group}, apiGroup: rbac.authorization.k8s.io}}]\n"
    );
    common::kubectl_apply(kubeconfig, &rbac);
    let tenant = common::client_as(kubeconfig, &format!("{}@bench.example", users[0].name_any()), &[group]).await;
    let tenant_api: Api<RoleBinding> = Api::namespaced(tenant, ns);
    let tenant_latencies = dry_runs_at(&tenant_api, paced, rate).await;
    let (_, operator_tenant) = metrics().await;
    let (_, tenant_denied, _) = dry_runs(&tenant_api, paced).await;
    let unlabel = serde_json::json!({"metadata": {"labels": {"ce.tenancy.io/webhook": null}}});
    namespaces
        .patch(ns, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    Admission {
        requests: n,
        denied,
        without_p50_ms: percentile(&without, 50.0),
        without_p99_ms: percentile(&without, 99.0),
        with_p50_ms: percentile(&with, 50.0),
        with_p99_ms: percentile(&with, 99.0),
        with_per_sec: n as f64 / elapsed.as_secs_f64(),
        rate,
        paced_requests: paced.len(),
        paced_p50_ms: percentile(&paced_latencies, 50.0),
        paced_p99_ms: percentile(&paced_latencies, 99.0),
        apiserver_p50_ms: histogram_quantile_ms(&apiserver_before, &apiserver_after, 0.5),
        apiserver_p99_ms: histogram_quantile_ms(&apiserver_before, &apiserver_after, 0.99),
        operator_p50_ms: histogram_quantile_ms(&operator_before, &operator_after, 0.5),
        operator_p99_ms: histogram_quantile_ms(&operator_before, &operator_after, 0.99),
        tenant_denied,
        tenant_p50_ms: percentile(&tenant_latencies, 50.0),
        tenant_p99_ms: percentile(&tenant_latencies, 99.0),
        tenant_operator_p50_ms: histogram_quantile_ms(&operator_after, &operator_tenant, 0.5),
        tenant_operator_p99_ms: histogram_quantile_ms(&operator_after, &operator_tenant, 0.99),
    }
}

/// The cluster's kubeconfig and client, a stamp naming this run's files, and a fresh
/// namespace `{prefix}-{stamp}`, with the CRDs installed.
async fn start(prefix: &str) -> (PathBuf, Client, u64, String) {
    let kubeconfig = kubeconfig();
    let client = client(&kubeconfig).await;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ns = format!("{prefix}-{stamp}");
    let namespace = Namespace {
        metadata: meta(&ns),
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    install_crds(&kubeconfig);
    (kubeconfig, client, stamp, ns)
}

/// What the operator wrote for the load, which the honest floor writes too: each object's
/// converged status (a status's cost to the API server grows with its size: a user's roles,
/// privileges and scopes), and its Secrets' labels and annotations.
#[derive(Default, Serialize, serde::Deserialize)]
struct Written {
    /// By "Kind/name".
    statuses: BTreeMap<String, serde_json::Value>,
    /// By Secret name.
    secrets: BTreeMap<String, SecretMeta>,
}

#[derive(Clone, Default, Serialize, serde::Deserialize)]
struct SecretMeta {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Written {
    async fn read(client: &Client, ns: &str) -> Self {
        let mut statuses = BTreeMap::new();
        for (kind, by_name) in [
            (
                "Organization",
                written_statuses(&Api::<Organization>::namespaced(client.clone(), ns)).await,
            ),
            (
                "Account",
                written_statuses(&Api::<Account>::namespaced(client.clone(), ns)).await,
            ),
            (
                "CEUser",
                written_statuses(&Api::<CEUser>::namespaced(client.clone(), ns)).await,
            ),
            (
                "RoleBinding",
                written_statuses(&Api::<RoleBinding>::namespaced(client.clone(), ns)).await,
            ),
        ] {
            statuses.extend(
                by_name
                    .into_iter()
                    .map(|(name, status)| (format!("{kind}/{name}"), status)),
            );
        }
        let secrets = Api::<Secret>::namespaced(client.clone(), ns)
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|s| {
                let m = s.metadata;
                let meta = SecretMeta {
                    labels: m.labels.unwrap_or_default(),
                    annotations: m.annotations.unwrap_or_default(),
                };
                (m.name.unwrap_or_default(), meta)
            })
            .collect();
        Self { statuses, secrets }
    }
}

/// The floor's figures (`--floor`), for hack/bench.sh to set against a converging run's.
#[derive(Debug, Default, Serialize)]
struct FloorReport {
    scale: Option<Scale>,
    objects: usize,
    floor_secs: f64,
    cpu_floor: CpuSeconds,
    cache_checks: u64,
    /// The API server's etcd requests for the load's resources: (resource, operation, count).
    etcd_requests: Vec<(String, String, u64)>,
    /// The floor's requests by verb and resource (the API server's count).
    requests: Vec<(String, String, u64)>,
}

/// How many requests the operator has in flight at most while converging: its five
/// controllers, `--concurrency` (8) reconciles each, one request at a time per reconcile.
const OPERATOR_CONCURRENCY: usize = 5 * 8;

/// `--floor WRITTEN`: the honest floor alone, on this (fresh) cluster with no operator: what
/// the converging system must do at the least, done by a bare client with the same crate.
/// The load's creates, 32 in flight as in the converging run; and, as soon as each object
/// exists, the writes the operator must make for it, up to 40 in flight as the operator's
/// reconciles: its finalizer (organizations, accounts), its pin to its user (bindings), its
/// Secret and the activity event of the issued secret (organizations, users), and its
/// converged status, as the operator wrote them (WRITTEN, saved by a converging run of the
/// same scale). Nothing is listed inside the clock: the owners' uids come from the creates.
async fn floor_main(scale: &Scale, written: &Path) {
    let written: Written = serde_json::from_slice(&std::fs::read(written).expect("WRITTEN")).unwrap();
    let (_, client, stamp, ns) = start("bench-floor").await;
    let (orgs, accounts, users, bindings) = load(scale);
    let objects = orgs.len() + accounts.len() + users.len() + bindings.len();
    assert_eq!(
        written.statuses.len(),
        objects,
        "WRITTEN was saved by a run of another scale"
    );
    eprintln!("bench: floor of {objects} objects in namespace {ns}");
    let written = std::sync::Arc::new(written);
    let requests_before = apiserver_requests(&client).await;
    let cpu_before = CpuSeconds::now(None);
    let metrics = apiserver_metrics(&client).await;
    let (checks_before, etcd_before) = (cache_checks(&metrics), etcd_requests(&metrics));
    let started = Instant::now();
    let (writes, queue) = futures::channel::mpsc::unbounded::<Write>();
    let writer = tokio::spawn(queue.buffer_unordered(OPERATOR_CONCURRENCY).collect::<Vec<()>>());
    let user_uids = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let floor = Floor {
        client: client.clone(),
        ns: ns.clone(),
        written,
        writes,
    };
    floor
        .create_all(orgs, |f, org| {
            let [secret, event] = f.secret_and_event(&org, format!("{}-org-secret", org.name_any()));
            vec![f.finalizer(&org), secret, event, f.status(&org)]
        })
        .await;
    floor
        .create_all(accounts, |f, account| vec![f.finalizer(&account), f.status(&account)])
        .await;
    let uids = user_uids.clone();
    floor
        .create_all(users, move |f, user| {
            uids.lock()
                .unwrap()
                .insert(user.name_any(), user.uid().unwrap_or_default());
            let [secret, event] = f.secret_and_event(&user, format!("{}-user-secret", user.name_any()));
            vec![secret, event, f.status(&user)]
        })
        .await;
    let uids = user_uids.clone();
    floor
        .create_all(bindings, move |f, binding| {
            let uid = uids
                .lock()
                .unwrap()
                .get(&binding.spec.user_ref.name)
                .cloned()
                .unwrap_or_default();
            vec![f.pin(&binding, uid), f.status(&binding)]
        })
        .await;
    drop(floor);
    writer.await.unwrap();
    let mut report = FloorReport {
        scale: Some(scale.clone()),
        objects,
        floor_secs: started.elapsed().as_secs_f64(),
        cpu_floor: CpuSeconds::now(None).since(cpu_before),
        ..Default::default()
    };
    let metrics = apiserver_metrics(&client).await;
    report.cache_checks = cache_checks(&metrics) - checks_before;
    report.etcd_requests = between(&etcd_before, &etcd_requests(&metrics))
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((r, o), n)| (r, o, n))
        .collect();
    report.requests = between(&requests_before, &apiserver_requests(&client).await)
        .into_iter()
        .filter(|((verb, _), n)| *n > 0 && is_write(verb))
        .map(|((verb, resource), n)| (verb, resource, n))
        .collect();
    println!("honest floor: {objects} objects in {:.1} s", report.floor_secs);
    for (verb, resource, n) in &report.requests {
        println!("| {verb} {resource} | {n} |");
    }
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let json = out_dir.join(format!("floor-{stamp}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("figures: {}", json.display());
}

/// A kind of the load (or a Secret, an Event), as the floor's client writes it.
trait LoadKind:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + 'static
{
}

impl<K> LoadKind for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + 'static
{
}

/// One write of the floor.
type Write = futures::future::BoxFuture<'static, ()>;

/// The honest floor's client: creates, and queues each created object's necessary writes.
struct Floor {
    client: Client,
    ns: String,
    written: std::sync::Arc<Written>,
    writes: futures::channel::mpsc::UnboundedSender<Write>,
}

impl Floor {
    fn api<K>(&self) -> Api<K>
    where
        K: LoadKind,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Queues one object's writes, made one after the other as one reconcile makes them
    /// (a write guarded by the resourceVersion the create returned comes first).
    fn queue(&self, writes: Vec<Write>) {
        let job = async move {
            for write in writes {
                write.await;
            }
        };
        self.writes.unbounded_send(Box::pin(job)).expect("the writer runs");
    }

    /// Creates `objects`, 32 at once as the load generator does; `then` gives each one's
    /// writes, queued as soon as it exists.
    async fn create_all<K>(&self, objects: Vec<K>, then: impl Fn(&Self, K) -> Vec<Write> + Clone)
    where
        K: LoadKind,
    {
        let api: Api<K> = self.api();
        stream::iter(objects)
            .map(|o| {
                let (api, then) = (api.clone(), then.clone());
                async move {
                    let created = api.create(&PostParams::default(), &o).await.expect("floor create");
                    self.queue(then(self, created));
                }
            })
            .buffer_unordered(CLIENT_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// The operator's finalizer, added as the operator adds it (a JSON patch guarded by the
    /// resourceVersion).
    fn finalizer<K>(&self, obj: &K) -> Write
    where
        K: LoadKind,
    {
        let finalizers = [ce_operator::model::names::FINALIZER];
        self.list_patch(obj, "finalizers", serde_json::json!(finalizers))
    }

    /// A binding pinned to its user, as the operator pins it (an owner reference).
    fn pin(&self, binding: &RoleBinding, uid: String) -> Write {
        let owner = serde_json::json!([{
            "apiVersion": "ce.tenancy.io/v1alpha1",
            "kind": "CEUser",
            "name": binding.spec.user_ref.name,
            "uid": uid,
        }]);
        self.list_patch(binding, "ownerReferences", owner)
    }

    fn list_patch<K>(&self, obj: &K, field: &str, value: serde_json::Value) -> Write
    where
        K: LoadKind,
    {
        let (api, name): (Api<K>, String) = (self.api(), obj.name_any());
        let patch = serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
            {"op": "add", "path": format!("/metadata/{field}"), "value": value},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        Box::pin(async move {
            api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                .await
                .expect("floor patch");
        })
    }

    /// The converged status the operator wrote, applied as it applies it.
    fn status<K>(&self, obj: &K) -> Write
    where
        K: LoadKind,
    {
        let (api, name): (Api<K>, String) = (self.api(), obj.name_any());
        let kind = K::kind(&());
        let status = self
            .written
            .statuses
            .get(&format!("{kind}/{name}"))
            .cloned()
            .unwrap_or_default();
        let patch = serde_json::json!({"apiVersion": "ce.tenancy.io/v1alpha1", "kind": kind, "status": status});
        Box::pin(async move {
            api.patch_status(&name, &PatchParams::apply("floor").force(), &Patch::Apply(&patch))
                .await
                .expect("floor status");
        })
    }

    /// The owner's Secret (controlled by it, as the operator's are: the API server checks the
    /// blockOwnerDeletion permission and the garbage collector follows the reference), and
    /// the activity event of the issued secret.
    fn secret_and_event<K>(&self, owner: &K, secret_name: String) -> [Write; 2]
    where
        K: LoadKind,
    {
        let SecretMeta { labels, annotations } = self.written.secrets.get(&secret_name).cloned().unwrap_or_default();
        let reference = OwnerReference {
            api_version: "ce.tenancy.io/v1alpha1".into(),
            kind: K::kind(&()).into_owned(),
            name: owner.name_any(),
            uid: owner.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(secret_name),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![reference]),
                ..Default::default()
            },
            string_data: Some(
                [(
                    "secret".to_owned(),
                    ce_operator::controller::generate_secret(32)
                        .unwrap()
                        .expose()
                        .to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let secrets: Api<Secret> = self.api();
        let create_secret = Box::pin(async move {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .expect("floor secret");
        });
        let event = k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(format!("{}-", owner.name_any())),
                ..Default::default()
            },
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            )),
            action: Some("Reconcile".into()),
            reason: Some("SecretIssued".into()),
            note: Some("issued a new secret".into()),
            type_: Some("Normal".into()),
            reporting_controller: Some("ce.tenancy.io/floor".into()),
            reporting_instance: Some("floor".into()),
            regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("ce.tenancy.io/v1alpha1".into()),
                kind: Some(K::kind(&()).into_owned()),
                name: Some(owner.name_any()),
                namespace: Some(self.ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        let create_event = Box::pin(async move {
            events
                .create(&PostParams::default(), &event)
                .await
                .expect("floor event");
        });
        [create_secret, create_event]
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this binary too (without --bench): nothing to do then.
    if !args.iter().any(|a| a == "--bench") {
        println!("the scale benchmark runs with `make bench` (cargo bench --bench scale)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = Scale {
        orgs: arg(&args, "--orgs", 1),
        accounts: arg(&args, "--accounts", if quick { 10 } else { 100 }),
        users: arg(&args, "--users", if quick { 1000 } else { 10_000 }),
        bindings: arg(&args, "--bindings", if quick { 100 } else { 1000 }),
        rest_secs: arg(&args, "--rest-secs", if quick { 15 } else { 60 }),
        samples: arg(&args, "--samples", if quick { 30 } else { 100 }),
        admission_requests: arg(&args, "--admission-requests", if quick { 500 } else { 2000 }),
        admission_rate: arg(&args, "--admission-rate", 100.0),
        keep: args.iter().any(|a| a == "--keep"),
    };
    if let Some(written) = args.iter().position(|a| a == "--floor").and_then(|i| args.get(i + 1)) {
        return floor_main(&scale, Path::new(written)).await;
    }
    let (kubeconfig, client, stamp, ns) = start("bench").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut report = Report {
        scale: Some(scale.clone()),
        ..Default::default()
    };
    eprintln!("bench: {scale:?} in namespace {ns}");

    // 1. Convergence, operator started before the load.
    let webhook = Webhook::install(&kubeconfig, &format!("ce-bench-{stamp}"));
    let mut operator = start_operator(
        &kubeconfig,
        &ns,
        &webhook,
        out_dir.join(format!("operator-{stamp}.log")),
    );
    while operator.get("/readyz").0 != 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (orgs, accounts, users, bindings) = load(&scale);
    let objects = orgs.len() + accounts.len() + users.len() + bindings.len();
    report.objects = objects;
    let requests_before = apiserver_requests(&client).await;
    let operator_before = operator_requests(&operator);
    let cpu_before = CpuSeconds::now(Some(operator.child.id()));
    let metrics = apiserver_metrics(&client).await;
    let (checks_before, etcd_before) = (cache_checks(&metrics), etcd_requests(&metrics));
    let started = Instant::now();
    let (org_api, account_api, user_api, binding_api): (
        Api<Organization>,
        Api<Account>,
        Api<CEUser>,
        Api<RoleBinding>,
    ) = (
        Api::namespaced(client.clone(), &ns),
        Api::namespaced(client.clone(), &ns),
        Api::namespaced(client.clone(), &ns),
        Api::namespaced(client.clone(), &ns),
    );
    create_all(&org_api, orgs.clone()).await;
    create_all(&account_api, accounts.clone()).await;
    create_all(&user_api, users.clone()).await;
    create_all(&binding_api, bindings.clone()).await;
    report.load_created_secs = started.elapsed().as_secs_f64();
    // Wait on the operator's own gauges (cheap), then confirm with one list of everything.
    let account_settled = counts_its_users(&users);
    let mut polls = 0u64;
    loop {
        let ready_by_metrics = operator.ready_objects();
        if ready_by_metrics >= objects as u64 {
            polls += 4;
            let ready = count_ready(&org_api, |_| true).await
                + count_ready(&account_api, &account_settled).await
                + count_ready(&user_api, |_| true).await
                + count_ready(&binding_api, |_| true).await;
            if ready == objects {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(1800) {
            panic!("not converged after 30 min: {ready_by_metrics}/{objects} ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.convergence_secs = started.elapsed().as_secs_f64();
    report.cpu_converging = CpuSeconds::now(Some(operator.child.id())).since(cpu_before);
    let metrics = apiserver_metrics(&client).await;
    report.cache_checks[0] = cache_checks(&metrics) - checks_before;
    let etcd_converging = between(&etcd_before, &etcd_requests(&metrics));
    report.reconcile_p99_ms = user_reconcile_ms(&operator, 0.99);
    report.etcd_requests = etcd_converging.into_iter().map(|((r, o), n)| (r, o, n)).collect();
    let requests_after = apiserver_requests(&client).await;
    let operator_after = operator_requests(&operator);
    // The load generator's own requests: one POST per object, four LISTs per confirmation.
    let own = objects as u64 + polls;
    report.per_verb = per_verb(&operator_before, &operator_after, &scale);
    report.requests_per_object = (total(&operator_after) - total(&operator_before)) as f64 / objects as f64;
    report.all_requests_per_object =
        (total(&requests_after) - total(&requests_before)).saturating_sub(own) as f64 / objects as f64;
    eprintln!("bench: converged in {:.1} s", report.convergence_secs);

    // 2. What the honest floor writes: saved for `--floor`, which runs it on a cluster of its
    // own (hack/bench.sh).
    let written = Written::read(&client, &ns).await;
    let written_path = out_dir.join(format!("written-{stamp}.json"));
    std::fs::write(&written_path, serde_json::to_vec(&written).unwrap()).unwrap();
    report.written = written_path.display().to_string();

    // 3. Quiet at rest.
    let (rss, _) = operator.rss();
    let before = apiserver_requests(&client).await;
    tokio::time::sleep(Duration::from_secs(scale.rest_secs)).await;
    report.writes_at_rest = operator_writes("at rest", &before, &apiserver_requests(&client).await);
    report.rest_window_secs = scale.rest_secs;
    let (steady, peak) = operator.rss();
    report.steady_rss_mib = steady.max(rss) as f64 / 1048576.0;
    report.peak_rss_mib = peak as f64 / 1048576.0;
    report.bytes_per_object = steady as f64 / objects as f64;

    // 4. Latency of a change under load: bind and revoke admin one at a time.
    let checks_before = cache_checks(&apiserver_metrics(&client).await);
    let mut samples = Vec::new();
    for i in 0..scale.samples {
        let user = &users[scale.bindings + (i % (users.len() - scale.bindings).max(1))];
        let name = user.name_any();
        let binding = admin_binding(&format!("{name}-lat"), &name);
        for add in [true, false] {
            let t = Instant::now();
            grant_or_revoke(&binding_api, &binding, add).await;
            loop {
                let u = user_api.get(&name).await.unwrap();
                let has = u.status.as_ref().is_some_and(|s| s.roles.contains(&Role::Admin));
                if has == add {
                    break;
                }
                // A change not reflected in 60 s is a lost update, not a latency: say so.
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "{} of admin to {ns}/{name} not reflected after 60 s (sample {i}): status {:?}, resourceVersion {:?}",
                    if add { "grant" } else { "revoke" },
                    u.status,
                    u.metadata.resource_version
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    report.latency_samples = samples.len();
    report.latency_p50_ms = percentile(&samples, 50.0);
    report.latency_p95_ms = percentile(&samples, 95.0);
    report.latency_p99_ms = percentile(&samples, 99.0);
    report.cache_checks[2] = cache_checks(&apiserver_metrics(&client).await) - checks_before;

    // 5. Admission: the webhook's cost on a write, from the client, the API server and the
    // operator.
    report.admission = admission(&client, &kubeconfig, &operator, &webhook, &ns, &users, &scale).await;

    // 6. Restart on the converged state.
    eprintln!("bench: restarting the operator");
    operator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = apiserver_requests(&client).await;
    let checks_before = cache_checks(&apiserver_metrics(&client).await);
    let restarted = Instant::now();
    let cpu_before = CpuSeconds::now(None);
    let mut operator = start_operator(
        &kubeconfig,
        &ns,
        &webhook,
        out_dir.join(format!("operator-{stamp}-restart.log")),
    );
    while operator.get("/readyz").0 != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.restart_ready_secs = restarted.elapsed().as_secs_f64();
    report.cpu_restart = CpuSeconds::now(Some(operator.child.id())).since(cpu_before);
    report.cpu_restart.load_client = 0.0;
    report.cache_checks[1] = cache_checks(&apiserver_metrics(&client).await) - checks_before;
    // A restart that never confirms every object is a failure, not a figure.
    while operator.reconciles() < objects as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            restarted.elapsed() <= Duration::from_secs(900),
            "the restarted operator confirmed {} of {objects} objects in 15 min",
            operator.reconciles()
        );
    }
    report.restart_confirmed_secs = restarted.elapsed().as_secs_f64();
    report.restart_reconcile_p50_ms = user_reconcile_ms(&operator, 0.5);
    report.restart_reconcile_p99_ms = user_reconcile_ms(&operator, 0.99);
    tokio::time::sleep(Duration::from_secs(5)).await;
    report.writes_on_restart = operator_writes("on restart", &before, &apiserver_requests(&client).await);

    let r = &report;
    println!(
        "ce-operator scale benchmark (2 cores): {} orgs, {} accounts, {} users, {} bindings = {} objects",
        scale.orgs,
        scale.orgs * scale.accounts,
        scale.orgs * scale.users,
        scale.orgs * scale.bindings.min(scale.users),
        r.objects
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| convergence (the load's creates done after {:.1} s) | {:.1} s | |",
        r.load_created_secs, r.convergence_secs
    );
    println!(
        "| writes at rest ({} s window) | {} | 0 |",
        r.rest_window_secs, r.writes_at_rest
    );
    println!("| restart: ready | {:.1} s | < 30 s |", r.restart_ready_secs);
    println!(
        "| restart: every object confirmed | {:.1} s | |",
        r.restart_confirmed_secs
    );
    println!("| writes on restart | {} | 0 |", r.writes_on_restart);
    println!(
        "| RSS peak / steady | {:.0} / {:.0} MiB | steady < 150 MiB |",
        r.peak_rss_mib, r.steady_rss_mib
    );
    println!("| bytes per object (steady RSS) | {:.0} | |", r.bytes_per_object);
    println!(
        "| change latency p50 / p95 / p99 ({} samples; API server cache checks meanwhile: {}) | {:.0} / {:.0} / {:.0} ms | p99 < 1000 ms |",
        r.latency_samples, r.cache_checks[2], r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms
    );
    println!(
        "| CEUser reconcile p99 while converging (with its writes) | {} ms | |",
        r.reconcile_p99_ms
    );
    println!(
        "| CEUser reconcile p50 / p99 on restart (nothing to write) | {} / {} ms | |",
        r.restart_reconcile_p50_ms, r.restart_reconcile_p99_ms
    );
    println!(
        "| API requests per converged object: the operator's / every client's but the load's | {:.2} / {:.2} | operator <= 3.05 |",
        r.requests_per_object, r.all_requests_per_object
    );
    println!();
    println!(
        "| CPU seconds (2 cores) | operator | kube-apiserver | etcd | kube-controller-manager | load client | total | API server cache checks of ceusers, secrets, events |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((phase, c), checks) in [("converging", r.cpu_converging), ("restart to ready", r.cpu_restart)]
        .into_iter()
        .zip(r.cache_checks)
    {
        println!(
            "| {phase} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {checks} |",
            c.operator,
            c.apiserver,
            c.etcd,
            c.controller_manager,
            c.load_client,
            c.operator + c.apiserver + c.etcd + c.controller_manager + c.load_client
        );
    }
    println!();
    println!("| the operator's API requests during convergence | count | necessary |");
    println!("|---|---|---|");
    for row in &r.per_verb {
        let necessary = row.necessary.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!("| {} {} | {} | {necessary} |", row.verb, row.resource, row.requests);
    }
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    let a = &r.admission;
    println!(
        "| dry-run p50 / p99 without the webhook ({} requests) | {:.1} / {:.1} ms | |",
        a.requests, a.without_p50_ms, a.without_p99_ms
    );
    println!(
        "| dry-run p50 / p99 with the webhook ({} denied) | {:.1} / {:.1} ms | |",
        a.denied, a.with_p50_ms, a.with_p99_ms
    );
    println!("| dry-runs per second with the webhook | {:.0} | |", a.with_per_sec);
    println!(
        "| at {:.0}/s ({} dry-runs): client p50 / p99 | {:.1} / {:.1} ms | |",
        a.rate, a.paced_requests, a.paced_p50_ms, a.paced_p99_ms
    );
    println!(
        "| at {:.0}/s: webhook call p50 / p99 (API server's histogram) | {} / {} ms | p99 <= 5 ms |",
        a.rate, a.apiserver_p50_ms, a.apiserver_p99_ms
    );
    println!(
        "| at {:.0}/s: review p50 / p99 (operator's histogram) | {} / {} ms | |",
        a.rate, a.operator_p50_ms, a.operator_p99_ms
    );
    println!(
        "| at {:.0}/s as a tenant (who may act judged; {} of {} refused): client p50 / p99 | {:.1} / {:.1} ms | |",
        a.rate, a.tenant_denied, a.paced_requests, a.tenant_p50_ms, a.tenant_p99_ms
    );
    println!(
        "| at {:.0}/s as a tenant: review p50 / p99 (operator's histogram) | {} / {} ms | p99 < 5 ms |",
        a.rate, a.tenant_operator_p50_ms, a.tenant_operator_p99_ms
    );
    let json = out_dir.join(format!("scale-{stamp}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("figures: {}", json.display());
    if scale.keep {
        operator.kill();
        eprintln!("bench: --keep: the load stays in namespace {ns}");
        return;
    }
    // Clean up while the operator runs, so that its finalizers let the namespace go.
    let _ = namespaces.delete(&ns, &Default::default()).await;
    let cleanup = Instant::now();
    while cleanup.elapsed() < Duration::from_secs(300) && namespaces.get_opt(&ns).await.ok().flatten().is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    operator.kill();
    let _ = Command::new(root().join(".local/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "delete",
            "validatingwebhookconfiguration",
            &webhook.config,
            "--ignore-not-found",
        ])
        .status();
}
