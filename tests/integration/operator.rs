//! The Organization, Account and CEUser controllers end to end: the operator binary runs as
//! a separate process against the real API server, watching the test's namespace.

use crate::support;

use std::{collections::BTreeMap, time::Duration};

use ce_operator::api::{Account, CEUser, HasConditions, Organization, Role, RoleBinding};
use k8s_openapi::{
    ByteString,
    api::{core::v1::Secret, events::v1::Event},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use support::{
    Operator, TIMEOUT, TestNamespace, apply, client, install_crds, wait_condition, wait_for, wait_gone, wait_ready,
};

fn org(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {{name: {name}}}\nspec: {{displayName: {name}{extra}}}\n"
    )
}

fn account(name: &str, org: &str, extra: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Account\nmetadata: {{name: {name}}}\nspec: {{organizationRef: {{name: {org}}}{extra}}}\n"
    )
}

fn user(name: &str, account: &str, email: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: CEUser\nmetadata: {{name: {name}}}\nspec: {{accountRef: {{name: {account}}}, email: {email}}}\n"
    )
}

/// Organization acme (with `org_extra` in its spec), account eu, user jane.
fn tree(org_extra: &str) -> String {
    format!(
        "{}---\n{}---\n{}",
        org("acme", org_extra),
        account("eu", "acme", ""),
        user("jane", "eu", "jane@acme.example")
    )
}

struct Env {
    ns: TestNamespace,
    operator: Operator,
    orgs: Api<Organization>,
    accounts: Api<Account>,
    users: Api<CEUser>,
    secrets: Api<Secret>,
}

async fn env(prefix: &str) -> Env {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let operator = Operator::start(&ns.name);
    Env {
        orgs: ns.api(),
        accounts: ns.api(),
        users: ns.api(),
        secrets: ns.api(),
        operator,
        ns,
    }
}

async fn events_with_reason(env: &Env, reason: &str) -> Vec<Event> {
    let events: Api<Event> = env.ns.api();
    let all = events.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|b| b.0.clone())
}

#[tokio::test]
async fn creation_in_every_order_converges() {
    let env = env("order").await;
    let orders: [[&str; 3]; 6] = [
        ["org", "account", "user"],
        ["org", "user", "account"],
        ["account", "org", "user"],
        ["account", "user", "org"],
        ["user", "org", "account"],
        ["user", "account", "org"],
    ];
    for (i, order) in orders.iter().enumerate() {
        let (o, a, u) = (format!("org{i}"), format!("acct{i}"), format!("user{i}"));
        for (step, kind) in order.iter().enumerate() {
            match *kind {
                "org" => apply(&env.ns.name, &org(&o, "")),
                "account" => {
                    apply(&env.ns.name, &account(&a, &o, ""));
                    if !order[..step].contains(&"org") {
                        wait_condition(&env.accounts, &a, "Ready", "False", "OrganizationNotFound").await;
                    }
                }
                _ => {
                    apply(&env.ns.name, &user(&u, &a, &format!("u{i}@example.com")));
                    if !order[..step].contains(&"account") {
                        wait_condition(&env.users, &u, "Ready", "False", "AccountNotFound").await;
                    } else if !order[..step].contains(&"org") {
                        wait_condition(&env.users, &u, "Ready", "False", "OrganizationNotFound").await;
                    }
                }
            }
        }
        let user = wait_ready(&env.users, &u).await;
        let status = user.status.unwrap();
        assert_eq!(status.organization.as_deref(), Some(o.as_str()), "order {order:?}");
        assert_eq!(status.account.as_deref(), Some(a.as_str()));
        // acct{i} is not the default account: the operator created {org}-default.
        assert_eq!(status.system_role, Some(Role::DefaultUser));
        assert_eq!(status.roles, vec![Role::DefaultUser]);
        assert!(status.secret_fingerprint.is_some_and(|f| f.len() == 16));
        let org_status = wait_for(&env.orgs, &o, "2 accounts and 1 user counted", TIMEOUT, |org| {
            org.status
                .as_ref()
                .is_some_and(|s| s.accounts == Some(2) && s.users == Some(1))
        })
        .await
        .status
        .unwrap();
        assert_eq!(org_status.default_account, Some(format!("{o}-default")));
        assert!(wait_ready(&env.accounts, &a).await.status.unwrap().default == Some(false));
        assert!(
            wait_ready(&env.accounts, &format!("{o}-default"))
                .await
                .status
                .unwrap()
                .default
                == Some(true)
        );
    }
    env.ns.delete().await;
}

#[tokio::test]
async fn the_owner_is_created_as_org_admin_of_the_default_account() {
    let env = env("owner").await;
    apply(
        &env.ns.name,
        &org("acme", ", owner: {email: ceo@acme.example, displayName: CEO}"),
    );
    let owner = wait_for(&env.users, "acme-owner", "roles org-admin and org", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.roles == [Role::OrgAdmin, Role::Org])
    })
    .await;
    let status = owner.status.unwrap();
    assert_eq!(status.account.as_deref(), Some("acme-default"));
    assert_eq!(status.system_role, Some(Role::Org));
    assert_eq!(status.roles, vec![Role::OrgAdmin, Role::Org]);
    assert!(
        status.privileges.len() == 14,
        "org-admin holds every privilege: {:?}",
        status.privileges
    );
    let org = wait_condition(&env.orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    let org_uid = org.uid().unwrap();
    for owned in [
        owner.metadata.owner_references.unwrap(),
        env.ns
            .api::<RoleBinding>()
            .get("acme-owner-org-admin")
            .await
            .unwrap()
            .metadata
            .owner_references
            .unwrap(),
    ] {
        assert_eq!(owned[0].uid, org_uid, "owned by the organization");
    }
    env.ns.delete().await;
}

#[tokio::test]
async fn a_second_default_account_is_reported_on_the_newer_one() {
    let env = env("dupdefault").await;
    apply(
        &env.ns.name,
        &format!(
            "{}---\n{}",
            org("acme", ""),
            account("first", "acme", ", default: true")
        ),
    );
    wait_for(&env.orgs, "acme", "default account first", TIMEOUT, |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.default_account.as_deref() == Some("first"))
    })
    .await;
    apply(&env.ns.name, &account("second", "acme", ", default: true"));
    let second = wait_condition(&env.accounts, "second", "Ready", "False", "DuplicateDefaultAccount").await;
    assert!(
        second.condition("Ready").unwrap().message.contains("first"),
        "the message names the default account"
    );
    assert_eq!(second.status.unwrap().default, Some(false));
    assert_eq!(
        env.orgs
            .get("acme")
            .await
            .unwrap()
            .status
            .unwrap()
            .default_account
            .as_deref(),
        Some("first")
    );
    assert!(
        env.accounts.get_opt("acme-default").await.unwrap().is_none(),
        "no default account is created when one is declared"
    );
    // The older one goes: the newer becomes the default by itself.
    env.accounts.delete("first", &DeleteParams::default()).await.unwrap();
    let second = wait_ready(&env.accounts, "second").await;
    assert_eq!(second.status.unwrap().default, Some(true));
    env.ns.delete().await;
}

#[tokio::test]
async fn a_duplicate_email_is_reported_on_the_newer_user_and_recovers() {
    let env = env("dupemail").await;
    apply(
        &env.ns.name,
        &format!(
            "{}---\n{}---\n{}",
            org("acme", ""),
            account("a", "acme", ""),
            account("b", "acme", "")
        ),
    );
    // Age decides, then name (creation timestamps have whole seconds): "a-older" wins both ways.
    apply(&env.ns.name, &user("a-older", "a", "jane@acme.example"));
    wait_ready(&env.users, "a-older").await;
    apply(&env.ns.name, &user("b-newer", "b", "JANE@acme.example"));
    let newer = wait_condition(&env.users, "b-newer", "Ready", "False", "DuplicateEmail").await;
    assert!(newer.condition("Ready").unwrap().message.contains("a-older"));
    assert!(
        env.secrets.get_opt("b-newer-user-secret").await.unwrap().is_none(),
        "no secret for a duplicate"
    );
    assert!(
        wait_ready(&env.users, "a-older")
            .await
            .status
            .unwrap()
            .secret_ref
            .is_some()
    );
    // The same warning a second time (the e-mail changed away and back): one Event, its
    // series counting two.
    apply(&env.ns.name, &user("b-newer", "b", "joe@acme.example"));
    wait_ready(&env.users, "b-newer").await;
    apply(&env.ns.name, &user("b-newer", "b", "JANE@acme.example"));
    wait_condition(&env.users, "b-newer", "Ready", "False", "DuplicateEmail").await;
    support::wait_until("the repeated warning counted on the first Event", TIMEOUT, || async {
        let events = events_with_reason(&env, "DuplicateEmail").await;
        events.len() == 1 && events[0].series.as_ref().is_some_and(|s| s.count == 2)
    })
    .await;
    env.users.delete("a-older", &DeleteParams::default()).await.unwrap();
    wait_ready(&env.users, "b-newer").await;
    assert!(env.secrets.get_opt("b-newer-user-secret").await.unwrap().is_some());
    env.ns.delete().await;
}

#[tokio::test]
async fn secrets_are_generated_labelled_owned_and_never_exposed() {
    let env = env("secrets").await;
    apply(&env.ns.name, &tree(", security: {secretLength: 64}"));
    let jane = wait_ready(&env.users, "jane").await;
    let org = wait_ready(&env.orgs, "acme").await;
    for (owner_uid, name, labels) in [
        (
            org.uid().unwrap(),
            "acme-org-secret",
            vec![("ce.tenancy.io/organization", "acme")],
        ),
        (
            jane.uid().unwrap(),
            "jane-user-secret",
            vec![
                ("ce.tenancy.io/organization", "acme"),
                ("ce.tenancy.io/account", "eu"),
                ("ce.tenancy.io/user", "jane"),
            ],
        ),
    ] {
        let secret = env.secrets.get(name).await.unwrap();
        let value = secret_value(&secret, "secret").expect("secret key");
        // 64 random bytes as unpadded URL-safe base64: 86 characters.
        assert_eq!(value.len(), 86, "{name}");
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
            (owner_uid.as_str(), Some(true), Some(true))
        );
        for (k, v) in labels {
            assert_eq!(secret.labels().get(k).map(String::as_str), Some(v), "{name} label {k}");
        }
        // The value appears nowhere else: not in the owner's status, not in events.
        let text = String::from_utf8(value).unwrap();
        let status = serde_json::to_string(&if name.starts_with("acme") {
            serde_json::to_value(&org).unwrap()
        } else {
            serde_json::to_value(&jane).unwrap()
        })
        .unwrap();
        assert!(!status.contains(&text));
        let events: Api<Event> = env.ns.api();
        assert!(
            !serde_json::to_string(&events.list(&ListParams::default()).await.unwrap())
                .unwrap()
                .contains(&text)
        );
        assert!(
            !std::fs::read_to_string(&env.operator.log).unwrap().contains(&text),
            "the secret is in the operator log"
        );
    }
    assert_eq!(jane.status.unwrap().secret_ref.unwrap().name, "jane-user-secret");
    env.ns.delete().await;
}

#[tokio::test]
async fn a_foreign_secret_of_the_same_name_is_left_untouched() {
    let env = env("foreign").await;
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("jane-user-secret".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"not yours".to_vec()),
        )])),
        ..Default::default()
    };
    let before = env.secrets.create(&PostParams::default(), &foreign).await.unwrap();
    apply(&env.ns.name, &tree(""));
    let jane = wait_condition(&env.users, "jane", "SecretReady", "False", "SecretConflict").await;
    assert!(jane.has_condition("Ready", "False", "SecretConflict"));
    assert!(jane.status.unwrap().secret_fingerprint.is_none());
    let after = env.secrets.get("jane-user-secret").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the foreign Secret was written to"
    );
    assert_eq!(after.data, before.data);
    assert!(after.metadata.owner_references.is_none());
    env.ns.delete().await;
}

#[tokio::test]
async fn a_deleted_secret_is_recreated_with_a_new_value_and_a_warning() {
    let env = env("recreate").await;
    apply(&env.ns.name, &tree(""));
    let first = wait_ready(&env.users, "jane")
        .await
        .status
        .unwrap()
        .secret_fingerprint
        .unwrap();
    let old = env.secrets.get("jane-user-secret").await.unwrap();
    env.secrets
        .delete("jane-user-secret", &DeleteParams::default())
        .await
        .unwrap();
    let jane = wait_for(&env.users, "jane", "a new secret fingerprint", TIMEOUT, |u| {
        u.status
            .as_ref()
            .and_then(|s| s.secret_fingerprint.as_ref())
            .is_some_and(|f| *f != first)
    })
    .await;
    let new = env.secrets.get("jane-user-secret").await.unwrap();
    assert_ne!(secret_value(&new, "secret"), secret_value(&old, "secret"));
    assert!(jane.has_condition("Ready", "True", "Ready"));
    support::wait_until("a SecretRecreated warning", TIMEOUT, || async {
        !events_with_reason(&env, "SecretRecreated").await.is_empty()
    })
    .await;
    env.ns.delete().await;
}

#[tokio::test]
async fn rotation_keeps_the_previous_secret_for_the_grace_period_then_drops_it() {
    let env = env("rotate").await;
    apply(&env.ns.name, &tree(", security: {rotationGracePeriod: 6s}"));
    let before = wait_ready(&env.users, "jane").await.status.unwrap();
    let old_value = secret_value(&env.secrets.get("jane-user-secret").await.unwrap(), "secret").unwrap();

    let rotate = serde_json::json!({"metadata": {"annotations": {"ce.tenancy.io/rotate-secret": "2026-11-22"}}});
    env.users
        .patch("jane", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let after = wait_for(&env.users, "jane", "lastRotationRequest 2026-11-22", TIMEOUT, |u| {
        u.status
            .as_ref()
            .is_some_and(|s| s.last_rotation_request.as_deref() == Some("2026-11-22"))
    })
    .await
    .status
    .unwrap();
    assert_ne!(after.secret_fingerprint, before.secret_fingerprint);
    assert!(after.last_rotation_time.is_some());
    let rotated = env.secrets.get("jane-user-secret").await.unwrap();
    assert_eq!(
        secret_value(&rotated, "previous"),
        Some(old_value.clone()),
        "the previous secret stays during the grace period"
    );
    assert_ne!(secret_value(&rotated, "secret"), Some(old_value));
    support::wait_until("a SecretRotated event", TIMEOUT, || async {
        !events_with_reason(&env, "SecretRotated").await.is_empty()
    })
    .await;

    // After the grace period (a timed requeue, no polling), the previous one is removed.
    wait_for(
        &env.secrets,
        "jane-user-secret",
        "the previous key removed",
        Duration::from_secs(30),
        |s| secret_value(s, "previous").is_none(),
    )
    .await;
    let final_secret = env.secrets.get("jane-user-secret").await.unwrap();
    assert_eq!(
        secret_value(&final_secret, "secret"),
        secret_value(&rotated, "secret"),
        "the current secret is kept"
    );

    // The same annotation value again does not rotate again: a spec change (which wakes
    // the user) with the annotation unchanged, then, once the operator has reconciled it
    // (its own counter), the Secret is as it was.
    let rv = final_secret.resource_version();
    let before = env.operator.reconciles("CEUser").await;
    env.users
        .patch(
            "jane",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({
                "metadata": {"annotations": {"ce.tenancy.io/rotate-secret": "2026-11-22"}},
                "spec": {"displayName": "Jane, touched"},
            })),
        )
        .await
        .unwrap();
    support::wait_until("the operator to reconcile jane again", TIMEOUT, || async {
        env.operator.reconciles("CEUser").await > before
    })
    .await;
    assert_eq!(
        env.secrets.get("jane-user-secret").await.unwrap().resource_version(),
        rv,
        "the Secret changed although the rotation request did not"
    );
    env.ns.delete().await;
}

#[tokio::test]
async fn deletion_waits_for_children_then_cascades_when_allowed() {
    let env = env("deletion").await;
    apply(&env.ns.name, &tree(""));
    wait_ready(&env.users, "jane").await;
    wait_ready(&env.orgs, "acme").await;

    env.orgs.delete("acme", &DeleteParams::default()).await.unwrap();
    let blocked = wait_condition(&env.orgs, "acme", "DeletionBlocked", "True", "ChildrenExist").await;
    let message = &blocked.condition("DeletionBlocked").unwrap().message;
    assert!(
        message.contains("account eu") && message.contains("user jane"),
        "{message}"
    );
    assert!(env.users.get_opt("jane").await.unwrap().is_some());

    // An account with users is held too.
    env.accounts.delete("eu", &DeleteParams::default()).await.unwrap();
    wait_condition(&env.accounts, "eu", "DeletionBlocked", "True", "ChildrenExist").await;

    env.orgs
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"allowCascadingDeletion": true}})),
        )
        .await
        .unwrap();
    wait_gone(&env.orgs, "acme", TIMEOUT).await;
    for name in ["eu", "acme-default"] {
        wait_gone(&env.accounts, name, TIMEOUT).await;
    }
    wait_gone(&env.users, "jane", TIMEOUT).await;
    // Owned Secrets go with their owners (garbage collector).
    wait_gone(&env.secrets, "acme-org-secret", TIMEOUT).await;
    wait_gone(&env.secrets, "jane-user-secret", TIMEOUT).await;
    env.ns.delete().await;
}

#[tokio::test]
async fn admin_present_follows_the_org_admin_bindings() {
    let env = env("adminpresent").await;
    let bindings: Api<RoleBinding> = env.ns.api();
    apply(
        &env.ns.name,
        &format!(
            "{}---\n{}---\n{}",
            org("acme", ""),
            account("hq", "acme", ", default: true"),
            user("sam", "hq", "sam@acme.example")
        ),
    );
    wait_condition(&env.orgs, "acme", "AdminPresent", "False", "NoOrgAdmin").await;
    apply(
        &env.ns.name,
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: RoleBinding\nmetadata: {name: sam-org-admin}\nspec: {userRef: {name: sam}, role: org-admin}\n",
    );
    wait_condition(&env.orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    // Revoking the last org-admin flips it back, with a Warning event.
    bindings
        .delete("sam-org-admin", &DeleteParams::default())
        .await
        .unwrap();
    wait_condition(&env.orgs, "acme", "AdminPresent", "False", "NoOrgAdmin").await;
    let sam = wait_for(&env.users, "sam", "roles back to org", TIMEOUT, |u| {
        u.status.as_ref().is_some_and(|s| s.roles == [Role::Org])
    })
    .await;
    assert!(sam.status.unwrap().privileges.is_empty());
    support::wait_until("a NoOrgAdmin warning event", TIMEOUT, || async {
        !events_with_reason(&env, "NoOrgAdmin").await.is_empty()
    })
    .await;
    env.ns.delete().await;
}

#[tokio::test]
async fn the_owner_binding_is_recreated_after_deletion() {
    let env = env("owner-binding").await;
    apply(
        &env.ns.name,
        &org("acme", ", owner: {email: ceo@acme.example, displayName: CEO}"),
    );
    let bindings: Api<RoleBinding> = env.ns.api();
    let first = wait_ready(&bindings, "acme-owner-org-admin").await;
    bindings
        .delete("acme-owner-org-admin", &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_for(&bindings, "acme-owner-org-admin", "recreated", TIMEOUT, |b| {
        b.uid() != first.uid() && b.condition("Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_ne!(again.uid(), first.uid());
    wait_condition(&env.orgs, "acme", "AdminPresent", "True", "OrgAdminPresent").await;
    env.ns.delete().await;
}

#[tokio::test]
async fn a_taken_default_account_name_and_an_invalid_secret_are_reported() {
    let env = env("taken").await;
    // Account `hq` of acme is not default, and acme wants its default account named hq.
    apply(
        &env.ns.name,
        &format!(
            "{}---\n{}---\n{}",
            account("hq", "acme", ""),
            org("acme", ", defaultAccountName: hq"),
            user("jane", "hq", "jane@acme.example")
        ),
    );
    let org = wait_condition(&env.orgs, "acme", "Ready", "False", "DefaultAccountNameTaken").await;
    assert!(
        org.condition("Ready")
            .unwrap()
            .message
            .contains("spec.defaultAccountName"),
        "{:?}",
        org.condition("Ready")
    );
    assert!(env.accounts.get_opt("acme-default").await.unwrap().is_none());
    // Declaring a default account resolves it.
    apply(&env.ns.name, &account("main", "acme", ", default: true"));
    wait_ready(&env.orgs, "acme").await;

    // The user's own Secret without its `secret` key: reported, never silently re-issued.
    wait_ready(&env.users, "jane").await;
    env.secrets
        .patch(
            "jane-user-secret",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(serde_json::json!([{"op": "remove", "path": "/data/secret"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    let jane = wait_condition(&env.users, "jane", "SecretReady", "False", "SecretInvalid").await;
    assert!(
        jane.condition("SecretReady")
            .unwrap()
            .message
            .contains("jane-user-secret")
    );
    env.ns.delete().await;
}

#[tokio::test]
async fn the_organization_secret_rotates_with_a_grace_period() {
    let env = env("org-rotate").await;
    apply(&env.ns.name, &tree(", security: {rotationGracePeriod: 5s}"));
    wait_ready(&env.orgs, "acme").await;
    let before = secret_value(&env.secrets.get("acme-org-secret").await.unwrap(), "secret").unwrap();
    env.orgs
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"metadata": {"annotations": {"ce.tenancy.io/rotate-secret": "r1"}}})),
        )
        .await
        .unwrap();
    let rotated = wait_for(
        &env.secrets,
        "acme-org-secret",
        "a new value, the old one kept",
        TIMEOUT,
        |s| secret_value(s, "previous").as_deref() == Some(before.as_slice()),
    )
    .await;
    assert_ne!(secret_value(&rotated, "secret").unwrap(), before);
    wait_for(&env.orgs, "acme", "the request recorded", TIMEOUT, |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.last_rotation_request.as_deref() == Some("r1"))
    })
    .await;
    wait_for(
        &env.secrets,
        "acme-org-secret",
        "the previous value dropped",
        TIMEOUT,
        |s| secret_value(s, "previous").is_none(),
    )
    .await;
    env.ns.delete().await;
}

#[tokio::test]
async fn an_account_cascades_its_own_deletion_and_an_uncascaded_one_waits_for_its_children() {
    let env = env("account-deletion").await;
    apply(
        &env.ns.name,
        &format!(
            "{}---\n{}---\n{}---\n{}---\n{}",
            org("acme", ""),
            account("eu", "acme", ", allowCascadingDeletion: true"),
            user("jane", "eu", "jane@acme.example"),
            account("us", "acme", ""),
            user("john", "us", "john@acme.example")
        ),
    );
    wait_ready(&env.users, "jane").await;
    wait_ready(&env.users, "john").await;
    for name in ["eu", "us"] {
        wait_for(
            &env.accounts,
            name,
            "ready, holding the operator's finalizer",
            TIMEOUT,
            |a| a.condition("Ready").is_some_and(|c| c.status == "True") && !a.finalizers().is_empty(),
        )
        .await;
    }
    // eu allows cascading: its users and their Secrets go with it.
    env.accounts.delete("eu", &DeleteParams::default()).await.unwrap();
    wait_gone(&env.accounts, "eu", TIMEOUT).await;
    wait_gone(&env.users, "jane", TIMEOUT).await;
    wait_gone(&env.secrets, "jane-user-secret", TIMEOUT).await;
    // us does not: blocked while john exists, gone once john is deleted by hand.
    env.accounts.delete("us", &DeleteParams::default()).await.unwrap();
    let blocked = wait_condition(&env.accounts, "us", "DeletionBlocked", "True", "ChildrenExist").await;
    assert!(blocked.condition("DeletionBlocked").unwrap().message.contains("john"));
    env.users.delete("john", &DeleteParams::default()).await.unwrap();
    wait_gone(&env.accounts, "us", TIMEOUT).await;
    assert!(env.users.get_opt("john").await.unwrap().is_none());
    env.ns.delete().await;
}

/// An object deleted after the caches showed it and before the operator wrote to it (its
/// status; a create in its namespace, the namespace gone too) is not a failure: the watch
/// brings the deletion, and there is nothing to retry. The write step is called directly,
/// with the object as the caches last showed it: a running operator meets this only in a
/// race (a terminating namespace under load).
#[tokio::test]
async fn an_object_gone_before_it_is_written_to_is_not_a_failure() {
    use ce_operator::{
        api::CEUserStatus,
        cache::Cache,
        controller::{
            Context, Options,
            act::{Outcome, carry_out},
        },
        model::{Action, Decision, issuance::IssuanceKey},
    };
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "gone-before-write").await;
    let (cache, _writers) = Cache::new(Some(ns.name.clone()), IssuanceKey::from_bytes(&[7; 32]).expect("a key"));
    let options = Options {
        concurrency: 1,
        resync: None,
        instance: None,
    };
    let ctx = Context::new(client.clone(), cache, &options, Default::default());

    let users = ns.api::<CEUser>();
    let jane: CEUser = users
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "CEUser", "metadata": {"name": "jane"},
                "spec": {"accountRef": {"name": "eu"}, "email": "jane@acme.example"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    users.delete("jane", &DeleteParams::default()).await.unwrap();
    wait_gone(&users, "jane", TIMEOUT).await;
    let status = CEUserStatus {
        roles: vec![Role::DefaultUser],
        ..Default::default()
    };
    let outcome = carry_out(&ctx, &jane, Decision::status(status)).await;
    assert!(
        matches!(outcome, Ok(Outcome::Done(_))),
        "a status write for a deleted user failed: {:?}",
        outcome.err()
    );

    let orgs = ns.api::<Organization>();
    let acme: Organization = orgs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "ce.tenancy.io/v1alpha1", "kind": "Organization", "metadata": {"name": "acme"},
                "spec": {"displayName": "Acme"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let name = ns.name.clone();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_gone(&namespaces, &name, TIMEOUT).await;
    let mut decision = Decision::status(Default::default());
    decision.actions.push(Action::CreateDefaultAccount {
        name: "acme-default".into(),
    });
    let outcome = carry_out(&ctx, &acme, decision).await;
    assert!(
        matches!(outcome, Ok(Outcome::Done(_))),
        "a create in a deleted namespace failed: {:?}",
        outcome.err()
    );
}
