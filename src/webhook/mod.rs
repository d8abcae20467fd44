//! The validating admission webhook: every replica (leader and standby) serves `/validate`
//! over HTTPS, answering from the caches with the model's own rules (`model::admission`), so
//! that `kubectl apply` of a change the model forbids fails at once with the words of the
//! condition the reconciler would report. It never calls the API server on the request path.

pub mod actor;
mod admit;
pub mod tls;

use std::{sync::Arc, time::Instant};

use axum::{Json, Router, extract::State, routing::post};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Resource,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    },
};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::{
    cache::Cache,
    metrics::{AdmissionLabels, Metrics},
    model::admission::{self, Review},
};
use admit::Admit;

/// Errors of the webhook layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the webhook on {0}")]
    Listen(#[from] crate::serve::ListenError),
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot use the webhook's client CA {path}: {reason}")]
    ClientCa { path: std::path::PathBuf, reason: String },
}

/// Who may call the webhook: clients with a certificate of this CA bundle (PEM) that names
/// one of `names` (any name when empty). The API server presents one when its admission
/// configuration says so (README, "Admission webhook"). The bundle is read at start.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    pub ca_file: std::path::PathBuf,
    pub names: Vec<String>,
}

#[derive(Clone)]
struct WebhookState {
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    tenancy: Arc<actor::Tenancy>,
}

/// Serves `/validate` until `shutdown`, with the certificate `serving` holds, to the clients
/// `client_auth` admits (None: any).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    serving: Arc<crate::serve::ServingCert>,
    client_auth: Option<ClientAuth>,
    tenancy: actor::Tenancy,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let refused = |reason: String| Error::ClientCa {
                path: auth.ca_file.clone(),
                reason,
            };
            let pem = std::fs::read_to_string(&auth.ca_file).map_err(|e| refused(e.to_string()))?;
            builder
                .with_client_cert_verifier(crate::client_auth::verifier(&pem, &auth.names, provider).map_err(refused)?)
        }
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, "serving the admission webhook on /validate");
    }
    let app = Router::new()
        .route("/validate", post(validate))
        // A review holds the object and its old version, each at most etcd's 1.5 MiB.
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(WebhookState {
            cache,
            metrics,
            tenancy: Arc::new(tenancy),
        });
    crate::serve::routes(listener, "webhook", app, Some(acceptor), shutdown).await;
    Ok(())
}

/// How a review ended, for the metrics.
fn result_label(response: &AdmissionResponse) -> &'static str {
    match (
        response.allowed,
        response.warnings.as_ref().is_some_and(|w| !w.is_empty()),
    ) {
        (false, _) => "denied",
        (true, true) => "warned",
        (true, false) => "allowed",
    }
}

async fn validate(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return Json(AdmissionResponse::invalid("not an AdmissionReview request").into_review()),
    };
    let kind = crate::kinds::name(&request.kind.kind).unwrap_or("other");
    let operation = match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    };
    let answered = self::review(&state.cache, &state.tenancy, &request);
    let (response, result) = match answered {
        Ok(review) => {
            let response = respond(&request, review);
            let result = result_label(&response);
            (response, result)
        }
        Err(message) => {
            if state.metrics.admission_failure_log.allows() {
                warn!(kind, operation, name = ?request.name, error = ?message, "admission review failed");
            }
            (AdmissionResponse::from(&request).deny(message), "error")
        }
    };
    let labels = AdmissionLabels {
        kind,
        operation,
        result,
    };
    state.metrics.admission_reviews.get_or_create(&labels).inc();
    state
        .metrics
        .admission_duration
        .get_or_create(&crate::metrics::KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    Json(response.into_review())
}

/// The whole review of a change: who makes it first (`model::actor`, once the caches are
/// synced), then what it does to the tenancy (`answer`).
fn review(
    cache: &Cache,
    tenancy: &actor::Tenancy,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Review, String> {
    let refused = cache
        .is_synced()
        .then(|| actor::refusal(cache, tenancy, request))
        .flatten();
    match refused {
        Some(refusal) => Ok(Review {
            denial: Some(refusal),
            warnings: Vec::new(),
        }),
        None => answer(cache, request),
    }
}

fn respond(request: &AdmissionRequest<DynamicObject>, review: Review) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    if !review.warnings.is_empty() {
        response.warnings = Some(review.warnings);
    }
    match review.denial {
        Some(denial) => response.deny(denial),
        None => response,
    }
}

/// The typed object of a request, placed in the request's namespace. A new object gets a
/// creation time a second ahead: it ranks after everything that exists, as it will once
/// stored, so that admission and the reconcilers agree on which of two is the newer.
fn typed<K: Resource + DeserializeOwned>(
    obj: Option<&DynamicObject>,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Option<K>, String> {
    let Some(obj) = obj else { return Ok(None) };
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    let mut typed: K = serde_json::from_value(value).map_err(|e| format!("cannot read the object: {e}"))?;
    let meta = typed.meta_mut();
    meta.namespace = request.namespace.clone();
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        meta.name = Some(request.name.clone());
    }
    if meta.creation_timestamp.is_none() {
        let ahead = crate::clock::now() + k8s_openapi::jiff::SignedDuration::from_secs(1);
        meta.creation_timestamp = Some(Time(ahead));
    }
    Ok(Some(typed))
}

/// The stored version of the object of a request. One this version cannot read (stored before
/// a schema change, see `cache::watch::Malformed`) is treated as absent: fixing or deleting
/// it must never be refused because of what it was.
fn stored<K: Resource + DeserializeOwned>(request: &AdmissionRequest<DynamicObject>) -> Option<K> {
    typed(request.old_object.as_ref(), request).ok().flatten()
}

/// What a change does to the tenancy (the model's rules), whoever makes it, from the
/// caches. The tenant API reviews its own writes with it, after who may act.
pub(crate) fn answer(cache: &Cache, request: &AdmissionRequest<DynamicObject>) -> Result<Review, String> {
    if !cache.is_synced() {
        return Err("ce-operator is starting and its caches are not synced yet; retry in a few seconds".into());
    }
    let ns = request.namespace.clone().unwrap_or_default();
    // Cleanup never waits on the rules: a namespace being deleted takes everything.
    if request.operation == Operation::Delete && cache.namespace_terminating(&ns) {
        return Ok(Review::default());
    }
    macro_rules! by_kind {
        ($($kind:ident => $field:ident,)*) => {
            match request.kind.kind.as_str() {
                $(stringify!($kind) => answer_for::<crate::api::$kind>(cache, request, &ns),)*
                _ => Ok(Review::default()),
            }
        };
    }
    crate::kinds::for_each_kind!(by_kind)
}

/// The review of a change of a kind of the registry, by its `Admit` impl.
fn answer_for<K: Admit>(cache: &Cache, request: &AdmissionRequest<DynamicObject>, ns: &str) -> Result<Review, String> {
    let kind = &request.kind.kind;
    let name = request.name.as_str();
    if request.operation == Operation::Delete {
        let finding = stored::<K>(request)
            .filter(|stored| stored.meta().deletion_timestamp.is_none())
            .and_then(|stored| K::deletion(cache, ns, &stored));
        return Ok(admission::review_deletion(kind, ns, name, finding));
    }
    let Some(new) = typed::<K>(request.object.as_ref(), request)? else {
        return Ok(Review::default());
    };
    let old = stored::<K>(request);
    let (before, after) = K::findings(cache, ns, &new, old.as_ref());
    Ok(admission::review(kind, ns, name, &before, &after))
}

#[cfg(test)]
mod tests {
    use kube::core::admission::AdmissionReview;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        api::Role,
        cache::testing::TestCache,
        model::fixtures::{NS, account, binding, org, safelist, user},
    };

    /// Any JSON, a few levels deep, with keys that the five kinds' specs use among others.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,16}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "accountRef",
                "organizationRef",
                "userRef",
                "name",
                "email",
                "default",
                "role",
                "overrideSystemRole",
                "elements",
                "roles",
                "security",
                "owner",
                "whitelabel",
                "superOrganizationRef",
                "allowCascadingDeletion",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z]{1,10}",
        ];
        leaf.prop_recursive(3, 32, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A review of `kind` with `spec` (and an old object with `old_spec`, for an update or a
    /// deletion), as the API server would send it.
    fn review_of(kind: &str, operation: &str, spec: &Value, old_spec: &Value) -> AdmissionRequest<DynamicObject> {
        let object = |spec: &Value| {
            json!({
                "apiVersion": "ce.tenancy.io/v1alpha1", "kind": kind,
                "metadata": {"name": "probe", "namespace": NS}, "spec": spec,
            })
        };
        let (new, old) = match operation {
            "CREATE" => (object(spec), Value::Null),
            "UPDATE" => (object(spec), object(old_spec)),
            _ => (Value::Null, object(old_spec)),
        };
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "1", "kind": {"group": "ce.tenancy.io", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "ce.tenancy.io", "version": "v1alpha1", "resource": "x"},
                "operation": operation, "namespace": NS, "name": "probe",
                "userInfo": {"username": "someone"}, "object": new, "oldObject": old,
            },
        }))
        .expect("a well-formed review");
        review.try_into().expect("a request")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Whatever object a review carries, of any of the five kinds and any operation, the
        /// webhook answers (a review, or an error that becomes a denial) with a well-formed
        /// response for the request: it never panics.
        #[test]
        fn any_admission_review_is_answered(
            kind in prop::sample::select(vec!["Organization", "Account", "CEUser", "RoleBinding", "ElementSafelist"]),
            operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE"]),
            spec in any_json(),
            old_spec in any_json(),
        ) {
            let mut snapshot = TestCache::new(None);
            snapshot
                .apply([org("acme")])
                .apply([account("hq", "acme", true)])
                .apply([user("sam", "hq", "sam@acme.example")])
                .apply([binding("sam-oa", "sam", Role::OrgAdmin, false)])
                .apply([safelist("acme-list", "acme", &["box"])]);
            snapshot.cache.mark_all_synced();
            let request = review_of(kind, operation, &spec, &old_spec);
            let review = match answer(&snapshot.cache, &request) {
                Ok(review) => review,
                Err(message) => {
                    prop_assert!(!message.is_empty());
                    Review::default()
                }
            };
            // What the API server gets back is a well-formed review.
            let answered = respond(&request, review);
            prop_assert_eq!(answered.uid, request.uid);
        }
    }
}
