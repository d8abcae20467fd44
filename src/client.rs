//! The operator's Kubernetes client: kube's, with every request counted by verb, resource and
//! response code (`ce_operator_api_requests_total`), so that what the operator asks of the API
//! server is visible apart from every other client's (the API server's own counters do not
//! name the client).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use kube::{Client, Config, client::ClientBuilder};
use tower::{Layer, Service};

use crate::metrics::{ApiRequestLabels, Metrics};

/// A client for `config` whose requests are counted in `metrics`.
pub fn counted(config: Config, metrics: Arc<Metrics>) -> kube::Result<Client> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&CountLayer { metrics })
        .build())
}

struct CountLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
struct Count<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, Rb> Service<Request<B>> for Count<S>
where
    S: Service<Request<B>, Response = Response<Rb>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let (verb, resource) = classify(request.method(), request.uri(), content_type);
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // 0: no response (connection failed or timed out).
            let code = response.as_ref().map_or(0, |r| r.status().as_u16());
            metrics
                .api_requests
                .get_or_create(&ApiRequestLabels { verb, resource, code })
                .inc();
            response
        })
    }
}

/// The verb and resource of a request, named as the API server's `apiserver_request_total`
/// names them (LIST and WATCH for collection reads, APPLY for server-side apply; the
/// resource with its subresource, as `ceusers/status`).
fn classify(method: &http::Method, uri: &http::Uri, content_type: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => return (verb_of(method, false, false, content_type), "other".into()),
    };
    // Namespaced: namespaces/{ns}/{resource}…; a namespace itself is namespaces/{name}[/sub].
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] if !matches!(*resource, "status" | "finalize") => {
            let mut r = vec![*resource];
            r.extend_from_slice(tail);
            r
        }
        _ => rest.to_vec(),
    };
    let collection = rest.len() < 2;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let resource = match rest.as_slice() {
        [resource, _name, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => "other".into(),
    };
    (verb_of(method, collection, watch, content_type), resource)
}

fn verb_of(method: &http::Method, collection: bool, watch: bool, content_type: Option<&str>) -> &'static str {
    match *method {
        http::Method::GET if watch => "WATCH",
        http::Method::GET if collection => "LIST",
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH if content_type.is_some_and(|t| t.starts_with("application/apply-patch")) => "APPLY",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE if collection => "DELETECOLLECTION",
        http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(method: &str, uri: &str, content_type: Option<&str>) -> (&'static str, String) {
        classify(&method.parse().unwrap(), &uri.parse().unwrap(), content_type)
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (
                "GET",
                "/apis/ce.tenancy.io/v1alpha1/ceusers?limit=500",
                None,
                ("LIST", "ceusers"),
            ),
            (
                "GET",
                "/apis/ce.tenancy.io/v1alpha1/namespaces/t/ceusers?watch=true&resourceVersion=5",
                None,
                ("WATCH", "ceusers"),
            ),
            (
                "GET",
                "/api/v1/namespaces/t/secrets/jane-user-secret",
                None,
                ("GET", "secrets"),
            ),
            ("POST", "/api/v1/namespaces/t/secrets", None, ("POST", "secrets")),
            (
                "PATCH",
                "/apis/ce.tenancy.io/v1alpha1/namespaces/t/ceusers/jane/status?fieldManager=x&force=true",
                Some("application/apply-patch+yaml"),
                ("APPLY", "ceusers/status"),
            ),
            (
                "PATCH",
                "/apis/ce.tenancy.io/v1alpha1/namespaces/t/accounts/eu",
                Some("application/merge-patch+json"),
                ("PATCH", "accounts"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/t/events",
                None,
                ("POST", "events"),
            ),
            ("GET", "/api/v1/namespaces?watch=1", None, ("WATCH", "namespaces")),
            ("GET", "/api/v1/namespaces/t", None, ("GET", "namespaces")),
            ("PUT", "/api/v1/namespaces/t/status", None, ("PUT", "namespaces/status")),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/ce/leases/ce-operator",
                None,
                ("PUT", "leases"),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/t/secrets",
                None,
                ("DELETECOLLECTION", "secrets"),
            ),
            ("GET", "/version", None, ("GET", "other")),
        ];
        for (method, uri, content_type, (verb, resource)) in cases {
            assert_eq!(
                classified(method, uri, content_type),
                (verb, resource.to_owned()),
                "{method} {uri}"
            );
        }
    }
}
