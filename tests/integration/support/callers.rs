//! Who calls: Kubernetes identities made of client certificates signed by the test
//! cluster's CA, a CE user's credentials read from its Secrets, and plain HTTP requests.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use k8s_openapi::api::core::v1::Secret;

use super::{TestNamespace, kubeconfig_path, repo_root, tool};

/// A kubeconfig for the identity CN=`email`, O=`group`: a client certificate signed by the
/// test cluster's CA, as a platform team would issue one (or an OIDC login would name it).
pub fn identity(dir: &Path, email: &str, group: &str) -> PathBuf {
    let pki = kubeconfig_path().with_file_name("pki");
    let (key, csr, crt) = (
        dir.join(format!("{email}.key")),
        dir.join(format!("{email}.csr")),
        dir.join(format!("{email}.crt")),
    );
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subject = format!("/CN={email}/O={group}");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &subject,
        "-keyout",
        &path(&key),
        "-out",
        &path(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &path(&pki.join("ca.crt")),
        "-CAkey",
        &path(&pki.join("ca.key")),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        &path(&crt),
    ]);
    let admin = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap();
    let config = dir.join(format!("{email}.kubeconfig"));
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: {server}, certificate-authority: {}}}\nusers:\n- name: u\n  user: {{client-certificate: {}, client-key: {}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            path(&pki.join("ca.crt")),
            path(&crt),
            path(&key)
        ),
    )
    .unwrap();
    config
}

/// `kubectl` as the identity of `kubeconfig`, with `stdin`.
pub fn kubectl_as(kubeconfig: &Path, ns: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The value of a generated Secret (the test reads it as the cluster admin, as a client
/// application would be given it).
pub async fn secret(ns: &TestNamespace, name: &str, key: &str) -> String {
    let secret = ns.api::<Secret>().get(name).await.unwrap();
    let bytes = secret
        .data
        .unwrap()
        .remove(key)
        .unwrap_or_else(|| panic!("{name} has no {key}"));
    String::from_utf8(bytes.0).unwrap()
}

pub async fn credentials(ns: &TestNamespace, user: &str, org: &str) -> String {
    format!(
        "User {}, Organization {}",
        secret(ns, &format!("{user}-user-secret"), "secret").await,
        secret(ns, &format!("{org}-org-secret"), "secret").await
    )
}

/// One request: method, URL, headers; the status and the body (headers included with -i).
pub fn curl(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "-X", method, "-w", "\n%{http_code}", url]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    // The body on stdin: it may be larger than an argument may be.
    if body.is_some() {
        cmd.args(["-H", "content-type: application/json", "--data-binary", "@-"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().expect("curl's stdin");
    stdin
        .write_all(body.unwrap_or_default().as_bytes())
        .expect("write the body");
    drop(stdin);
    let out = child.wait_with_output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/test-logs").join(format!("identities-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
