//! The webhook's TLS without cert-manager: a CA and a serving certificate kept in a Secret of
//! the operator's namespace, the CA written into the ValidatingWebhookConfiguration's
//! `caBundle`, and renewal with an overlap, so that the API server never meets a certificate
//! it does not trust:
//!
//! 1. steady: `ca` signs `tls`; the bundle is [ca].
//! 2. renewal due: a new CA goes into `ca-next`; the bundle becomes [ca, ca-next].
//! 3. after the overlap (the bundle has reached the API server): `ca-next` becomes `ca` and
//!    signs a new `tls`; the old CA stays as `ca-previous` in the bundle while every replica
//!    reloads the new certificate.
//! 4. after another overlap: `ca-previous` goes; the bundle is [ca].
//!
//! Only the leader writes the Secret and the bundle; every replica watches the Secret and
//! swaps the served certificate without restarting. With `managed: false` (cert-manager, or
//! anyone else, writes the Secret and the bundle) the operator only serves what it finds.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tracing::{info, warn};

use crate::{metrics::Metrics, model::names::MANAGER, serve::ServingCert};
use rotation::{Material, Step, apply, next_step, not_after};

mod rotation;

/// Where the webhook's certificates live and how they are made.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace and name of the Secret holding them.
    pub namespace: String,
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` the operator writes.
    pub config: String,
    /// Names (and IP addresses) the serving certificate is valid for.
    pub names: Vec<String>,
    /// Validity of the CA and of the serving certificate; renewal starts with a third left.
    pub validity: Duration,
    /// Whether the operator writes the Secret and the bundle (false: cert-manager does).
    pub managed: bool,
}

impl Options {
    fn overlap(&self) -> Duration {
        (self.validity / 12).clamp(Duration::from_secs(3), Duration::from_secs(3600))
    }
}

fn secret_watch(client: &Client, options: &Options) -> impl futures::Stream<Item = Result<Secret, watcher::Error>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", options.secret));
    watcher::watcher(api, config).default_backoff().applied_objects()
}

/// Every replica: serves what the Secret holds, reloading it when it changes, and reports
/// its expiry. Runs until the process ends.
pub async fn serve_from_secret(client: Client, options: Options, serving: Arc<ServingCert>, metrics: Arc<Metrics>) {
    let mut secrets = std::pin::pin!(secret_watch(&client, &options));
    while let Some(event) = secrets.next().await {
        let secret = match event {
            Ok(secret) => secret,
            Err(e) => {
                warn!(error = %e, secret = %options.secret, "watching the webhook certificate failed; retrying");
                continue;
            }
        };
        let m = Material::of(&secret);
        let Some(keyed) = m.serving else { continue };
        if serving.load(&keyed.cert, &keyed.key) {
            let expires = not_after(&keyed.cert).map_or(0, |t| t.as_second());
            metrics.webhook_certificate_expiry.set(expires);
            info!(secret = %options.secret, expires, "serving the webhook certificate");
        } else {
            warn!(secret = %options.secret, "the webhook certificate does not parse; keeping the previous one");
        }
    }
}

/// The leader: keeps the certificates and the bundle, until `shutdown`.
pub async fn manage(client: Client, options: Options, shutdown: impl std::future::Future<Output = ()>) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    // Wake on any change of the Secret or of the configuration (a Helm upgrade resets it).
    let config_watch = watcher::watcher(
        configs.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", options.config)),
    )
    .default_backoff()
    .touched_objects()
    .map_ok(drop);
    let secret_changes = secret_watch(&client, &options).map_ok(drop);
    let mut changes = std::pin::pin!(futures::stream::select(config_watch, secret_changes));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut missing_config_logged = false;
    loop {
        let wait = match keep(&secrets, &configs, &options, &mut missing_config_logged).await {
            Ok(wait) => wait,
            Err(e) => {
                warn!(error = %e, "keeping the webhook certificates failed; retrying in 5 s");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
            _ = changes.next() => {}
        }
    }
}

/// One pass: the next step if due, then the bundle. Returns how long nothing is due.
async fn keep(
    secrets: &Api<Secret>,
    configs: &Api<ValidatingWebhookConfiguration>,
    options: &Options,
    missing_config_logged: &mut bool,
) -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
    let existing = secrets.get_opt(&options.secret).await?;
    let mut material = existing.as_ref().map(Material::of).unwrap_or_default();
    let now = crate::clock::now();
    let step = next_step(&material, now, options);
    let wait = match &step {
        Step::Wait(wait) => *wait,
        step => {
            material = apply(step, &material, now, options)?;
            write(secrets, existing.as_ref(), &material, options).await?;
            info!(?step, secret = %options.secret, "webhook certificates: {step:?}");
            Duration::ZERO
        }
    };
    write_bundle(configs, &options.config, &material.bundle(), missing_config_logged).await?;
    Ok(wait)
}

async fn write(
    secrets: &Api<Secret>,
    existing: Option<&Secret>,
    material: &Material,
    options: &Options,
) -> Result<(), kube::Error> {
    match existing {
        None => secrets
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &material.secret(&options.secret),
            )
            .await
            .map(drop),
        Some(existing) => {
            let mut patch = material.patch();
            patch["metadata"]["resourceVersion"] = json!(existing.metadata.resource_version);
            secrets
                .patch(&options.secret, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
    }
}

/// Writes `bundle` into every webhook of the configuration, if it differs.
async fn write_bundle(
    configs: &Api<ValidatingWebhookConfiguration>,
    name: &str,
    bundle: &str,
    missing_logged: &mut bool,
) -> Result<(), kube::Error> {
    let Some(config) = configs.get_opt(name).await? else {
        if !std::mem::replace(missing_logged, true) {
            warn!(
                config = name,
                "ValidatingWebhookConfiguration not found; its caBundle is written once it exists"
            );
        }
        return Ok(());
    };
    *missing_logged = false;
    let webhooks = config.webhooks.unwrap_or_default();
    let stale = webhooks
        .iter()
        .any(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle.as_bytes()));
    if !stale {
        return Ok(());
    }
    let entries: Vec<_> = webhooks
        .iter()
        .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": ByteString(bundle.as_bytes().to_vec())}}))
        .collect();
    let patch = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": entries,
    });
    configs
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    info!(config = name, "wrote the webhook CA bundle");
    Ok(())
}
