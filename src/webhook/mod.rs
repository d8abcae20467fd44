//! The validating admission webhook: every replica (leader and standby) serves `/validate`
//! over HTTPS, answering from the caches with the model's own rules (`model::admission`), so
//! that `kubectl apply` of a change the model forbids fails at once with the words of the
//! condition the reconciler would report. It never calls the API server on the request path.

pub mod actor;
pub mod tls;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{Json, Router, extract::State, routing::post};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Resource, ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    },
};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::{
    api::{Account, CEUser, ElementSafelist, Organization, Role, RoleBinding},
    cache::{
        Cache,
        resolve::{self, Parent, ResolvedIdentity, members},
    },
    metrics::{AdmissionLabels, Metrics},
    model::{
        account,
        admission::{self, Finding, Review},
        role_binding, safelist, super_organization,
        tenancy::DefaultCandidates,
    },
};

/// Errors of the webhook layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the webhook on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
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

/// Binds the webhook's address (so that a taken port fails the start, not a request).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
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
    let kind = kind_label(&request.kind.kind);
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

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Organization" => "Organization",
        "Account" => "Account",
        "CEUser" => "CEUser",
        "RoleBinding" => "RoleBinding",
        "ElementSafelist" => "ElementSafelist",
        _ => "other",
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

/// Replaces the stored version of `candidate` in `list` by the candidate.
fn with_candidate<K: Resource + Clone>(list: Vec<Arc<K>>, candidate: &K) -> Vec<Arc<K>> {
    let name = candidate.meta().name.clone();
    let mut list: Vec<Arc<K>> = list.into_iter().filter(|o| o.meta().name != name).collect();
    list.push(Arc::new(candidate.clone()));
    list
}

/// What a change does to the tenancy (the model's rules), whoever makes it, from the
/// caches. The tenant API reviews its own writes with it, after who may act.
pub(crate) fn answer(cache: &Cache, request: &AdmissionRequest<DynamicObject>) -> Result<Review, String> {
    if !cache.is_synced() {
        return Err("ce-operator is starting and its caches are not synced yet; retry in a few seconds".into());
    }
    let ns = request.namespace.clone().unwrap_or_default();
    if request.operation == Operation::Delete {
        // Cleanup never waits on the rules: a namespace being deleted takes everything.
        if cache.namespace_terminating(&ns) {
            return Ok(Review::default());
        }
        return deletion(cache, request, &ns);
    }
    let name = request.name.as_str();
    let review =
        |kind: &str, before: Vec<Finding>, after: Vec<Finding>| admission::review(kind, &ns, name, &before, &after);
    Ok(match request.kind.kind.as_str() {
        "Organization" => {
            let (Some(org), old) = (
                typed::<Organization>(request.object.as_ref(), request)?,
                stored::<Organization>(request),
            ) else {
                return Ok(Review::default());
            };
            let link = super_organization::judge_link(&org, &ns, Parent::of(cache, &org).lookup());
            let old_link = old
                .as_ref()
                .map(|old| super_organization::judge_link(old, &ns, Parent::of(cache, old).lookup()));
            let members = if org.spec.whitelabel.is_some() {
                members(cache, &ns, name)
            } else {
                Vec::new()
            };
            review(
                "Organization",
                old.as_ref()
                    .map(admission::organization_findings_before)
                    .unwrap_or_default(),
                admission::organization_findings(&org, old.as_ref().zip(old_link.as_ref()), &link, &members),
            )
        }
        "Account" => {
            let findings = |account: &Account| {
                let org_name = &account.spec.organization_ref.name;
                let organization = cache.organization(&ns, org_name);
                let siblings = with_candidate(cache.accounts_of(&ns, org_name), account);
                admission::account_findings(&account::Inputs {
                    account,
                    organization: organization.as_deref(),
                    default_candidates: &resolve::candidates(cache, &ns, siblings),
                    users: &[],
                    bindings: &[],
                    namespace_terminating: false,
                    now: crate::clock::now(),
                })
            };
            let (Some(new), old) = (
                typed::<Account>(request.object.as_ref(), request)?,
                stored::<Account>(request),
            ) else {
                return Ok(Review::default());
            };
            review(
                "Account",
                old.as_ref().map(findings).unwrap_or_default(),
                findings(&new),
            )
        }
        "CEUser" => {
            let findings = |user: &CEUser| {
                let mut resolved = ResolvedIdentity::of(cache, user);
                resolved.same_email = with_candidate(std::mem::take(&mut resolved.same_email), user);
                admission::user_findings(&resolved.inputs(user))
            };
            let (Some(new), old) = (
                typed::<CEUser>(request.object.as_ref(), request)?,
                stored::<CEUser>(request),
            ) else {
                return Ok(Review::default());
            };
            review("CEUser", old.as_ref().map(findings).unwrap_or_default(), findings(&new))
        }
        "RoleBinding" => {
            let findings = |binding: &RoleBinding| {
                let user = cache.user(&ns, &binding.spec.user_ref.name);
                let account = user.as_ref().and_then(|u| cache.account(&ns, &u.spec.account_ref.name));
                let org = account.as_ref().map(|a| a.spec.organization_ref.name.clone());
                let organization = org.as_deref().and_then(|o| cache.organization(&ns, o));
                let default_candidates = org
                    .as_deref()
                    .map(|o| resolve::default_candidates(cache, &ns, o))
                    .unwrap_or_default();
                admission::binding_findings(&role_binding::Inputs {
                    binding,
                    user: user.as_deref(),
                    account: account.as_deref(),
                    organization: organization.as_deref(),
                    default_candidates: &default_candidates,
                    now: crate::clock::now(),
                })
            };
            let (Some(new), old) = (
                typed::<RoleBinding>(request.object.as_ref(), request)?,
                stored::<RoleBinding>(request),
            ) else {
                return Ok(Review::default());
            };
            review(
                "RoleBinding",
                old.as_ref().map(findings).unwrap_or_default(),
                findings(&new),
            )
        }
        "ElementSafelist" => {
            let findings = |list: &ElementSafelist| {
                let org_name = &list.spec.organization_ref.name;
                let organization = cache.organization(&ns, org_name);
                let parent = organization.as_deref().map_or(Parent::None, |o| Parent::of(cache, o));
                let siblings = with_candidate(cache.safelists_of(&ns, org_name), list);
                admission::safelist_findings(&safelist::Inputs {
                    list,
                    organization: organization.as_deref(),
                    siblings: &siblings,
                    super_organization: parent.lookup(),
                    now: crate::clock::now(),
                })
            };
            let (Some(new), old) = (
                typed::<ElementSafelist>(request.object.as_ref(), request)?,
                stored::<ElementSafelist>(request),
            ) else {
                return Ok(Review::default());
            };
            review(
                "ElementSafelist",
                old.as_ref().map(findings).unwrap_or_default(),
                findings(&new),
            )
        }
        _ => Review::default(),
    })
}

/// What the last-org-admin rule reads for the organization of `user`: None when it has none
/// or is itself being deleted (then its admins go with it).
struct OrgAdmins {
    org: String,
    org_uid: Option<String>,
    bindings: Vec<(Arc<RoleBinding>, Option<Arc<CEUser>>)>,
    accounts: DefaultCandidates,
}

impl OrgAdmins {
    fn of(cache: &Cache, ns: &str, user: &CEUser) -> Option<Self> {
        let org_name = cache.organization_of_user(user)?;
        let org = cache.organization(ns, &org_name)?;
        if org.meta().deletion_timestamp.is_some() {
            return None;
        }
        let bindings = cache
            .org_admin_bindings(ns)
            .into_iter()
            .map(|b| {
                let user = cache.user(ns, &b.spec.user_ref.name);
                (b, user)
            })
            .collect();
        Some(Self {
            accounts: resolve::candidates(cache, ns, cache.accounts_of(ns, &org_name)),
            org_uid: org.uid(),
            bindings,
            org: org_name,
        })
    }
}

/// The review of a deletion: a parent with children (without allowCascadingDeletion), or
/// the last org-admin of an organization that is not itself going (its binding, or its user).
fn deletion(cache: &Cache, request: &AdmissionRequest<DynamicObject>, ns: &str) -> Result<Review, String> {
    let name = request.name.as_str();
    let finding = match request.kind.kind.as_str() {
        "Organization" => stored::<Organization>(request)
            .filter(|org| org.meta().deletion_timestamp.is_none())
            .and_then(|org| {
                admission::organization_deletion(
                    &org,
                    &cache.accounts_of(ns, name),
                    &cache.users_of(ns, name),
                    &cache.safelists_of(ns, name),
                )
            }),
        "Account" => stored::<Account>(request)
            .filter(|account| account.meta().deletion_timestamp.is_none())
            .and_then(|account| admission::account_deletion(&account, &cache.users_of_account(ns, name))),
        "RoleBinding" => stored::<RoleBinding>(request)
            .filter(|binding| binding.spec.role == Role::OrgAdmin)
            .and_then(|binding| {
                let user = cache.user(ns, &binding.spec.user_ref.name)?;
                let admins = OrgAdmins::of(cache, ns, &user)?;
                admission::binding_deletion(
                    &binding,
                    &admins.org,
                    &admins.bindings,
                    &admins.accounts,
                    admins.org_uid.as_deref(),
                )
            }),
        "CEUser" => stored::<CEUser>(request)
            .filter(|user| user.meta().deletion_timestamp.is_none())
            .and_then(|user| {
                let admins = OrgAdmins::of(cache, ns, &user)?;
                admission::user_deletion(
                    name,
                    &admins.org,
                    &admins.bindings,
                    &admins.accounts,
                    admins.org_uid.as_deref(),
                )
            }),
        _ => None,
    };
    Ok(admission::review_deletion(&request.kind.kind, ns, name, finding))
}

#[cfg(test)]
mod tests {
    use kube::core::admission::AdmissionReview;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::{
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
