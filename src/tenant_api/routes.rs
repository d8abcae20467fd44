//! The routes, their bodies and answers. The OpenAPI document is generated from these
//! handlers and types (utoipa), so it cannot drift from what is served.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Instant};

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, JsonRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiState, ErrorBody, MAX_BODY, Problem, bad_body, too_large};
use crate::{
    api::{Account, CEUser, ElementSafelist, HasConditions, Organization, Role, RoleBinding},
    authz::Caller,
    cache::{Cached, resolve::ResolvedIdentity},
    model::{actor, safelist},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ce-operator tenant API",
        description = "The seeds' REST routes for a CE user, authenticated with `Authorization: User <user secret>, Organization <organization secret>`. Writes go through the Kubernetes API server as the tenant; what the caller may not see is answered 404."
    ),
    modifiers(&Credentials),
    security(("ce" = []))
)]
struct Document;

/// The platform's two secrets, in the Authorization header.
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ce",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "User <user secret>, Organization <organization secret>",
            ))),
        );
    }
}

fn api() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(get_user, patch_user))
        .routes(routes!(get_roles))
        .routes(routes!(put_role, delete_role))
        .routes(routes!(get_safelist, put_safelist, patch_safelist, delete_safelist))
        .routes(routes!(delete_safelist_element))
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(list_account_users, create_account_user))
}

pub(super) fn router(state: ApiState) -> axum::Router {
    let (router, document) = api().split_for_parts();
    let document = Arc::new(document);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                "no such route; see /openapi.json",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A user, as the routes show it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: String,
    account_id: String,
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    /// The roles the user holds (the system-assigned one included) while in effect.
    roles: Vec<String>,
    /// The roles bound by hand: what `PUT` and `DELETE /users/{userId}/roles/{roleKey}` change.
    bound_roles: Vec<String>,
    /// Whether the operator reports the user Ready.
    ready: bool,
}

/// A user's roles.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleList {
    roles: Vec<String>,
    bound_roles: Vec<String>,
}

/// `PATCH /users/{id}`: the fields to change. `roles` is the set of roles bound by hand
/// (`org-admin`, `admin`; `org` and `default-user` override the system's assignment).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    email: Option<String>,
    display_name: Option<String>,
    roles: Option<Vec<String>>,
}

/// An account, as the routes show it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    /// The organization's default account.
    default: bool,
    ready: bool,
}

/// `POST /accounts`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccount {
    /// The account's name (a DNS label).
    id: String,
    display_name: Option<String>,
}

/// `POST /accounts/{id}/users`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    /// The user's name (a DNS label).
    id: String,
    email: String,
    display_name: Option<String>,
}

/// Element keys (`salesforce`, `hubspot`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Elements {
    elements: Vec<String>,
}

const ROUTE_USER: &str = "users";
const ROUTE_ROLES: &str = "user-roles";
const ROUTE_SAFELIST: &str = "elements-safelist";
const ROUTE_ACCOUNTS: &str = "accounts";
const ROUTE_ACCOUNT_USERS: &str = "account-users";

/// Runs a route, counting and timing its answer.
async fn answer(
    state: &ApiState,
    route: &'static str,
    handled: impl Future<Output = Result<Response, Problem>>,
) -> Response {
    let started = Instant::now();
    let response = handled.await.unwrap_or_else(IntoResponse::into_response);
    state.record(route, response.status(), started);
    response
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|Json(t)| t).map_err(bad_body)
}

/// The role a key names, or 422.
fn role_of(key: &str) -> Result<Role, Problem> {
    Role::ALL.into_iter().find(|r| r.key() == key).ok_or_else(|| {
        let keys: Vec<&str> = Role::ALL.iter().map(|r| r.key()).collect();
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_role",
            format!("unknown role key {key:?}; one of {}", keys.join(", ")),
        )
    })
}

fn ready<K: HasConditions>(object: &K) -> bool {
    object.condition("Ready").is_some_and(|c| c.status == "True")
}

/// JSON of a new object of kind `K`, named `name` in the caller's namespace.
fn object<K: Resource<DynamicType = ()> + DeserializeOwned>(
    caller: &Caller,
    name: &str,
    spec: serde_json::Value,
) -> Result<K, Problem> {
    serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": caller.namespace},
        "spec": spec,
    }))
    .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))
}

impl ApiState {
    /// User `id` of the caller's organization, if the caller sees it.
    fn visible_user(&self, caller: &Caller, id: &str) -> Result<Arc<CEUser>, Problem> {
        self.cache
            .user(&caller.namespace, id)
            .filter(|u| self.cache.organization_of_user(u).as_deref() == Some(caller.identity.organization.as_str()))
            .filter(|u| actor::sees_user(&caller.identity, &caller.user, id, &u.spec.account_ref.name))
            .ok_or_else(|| Problem::not_found(format_args!("user {id}")))
    }

    /// Account `id` of the caller's organization, if the caller sees it.
    fn visible_account(&self, caller: &Caller, id: &str) -> Result<Arc<Account>, Problem> {
        self.cache
            .account(&caller.namespace, id)
            .filter(|a| a.spec.organization_ref.name == caller.identity.organization)
            .filter(|_| actor::sees_account(&caller.identity, id))
            .ok_or_else(|| Problem::not_found(format_args!("account {id}")))
    }

    /// The caller's own organization, if `id` names it.
    fn own_organization(&self, caller: &Caller, id: &str) -> Result<Arc<Organization>, Problem> {
        self.cache
            .organization(&caller.namespace, id)
            .filter(|_| id == caller.identity.organization)
            .ok_or_else(|| Problem::not_found(format_args!("organization {id}")))
    }

    fn roles_of(&self, user: &CEUser) -> RoleList {
        let ns = user.namespace().unwrap_or_default();
        let roles = ResolvedIdentity::authenticated(&self.cache, user)
            .map(|identity| identity.roles)
            .unwrap_or_default();
        let bound: BTreeSet<Role> = self
            .cache
            .bindings_of_user(&ns, &user.name_any())
            .iter()
            .filter(|b| b.meta().deletion_timestamp.is_none())
            .map(|b| b.spec.role)
            .collect();
        RoleList {
            roles: roles.iter().map(|r| r.key().to_owned()).collect(),
            bound_roles: bound.iter().map(|r| r.key().to_owned()).collect(),
        }
    }

    fn user_view(&self, user: &CEUser) -> UserView {
        let RoleList { roles, bound_roles } = self.roles_of(user);
        UserView {
            id: user.name_any(),
            account_id: user.spec.account_ref.name.clone(),
            email: user.spec.email.clone(),
            display_name: user.spec.display_name.clone(),
            roles,
            bound_roles,
            ready: ready(user),
        }
    }

    fn account_view(account: &Account) -> AccountView {
        AccountView {
            id: account.name_any(),
            display_name: account.spec.display_name.clone(),
            default: account.spec.default,
            ready: ready(account),
        }
    }

    /// The user's view once the caches hold the last write.
    fn current_user(&self, caller: &Caller, id: &str) -> Result<UserView, Problem> {
        let user = self
            .cache
            .user(&caller.namespace, id)
            .ok_or_else(|| Problem::not_found(format_args!("user {id}")))?;
        Ok(self.user_view(&user))
    }

    /// Creates `object` named `name` as `caller` once the review lets it, and waits until the
    /// caches hold it.
    async fn create<K>(&self, caller: &Caller, route: &str, name: &str, object: &K) -> Result<K, Problem>
    where
        K: Cached + Serialize + DeserializeOwned,
    {
        self.review(caller, name, None, Some(object))?;
        let written = self
            .as_tenant(caller)
            .create(route, object)
            .await
            .map_err(Problem::of_write)?;
        self.settle(&caller.namespace, name, Some(&written)).await;
        Ok(written)
    }

    /// Binds `role` to `target` unless a binding holds it already; true when one was made.
    async fn bind(&self, caller: &Caller, target: &CEUser, role: Role) -> Result<bool, Problem> {
        let ns = &caller.namespace;
        let id = target.name_any();
        let bindings = self.cache.bindings_of_user(ns, &id);
        if bindings
            .iter()
            .any(|b| b.spec.role == role && b.meta().deletion_timestamp.is_none())
        {
            return Ok(false);
        }
        // `<user>-<role>`, unless that name is taken by another binding.
        let name = (1..)
            .map(|n| match n {
                1 => format!("{id}-{role}"),
                n => format!("{id}-{role}-{n}"),
            })
            .find(|name| self.cache.get::<RoleBinding>(ns, name).is_none())
            .expect("a free name");
        let binding: RoleBinding = object(
            caller,
            &name,
            json!({"userRef": {"name": id}, "role": role.key(), "overrideSystemRole": role.is_system_assigned()}),
        )?;
        self.review(caller, &name, None, Some(&binding))?;
        let body = serde_json::to_value(&binding)
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        let written: RoleBinding = self
            .as_tenant(caller)
            .apply(ROUTE_ROLES, &name, &body)
            .await
            .map_err(Problem::of_write)?;
        self.settle(ns, &name, Some(&written)).await;
        Ok(true)
    }

    /// Removes every binding of `role` to `target`; a role only the system assigns is 409.
    async fn unbind(&self, caller: &Caller, target: &CEUser, role: Role) -> Result<(), Problem> {
        let ns = &caller.namespace;
        let id = target.name_any();
        let bindings: Vec<_> = self
            .cache
            .bindings_of_user(ns, &id)
            .into_iter()
            .filter(|b| b.spec.role == role)
            .collect();
        if bindings.is_empty() && self.roles_of(target).roles.iter().any(|r| r == role.key()) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "system_assigned",
                format!(
                    "role {role} of user {id} is assigned by the system from its account, not bound; it cannot be removed"
                ),
            ));
        }
        for binding in &bindings {
            self.review::<RoleBinding>(caller, &binding.name_any(), Some(binding), None)?;
        }
        for binding in &bindings {
            let name = binding.name_any();
            self.as_tenant(caller)
                .delete::<RoleBinding>(&name, binding.uid())
                .await
                .map_err(Problem::of_write)?;
            self.settle::<RoleBinding>(ns, &name, None).await;
        }
        Ok(())
    }

    /// Changes the elements of the organization's safelist in effect with `change` (creating
    /// one when there is none and `create` is set), and answers with the list.
    async fn edit_safelist(
        &self,
        caller: &Caller,
        org_id: &str,
        create: bool,
        change: impl FnOnce(&mut Vec<String>) -> Result<(), Problem>,
    ) -> Result<Response, Problem> {
        let org = self.own_organization(caller, org_id)?;
        let ns = &caller.namespace;
        let lists = self.cache.safelists_of(ns, &org.name_any());
        let written = match safelist::effective(&lists) {
            Some(list) => {
                let mut new = list.clone();
                change(&mut new.spec.elements)?;
                let name = list.name_any();
                if new.spec.elements == list.spec.elements {
                    return Ok(Json(Elements {
                        elements: list.spec.elements.clone(),
                    })
                    .into_response());
                }
                self.review(caller, &name, Some(list), Some(&new))?;
                let written: ElementSafelist = self
                    .as_tenant(caller)
                    .replace(
                        ROUTE_SAFELIST,
                        &name,
                        "/spec/elements",
                        json!(list.spec.elements),
                        json!(new.spec.elements),
                    )
                    .await
                    .map_err(|e| match e {
                        // The test of the elements failed: someone changed them meanwhile.
                        kube::Error::Api(status) if status.code == 422 && status.message.contains("test") => {
                            Problem::new(
                                StatusCode::CONFLICT,
                                "conflict",
                                format!("the safelist {name} changed meanwhile; read it again and retry"),
                            )
                        }
                        other => Problem::of_write(other),
                    })?;
                self.settle(ns, &name, Some(&written)).await;
                written
            }
            None if create => {
                let mut elements = Vec::new();
                change(&mut elements)?;
                let name = format!("{org_id}-elements-safelist");
                let new: ElementSafelist = object(
                    caller,
                    &name,
                    json!({"organizationRef": {"name": org_id}, "elements": elements}),
                )?;
                self.create(caller, ROUTE_SAFELIST, &name, &new).await?
            }
            None => return Err(no_safelist(org_id)),
        };
        Ok(Json(Elements {
            elements: written.spec.elements,
        })
        .into_response())
    }
}

fn no_safelist(org: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_safelist",
        format!(
            "organization {org} has no element safelist: every element its super-organization does not deny is visible"
        ),
    )
}

/// Adds `added` to `elements`, keeping their order and each once.
fn add(elements: &mut Vec<String>, added: Vec<String>) {
    for element in added {
        if !elements.contains(&element) {
            elements.push(element);
        }
    }
}

#[utoipa::path(get, path = "/users/{id}", params(("id" = String, Path, description = "The user's name")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    answer(&state, "GET /users/{id}", async {
        let caller = state.caller(&headers)?;
        let user = state.visible_user(&caller, &id)?;
        Ok(Json(state.user_view(&user)).into_response())
    })
    .await
}

/// Changes a user's e-mail, display name, or the roles bound to it.
#[utoipa::path(patch, path = "/users/{id}", params(("id" = String, Path, description = "The user's name")), request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_user(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<UserPatch>, JsonRejection>,
) -> Response {
    answer(&state, "PATCH /users/{id}", async {
        let caller = state.caller(&headers)?;
        let target = state.visible_user(&caller, &id)?;
        let patch = json_body(body)?;
        // Every role key is read before anything is written.
        let roles = patch
            .roles
            .as_ref()
            .map(|keys| keys.iter().map(|k| role_of(k)).collect::<Result<BTreeSet<Role>, _>>())
            .transpose()?;
        // The changed object, for the review; only the fields given, for the apply.
        let mut new = (*target).clone();
        let mut fields = serde_json::Map::new();
        if let Some(email) = patch.email {
            new.spec.email = email.clone();
            fields.insert("email".into(), email.into());
        }
        if let Some(name) = patch.display_name {
            new.spec.display_name = Some(name.clone());
            fields.insert("displayName".into(), name.into());
        }
        if new.spec != target.spec {
            state.review(&caller, &id, Some(target.as_ref()), Some(&new))?;
            let body = json!({
                "apiVersion": CEUser::api_version(&()), "kind": CEUser::kind(&()),
                "metadata": {"name": id}, "spec": fields,
            });
            let written: CEUser = state
                .as_tenant(&caller)
                .apply(ROUTE_USER, &id, &body)
                .await
                .map_err(Problem::of_write)?;
            state.settle(&caller.namespace, &id, Some(&written)).await;
        }
        if let Some(wanted) = roles {
            let bound: BTreeSet<Role> = state
                .cache
                .bindings_of_user(&caller.namespace, &id)
                .iter()
                .map(|b| b.spec.role)
                .collect();
            // Grants first, so that replacing one org-admin by another never leaves none.
            for role in wanted.difference(&bound) {
                state.bind(&caller, &target, *role).await?;
            }
            for role in bound.difference(&wanted) {
                state.unbind(&caller, &target, *role).await?;
            }
        }
        Ok(Json(state.current_user(&caller, &id)?).into_response())
    })
    .await
}

#[utoipa::path(get, path = "/users/{userId}/roles", params(("userId" = String, Path, description = "The user's name")),
    responses((status = 200, body = RoleList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_roles(State(state): State<ApiState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    answer(&state, "GET /users/{userId}/roles", async {
        let caller = state.caller(&headers)?;
        let user = state.visible_user(&caller, &user_id)?;
        Ok(Json(state.roles_of(&user)).into_response())
    })
    .await
}

/// Assigns a role (idempotent: a role held through a binding already is left as it is).
#[utoipa::path(put, path = "/users/{userId}/roles/{roleKey}",
    params(("userId" = String, Path, description = "The user's name"), ("roleKey" = String, Path, description = "org-admin, admin, org or default-user")),
    responses((status = 201, description = "Bound", body = RoleList), (status = 200, description = "Already bound", body = RoleList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_role(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((user_id, role_key)): Path<(String, String)>,
) -> Response {
    answer(&state, "PUT /users/{userId}/roles/{roleKey}", async {
        let caller = state.caller(&headers)?;
        let target = state.visible_user(&caller, &user_id)?;
        let role = role_of(&role_key)?;
        let made = state.bind(&caller, &target, role).await?;
        let status = if made { StatusCode::CREATED } else { StatusCode::OK };
        let user = state.visible_user(&caller, &user_id)?;
        Ok((status, Json(state.roles_of(&user))).into_response())
    })
    .await
}

/// Removes a role: every binding of it (idempotent).
#[utoipa::path(delete, path = "/users/{userId}/roles/{roleKey}",
    params(("userId" = String, Path, description = "The user's name"), ("roleKey" = String, Path, description = "org-admin, admin, org or default-user")),
    responses((status = 200, body = RoleList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_role(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((user_id, role_key)): Path<(String, String)>,
) -> Response {
    answer(&state, "DELETE /users/{userId}/roles/{roleKey}", async {
        let caller = state.caller(&headers)?;
        let target = state.visible_user(&caller, &user_id)?;
        let role = role_of(&role_key)?;
        state.unbind(&caller, &target, role).await?;
        Ok(Json(state.roles_of(&target)).into_response())
    })
    .await
}

#[utoipa::path(get, path = "/organizations/{organizationId}/elements-safelist",
    params(("organizationId" = String, Path, description = "The caller's organization")),
    responses((status = 200, body = Elements), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_safelist(State(state): State<ApiState>, headers: HeaderMap, Path(org_id): Path<String>) -> Response {
    answer(&state, "GET /organizations/{organizationId}/elements-safelist", async {
        let caller = state.caller(&headers)?;
        let org = state.own_organization(&caller, &org_id)?;
        let lists = state.cache.safelists_of(&caller.namespace, &org.name_any());
        let list = safelist::effective(&lists).ok_or_else(|| no_safelist(&org_id))?;
        Ok(Json(Elements {
            elements: list.spec.elements.clone(),
        })
        .into_response())
    })
    .await
}

/// Adds elements to the safelist (creating it if the organization has none).
#[utoipa::path(put, path = "/organizations/{organizationId}/elements-safelist",
    params(("organizationId" = String, Path, description = "The caller's organization")), request_body = Elements,
    responses((status = 200, body = Elements), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_safelist(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Result<Json<Elements>, JsonRejection>,
) -> Response {
    answer(&state, "PUT /organizations/{organizationId}/elements-safelist", async {
        let caller = state.caller(&headers)?;
        let added = json_body(body)?.elements;
        state
            .edit_safelist(&caller, &org_id, true, |elements| {
                add(elements, added);
                Ok(())
            })
            .await
    })
    .await
}

/// Adds elements to the safelist the organization has (404 when it has none).
#[utoipa::path(patch, path = "/organizations/{organizationId}/elements-safelist",
    params(("organizationId" = String, Path, description = "The caller's organization")), request_body = Elements,
    responses((status = 200, body = Elements), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_safelist(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Result<Json<Elements>, JsonRejection>,
) -> Response {
    answer(
        &state,
        "PATCH /organizations/{organizationId}/elements-safelist",
        async {
            let caller = state.caller(&headers)?;
            let added = json_body(body)?.elements;
            state
                .edit_safelist(&caller, &org_id, false, |elements| {
                    add(elements, added);
                    Ok(())
                })
                .await
        },
    )
    .await
}

/// Removes the elements the body names; with no body, deletes the safelist (every element
/// the super-organization does not deny becomes visible).
#[utoipa::path(delete, path = "/organizations/{organizationId}/elements-safelist",
    params(("organizationId" = String, Path, description = "The caller's organization")), request_body(content = Elements, description = "Optional"),
    responses((status = 200, body = Elements), (status = 204, description = "The safelist deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_safelist(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(
        &state,
        "DELETE /organizations/{organizationId}/elements-safelist",
        async {
            let caller = state.caller(&headers)?;
            let body = body.map_err(|_| too_large())?;
            if !body.iter().all(u8::is_ascii_whitespace) {
                let removed: Elements = serde_json::from_slice(&body).map_err(|e| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        format!("expected {{\"elements\": [...]}} or no body: {e}"),
                    )
                })?;
                return state
                    .edit_safelist(&caller, &org_id, false, |elements| {
                        elements.retain(|e| !removed.elements.contains(e));
                        Ok(())
                    })
                    .await;
            }
            let org = state.own_organization(&caller, &org_id)?;
            let lists = state.cache.safelists_of(&caller.namespace, &org.name_any());
            if lists.is_empty() {
                return Err(no_safelist(&org_id));
            }
            for list in &lists {
                state.review::<ElementSafelist>(&caller, &list.name_any(), Some(list), None)?;
            }
            for list in &lists {
                let name = list.name_any();
                state
                    .as_tenant(&caller)
                    .delete::<ElementSafelist>(&name, list.uid())
                    .await
                    .map_err(Problem::of_write)?;
                state.settle::<ElementSafelist>(&caller.namespace, &name, None).await;
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
    .await
}

/// Removes one element from the safelist (404 when it is not listed).
#[utoipa::path(delete, path = "/organizations/{organizationId}/elements-safelist/{elementId}",
    params(("organizationId" = String, Path, description = "The caller's organization"), ("elementId" = String, Path, description = "An element key")),
    responses((status = 200, body = Elements), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_safelist_element(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((org_id, element)): Path<(String, String)>,
) -> Response {
    answer(
        &state,
        "DELETE /organizations/{organizationId}/elements-safelist/{elementId}",
        async {
            let caller = state.caller(&headers)?;
            state
                .edit_safelist(&caller, &org_id, false, |elements| {
                    let before = elements.len();
                    elements.retain(|e| *e != element);
                    if elements.len() == before {
                        return Err(Problem::not_found(format_args!(
                            "element {element} in the safelist of {org_id}"
                        )));
                    }
                    Ok(())
                })
                .await
        },
    )
    .await
}

/// The accounts of the caller's organization it sees.
#[utoipa::path(get, path = "/accounts", responses((status = 200, body = Vec<AccountView>), (status = 401, body = ErrorBody)))]
async fn list_accounts(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    answer(&state, "GET /accounts", async {
        let caller = state.caller(&headers)?;
        let mut accounts: Vec<AccountView> = state
            .cache
            .accounts_of(&caller.namespace, &caller.identity.organization)
            .iter()
            .filter(|a| actor::sees_account(&caller.identity, &a.name_any()))
            .map(|a| ApiState::account_view(a))
            .collect();
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Json(accounts).into_response())
    })
    .await
}

#[utoipa::path(post, path = "/accounts", request_body = NewAccount,
    responses((status = 201, body = AccountView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_account(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Response {
    answer(&state, "POST /accounts", async {
        let caller = state.caller(&headers)?;
        let new = json_body(body)?;
        let account: Account = object(
            &caller,
            &new.id,
            json!({"organizationRef": {"name": caller.identity.organization}, "displayName": new.display_name}),
        )?;
        let written = state.create(&caller, ROUTE_ACCOUNTS, &new.id, &account).await?;
        Ok((StatusCode::CREATED, Json(ApiState::account_view(&written))).into_response())
    })
    .await
}

/// The users of an account that the caller sees.
#[utoipa::path(get, path = "/accounts/{id}/users", params(("id" = String, Path, description = "The account's name")),
    responses((status = 200, body = Vec<UserView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_account_users(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    answer(&state, "GET /accounts/{id}/users", async {
        let caller = state.caller(&headers)?;
        state.visible_account(&caller, &id)?;
        let mut users: Vec<UserView> = state
            .cache
            .users_of_account(&caller.namespace, &id)
            .iter()
            .filter(|u| actor::sees_user(&caller.identity, &caller.user, &u.name_any(), &id))
            .map(|u| state.user_view(u))
            .collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Json(users).into_response())
    })
    .await
}

#[utoipa::path(post, path = "/accounts/{id}/users", params(("id" = String, Path, description = "The account's name")), request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_account_user(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    answer(&state, "POST /accounts/{id}/users", async {
        let caller = state.caller(&headers)?;
        state.visible_account(&caller, &id)?;
        let new = json_body(body)?;
        let user: CEUser = object(
            &caller,
            &new.id,
            json!({"accountRef": {"name": id}, "email": new.email, "displayName": new.display_name}),
        )?;
        let written = state.create(&caller, ROUTE_ACCOUNT_USERS, &new.id, &user).await?;
        let shown = state
            .cache
            .user(&caller.namespace, &new.id)
            .unwrap_or_else(|| Arc::new(written));
        Ok((StatusCode::CREATED, Json(state.user_view(&shown))).into_response())
    })
    .await
}
