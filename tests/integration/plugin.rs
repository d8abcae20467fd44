//! `kubectl ce` against the real control plane, through kubectl's plugin mechanism
//! (`kubectl ce …` finds `kubectl-ce` on the PATH): each subcommand's output, and its
//! errors (a missing object, a forbidden request).

use crate::support;

use std::process::Output;

use ce_operator::api::{CEUser, Organization};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use support::{
    Operator, TestNamespace, apply, client, install_crds, kubeconfig_path, kubectl_ce, kubectl_ce_as, plugin_path,
    tool, wait_condition, wait_ready,
};

/// joe, in eu, whose e-mail repeats jane's.
const DUPLICATE: &str = "
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: joe}
spec: {accountRef: {name: eu}, email: JANE@acme.example}
";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn succeeded(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}\n{}", stdout(out), stderr(out));
    stdout(out)
}

async fn converged_tenant() -> (TestNamespace, Operator) {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "plugin").await;
    let operator = Operator::start(&ns.name);
    apply(&ns.name, &support::super_org_tenant(&ns.name, "slack, box"));
    apply(&ns.name, DUPLICATE);
    let users: Api<CEUser> = ns.api();
    wait_ready(&users, "sam").await;
    wait_ready(&users, "jane").await;
    wait_condition(&users, "joe", "Ready", "False", "DuplicateEmail").await;
    wait_condition(
        &ns.api::<Organization>(),
        "acme",
        "AdminPresent",
        "True",
        "OrgAdminPresent",
    )
    .await;
    wait_ready(&ns.api::<Organization>(), "acme").await;
    wait_ready(&ns.api::<Organization>(), "big").await;
    (ns, operator)
}

#[tokio::test]
async fn tree_shows_the_organization_its_accounts_users_roles_and_problems() {
    let (ns, _operator) = converged_tenant().await;
    let text = succeeded(&kubectl_ce(&["tree", "-n", &ns.name]), "kubectl ce tree");
    for expected in [
        "Organization acme  Ready",
        &format!("│ super-organization {}/big: denies box", ns.name),
        "│ safelist acme-list: slack\n",
        "│ safelisted but denied by the super-organization: box\n",
        "├── Account hq (default)  Ready",
        "│   └── sam <sam@acme.example>  Ready  roles: ",
        "└── Account eu  Ready",
        "    ├── jane <jane@acme.example>  Ready  roles: default-user",
        "    └── joe <JANE@acme.example>  DuplicateEmail: ",
        "Organization big  Ready",
    ] {
        assert!(text.contains(expected), "tree lacks {expected:?}:\n{text}");
    }
    assert!(text.contains("org-admin"), "sam's org-admin role:\n{text}");
    assert!(!text.contains('\x1b'), "colour codes in piped output:\n{text}");
    // On a terminal (script(1) gives it one), problems are coloured; NO_COLOR turns it off.
    let on_terminal = |no_color: bool| {
        let command = format!(
            "{} ce --kubeconfig {} tree -n {}",
            tool("kubectl").display(),
            kubeconfig_path().display(),
            ns.name
        );
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &command, "/dev/null"]).env("PATH", plugin_path());
        if no_color {
            script.env("NO_COLOR", "1");
        }
        succeeded(&script.output().expect("run script"), "tree on a terminal")
    };
    let coloured = on_terminal(false);
    let joe = coloured.lines().find(|l| l.contains("joe <")).unwrap_or_default();
    assert!(
        joe.contains("\x1b["),
        "the DuplicateEmail user is not highlighted:\n{coloured}"
    );
    assert!(!on_terminal(true).contains('\x1b'), "NO_COLOR is not honoured");

    // As data: the same tree, for scripts.
    let json = succeeded(
        &kubectl_ce(&["tree", "acme", "-n", &ns.name, "-o", "json"]),
        "tree -o json",
    );
    let tree: serde_json::Value = serde_json::from_str(&json).unwrap();
    let orgs = tree["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), 1, "only the organization asked for:\n{json}");
    let accounts = &orgs[0]["accounts"];
    assert_eq!(accounts[0]["name"], "hq");
    assert_eq!(accounts[0]["default"], true);
    assert_eq!(accounts[1]["users"][1]["name"], "joe");
    assert_eq!(accounts[1]["users"][1]["reason"], "DuplicateEmail");
    assert_eq!(orgs[0]["superOrganization"]["denylist"], serde_json::json!(["box"]));
    let yaml = succeeded(
        &kubectl_ce(&["tree", "acme", "-n", &ns.name, "-o", "yaml"]),
        "tree -o yaml",
    );
    assert!(yaml.contains("name: acme"), "{yaml}");

    let missing = kubectl_ce(&["tree", "nope", "-n", &ns.name]);
    assert_eq!(missing.status.code(), Some(2), "a missing organization is an error");
    assert!(
        stderr(&missing).contains(&format!("organization \"nope\" not found in namespace \"{}\"", ns.name)),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn can_i_answers_yes_and_no_with_the_reason_and_exits_accordingly() {
    let (ns, _operator) = converged_tenant().await;
    let yes = kubectl_ce(&[
        "can-i",
        "-n",
        &ns.name,
        "--user",
        "sam",
        "--privilege",
        "createElements",
    ]);
    assert_eq!(yes.status.code(), Some(0), "{}{}", stdout(&yes), stderr(&yes));
    assert!(stdout(&yes).starts_with("yes - "), "{}", stdout(&yes));

    let hidden = kubectl_ce(&["can-i", "-n", &ns.name, "--user", "jane", "--element", "box"]);
    assert_eq!(hidden.status.code(), Some(1), "{}{}", stdout(&hidden), stderr(&hidden));
    assert!(stdout(&hidden).starts_with("no - "), "{}", stdout(&hidden));
    assert!(
        stdout(&hidden).contains("box"),
        "the reason names the element: {}",
        stdout(&hidden)
    );

    let duplicate = kubectl_ce(&["can-i", "-n", &ns.name, "--user", "joe"]);
    assert_eq!(duplicate.status.code(), Some(1), "a user that is not Ready is refused");

    let unknown = kubectl_ce(&["can-i", "-n", &ns.name, "--user", "sam", "--privilege", "flyToTheMoon"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown privilege"), "{}", stderr(&unknown));
}

#[tokio::test]
async fn describe_secret_and_rotate_show_fingerprints_never_values() {
    let (ns, _operator) = converged_tenant().await;
    let users: Api<CEUser> = ns.api();
    let fingerprint = |u: &CEUser| u.status.as_ref().and_then(|s| s.secret_fingerprint.clone()).unwrap();
    let before = fingerprint(&users.get("jane").await.unwrap());
    let secret = ns.api::<Secret>().get("jane-user-secret").await.unwrap();
    let value = String::from_utf8(secret.data.unwrap()["secret"].0.clone()).unwrap();

    let text = succeeded(
        &kubectl_ce(&["describe-secret", "ceuser", "jane", "-n", &ns.name]),
        "describe-secret",
    );
    assert!(
        text.contains(&format!("Secret:          {}/jane-user-secret", ns.name)),
        "{text}"
    );
    assert!(text.contains(&format!("Fingerprint:     {before}")), "{text}");
    assert!(text.contains("Last rotation:   never"), "{text}");
    assert!(!text.contains(&value), "describe-secret printed the value");

    let rotated = succeeded(&kubectl_ce(&["rotate", "ceuser", "jane", "-n", &ns.name]), "rotate");
    let after = fingerprint(&users.get("jane").await.unwrap());
    assert_ne!(after, before, "rotation changed nothing");
    assert!(
        rotated.contains(&format!("fingerprint {after} (was {before})")),
        "rotate prints the new fingerprint: {rotated}"
    );
    assert!(rotated.contains("previous value is valid until"), "{rotated}");
    assert!(!rotated.contains(&value));

    let data = succeeded(
        &kubectl_ce(&["describe-secret", "ceuser", "jane", "-n", &ns.name, "-o", "json"]),
        "describe-secret -o json",
    );
    let state: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(state["fingerprint"], after.as_str());
    assert!(
        state["previousValidUntil"].is_string(),
        "the old value is in its grace period: {data}"
    );
    assert!(
        state["lastRotationRequest"]
            .as_str()
            .unwrap()
            .starts_with("kubectl-ce-")
    );
    assert!(!data.contains(&value));

    // The organization's secret too.
    let org = succeeded(
        &kubectl_ce(&["rotate", "organization", "acme", "-n", &ns.name, "-o", "json"]),
        "rotate organization",
    );
    let org: serde_json::Value = serde_json::from_str(&org).unwrap();
    let status = ns.api::<Organization>().get("acme").await.unwrap().status.unwrap();
    assert_eq!(org["fingerprint"], status.secret_fingerprint.unwrap().as_str());

    for verb in ["describe-secret", "rotate"] {
        let missing = kubectl_ce(&[verb, "ceuser", "nobody", "-n", &ns.name]);
        assert_eq!(missing.status.code(), Some(2), "{verb}");
        assert!(
            stderr(&missing).contains(&format!("ceuser \"nobody\" not found in namespace \"{}\"", ns.name)),
            "{verb}: {}",
            stderr(&missing)
        );
    }
}

/// `kubectl ce` with no `--kubeconfig`, as kubectl users run it: `$KUBECONFIG` may list several
/// files, merged as kubectl merges them (the first file's current context wins), and
/// `--context` picks another of their contexts.
#[tokio::test]
async fn kubeconfig_files_are_merged_and_context_picks_one_of_them() {
    use kube::config::{Cluster, Context, Kubeconfig, NamedCluster, NamedContext};
    let (ns, _operator) = converged_tenant().await;
    let admin = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let mut test = admin.clone();
    test.contexts = vec![NamedContext {
        name: "test".into(),
        context: Some(Context {
            namespace: Some(ns.name.clone()),
            ..admin.contexts[0].context.clone().unwrap()
        }),
        other: Default::default(),
    }];
    test.current_context = Some("test".into());
    // First in the list: a context of a cluster that is not there, current.
    let unreachable = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "gone".into(),
            cluster: Some(Cluster {
                server: Some("https://127.0.0.1:1".into()),
                insecure_skip_tls_verify: Some(true),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "gone".into(),
            context: Some(Context {
                cluster: "gone".into(),
                user: admin.contexts[0].context.as_ref().unwrap().user.clone(),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("gone".into()),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("{}-kubeconfigs", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (dir.join("gone.json"), dir.join("test.json"));
    std::fs::write(&first, serde_json::to_string(&unreachable).unwrap()).unwrap();
    std::fs::write(&second, serde_json::to_string(&test).unwrap()).unwrap();
    let merged = std::env::join_paths([&first, &second]).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(tool("kubectl"))
            .arg("ce")
            .args(args)
            .env("PATH", plugin_path())
            .env("KUBECONFIG", &merged)
            .output()
            .expect("run kubectl ce")
    };

    // --context test: the second file's cluster and its namespace.
    let text = succeeded(
        &run(&["--context", "test", "describe-secret", "ceuser", "jane"]),
        "--context",
    );
    assert!(text.contains(&format!("{}/jane-user-secret", ns.name)), "{text}");
    // The current context is the first file's: its cluster is not there, and that is said.
    let refused = run(&["describe-secret", "ceuser", "jane", "-n", &ns.name]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(stderr(&refused).contains("error:"), "{}", stderr(&refused));
    assert!(!stderr(&refused).contains("panicked"), "{}", stderr(&refused));
}

#[tokio::test]
async fn a_forbidden_request_is_an_error_that_says_so() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "plugin-forbidden").await;
    support::kubectl_ok(&["create", "serviceaccount", "nobody", "-n", &ns.name]);
    let kubeconfig = std::env::temp_dir().join(format!("{}-nobody-kubeconfig", ns.name));
    support::service_account_kubeconfig(&client, &ns.name, "nobody", &kubeconfig).await;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    for args in [
        vec!["tree", "-n", &ns.name],
        vec!["describe-secret", "ceuser", "jane", "-n", &ns.name],
        vec!["rotate", "organization", "acme", "-n", &ns.name],
        vec!["can-i", "--user", "jane", "-n", &ns.name],
    ] {
        let out = kubectl_ce_as(&kubeconfig, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}{}", stdout(&out), stderr(&out));
        assert!(
            stderr(&out).starts_with("error: forbidden: "),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
