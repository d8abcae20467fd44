//! The API server's own request counters (`apiserver_request_total`), read by the tests and,
//! through a `#[path]` module, by the benchmarks: what was written, judged by the server.

use std::collections::BTreeMap;

use kube::Client;

use super::metrics::Metrics;

/// One series of the API server's `apiserver_request_total`, without the response code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiRequests {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
}

/// The API server's own request counters, summed over response codes: how tests judge what
/// was written, from the server rather than from the operator's word.
pub async fn apiserver_requests(client: &Client) -> BTreeMap<ApiRequests, u64> {
    Metrics::parse(&apiserver_metrics(client).await)
        .sum_by("apiserver_request_total", &["verb", "group", "resource", "subresource"])
        .into_iter()
        .map(|(labels, n)| {
            let [verb, group, resource, subresource] = <[String; 4]>::try_from(labels).expect("four labels");
            let key = ApiRequests {
                verb,
                group,
                resource,
                subresource,
            };
            (key, n as u64)
        })
        .collect()
}

/// Whether a request verb, as `apiserver_request_total` names it, writes: creates, updates
/// and patches (server-side applies are `APPLY`). Not deletes: the namespace controller keeps
/// making them in namespaces other tests or runs are tearing down, and the operator's writes
/// are judged without them.
pub fn is_write(verb: &str) -> bool {
    matches!(verb, "POST" | "PUT" | "PATCH" | "APPLY")
}

/// `after - before` per key of two counter snapshots (a key absent before counts from 0).
pub fn between<K: Ord + Clone>(before: &BTreeMap<K, u64>, after: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .collect()
}

/// The API server's own metrics, as Prometheus text.
pub async fn apiserver_metrics(client: &Client) -> String {
    client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap()
}
