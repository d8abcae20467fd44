//! Element safelists and super-organization denylists end to end. Links cross namespaces, so
//! this module runs one operator over all namespaces, in a single test (`hack/test.sh` runs
//! the module alone, so no other operator runs meanwhile).

use crate::support;

use ce_operator::api::{ElementSafelist, HasConditions, Organization};
use kube::api::{DeleteParams, Patch, PatchParams};
use support::{Operator, TIMEOUT, TestNamespace, apply, client, install_crds, wait_condition, wait_for, wait_ready};

fn org(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: Organization\nmetadata: {{name: {name}}}\nspec: {{displayName: {name}{extra}}}\n"
    )
}

fn safelist(name: &str, org: &str, elements: &str) -> String {
    format!(
        "apiVersion: ce.tenancy.io/v1alpha1\nkind: ElementSafelist\nmetadata: {{name: {name}}}\nspec: {{organizationRef: {{name: {org}}}, elements: [{elements}]}}\n"
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn patch<K>(api: &kube::Api<K>, name: &str, patch: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn safelists_denylists_and_super_organization_links() {
    let client = client().await;
    install_crds(&client).await;
    let partners = TestNamespace::new(&client, "partners").await;
    let tenants = TestNamespace::new(&client, "tenants").await;
    let other = TestNamespace::new(&client, "other").await;
    let _operator = Operator::start_all_namespaces("safelist");
    let super_orgs: kube::Api<Organization> = partners.api();
    let orgs: kube::Api<Organization> = tenants.api();
    let lists: kube::Api<ElementSafelist> = tenants.api();

    // A safelist alone: exactly its elements are visible.
    apply(
        &tenants.name,
        &format!(
            "{}---\n{}",
            org("acme", ""),
            safelist("acme", "acme", "salesforce, hubspot")
        ),
    );
    let list = wait_ready(&lists, "acme").await.status.unwrap();
    assert_eq!(list.effective_elements, strings(&["hubspot", "salesforce"]));
    let visibility = wait_for(&orgs, "acme", "its safelist in effect", TIMEOUT, |o| {
        o.status
            .as_ref()
            .and_then(|s| s.element_visibility.as_ref())
            .is_some_and(|v| v.safelist.as_deref() == Some("acme"))
    })
    .await;
    assert!(
        visibility
            .status
            .unwrap()
            .element_visibility
            .unwrap()
            .denied_elements
            .is_empty()
    );

    // A denylist alone: a member without a safelist sees everything but the denied.
    let allow = format!(
        ", whitelabel: {{allowedNamespaces: [{}], elementDenylist: [box]}}",
        tenants.name
    );
    apply(&partners.name, &org("big", &allow));
    let link = format!(", superOrganizationRef: {{namespace: {}, name: big}}", partners.name);
    apply(&tenants.name, &org("globex", &link));
    let globex = wait_for(&orgs, "globex", "box denied", TIMEOUT, |o| {
        o.status
            .as_ref()
            .and_then(|s| s.element_visibility.as_ref())
            .is_some_and(|v| v.denied_elements == ["box"])
    })
    .await;
    assert!(globex.status.unwrap().element_visibility.unwrap().safelist.is_none());
    wait_ready(&orgs, "globex").await;
    wait_condition(&super_orgs, "big", "DenylistConflict", "False", "NoConflict").await;

    // Conflict, safelist first: acme joins big, then big denies hubspot.
    apply(&tenants.name, &org("acme", &link));
    wait_for(&orgs, "acme", "box denied", TIMEOUT, |o| {
        o.status
            .as_ref()
            .and_then(|s| s.element_visibility.as_ref())
            .is_some_and(|v| v.denied_elements == ["box"])
    })
    .await;
    patch(
        &super_orgs,
        "big",
        serde_json::json!({"spec": {"whitelabel": {"elementDenylist": ["box", "hubspot"]}}}),
    )
    .await;
    let conflicted = wait_condition(&lists, "acme", "Ready", "False", "DeniedBySuperOrganization").await;
    assert!(conflicted.condition("Ready").unwrap().message.contains("hubspot"));
    let status = conflicted.status.unwrap();
    assert_eq!(status.conflicts, strings(&["hubspot"]));
    assert_eq!(status.effective_elements, strings(&["salesforce"]), "deny wins");
    let big = wait_condition(
        &super_orgs,
        "big",
        "DenylistConflict",
        "True",
        "SafelistedDeniedElements",
    )
    .await;
    let message = &big.condition("DenylistConflict").unwrap().message;
    assert!(message.contains("acme") && message.contains("hubspot"), "{message}");

    // Resolved from the safelist side: both conditions clear by themselves.
    patch(
        &lists,
        "acme",
        serde_json::json!({"spec": {"elements": ["salesforce"]}}),
    )
    .await;
    wait_ready(&lists, "acme").await;
    wait_condition(&super_orgs, "big", "DenylistConflict", "False", "NoConflict").await;

    // Conflict, denylist first: acme safelists box, which big already denies.
    patch(
        &lists,
        "acme",
        serde_json::json!({"spec": {"elements": ["salesforce", "box"]}}),
    )
    .await;
    let conflicted = wait_condition(&lists, "acme", "Ready", "False", "DeniedBySuperOrganization").await;
    assert_eq!(conflicted.status.unwrap().conflicts, strings(&["box"]));
    wait_condition(
        &super_orgs,
        "big",
        "DenylistConflict",
        "True",
        "SafelistedDeniedElements",
    )
    .await;
    // Resolved from the denylist side.
    patch(
        &super_orgs,
        "big",
        serde_json::json!({"spec": {"whitelabel": {"elementDenylist": []}}}),
    )
    .await;
    let list = wait_ready(&lists, "acme").await.status.unwrap();
    assert_eq!(list.effective_elements, strings(&["box", "salesforce"]));
    wait_condition(&super_orgs, "big", "DenylistConflict", "False", "NoConflict").await;

    // A link from a namespace the super-organization does not allow is rejected.
    let other_orgs: kube::Api<Organization> = other.api();
    apply(&other.name, &org("initech", &link));
    let rejected = wait_condition(&other_orgs, "initech", "Ready", "False", "SuperOrganizationRejected").await;
    assert!(
        rejected
            .condition("Ready")
            .unwrap()
            .message
            .contains("allowedNamespaces")
    );

    // A second safelist for the same organization has no effect.
    apply(&tenants.name, &safelist("acme-second", "acme", "zendesk"));
    let duplicate = wait_condition(&lists, "acme-second", "Ready", "False", "DuplicateSafelist").await;
    // acme still shows the first safelist: judged once the operator has reconciled it since.
    let acme = support::touch_and_wait_judged(&orgs, "acme").await;
    assert!(duplicate.status.unwrap().effective_elements.is_empty());
    assert_eq!(
        acme.status.unwrap().element_visibility.unwrap().safelist.as_deref(),
        Some("acme")
    );

    // The super-organization goes: members report it missing, nothing else breaks.
    patch(
        &super_orgs,
        "big",
        serde_json::json!({"spec": {"whitelabel": {"elementDenylist": ["salesforce"]}}}),
    )
    .await;
    wait_condition(&lists, "acme", "Ready", "False", "DeniedBySuperOrganization").await;
    super_orgs.delete("big", &DeleteParams::default()).await.unwrap();
    support::wait_gone(&super_orgs, "big", TIMEOUT).await;
    for member in ["acme", "globex"] {
        let org = wait_condition(&orgs, member, "Ready", "False", "SuperOrganizationNotFound").await;
        let visibility = org.status.unwrap().element_visibility.unwrap();
        assert!(
            visibility.withheld,
            "{member}: a denylist that cannot be read is not empty"
        );
    }
    // Fails closed: the safelist shows nothing until the link is accepted again.
    let list = wait_condition(&lists, "acme", "Ready", "False", "SuperOrganizationNotFound").await;
    assert!(
        list.condition("Ready")
            .unwrap()
            .message
            .contains("no element is visible")
    );
    assert!(list.status.unwrap().effective_elements.is_empty());

    for ns in [partners, tenants, other] {
        ns.delete().await;
    }
}
