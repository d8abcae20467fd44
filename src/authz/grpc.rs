//! Envoy's gRPC ext_authz (`envoy.service.auth.v3.Authorization/Check`): the same decision
//! as `/authz/check`. The credentials come from the forwarded `authorization` header; the
//! route's checks (`x-ce-privilege`, `x-ce-element`, `x-ce-instance-owner`,
//! `x-ce-instance-action`) from the route's context extensions (Envoy's per-route
//! `check_settings.context_extensions`, which a client cannot set), else from the forwarded
//! headers, as a gateway that sets them per route sends them.

use axum::{Router, http::StatusCode};
use envoy_types::{
    ext_authz::v3::{
        CheckRequestExt, CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
        pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode},
    },
    pb::envoy::service::auth::v3::AttributeContext,
};
use tonic::{Code, Status};

use super::{
    AuthzState, CHALLENGE, NOT_SYNCED, Refusal,
    gateway::{Answer, Header, gateway_answer, identity_headers},
    http_status,
};
use crate::model::authz::Outcome;

/// The gRPC service's routes, to be served like the HTTP endpoint's.
pub(super) fn router(state: AuthzState) -> Router {
    let server = AuthorizationServer::new(ExtAuthz(state)).max_decoding_message_size(super::MAX_BODY);
    tonic::service::Routes::new(server).into_axum_router()
}

struct ExtAuthz(AuthzState);

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, Status> {
        let asked = request.into_inner();
        let answer = gateway_answer(&self.0, |name| lookup(&asked, name));
        Ok(tonic::Response::new(response(answer)))
    }
}

/// A header or check of the request, by lower-case name. Envoy sends the headers as a map
/// with lower-case keys (a repeated header joined with `,`, which no check's value passes),
/// or (with `encode_raw_headers`) as a list of raw ones, where a repeat is seen as one.
fn lookup<'a>(asked: &'a CheckRequest, name: &str) -> Header<'a> {
    let attributes = asked.attributes.as_ref();
    let extension = |a: &'a AttributeContext| a.context_extensions.get(name).map(String::as_str);
    if name != "authorization"
        && let Some(value) = attributes.and_then(extension)
    {
        return Header::of_text(value);
    }
    if let Some(value) = asked.get_client_headers().and_then(|h| h.get(name)) {
        return Header::of_text(value);
    }
    let Some(raw) = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.header_map.as_ref())
    else {
        return Header::Absent;
    };
    Header::of_values(
        raw.headers
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| match h.value.as_str() {
                "" => std::str::from_utf8(&h.raw_value).ok(),
                value => Some(value),
            }),
    )
}

/// The check's response: OK with the identity headers for the upstream (replacing any the
/// client sent), or denied with the status and body the HTTP endpoint would answer.
fn response(answer: Answer) -> CheckResponse {
    let (decision, caller) = match answer {
        Answer::Unavailable => return denied(Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, NOT_SYNCED),
        Answer::Decided(decision, caller) => (decision, caller),
    };
    let code = match decision.outcome {
        Outcome::Allowed => Code::Ok,
        Outcome::Unauthenticated => Code::Unauthenticated,
        Outcome::Forbidden => Code::PermissionDenied,
        Outcome::Invalid => Code::InvalidArgument,
    };
    match caller.filter(|_| code == Code::Ok) {
        Some(caller) => {
            let mut ok = OkHttpResponseBuilder::new();
            for (name, value) in identity_headers(&caller) {
                ok.add_header(name, value, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), false);
            }
            let mut response = CheckResponse::with_status(Status::ok(""));
            response.set_http_response(ok.build());
            response
        }
        None => denied(code, http_status(decision.outcome), decision.told_to_caller()),
    }
}

/// A denial: the gRPC status Envoy reads, and the HTTP response it sends the client (with
/// the challenge on a 401).
fn denied(code: Code, http: StatusCode, reason: &str) -> CheckResponse {
    let body = serde_json::to_string(&Refusal { allowed: false, reason }).unwrap_or_default();
    let mut refusal = DeniedHttpResponseBuilder::new();
    refusal
        .set_http_status(HttpStatusCode::try_from(i32::from(http.as_u16())).unwrap_or(HttpStatusCode::Forbidden))
        .add_header("content-type", "application/json", None, false)
        .set_body(body);
    if http == StatusCode::UNAUTHORIZED {
        refusal.add_header("www-authenticate", CHALLENGE, None, false);
    }
    let mut response = CheckResponse::with_status(Status::new(code, reason));
    response.set_http_response(refusal.build());
    response
}
