//! The tenant API's writes: through the API server, as the tenant (the operator impersonates
//! `TENANT_API_USER` naming the CE user), so that RBAC, the audit log and the admission
//! webhook see the tenant's change, and `kubectl get` and GitOps tools see the result.

use http::{HeaderName, HeaderValue};
use kube::{
    Client,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    core::Request,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::webhook::actor::{TENANT_API_USER, TENANT_API_USER_EXTRA};

/// Writes one namespace's tenancy objects as one CE user.
pub struct AsTenant<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    pub user: &'a str,
}

/// The field manager of a route: one per route, so that `managedFields` tells which route
/// set a field (and a GitOps tool's next sync takes it back, as documented).
pub fn field_manager(route: &str) -> String {
    format!("ce-tenant-api/{route}")
}

impl AsTenant<'_> {
    fn request<K: kube::Resource<DynamicType = ()>>(&self) -> Request {
        Request::new(K::url_path(&(), Some(self.namespace)))
    }

    /// The request, sent as the tenant.
    async fn send<T: DeserializeOwned>(&self, mut request: http::Request<Vec<u8>>) -> Result<T, kube::Error> {
        let headers = request.headers_mut();
        headers.insert(
            HeaderName::from_static("impersonate-user"),
            HeaderValue::from_static(TENANT_API_USER),
        );
        // An extra's key is percent-encoded in the header's name (its `/`).
        let extra = format!("impersonate-extra-{}", TENANT_API_USER_EXTRA.replace('/', "%2f"));
        let invalid = |what: &str| kube::Error::BuildRequest(kube::core::request::Error::Validation(what.to_owned()));
        let name = HeaderName::from_bytes(extra.as_bytes()).map_err(|_| invalid("the impersonation extra's key"))?;
        let value = HeaderValue::from_str(self.user).map_err(|_| invalid("a user name that is not a header value"))?;
        headers.insert(name, value);
        self.client.request(request).await
    }

    /// Server-side apply of `object` (create, or update only the fields it names), forced:
    /// the route's own check decided, and the last writer of a field owns it.
    pub async fn apply<K>(&self, route: &str, name: &str, object: &serde_json::Value) -> Result<K, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let params = PatchParams::apply(&field_manager(route)).force();
        let request = self
            .request::<K>()
            .patch(name, &params, &Patch::Apply(object))
            .map_err(kube::Error::BuildRequest)?;
        self.send(request).await
    }

    /// Sets the field at `path` (a JSON pointer) to `new` if it still holds `old` (409 if it
    /// changed since): a test of that field only, so that the operator's status writes in
    /// between do not fail the change, as a resourceVersion precondition would.
    pub async fn replace<K>(
        &self,
        route: &str,
        name: &str,
        path: &str,
        old: serde_json::Value,
        new: serde_json::Value,
    ) -> Result<K, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "test", "path": path, "value": old},
            {"op": "replace", "path": path, "value": new},
        ]))
        .map_err(kube::Error::SerdeError)?;
        let params = PatchParams {
            field_manager: Some(field_manager(route)),
            ..Default::default()
        };
        let request = self
            .request::<K>()
            .patch(name, &params, &Patch::<()>::Json(patch))
            .map_err(kube::Error::BuildRequest)?;
        self.send(request).await
    }

    /// Creates `object` (409 if its name is taken).
    pub async fn create<K>(&self, route: &str, object: &K) -> Result<K, kube::Error>
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let params = PostParams {
            field_manager: Some(field_manager(route)),
            ..Default::default()
        };
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let request = self
            .request::<K>()
            .create(&params, body)
            .map_err(kube::Error::BuildRequest)?;
        self.send(request).await
    }

    /// Deletes the object named `name` if it is still the one of `uid`.
    pub async fn delete<K>(&self, name: &str, uid: Option<String>) -> Result<(), kube::Error>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..Default::default()
        };
        let request = self
            .request::<K>()
            .delete(name, &params)
            .map_err(kube::Error::BuildRequest)?;
        // The answer is the object (while finalizers hold it) or a Status: either will do.
        self.send::<serde_json::Value>(request).await.map(drop)
    }
}
