//! What the benchmarks share: the release operator as a separate process, the cluster
//! client, and the load generator's helpers.
#![allow(dead_code)] // each benchmark uses a part

#[path = "../../tests/integration/support/metrics.rs"]
mod metrics;
#[path = "../../tests/integration/support/requests.rs"]
mod requests;
pub use metrics::Metrics;
#[allow(unused_imports)] // as above: not every binary reads the counters
pub use requests::{ApiRequests, apiserver_metrics, apiserver_requests, between, is_write};

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use futures::{StreamExt, stream};
use kube::{
    Api, Client, Resource,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::Serialize;

/// Concurrent requests of the load generator and of the floor client.
pub const CLIENT_CONCURRENCY: usize = 32;

pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kubeconfig() -> PathBuf {
    std::env::var("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".local/cluster/kubeconfig"))
}

pub async fn client(kubeconfig: &Path) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// `kubectl apply` of `manifest`, with that kubeconfig.
pub fn kubectl_apply(kubeconfig: &Path, manifest: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(root().join(".local/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply");
}

/// A client of that kubeconfig's identity impersonating `user` in `groups` (as the API
/// server then sees a tenant's own identity).
pub async fn client_as(kubeconfig: &Path, user: &str, groups: &[&str]) -> Client {
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(config).unwrap()
}

/// Installs the CRDs as `make dev` does, and waits until they are established.
pub fn install_crds(kubeconfig: &Path) {
    for args in [
        &["apply", "--server-side", "--field-manager=ce-bench", "-f"][..],
        &["wait", "--for", "condition=Established", "--timeout=60s", "-f"][..],
    ] {
        let status = Command::new(root().join(".local/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .arg(root().join("crds"))
            .status()
            .unwrap();
        assert!(status.success(), "kubectl {args:?} crds failed");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn meta(name: &str) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The release operator, run as the cluster's `ce-operator` user (whom the webhook exempts,
/// as the chart's configuration exempts the operator's ServiceAccount).
pub struct Operator {
    pub child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(kubeconfig: &Path, namespace: &str, extra: &[String], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(root().join("target/release/ce-operator"))
            .args([
                "run",
                "--log-format",
                "text",
                "--http-addr",
                "127.0.0.1:0",
                "--namespace",
                namespace,
            ])
            .args(extra)
            .arg("--kubeconfig")
            .arg(kubeconfig.with_file_name("operator.kubeconfig"))
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start target/release/ce-operator (cargo build --release)");
        Self { child, log }
    }

    pub fn addr(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text.lines().find(|l| l.contains("serving /metrics"))?;
        Some(line.split("addr=").nth(1)?.split_whitespace().next()?.to_owned())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let Some(addr) = self.addr() else {
            return (0, String::new());
        };
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://{addr}{path}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Its /metrics.
    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get("/metrics").1)
    }

    /// A counter or gauge, summed over the series whose labels include each pair of `with`.
    pub fn metric(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.metrics().sum(name, with)
    }

    pub fn reconciles(&self) -> u64 {
        self.metric("ce_operator_reconciles_total", &[]) as u64
    }

    /// Objects the operator's own gauges count Ready.
    pub fn ready_objects(&self) -> u64 {
        self.metric("ce_operator_objects", &[("ready", "True")]) as u64
    }

    /// (current, peak) resident memory in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    }

    pub async fn wait_ready(&self) {
        while self.get("/readyz").0 != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn run_all<F, Fut>(items: Vec<F>) -> usize
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let n = items.len();
    stream::iter(items.into_iter().map(|f| f()))
        .buffer_unordered(CLIENT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    n
}

pub async fn create_all<K>(api: &Api<K>, objects: Vec<K>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    let params = kube::api::PostParams::default();
    run_all(
        objects
            .into_iter()
            .map(|o| {
                let api = api.clone();
                let params = params.clone();
                move || async move {
                    api.create(&params, &o).await.expect("create");
                }
            })
            .collect(),
    )
    .await;
}

/// An `admin` RoleBinding of `user`, the change the latency measurements bind and revoke.
pub fn admin_binding(name: &str, user: &str) -> ce_operator::api::RoleBinding {
    ce_operator::api::RoleBinding::new(
        name,
        ce_operator::api::RoleBindingSpec {
            user_ref: ce_operator::api::LocalRef::new(user),
            role: ce_operator::api::Role::Admin,
            override_system_role: false,
        },
    )
}

/// Creates (`grant`) or deletes `binding`.
pub async fn grant_or_revoke(
    api: &Api<ce_operator::api::RoleBinding>,
    binding: &ce_operator::api::RoleBinding,
    grant: bool,
) {
    use kube::ResourceExt;
    if grant {
        api.create(&kube::api::PostParams::default(), binding).await.unwrap();
    } else {
        api.delete(&binding.name_any(), &Default::default()).await.unwrap();
    }
}

/// CPU seconds (user + system) a process has used, from /proc (0 if it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command (which may hold spaces), from the state on: utime and stime are
    // fields 14 and 15 of proc(5), the 12th and 13th here.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |n: usize| after.split_whitespace().nth(n).and_then(|f| f.parse::<f64>().ok());
    let ticks_per_second = 100.0; // USER_HZ on Linux
    field(11)
        .zip(field(12))
        .map_or(0.0, |(u, s)| (u + s) / ticks_per_second)
}

/// The pid of a component of the local cluster (`hack/cluster.sh` names each process
/// `ce-cluster:<dir>:<component>`).
pub fn cluster_pid(component: &str) -> Option<u32> {
    let tag = format!("ce-cluster:{}:{component}", root().join(".local/cluster").display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        cmdline.starts_with(tag.as_bytes()).then_some(pid)
    })
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
