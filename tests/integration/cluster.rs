//! Proof that the test control plane is a real one: garbage collection, namespace deletion,
//! RBAC, and clusters that start side by side and leave no process behind.

use crate::support;

use std::{process::Command, time::Duration};

use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::{ConfigMap, Namespace, Secret, ServiceAccount},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
};
use support::{TIMEOUT, TestNamespace, client, wait_gone, wait_until};

fn config_map(name: &str, owner: Option<&ConfigMap>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: o.metadata.name.clone().unwrap(),
                    uid: o.metadata.uid.clone().unwrap(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "gc").await;
    let api: Api<ConfigMap> = ns.api();
    let owner = api
        .create(&PostParams::default(), &config_map("owner", None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("dependent", Some(&owner)))
        .await
        .unwrap();

    api.delete("owner", &DeleteParams::background()).await.unwrap();

    wait_gone(&api, "dependent", TIMEOUT).await;
    ns.delete().await;
}

#[tokio::test]
async fn a_namespace_with_objects_is_deleted_completely() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "nsdel").await;
    let name = ns.name.clone();
    let cms: Api<ConfigMap> = ns.api();
    for i in 0..3 {
        cms.create(&PostParams::default(), &config_map(&format!("cm-{i}"), None))
            .await
            .unwrap();
    }

    ns.delete().await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_gone(&namespaces, &name, TIMEOUT).await;
    let left = Api::<ConfigMap>::namespaced(client, &name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "objects survived their namespace: {:?}",
        left.items
    );
}

#[tokio::test]
async fn rbac_allows_what_a_role_grants_and_refuses_the_rest() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "rbac").await;
    let cms: Api<ConfigMap> = ns.api();
    cms.create(&PostParams::default(), &config_map("visible", None))
        .await
        .unwrap();

    let sa_api: Api<ServiceAccount> = ns.api();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sa_api.create(&PostParams::default(), &sa).await.unwrap();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("get-configmaps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    };
    ns.api::<Role>().create(&PostParams::default(), &role).await.unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "get-configmaps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.name.clone()),
            ..Default::default()
        }]),
    };
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // A token for the ServiceAccount from the TokenRequest API, as a pod would get one.
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sa_api
        .create_token_request("reader", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .expect("token request status")
        .token;
    let mut config = Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(support::kubeconfig_path()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let as_reader = Client::try_from(config).unwrap();

    let reader_cms: Api<ConfigMap> = Api::namespaced(as_reader.clone(), &ns.name);
    let got = reader_cms.get("visible").await.expect("the Role grants get configmaps");
    assert_eq!(got.data.unwrap()["k"], "v");

    let secrets: Api<Secret> = Api::namespaced(as_reader.clone(), &ns.name);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing secrets must be forbidden, got {other:?}"),
    }
    match reader_cms.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => {
            panic!("listing configmaps (only get is granted) must be forbidden, got {other:?}")
        }
    }
    ns.delete().await;
}

fn cluster_processes(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("ce-cluster:{}:", dir.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_second_cluster_runs_side_by_side_and_stops_without_leftovers() {
    // Make sure the shared cluster is up first, so the two really run at once.
    let shared = client().await;
    let dir = support::repo_root()
        .join("target/test-clusters")
        .join(format!("side-by-side-{}", std::process::id()));
    let dir2 = dir.clone();
    tokio::task::spawn_blocking(move || support::start_cluster(&dir2, std::process::id()))
        .await
        .unwrap();

    let running = cluster_processes(&dir);
    for component in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        assert!(
            running.iter().any(|p| p.contains(&format!(":{component} "))),
            "{component} of the second cluster is not running: {running:?}"
        );
    }
    let second_config = std::fs::read_to_string(dir.join("kubeconfig")).unwrap();
    let first_config = std::fs::read_to_string(support::kubeconfig_path()).unwrap();
    let server = |c: &str| c.lines().find(|l| l.contains("server:")).unwrap().trim().to_owned();
    assert_ne!(
        server(&second_config),
        server(&first_config),
        "both clusters on one port"
    );
    // Both answer.
    shared.apiserver_version().await.expect("first cluster answers");
    let out = Command::new(support::tool("kubectl"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["get", "namespaces", "-o", "name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "second cluster does not answer: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));

    let status = Command::new(support::repo_root().join("hack/cluster.sh"))
        .args(["down", "--dir"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(
        "the second cluster's processes to exit",
        Duration::from_secs(15),
        || async { cluster_processes(&dir).is_empty() },
    )
    .await;
    assert!(!dir.join("kubeconfig").exists(), "kubeconfig left behind");
}
