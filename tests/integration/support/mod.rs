//! Test support for integration tests against a real control plane.
//!
//! Tests use the cluster whose admin kubeconfig is named by `CE_TEST_KUBECONFIG` (as
//! `make test` does), or else start one for this test binary with `hack/cluster.sh`, whose
//! watchdog tears it down when the binary exits, pass or fail. Each test works in a fresh
//! namespace; waits poll with a timeout and fail with what they last saw.

#![allow(dead_code)] // each test binary uses a different part of this module

mod callers;
mod metrics;
mod requests;
#[allow(unused_imports)] // as above
pub use callers::{credentials, curl, identity, kubectl_as, secret, tempdir};
#[allow(unused_imports)] // as above: not every binary reads the counters
pub use metrics::Metrics;
pub use requests::{ApiRequests, apiserver_requests, between, is_write};

use std::{
    fmt::Debug,
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, Resource,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Serialize, de::DeserializeOwned};

/// Default timeout of a wait: generous for a loaded 2-core machine, short enough to fail fast.
pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(100);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn tool(name: &str) -> PathBuf {
    repo_root().join(".local/bin").join(name)
}

/// Path of the admin kubeconfig of the cluster the tests run against.
pub fn kubeconfig_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("CE_TEST_KUBECONFIG") {
            return PathBuf::from(path);
        }
        let dir = repo_root()
            .join("target/test-clusters")
            .join(std::process::id().to_string());
        start_cluster(&dir, std::process::id());
        dir.join("kubeconfig")
    })
}

/// Starts a cluster in `dir` that tears itself down when process `watch_pid` exits.
pub fn start_cluster(dir: &Path, watch_pid: u32) {
    let status = Command::new(repo_root().join("hack/cluster.sh"))
        .args(["up", "--dir"])
        .arg(dir)
        .args(["--watch-pid", &watch_pid.to_string()])
        .status()
        .expect("run hack/cluster.sh (are the tools built? run hack/build-tools.sh)");
    assert!(status.success(), "hack/cluster.sh up --dir {} failed", dir.display());
}

/// Path of the kubeconfig of the operator's own identity (user ce-operator, cluster-admin):
/// distinct from the admin's, so that the webhook can exempt the operator but not kubectl.
pub fn operator_kubeconfig_path() -> PathBuf {
    kubeconfig_path().with_file_name("operator.kubeconfig")
}

/// The test cluster's CA (hack/cluster.sh), which signs its client certificates.
pub fn cluster_ca_path() -> PathBuf {
    kubeconfig_path().with_file_name("pki").join("ca.crt")
}

/// A client for the test cluster. Each test makes its own: a client is tied to the runtime
/// that created it, and every `#[tokio::test]` has its own runtime.
pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("read test kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load test kubeconfig");
    Client::try_from(config).expect("build client")
}

/// Runs the project's kubectl against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Runs kubectl and returns its stdout, failing the test with stderr when it fails.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl output is UTF-8")
}

/// Installs (server-side applies) the CRDs from `crds/` and waits until they are served.
/// Once per test binary; concurrent callers wait for the first.
pub async fn install_crds(client: &Client) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(repo_root().join("crds")).expect("read crds/") {
            let path = entry.expect("crds/ entry").path();
            let text = std::fs::read_to_string(&path).expect("read CRD file");
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            let name = crd.metadata.name.clone().expect("CRD has a name");
            api.patch(
                &name,
                &PatchParams::apply("ce-operator-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
            names.push(name);
        }
        for name in names {
            wait_for(&api, &name, "condition Established=True", TIMEOUT, |crd| {
                crd.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            })
            .await;
        }
    })
    .await;
}

/// A namespace of its own for one test, with a random suffix.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let suffix: String = (0..6).map(|_| char::from(b'a' + rand::random_range(0..26u8))).collect();
        let name = format!("{prefix}-{suffix}");
        let api: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        ns.metadata.labels = Some([("ce.tenancy.io/test".to_string(), "true".to_string())].into());
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (the test cluster's namespace controller empties it). Dropping
    /// it does the same, so that a failed test leaves nothing behind either.
    pub async fn delete(self) {}
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Synchronous (Drop cannot await, and also runs while a failed test unwinds).
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
    }
}

/// Polls until `ready` holds for the object, or fails after `timeout` saying what was
/// awaited and what the object last looked like.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, timeout: Duration, ready: impl Fn(&K) -> bool) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    let start = Instant::now();
    let mut last: Option<K> = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) if ready(&obj) => return obj,
            Ok(Some(obj)) => last = Some(obj),
            Ok(None) => last = None,
            Err(e) => eprintln!("get {name}: {e} (retrying)"),
        }
        if start.elapsed() > timeout {
            let seen = match &last {
                Some(obj) => serde_saphyr::to_string(obj).unwrap_or_else(|_| format!("{obj:?}")),
                None => "<not found>".to_string(),
            };
            panic!(
                "timed out after {timeout:?} waiting for {} {name}: {what}\nlast seen:\n{seen}",
                K::kind(&Default::default())
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the object no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    wait_until(
        &format!("{} {name} to be deleted", K::kind(&Default::default())),
        timeout,
        || async { matches!(api.get_opt(name).await, Ok(None)) },
    )
    .await;
}

/// Polls an async predicate until it holds, or fails after `timeout` naming `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, timeout, POLL, || async {
        if check().await { Ok(()) } else { Err(String::new()) }
    })
    .await;
}

/// Polls `check` every `every` until it answers Ok, or fails after `timeout` naming `what`
/// and what its last answer said was missing.
pub async fn poll_until<F, Fut>(what: &str, timeout: Duration, every: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    while let Err(missing) = check().await {
        assert!(
            start.elapsed() <= timeout,
            "timed out after {timeout:?} waiting for {what}{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!("; not there yet: {missing}")
            }
        );
        tokio::time::sleep(every).await;
    }
}

/// The manifests `helm template ARGS` renders (run in the repository, so chart paths may be
/// relative to it); a failed render fails the test with helm's words.
pub fn helm_template(args: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .arg("template")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// The operator binary, run as a separate process against the test cluster, watching only
/// one namespace (so that tests running side by side do not share an operator). Killed when
/// dropped; its log is in target/test-logs/<namespace>.log.
pub struct Operator {
    child: Option<std::process::Child>,
    extra_args: Vec<String>,
    /// The kubeconfig it runs with (the admin's unless given).
    kubeconfig: PathBuf,
    /// The namespace watched; None for all namespaces.
    namespace: Option<String>,
    pub log: PathBuf,
    /// Length of the log when the latest start began: what follows is that process's.
    log_offset: usize,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::launch(Some(namespace.to_owned()), namespace, &[])
    }

    /// An operator over all namespaces; only for a test binary whose tests run one at a time.
    pub fn start_all_namespaces(log_name: &str) -> Self {
        Self::launch(None, log_name, &[])
    }

    /// An operator over all namespaces with another identity (kubeconfig); only for a test
    /// binary whose tests run one at a time.
    pub fn start_all_namespaces_as(log_name: &str, kubeconfig: &Path, extra_args: &[&str]) -> Self {
        let mut op = Self::launch_with(None, log_name, extra_args, kubeconfig.to_owned());
        op.spawn();
        op
    }

    /// An operator on one namespace with extra command-line arguments, logging to `log_name`.
    pub fn start_with(namespace: &str, log_name: &str, extra_args: &[&str]) -> Self {
        Self::launch(Some(namespace.to_owned()), log_name, extra_args)
    }

    fn launch(namespace: Option<String>, log_name: &str, extra_args: &[&str]) -> Self {
        let mut op = Self::launch_with(namespace, log_name, extra_args, operator_kubeconfig_path());
        op.spawn();
        op
    }

    fn launch_with(namespace: Option<String>, log_name: &str, extra_args: &[&str], kubeconfig: PathBuf) -> Self {
        let dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{log_name}.log"));
        let _ = std::fs::remove_file(&log);
        // The webhook and the authorization endpoint listen on free loopback ports; the
        // webhook's certificates live in the watched namespace (or `default`), and it keeps
        // the configuration `ce-<log name>`, unless the test says otherwise.
        let defaults = [
            ("--webhook-addr", "127.0.0.1:0".to_owned()),
            ("--webhook-dns-name", "127.0.0.1".to_owned()),
            ("--webhook-secret", format!("ce-webhook-{log_name}")),
            (
                "--webhook-secret-namespace",
                namespace.as_deref().unwrap_or("default").to_owned(),
            ),
            ("--webhook-config-name", webhook_config_name(log_name)),
            (
                "--issuance-key-namespace",
                namespace.as_deref().unwrap_or("default").to_owned(),
            ),
            // Only the API server gets answers: it presents this client certificate to every
            // webhook (hack/cluster.sh, its admission configuration).
            ("--webhook-client-ca-file", cluster_ca_path().display().to_string()),
            ("--webhook-client-name", "ce-webhook-client".to_owned()),
            ("--authz-addr", "127.0.0.1:0".to_owned()),
        ];
        let mut args: Vec<String> = Vec::new();
        for (flag, value) in defaults {
            if !extra_args.contains(&flag) {
                args.extend([flag.to_owned(), value]);
            }
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Self {
            child: None,
            extra_args: args,
            kubeconfig,
            namespace,
            log,
            log_offset: 0,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: its work held at a point of a test's
    /// choosing, its connections and caches kept.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.pid().expect("a running operator").to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the latest start has logged so far.
    pub fn log_of_this_start(&self) -> String {
        self.log_text().get(self.log_offset..).unwrap_or_default().to_owned()
    }

    /// The value of `field` the latest start logged on a line containing `marker`, once it
    /// has (text logs: `field=value`).
    async fn logged(&self, marker: &str, field: &str) -> String {
        let find = || {
            self.log_of_this_start()
                .lines()
                .rev()
                .find(|l| l.contains(marker))
                .and_then(|l| l.split(&format!("{field}=")).nth(1))
                .map(|a| a.split_whitespace().next().unwrap_or("").to_owned())
        };
        wait_until(&format!("the operator to log {marker:?}"), TIMEOUT, || {
            let found = find().is_some();
            async move { found }
        })
        .await;
        find().unwrap()
    }

    async fn logged_addr(&self, marker: &str) -> String {
        self.logged(marker, "addr").await
    }

    /// The address of the HTTP endpoint of the latest start, once it serves.
    pub async fn http_addr(&self) -> String {
        self.logged_addr("serving /metrics").await
    }

    /// The address of the admission webhook of the latest start, once it serves.
    pub async fn webhook_addr(&self) -> String {
        self.logged_addr("serving the admission webhook").await
    }

    /// The address of the authorization endpoint of the latest start, once it serves.
    pub async fn authz_addr(&self) -> String {
        self.logged_addr("serving the authorization endpoint").await
    }

    /// The address of its tenant API (`--tenant-api-addr`), once it serves.
    pub async fn tenant_api_addr(&self) -> String {
        self.logged_addr("serving the tenant API").await
    }

    /// The address of its gRPC authorization endpoint (`--authz-grpc-addr`), once it serves.
    pub async fn authz_grpc_addr(&self) -> String {
        self.logged_addr("serving the gRPC authorization endpoint").await
    }

    /// How many reconciles of `controller` (a kind: "CEUser") the operator has run.
    pub async fn reconciles(&self, controller: &str) -> f64 {
        self.metric("ce_operator_reconciles_total", &[("controller", controller)])
            .await
    }

    /// Waits until the operator's count of reconciles stays the same over a whole `interval`
    /// (whatever was in flight has landed), and returns it; fails if that does not happen
    /// within `limit` (a loop, however slow, of requeues shorter than `limit`).
    pub async fn come_to_rest(&self, interval: Duration, limit: Duration) -> f64 {
        let deadline = Instant::now() + limit;
        let mut last = self.metric("ce_operator_reconciles_total", &[]).await;
        loop {
            tokio::time::sleep(interval).await; // the sampling interval
            let now = self.metric("ce_operator_reconciles_total", &[]).await;
            if now == last {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not come to rest within {limit:?}: {} reconciles in the last {interval:?}",
                now - last
            );
            last = now;
        }
    }

    /// A counter or gauge of the operator's /metrics, summed over the series whose labels
    /// include each pair of `with`.
    pub async fn metric(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let addr = self.http_addr().await;
        Metrics::parse(&http_get(&addr, "/metrics").1).sum(name, with)
    }

    /// Sends SIGTERM and waits at most `limit` for the process to exit: how long after the
    /// signal it exited cleanly, or why not (still running at `limit`, then killed; or a failed
    /// exit status). Polled every 10 ms, so the time is that precise.
    pub async fn terminate(&mut self, limit: Duration) -> Result<Duration, String> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".into());
        };
        let signalled = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", child.id());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let took = signalled.elapsed();
                return if status.success() {
                    Ok(took)
                } else {
                    Err(format!("exited with {status} {took:?} after SIGTERM"))
                };
            }
            if signalled.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running {limit:?} after SIGTERM (killed)"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Its exit status if it has exited (then reaped), None while it runs: unlike a look at
    /// /proc, a crashed operator does not pass for a live one while it lingers as a zombie.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap(),
            None => panic!("the operator was not started"),
        }
    }

    /// The identity it elects a leader with (logged when it starts waiting for the Lease).
    pub async fn lease_identity(&self) -> String {
        self.logged("waiting for the leader lease", "identity").await
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.log_offset = out.metadata().map_or(0, |m| m.len() as usize);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ce-operator"));
        command
            .args([
                "run",
                "--log-format",
                "text",
                "--http-addr",
                "127.0.0.1:0",
                "--kubeconfig",
            ])
            .arg(&self.kubeconfig);
        if let Some(ns) = &self.namespace {
            command.args(["--namespace", ns]);
        }
        command.args(&self.extra_args);
        let child = command
            .env("RUST_LOG", "info,ce_operator=debug")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start ce-operator");
        self.child = Some(child);
    }

    /// Kills the operator abruptly (SIGKILL), as a crash or an evicted pod would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Restarts it with these command-line arguments added (each flag given once in all).
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.extra_args.extend(extra_args.iter().map(|a| a.to_string()));
        self.restart();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Changes `name`'s `spec.displayName` and waits until its status reports that generation
/// judged: the operator has then reconciled this very object after everything that happened
/// before the call, so that an assertion that a change did *not* alter it is not made before
/// the operator saw the change (waiting for any reconcile of the kind is not enough).
pub async fn touch_and_wait_judged<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let touched = format!(
        "touched {}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let patch = serde_json::json!({"spec": {"displayName": touched}});
    let generation = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap()
        .meta()
        .generation;
    wait_for(api, name, "its new generation judged", TIMEOUT, |o| {
        let status = serde_json::to_value(o).unwrap_or_default();
        status["status"]["observedGeneration"].as_i64() >= generation
    })
    .await
}

/// Runs `kubectl ce <args>` with the plugin binary first on the PATH.
pub fn kubectl_ce(args: &[&str]) -> Output {
    kubectl_ce_as(&kubeconfig_path().to_string_lossy(), args)
}

/// $PATH with the plugin binary's directory first, where kubectl finds `kubectl-ce`.
pub fn plugin_path() -> String {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-ce")).parent().unwrap();
    format!("{}:{}", plugin_dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// Runs `kubectl ce <args>` with `kubeconfig`.
pub fn kubectl_ce_as(kubeconfig: &str, args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .args(["ce", "--kubeconfig", kubeconfig])
        .args(args)
        .env("PATH", plugin_path())
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl ce")
}

/// Name of the ValidatingWebhookConfiguration an operator logging to `log_name` keeps.
pub fn webhook_config_name(log_name: &str) -> String {
    format!("ce-{log_name}")
}

/// An operator on a fresh namespace (`prefix`-…) covered by its webhook (`TestWebhook`).
pub async fn with_webhook(client: &Client, prefix: &str) -> (TestNamespace, Operator, TestWebhook) {
    with_webhook_and(client, prefix, &[]).await
}

/// As `with_webhook`, the operator started with `extra_args`.
pub async fn with_webhook_and(
    client: &Client,
    prefix: &str,
    extra_args: &[&str],
) -> (TestNamespace, Operator, TestWebhook) {
    let ns = TestNamespace::new(client, prefix).await;
    let operator = Operator::start_with(&ns.name, &ns.name, extra_args);
    cover_with_webhook(&ns.name, &ns.name);
    let webhook = TestWebhook::install(
        client,
        &webhook_config_name(&ns.name),
        &operator.webhook_addr().await,
        &ns.name,
    )
    .await;
    (ns, operator, webhook)
}

/// A ValidatingWebhookConfiguration for the tests: the chart's own, pointing at a local
/// operator's address, exempting the local operator's identity (user ce-operator) instead of
/// the chart's ServiceAccount, and covering only the namespaces labelled
/// `ce.tenancy.io/webhook=<label>` (so that tests side by side are not affected). Deleted
/// when dropped.
pub struct TestWebhook {
    pub name: String,
}

impl TestWebhook {
    /// Creates the configuration and waits until the operator has written its caBundle.
    pub async fn install(client: &Client, name: &str, addr: &str, label: &str) -> Self {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        let config = webhook_config(name, &format!("https://{addr}/validate"), label);
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let _ = api.delete(name, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &config)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        wait_for(&api, name, "the operator to write the caBundle", TIMEOUT, |c| {
            c.webhooks
                .iter()
                .flatten()
                .all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty()))
        })
        .await;
        Self { name: name.to_owned() }
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            &self.name,
            "--ignore-not-found",
        ]);
    }
}

/// The chart's ValidatingWebhookConfiguration (rendered by helm), redirected as above by
/// hack/local-webhook.py (which `make dev` uses too).
pub fn webhook_config(
    name: &str,
    url: &str,
    label: &str,
) -> k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration {
    let script = format!(
        "{helm} template ce charts/ce-operator --namespace ce-system --show-only templates/webhook.yaml | python3 hack/local-webhook.py {name} {url} ce-operator {label}",
        helm = tool("helm").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo_root())
        .output()
        .expect("run helm and hack/local-webhook.py");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).expect("a ValidatingWebhookConfiguration")
}

/// Labels a namespace so that a `TestWebhook` for `label` covers it.
pub fn cover_with_webhook(namespace: &str, label: &str) {
    kubectl_ok(&[
        "label",
        "namespace",
        namespace,
        &format!("ce.tenancy.io/webhook={label}"),
        "--overwrite",
    ]);
}

/// GETs a path of an operator's HTTP endpoint: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("http://{addr}{path}")])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Runs kubectl with `stdin` as its input.
pub fn kubectl_with_input(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Applies a YAML manifest (one or more documents) into a namespace with kubectl.
pub fn apply(namespace: &str, manifest: &str) {
    let out = kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{manifest}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the object reports condition `type_` with `status` and `reason`.
pub async fn wait_condition<K>(api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str) -> K
where
    K: Resource + ce_operator::api::HasConditions + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    let what = format!("condition {type_}={status} with reason {reason}");
    wait_for(api, name, &what, TIMEOUT, |o| o.has_condition(type_, status, reason)).await
}

/// Waits until the object is Ready=True (whatever the reason).
pub async fn wait_ready<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + ce_operator::api::HasConditions + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    wait_for(api, name, "condition Ready=True", TIMEOUT, |o| {
        o.condition("Ready").is_some_and(|c| c.status == "True")
    })
    .await
}

/// The holder of Lease `name` in `namespace` as the API server holds it ("" when the Lease is
/// free, absent or has no spec).
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> String {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), namespace);
    leases
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get Lease {namespace}/{name}: {e}"))
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default()
}

/// Two replicas on `namespace` electing a leader on a Lease there (`lease_secs` long), logging
/// to `<namespace>-first` and `<namespace>-second`: returned once the first leads and the
/// second is ready as its standby.
pub async fn leader_and_standby(namespace: &str, lease_secs: &str) -> (Operator, Operator) {
    let args = [
        "--leader-election",
        "--lease-namespace",
        namespace,
        "--lease-duration",
        lease_secs,
    ];
    let first = Operator::start_with(namespace, &format!("{namespace}-first"), &args);
    wait_until("the first replica to lead", TIMEOUT, || async {
        first.metric("ce_operator_leader", &[]).await == 1.0
    })
    .await;
    let second = Operator::start_with(namespace, &format!("{namespace}-second"), &args);
    let second_addr = second.http_addr().await;
    wait_until("the standby to be ready", TIMEOUT, || async {
        http_get(&second_addr, "/readyz").0 == 200
    })
    .await;
    (first, second)
}

/// Writes to `path` a kubeconfig for the cluster that authenticates as ServiceAccount
/// `namespace/name` (an hour's token) and nothing else.
pub async fn service_account_kubeconfig(client: &Client, namespace: &str, name: &str, path: &Path) {
    use k8s_openapi::api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
    };
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token of {namespace}/{name}: {e}"))
        .status
        .unwrap()
        .token;
    let admin = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let field = |key: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap()
            .trim()
            .to_owned()
    };
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: sa}}\ncurrent-context: c\n",
        field("server:"),
        field("certificate-authority:")
    );
    std::fs::write(path, config).unwrap();
}

/// Super-organization big (allowing namespace `ns`, denying element `box`) and acme in it:
/// accounts hq (default: sam, the org-admin) and eu (jane), and a safelist of `safelisted`
/// (comma-separated element keys).
pub fn super_org_tenant(ns: &str, safelisted: &str) -> String {
    format!(
        "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {{name: big}}
spec: {{displayName: Big, whitelabel: {{allowedNamespaces: [{ns}], elementDenylist: [box]}}}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {{name: acme}}
spec: {{displayName: Acme, defaultAccountName: hq, superOrganizationRef: {{namespace: {ns}, name: big}}}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {{name: hq}}
spec: {{organizationRef: {{name: acme}}, default: true}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {{name: eu}}
spec: {{organizationRef: {{name: acme}}}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: sam}}
spec: {{accountRef: {{name: hq}}, email: sam@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: jane}}
spec: {{accountRef: {{name: eu}}, email: jane@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {{name: sam-org-admin}}
spec: {{userRef: {{name: sam}}, role: org-admin}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {{name: acme-list}}
spec: {{organizationRef: {{name: acme}}, elements: [{safelisted}]}}
"
    )
}
