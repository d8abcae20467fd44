//! The authorization endpoint an API gateway asks on every request (NGINX `auth_request`,
//! Envoy `ext_authz` over HTTP or gRPC), and the same decision as JSON for other programs. Every replica
//! answers from its caches, with the model's rules (`model::authz`, `model::user`,
//! `model::safelist`), and never calls the API server on the request path.
//!
//! The presented secrets are digested at once and looked up by digest; no value is kept,
//! logged, counted or echoed.

mod check;
mod gateway;
mod grpc;
pub mod tls;

pub use check::{Caller, Derived, authenticate, authorize, check, named};
use gateway::{Answer, Header, gateway_answer, identity_headers};

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    cache::Cache,
    metrics::{AuthzLabels, Metrics},
    model::authz::{Decision, Outcome, Request},
};

/// Errors of the authorization layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the authorization endpoint on {0}")]
    Listen(#[from] crate::serve::ListenError),
    #[error("cannot read the authorization endpoint's TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
}

#[derive(Clone)]
struct AuthzState {
    cache: Arc<Cache>,
    derived: Arc<Derived>,
    metrics: Arc<Metrics>,
}

/// Where and how the authorization endpoints are served.
#[derive(Clone, Debug)]
pub struct Options {
    /// The HTTP endpoint (`/authz/check`, `/v1/decisions`).
    pub addr: SocketAddr,
    /// Envoy's gRPC ext_authz, on its own address (None: not served).
    pub grpc_addr: Option<SocketAddr>,
    /// TLS for both (None: plain text).
    pub tls: Option<tls::Files>,
}

/// Binds the endpoints and loads their certificate (so that a taken port or an unreadable
/// certificate fails the start, not a request), then serves them until `shutdown`, from the
/// same caches and the same memo of what they derive.
pub async fn start<S>(
    options: &Options,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    shutdown: S,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Error>
where
    S: std::future::Future<Output = ()> + Clone + Send + 'static,
{
    let acceptor = options.tls.as_ref().map(tls::acceptor).transpose()?;
    let scheme = if acceptor.is_some() { "TLS" } else { "plain text" };
    let state = AuthzState {
        cache,
        derived: Arc::default(),
        metrics,
    };
    let mut served = Vec::new();
    let listener = crate::serve::listen(options.addr).await?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, scheme, "serving the authorization endpoint on /authz/check and /v1/decisions");
    }
    let http = crate::serve::routes(
        listener,
        "authorization",
        router(state.clone()),
        acceptor.clone(),
        shutdown.clone(),
    );
    served.push(tokio::spawn(http));
    if let Some(addr) = options.grpc_addr {
        let listener = crate::serve::listen(addr).await?;
        if let Ok(bound) = listener.local_addr() {
            tracing::info!(addr = %bound, scheme, "serving the gRPC authorization endpoint (envoy.service.auth.v3.Authorization)");
        }
        let grpc = crate::serve::routes(listener, "authorization-grpc", grpc::router(state), acceptor, shutdown);
        served.push(tokio::spawn(grpc));
    }
    Ok(served)
}

/// The largest request body either endpoint reads (HTTP and gRPC).
const MAX_BODY: usize = 64 * 1024;

/// The endpoint's routes: the gateway check under `/authz/check` (any method, any path
/// below it, as Envoy's ext_authz forwards the original path under a prefix) and
/// `POST /v1/decisions`.
fn router(state: AuthzState) -> Router {
    Router::new()
        .route("/authz/check", any(gateway_check))
        .route("/authz/check/", any(gateway_check))
        .route("/authz/check/{*path}", any(gateway_check))
        .route("/v1/decisions", post(decisions))
        // A check carries headers only and a decision request a few hundred bytes.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn record(metrics: &Metrics, decision: &Decision, started: Instant) {
    metrics
        .authz_decisions
        .get_or_create(&AuthzLabels {
            outcome: decision.outcome.label(),
            code: decision.code,
        })
        .inc();
    metrics.authz_duration.observe(started.elapsed().as_secs_f64());
    if decision.outcome != Outcome::Allowed && metrics.authz_refusal_log.allows() {
        // The precise reason, which the caller may not be told (`Decision::told_to_caller`),
        // Debug-formatted: a caller's bytes in it are quoted and escaped, never raw in a text log.
        tracing::debug!(outcome = decision.outcome.label(), code = decision.code, reason = ?decision.reason, "authorization refused");
    }
}

#[derive(Serialize)]
struct Refusal<'a> {
    allowed: bool,
    reason: &'a str,
}

/// Before the caches are synced every secret would look unknown: the endpoints answer
/// "unavailable" (503; the gateway fails the request) rather than a wrong 401. Counted as
/// outcome "unavailable" (the 5xx the alerts watch).
fn synced(state: &AuthzState) -> bool {
    let synced = state.cache.is_synced();
    if !synced {
        let labels = AuthzLabels {
            outcome: "unavailable",
            code: "caches_not_synced",
        };
        state.metrics.authz_decisions.get_or_create(&labels).inc();
    }
    synced
}

const NOT_SYNCED: &str = "the operator's caches are not synced yet";

fn unavailable() -> Response {
    let body = Json(Refusal {
        allowed: false,
        reason: NOT_SYNCED,
    });
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// The HTTP status a gateway answers the client with.
fn http_status(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Allowed => StatusCode::OK,
        Outcome::Unauthenticated => StatusCode::UNAUTHORIZED,
        Outcome::Forbidden => StatusCode::FORBIDDEN,
        Outcome::Invalid => StatusCode::BAD_REQUEST,
    }
}

/// The challenge of a 401: the platform's two credentials.
const CHALLENGE: &str = "User realm=\"ce\", Organization realm=\"ce\"";

async fn gateway_check(State(state): State<AuthzState>, headers: HeaderMap) -> Response {
    let header = |name: &str| Header::of_values(headers.get_all(name).iter().map(|v| v.to_str().ok()));
    let (decision, caller) = match gateway_answer(&state, header) {
        Answer::Unavailable => return unavailable(),
        Answer::Decided(decision, caller) => (decision, caller),
    };
    let status = http_status(decision.outcome);
    let body = Json(Refusal {
        allowed: decision.outcome == Outcome::Allowed,
        reason: decision.told_to_caller(),
    });
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        out.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    }
    if let Some(caller) = caller.filter(|_| status == StatusCode::OK) {
        for (name, value) in identity_headers(&caller) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                out.insert(name, value);
            }
        }
    }
    response
}

/// `POST /v1/decisions`: the credentials (as the Authorization header spells them) and
/// the checks.
#[derive(Deserialize)]
struct DecisionRequest {
    authorization: Option<String>,
    #[serde(flatten)]
    request: Request,
}

#[derive(Serialize)]
struct DecisionIdentity {
    namespace: String,
    organization: String,
    account: String,
    user: String,
    roles: Vec<crate::api::Role>,
}

#[derive(Serialize)]
struct DecisionResponse {
    allowed: bool,
    outcome: Outcome,
    reason: String,
    identity: Option<DecisionIdentity>,
    /// Where each of the caller's privileges holds.
    privileges: Option<crate::api::PrivilegeScopes>,
}

async fn decisions(
    State(state): State<AuthzState>,
    body: Result<Json<DecisionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let started = Instant::now();
    if !synced(&state) {
        return unavailable();
    }
    let asked = match body {
        Ok(Json(asked)) => asked,
        Err(rejection) => return refuse_body(&state, &rejection, started),
    };
    let (decision, caller) = check(
        &state.cache,
        &state.derived,
        asked.authorization.as_deref(),
        &asked.request,
        Timestamp::now(),
    );
    record(&state.metrics, &decision, started);
    // A decision is the answer (200), whatever it decides; a request that cannot be judged
    // is not (400), as for the gateway check.
    let status = match decision.outcome {
        Outcome::Invalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = Json(DecisionResponse {
        allowed: decision.outcome == Outcome::Allowed,
        outcome: decision.outcome,
        reason: decision.told_to_caller().to_owned(),
        privileges: caller.as_ref().map(|c| c.identity.scopes.clone()),
        identity: caller.map(|c| DecisionIdentity {
            organization: c.identity.organization.clone(),
            account: c.identity.account.clone(),
            roles: c.identity.roles.clone(),
            namespace: c.namespace,
            user: c.user,
        }),
    });
    (status, body).into_response()
}

/// A decision request that could not be read: over the size limit (413), or not the JSON
/// expected (400). Counted as an invalid request either way.
fn refuse_body(state: &AuthzState, rejection: &axum::extract::rejection::JsonRejection, started: Instant) -> Response {
    let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let decision = Decision::invalid(if too_large {
        format!("the request body is over {} KiB", MAX_BODY / 1024)
    } else {
        "expected {\"authorization\": \"User …, Organization …\", \"privileges\": […], \"element\": …, \"instance\": {\"owner\": …, \"action\": …}}".to_owned()
    });
    record(&state.metrics, &decision, started);
    let body = Json(Refusal {
        allowed: false,
        reason: decision.told_to_caller(),
    });
    let status = if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, body).into_response()
}
