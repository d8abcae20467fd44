//! The authorization endpoint end to end: a real NGINX with `auth_request` in front of an
//! upstream that echoes the identity headers, the same checks as Envoy's HTTP ext_authz
//! sends them (prefixed path, forwarded headers), `POST /v1/decisions`, and `ce-operator
//! can-i`, all against a tenant the operator converged on the real API server.

use crate::support;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ce_operator::api::{CEUser, ElementSafelist, HasConditions, Organization, RoleBinding};
use envoy_types::pb::envoy::{
    config::core::v3::{HeaderMap, HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction},
    service::auth::v3::{
        AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
        check_response::HttpResponse,
    },
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use support::{
    Operator, TIMEOUT, TestNamespace, apply, client, credentials, curl, install_crds, kubeconfig_path, repo_root,
    secret, wait_condition, wait_for, wait_ready, wait_until,
};
use tonic::transport::{Channel, ClientTlsConfig};

/// Two organizations in one namespace. acme (member of big, which denies box; safelists
/// salesforce, box and hubspot): default account hq with sam (org-admin) and kim (org),
/// account eu with jane (admin) and joe (default-user). globex: default account ghq with gus.
fn tenant(ns: &str) -> String {
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
spec:
  displayName: Acme
  defaultAccountName: hq
  superOrganizationRef: {{namespace: {ns}, name: big}}
  security: {{rotationGracePeriod: 20s}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {{name: globex}}
spec: {{displayName: Globex, defaultAccountName: ghq}}
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
kind: Account
metadata: {{name: ghq}}
spec: {{organizationRef: {{name: globex}}, default: true}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: sam}}
spec: {{accountRef: {{name: hq}}, email: sam@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: kim}}
spec: {{accountRef: {{name: hq}}, email: kim@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: jane}}
spec: {{accountRef: {{name: eu}}, email: jane@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: joe}}
spec: {{accountRef: {{name: eu}}, email: joe@acme.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {{name: gus}}
spec: {{accountRef: {{name: ghq}}, email: gus@globex.example}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {{name: sam-org-admin}}
spec: {{userRef: {{name: sam}}, role: org-admin}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {{name: jane-admin}}
spec: {{userRef: {{name: jane}}, role: admin}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {{name: acme-list}}
spec: {{organizationRef: {{name: acme}}, elements: [salesforce, box, hubspot]}}
"
    )
}

async fn converge(ns: &TestNamespace) {
    apply(&ns.name, &tenant(&ns.name));
    for org in ["acme", "globex"] {
        wait_condition(&ns.api::<Organization>(), org, "SecretReady", "True", "SecretIssued").await;
    }
    for user in ["sam", "kim", "jane", "joe", "gus"] {
        wait_condition(&ns.api::<CEUser>(), user, "SecretReady", "True", "SecretIssued").await;
    }
    for binding in ["sam-org-admin", "jane-admin"] {
        wait_ready(&ns.api::<RoleBinding>(), binding).await;
    }
    // box is on big's denylist: the safelist is in effect without it.
    wait_for(
        &ns.api::<ElementSafelist>(),
        "acme-list",
        "the denied element reported",
        TIMEOUT,
        |l| {
            l.condition("Ready")
                .is_some_and(|c| c.reason == "DeniedBySuperOrganization")
        },
    )
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// NGINX (the Debian package hack/ensure-deps.sh installs) as the API gateway: each route
/// sets the `X-CE-*` headers of what it does and asks the operator with `auth_request`; the
/// upstream echoes the identity headers the check returned. Stopped when dropped.
struct Gateway {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Gateway {
    fn start(authz: &str, name: &str) -> Self {
        let dir = repo_root().join("target/test-logs").join(format!("nginx-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (port, upstream) = (free_port(), free_port());
        let d = dir.display();
        let config = format!(
            r#"
daemon off;
# One process, no workers: killing it when the test ends leaves nothing behind.
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  # The upstream: echoes the identity the gateway forwards.
  server {{
    listen 127.0.0.1:{upstream};
    location / {{
      default_type text/plain;
      return 200 "upstream user=$http_x_ce_user organization=$http_x_ce_organization account=$http_x_ce_account roles=$http_x_ce_roles namespace=$http_x_ce_namespace\n";
    }}
  }}
  server {{
    listen 127.0.0.1:{port};
    # The route's checks are variables set by its location (a subrequest shares them; one
    # set at server level would be reset for the subrequest).
    location = /_authz {{
      internal;
      proxy_pass http://{authz}/authz/check$request_uri;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-CE-Privilege $ce_privilege;
      proxy_set_header X-CE-Element $ce_element;
      proxy_set_header X-CE-Instance-Owner $ce_owner;
      proxy_set_header X-CE-Instance-Action $ce_action;
    }}
    location /api/ {{
      auth_request /_authz;
      auth_request_set $ce_user $upstream_http_x_ce_user;
      auth_request_set $ce_org $upstream_http_x_ce_organization;
      auth_request_set $ce_account $upstream_http_x_ce_account;
      auth_request_set $ce_roles $upstream_http_x_ce_roles;
      auth_request_set $ce_namespace $upstream_http_x_ce_namespace;
      proxy_set_header X-CE-User $ce_user;
      proxy_set_header X-CE-Organization $ce_org;
      proxy_set_header X-CE-Account $ce_account;
      proxy_set_header X-CE-Roles $ce_roles;
      proxy_set_header X-CE-Namespace $ce_namespace;
      proxy_pass http://127.0.0.1:{upstream};
      location /api/formulas {{
        set $ce_privilege createFormulaTemplates;
        auth_request /_authz;
        proxy_pass http://127.0.0.1:{upstream};
      }}
      location ~ ^/api/elements/([a-z0-9-]+)$ {{
        set $ce_element $1;
        auth_request /_authz;
        proxy_pass http://127.0.0.1:{upstream};
      }}
      location ~ ^/api/instances/([a-z0-9-]+)/(view|use|edit|delete)$ {{
        set $ce_owner $1;
        set $ce_action $2;
        auth_request /_authz;
        proxy_pass http://127.0.0.1:{upstream};
      }}
    }}
  }}
}}
"#
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|n| Path::new(n).exists())
            .unwrap_or("nginx");
        let child = Command::new(nginx)
            .args(["-p", &dir.display().to_string(), "-c", &conf.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx (hack/ensure-deps.sh installs nginx-light)");
        let gateway = Self { child, port, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < TIMEOUT,
                "nginx did not listen: {}",
                std::fs::read_to_string(gateway.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gateway
    }

    fn get(&self, path: &str, authorization: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
        curl("GET", &format!("http://127.0.0.1:{}{path}", self.port), &headers, None)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same check as Envoy's HTTP ext_authz sends it: the original method and path under the
/// `/authz/check` prefix, the route's headers forwarded.
fn envoy_check(authz: &str, method: &str, path: &str, authorization: Option<&str>, route: &[(&str, &str)]) -> u16 {
    let mut headers: Vec<(&str, &str)> = route.to_vec();
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    curl(method, &format!("http://{authz}/authz/check{path}"), &headers, None).0
}

/// The route of a path of the NGINX gateway's configuration above, as the checks a gRPC
/// gateway would set for it.
fn route_of(path: &str) -> Vec<(&'static str, String)> {
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    match parts.as_slice() {
        ["formulas"] => vec![("X-CE-Privilege", "createFormulaTemplates".into())],
        ["elements", element] => vec![("X-CE-Element", (*element).into())],
        ["instances", owner, action] => vec![
            ("X-CE-Instance-Owner", (*owner).into()),
            ("X-CE-Instance-Action", (*action).into()),
        ],
        _ => vec![],
    }
}

/// A channel to the gRPC endpoint, over TLS when `tls` is given.
async fn grpc_channel(url: &str, tls: Option<ClientTlsConfig>) -> Channel {
    let mut endpoint = Channel::from_shared(url.to_owned()).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    endpoint
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"))
}

/// Where a gRPC gateway puts a route's checks: Envoy's per-route context extensions, or the
/// forwarded headers (a map, or with `encode_raw_headers` a list of raw values).
#[derive(Clone, Copy, Debug)]
enum Via {
    Extensions,
    Headers,
    RawHeaders,
}

/// The gRPC status code Envoy reads for an HTTP status.
fn grpc_code(http: u16) -> i32 {
    match http {
        200 => 0,
        400 => 3,
        403 => 7,
        401 => 16,
        other => panic!("no gRPC code for {other}"),
    }
}

fn check_request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
    route: &[(&str, impl AsRef<str>)],
    via: Via,
) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut extensions = HashMap::new();
    if let Some(a) = authorization {
        headers.insert("authorization".into(), a.into());
    }
    for (name, value) in route {
        let (name, value) = (name.to_ascii_lowercase(), value.as_ref().to_owned());
        match via {
            Via::Extensions => extensions.insert(name, value),
            Via::Headers | Via::RawHeaders => headers.insert(name, value),
        };
    }
    let header_map = matches!(via, Via::RawHeaders).then(|| HeaderMap {
        headers: std::mem::take(&mut headers)
            .into_iter()
            .map(|(key, value)| HeaderValue {
                key,
                value: String::new(),
                raw_value: value.into_bytes(),
            })
            .collect(),
    });
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers,
                    header_map,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: extensions,
            ..Default::default()
        }),
    }
}

/// What Envoy makes of a check's response.
struct GrpcAnswer {
    code: i32,
    http: u16,
    headers: HashMap<String, String>,
    /// Whether every header for the upstream replaces the client's.
    overwrites: bool,
    body: String,
}

async fn send(channel: &Channel, request: CheckRequest) -> GrpcAnswer {
    let response = AuthorizationClient::new(channel.clone())
        .check(request)
        .await
        .expect("a gRPC check")
        .into_inner();
    let code = response.status.map(|s| s.code).unwrap_or(-1);
    let headers_of = |headers: &[HeaderValueOption]| {
        headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect::<HashMap<_, _>>()
    };
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) => GrpcAnswer {
            code,
            http: 200,
            overwrites: ok
                .headers
                .iter()
                .all(|h| h.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32),
            headers: headers_of(&ok.headers),
            body: String::new(),
        },
        Some(HttpResponse::DeniedResponse(denied)) => GrpcAnswer {
            code,
            http: denied.status.map(|s| s.code as u16).unwrap_or(403),
            overwrites: false,
            headers: headers_of(&denied.headers),
            body: denied.body,
        },
        other => panic!("a check answered without an HTTP response: {other:?}"),
    }
}

/// Envoy's gRPC ext_authz check of a request with the route's checks.
async fn grpc_check(
    channel: &Channel,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    route: &[(&str, impl AsRef<str>)],
    via: Via,
) -> GrpcAnswer {
    send(channel, check_request(method, path, authorization, route, via)).await
}

#[tokio::test]
async fn a_gateway_lets_through_exactly_what_the_model_allows() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-gw").await;
    let operator = Operator::start_with(&ns.name, &ns.name, &["--authz-grpc-addr", "127.0.0.1:0"]);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let grpc = grpc_channel(&format!("http://{}", operator.authz_grpc_addr().await), None).await;
    let gateway = Gateway::start(&authz, &ns.name);
    let jane = credentials(&ns, "jane", "acme").await;
    let joe = credentials(&ns, "joe", "acme").await;
    let sam = credentials(&ns, "sam", "acme").await;
    let jane_globex = credentials(&ns, "jane", "globex").await;
    let gus = credentials(&ns, "gus", "globex").await;
    let unknown = format!(
        "User not-a-secret, Organization {}",
        secret(&ns, "acme-org-secret", "secret").await
    );

    // Good credentials reach the upstream with the identity.
    let (code, body) = gateway.get("/api/whoami", Some(&jane));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!(
            "user=jane organization=acme account=eu roles=admin,default-user namespace={}",
            ns.name
        )),
        "{body}"
    );

    // (what, path, credentials, expected status) through NGINX.
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("no credentials", "/api/whoami", None, 401),
        ("wrong organization secret", "/api/whoami", Some(&jane_globex), 401),
        ("unknown user secret", "/api/whoami", Some(&unknown), 401),
        ("malformed", "/api/whoami", Some("Bearer x"), 401),
        ("admin holds createFormulaTemplates", "/api/formulas", Some(&jane), 200),
        (
            "default-user lacks createFormulaTemplates",
            "/api/formulas",
            Some(&joe),
            403,
        ),
        ("own instance", "/api/instances/joe/delete", Some(&joe), 200),
        (
            "another user's instance without the privilege",
            "/api/instances/jane/view",
            Some(&joe),
            403,
        ),
        (
            "admin: an instance in its own account",
            "/api/instances/joe/edit",
            Some(&jane),
            200,
        ),
        (
            "admin: an instance in another account",
            "/api/instances/kim/view",
            Some(&jane),
            403,
        ),
        (
            "org-admin: any account's instance",
            "/api/instances/joe/delete",
            Some(&sam),
            200,
        ),
        (
            "another organization's instance",
            "/api/instances/gus/view",
            Some(&sam),
            403,
        ),
        (
            "another organization's caller",
            "/api/instances/joe/view",
            Some(&gus),
            403,
        ),
        ("a safelisted element", "/api/elements/salesforce", Some(&jane), 200),
        ("an element off the safelist", "/api/elements/zendesk", Some(&jane), 403),
        (
            "a safelisted element the super-organization denies",
            "/api/elements/box",
            Some(&jane),
            403,
        ),
        (
            "globex has no safelist: everything",
            "/api/elements/zendesk",
            Some(&gus),
            200,
        ),
    ];
    for (what, path, authorization, expected) in &cases {
        let (code, body) = gateway.get(path, *authorization);
        assert_eq!(code, *expected, "NGINX {what}: GET {path}\n{body}");
        assert!(!body.contains("not-a-secret"), "a secret echoed: {body}");
    }

    // The same checks as Envoy sends them, on the original method and path.
    type Route<'a> = Vec<(&'a str, &'a str)>;
    let envoy: Vec<(&str, &str, Option<&str>, Route, u16)> = vec![
        (
            "DELETE",
            "/v1/instances/1",
            Some(&sam),
            vec![("X-CE-Instance-Owner", "joe"), ("X-CE-Instance-Action", "delete")],
            200,
        ),
        (
            "DELETE",
            "/v1/instances/1",
            Some(&joe),
            vec![("X-CE-Instance-Owner", "jane"), ("X-CE-Instance-Action", "delete")],
            403,
        ),
        (
            "POST",
            "/v1/formulas",
            Some(&joe),
            vec![("X-CE-Privilege", "createFormulaTemplates")],
            403,
        ),
        (
            "POST",
            "/v1/formulas",
            Some(&jane),
            vec![("X-CE-Privilege", "createFormulaTemplates, createElements")],
            200,
        ),
        (
            "GET",
            "/v1/elements/box",
            Some(&jane),
            vec![("X-CE-Element", "box")],
            403,
        ),
        ("GET", "/", Some(&jane_globex), vec![], 401),
        ("GET", "/", None, vec![], 401),
        (
            "GET",
            "/",
            Some(&jane),
            vec![("X-CE-Privilege", "noSuchPrivilege")],
            400,
        ),
    ];
    for (method, path, authorization, route, expected) in &envoy {
        let code = envoy_check(&authz, method, path, *authorization, route);
        assert_eq!(code, *expected, "ext_authz {method} {path} {route:?}");
        // The same over gRPC, with the route's checks as context extensions and as headers.
        for via in [Via::Extensions, Via::Headers, Via::RawHeaders] {
            let answer = grpc_check(&grpc, method, path, *authorization, route, via).await;
            assert_eq!(
                (answer.http, answer.code),
                (*expected, grpc_code(*expected)),
                "gRPC ext_authz {method} {path} {route:?} {via:?}: {:?}",
                answer.body
            );
        }
    }
    // The whole NGINX matrix over gRPC too: each case's route as its checks.
    for (what, path, authorization, expected) in &cases {
        let route = route_of(path);
        let answer = grpc_check(&grpc, "GET", path, *authorization, &route, Via::Extensions).await;
        assert_eq!(answer.http, *expected, "gRPC {what}: {path}: {:?}", answer.body);
        assert!(
            !answer.body.contains("not-a-secret"),
            "a secret echoed: {}",
            answer.body
        );
    }
    // Allowed: the identity for the upstream, replacing what the client sent.
    let forged = [("X-CE-User", "mallory")];
    let answer = grpc_check(&grpc, "GET", "/", Some(&jane), &forged, Via::Headers).await;
    assert_eq!(answer.http, 200);
    assert_eq!(answer.headers.get("x-ce-user").map(String::as_str), Some("jane"));
    assert_eq!(
        answer.headers.get("x-ce-roles").map(String::as_str),
        Some("admin,default-user")
    );
    assert!(answer.overwrites, "identity headers must overwrite the client's");
    // A route's context extension wins over a header the client sent.
    let route = [("X-CE-Privilege", "createFormulaTemplates")];
    let mut asked = check_request("POST", "/v1/formulas", Some(&joe), &route, Via::Extensions);
    if let Some(http) = asked
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.insert("x-ce-privilege".into(), "".into());
    }
    let refused = send(&grpc, asked).await;
    assert_eq!(refused.http, 403, "{}", refused.body);
    // Unauthenticated: the challenge, as the HTTP endpoint sends it.
    let answer = grpc_check(&grpc, "GET", "/", None, &[] as &[(&str, &str)], Via::Headers).await;
    assert_eq!(answer.http, 401);
    assert!(answer.headers.contains_key("www-authenticate"), "{:?}", answer.headers);
    let (code, head) = curl("GET", &format!("http://{authz}/authz/check"), &[], None);
    assert_eq!(code, 401);
    assert!(head.to_lowercase().contains("www-authenticate:"), "{head}");

    // POST /v1/decisions: the same decision as JSON.
    let ask = |body: serde_json::Value| {
        let (code, text) = curl(
            "POST",
            &format!("http://{authz}/v1/decisions"),
            &[],
            Some(&body.to_string()),
        );
        assert_eq!(code, 200, "{text}");
        let json = text.split("\r\n\r\n").last().unwrap_or("");
        serde_json::from_str::<serde_json::Value>(json).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let allowed = ask(serde_json::json!({
        "authorization": jane, "instance": {"owner": "joe", "action": "use"}
    }));
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["identity"]["account"], "eu", "{allowed}");
    assert!(
        allowed["privileges"]["account"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "useAccountElementInstances")),
        "{allowed}"
    );
    let refused = ask(serde_json::json!({"authorization": joe, "privileges": ["createElements"]}));
    assert_eq!(refused["allowed"], false, "{refused}");
    assert_eq!(refused["outcome"], "forbidden", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("createElements"),
        "{refused}"
    );
    let unauthenticated = ask(serde_json::json!({"authorization": unknown}));
    assert_eq!(unauthenticated["outcome"], "unauthenticated", "{unauthenticated}");
    assert!(!unauthenticated.to_string().contains("not-a-secret"));

    // Failed authentications are counted by reason; no secret in the log.
    assert!(
        operator
            .metric(
                "ce_operator_authz_decisions_total",
                &[("outcome", "unauthenticated"), ("code", "unknown_user_secret")]
            )
            .await
            >= 2.0
    );
    assert!(
        operator
            .metric(
                "ce_operator_authz_decisions_total",
                &[("outcome", "unauthenticated"), ("code", "secrets_mismatch")]
            )
            .await
            >= 2.0
    );
    let log = operator.log_text();
    for user in ["jane", "joe", "sam"] {
        let value = secret(&ns, &format!("{user}-user-secret"), "secret").await;
        assert!(!log.contains(&value), "{user}'s secret is in the operator log");
    }
}

/// A route header that cannot be read, is sent twice, names an element or owner no object
/// could have, or an instance action without its owner: each is refused (400 over HTTP,
/// InvalidArgument with 400 over gRPC, outcome invalid with 400 from `/v1/decisions`),
/// never taken as an absent check. Before, such a header was skipped as absent, or judged
/// on its first value, or the key looked up as spelled (`Salesforce`: 403 where 400 is due).
#[tokio::test]
async fn ill_formed_route_headers_are_refused_never_skipped() {
    use std::{ffi::OsString, os::unix::ffi::OsStringExt};
    /// Headers as raw bytes, in order.
    type Headers<'a> = Vec<(&'a str, &'a [u8])>;

    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-ill").await;
    let operator = Operator::start_with(&ns.name, &ns.name, &["--authz-grpc-addr", "127.0.0.1:0"]);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let grpc = grpc_channel(&format!("http://{}", operator.authz_grpc_addr().await), None).await;
    let jane = credentials(&ns, "jane", "acme").await;
    let url = format!("http://{authz}/authz/check");
    // Each case: headers as raw bytes, so that a byte no header may hold goes out as it is.
    let http = |headers: &[(&str, &[u8])]| -> u16 {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url, "-H"]);
        cmd.arg(format!("Authorization: {jane}"));
        for (name, value) in headers {
            let mut header = format!("{name}: ").into_bytes();
            header.extend_from_slice(value);
            cmd.arg("-H").arg(OsString::from_vec(header));
        }
        let out = cmd.output().expect("run curl");
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    };
    assert_eq!(http(&[("X-CE-Element", b"salesforce")]), 200, "the well-formed check");
    let cases: [(&str, Headers); 6] = [
        ("an element key in capitals", vec![("X-CE-Element", b"Salesforce")]),
        (
            "a byte that is not visible ASCII",
            vec![("X-CE-Element", b"sales\xffforce")],
        ),
        (
            "a repeated element header",
            vec![("X-CE-Element", b"salesforce"), ("X-CE-Element", b"box")],
        ),
        (
            "a repeated privilege header",
            vec![
                ("X-CE-Privilege", b"createElements"),
                ("X-CE-Privilege", b"createElements"),
            ],
        ),
        (
            "an instance action without its owner",
            vec![("X-CE-Instance-Action", b"delete")],
        ),
        (
            "an owner that is no user name",
            vec![("X-CE-Instance-Owner", b"Joe"), ("X-CE-Instance-Action", b"view")],
        ),
    ];
    for (what, headers) in &cases {
        assert_eq!(http(headers), 400, "HTTP, {what}");
    }

    // gRPC: the same through the header map (a repeat is joined by Envoy), the raw header
    // list (a repeat is two entries) and the context extensions.
    let raw = |entries: &[(&str, &[u8])]| {
        let mut request = check_request("GET", "/api/x", Some(&jane), &[] as &[(&str, String)], Via::Headers);
        let http = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        let mut headers: Vec<HeaderValue> = entries
            .iter()
            .map(|(key, value)| HeaderValue {
                key: key.to_ascii_lowercase(),
                value: String::new(),
                raw_value: value.to_vec(),
            })
            .collect();
        headers.extend(
            std::mem::take(&mut http.headers)
                .into_iter()
                .map(|(key, value)| HeaderValue {
                    key,
                    value: String::new(),
                    raw_value: value.into_bytes(),
                }),
        );
        http.header_map = Some(HeaderMap { headers });
        request
    };
    for (what, headers) in &cases {
        let answer = send(&grpc, raw(headers)).await;
        assert_eq!(
            (answer.http, answer.code),
            (400, 3),
            "gRPC raw headers, {what}: {}",
            answer.body
        );
    }
    for (what, route) in [
        (
            "an element key in capitals",
            vec![("X-CE-Element", "Salesforce".to_owned())],
        ),
        ("a joined repeat", vec![("X-CE-Element", "salesforce,box".to_owned())]),
        (
            "an instance action without its owner",
            vec![("X-CE-Instance-Action", "delete".to_owned())],
        ),
    ] {
        for via in [Via::Headers, Via::Extensions] {
            let answer = grpc_check(&grpc, "GET", "/api/x", Some(&jane), &route, via).await;
            assert_eq!((answer.http, answer.code), (400, 3), "gRPC, {what}: {}", answer.body);
        }
    }

    // /v1/decisions.
    for body in [
        serde_json::json!({"authorization": jane, "element": "Salesforce"}),
        serde_json::json!({"authorization": jane, "instance": {"owner": "Joe", "action": "view"}}),
    ] {
        let (code, text) = curl(
            "POST",
            &format!("http://{authz}/v1/decisions"),
            &[],
            Some(&body.to_string()),
        );
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains("\"outcome\":\"invalid\""), "{text}");
    }
}

/// A refusal tells the caller that it failed, not who exists: an unknown user secret, a user
/// secret with another organization's secret, an instance owner of another organization and
/// one that does not exist are answered alike over HTTP and gRPC, while the metrics keep the
/// precise reason. Before, each named what it found (another organization, the owner).
#[tokio::test]
async fn a_refusal_tells_the_caller_nothing_about_who_exists() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-tell").await;
    let began = Instant::now();
    let operator = Operator::start_with(&ns.name, &ns.name, &["--authz-grpc-addr", "127.0.0.1:0"]);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let grpc = grpc_channel(&format!("http://{}", operator.authz_grpc_addr().await), None).await;
    let jane = credentials(&ns, "jane", "acme").await;
    let jane_globex = credentials(&ns, "jane", "globex").await;
    let unknown = format!(
        "User not-a-secret, Organization {}",
        secret(&ns, "acme-org-secret", "secret").await
    );
    let url = format!("http://{authz}/authz/check");
    let body_of = |(code, text): (u16, String)| (code, text.split("\r\n\r\n").last().unwrap_or("").to_owned());

    let unknown_user = body_of(curl("GET", &url, &[("Authorization", &unknown)], None));
    let mismatch = body_of(curl("GET", &url, &[("Authorization", &jane_globex)], None));
    assert_eq!(unknown_user.0, 401);
    assert_eq!(
        unknown_user, mismatch,
        "an unknown user and a wrong organization are told alike"
    );
    let owner = |owner: &str| {
        body_of(curl(
            "GET",
            &url,
            &[
                ("Authorization", &jane),
                ("X-CE-Instance-Owner", owner),
                ("X-CE-Instance-Action", "view"),
            ],
            None,
        ))
    };
    let (other_org, nobody) = (owner("gus"), owner("nobody"));
    assert_eq!(other_org.0, 403);
    assert_eq!(
        other_org, nobody,
        "a user of another organization and no user are told alike"
    );
    for (_, body) in [&unknown_user, &other_org] {
        assert!(
            !body.contains("globex") && !body.contains("gus") && !body.contains("jane"),
            "{body}"
        );
    }
    let instance = |owner: &str| {
        vec![
            ("X-CE-Instance-Owner", owner.to_owned()),
            ("X-CE-Instance-Action", "view".to_owned()),
        ]
    };
    let mut bodies = Vec::new();
    for (authorization, route) in [
        (&unknown, vec![]),
        (&jane_globex, vec![]),
        (&jane, instance("gus")),
        (&jane, instance("nobody")),
    ] {
        bodies.push(
            grpc_check(&grpc, "GET", "/api/x", Some(authorization), &route, Via::Extensions)
                .await
                .body,
        );
    }
    assert_eq!(
        bodies[0], bodies[1],
        "gRPC: an unknown user and a wrong organization are told alike"
    );
    assert_eq!(
        bodies[2], bodies[3],
        "gRPC: a user of another organization and no user are told alike"
    );

    // The metrics keep the precise reasons apart.
    for (outcome, code) in [
        ("unauthenticated", "unknown_user_secret"),
        ("unauthenticated", "secrets_mismatch"),
        ("forbidden", "other_organization"),
        ("forbidden", "unknown_instance_owner"),
    ] {
        let counted = operator
            .metric(
                "ce_operator_authz_decisions_total",
                &[("outcome", outcome), ("code", code)],
            )
            .await;
        assert!(
            counted >= 2.0,
            "{code} counted {counted} times, not apart (HTTP and gRPC)"
        );
    }

    // A flood of refusals does not flood the log: past the line's budget (bursts of 100, then
    // 20 a second) it is dropped, and counted, so every refusal is either logged or counted.
    for _ in 0..1_000 {
        grpc_check(
            &grpc,
            "GET",
            "/api/x",
            Some(&unknown),
            &[] as &[(&str, &str)],
            Via::Extensions,
        )
        .await;
    }
    let decisions = "ce_operator_authz_decisions_total";
    let refusals = operator.metric(decisions, &[]).await - operator.metric(decisions, &[("outcome", "allowed")]).await;
    let suppressed = operator
        .metric(
            "ce_operator_log_lines_suppressed_total",
            &[("line", "authorization_refused")],
        )
        .await;
    let logged = operator
        .log_of_this_start()
        .lines()
        .filter(|l| l.contains("authorization refused"))
        .count() as f64;
    let budget = 100.0 + 20.0 * began.elapsed().as_secs_f64().ceil();
    eprintln!("{refusals} refusals: {logged} logged, {suppressed} suppressed (budget {budget})");
    assert!(logged <= budget, "{logged} refusal lines, over the budget of {budget}");
    assert!(suppressed > 0.0);
    assert_eq!(logged + suppressed, refusals, "every refusal is logged or counted");
}

/// Any pod can open connections to the endpoints. 1,000 that say nothing or stop halfway
/// through a header neither starve a real check nor stay open past the server's header
/// timeout (10 s), plain text and over TLS alike; a body over the limit is refused (413).
/// Before, such connections stayed open for ever (hyper had no timer).
#[tokio::test]
async fn idle_connections_neither_starve_a_check_nor_stay_open() {
    use std::{
        io::{ErrorKind, Read, Write},
        net::TcpStream,
    };

    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-idle").await;
    let operator = Operator::start_with(&ns.name, &ns.name, &["--authz-grpc-addr", "127.0.0.1:0"]);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let webhook = operator.webhook_addr().await;
    let jane = credentials(&ns, "jane", "acme").await;

    let opened = Instant::now();
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..1000 {
        let addr = if i % 4 == 3 { &webhook } else { &authz };
        let mut tcp = TcpStream::connect(addr).expect("connect");
        match i % 4 {
            // Half a header, then silence.
            1 => tcp
                .write_all(b"GET /authz/check HTTP/1.1\r\nHost: x\r\nX-CE-El")
                .unwrap(),
            // The first bytes of the h2c preface, then silence.
            2 => tcp.write_all(b"PRI * HT").unwrap(),
            // Nothing at all (and no TLS handshake, to the webhook).
            _ => {}
        }
        tcp.set_nonblocking(true).unwrap();
        held.push(tcp);
    }
    let (code, body) = curl(
        "GET",
        &format!("http://{authz}/authz/check"),
        &[("Authorization", &jane)],
        None,
    );
    assert_eq!(code, 200, "a real check while 1,000 connections are held: {body}");
    let (code, _) = curl(
        "POST",
        &format!("http://{authz}/v1/decisions"),
        &[],
        Some(&format!("{{\"authorization\": \"{}\"}}", "x".repeat(100 * 1024))),
    );
    assert_eq!(code, 413, "a decision request over 64 KiB");

    // Every held connection is closed by the server (EOF or reset) once the timeout passes.
    let open = |held: &mut Vec<TcpStream>| {
        held.retain_mut(|tcp| {
            let mut byte = [0u8; 1];
            matches!(tcp.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
        });
        held.len()
    };
    let held = std::sync::Mutex::new(held);
    wait_until(
        "the server to close the idle connections",
        Duration::from_secs(25),
        || {
            let left = open(&mut held.lock().unwrap());
            async move { left == 0 }
        },
    )
    .await;
    let closed_after = opened.elapsed();
    eprintln!("1,000 idle connections closed by the server {closed_after:?} after they were opened");
    assert!(
        closed_after >= Duration::from_secs(9),
        "closed before the header timeout: {closed_after:?}"
    );
    let (code, _) = curl(
        "GET",
        &format!("http://{authz}/authz/check"),
        &[("Authorization", &jane)],
        None,
    );
    assert_eq!(code, 200, "and the endpoint still answers");
}

/// Polls a request through the NGINX gateway until it answers `expected`; how long that took.
async fn until_gateway(gateway: &Gateway, path: &str, authorization: &str, expected: u16) -> Duration {
    let started = Instant::now();
    wait_until(&format!("the gateway to answer {expected} for {path}"), TIMEOUT, || {
        let code = gateway.get(path, Some(authorization)).0;
        async move { code == expected }
    })
    .await;
    started.elapsed()
}

/// Polls the gateway-style check until it answers `expected`; how long that took.
async fn until_status(authz: &str, authorization: &str, route: &[(&str, &str)], expected: u16) -> Duration {
    let started = Instant::now();
    wait_until(&format!("the check to answer {expected}"), TIMEOUT, || {
        let code = envoy_check(authz, "GET", "/", Some(authorization), route);
        async move { code == expected }
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn changes_take_effect_in_the_decisions_and_can_i_agrees() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-changes").await;
    let operator = Operator::start(&ns.name);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let gateway = Gateway::start(&authz, &ns.name);
    let create = [("X-CE-Privilege", "createElements")];

    // can-i: the same decision, from the objects, without a secret.
    let can_i = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ce-operator"))
            .args(["can-i", "--kubeconfig"])
            .arg(kubeconfig_path())
            .args(["-n", &ns.name])
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, said) = can_i(&["--user", "jane", "--privilege", "createElements"]);
    assert_eq!((code, said.starts_with("yes")), (Some(0), true), "{said}");
    let (code, said) = can_i(&["--user", "jane", "--instance-owner", "kim", "--action", "view"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.starts_with("no - ") && said.contains("viewAccountElementInstances"),
        "{said}"
    );
    let (code, said) = can_i(&["--user", "nobody"]);
    assert_eq!(code, Some(1), "{said}");

    // A revoked RoleBinding: jane loses createElements.
    let jane = credentials(&ns, "jane", "acme").await;
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&jane), &create), 200);
    ns.api::<RoleBinding>()
        .delete("jane-admin", &DeleteParams::default())
        .await
        .unwrap();
    let revoked = until_status(&authz, &jane, &create, 403).await;
    eprintln!("a revoked binding took effect in {revoked:?}");
    // Through the gateway too (its formulas route needs createFormulaTemplates, which only
    // the admin binding gave jane).
    let revoked = until_gateway(&gateway, "/api/formulas", &jane, 403).await;
    eprintln!("... and at the NGINX gateway after {revoked:?} more");
    let (code, _) = can_i(&["--user", "jane", "--privilege", "createElements"]);
    assert_eq!(code, Some(1));

    // Rotation: the previous secret works during the grace period (20 s), then not.
    let old = jane.clone();
    let users: Api<CEUser> = ns.api();
    let before = users.get("jane").await.unwrap().status.unwrap().secret_fingerprint;
    users
        .patch(
            "jane",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"ce.tenancy.io/rotate-secret": "1"}}})),
        )
        .await
        .unwrap();
    wait_for(&users, "jane", "the rotated fingerprint", TIMEOUT, |u| {
        u.status.as_ref().and_then(|s| s.secret_fingerprint.clone()) != before
    })
    .await;
    let new = credentials(&ns, "jane", "acme").await;
    assert_ne!(new, old);
    until_status(&authz, &new, &[], 200).await;
    assert_eq!(
        envoy_check(&authz, "GET", "/", Some(&old), &[]),
        200,
        "the previous secret must work during the grace period"
    );
    assert_eq!(gateway.get("/api/whoami", Some(&old)).0, 200, "at the gateway too");
    assert_eq!(gateway.get("/api/whoami", Some(&new)).0, 200);
    let expired = until_gateway(&gateway, "/api/whoami", &old, 401).await;
    eprintln!("the previous secret stopped working at the gateway {expired:?} after the rotation was seen");
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&old), &[]), 401);
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&new), &[]), 200);
    assert_eq!(gateway.get("/api/whoami", Some(&new)).0, 200);

    // A value changed by hand authenticates nobody (`a_planted_or_changed_secret_...`);
    // deleting the Secret has a new one issued, which works at once.
    let secrets: Api<Secret> = ns.api();
    let before = users.get("jane").await.unwrap().status.unwrap().secret_fingerprint;
    secrets
        .delete("jane-user-secret", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&users, "jane", "a new secret after the deletion", TIMEOUT, |u| {
        u.status
            .as_ref()
            .and_then(|s| s.secret_fingerprint.clone())
            .is_some_and(|f| Some(f) != before)
    })
    .await;
    let reissued = credentials(&ns, "jane", "acme").await;
    until_status(&authz, &reissued, &[], 200).await;
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&new), &[]), 401);

    // A changed safelist: zendesk listed, then visible to acme's users.
    let sam = credentials(&ns, "sam", "acme").await;
    let zendesk = [("X-CE-Element", "zendesk")];
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&sam), &zendesk), 403);
    ns.api::<ElementSafelist>()
        .patch(
            "acme-list",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"elements": ["salesforce", "box", "hubspot", "zendesk"]}})),
        )
        .await
        .unwrap();
    let listed = until_status(&authz, &sam, &zendesk, 200).await;
    eprintln!("a changed safelist took effect in {listed:?}");

    // A changed privilege matrix: acme's org-admins lose createElements.
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&sam), &create), 200);
    ns.api::<Organization>()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"roles": [{"role": "org-admin", "revoke": ["createElements"]}]}}),
            ),
        )
        .await
        .unwrap();
    let matrix = until_status(&authz, &sam, &create, 403).await;
    eprintln!("a changed privilege matrix took effect in {matrix:?}");

    // The super-organization stops accepting acme (or goes, or cannot be read): its denylist
    // is never taken as empty, so acme's users see no element until the link is accepted.
    let salesforce = [("X-CE-Element", "salesforce")];
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&sam), &salesforce), 200);
    let allow = |namespaces: Vec<String>| serde_json::json!({"spec": {"whitelabel": {"allowedNamespaces": namespaces, "elementDenylist": ["box"]}}});
    let orgs = ns.api::<Organization>();
    orgs.patch(
        "big",
        &PatchParams::default(),
        &Patch::Merge(allow(vec!["elsewhere".into()])),
    )
    .await
    .unwrap();
    let withheld = until_status(&authz, &sam, &salesforce, 403).await;
    eprintln!("a refused super-organization link withheld every element after {withheld:?}");
    orgs.patch(
        "big",
        &PatchParams::default(),
        &Patch::Merge(allow(vec![ns.name.clone()])),
    )
    .await
    .unwrap();
    until_status(&authz, &sam, &salesforce, 200).await;

    // A deleted user no longer authenticates.
    let joe = credentials(&ns, "joe", "acme").await;
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&joe), &[]), 200);
    users.delete("joe", &DeleteParams::default()).await.unwrap();
    let deleted = until_status(&authz, &joe, &[], 401).await;
    eprintln!("a deleted user stopped authenticating after {deleted:?}");
}

/// A Secret as someone with Secret rights in the namespace writes it: the operator's
/// labels, a controller reference to `owner` (apiVersion, kind, name, uid) and `data`.
fn planted(name: &str, owner: (&str, &str, &str, &str), data: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    let (api_version, kind, owner_name, uid) = owner;
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "ce-operator", "ce.tenancy.io/secret-of": "user"},
            "annotations": annotations.iter().copied().collect::<HashMap<_, _>>(),
            "ownerReferences": [{
                "apiVersion": api_version, "kind": kind, "name": owner_name, "uid": uid, "controller": true,
            }],
        },
        "stringData": data.iter().copied().collect::<HashMap<_, _>>(),
    }))
    .unwrap()
}

/// Issue 26 (High): only the Secret the operator issued authenticates. Before seals, a
/// Secret of any name with the operator's label and a controller reference to sam
/// authenticated as sam (org-admin), so did one holding only `previous`; a copy of sam's
/// value under a name sorting first locked sam out; a value squatted at a user's generated
/// name before it was issued was adopted; and a value changed by hand was honoured.
#[tokio::test]
async fn a_planted_or_changed_secret_authenticates_nobody() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-plant").await;
    let operator = Operator::start(&ns.name);
    converge(&ns).await;
    let authz = operator.authz_addr().await;
    let users: Api<CEUser> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let org_secret = secret(&ns, "acme-org-secret", "secret").await;
    let with_org = |user_value: &str| format!("User {user_value}, Organization {org_secret}");
    let sam_uid = users.get("sam").await.unwrap().metadata.uid.unwrap();
    let sam = ("ce.tenancy.io/v1alpha1", "CEUser", "sam", sam_uid.as_str());
    let sam_real = credentials(&ns, "sam", "acme").await;
    let jane_real = credentials(&ns, "jane", "acme").await;
    assert_eq!(envoy_check(&authz, "GET", "/", Some(&sam_real), &[]), 200);

    let chosen = "chosen-by-the-attacker-0123456789abcdefghij";
    let old = "an-old-value-0123456789abcdefghijklmnopqrstu";
    let in_an_hour =
        (k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1)).to_string();
    let sam_value = secret(&ns, "sam-user-secret", "secret").await;
    let plants = [
        planted("any-name", sam, &[("secret", chosen)], &[]),
        planted(
            "only-previous",
            sam,
            &[("previous", old)],
            &[("ce.tenancy.io/previous-expires-at", &in_an_hour)],
        ),
        // sam's own value, under a name that sorts before sam's Secret, controlled by
        // someone else: a lock-out, if the first Secret holding a digest decided.
        planted(
            "0-copy",
            ("ce.tenancy.io/v1alpha1", "CEUser", "nobody", "0000"),
            &[("secret", &sam_value)],
            &[],
        ),
        // The same namespace, name and uid in another API group.
        planted(
            "sam-user-secret-evil",
            ("evil.example.com/v1", "CEUser", "sam", &sam_uid),
            &[("secret", chosen)],
            &[],
        ),
    ];
    for plant in &plants {
        secrets.create(&Default::default(), plant).await.unwrap();
    }
    // A value squatted at a user's generated name before the operator issued one: lee's
    // account does not exist yet, so lee has no secret; then it does.
    apply(
        &ns.name,
        "{apiVersion: ce.tenancy.io/v1alpha1, kind: CEUser, metadata: {name: lee}, spec: {accountRef: {name: later}, email: lee@acme.example}}",
    );
    let lee_uid = users.get("lee").await.unwrap().metadata.uid.unwrap();
    let squat = planted(
        "lee-user-secret",
        ("ce.tenancy.io/v1alpha1", "CEUser", "lee", &lee_uid),
        &[("secret", chosen)],
        &[],
    );
    secrets.create(&Default::default(), &squat).await.unwrap();
    apply(
        &ns.name,
        "{apiVersion: ce.tenancy.io/v1alpha1, kind: Account, metadata: {name: later}, spec: {organizationRef: {name: acme}}}",
    );
    let lee = wait_for(&users, "lee", "lee's secret judged", TIMEOUT, |u| {
        u.condition("SecretReady")
            .is_some_and(|c| ["SecretIssued", "SecretUnverified"].contains(&c.reason.as_str()))
    })
    .await;
    let lee_secret = lee.condition("SecretReady").unwrap();
    assert_eq!(
        (lee_secret.status.as_str(), lee_secret.reason.as_str()),
        ("False", "SecretUnverified"),
        "a squatted value is not adopted: {}",
        lee_secret.message
    );

    // A value changed by hand: jane's. The operator reports it, which also shows its caches
    // have seen every Secret written before (one watch, in order).
    secrets
        .patch(
            "jane-user-secret",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"secret": chosen}})),
        )
        .await
        .unwrap();
    let jane = wait_condition(&users, "jane", "SecretReady", "False", "SecretUnverified").await;
    assert!(
        jane.condition("SecretReady").unwrap().message.contains("Delete it"),
        "the message says what to do"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    let warned = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("SecretUnverified")
                && e.type_.as_deref() == Some("Warning")
                && e.involved_object.name.as_deref() == Some("jane")
        });
    assert!(warned, "a Warning event on jane");

    for (what, value) in [
        ("a planted Secret of any name", chosen),
        ("a planted previous value", old),
        ("a squatted value", chosen),
        ("a value changed by hand", chosen),
    ] {
        assert_eq!(
            envoy_check(&authz, "GET", "/", Some(&with_org(value)), &[]),
            401,
            "{what} must not authenticate"
        );
    }
    assert_eq!(
        envoy_check(&authz, "GET", "/", Some(&jane_real), &[]),
        401,
        "the value replaced by hand is not jane's any more either"
    );
    assert_eq!(
        envoy_check(&authz, "GET", "/", Some(&sam_real), &[]),
        200,
        "a copy of sam's value elsewhere locks nobody out"
    );
    // Nothing was overwritten: the Secrets hold what was written into them.
    assert_eq!(secret(&ns, "jane-user-secret", "secret").await, chosen);
    assert_eq!(secret(&ns, "lee-user-secret", "secret").await, chosen);
}

/// A CA, and certificates it signs.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate and key for `names` (a server's) or, without names, a client's.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params.extended_key_usages = vec![if names.is_empty() {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.distinguished_name.push(rcgen::DnType::CommonName, "gateway");
        let key = rcgen::KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// `curl` over TLS trusting `ca`, with the client certificate of `client` if given: the HTTP
/// status, or None when the connection is refused.
fn tls_status(url: &str, ca: &Path, client: Option<(&Path, &Path)>, authorization: &str) -> Option<u16> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: {authorization}"), url]);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = cmd.output().expect("run curl");
    let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (out.status.success() && code != 0).then_some(code)
}

#[tokio::test]
async fn both_endpoints_serve_mutual_tls_and_a_renewed_certificate_without_a_restart() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "authz-tls").await;
    let dir = repo_root().join("target/test-logs").join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, content: &str| {
        let path = dir.join(name);
        // Written whole, then renamed into place: as the kubelet swaps a Secret volume.
        let staged = dir.join(format!(".{name}"));
        std::fs::write(&staged, content).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        path
    };
    let (server_ca, gateway_ca) = (TestCa::new("server CA"), TestCa::new("gateway CA"));
    let (cert, key) = server_ca.sign(&["localhost", "127.0.0.1"]);
    let (cert_file, key_file) = (file("tls.crt", &cert), file("tls.key", &key));
    let server_ca_file = file("server-ca.crt", &server_ca.pem);
    let gateway_ca_file = file("gateway-ca.crt", &gateway_ca.pem);
    let (gw_cert, gw_key) = gateway_ca.sign(&[]);
    let gw = (file("gw.crt", &gw_cert), file("gw.key", &gw_key));
    let path = |p: &Path| p.display().to_string();
    let operator = Operator::start_with(
        &ns.name,
        &ns.name,
        &[
            "--authz-grpc-addr",
            "127.0.0.1:0",
            "--authz-tls-cert-file",
            &path(&cert_file),
            "--authz-tls-key-file",
            &path(&key_file),
            "--authz-tls-client-ca-file",
            &path(&gateway_ca_file),
        ],
    );
    converge(&ns).await;
    let jane = credentials(&ns, "jane", "acme").await;
    let check = format!("https://{}/authz/check", operator.authz_addr().await);

    // HTTP: the gateway's certificate is required.
    let gw_pair = Some((gw.0.as_path(), gw.1.as_path()));
    assert_eq!(tls_status(&check, &server_ca_file, gw_pair, &jane), Some(200));
    assert_eq!(
        tls_status(&check, &server_ca_file, gw_pair, "User x, Organization y"),
        Some(401)
    );
    assert_eq!(
        tls_status(&check, &server_ca_file, None, &jane),
        None,
        "a client without a certificate must be refused"
    );
    let (other_cert, other_key) = TestCa::new("another CA").sign(&[]);
    let other = (file("other.crt", &other_cert), file("other.key", &other_key));
    assert_eq!(
        tls_status(&check, &server_ca_file, Some((&other.0, &other.1)), &jane),
        None,
        "a client certificate of another CA must be refused"
    );

    // gRPC over the same TLS.
    let grpc_url = format!("https://{}", operator.authz_grpc_addr().await);
    let tls = |ca: &str| {
        ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .identity(tonic::transport::Identity::from_pem(&gw_cert, &gw_key))
            .domain_name("localhost")
    };
    let grpc = grpc_channel(&grpc_url, Some(tls(&server_ca.pem))).await;
    let answer = grpc_check(
        &grpc,
        "GET",
        "/",
        Some(&jane),
        &[("X-CE-Privilege", "createElements")],
        Via::Extensions,
    )
    .await;
    assert_eq!((answer.http, answer.code), (200, 0), "{}", answer.body);

    // Renewed (by another CA, so that which one is served shows): served from the next
    // handshakes on, without a restart.
    let renewing_ca = TestCa::new("renewed server CA");
    let renewed_ca_file = file("renewed-ca.crt", &renewing_ca.pem);
    let (cert, key) = renewing_ca.sign(&["localhost", "127.0.0.1"]);
    let renewed = Instant::now();
    file("tls.key", &key);
    file("tls.crt", &cert);
    wait_until("the renewed certificate served", TIMEOUT, || async {
        tls_status(&check, &renewed_ca_file, gw_pair, &jane) == Some(200)
    })
    .await;
    eprintln!(
        "the renewed certificate was served {:?} after it was written",
        renewed.elapsed()
    );
    assert_eq!(
        tls_status(&check, &server_ca_file, gw_pair, &jane),
        None,
        "the previous certificate is no longer served"
    );
    let grpc = grpc_channel(&grpc_url, Some(tls(&renewing_ca.pem))).await;
    let answer = grpc_check(&grpc, "GET", "/", Some(&jane), &[] as &[(&str, &str)], Via::Headers).await;
    assert_eq!(answer.http, 200, "{}", answer.body);

    // A broken pair written over it: the renewed one stays.
    file("tls.key", &TestCa::new("x").sign(&["localhost"]).1);
    wait_until("the operator to warn of the broken pair", TIMEOUT, || {
        let warned = operator.log_text().contains("still serving the previous certificate");
        tls_status(&check, &renewed_ca_file, gw_pair, &jane);
        async move { warned }
    })
    .await;
    assert_eq!(tls_status(&check, &renewed_ca_file, gw_pair, &jane), Some(200));
    for secret_value in [&key, &gw_key] {
        assert!(!operator.log_text().contains(secret_value.lines().nth(1).unwrap()));
    }
}
