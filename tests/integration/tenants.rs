//! Issue 28, door 1: tenants acting themselves through `kubectl`, with their own Kubernetes
//! identities (client certificates signed by the test cluster's CA: CN = the e-mail of
//! their CE user, O = their group), bound to the chart's ce-tenant-edit ClusterRole. The
//! admission webhook lets each change through only as the seeds' Security section allows
//! (`model::actor`); every row of the table is tried allowed and refused.

use crate::support;

use std::path::Path;

use ce_operator::api::{CEUser, Organization, RoleBinding};
use support::{apply, client, identity, install_crds, kubectl_as, tempdir, wait_condition, wait_ready};

/// acme: default account hq with sam (org-admin), account eu with jane (admin) and joe;
/// globex: default account ghq with gus (org-admin). Users named by e-mail.
fn tenant() -> String {
    let doc = |kind: &str, name: &str, spec: &str| {
        format!("apiVersion: ce.tenancy.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n")
    };
    [
        doc("Organization", "acme", "{displayName: Acme, defaultAccountName: hq}"),
        doc("Account", "hq", "{organizationRef: {name: acme}, default: true}"),
        doc("Account", "eu", "{organizationRef: {name: acme}}"),
        doc("CEUser", "sam", "{accountRef: {name: hq}, email: sam@acme.example}"),
        doc("CEUser", "jane", "{accountRef: {name: eu}, email: jane@acme.example}"),
        doc("CEUser", "joe", "{accountRef: {name: eu}, email: joe@acme.example}"),
        doc(
            "RoleBinding",
            "sam-org-admin",
            "{userRef: {name: sam}, role: org-admin}",
        ),
        doc("RoleBinding", "jane-admin", "{userRef: {name: jane}, role: admin}"),
        doc(
            "ElementSafelist",
            "acme-list",
            "{organizationRef: {name: acme}, elements: [salesforce]}",
        ),
        doc(
            "Organization",
            "globex",
            "{displayName: Globex, defaultAccountName: ghq}",
        ),
        doc("Account", "ghq", "{organizationRef: {name: globex}, default: true}"),
        doc("CEUser", "gus", "{accountRef: {name: ghq}, email: gus@globex.example}"),
        doc(
            "RoleBinding",
            "gus-org-admin",
            "{userRef: {name: gus}, role: org-admin}",
        ),
    ]
    .concat()
}

#[tokio::test]
async fn tenants_act_through_kubectl_only_as_their_privileges_allow() {
    let client = client().await;
    install_crds(&client).await;
    let (ns, _operator, _webhook) = support::with_webhook(&client, "tenants").await;
    apply(&ns.name, &tenant());
    for user in ["sam", "jane", "joe", "gus"] {
        wait_ready(&ns.api::<CEUser>(), user).await;
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

    // The chart's tenant role, bound to the tenants' group in their namespace.
    let roles = support::helm_template(&["ce", "charts/ce-operator", "--show-only", "templates/tenant-roles.yaml"]);
    apply(&ns.name, &roles);
    support::kubectl_ok(&[
        "create",
        "rolebinding",
        "tenants",
        "-n",
        &ns.name,
        "--clusterrole=ce-tenant-edit",
        "--group=tenants",
    ]);
    let dir = tempdir(&ns.name);
    let who = |email: &str| identity(&dir, email, "tenants");
    let (sam, jane, joe, gus, eve) = (
        who("sam@acme.example"),
        who("jane@acme.example"),
        who("joe@acme.example"),
        who("gus@globex.example"),
        who("eve@acme.example"),
    );

    let doc = |kind: &str, name: &str, spec: &str| {
        format!("apiVersion: ce.tenancy.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    let new_account = doc("Account", "apac", "{organizationRef: {name: acme}}");
    let user_in = |account: &str| {
        doc(
            "CEUser",
            &format!("new-in-{account}"),
            &format!("{{accountRef: {{name: {account}}}, email: new-{account}@acme.example}}"),
        )
    };
    let bind = |role: &str| {
        doc(
            "RoleBinding",
            &format!("joe-{role}"),
            &format!("{{userRef: {{name: joe}}, role: {role}}}"),
        )
    };
    let acme = |extra: &str| {
        doc(
            "Organization",
            "acme",
            &format!("{{displayName: Acme, defaultAccountName: hq{extra}}}"),
        )
    };
    let safelist = doc(
        "ElementSafelist",
        "acme-list",
        "{organizationRef: {name: acme}, elements: [salesforce, box]}",
    );
    let globex_account = doc("Account", "ghq2", "{organizationRef: {name: globex}}");

    // Each row: who, what, and the refusal's words (None: allowed). Dry runs, so that every
    // row starts from the same tenant; the webhook is called for dry runs too.
    let rows: Vec<(&str, &Path, String, Option<&str>)> = vec![
        ("an org-admin creates an account", &sam, new_account.clone(), None),
        (
            "an admin creates an account",
            &jane,
            new_account.clone(),
            Some("needs the manageAccounts privilege organization-wide"),
        ),
        ("an admin creates a user in its account", &jane, user_in("eu"), None),
        (
            "an admin creates a user in another account",
            &jane,
            user_in("hq"),
            Some("in account hq needs the manageUsers privilege"),
        ),
        (
            "a plain user creates a user",
            &joe,
            user_in("eu"),
            Some("needs the manageUsers privilege"),
        ),
        ("an org-admin creates a user anywhere", &sam, user_in("eu"), None),
        ("an admin grants admin in its account", &jane, bind("admin"), None),
        (
            "an admin grants org-admin",
            &jane,
            bind("org-admin"),
            Some("only an org-admin grants or revokes org-admin"),
        ),
        (
            "an org-admin changes the roles",
            &sam,
            acme(", roles: [{role: admin, grant: [viewActivity]}]"),
            None,
        ),
        (
            "an admin changes the roles",
            &jane,
            acme(", roles: [{role: admin, grant: [viewActivity]}]"),
            Some("changing spec.roles needs the configureRoles privilege"),
        ),
        (
            "an admin changes the security settings",
            &jane,
            acme(", security: {secretLength: 48}"),
            Some("changing spec.security needs the manageSecurity privilege"),
        ),
        ("an org-admin changes the safelist", &sam, safelist.clone(), None),
        (
            "an admin changes the safelist",
            &jane,
            safelist.clone(),
            Some("needs the manageElementOrgLists privilege"),
        ),
        (
            "an org-admin of another organization",
            &gus,
            new_account.clone(),
            Some("cannot change anything of organization acme"),
        ),
        (
            "an org-admin in its own organization",
            &gus,
            globex_account.clone(),
            None,
        ),
        (
            "an identity that is no CE user",
            &eve,
            new_account.clone(),
            Some("is not a CE user of organization acme"),
        ),
    ];
    for (what, kubeconfig, manifest, refused) in &rows {
        let out = kubectl_as(
            kubeconfig,
            &ns.name,
            &["apply", "--dry-run=server", "-f", "-"],
            manifest,
        );
        let said = String::from_utf8_lossy(&out.stderr);
        match refused {
            None => assert!(out.status.success(), "{what}: refused: {said}"),
            Some(words) => {
                assert!(!out.status.success(), "{what}: allowed");
                assert!(
                    said.contains("denied the request") && said.contains(words),
                    "{what}: {said}"
                );
            }
        }
    }
    // Deletions are judged alike.
    let delete = |kubeconfig: &Path, what: &[&str]| {
        let mut args = vec!["delete", "--dry-run=server"];
        args.extend(what);
        kubectl_as(kubeconfig, &ns.name, &args, "")
    };
    let out = delete(&jane, &["elementsafelist", "acme-list"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("manageElementOrgLists"));
    assert!(delete(&sam, &["elementsafelist", "acme-list"]).status.success());
    let out = delete(&jane, &["ceuser", "sam"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("account hq"));
    assert!(
        delete(&jane, &["ceuser", "joe"]).status.success(),
        "an admin removes a user of its account"
    );
    // `kubectl ce can-i` answers for tenant writes with the same rule.
    let can_i = |user: &str, change: &[&str]| {
        let mut args = vec!["can-i", "-n", &ns.name, "--user", user];
        args.extend(change);
        let out = support::kubectl_ce(&args);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    for (user, change, allowed, words) in [
        (
            "jane",
            vec!["--verb", "create", "--kind", "CEUser", "--account", "eu"],
            true,
            "yes",
        ),
        (
            "jane",
            vec!["--verb", "create", "--kind", "CEUser", "--account", "hq"],
            false,
            "manageUsers",
        ),
        (
            "jane",
            vec!["--verb", "update", "--kind", "Organization", "--field", "roles"],
            false,
            "configureRoles",
        ),
        (
            "sam",
            vec!["--verb", "update", "--kind", "Organization", "--field", "roles"],
            true,
            "yes",
        ),
        (
            "jane",
            vec![
                "--verb",
                "create",
                "--kind",
                "RoleBinding",
                "--account",
                "eu",
                "--role",
                "org-admin",
            ],
            false,
            "only an org-admin",
        ),
        (
            "joe",
            vec!["--verb", "delete", "--kind", "ElementSafelist"],
            false,
            "manageElementOrgLists",
        ),
    ] {
        let (ok, said) = can_i(user, &change);
        assert_eq!(ok, allowed, "{user} {change:?}: {said}");
        assert!(said.contains(words), "{user} {change:?}: {said}");
    }

    // A real write, then, to see it land: jane makes joe an admin of eu.
    let out = kubectl_as(&jane, &ns.name, &["apply", "-f", "-"], &bind("admin"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_ready(&ns.api::<RoleBinding>(), "joe-admin").await;
    let _ = std::fs::remove_dir_all(&dir);
}
