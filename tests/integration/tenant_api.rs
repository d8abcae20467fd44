//! Issue 28, door 2: the seeds' REST routes, called with curl as a CE user's client would
//! (its two secrets in `Authorization`), against an operator that writes through the real API
//! server as the tenant (impersonated), with the admission webhook installed: every route
//! allowed and refused, what a refusal leaves (nothing), and that a write shows at once in
//! `kubectl get` and in the authorization decisions.

use crate::support;

use ce_operator::api::{Account, CEUser, ElementSafelist, Organization, RoleBinding};
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::Value;
use support::{
    apply, client, credentials, curl, identity, install_crds, kubectl_as, secret, tempdir, wait_condition, wait_ready,
};

/// acme: default account hq with sam (org-admin), account eu with jane (admin) and joe,
/// safelist [salesforce]; globex: default account ghq with gus (org-admin).
const TENANT: &str = "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme, defaultAccountName: hq}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: hq}
spec: {organizationRef: {name: acme}, default: true}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: eu}
spec: {organizationRef: {name: acme}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: sam}
spec: {accountRef: {name: hq}, email: sam@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: jane}
spec: {accountRef: {name: eu}, email: jane@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: joe}
spec: {accountRef: {name: eu}, email: joe@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: sam-org-admin}
spec: {userRef: {name: sam}, role: org-admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: jane-admin}
spec: {userRef: {name: jane}, role: admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {name: acme-list}
spec: {organizationRef: {name: acme}, elements: [salesforce]}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: globex}
spec: {displayName: Globex, defaultAccountName: ghq}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: ghq}
spec: {organizationRef: {name: globex}, default: true}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: gus}
spec: {accountRef: {name: ghq}, email: gus@globex.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: gus-org-admin}
spec: {userRef: {name: gus}, role: org-admin}
";

/// The chart's RBAC for the tenant API's identity (what the impersonated user may write).
fn chart_rbac() -> String {
    support::helm_template(&[
        "ce",
        "charts/ce-operator",
        "--set",
        "tenantApi.enabled=true",
        "--show-only",
        "templates/tenant-api-rbac.yaml",
    ])
}

/// A client of the tenant API: one caller's credentials (None: none sent).
struct Caller<'a> {
    base: &'a str,
    authorization: Option<String>,
}

impl Caller<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let header = self.authorization.as_deref().map(|a| ("authorization", a));
        let (code, text) = curl(method, &format!("{}{path}", self.base), header.as_slice(), body);
        // curl -i: the headers, a blank line, the body.
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        (code, json)
    }

    /// The call, which must answer `code`; its body.
    fn expect(&self, method: &str, path: &str, body: Option<&str>, code: u16) -> Value {
        let (got, json) = self.call(method, path, body);
        assert_eq!(got, code, "{method} {path} {body:?}: {json}");
        json
    }

    /// The call, refused with `code` and a message containing `words`.
    fn refused(&self, method: &str, path: &str, body: Option<&str>, code: u16, words: &str) {
        let json = self.expect(method, path, body, code);
        let message = json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(words) && json["error"].is_string(),
            "{method} {path}: {json} lacks {words:?}"
        );
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The bindings of `user` to `role`, as the API server holds them.
async fn bindings(api: &Api<RoleBinding>, user: &str, role: &str) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| {
            b.spec.user_ref.name == user && b.spec.role.key() == role && b.metadata.deletion_timestamp.is_none()
        })
        .map(|b| b.name_any())
        .collect()
}

/// What the authorization endpoint decides for `authorization` asking `question` (JSON).
fn decide(authz: &str, authorization: &str, question: &str) -> Value {
    let body = format!(
        "{{\"authorization\": {}, {question}}}",
        serde_json::to_string(authorization).unwrap()
    );
    let (code, text) = curl("POST", &format!("http://{authz}/v1/decisions"), &[], Some(&body));
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// The field managers of an object.
fn managers<K: kube::Resource>(object: &K) -> Vec<String> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect()
}

#[tokio::test]
async fn every_route_does_what_the_callers_roles_allow_and_nothing_else() {
    let client = client().await;
    install_crds(&client).await;
    let (ns, operator, _webhook) =
        support::with_webhook_and(&client, "tenant-api", &["--tenant-api-addr", "127.0.0.1:0"]).await;
    apply(&ns.name, &chart_rbac());
    apply(&ns.name, TENANT);
    for user in ["sam", "jane", "joe", "gus"] {
        wait_condition(&ns.api::<CEUser>(), user, "SecretReady", "True", "SecretIssued").await;
        wait_ready(&ns.api::<CEUser>(), user).await;
    }
    for org in ["acme", "globex"] {
        wait_condition(&ns.api::<Organization>(), org, "SecretReady", "True", "SecretIssued").await;
    }
    wait_condition(
        &ns.api::<Organization>(),
        "acme",
        "AdminPresent",
        "True",
        "OrgAdminPresent",
    )
    .await;
    wait_ready(&ns.api::<RoleBinding>(), "jane-admin").await;
    wait_ready(&ns.api::<ElementSafelist>(), "acme-list").await;

    let base = format!("http://{}", operator.tenant_api_addr().await);
    let authz = operator.authz_addr().await;
    let as_user = |authorization: Option<String>| Caller {
        base: &base,
        authorization,
    };
    let (sam_key, jane_key, joe_key) = (
        credentials(&ns, "sam", "acme").await,
        credentials(&ns, "jane", "acme").await,
        credentials(&ns, "joe", "acme").await,
    );
    let (sam, jane, joe) = (
        as_user(Some(sam_key.clone())),
        as_user(Some(jane_key)),
        as_user(Some(joe_key.clone())),
    );
    let gus = as_user(Some(credentials(&ns, "gus", "globex").await));
    let anonymous = as_user(None);
    let (accounts, users, safelists) = (ns.api::<Account>(), ns.api::<CEUser>(), ns.api::<ElementSafelist>());
    let role_bindings = ns.api::<RoleBinding>();

    // The document, generated from the handlers.
    let document = anonymous.expect("GET", "/openapi.json", None, 200);
    for path in [
        "/users/{id}",
        "/users/{userId}/roles",
        "/users/{userId}/roles/{roleKey}",
        "/organizations/{organizationId}/elements-safelist",
        "/organizations/{organizationId}/elements-safelist/{elementId}",
        "/accounts",
        "/accounts/{id}/users",
    ] {
        assert!(document["paths"][path].is_object(), "/openapi.json lacks {path}");
    }

    // Who is asking: no or wrong credentials are 401, a user's secret with another
    // organization's is 401.
    anonymous.refused("GET", "/users/jane", None, 401, "no Authorization header");
    as_user(Some("User nope, Organization nope".into())).refused("GET", "/users/jane", None, 401, "not valid");
    let sam_user_part = sam_key.split_once(", ").unwrap().0;
    let mixed = format!(
        "{sam_user_part}, Organization {}",
        secret(&ns, "globex-org-secret", "secret").await
    );
    as_user(Some(mixed)).refused("GET", "/users/sam", None, 401, "not valid");

    // Reads: oneself, and what one may manage; the rest is absent (404).
    let me = jane.expect("GET", "/users/jane", None, 200);
    assert_eq!(me["email"], "jane@acme.example");
    assert!(strings(&me["roles"]).contains(&"admin".to_owned()), "{me}");
    joe.expect("GET", "/users/joe", None, 200);
    joe.refused("GET", "/users/jane", None, 404, "user jane not found");
    jane.refused("GET", "/users/sam", None, 404, "user sam not found");
    sam.refused("GET", "/users/gus", None, 404, "user gus not found");
    gus.refused("GET", "/users/sam/roles", None, 404, "not found");
    assert_eq!(ids(&sam.expect("GET", "/accounts", None, 200)), ["eu", "hq"]);
    assert_eq!(ids(&jane.expect("GET", "/accounts", None, 200)), ["eu"]);
    assert_eq!(
        ids(&jane.expect("GET", "/accounts/eu/users", None, 200)),
        ["jane", "joe"]
    );
    assert_eq!(ids(&joe.expect("GET", "/accounts/eu/users", None, 200)), ["joe"]);
    jane.refused("GET", "/accounts/hq/users", None, 404, "account hq not found");
    let listed = joe.expect("GET", "/organizations/acme/elements-safelist", None, 200);
    assert_eq!(strings(&listed["elements"]), ["salesforce"]);
    gus.refused(
        "GET",
        "/organizations/acme/elements-safelist",
        None,
        404,
        "organization acme not found",
    );

    // Accounts: manageAccounts, organization-wide.
    let apac = r#"{"id": "apac", "displayName": "APAC"}"#;
    jane.refused("POST", "/accounts", Some(apac), 403, "manageAccounts");
    assert!(
        accounts.get_opt("apac").await.unwrap().is_none(),
        "a refused POST wrote"
    );
    let reviews_before = operator
        .metric("ce_operator_admission_reviews_total", &[("kind", "Account")])
        .await;
    let made = sam.expect("POST", "/accounts", Some(apac), 201);
    assert_eq!(made["id"], "apac");
    // Written through the API server, as the tenant: kubectl sees it, the route's field
    // manager owns it, and the webhook reviewed it (the test's webhook exempts only the
    // operator's own identity, so an unimpersonated write would not be reviewed).
    let written = accounts.get("apac").await.unwrap();
    assert_eq!(written.spec.display_name.as_deref(), Some("APAC"));
    assert_eq!(written.spec.organization_ref.name, "acme");
    assert!(
        managers(&written).contains(&"ce-tenant-api/accounts".to_owned()),
        "{:?}",
        managers(&written)
    );
    let reviews_after = operator
        .metric("ce_operator_admission_reviews_total", &[("kind", "Account")])
        .await;
    assert!(
        reviews_after > reviews_before,
        "the webhook did not review the route's write"
    );
    sam.refused("POST", "/accounts", Some(apac), 409, "already exists");

    // Users: manageUsers covering the account.
    let ann = r#"{"id": "ann", "email": "ann@acme.example"}"#;
    joe.refused("POST", "/accounts/eu/users", Some(ann), 403, "manageUsers");
    jane.refused("POST", "/accounts/hq/users", Some(ann), 404, "account hq not found");
    assert!(users.get_opt("ann").await.unwrap().is_none(), "a refused POST wrote");
    let made = jane.expect("POST", "/accounts/eu/users", Some(ann), 201);
    assert_eq!(
        (made["id"].as_str(), made["accountId"].as_str()),
        (Some("ann"), Some("eu"))
    );
    assert_eq!(users.get("ann").await.unwrap().spec.email, "ann@acme.example");
    let taken = r#"{"id": "ann2", "email": "joe@acme.example"}"#;
    jane.refused("POST", "/accounts/eu/users", Some(taken), 409, "joe@acme.example");
    assert!(
        users.get_opt("ann2").await.unwrap().is_none(),
        "a conflicting POST wrote"
    );

    // PATCH /users/{id}: e-mail and display name, and roles.
    joe.refused(
        "PATCH",
        "/users/joe",
        Some(r#"{"displayName": "Joe"}"#),
        403,
        "manageUsers",
    );
    joe.refused("DELETE", "/users/jane/roles/admin", None, 404, "user jane not found");
    let patched = jane.expect("PATCH", "/users/joe", Some(r#"{"displayName": "Joe E."}"#), 200);
    assert_eq!(patched["displayName"], "Joe E.");
    let joe_now = users.get("joe").await.unwrap();
    assert_eq!(joe_now.spec.display_name.as_deref(), Some("Joe E."));
    assert!(managers(&joe_now).contains(&"ce-tenant-api/users".to_owned()));

    // Roles: PUT twice is one binding; it shows in kubectl and in the decisions at once
    // (the route answers once this replica's caches hold the write).
    let asked = r#""privileges": ["manageUsers"]"#;
    assert_eq!(decide(&authz, &joe_key, asked)["allowed"], false);
    let roles = jane.expect("PUT", "/users/joe/roles/admin", None, 201);
    assert!(strings(&roles["boundRoles"]).contains(&"admin".to_owned()), "{roles}");
    let decision = decide(&authz, &joe_key, asked);
    assert_eq!(
        decision["allowed"], true,
        "the decision did not see the new role at once: {decision}"
    );
    jane.expect("PUT", "/users/joe/roles/admin", None, 200);
    assert_eq!(
        bindings(&role_bindings, "joe", "admin").await.len(),
        1,
        "PUT twice made two bindings"
    );
    jane.refused("PUT", "/users/joe/roles/org-admin", None, 403, "only an org-admin");
    jane.refused("PUT", "/users/joe/roles/superuser", None, 422, "unknown role key");
    sam.refused("PUT", "/users/gus/roles/admin", None, 404, "user gus not found");
    assert_eq!(bindings(&role_bindings, "joe", "org-admin").await.len(), 0);

    // DELETE removes the role however many bindings hold it.
    apply(
        &ns.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: joe-admin-again}\nspec: {userRef: {name: joe}, role: admin}\n",
    );
    wait_ready(&role_bindings, "joe-admin-again").await;
    assert_eq!(bindings(&role_bindings, "joe", "admin").await.len(), 2);
    let roles = jane.expect("DELETE", "/users/joe/roles/admin", None, 200);
    assert!(!strings(&roles["boundRoles"]).contains(&"admin".to_owned()), "{roles}");
    assert!(bindings(&role_bindings, "joe", "admin").await.is_empty());
    assert_eq!(decide(&authz, &joe_key, asked)["allowed"], false);
    jane.refused(
        "DELETE",
        "/users/joe/roles/default-user",
        None,
        409,
        "assigned by the system",
    );
    // The model's own rules hold for the routes: the last org-admin stays.
    sam.refused("DELETE", "/users/sam/roles/org-admin", None, 409, "org-admin");
    assert_eq!(bindings(&role_bindings, "sam", "org-admin").await.len(), 1);
    // PATCH roles: the set of bound roles.
    let patched = sam.expect("PATCH", "/users/joe", Some(r#"{"roles": ["admin"]}"#), 200);
    assert_eq!(strings(&patched["boundRoles"]), ["admin"]);
    let patched = sam.expect("PATCH", "/users/joe", Some(r#"{"roles": []}"#), 200);
    assert!(strings(&patched["boundRoles"]).is_empty());
    jane.refused(
        "PATCH",
        "/users/joe",
        Some(r#"{"roles": ["admin", "nope"]}"#),
        422,
        "unknown role key",
    );
    assert!(
        bindings(&role_bindings, "joe", "admin").await.is_empty(),
        "a refused PATCH bound a role"
    );

    // The safelist: manageElementOrgLists. PUT and PATCH add, DELETE removes.
    let element = |name: &str| format!(r#""element": "{name}""#);
    jane.refused(
        "PUT",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["hubspot"]}"#),
        403,
        "manageElementOrgLists",
    );
    assert_eq!(decide(&authz, &joe_key, &element("hubspot"))["allowed"], false);
    let list = sam.expect(
        "PUT",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["hubspot"]}"#),
        200,
    );
    assert_eq!(strings(&list["elements"]), ["salesforce", "hubspot"]);
    assert_eq!(
        decide(&authz, &joe_key, &element("hubspot"))["allowed"],
        true,
        "the decision did not see the safelisted element at once"
    );
    assert_eq!(
        safelists.get("acme-list").await.unwrap().spec.elements,
        ["salesforce", "hubspot"]
    );
    let list = sam.expect(
        "PATCH",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["zendesk"]}"#),
        200,
    );
    assert_eq!(strings(&list["elements"]), ["salesforce", "hubspot", "zendesk"]);
    let list = sam.expect("DELETE", "/organizations/acme/elements-safelist/hubspot", None, 200);
    assert_eq!(strings(&list["elements"]), ["salesforce", "zendesk"]);
    assert_eq!(decide(&authz, &joe_key, &element("hubspot"))["allowed"], false);
    sam.refused(
        "DELETE",
        "/organizations/acme/elements-safelist/hubspot",
        None,
        404,
        "element hubspot",
    );
    let list = sam.expect(
        "DELETE",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["zendesk"]}"#),
        200,
    );
    assert_eq!(strings(&list["elements"]), ["salesforce"]);
    gus.refused(
        "DELETE",
        "/organizations/acme/elements-safelist",
        None,
        404,
        "organization acme not found",
    );
    sam.expect("DELETE", "/organizations/acme/elements-safelist", None, 204);
    assert!(
        safelists
            .get_opt("acme-list")
            .await
            .unwrap()
            .is_none_or(|l| l.metadata.deletion_timestamp.is_some())
    );
    sam.refused(
        "GET",
        "/organizations/acme/elements-safelist",
        None,
        404,
        "has no element safelist",
    );
    sam.refused(
        "PATCH",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["box"]}"#),
        404,
        "has no element safelist",
    );
    let list = sam.expect(
        "PUT",
        "/organizations/acme/elements-safelist",
        Some(r#"{"elements": ["box"]}"#),
        200,
    );
    assert_eq!(strings(&list["elements"]), ["box"]);
    assert_eq!(
        safelists.get("acme-elements-safelist").await.unwrap().spec.elements,
        ["box"]
    );

    // Bad input: a clear 4xx, nothing written.
    sam.refused("PATCH", "/users/joe", Some("{not json"), 400, "");
    sam.refused(
        "PATCH",
        "/users/joe",
        Some(r#"{"accountId": "hq"}"#),
        400,
        "unknown field",
    );
    sam.refused("POST", "/accounts", Some(r#"{"id": "Not A Name"}"#), 422, "");
    let huge = format!(r#"{{"elements": [{}]}}"#, vec!["\"x\""; 40_000].join(","));
    sam.refused("PUT", "/organizations/acme/elements-safelist", Some(&huge), 413, "over");
    sam.refused(
        "DELETE",
        "/organizations/acme/elements-safelist",
        Some(&huge),
        413,
        "over",
    );
    sam.refused("GET", "/no/such/route", None, 404, "no such route");
    assert_eq!(users.get("joe").await.unwrap().spec.account_ref.name, "eu");
    assert_eq!(
        safelists.get("acme-elements-safelist").await.unwrap().spec.elements,
        ["box"]
    );

    // A user not in effect (here: being deleted, held by a finalizer) is refused, as at the
    // authorization endpoint, and nothing is written.
    support::kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "ceuser",
        "joe",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["test.ce.tenancy.io/hold"]}}"#,
    ]);
    support::kubectl_ok(&["-n", &ns.name, "delete", "ceuser", "joe", "--wait=false"]);
    support::wait_until("joe's credentials to stop authenticating", support::TIMEOUT, || async {
        joe.call("GET", "/users/joe", None).0 == 401
    })
    .await;
    joe.refused(
        "PATCH",
        "/users/joe",
        Some(r#"{"displayName": "Gone"}"#),
        401,
        "not valid",
    );
    assert_eq!(
        users.get("joe").await.unwrap().spec.display_name.as_deref(),
        Some("Joe E.")
    );
    support::kubectl_ok(&[
        "-n",
        &ns.name,
        "patch",
        "ceuser",
        "joe",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    // The identity the routes write as is no way in for anyone else: a client certificate
    // named like it carries no CE user (the extra only impersonation sets), and the webhook
    // refuses its writes, though the chart's RBAC lets that name write.
    let dir = tempdir(&ns.name);
    let pretender = identity(&dir, "ce.tenancy.io:tenant-api", "tenants");
    let out = kubectl_as(
        &pretender,
        &ns.name,
        &["create", "-f", "-"],
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {name: forged}\nspec: {organizationRef: {name: acme}}\n",
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("not a CE user"), "{said}");
    assert!(accounts.get_opt("forged").await.unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
    ns.delete().await;
}
