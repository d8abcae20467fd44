//! The tenant API: the seeds' REST routes (`/users`, `/accounts`, an organization's
//! `elements-safelist`), for a CE user authenticated by its secrets as at the authorization
//! endpoint (`Authorization: User <secret>, Organization <secret>`).
//!
//! Each write is decided twice by the same code, never by a second copy of a rule: here, by
//! the admission webhook's own review (who may act, `webhook::actor::refusal`, then the
//! model's invariants, `webhook::answer`) for a clear answer and nothing written when refused; then by the
//! API server, as the operator writes impersonating the tenant (`write::AsTenant`), so that
//! RBAC, the audit log and the webhook see the tenant's change. What a caller may not see
//! is answered 404, as if absent.

mod routes;
mod write;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Client, Resource, ResourceExt,
    core::{DynamicObject, admission::AdmissionRequest},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    authz::{self, Caller, Derived},
    cache::{Cache, Cached},
    metrics::{Metrics, TenantApiLabels},
    webhook::{
        self,
        actor::{self, TENANT_API_USER, TENANT_API_USER_EXTRA, Tenancy},
    },
};

/// Errors of the tenant API layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the tenant API on {0}")]
    Listen(#[from] crate::serve::ListenError),
    #[error(transparent)]
    Tls(#[from] authz::Error),
}

/// Where and how the tenant API is served.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    /// TLS (None: plain text), as the authorization endpoint's.
    pub tls: Option<authz::tls::Files>,
}

#[derive(Clone)]
struct ApiState {
    cache: Arc<Cache>,
    derived: Arc<Derived>,
    tenancy: Arc<Tenancy>,
    client: Client,
    metrics: Arc<Metrics>,
}

/// The largest request body a route reads: a safelist of 1,024 element keys fits.
const MAX_BODY: usize = 96 * 1024;

/// How long a write waits for the operator's caches to hold it, so that the answer, the
/// next read and the authorization decisions of this replica see it.
const SETTLE: Duration = Duration::from_secs(3);

/// Binds the API and loads its certificate (a taken port or an unreadable certificate fails
/// the start, not a request), then serves it until `shutdown`.
pub async fn start<S>(
    options: &Options,
    client: Client,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    tenancy: Tenancy,
    shutdown: S,
) -> Result<tokio::task::JoinHandle<()>, Error>
where
    S: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = options.tls.as_ref().map(authz::tls::acceptor).transpose()?;
    let listener = crate::serve::listen(options.addr).await?;
    if let Ok(bound) = listener.local_addr() {
        let scheme = if acceptor.is_some() { "TLS" } else { "plain text" };
        tracing::info!(addr = %bound, scheme, "serving the tenant API (/users, /accounts, /organizations/{{id}}/elements-safelist, /openapi.json)");
    }
    let state = ApiState {
        cache,
        derived: Arc::default(),
        tenancy: Arc::new(tenancy),
        client,
        metrics,
    };
    let app = routes::router(state);
    Ok(tokio::spawn(crate::serve::routes(
        listener,
        "tenant-api",
        app,
        acceptor,
        shutdown,
    )))
}

/// An error answer: `{"error": <stable code>, "message": <what to do>}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthenticated`, `not_found`, `forbidden`, `conflict`, …
    pub error: String,
    /// What happened, in words a person can act on.
    pub message: String,
}

/// A refused request, as an HTTP answer.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl Problem {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }

    fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// What the API server answered a write with.
    fn of_write(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => {
                let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY);
                let label = match code {
                    StatusCode::CONFLICT => "conflict",
                    StatusCode::FORBIDDEN => "forbidden",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid",
                    StatusCode::BAD_REQUEST => "invalid",
                    _ => "api_server_error",
                };
                let status_code = if code.is_client_error() {
                    code
                } else {
                    StatusCode::BAD_GATEWAY
                };
                Self::new(status_code, label, status.message)
            }
            other => Self::new(
                StatusCode::BAD_GATEWAY,
                "api_server_unavailable",
                format!("the write could not be made: {other}"),
            ),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.error.to_owned(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("User realm=\"ce\", Organization realm=\"ce\""),
            );
        }
        response
    }
}

/// A JSON body that could not be read: over the limit (413) or not the JSON expected (400).
fn bad_body(rejection: axum::extract::rejection::JsonRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    Problem::new(StatusCode::BAD_REQUEST, "malformed_body", rejection.body_text())
}

/// A body over the limit (the only way reading a body as bytes fails here).
fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is over {} KiB", MAX_BODY / 1024),
    )
}

impl ApiState {
    /// The caller its `Authorization` header authenticates, as at the authorization endpoint.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        if !self.cache.is_synced() {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the operator's caches are not synced yet; retry",
            ));
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = match (values.next(), values.next()) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_credentials",
                    "more than one Authorization header",
                ));
            }
            (Some(value), None) => Some(value.to_str().map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_credentials",
                    "the Authorization header is not visible ASCII",
                )
            })?),
            (None, _) => None,
        };
        authz::authenticate(&self.cache, &self.derived, authorization, Timestamp::now())
            .map_err(|d| Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", d.told_to_caller()))
    }

    /// The webhook's review of `caller` making the change from `old` to `new` (None: created
    /// or deleted): nothing is written when it refuses. Who may act refuses with 403, the
    /// model's invariants with 409 (the change conflicts with objects that exist).
    fn review<K>(&self, caller: &Caller, name: &str, old: Option<&K>, new: Option<&K>) -> Result<(), Problem>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let operation = match (old, new) {
            (None, _) => "CREATE",
            (Some(_), Some(_)) => "UPDATE",
            (Some(_), None) => "DELETE",
        };
        let request: AdmissionRequest<DynamicObject> = serde_json::from_value(serde_json::json!({
            "uid": "tenant-api",
            "kind": {"group": K::group(&()), "version": K::version(&()), "kind": K::kind(&())},
            "resource": {"group": K::group(&()), "version": K::version(&()), "resource": K::plural(&())},
            "name": name,
            "namespace": caller.namespace,
            "operation": operation,
            "userInfo": {"username": TENANT_API_USER, "extra": {TENANT_API_USER_EXTRA: [caller.user]}},
            "object": new,
            "oldObject": old,
        }))
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        if let Some(refusal) = actor::refusal(&self.cache, &self.tenancy, &request) {
            return Err(Problem::new(StatusCode::FORBIDDEN, "forbidden", refusal));
        }
        match webhook::answer(&self.cache, &request) {
            Ok(review) => match review.denial {
                None => Ok(()),
                Some(denial) => Err(Problem::new(StatusCode::CONFLICT, "conflict", denial)),
            },
            Err(message) => Err(Problem::new(StatusCode::CONFLICT, "conflict", message)),
        }
    }

    /// The writer for `caller`.
    fn as_tenant<'a>(&'a self, caller: &'a Caller) -> write::AsTenant<'a> {
        write::AsTenant {
            client: &self.client,
            namespace: &caller.namespace,
            user: &caller.user,
        }
    }

    /// Waits (up to `SETTLE`) until the caches hold `written` (or, when None, no longer
    /// hold the object `name`, or see it being deleted).
    async fn settle<K: Cached>(&self, ns: &str, name: &str, written: Option<&K>) {
        let version = |o: &K| o.resource_version().and_then(|v| v.parse::<u64>().ok());
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let cached = self.cache.get::<K>(ns, name);
            let held = match (written, &cached) {
                (None, None) => true,
                (None, Some(c)) => c.meta().deletion_timestamp.is_some(),
                (Some(_), None) => false,
                (Some(w), Some(c)) => match (version(w), version(c)) {
                    (Some(w), Some(c)) => c >= w,
                    _ => w.resource_version() == c.resource_version(),
                },
            };
            if held || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn record(&self, route: &'static str, status: StatusCode, started: std::time::Instant) {
        let labels = TenantApiLabels {
            route,
            code: status.as_u16(),
        };
        self.metrics.tenant_api_requests.get_or_create(&labels).inc();
        self.metrics
            .tenant_api_duration
            .get_or_create(&crate::metrics::RouteLabels { route })
            .observe(started.elapsed().as_secs_f64());
    }
}
