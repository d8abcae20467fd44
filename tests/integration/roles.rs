//! Roles end to end: RoleBindings assign and revoke roles, the invariants refuse what the
//! model forbids, and an organization's privilege matrix reaches its users.

use crate::support;

use ce_operator::api::{CEUser, HasConditions, Organization, Privilege, Role, RoleBinding, RoleScope};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use support::{Operator, TIMEOUT, TestNamespace, apply, client, install_crds, wait_condition, wait_for, wait_ready};

const TREE: &str = "
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
";

fn binding(name: &str, user: &str, role: &str, extra: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {{name: {name}}}\nspec: {{userRef: {{name: {user}}}, role: {role}{extra}}}\n"
    )
}

async fn wait_roles(users: &kube::Api<CEUser>, name: &str, roles: &[Role]) -> CEUser {
    wait_for(users, name, &format!("roles {roles:?}"), TIMEOUT, |u| {
        u.status.as_ref().is_some_and(|s| s.roles == roles)
    })
    .await
}

#[tokio::test]
async fn each_role_is_assigned_and_revoked_within_the_invariants() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "roles").await;
    let _operator = Operator::start(&ns.name);
    let users: kube::Api<CEUser> = ns.api();
    let bindings: kube::Api<RoleBinding> = ns.api();
    apply(&ns.name, TREE);
    wait_roles(&users, "sam", &[Role::Org]).await;
    wait_roles(&users, "jane", &[Role::DefaultUser]).await;

    // admin: scoped to the user's own account, with the admin privileges.
    apply(&ns.name, &binding("jane-admin", "jane", "admin", ""));
    let jane = wait_roles(&users, "jane", &[Role::Admin, Role::DefaultUser])
        .await
        .status
        .unwrap();
    assert!(jane.privileges.contains(&Privilege::ManageUsers) && !jane.privileges.contains(&Privilege::ManageAccounts));
    let status = wait_ready(&bindings, "jane-admin").await.status.unwrap();
    assert_eq!(
        (status.scope, status.account.as_deref()),
        (Some(RoleScope::Account), Some("eu"))
    );
    // Revoking it removes its privileges at once.
    bindings.delete("jane-admin", &DeleteParams::default()).await.unwrap();
    let jane = wait_roles(&users, "jane", &[Role::DefaultUser]).await.status.unwrap();
    assert!(jane.privileges.is_empty());

    // org-admin: organization-wide, only in the default account.
    apply(&ns.name, &binding("sam-org-admin", "sam", "org-admin", ""));
    let sam = wait_roles(&users, "sam", &[Role::OrgAdmin, Role::Org])
        .await
        .status
        .unwrap();
    assert_eq!(sam.privileges.len(), Privilege::ALL.len());
    assert_eq!(
        wait_ready(&bindings, "sam-org-admin").await.status.unwrap().scope,
        Some(RoleScope::Organization)
    );
    bindings
        .delete("sam-org-admin", &DeleteParams::default())
        .await
        .unwrap();
    wait_roles(&users, "sam", &[Role::Org]).await;

    apply(&ns.name, &binding("jane-org-admin", "jane", "org-admin", ""));
    let refused = wait_condition(
        &bindings,
        "jane-org-admin",
        "Ready",
        "False",
        "OrgAdminRequiresDefaultAccount",
    )
    .await;
    assert!(refused.condition("Ready").unwrap().message.contains("default account"));
    // jane's roles did not change: judged once the operator has reconciled her since.
    let jane = support::touch_and_wait_judged(&users, "jane").await;
    assert_eq!(jane.status.unwrap().roles, vec![Role::DefaultUser]);

    // System roles by hand: refused without the override, accepted with it (where the
    // organization allows it) and warned about.
    apply(&ns.name, &binding("sam-default-user", "sam", "default-user", ""));
    wait_condition(&bindings, "sam-default-user", "Ready", "False", "SystemAssignedRole").await;
    apply(
        &ns.name,
        &binding("sam-default-user", "sam", "default-user", ", overrideSystemRole: true"),
    );
    // ... and only where the organization allows overrides (issue 26).
    wait_condition(
        &bindings,
        "sam-default-user",
        "Ready",
        "False",
        "SystemRoleOverrideNotAllowed",
    )
    .await;
    assert_eq!(users.get("sam").await.unwrap().status.unwrap().roles, vec![Role::Org]);
    let orgs: kube::Api<Organization> = ns.api();
    orgs.patch(
        "acme",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"security": {"allowSystemRoleOverride": true}}})),
    )
    .await
    .unwrap();
    wait_condition(&bindings, "sam-default-user", "Ready", "True", "SystemRoleOverridden").await;
    // The override replaces the system's choice (org) with the bound system role.
    wait_roles(&users, "sam", &[Role::DefaultUser]).await;
    let events: kube::Api<Event> = ns.api();
    support::wait_until("a SystemRoleOverridden warning", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("SystemRoleOverridden") && e.type_.as_deref() == Some("Warning"))
    })
    .await;

    // Two bindings of the same role are harmless.
    apply(&ns.name, &binding("jane-admin-1", "jane", "admin", ""));
    apply(&ns.name, &binding("jane-admin-2", "jane", "admin", ""));
    wait_ready(&bindings, "jane-admin-2").await;
    wait_roles(&users, "jane", &[Role::Admin, Role::DefaultUser]).await;
    bindings.delete("jane-admin-1", &DeleteParams::default()).await.unwrap();
    support::wait_gone(&bindings, "jane-admin-1", TIMEOUT).await;
    wait_ready(&bindings, "jane-admin-2").await;
    let jane = support::touch_and_wait_judged(&users, "jane").await;
    assert_eq!(jane.status.unwrap().roles, vec![Role::Admin, Role::DefaultUser]);
    ns.delete().await;
}

#[tokio::test]
async fn customising_the_matrix_reaches_every_user_and_cannot_lock_out_org_admin() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "matrix").await;
    let _operator = Operator::start(&ns.name);
    let users: kube::Api<CEUser> = ns.api();
    let orgs: kube::Api<Organization> = ns.api();
    apply(&ns.name, TREE);
    wait_roles(&users, "jane", &[Role::DefaultUser]).await;

    let grant =
        serde_json::json!({"spec": {"roles": [{"role": "default-user", "grant": ["viewActivity", "createElements"]}]}});
    orgs.patch("acme", &PatchParams::default(), &Patch::Merge(&grant))
        .await
        .unwrap();
    wait_for(&users, "jane", "privileges from the customised matrix", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.privileges == [Privilege::ViewActivity, Privilege::CreateElements])
    })
    .await;
    assert!(
        users.get("sam").await.unwrap().status.unwrap().privileges.is_empty(),
        "org users are unaffected"
    );

    let lockout =
        serde_json::json!({"spec": {"roles": [{"role": "org-admin", "revoke": ["manageSecurity", "viewActivity"]}]}});
    orgs.patch("acme", &PatchParams::default(), &Patch::Merge(&lockout))
        .await
        .unwrap();
    let org = wait_condition(&orgs, "acme", "RolesApplied", "False", "ProtectedPrivilegeRevoked").await;
    assert!(
        org.condition("RolesApplied")
            .unwrap()
            .message
            .contains("manageSecurity")
    );
    let matrix = org.status.unwrap().privileges;
    let org_admin = &matrix.iter().find(|r| r.role == Role::OrgAdmin).unwrap().privileges;
    assert!(
        org_admin.contains(&Privilege::ManageSecurity),
        "the protected privilege stays"
    );
    assert!(
        !org_admin.contains(&Privilege::ViewActivity),
        "the unprotected revocation applies"
    );
    // Jane lost the default-user grant with the merge patch that replaced the roles list.
    wait_for(&users, "jane", "no privileges", TIMEOUT, |u| {
        u.status.as_ref().is_some_and(|s| s.privileges.is_empty())
    })
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn a_binding_applied_before_its_user_waits_and_converges() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "early").await;
    let _operator = Operator::start(&ns.name);
    let bindings: kube::Api<RoleBinding> = ns.api();
    apply(&ns.name, &binding("sam-org-admin", "sam", "org-admin", ""));
    wait_condition(&bindings, "sam-org-admin", "Ready", "False", "UserNotFound").await;
    apply(&ns.name, TREE);
    let status = wait_ready(&bindings, "sam-org-admin").await.status.unwrap();
    assert_eq!(status.organization.as_deref(), Some("acme"));
    let orgs: kube::Api<Organization> = ns.api();
    wait_condition(&orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    ns.delete().await;
}

#[tokio::test]
async fn an_admin_holds_the_instance_privileges_until_the_organization_revokes_one() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "instances").await;
    let _operator = Operator::start(&ns.name);
    apply(&ns.name, TREE);
    apply(&ns.name, &binding("jane-admin", "jane", "admin", ""));
    let users: kube::Api<CEUser> = ns.api();
    let instance_privileges = [
        Privilege::ViewAccountElementInstances,
        Privilege::UseAccountElementInstances,
        Privilege::EditAccountElementInstances,
        Privilege::DeleteAccountElementInstances,
    ];
    let jane = wait_roles(&users, "jane", &[Role::Admin, Role::DefaultUser]).await;
    let status = jane.status.unwrap();
    for p in instance_privileges {
        assert!(
            status.privileges.contains(&p),
            "admin lacks {p:?}: {:?}",
            status.privileges
        );
    }
    // Held in jane's own account only (admin is an account-scoped role).
    let scopes = status.privilege_scopes.unwrap();
    assert!(scopes.organization.is_empty() && scopes.account.contains(&Privilege::EditAccountElementInstances));

    let orgs: kube::Api<Organization> = ns.api();
    orgs.patch(
        "acme",
        &PatchParams::default(),
        &Patch::Merge(
            &serde_json::json!({"spec": {"roles": [{"role": "admin", "revoke": ["deleteAccountElementInstances"]}]}}),
        ),
    )
    .await
    .unwrap();
    let jane = wait_for(&users, "jane", "deleteAccountElementInstances revoked", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| !s.privileges.contains(&Privilege::DeleteAccountElementInstances))
    })
    .await;
    let privileges = jane.status.unwrap().privileges;
    for p in &instance_privileges[..3] {
        assert!(privileges.contains(p), "{p:?} went too: {privileges:?}");
    }
    ns.delete().await;
}

#[tokio::test]
async fn a_user_follows_its_accounts_default_ness_and_its_org_admin_binding_with_it() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "default-ness").await;
    let _operator = Operator::start(&ns.name);
    // acme declares no default account: the operator creates acme-default; jane is put in it
    // and made org-admin. globex gets a generated default account nobody uses.
    apply(
        &ns.name,
        "
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: acme}
spec: {displayName: Acme}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Organization
metadata: {name: globex}
spec: {displayName: Globex}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: CEUser
metadata: {name: jane}
spec: {accountRef: {name: acme-default}, email: jane@acme.example}
",
    );
    apply(&ns.name, &binding("jane-org-admin", "jane", "org-admin", ""));
    let users: kube::Api<CEUser> = ns.api();
    let bindings: kube::Api<RoleBinding> = ns.api();
    let accounts: kube::Api<ce_operator::api::Account> = ns.api();
    wait_roles(&users, "jane", &[Role::OrgAdmin, Role::Org]).await;
    wait_ready(&bindings, "jane-org-admin").await;
    wait_ready(&accounts, "globex-default").await;

    // Declared default accounts land. globex's generated one holds no users: the declared
    // ghq supersedes it. acme's holds jane: a declared one supersedes it only while it is
    // empty (issue 26: it took org-admin from jane, and the organization had none), so hq is
    // an ordinary account that reports the duplicate, and jane keeps her roles.
    apply(
        &ns.name,
        "
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: hq}
spec: {organizationRef: {name: acme}, default: true}
---
apiVersion: ce.tenancy.io/v1alpha1
kind: Account
metadata: {name: ghq}
spec: {organizationRef: {name: globex}, default: true}
",
    );
    let hq = wait_condition(&accounts, "hq", "Ready", "False", "DuplicateDefaultAccount").await;
    assert!(
        hq.condition("Ready")
            .unwrap()
            .message
            .contains("acme-default, which the operator created, holds users"),
        "{:?}",
        hq.condition("Ready")
    );
    wait_roles(&users, "jane", &[Role::OrgAdmin, Role::Org]).await;
    wait_ready(&bindings, "jane-org-admin").await;
    wait_ready(&accounts, "acme-default").await;
    // globex's generated account had no users: the declared one supersedes it, and it goes.
    support::wait_gone(&accounts, "globex-default", TIMEOUT).await;
    ns.delete().await;
}
