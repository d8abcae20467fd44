//! The CRDs against the real API server: examples are accepted, every invalid manifest in
//! tests/fixtures/invalid is rejected with a message naming the field, `kubectl explain`
//! and `kubectl get ce` work.

use crate::support;

use ce_operator::api::{Account, CEUser, ElementSafelist, Organization, RoleBinding};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, ValidationDirective},
    core::ApiResource,
};
use support::{TestNamespace, client, install_crds, kubectl, kubectl_ok, repo_root};

/// One fixture: which rule it breaks, what the error must say, and the documents to apply.
/// A single document must be rejected on create; with several, all but the last are
/// applied (and must be accepted) and the last, an update, must be rejected.
struct Fixture {
    path: std::path::PathBuf,
    file: String,
    expect: String,
    docs: Vec<DynamicObject>,
}

fn load_fixtures() -> Vec<Fixture> {
    let dir = repo_root().join("tests/fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .map(str::to_owned)
                    .unwrap_or_else(|| panic!("{} has no `# {key}:` line", path.display()))
            };
            header("rule");
            Fixture {
                path: path.clone(),
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                expect: header("expect"),
                docs: serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display())),
            }
        })
        .collect()
}

fn api_for(client: &kube::Client, ns: &str, obj: &DynamicObject) -> Api<DynamicObject> {
    let kind = &obj.types.as_ref().expect("fixture has apiVersion and kind").kind;
    let resource = match kind.as_str() {
        "Organization" => ApiResource::erase::<Organization>(&()),
        "Account" => ApiResource::erase::<Account>(&()),
        "CEUser" => ApiResource::erase::<CEUser>(&()),
        "RoleBinding" => ApiResource::erase::<RoleBinding>(&()),
        "ElementSafelist" => ApiResource::erase::<ElementSafelist>(&()),
        other => panic!("fixture of unknown kind {other}"),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

#[tokio::test]
async fn every_invalid_manifest_is_rejected_naming_the_field() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "invalid").await;
    // Strict field validation, as kubectl applies by default: unknown fields are errors.
    let params = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("ce-operator-tests").force()
    };

    let fixtures = load_fixtures();
    assert!(fixtures.len() >= 20, "the corpus has only {} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let (last, setup) = fixture.docs.split_last().expect("fixture has a document");
        for doc in setup {
            let api = api_for(&client, &ns.name, doc);
            if let Err(e) = api
                .patch(&doc.metadata.name.clone().unwrap(), &params, &Patch::Apply(doc))
                .await
            {
                failures.push(format!("{}: setup document was rejected: {e}", fixture.file));
            }
        }
        if setup.is_empty() {
            // As a user would: `kubectl create` (strict field validation by default).
            let out = kubectl(&[
                "create",
                "--dry-run=server",
                "-n",
                &ns.name,
                "-f",
                fixture.path.to_str().unwrap(),
            ]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                failures.push(format!("{}: accepted, expected a rejection", fixture.file));
            } else if !stderr.contains(&fixture.expect) {
                failures.push(format!(
                    "{}: rejected, but the message does not name `{}`:\n    {stderr}",
                    fixture.file, fixture.expect
                ));
            }
            continue;
        }
        // An update: server-side apply of the changed object onto the one just created.
        let api = api_for(&client, &ns.name, last);
        let name = last.metadata.name.clone().unwrap();
        match api.patch(&name, &params, &Patch::Apply(last)).await {
            Ok(_) => failures.push(format!("{}: accepted, expected a rejection", fixture.file)),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(&fixture.expect) {
                    failures.push(format!(
                        "{}: rejected, but the message does not name `{}`:\n    {}",
                        fixture.file, fixture.expect, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", fixture.file)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    ns.delete().await;
}

#[tokio::test]
async fn the_examples_are_accepted_and_listed_by_kubectl_get_ce() {
    let client = client().await;
    install_crds(&client).await;
    let examples = repo_root().join("examples");
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=ce-operator-tests",
        "-f",
        examples.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "kubectl apply -f examples/ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listed = kubectl_ok(&["get", "ce", "-n", "tenants", "-o", "name"]);
    for kind in [
        "organization",
        "account",
        "ceuser",
        "rolebinding.ce.tenancy.io",
        "elementsafelist",
    ] {
        assert!(
            listed.lines().any(|l| l.starts_with(kind)),
            "`kubectl get ce` does not list {kind}:\n{listed}"
        );
    }
    let partners = kubectl_ok(&["get", "ce", "-n", "partners", "-o", "name"]);
    assert!(partners.contains("organization.ce.tenancy.io/bigpartner"), "{partners}");

    // Defaults from the schema are filled in by the API server.
    let security = kubectl_ok(&[
        "get",
        "ceorg",
        "bigpartner",
        "-n",
        "partners",
        "-o",
        "jsonpath={.spec.security.secretLength} {.spec.security.rotationGracePeriod}",
    ]);
    assert_eq!(security, "32 24h");

    for ns in ["tenants", "partners"] {
        kubectl_ok(&["delete", "namespace", ns, "--wait=false"]);
    }
}

#[tokio::test]
async fn printer_columns_answer_the_usual_questions() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "columns").await;
    let manifest = r#"
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: acme-eu}
spec: {organizationRef: {name: acme}}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: jane}
spec: {accountRef: {name: acme-eu}, email: jane@acme.example}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: RoleBinding
metadata: {name: jane-admin}
spec: {userRef: {name: jane}, role: admin}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: ElementSafelist
metadata: {name: acme}
spec: {organizationRef: {name: acme}, elements: [hubspot]}
"#;
    let path = std::env::temp_dir().join(format!("{}.yaml", ns.name));
    std::fs::write(&path, manifest).unwrap();
    kubectl_ok(&["apply", "-n", &ns.name, "-f", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();

    for (resource, columns, values) in [
        ("organizations", "NAME DEFAULT-ACCOUNT ACCOUNTS USERS READY AGE", "acme"),
        ("accounts", "NAME ORGANIZATION DEFAULT USERS READY AGE", "acme-eu acme"),
        (
            "ceusers",
            "NAME ACCOUNT EMAIL ROLES READY AGE",
            "jane acme-eu jane@acme.example",
        ),
        (
            "rolebindings.ce.tenancy.io",
            "NAME USER ROLE READY AGE",
            "jane-admin jane admin",
        ),
        ("elementsafelists", "NAME ORGANIZATION ELEMENTS READY AGE", "acme acme"),
    ] {
        let table = kubectl_ok(&["get", resource, "-n", &ns.name]);
        let mut lines = table.lines();
        let header = lines.next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(header, columns, "columns of {resource}:\n{table}");
        let row = lines.next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(row.starts_with(values), "first row of {resource}: {row}");
        let wide = kubectl_ok(&["get", resource, "-n", &ns.name, "-o", "wide"]);
        assert!(
            wide.lines().next().unwrap().contains("REASON"),
            "{resource} -o wide lacks REASON:\n{wide}"
        );
    }
    ns.delete().await;
}

#[tokio::test]
async fn kubectl_explain_prints_the_field_docs() {
    let client = client().await;
    install_crds(&client).await;
    // The API server publishes a new CRD's OpenAPI a little after the CRD is established.
    support::wait_until(
        "`kubectl explain ceuser` to find the published schema",
        support::TIMEOUT,
        || async { kubectl(&["explain", "ceuser"]).status.success() },
    )
    .await;
    let spec = kubectl_ok(&["explain", "ceuser.spec"]);
    for text in ["accountRef", "email", "E-mail address of the user", "Immutable"] {
        assert!(
            spec.contains(text),
            "`kubectl explain ceuser.spec` lacks {text:?}:\n{spec}"
        );
    }
    let length = kubectl_ok(&["explain", "organization.spec.security.secretLength"]);
    assert!(length.contains("From 32 to 128; default 32"), "{length}");
    let kind = kubectl_ok(&["explain", "elementsafelist"]);
    assert!(kind.contains("lists the elements"), "{kind}");
}
