//! Authorization benchmark (`make bench-authz`): the operator's `/authz/check` side by side
//! with Open Policy Agent serving the equivalent Rego policy over the same data, both driven
//! by wrk with the same mix of checks on loopback.
//!
//! Loads a tenant (default 10,000 users) on the local cluster, lets the release operator
//! converge it, reads the Secrets and the users' status (the privileges the operator
//! computed), exports them as OPA's data, checks that both answer every request of the mix
//! alike, then measures: saturated decisions per second (wrk, fixed connections), latency at
//! half of the operator's saturated rate, and how fast a revoked or granted RoleBinding shows
//! in the decisions. Prints a table; the figures also go to target/bench/authz-<time>.json.
//!
//!   cargo bench --bench authz -- [--users N] [--accounts N] [--bindings N] [--seconds N] [--connections N]

#[path = "common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ce_operator::api::{
    Account, AccountSpec, CEUser, CEUserSpec, ElementSafelist, ElementSafelistSpec, LocalRef, Organization, Role,
    RoleBinding, RoleBindingSpec,
};
use common::{
    Operator, admin_binding, arg, client, create_all, free_port, grant_or_revoke, install_crds, kubeconfig, meta,
    percentile, root,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client as HttpClient, rt::TokioExecutor};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Default, Serialize)]
struct Side {
    saturated_per_sec: f64,
    paced_per_sec: f64,
    paced_p50_ms: f64,
    paced_p99_ms: f64,
    saturated_p99_ms: f64,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    users: usize,
    mix: usize,
    connections: usize,
    seconds: u64,
    disagreements: usize,
    /// Half of the operator's saturated rate, the rate the paced runs aim at.
    offered_per_sec: f64,
    operator: Side,
    opa: Side,
    ratio: f64,
    index_bytes: usize,
    rss_mib: f64,
    change_samples: usize,
    change_p50_ms: f64,
    change_p99_ms: f64,
    /// The tenant API, as the org-admin: `GET /users/{id}` (from the caches) ...
    tenant_reads: usize,
    tenant_read_p50_ms: f64,
    tenant_read_p99_ms: f64,
    /// ... and `PUT` / `DELETE /users/{userId}/roles/admin` (through the API server, until the
    /// caches hold the write).
    tenant_writes: usize,
    tenant_write_p50_ms: f64,
    tenant_write_p99_ms: f64,
}

/// One check of the mix: the credentials and the route's headers.
struct Check {
    authorization: String,
    privilege: Option<&'static str>,
    element: Option<String>,
    instance: Option<(String, &'static str)>,
}

impl Check {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Authorization", self.authorization.clone())];
        if let Some(p) = self.privilege {
            h.push(("X-CE-Privilege", p.to_owned()));
        }
        if let Some(e) = &self.element {
            h.push(("X-CE-Element", e.clone()));
        }
        if let Some((owner, action)) = &self.instance {
            h.push(("X-CE-Instance-Owner", owner.clone()));
            h.push(("X-CE-Instance-Action", (*action).to_owned()));
        }
        h
    }

    fn opa_input(&self) -> serde_json::Value {
        let mut input = serde_json::json!({
            "authorization": self.authorization,
            "privileges": self.privilege.map(|p| vec![p]).unwrap_or_default(),
        });
        if let Some(e) = &self.element {
            input["element"] = e.clone().into();
        }
        if let Some((owner, action)) = &self.instance {
            input["instance"] = serde_json::json!({"owner": owner, "action": action});
        }
        serde_json::json!({ "input": input })
    }
}

/// The Rego equivalent of `model::authz` over the exported data: secrets by SHA-256, the
/// privileges each user holds by scope (as the operator put them in status), owners'
/// accounts, and the organization's visible elements.
const POLICY: &str = r#"
package ce

import rego.v1

default allow := false

parts[kind] := value if {
	some part in split(input.authorization, ",")
	words := [w | some w in split(trim_space(part), " "); w != ""]
	count(words) == 2
	kind := lower(words[0])
	value := words[1]
}

user := data.users[crypto.sha256(parts.user)]

org := data.orgs[crypto.sha256(parts.organization)]

authenticated if {
	user.org == org.name
	user.namespace == org.namespace
}

owner := data.owners[concat("/", [user.namespace, input.instance.owner])]

holds_in(p, account) if p in user.org_privileges

holds_in(p, account) if {
	account == user.account
	p in user.account_privileges
}

holds(p) if p in user.org_privileges

holds(p) if p in user.account_privileges

action_privilege := {
	"view": "viewAccountElementInstances",
	"use": "useAccountElementInstances",
	"edit": "editAccountElementInstances",
	"delete": "deleteAccountElementInstances",
}

instance_ok if not input.instance

instance_ok if {
	owner.org == user.org
	input.instance.owner == user.name
}

instance_ok if {
	owner.org == user.org
	input.instance.owner != user.name
	holds_in(action_privilege[input.instance.action], owner.account)
}

privileges_ok if {
	not input.instance
	every p in input.privileges { holds(p) }
}

privileges_ok if {
	input.instance
	every p in input.privileges { holds_in(p, owner.account) }
}

element_ok if not input.element

element_ok if input.element in data.visible[concat("/", [user.namespace, user.org])]

allow if {
	authenticated
	instance_ok
	privileges_ok
	element_ok
}
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

/// A wrk script cycling through `requests` (already formatted by wrk.format at load), with
/// an optional pause per request (ms) to pace the rate.
fn wrk_script(requests: &[String], delay_ms: Option<f64>) -> String {
    let mut lua = String::from("local requests = {\n");
    for r in requests {
        lua.push_str(r);
        lua.push_str(",\n");
    }
    lua.push_str("}\nlocal i = math.random(#requests)\nrequest = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n");
    // wrk takes whole milliseconds: alternate between the two nearest so that the average
    // pause is `ms`.
    if let Some(ms) = delay_ms {
        let (floor, fraction) = (ms.floor(), ms - ms.floor());
        let _ = writeln!(
            lua,
            "delay = function() if math.random() < {fraction:.3} then return {} else return {} end end",
            floor + 1.0,
            floor
        );
    }
    lua
}

fn wrk_format(method: &str, path: &str, headers: &[(&str, String)], body: Option<&str>) -> String {
    let mut h = String::from("{");
    for (name, value) in headers {
        let _ = write!(h, "[{}] = {}, ", lua_string(name), lua_string(value));
    }
    h.push('}');
    let body = body.map_or("nil".to_owned(), lua_string);
    format!("wrk.format({}, {}, {h}, {body})", lua_string(method), lua_string(path))
}

/// Runs wrk; (requests per second, latency percentiles in ms by percentile).
fn wrk(url: &str, script: &Path, connections: usize, seconds: u64) -> (f64, BTreeMap<String, f64>) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (hack/ensure-bench-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let mut latencies = BTreeMap::new();
    let mut in_distribution = false;
    for line in text.lines() {
        if line.contains("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some(p), Some(v)) if p.ends_with('%') => {
                    latencies.insert(p.to_owned(), duration_ms(v));
                }
                _ => in_distribution = false,
            }
        }
    }
    eprintln!("bench-authz: wrk {url} -c{connections}: {rate:.0}/s {latencies:?}");
    (rate, latencies)
}

fn duration_ms(v: &str) -> f64 {
    let (number, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

struct Opa(Child);

impl Drop for Opa {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Http = HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The operator's answer to a check: the HTTP status.
async fn operator_status(http: &Http, addr: &str, check: &Check) -> u16 {
    let mut request = http::Request::get(format!("http://{addr}/authz/check"));
    for (name, value) in check.headers() {
        request = request.header(name, value);
    }
    let response = http.request(request.body(Full::default()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// OPA's answer to a check: allow.
async fn opa_allows(http: &Http, addr: &str, check: &Check) -> bool {
    let request = http::Request::post(format!("http://{addr}/v1/data/ce/allow"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(check.opa_input().to_string())))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    value["result"] == true
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("the authorization benchmark runs with `make bench-authz` (cargo bench --bench authz)");
        return;
    }
    let users_n: usize = arg(&args, "--users", 10_000);
    let accounts_n: usize = arg(&args, "--accounts", 100);
    let bindings_n: usize = arg(&args, "--bindings", 1000);
    let seconds: u64 = arg(&args, "--seconds", 10);
    let connections: usize = arg(&args, "--connections", 32);
    let mix_n: usize = arg(&args, "--mix", 2000);
    let samples: usize = arg(&args, "--samples", 100);
    let kubeconfig = kubeconfig();
    let client = client(&kubeconfig).await;
    install_crds(&kubeconfig);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ns = format!("bench-authz-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(&ns),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();

    // 1. The tenant, converged by the operator.
    let authz_addr = format!("127.0.0.1:{}", free_port());
    let tenant_api_addr = format!("127.0.0.1:{}", free_port());
    // What the tenant API's impersonated identity may write: the chart's RBAC.
    let rbac = Command::new(root().join(".local/bin/helm"))
        .args([
            "template",
            "ce",
            "charts/ce-operator",
            "--set",
            "tenantApi.enabled=true",
        ])
        .args(["--show-only", "templates/tenant-api-rbac.yaml"])
        .current_dir(root())
        .output()
        .expect("run .local/bin/helm");
    common::kubectl_apply(&kubeconfig, &String::from_utf8_lossy(&rbac.stdout));
    let operator = Operator::start(
        &kubeconfig,
        &ns,
        &[
            "--webhook=false".into(),
            "--authz-addr".into(),
            authz_addr.clone(),
            "--tenant-api-addr".into(),
            tenant_api_addr.clone(),
        ],
        out_dir.join(format!("authz-operator-{stamp}.log")),
    );
    operator.wait_ready().await;
    let org: Organization = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "org0"},
        "spec": {"displayName": "org0", "defaultAccountName": "org0-a0"}
    }))
    .unwrap();
    let accounts: Vec<Account> = (0..accounts_n)
        .map(|a| {
            Account::new(
                &format!("org0-a{a}"),
                AccountSpec {
                    organization_ref: LocalRef::new("org0"),
                    display_name: None,
                    default: a == 0,
                    allow_cascading_deletion: false,
                },
            )
        })
        .collect();
    let user_name = |u: usize| format!("u{u}");
    let users: Vec<CEUser> = (0..users_n)
        .map(|u| {
            CEUser::new(
                &user_name(u),
                CEUserSpec {
                    account_ref: LocalRef::new(format!("org0-a{}", u % accounts_n)),
                    email: format!("u{u}@bench.example"),
                    display_name: None,
                },
            )
        })
        .collect();
    // Admins on the first users; org-admin on u0 (in the default account).
    let mut bindings: Vec<RoleBinding> = (1..bindings_n.min(users_n))
        .map(|u| {
            RoleBinding::new(
                &format!("u{u}-admin"),
                RoleBindingSpec {
                    user_ref: LocalRef::new(user_name(u)),
                    role: Role::Admin,
                    override_system_role: false,
                },
            )
        })
        .collect();
    bindings.push(RoleBinding::new(
        "u0-org-admin",
        RoleBindingSpec {
            user_ref: LocalRef::new("u0"),
            role: Role::OrgAdmin,
            override_system_role: false,
        },
    ));
    let elements: Vec<String> = (0..50).map(|e| format!("element{e}")).collect();
    let safelist = ElementSafelist::new(
        "org0-list",
        ElementSafelistSpec {
            organization_ref: LocalRef::new("org0"),
            elements: elements.clone(),
        },
    );
    let objects = 2 + accounts.len() + users.len() + bindings.len();
    create_all(&Api::<Organization>::namespaced(client.clone(), &ns), vec![org]).await;
    create_all(&Api::namespaced(client.clone(), &ns), accounts).await;
    create_all(&Api::namespaced(client.clone(), &ns), users).await;
    create_all(&Api::namespaced(client.clone(), &ns), bindings).await;
    create_all(&Api::namespaced(client.clone(), &ns), vec![safelist]).await;
    let started = Instant::now();
    while operator.ready_objects() < objects as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not converged after 30 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "bench-authz: {objects} objects converged in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // 2. The data: secrets (read as a client application is given them) and the privileges
    // the operator put in each user's status.
    let secrets: BTreeMap<String, String> = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| {
            let value = s.data.as_ref()?.get("secret")?.0.clone();
            Some((s.name_any(), String::from_utf8(value).ok()?))
        })
        .collect();
    let index_bytes: usize = secrets
        .keys()
        .map(|name| 32 + 24 + 48 + ns.len() + name.len() + 16)
        .sum();
    let listed: Vec<CEUser> = Api::<CEUser>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let org_secret = secrets["org0-org-secret"].clone();
    let mut data_users = serde_json::Map::new();
    let mut owners = serde_json::Map::new();
    for u in &listed {
        let status = u.status.clone().unwrap_or_default();
        let scopes = status.privilege_scopes.clone().unwrap_or_default();
        owners.insert(
            format!("{ns}/{}", u.name_any()),
            serde_json::json!({"account": u.spec.account_ref.name, "org": "org0"}),
        );
        let Some(secret) = secrets.get(&format!("{}-user-secret", u.name_any())) else {
            continue;
        };
        data_users.insert(
            hex(&Sha256::digest(secret.as_bytes())),
            serde_json::json!({
                "name": u.name_any(), "namespace": ns, "org": "org0",
                "account": u.spec.account_ref.name,
                "org_privileges": scopes.organization, "account_privileges": scopes.account,
            }),
        );
    }
    let data = serde_json::json!({
        "users": data_users,
        "orgs": {hex(&Sha256::digest(org_secret.as_bytes())): {"name": "org0", "namespace": ns}},
        "owners": owners,
        "visible": {format!("{ns}/org0"): elements},
    });
    let opa_dir = out_dir.join(format!("opa-{stamp}"));
    std::fs::create_dir_all(&opa_dir).unwrap();
    std::fs::write(opa_dir.join("policy.rego"), POLICY).unwrap();
    std::fs::write(opa_dir.join("data.json"), data.to_string()).unwrap();
    let opa_addr = format!("127.0.0.1:{}", free_port());
    let _opa = Opa(Command::new(root().join(".local/bin/opa"))
        .args([
            "run",
            "--server",
            "--disable-telemetry",
            "--log-level",
            "error",
            "--addr",
            &opa_addr,
        ])
        .arg(opa_dir.join("policy.rego"))
        .arg(opa_dir.join("data.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run .local/bin/opa (hack/build-tools.sh opa)"));

    // 3. The mix: a third authentication only, a third a privilege, a sixth an element, a
    // sixth another user's instance; a few unknown secrets.
    let privileges = [
        "createElements",
        "viewActivity",
        "manageUsers",
        "createFormulaTemplates",
    ];
    let actions = ["view", "use", "edit", "delete"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mix: Vec<Check> = (0..mix_n)
        .map(|i| {
            let u = if i % 2 == 0 {
                next(bindings_n.min(users_n))
            } else {
                next(users_n)
            };
            let user_secret = if i % 50 == 49 {
                "not-a-secret".to_owned()
            } else {
                secrets[&format!("u{u}-user-secret")].clone()
            };
            let mut check = Check {
                authorization: format!("User {user_secret}, Organization {org_secret}"),
                privilege: None,
                element: None,
                instance: None,
            };
            match i % 6 {
                0 | 1 => {}
                2 | 3 => check.privilege = Some(privileges[next(privileges.len())]),
                4 => check.element = Some(format!("element{}", next(100))),
                _ => check.instance = Some((user_name(next(users_n)), actions[next(actions.len())])),
            }
            check
        })
        .collect();

    // 4. Both answer alike.
    let http: Http = HttpClient::builder(TokioExecutor::new()).build_http();
    let waited = Instant::now();
    while Command::new("curl")
        .args(["-sf", &format!("http://{opa_addr}/health")])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(waited.elapsed() < Duration::from_secs(60), "OPA did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut disagreements = 0;
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for check in &mix {
        let status = operator_status(&http, &authz_addr, check).await;
        *outcomes.entry(status).or_default() += 1;
        if (status == 200) != opa_allows(&http, &opa_addr, check).await {
            disagreements += 1;
        }
    }
    eprintln!("bench-authz: operator answers by status {outcomes:?}; disagreements with OPA {disagreements}");

    // 5. Throughput and latency, the same mix through wrk.
    let operator_requests: Vec<String> = mix
        .iter()
        .map(|c| wrk_format("GET", "/authz/check", &c.headers(), None))
        .collect();
    let opa_requests: Vec<String> = mix
        .iter()
        .map(|c| {
            wrk_format(
                "POST",
                "/v1/data/ce/allow",
                &[("Content-Type", "application/json".to_owned())],
                Some(&c.opa_input().to_string()),
            )
        })
        .collect();
    let script = |name: &str, requests: &[String], delay: Option<f64>| {
        let path = opa_dir.join(name);
        std::fs::write(&path, wrk_script(requests, delay)).unwrap();
        path
    };
    let mut report = Report {
        users: users_n,
        mix: mix_n,
        connections,
        seconds,
        disagreements,
        index_bytes,
        ..Default::default()
    };
    let operator_url = format!("http://{authz_addr}");
    let opa_url = format!("http://{opa_addr}");
    for (side, url, requests, name) in [
        (&mut report.operator, &operator_url, &operator_requests, "operator"),
        (&mut report.opa, &opa_url, &opa_requests, "opa"),
    ] {
        let (rate, latency) = wrk(
            url,
            &script(&format!("{name}.lua"), requests, None),
            connections,
            seconds,
        );
        side.saturated_per_sec = rate;
        side.saturated_p99_ms = latency.get("99%").copied().unwrap_or(0.0);
    }
    // Half of the operator's saturated rate, offered to both: each connection pauses between
    // requests. A connection sends one request per (pause + latency); the pause is set once,
    // then corrected by the latency the first paced run showed.
    let half = report.operator.saturated_per_sec / 2.0;
    let mut pause_ms = connections as f64 * 1000.0 / half;
    let (achieved, _) = wrk(
        &operator_url,
        &script("calibrate.lua", &operator_requests, Some(pause_ms)),
        connections,
        seconds.min(5),
    );
    let latency_ms = connections as f64 * 1000.0 / achieved.max(1.0) - pause_ms;
    pause_ms = (pause_ms - latency_ms).max(0.0);
    report.offered_per_sec = half;
    for (side, url, requests, name) in [
        (
            &mut report.operator,
            &operator_url,
            &operator_requests,
            "operator-paced",
        ),
        (&mut report.opa, &opa_url, &opa_requests, "opa-paced"),
    ] {
        let (rate, latency) = wrk(
            url,
            &script(&format!("{name}.lua"), requests, Some(pause_ms)),
            connections,
            seconds,
        );
        side.paced_per_sec = rate;
        side.paced_p50_ms = latency.get("50%").copied().unwrap_or(0.0);
        side.paced_p99_ms = latency.get("99%").copied().unwrap_or(0.0);
    }
    report.ratio = report.operator.saturated_per_sec / report.opa.saturated_per_sec.max(1.0);
    report.rss_mib = operator.rss().0 as f64 / 1048576.0;

    // 6. Changes in the decisions: bind admin to a user without it, then revoke it, and poll
    // the check until the decision flips.
    let binding_api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let mut changes = Vec::new();
    for i in 0..samples {
        let u = bindings_n.min(users_n) + 1 + i % (users_n - bindings_n.min(users_n) - 1).max(1);
        let check = Check {
            authorization: format!(
                "User {}, Organization {org_secret}",
                secrets[&format!("u{u}-user-secret")]
            ),
            privilege: Some("createElements"),
            element: None,
            instance: None,
        };
        let binding = admin_binding(&format!("u{u}-lat"), &user_name(u));
        for grant in [true, false] {
            let t = Instant::now();
            grant_or_revoke(&binding_api, &binding, grant).await;
            let expected = if grant { 200 } else { 403 };
            while operator_status(&http, &authz_addr, &check).await != expected {
                assert!(t.elapsed() < Duration::from_secs(60), "the decision never changed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            changes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    changes.sort_by(f64::total_cmp);
    report.change_samples = changes.len();
    report.change_p50_ms = percentile(&changes, 50.0);
    report.change_p99_ms = percentile(&changes, 99.0);

    // 7. The tenant API, as the org-admin u0: reads of users, then role grants and revocations
    // of users without one.
    let org_admin = format!("User {}, Organization {org_secret}", secrets["u0-user-secret"]);
    let tenant_call = |method: &'static str, path: String| {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{tenant_api_addr}{path}"))
            .header("authorization", org_admin.clone())
            .body(Full::default())
            .unwrap();
        let http = http.clone();
        async move {
            let t = Instant::now();
            let response = http.request(request).await.unwrap();
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            (status, t.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let mut reads = Vec::new();
    for i in 0..samples * 10 {
        let (status, ms) = tenant_call("GET", format!("/users/{}", user_name(1 + i * 7919 % (users_n - 1)))).await;
        assert_eq!(status, 200, "GET /users");
        reads.push(ms);
    }
    let mut writes = Vec::new();
    for i in 0..samples {
        let u = bindings_n.min(users_n) + 1 + i % (users_n - bindings_n.min(users_n) - 1).max(1);
        for (method, expected) in [("PUT", 201), ("DELETE", 200)] {
            let (status, ms) = tenant_call(method, format!("/users/{}/roles/admin", user_name(u))).await;
            assert_eq!(status, expected, "{method} /users/u{u}/roles/admin");
            writes.push(ms);
        }
    }
    for (samples, p50, p99, all) in [
        (
            &mut report.tenant_reads,
            &mut report.tenant_read_p50_ms,
            &mut report.tenant_read_p99_ms,
            &mut reads,
        ),
        (
            &mut report.tenant_writes,
            &mut report.tenant_write_p50_ms,
            &mut report.tenant_write_p99_ms,
            &mut writes,
        ),
    ] {
        all.sort_by(f64::total_cmp);
        *samples = all.len();
        *p50 = percentile(all, 50.0);
        *p99 = percentile(all, 99.0);
    }

    let r = &report;
    println!(
        "ce-operator authorization benchmark (2 cores, loopback, wrk -t2 -c{} -d{}s, {} checks in the mix, {} users)",
        r.connections, r.seconds, r.mix, r.users
    );
    println!("| measure | operator | OPA (same data, Rego) | target |");
    println!("|---|---|---|---|");
    println!(
        "| decisions per second, saturated | {:.0} | {:.0} | operator >= 5x OPA ({:.1}x) |",
        r.operator.saturated_per_sec, r.opa.saturated_per_sec, r.ratio
    );
    println!(
        "| p99 saturated | {:.2} ms | {:.2} ms | |",
        r.operator.saturated_p99_ms, r.opa.saturated_p99_ms
    );
    println!(
        "| paced at half the operator's saturated rate ({:.0}/s): achieved | {:.0}/s | {:.0}/s | |",
        r.offered_per_sec, r.operator.paced_per_sec, r.opa.paced_per_sec
    );
    println!(
        "| p50 / p99 at that rate | {:.2} / {:.2} ms | {:.2} / {:.2} ms | operator p99 <= 1 ms |",
        r.operator.paced_p50_ms, r.operator.paced_p99_ms, r.opa.paced_p50_ms, r.opa.paced_p99_ms
    );
    println!("| decisions that differ (whole mix) | {} | | 0 |", r.disagreements);
    println!(
        "| secret index at {} users (computed: digest, key, entry) | {:.1} MiB | | |",
        r.users,
        r.index_bytes as f64 / 1048576.0
    );
    println!("| operator RSS | {:.0} MiB | | |", r.rss_mib);
    println!(
        "| binding granted/revoked -> decision changed, p50 / p99 ({} changes) | {:.0} / {:.0} ms | | p99 <= 1000 ms |",
        r.change_samples, r.change_p50_ms, r.change_p99_ms
    );
    println!(
        "| tenant API GET /users/{{id}}, p50 / p99 ({} requests, one at a time) | {:.2} / {:.2} ms | | |",
        r.tenant_reads, r.tenant_read_p50_ms, r.tenant_read_p99_ms
    );
    println!(
        "| tenant API PUT / DELETE /users/{{userId}}/roles/admin until the caches hold it, p50 / p99 ({} requests) | {:.1} / {:.1} ms | | |",
        r.tenant_writes, r.tenant_write_p50_ms, r.tenant_write_p99_ms
    );
    let json = out_dir.join(format!("authz-{stamp}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("figures: {}", json.display());
    let _ = namespaces.delete(&ns, &Default::default()).await;
    let cleanup = Instant::now();
    while cleanup.elapsed() < Duration::from_secs(300) && namespaces.get_opt(&ns).await.ok().flatten().is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The figures compare two servers deciding the same thing: if they do not, the run fails.
    assert_eq!(r.disagreements, 0, "the operator and OPA decided the mix differently");
}
