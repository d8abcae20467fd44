//! Unit tests of the API types: serde shape, defaults, and the schema fragments the API
//! server relies on.

use serde_json::{Value, json};

use super::*;

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| &v[key])
}

#[test]
fn organization_defaults_apply_when_fields_are_absent() {
    let spec: OrganizationSpec = serde_json::from_value(json!({"displayName": "Acme"})).unwrap();
    assert_eq!(spec.security.secret_length, 32);
    assert_eq!(spec.security.rotation_grace_period, "24h");
    assert_eq!(spec.security.password_policy.min_length, 12);
    assert!(!spec.allow_cascading_deletion);
    assert!(spec.roles.is_empty() && spec.owner.is_none() && spec.whitelabel.is_none());
}

#[test]
fn organization_round_trips_with_camel_case_keys() {
    let value = json!({
        "displayName": "Acme",
        "owner": {"email": "ceo@acme.example", "displayName": "CEO"},
        "defaultAccountName": "acme-hq",
        "roles": [{"role": "admin", "grant": ["viewActivity"], "revoke": ["deleteAccountElementInstances"]}],
        "security": {"secretLength": 48, "rotationGracePeriod": "1h", "passwordPolicy": {"minLength": 10, "requireMixedCase": false, "requireDigit": true, "requireSymbol": true}, "twoFactorRequired": true, "allowSystemRoleOverride": false},
        "superOrganizationRef": {"namespace": "partners", "name": "big"},
        "allowCascadingDeletion": true
    });
    let spec: OrganizationSpec = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(spec.roles[0].role, Role::Admin);
    assert_eq!(spec.roles[0].revoke, vec![Privilege::DeleteAccountElementInstances]);
    assert_eq!(serde_json::to_value(&spec).unwrap(), value);
}

#[test]
fn roles_and_privileges_use_the_seed_spelling() {
    let keys: Vec<Value> = Role::ALL.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    assert_eq!(
        keys,
        vec![json!("org-admin"), json!("admin"), json!("org"), json!("default-user")]
    );
    for role in Role::ALL {
        assert_eq!(serde_json::to_value(role).unwrap(), json!(role.key()));
    }
    for privilege in Privilege::ALL {
        assert_eq!(serde_json::to_value(privilege).unwrap(), json!(privilege.key()));
    }
    assert_eq!(Privilege::ManageElementOrgLists.key(), "manageElementOrgLists");
    assert!(Role::Org.is_system_assigned() && Role::DefaultUser.is_system_assigned());
    assert!(!Role::OrgAdmin.is_system_assigned() && !Role::Admin.is_system_assigned());
}

#[test]
fn status_omits_what_is_unknown() {
    let status = CEUserStatus::default();
    assert_eq!(serde_json::to_value(&status).unwrap(), json!({}));
    let status = CEUserStatus {
        roles: vec![Role::Admin, Role::DefaultUser],
        secret_ref: Some(SecretRef {
            name: "jane-user-secret".into(),
        }),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({"roles": ["admin", "default-user"], "secretRef": {"name": "jane-user-secret"}})
    );
}

/// What every kind's CRD must have: the group, namespaced, one short name of its own starting
/// with `ce` (`kubectl get ceorg`), the `ce` category (`kubectl get ce`), a status subresource and
/// the Ready, Reason and Age columns. The names themselves are pinned by `crds/` (crd_drift).
#[test]
fn every_kind_has_names_categories_and_status_subresource() {
    let crds = crds();
    let mut short_names = std::collections::BTreeSet::new();
    for crd in &crds {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        let short = crd.spec.names.short_names.as_deref().unwrap_or_default();
        assert!(
            short.len() == 1 && short[0].starts_with("ce") && short_names.insert(short[0].clone()),
            "{kind}: short names {short:?}"
        );
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&[CATEGORY.to_string()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "{kind} has no status subresource"
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Reason") && columns.contains(&"Age"),
            "{kind}: {columns:?}"
        );
        let reason = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.name == "Reason")
            .unwrap();
        assert_eq!(reason.priority, Some(1));
        // Conditions are a list-map keyed by type, so server-side apply merges them per type.
        let conditions = at(&schema_of(crd), "properties.status.properties.conditions").clone();
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]), "{kind}");
    }
}

#[test]
fn element_lists_are_sets_of_element_keys() {
    let safelist = schema_of(&ElementSafelist::crd());
    let elements = at(&safelist, "properties.spec.properties.elements");
    assert_eq!(elements["x-kubernetes-list-type"], "set");
    assert_eq!(elements["items"]["pattern"], ELEMENT_KEY_PATTERN);
    let org = schema_of(&Organization::crd());
    let denylist = at(&org, "properties.spec.properties.whitelabel.properties.elementDenylist");
    assert_eq!(denylist["x-kubernetes-list-type"], "set");
}

#[test]
fn references_are_immutable_through_cel() {
    for (crd, field) in [
        (Account::crd(), "organizationRef"),
        (CEUser::crd(), "accountRef"),
        (RoleBinding::crd(), "userRef"),
        (RoleBinding::crd(), "role"),
        (ElementSafelist::crd(), "organizationRef"),
    ] {
        let schema = schema_of(&crd);
        let rules = &at(&schema, "properties.spec.properties")[field]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "self == oldSelf", "{} {field}", crd.spec.names.kind);
    }
}

#[test]
fn role_and_privilege_fields_are_enums() {
    let schema = schema_of(&Organization::crd());
    let roles = at(&schema, "properties.spec.properties.roles");
    assert_eq!(roles["x-kubernetes-list-type"], "map");
    assert_eq!(
        roles["items"]["properties"]["role"]["enum"].as_array().unwrap().len(),
        4
    );
    assert_eq!(
        roles["items"]["properties"]["grant"]["items"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        Privilege::ALL.len()
    );
    let binding = schema_of(&RoleBinding::crd());
    assert_eq!(
        at(&binding, "properties.spec.properties.role")["enum"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn name_limits_leave_room_for_generated_secret_names() {
    assert_eq!(MAX_ORGANIZATION_NAME + "-owner".len() + "-user-secret".len(), 63);
    assert_eq!(MAX_USER_NAME + "-user-secret".len(), 63);
    let org = serde_json::to_string(&Organization::crd()).unwrap();
    assert!(org.contains(&format!("size(self.metadata.name) <= {MAX_ORGANIZATION_NAME}")));
    let user = serde_json::to_string(&CEUser::crd()).unwrap();
    assert!(user.contains(&format!("size(self.metadata.name) <= {MAX_USER_NAME}")));
}

#[test]
fn the_examples_parse_as_the_api_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "Organization" => drop(serde_json::from_value::<Organization>(doc).unwrap()),
                "Account" => drop(serde_json::from_value::<Account>(doc).unwrap()),
                "CEUser" => drop(serde_json::from_value::<CEUser>(doc).unwrap()),
                "RoleBinding" => drop(serde_json::from_value::<RoleBinding>(doc).unwrap()),
                "ElementSafelist" => drop(serde_json::from_value::<ElementSafelist>(doc).unwrap()),
                _ => {}
            }
            kinds.insert(kind);
        }
    }
    for kind in ["Organization", "Account", "CEUser", "RoleBinding", "ElementSafelist"] {
        assert!(kinds.contains(kind), "examples/ has no {kind}");
    }
}
