//! The authorization endpoint an API gateway asks on every request (NGINX `auth_request`,
//! Envoy `ext_authz` over HTTP or gRPC), and the same decision as JSON for other programs. Every replica
//! answers from its caches, with the model's rules (`model::authz`, `model::user`,
//! `model::safelist`), and never calls the API server on the request path.
//!
//! The presented secrets are digested at once and looked up by digest; no value is kept,
//! logged, counted or echoed.

mod grpc;
pub mod tls;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::{
    api::{CEUser, Privilege},
    cache::{
        Cache,
        resolve::{Parent, ResolvedIdentity},
    },
    metrics::{AuthzLabels, Metrics},
    model::{
        authz::{self, Decision, Outcome, Owner, Request},
        issuance::{self, HolderKind},
        safelist,
        secrets::Digest,
        super_organization,
        user::{self, Identity},
    },
};

/// Errors of the authorization layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve the authorization endpoint on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read the authorization endpoint's TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
}

/// An authenticated (or, for `can-i`, named) caller.
#[derive(Debug)]
pub struct Caller {
    pub namespace: String,
    pub user: String,
    pub identity: Arc<Identity>,
}

/// What the decisions derive from the caches, remembered until the caches change: at rest,
/// who a caller is and what its organization sees cost a lookup, not a walk over its account,
/// organization, bindings and safelists. An entry is used only while the cache's epoch is the
/// one it was derived at.
#[derive(Default)]
pub struct Derived {
    /// `admit`, by user uid.
    identities: Memo<Result<Arc<Identity>, Decision>>,
    /// The elements an organization sees, by `namespace/organization`.
    visibility: Memo<Option<Arc<safelist::Visible>>>,
}

/// Values by key, each with the cache epoch it was derived at.
struct Memo<V> {
    entries: std::sync::RwLock<HashMap<String, (u64, V)>>,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            entries: Default::default(),
        }
    }
}

impl<V: Clone> Memo<V> {
    /// The value remembered for `key` if the caches have not changed since, else `derive()`.
    fn get(&self, cache: &Cache, key: &str, derive: impl FnOnce() -> V) -> V {
        // Read before deriving: a change applied meanwhile makes the entry stale at once.
        let epoch = cache.epoch();
        if let Some((at, value)) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(key)
            && *at == epoch
        {
            return value.clone();
        }
        let value = derive();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Bounded by the keys asked for since the last change (what went goes then).
        if entries.values().next().is_some_and(|(at, _)| *at != epoch) {
            entries.retain(|_, (at, _)| *at == epoch);
        }
        entries.insert(key.to_owned(), (epoch, value.clone()));
        value
    }
}

/// The object of a kind whose own Secret, as the operator issued it, holds this digest as
/// its current value or its still valid previous one (`issuance::vouches`): its namespace,
/// name and uid (the Secret's controller).
struct Holder {
    namespace: String,
    name: String,
    uid: String,
}

/// Every Secret holding the digest is tried, so that a Secret someone else planted with the
/// same value (it vouches for nobody) never hides the one the operator issued.
fn holder(cache: &Cache, digest: &Digest, kind: HolderKind, now: Timestamp) -> Option<Holder> {
    cache.secrets_with_digest(digest).into_iter().find_map(|entry| {
        let namespace = entry.namespace().unwrap_or_default();
        let vouched = issuance::vouches(
            cache.issuance_key(),
            &namespace,
            &entry.name_any(),
            &entry.facts,
            digest,
            now,
        )?;
        (vouched.kind == kind).then_some(Holder {
            namespace,
            name: vouched.name,
            uid: vouched.uid,
        })
    })
}

/// Authenticates `Authorization: User <secret>, Organization <secret>`. The holder must be
/// the object that exists now (a Secret left behind by a deleted and recreated object
/// authenticates nobody).
pub fn authenticate(
    cache: &Cache,
    derived: &Derived,
    authorization: Option<&str>,
    now: Timestamp,
) -> Result<Caller, Decision> {
    let header = authorization
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| Decision::unauthenticated("missing_credentials", "no Authorization header"))?;
    let credentials = authz::parse_credentials(header)
        .map_err(|why| Decision::unauthenticated("malformed_credentials", format!("malformed Authorization: {why}")))?;
    let (user_digest, org_digest) = (credentials.user.digest(), credentials.organization.digest());
    drop(credentials);
    let unknown_user = || Decision::unauthenticated("unknown_user_secret", "the user secret is not one in effect");
    let found = holder(cache, &user_digest, HolderKind::CEUser, now).ok_or_else(unknown_user)?;
    let user = cache
        .user(&found.namespace, &found.name)
        .filter(|u| u.uid().as_deref() == Some(found.uid.as_str()))
        .ok_or_else(unknown_user)?;
    let identity = match user.metadata.uid.as_deref() {
        Some(uid) => derived
            .identities
            .get(cache, uid, || admit(cache, &user).map(Arc::new))?,
        None => Arc::new(admit(cache, &user)?),
    };
    let unknown_org = || {
        Decision::unauthenticated(
            "unknown_organization_secret",
            "the organization secret is not one in effect",
        )
    };
    let org = holder(cache, &org_digest, HolderKind::Organization, now).ok_or_else(unknown_org)?;
    cache
        .organization(&org.namespace, &org.name)
        .filter(|o| o.uid().as_deref() == Some(org.uid.as_str()))
        .ok_or_else(unknown_org)?;
    if let Some(mismatch) = authz::belong_together(&identity, &found.namespace, &org.namespace, &org.name) {
        return Err(mismatch);
    }
    Ok(Caller {
        namespace: found.namespace,
        user: found.name,
        identity,
    })
}

/// A user that may act: in effect (account and organization exist, holds its e-mail) and
/// not being deleted.
fn admit(cache: &Cache, user: &CEUser) -> Result<Identity, Decision> {
    if user.metadata.deletion_timestamp.is_some() {
        return Err(Decision::unauthenticated("user_not_ready", "the user is being deleted"));
    }
    let resolved = ResolvedIdentity::of(cache, user);
    user::authenticated(&resolved.inputs(user)).map_err(|why| {
        Decision::unauthenticated("user_not_ready", format!("the user is not in effect: {}", why.message))
    })
}

/// The caller named `user` in `ns`, without a secret (`ce-operator can-i`).
pub fn named(cache: &Cache, ns: &str, user: &str) -> Result<Caller, Decision> {
    let found = cache
        .user(ns, user)
        .ok_or_else(|| Decision::unauthenticated("unknown_user", format!("no CEUser {user} in namespace {ns}")))?;
    Ok(Caller {
        namespace: ns.to_owned(),
        user: user.to_owned(),
        identity: Arc::new(admit(cache, &found)?),
    })
}

/// What `caller` may do: `request` judged by `model::authz::decide`.
pub fn authorize(cache: &Cache, derived: &Derived, caller: &Caller, request: &Request) -> Decision {
    let ns = &caller.namespace;
    let element_visible = request.element.as_ref().map(|element| {
        let org_name = &caller.identity.organization;
        let visible = derived.visibility.get(cache, &format!("{ns}/{org_name}"), || {
            let org = cache.organization(ns, org_name)?;
            let safelists = cache.safelists_of(ns, &org.name_any());
            let listed = safelist::effective(&safelists).map(|l| l.spec.elements.as_slice());
            let parent = Parent::of(cache, &org);
            let link = super_organization::judge_link(&org, ns, parent.lookup());
            Some(Arc::new(safelist::visibility(listed, &link).0))
        });
        visible.is_some_and(|v| v.contains(element))
    });
    let owner_user = request.instance.as_ref().and_then(|i| cache.user(ns, &i.owner));
    let owner_org = owner_user.as_ref().and_then(|u| cache.organization_of_user(u));
    let owner = request.instance.as_ref().map(|_| match &owner_user {
        None => Owner::Missing,
        Some(u) => Owner::Found {
            account: &u.spec.account_ref.name,
            organization: owner_org.as_deref(),
        },
    });
    authz::decide(&authz::Inputs {
        user: &caller.user,
        identity: &caller.identity,
        request,
        element_visible,
        owner,
    })
}

/// Authenticates and authorizes in one step.
pub fn check(
    cache: &Cache,
    derived: &Derived,
    authorization: Option<&str>,
    request: &Request,
    now: Timestamp,
) -> (Decision, Option<Caller>) {
    // A check that no object could pass is the route's mistake: refused, never skipped.
    if let Some(why) = request.malformed() {
        return (Decision::invalid(why), None);
    }
    match authenticate(cache, derived, authorization, now) {
        Err(decision) => (decision, None),
        Ok(caller) => (authorize(cache, derived, &caller, request), Some(caller)),
    }
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

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
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
    let listener = bind(options.addr).await?;
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
        let listener = bind(addr).await?;
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

/// A header of the request as the gateway forwarded it. Only `Value` is read; a check whose
/// header is there but cannot be read is refused (400), never taken as absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Header<'a> {
    Absent,
    Value(&'a str),
    /// Bytes that are not visible ASCII (or not UTF-8).
    Unreadable,
    /// Sent more than once: which one the route meant cannot be told.
    Repeated,
}

impl<'a> Header<'a> {
    /// A received value: readable only when it is visible ASCII (tabs and spaces allowed).
    pub(super) fn of_text(value: &'a str) -> Self {
        if value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            Header::Value(value)
        } else {
            Header::Unreadable
        }
    }

    /// The header among all of a request's (`values` of one name, in order).
    pub(super) fn of_values<I: Iterator<Item = Option<&'a str>>>(mut values: I) -> Self {
        match (values.next(), values.next()) {
            (None, _) => Header::Absent,
            (Some(_), Some(_)) => Header::Repeated,
            (Some(None), None) => Header::Unreadable,
            (Some(Some(value)), None) => Header::of_text(value),
        }
    }
}

/// A gateway header that could not be read: the route is misconfigured (400), not the
/// caller refused.
fn bad_header(name: &str, why: &str) -> Decision {
    Decision::invalid(format!("header {name}: {why}"))
}

/// The request a gateway describes with the `X-CE-*` headers of a route; `header` looks a
/// header up by its lower-case name.
fn request_of<'a>(header: impl Fn(&str) -> Header<'a>) -> Result<Request, Decision> {
    let text = |name: &str, shown: &str| match header(name) {
        Header::Absent => Ok(None),
        Header::Value(value) => Ok(Some(value.trim()).filter(|v| !v.is_empty())),
        Header::Unreadable => Err(bad_header(
            shown,
            "not visible ASCII; a route must set it to a readable value",
        )),
        Header::Repeated => Err(bad_header(shown, "sent more than once; a route must set (replace) it")),
    };
    let mut request = Request::default();
    if let Some(keys) = text("x-ce-privilege", "X-CE-Privilege")? {
        for key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let privilege: Privilege = authz::parse_privilege(key)
                .ok_or_else(|| bad_header("X-CE-Privilege", &format!("cannot read {key:?}")))?;
            request.privileges.push(privilege);
        }
    }
    request.element = text("x-ce-element", "X-CE-Element")?.map(str::to_owned);
    let action = text("x-ce-instance-action", "X-CE-Instance-Action")?;
    match (text("x-ce-instance-owner", "X-CE-Instance-Owner")?, action) {
        (Some(owner), action) => {
            let action = action.unwrap_or("");
            let action = authz::InstanceAction::parse(action)
                .ok_or_else(|| bad_header("X-CE-Instance-Action", &format!("cannot read {action:?}")))?;
            request.instance = Some(authz::Instance {
                owner: owner.to_owned(),
                action,
            });
        }
        (None, Some(_)) => return Err(bad_header("X-CE-Instance-Action", "set without X-CE-Instance-Owner")),
        (None, None) => {}
    }
    Ok(request)
}

/// What a gateway's check is answered: the caches are not synced yet, or the decision on
/// the credentials and the route's checks (`header` as for `request_of`, plus
/// `authorization`). Counted in the metrics either way.
enum Answer {
    Unavailable,
    Decided(Decision, Option<Caller>),
}

fn gateway_answer<'a>(state: &AuthzState, header: impl Fn(&str) -> Header<'a>) -> Answer {
    let started = Instant::now();
    if !synced(state) {
        return Answer::Unavailable;
    }
    let (decision, caller) = match (request_of(&header), header("authorization")) {
        (Err(bad), _) => (bad, None),
        (Ok(_), Header::Unreadable | Header::Repeated) => (
            Decision::unauthenticated(
                "malformed_credentials",
                "malformed Authorization: one header of visible ASCII expected",
            ),
            None,
        ),
        (Ok(request), authorization) => {
            let authorization = match authorization {
                Header::Value(value) => Some(value),
                _ => None,
            };
            check(&state.cache, &state.derived, authorization, &request, Timestamp::now())
        }
    };
    record(&state.metrics, &decision, started);
    Answer::Decided(decision, caller)
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

/// The identity a gateway forwards upstream.
fn identity_headers(caller: &Caller) -> [(&'static str, String); 5] {
    [
        ("x-ce-organization", caller.identity.organization.clone()),
        ("x-ce-account", caller.identity.account.clone()),
        ("x-ce-user", caller.user.clone()),
        ("x-ce-roles", authz::role_list(&caller.identity)),
        ("x-ce-namespace", caller.namespace.clone()),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::Role,
        cache::testing::TestCache,
        model::fixtures::{account, binding, in_namespace, org, safelist, user},
    };

    #[test]
    fn a_route_header_that_cannot_be_read_is_refused_not_skipped() {
        let of = |headers: &[(&str, Header<'static>)]| {
            let headers = headers.to_vec();
            request_of(move |name| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(Header::Absent, |(_, h)| *h)
            })
        };
        let invalid = |result: Result<Request, Decision>| result.err().map(|d| d.outcome);
        assert_eq!(of(&[]), Ok(Request::default()));
        assert_eq!(
            of(&[("x-ce-element", Header::Value(" slack "))]).map(|r| r.element),
            Ok(Some("slack".to_owned()))
        );
        for headers in [
            vec![("x-ce-element", Header::Unreadable)],
            vec![("x-ce-element", Header::Repeated)],
            vec![("x-ce-privilege", Header::Repeated)],
            vec![
                ("x-ce-instance-owner", Header::Unreadable),
                ("x-ce-instance-action", Header::Value("view")),
            ],
            vec![("x-ce-instance-action", Header::Value("view"))],
            vec![
                ("x-ce-instance-owner", Header::Value("joe")),
                ("x-ce-instance-action", Header::Repeated),
            ],
        ] {
            assert_eq!(invalid(of(&headers)), Some(Outcome::Invalid), "{headers:?}");
        }
        // How a header is told from its values.
        assert_eq!(Header::of_values(std::iter::empty()), Header::Absent);
        assert_eq!(Header::of_values([Some("a")].into_iter()), Header::Value("a"));
        assert_eq!(Header::of_values([None].into_iter()), Header::Unreadable);
        assert_eq!(Header::of_values([Some("a"), Some("a")].into_iter()), Header::Repeated);
        assert_eq!(Header::of_text("sl\u{7f}ack"), Header::Unreadable);
        assert_eq!(Header::of_text("slack\u{e9}"), Header::Unreadable);
        assert_eq!(Header::of_text("a b\tc"), Header::Value("a b\tc"));
    }

    /// A header as a gateway may forward it: absent, repeated, unreadable, or any text.
    fn forwarded() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            ".{0,40}".prop_map(Some),
            "[a-zA-Z, -]{0,40}".prop_map(Some),
            Just(Some("viewActivity, manageUsers".to_owned())),
            Just(Some("view".to_owned())),
        ]
    }

    proptest::proptest! {
        /// Whatever a route sends: a request, or a 400 naming the header; never a panic, and
        /// never a check dropped (a header sent is in the request or refused).
        #[test]
        fn any_route_headers_give_a_request_or_a_400(
            privilege in forwarded(),
            element in forwarded(),
            owner in forwarded(),
            action in forwarded(),
        ) {
            let sent = [
                ("x-ce-privilege", &privilege),
                ("x-ce-element", &element),
                ("x-ce-instance-owner", &owner),
                ("x-ce-instance-action", &action),
            ];
            let result = request_of(|name| {
                sent.iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| v.as_deref())
                    .map_or(Header::Absent, Header::of_text)
            });
            match result {
                Ok(request) => {
                    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
                    proptest::prop_assert_eq!(request.element.is_some(), given(&element));
                    proptest::prop_assert_eq!(request.instance.is_some(), given(&owner));
                    if given(&privilege) {
                        proptest::prop_assert!(!request.privileges.is_empty() || privilege.as_deref().is_some_and(|p| p.split(',').all(|k| k.trim().is_empty())));
                    }
                }
                Err(decision) => proptest::prop_assert_eq!(decision.outcome, Outcome::Invalid),
            }
        }

        /// Any Authorization header parses or is refused with a fixed reason that never
        /// repeats what was sent.
        #[test]
        fn any_authorization_header_is_parsed_or_refused_without_echo(
            header in ".{0,120}",
            secret in "[A-Za-z0-9_-]{16,64}",
        ) {
            let _ = authz::parse_credentials(&header);
            for shape in [
                format!("User {secret}"),
                format!("User {secret} {secret}, Organization {secret}"),
                format!("Bearer {secret}"),
                format!("User {secret}, User {secret}, Organization x"),
            ] {
                match authz::parse_credentials(&shape) {
                    Ok(_) => proptest::prop_assert!(false, "{shape} parsed"),
                    Err(why) => proptest::prop_assert!(!why.contains(&secret)),
                }
            }
        }
    }

    #[test]
    fn a_remembered_identity_is_decided_again_once_the_caches_change() {
        let mut snapshot = TestCache::new(None);
        let jane = in_namespace(user("jane", "hq", "jane@acme.example"), "t");
        snapshot
            .apply([in_namespace(org("acme"), "t")])
            .apply([in_namespace(account("hq", "acme", true), "t")])
            .apply([jane.clone()]);
        let derived = Derived::default();
        let admitted = |cache: &Cache| {
            derived
                .identities
                .get(cache, "uid-jane", || admit(cache, &jane).map(Arc::new))
        };
        let roles = |cache: &Cache| admitted(cache).expect("admitted").roles.clone();
        assert_eq!(roles(&snapshot.cache), [Role::Org]);
        let remembered = admitted(&snapshot.cache).unwrap();
        assert!(
            Arc::ptr_eq(&remembered, &admitted(&snapshot.cache).unwrap()),
            "at rest the identity is looked up, not decided again"
        );
        snapshot.apply([in_namespace(binding("jane-admin", "jane", Role::OrgAdmin, false), "t")]);
        assert_eq!(
            roles(&snapshot.cache),
            [Role::OrgAdmin, Role::Org],
            "a binding added since"
        );

        // The organization's visible elements, remembered the same way.
        let caller = Caller {
            namespace: "t".into(),
            user: "jane".into(),
            identity: admitted(&snapshot.cache).unwrap(),
        };
        let slack = Request {
            element: Some("slack".into()),
            ..Request::default()
        };
        let listing = |elements: &[&str], version: &str| {
            let mut list = in_namespace(safelist("acme-list", "acme", elements), "t");
            list.metadata.resource_version = Some(version.into());
            list
        };
        snapshot.apply([listing(&["hubspot"], "1")]);
        let outcome = |cache: &Cache| authorize(cache, &derived, &caller, &slack).outcome;
        assert_eq!(outcome(&snapshot.cache), Outcome::Forbidden);
        snapshot.apply([listing(&["hubspot", "slack"], "2")]);
        assert_eq!(outcome(&snapshot.cache), Outcome::Allowed, "a safelist changed since");
    }
}
