//! `kubectl ce rotate` and `kubectl ce describe-secret`: a generated Secret's state (its
//! fingerprint, rotation, whether a previous value still authenticates), and a rotation
//! request followed until the operator has issued the new value. Values are never read:
//! the Secret is fetched as metadata only.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    core::{ApiResource, DynamicObject},
};
use serde::Serialize;

use super::{Error, Format, KubeFlags, Result, print_data, tree::Readiness};
use crate::{
    api::{CEUser, Organization, SecretRef},
    model::{
        names,
        secrets::{ANNOTATION_PREVIOUS_EXPIRES, ANNOTATION_ROTATED_AT},
    },
};

/// The kinds that have a generated Secret.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    #[value(alias = "organizations", alias = "org")]
    Organization,
    #[value(alias = "ceusers", alias = "user")]
    Ceuser,
}

impl OwnerKind {
    fn kind(self) -> &'static str {
        match self {
            OwnerKind::Organization => "Organization",
            OwnerKind::Ceuser => "CEUser",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            OwnerKind::Organization => "organization",
            OwnerKind::Ceuser => "ceuser",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// organization or ceuser.
    #[arg(value_enum)]
    pub kind: OwnerKind,
    /// Its name.
    pub name: String,
    /// Print data (json or yaml) instead of text.
    #[arg(short = 'o', long = "output")]
    pub output: Option<Format>,
}

#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub target: Args,
    /// How long to wait for the operator to issue the new value.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub timeout: Duration,
}

fn duration(text: &str) -> std::result::Result<Duration, String> {
    text.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|e| format!("{text}: {e}"))
}

/// What the owner's status and the Secret's metadata say about the secret.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SecretState {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub secret: String,
    /// The SecretReady condition.
    pub secret_ready: Readiness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
    /// Until when the value before the last rotation still authenticates (absent: it no
    /// longer does, or there was no rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<String>,
}

/// The status fields that concern the secret; Organization and CEUser spell them alike.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SecretStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
    secret_ref: Option<SecretRef>,
    secret_fingerprint: Option<String>,
    last_rotation_time: Option<Time>,
    last_rotation_request: Option<String>,
}

/// The owners of `kind` in `ns`, read untyped: only their secret fields are wanted.
fn owners(client: &Client, ns: &str, kind: OwnerKind) -> Api<DynamicObject> {
    let resource = match kind {
        OwnerKind::Organization => ApiResource::erase::<Organization>(&()),
        OwnerKind::Ceuser => ApiResource::erase::<CEUser>(&()),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// The state of the secret of `kind` `name`.
pub async fn state(client: &Client, ns: &str, kind: OwnerKind, name: &str) -> Result<SecretState> {
    let owner = owners(client, ns, kind)
        .get(name)
        .await
        .map_err(|e| Error::of_request(kind.lower(), name, ns, e))?;
    let owner: SecretStatus = owner
        .data
        .get("status")
        .and_then(|status| serde_json::from_value(status.clone()).ok())
        .unwrap_or_default();
    let secret_ready = Readiness::from_condition(owner.conditions.iter().find(|c| c.type_ == "SecretReady"));
    let secret = owner.secret_ref.map(|r| r.name).unwrap_or_else(|| match kind {
        OwnerKind::Organization => names::organization_secret(name),
        OwnerKind::Ceuser => names::user_secret(name),
    });
    // Metadata only: the value never leaves the API server.
    let meta = Api::<Secret>::namespaced(client.clone(), ns)
        .get_metadata(&secret)
        .await
        .map_err(|e| Error::of_request("secret", &secret, ns, e))?;
    let annotations = meta.metadata.annotations.unwrap_or_default();
    let now = Timestamp::now();
    let previous_valid_until = annotations
        .get(ANNOTATION_PREVIOUS_EXPIRES)
        .filter(|until| until.parse::<Timestamp>().is_ok_and(|t| t > now))
        .cloned();
    Ok(SecretState {
        kind: kind.kind(),
        name: name.to_owned(),
        namespace: ns.to_owned(),
        secret,
        secret_ready,
        fingerprint: owner.secret_fingerprint,
        last_rotation_time: owner
            .last_rotation_time
            .map(|t| t.0.to_string())
            .or_else(|| annotations.get(ANNOTATION_ROTATED_AT).cloned()),
        last_rotation_request: owner.last_rotation_request,
        previous_valid_until,
    })
}

/// The state as text.
pub fn render(state: &SecretState) -> String {
    let ready = &state.secret_ready;
    let condition = match (&ready.reason, &ready.message) {
        (Some(reason), Some(message)) => format!("{} ({reason}): {message}", ready.ready),
        (Some(reason), None) => format!("{} ({reason})", ready.ready),
        _ => ready.ready.clone(),
    };
    let none = || "-".to_owned();
    format!(
        "Secret:          {}/{}\nOwner:           {} {}\nSecretReady:     {condition}\nFingerprint:     {}\nLast rotation:   {}\nRotation request:{}\nPrevious value:  {}\n",
        state.namespace,
        state.secret,
        state.kind,
        state.name,
        state.fingerprint.clone().unwrap_or_else(none),
        state.last_rotation_time.clone().unwrap_or_else(|| "never".into()),
        state
            .last_rotation_request
            .as_deref()
            .map_or_else(none, |r| format!(" {r}")),
        state.previous_valid_until.as_deref().map_or_else(
            || "not valid (no rotation in its grace period)".to_owned(),
            |t| format!("still valid until {t}")
        ),
    )
}

pub async fn describe(kube: &KubeFlags, args: &Args) -> Result<()> {
    let (client, ns) = kube.connect().await?;
    let state = state(&client, &ns, args.kind, &args.name).await?;
    match args.output {
        Some(format) => print_data(&state, format),
        None => {
            print!("{}", render(&state));
            Ok(())
        }
    }
}

/// Sets the rotation annotation to a fresh value, then waits until the owner's status
/// reports that request done with a new fingerprint.
pub async fn rotate(kube: &KubeFlags, args: &RotateArgs) -> Result<()> {
    let target = &args.target;
    let (client, ns) = kube.connect().await?;
    let before = state(&client, &ns, target.kind, &target.name).await?;
    let request = format!(
        "kubectl-ce-{}-{:08x}",
        Timestamp::now().as_second(),
        rand::random::<u32>()
    );
    let patch = serde_json::json!({"metadata": {"annotations": {names::ROTATE_ANNOTATION: request}}});
    let patched = owners(&client, &ns, target.kind)
        .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    patched.map_err(|e| Error::of_request(target.kind.lower(), &target.name, &ns, e))?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let after = loop {
        let now = state(&client, &ns, target.kind, &target.name).await?;
        if now.last_rotation_request.as_deref() == Some(request.as_str()) && now.fingerprint != before.fingerprint {
            break now;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(
                args.timeout,
                format!(
                    "the operator has not rotated the secret of {} {} (is it running? `kubectl ce describe-secret {} {}`)",
                    target.kind.lower(),
                    target.name,
                    target.kind.lower(),
                    target.name
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    match target.output {
        Some(format) => print_data(&after, format),
        None => {
            println!(
                "{} {} rotated: fingerprint {} (was {}); the previous value is {}",
                after.kind,
                after.name,
                after.fingerprint.as_deref().unwrap_or("-"),
                before.fingerprint.as_deref().unwrap_or("-"),
                after
                    .previous_valid_until
                    .as_deref()
                    .map_or_else(|| "no longer valid".to_owned(), |t| format!("valid until {t}"))
            );
            Ok(())
        }
    }
}
