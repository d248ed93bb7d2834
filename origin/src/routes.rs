//! The HTTP surface: thin handlers that extract, call the catalog, and shape
//! the response. No SQL and no JSON surgery here.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use bytes::Bytes;
use floe_shared::etag::{self, SnapshotsMode};
use floe_shared::json::JsonBodies;
use floe_shared::route::{Operation, ROUTES};
use floe_shared::wire::{
    CreateNamespaceRequest, RegisterTableRequest, RenameTableRequest,
    UpdateNamespacePropertiesRequest,
};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::catalog::{Catalog, TableResponse, page_request};
use crate::delegation::{DelegationRequest, Requested, StorageAccess};
use crate::error::{CatalogError, Result};
use crate::extract::{JsonBody, QueryParams, Target};
use crate::metrics::Metrics;
use crate::views::ViewResponse;
use crate::wire::{
    CommitTableRequest, CommitTransactionRequest, CommitViewRequest, CreateTableRequest,
    CreateViewRequest, RegisterViewRequest,
};
use crate::{management, principals};
use floe_shared::auth::Listing;

/// State shared by all handlers: one reference count per clone (axum clones
/// it for every middleware and extractor of every request).
#[derive(Clone)]
pub struct AppState(std::sync::Arc<AppParts>);

impl AppState {
    /// Shares `parts` between handlers.
    pub fn new(parts: AppParts) -> Self {
        Self(std::sync::Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What handlers share.
pub struct AppParts {
    /// The catalog service.
    pub catalog: Catalog,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Pooled serialization of response bodies.
    pub bodies: JsonBodies,
    /// Warehouse served by routes without a prefix.
    pub default_warehouse: String,
    /// Largest body accepted.
    pub body_limit: usize,
    /// Authentication and authorization.
    pub auth: crate::auth::OriginAuth,
    /// How long an Idempotency-Key's outcome is kept.
    pub idempotency_lifetime: std::time::Duration,
}

/// The handler of each operation of the route grammar
/// ([`floe_shared::route::ROUTES`]); the router is built from the grammar,
/// so the two cannot disagree about what Floe serves.
fn handler(operation: Operation) -> MethodRouter<AppState> {
    use Operation as Op;
    use axum::routing::{delete, head};
    match operation {
        Op::GetConfig => get(get_config),
        Op::GetToken => post(unsupported),
        Op::ListNamespaces => get(list_namespaces),
        Op::CreateNamespace => post(create_namespace),
        Op::LoadNamespace => get(load_namespace),
        Op::NamespaceExists => head(namespace_exists),
        Op::DropNamespace => delete(drop_namespace),
        Op::UpdateNamespaceProperties => post(update_properties),
        Op::ListTables => get(list_tables),
        Op::CreateTable => post(create_table),
        Op::LoadTable => get(load_table),
        Op::TableExists => head(table_exists),
        Op::UpdateTable => post(commit_table),
        Op::DropTable => delete(drop_table),
        Op::RegisterTable => post(register_table),
        Op::ReportMetrics => post(report_metrics),
        Op::UnregisterTable => post(unregister_table),
        Op::LoadCredentials => get(load_credentials),
        Op::SignRequest => post(sign_request),
        Op::PlanTableScan => post(plan_table_scan),
        Op::FetchPlanningResult => get(fetch_planning_result),
        Op::CancelPlanning => delete(cancel_planning),
        Op::FetchScanTasks => post(fetch_scan_tasks),
        Op::RenameTable => post(rename_table),
        Op::CommitTransaction => post(commit_transaction),
        Op::ListFunctions => get(list_functions),
        Op::LoadFunction => get(load_function),
        Op::ListViews => get(list_views),
        Op::CreateView => post(create_view),
        Op::LoadView => get(load_view),
        Op::ViewExists => head(view_exists),
        Op::ReplaceView => post(replace_view),
        Op::DropView => delete(drop_view),
        Op::RenameView => post(rename_view),
        Op::RegisterView => post(register_view),
        Op::ListWarehouses => get(list_warehouses),
        Op::CreateWarehouse => post(create_warehouse),
        Op::DeleteWarehouse => delete(delete_warehouse),
        Op::ListClients => get(list_clients),
        Op::CreateClient => post(create_client),
        Op::GetClient => get(get_client),
        Op::ClientAction => post(client_action),
        Op::CreateApiKey => post(create_api_key),
        Op::ListApiKeys => get(list_api_keys),
        Op::RevokeApiKey => delete(revoke_api_key),
        Op::RotateApiKey => post(rotate_api_key),
        Op::Events => get(events),
        Op::InternalPrincipal => get(crate::auth::internal_principal_by_id),
        Op::InternalSubject => get(crate::auth::internal_principal_by_subject),
        Op::InternalApiKey => get(crate::auth::internal_api_key),
        Op::Health => get(health),
        Op::Ready => get(ready),
        Op::Metrics => get(metrics),
    }
}

/// Builds the whole application from the route grammar: the REST API (with
/// and without prefix), management, internal, health and metrics.
pub fn app(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let mut paths: Vec<(String, MethodRouter<AppState>)> = Vec::new();
    for spec in ROUTES {
        let pattern = spec.resource.pattern();
        let mut forms = vec![pattern.to_string()];
        if pattern.contains("/{prefix}") {
            forms.push(pattern.replacen("/{prefix}", "", 1));
        }
        for path in forms {
            match paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => {
                    *methods = std::mem::take(methods).merge(handler(spec.operation));
                }
                None => paths.push((path, handler(spec.operation))),
            }
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&path, methods)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), database_gate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The answer to a keyed request whose effect was committed (`applied`: the
/// metadata location it produced, or '') by an origin that went away before
/// answering: what that origin would have answered.
pub(crate) async fn applied_answer(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    body: &Bytes,
    applied: &str,
) -> Result<Response> {
    use Operation as Op;
    let path = parts.uri.path().to_string();
    let operation = floe_shared::route::parse(parts.method.as_str(), &path)
        .map(|route| route.operation())
        .ok_or_else(|| CatalogError::NotFound(format!("No route for {path}")))?;
    let target = Target::of_path(&path, &state.default_warehouse)?;
    let named = || -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Named {
            name: String,
        }
        serde_json::from_slice::<Named>(body)
            .map(|n| n.name)
            .map_err(|e| CatalogError::BadRequest(format!("Invalid request body: {e}")))
    };
    match operation {
        Op::CreateNamespace => {
            #[derive(serde::Deserialize)]
            struct Created {
                namespace: Vec<String>,
            }
            let created: Created = serde_json::from_slice(body)
                .map_err(|e| CatalogError::BadRequest(format!("Invalid request body: {e}")))?;
            let loaded = state
                .catalog
                .load_namespace(&target.prefix, &created.namespace)
                .await?;
            return to_json(state, StatusCode::OK, &loaded);
        }
        Op::CreateView | Op::ReplaceView | Op::RegisterView => {
            let view = state.catalog.applied_view(&target.prefix, applied).await?;
            return Ok(view_result(view));
        }
        Op::CreateTable | Op::RegisterTable | Op::UpdateTable => {}
        _ => return Ok(StatusCode::NO_CONTENT.into_response()),
    }
    let name = if target.table.is_empty() {
        named()?
    } else {
        target.table.clone()
    };
    let caller = parts.extensions.get::<Caller>();
    let delegation = delegation(&parts.headers, caller, &target);
    let table = state
        .catalog
        .applied_table(
            &target.prefix,
            &target.namespace,
            &name,
            applied,
            delegation,
        )
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

/// While the catalog database is unreachable, requests that need it get 503
/// at once (not after a pool's acquire timeout). Health, metrics and the
/// change-event stream keep answering, so edges stay subscribed and keep
/// serving the loads they hold.
async fn database_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = floe_shared::route::match_path(path).is_some_and(|m| {
        use floe_shared::route::Resource;
        matches!(
            m.resource,
            Resource::Health | Resource::Metrics | Resource::Events
        )
    });
    if !exempt && state.catalog.store().is_down() {
        return CatalogError::Unavailable(
            "The catalog database is unreachable; nothing was changed. Retry later".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts and times every request by its route pattern.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // MatchedPath is a shared string: cloning it does not allocate.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let response = match read_body(request, state.body_limit).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    };
    let status = response.status();
    state.metrics.request(
        method.as_str(),
        route,
        status.as_str(),
        started.elapsed().as_secs_f64(),
    );
    if status.is_server_error() {
        let status = status.as_u16();
        tracing::warn!(%method, %route, status, "request failed");
    }
    response
}

/// The request with its whole body read, before any layer or handler can
/// answer it. A response sent while part of the body is still unread makes
/// hyper close the connection after it without a `Connection: close`, and the
/// edge would send its next request on that pooled connection, to fail
/// (502 for a request it cannot replay). A body over `limit` is refused with
/// 413 and `Connection: close`.
async fn read_body(request: Request, limit: usize) -> std::result::Result<Request, Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Err(_) => {
            let mut response = CatalogError::PayloadTooLarge(format!(
                "Request body is over the limit of {limit} bytes"
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn to_json<T: Serialize>(state: &AppState, status: StatusCode, value: &T) -> Result<Response> {
    Ok(json_response(status, state.bodies.to_bytes(value)?))
}

/// A table result with its ETag (when it has a metadata location); one that
/// carries credentials is marked for no shared cache to keep.
fn table_result(table: TableResponse, mode: SnapshotsMode) -> Response {
    let mut response = json_response(StatusCode::OK, table.body);
    if let Some(location) = &table.metadata_location
        && let Ok(value) =
            HeaderValue::from_str(&etag::table_etag(location, mode, &table.delegation))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    if table.private {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    response
}

/// What storage access a table request asked for, and what its caller may do.
fn delegation(headers: &HeaderMap, caller: Option<&Caller>, target: &Target) -> DelegationRequest {
    let requested = Requested::parse(
        headers
            .get(crate::delegation::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let write = caller.is_some_and(|c| c.may_write(&target.prefix, &target.namespace));
    DelegationRequest {
        requested,
        access: if write {
            StorageAccess::ReadWrite
        } else {
            StorageAccess::ReadOnly
        },
    }
}

async fn unsupported(method: Method, uri: axum::http::Uri) -> CatalogError {
    CatalogError::Unsupported(format!(
        "Operation not supported yet: {method} {}",
        uri.path()
    ))
}

async fn not_found(uri: axum::http::Uri) -> CatalogError {
    CatalogError::NotFound(format!("No route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> CatalogError {
    CatalogError::MethodNotAllowed(format!("Method {method} is not allowed on {}", uri.path()))
}

// ---- config ----------------------------------------------------------------

#[derive(Deserialize)]
struct ConfigParams {
    warehouse: Option<String>,
}

async fn get_config(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<ConfigParams>,
) -> Result<Response> {
    let endpoints = floe_shared::route::endpoints().collect();
    let mut config = state
        .catalog
        .config(
            params.warehouse.as_deref(),
            &state.default_warehouse,
            endpoints,
        )
        .await?;
    config.idempotency_key_lifetime = Some(crate::idempotency::lifetime(
        state.idempotency_lifetime.as_secs(),
    ));
    to_json(&state, StatusCode::OK, &config)
}

// ---- namespaces ------------------------------------------------------------

impl ListParams {
    fn page(&self, state: &AppState) -> Result<crate::catalog::PageRequest> {
        page_request(
            self.page_token.as_deref(),
            self.page_size.as_deref(),
            state.catalog.settings(),
        )
    }
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<String>,
    parent: Option<String>,
}

/// What a listing of `namespace` may show the caller.
fn listing(caller: Option<&Caller>, warehouse: &str, namespace: &[String]) -> Listing {
    match caller {
        Some(Caller::Anyone) => Listing::All,
        Some(Caller::Principal(p)) => floe_shared::auth::listing(&p.grants, warehouse, namespace),
        _ => Listing::Nothing,
    }
}

async fn list_namespaces(
    State(state): State<AppState>,
    target: Target,
    caller: Option<Extension<Caller>>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response> {
    let page = params.page(&state)?;
    let parent = match params.parent.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(crate::catalog::parse_namespace(raw)?),
    };
    let listing = listing(
        caller.as_deref(),
        &target.prefix,
        parent.as_deref().unwrap_or_default(),
    );
    let list = state
        .catalog
        .list_namespaces(&target.prefix, parent, page, &listing)
        .await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn create_namespace(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CreateNamespaceRequest>,
) -> Result<Response> {
    let created = state.catalog.create_namespace(&target.prefix, req).await?;
    to_json(&state, StatusCode::OK, &created)
}

async fn load_namespace(State(state): State<AppState>, target: Target) -> Result<Response> {
    let ns = state
        .catalog
        .load_namespace(&target.prefix, &target.namespace)
        .await?;
    to_json(&state, StatusCode::OK, &ns)
}

async fn namespace_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    state
        .catalog
        .load_namespace(&target.prefix, &target.namespace)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn drop_namespace(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    state
        .catalog
        .drop_namespace(&target.prefix, &target.namespace)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_properties(
    State(state): State<AppState>,
    target: Target,
    caller: Option<Extension<Caller>>,
    JsonBody(req): JsonBody<UpdateNamespacePropertiesRequest>,
) -> Result<Response> {
    // Where a namespace's tables go is the warehouse's layout: the same
    // role as creating namespaces.
    let may_relocate = caller.is_some_and(|c| c.may_write(&target.prefix, &[]));
    let result = state
        .catalog
        .update_namespace_properties(&target.prefix, &target.namespace, req, may_relocate)
        .await?;
    to_json(&state, StatusCode::OK, &result)
}

// ---- tables ----------------------------------------------------------------

async fn list_tables(
    State(state): State<AppState>,
    target: Target,
    caller: Option<Extension<Caller>>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response> {
    let page = params.page(&state)?;
    let listing = listing(caller.as_deref(), &target.prefix, &target.namespace);
    let list = state
        .catalog
        .list_tables(&target.prefix, &target.namespace, page, &listing)
        .await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn create_table(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> Result<Response> {
    let delegation = delegation(&headers, caller.as_deref(), &target);
    let table = state
        .catalog
        .create_table(&target.prefix, &target.namespace, req, delegation)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

#[derive(Deserialize)]
struct LoadParams {
    snapshots: Option<String>,
}

async fn load_table(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    QueryParams(params): QueryParams<LoadParams>,
) -> Result<Response> {
    let delegation = delegation(&headers, caller.as_deref(), &target);
    let mode = match params.snapshots.as_deref() {
        None => SnapshotsMode::All,
        Some(value) => SnapshotsMode::parse(value).ok_or_else(|| {
            CatalogError::BadRequest(format!("snapshots must be 'all' or 'refs', got {value:?}"))
        })?,
    };
    let table = state
        .catalog
        .load_table(
            &target.prefix,
            &target.namespace,
            &target.table,
            mode,
            delegation,
        )
        .await?;
    if let (Some(location), Some(inm)) = (
        table.metadata_location.as_deref(),
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
    ) {
        let tag = etag::table_etag(location, mode, &table.delegation);
        if etag::if_none_match_matches(inm, &tag) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(value) = HeaderValue::from_str(&tag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            return Ok(response);
        }
    }
    Ok(table_result(table, mode))
}

async fn table_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    state
        .catalog
        .table_exists(&target.prefix, &target.namespace, &target.table)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn commit_table(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitTableRequest>,
) -> Result<Response> {
    let table = state
        .catalog
        .commit_table(&target.prefix, &target.namespace, &target.table, req)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

#[derive(Deserialize)]
struct DropParams {
    #[serde(rename = "purgeRequested")]
    purge_requested: Option<String>,
}

async fn drop_table(
    State(state): State<AppState>,
    target: Target,
    QueryParams(params): QueryParams<DropParams>,
) -> Result<StatusCode> {
    let purge = match params.purge_requested.as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(CatalogError::BadRequest(format!(
                "purgeRequested must be true or false, got {v:?}"
            )));
        }
    };
    state
        .catalog
        .drop_table(&target.prefix, &target.namespace, &target.table, purge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct UnregisterTableResult<'a> {
    #[serde(rename = "metadata-location")]
    metadata_location: &'a str,
    metadata: &'a serde_json::value::RawValue,
}

async fn unregister_table(State(state): State<AppState>, target: Target) -> Result<Response> {
    let (location, metadata) = state
        .catalog
        .unregister_table(&target.prefix, &target.namespace, &target.table)
        .await?;
    let metadata = serde_json::value::RawValue::from_string(metadata)?;
    to_json(
        &state,
        StatusCode::OK,
        &UnregisterTableResult {
            metadata_location: &location,
            metadata: &metadata,
        },
    )
}

// ---- views -------------------------------------------------------------------

/// A `LoadViewResult` with its ETag.
fn view_result(view: ViewResponse) -> Response {
    let mut response = json_response(StatusCode::OK, view.body);
    if let Ok(value) = HeaderValue::from_str(&etag::view_etag(&view.metadata_location)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

async fn list_views(
    State(state): State<AppState>,
    target: Target,
    caller: Option<Extension<Caller>>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response> {
    let page = params.page(&state)?;
    let listing = listing(caller.as_deref(), &target.prefix, &target.namespace);
    let list = state
        .catalog
        .list_views(&target.prefix, &target.namespace, page, &listing)
        .await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn create_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CreateViewRequest>,
) -> Result<Response> {
    let view = state
        .catalog
        .create_view(&target.prefix, &target.namespace, req)
        .await?;
    Ok(view_result(view))
}

async fn load_view(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
) -> Result<Response> {
    let view = state
        .catalog
        .load_view(&target.prefix, &target.namespace, &target.table)
        .await?;
    let tag = etag::view_etag(&view.metadata_location);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| etag::if_none_match_matches(inm, &tag))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(&tag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    }
    Ok(view_result(view))
}

async fn view_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    state
        .catalog
        .view_exists(&target.prefix, &target.namespace, &target.table)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn replace_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitViewRequest>,
) -> Result<Response> {
    let view = state
        .catalog
        .replace_view(&target.prefix, &target.namespace, &target.table, req)
        .await?;
    Ok(view_result(view))
}

async fn drop_view(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    state
        .catalog
        .drop_view(&target.prefix, &target.namespace, &target.table)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rename_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<RenameTableRequest>,
) -> Result<StatusCode> {
    state.catalog.rename_view(&target.prefix, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn register_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<RegisterViewRequest>,
) -> Result<Response> {
    let view = state
        .catalog
        .register_view(&target.prefix, &target.namespace, req)
        .await?;
    Ok(view_result(view))
}

/// Floe stores no functions: every namespace lists none (paging parameters
/// are still checked), and every function is unknown.
async fn list_functions(
    State(state): State<AppState>,
    target: Target,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response> {
    params.page(&state)?;
    state
        .catalog
        .load_namespace(&target.prefix, &target.namespace)
        .await?;
    to_json(
        &state,
        StatusCode::OK,
        &serde_json::json!({"identifiers": []}),
    )
}

async fn load_function(
    State(state): State<AppState>,
    target: Target,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
) -> Result<Response> {
    state
        .catalog
        .load_namespace(&target.prefix, &target.namespace)
        .await?;
    Err(CatalogError::NoSuchFunction(format!(
        "Function does not exist: {}",
        params.get("function").map_or("", String::as_str)
    )))
}

async fn register_table(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    JsonBody(req): JsonBody<RegisterTableRequest>,
) -> Result<Response> {
    let delegation = delegation(&headers, caller.as_deref(), &target);
    let table = state
        .catalog
        .register_table(&target.prefix, &target.namespace, req, delegation)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

// ---- scan planning -------------------------------------------------------------

fn plan_answer(answer: crate::planning::service::PlanAnswer) -> Response {
    (answer.status, axum::Json(answer.body)).into_response()
}

async fn plan_table_scan(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Response> {
    // An empty body plans the current snapshot, unfiltered.
    let req: crate::planning::PlanRequest = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| CatalogError::BadRequest(format!("Invalid scan request: {e}")))?
    };
    let delegation = delegation(&headers, caller.as_deref(), &target);
    let principal = match caller.as_deref() {
        Some(Caller::Principal(p)) => p.id.as_str(),
        _ => "",
    };
    let answer = state
        .catalog
        .plan_scan(
            &target.prefix,
            &target.namespace,
            &target.table,
            req,
            delegation,
            principal,
        )
        .await?;
    Ok(plan_answer(answer))
}

async fn fetch_planning_result(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
) -> Result<Response> {
    let id = params.get("plan-id").cloned().unwrap_or_default();
    let delegation = delegation(&headers, caller.as_deref(), &target);
    let answer = state
        .catalog
        .fetch_plan(
            &target.prefix,
            &target.namespace,
            &target.table,
            &id,
            delegation,
        )
        .await?;
    Ok(plan_answer(answer))
}

async fn cancel_planning(
    State(state): State<AppState>,
    target: Target,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
) -> Result<StatusCode> {
    let id = params.get("plan-id").cloned().unwrap_or_default();
    state
        .catalog
        .cancel_plan(&target.prefix, &target.namespace, &target.table, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn fetch_scan_tasks(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<crate::planning::FetchTasksRequest>,
) -> Result<Response> {
    let tasks = state
        .catalog
        .fetch_scan_tasks(&target.prefix, &target.namespace, &target.table, req)
        .await?;
    to_json(&state, StatusCode::OK, &tasks)
}

// ---- storage access: credentials and signing ---------------------------------

#[derive(Serialize)]
struct LoadCredentialsResponse {
    #[serde(rename = "storage-credentials")]
    storage_credentials: Vec<crate::delegation::StorageCredential>,
}

async fn load_credentials(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
) -> Result<Response> {
    let access = delegation(&headers, caller.as_deref(), &target).access;
    let credentials = state
        .catalog
        .load_credentials(&target.prefix, &target.namespace, &target.table, access)
        .await?;
    let mut response = to_json(
        &state,
        StatusCode::OK,
        &LoadCredentialsResponse {
            storage_credentials: credentials,
        },
    )?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

async fn sign_request(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    JsonBody(req): JsonBody<crate::delegation::RemoteSignRequest>,
) -> Result<Response> {
    let access = delegation(&headers, caller.as_deref(), &target).access;
    let signed = state
        .catalog
        .sign_request(
            &target.prefix,
            &target.namespace,
            &target.table,
            req,
            access,
        )
        .await?;
    let mut response = to_json(&state, StatusCode::OK, &signed)?;
    // A signature is for one request at one time: not to be reused.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[derive(Deserialize)]
struct ReportMetricsRequest {
    #[serde(rename = "report-type")]
    report_type: String,
}

async fn report_metrics(
    State(state): State<AppState>,
    target: Target,
    JsonBody(report): JsonBody<ReportMetricsRequest>,
) -> Result<StatusCode> {
    state
        .catalog
        .table_exists(&target.prefix, &target.namespace, &target.table)
        .await?;
    tracing::debug!(report_type = %report.report_type, table = %target.table, "metrics report received");
    Ok(StatusCode::NO_CONTENT)
}

async fn commit_transaction(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitTransactionRequest>,
) -> Result<StatusCode> {
    state
        .catalog
        .commit_transaction(&target.prefix, req)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rename_table(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<RenameTableRequest>,
) -> Result<StatusCode> {
    state.catalog.rename_table(&target.prefix, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- management, health, metrics -------------------------------------------

async fn list_warehouses(State(state): State<AppState>) -> Result<Response> {
    let list = management::list_warehouses(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn create_warehouse(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<management::CreateWarehouseRequest>,
) -> Result<Response> {
    let created = management::create_warehouse(state.catalog.store(), req).await?;
    state.catalog.invalidate_warehouse(&created.name);
    to_json(&state, StatusCode::CREATED, &created)
}

async fn delete_warehouse(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<StatusCode> {
    management::delete_warehouse(state.catalog.store(), &name).await?;
    state.catalog.invalidate_warehouse(&name);
    Ok(StatusCode::NO_CONTENT)
}

async fn list_clients(State(state): State<AppState>) -> Result<Response> {
    let list = principals::list_clients(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn create_client(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<principals::CreateClientRequest>,
) -> Result<Response> {
    let created =
        principals::create_client(state.catalog.store(), state.catalog.events(), req).await?;
    to_json(&state, StatusCode::CREATED, &created)
}

async fn get_client(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response> {
    let client = principals::get_client(state.catalog.store(), &id).await?;
    to_json(&state, StatusCode::OK, &client)
}

/// `POST /management/v1/clients/{id}/{disable|enable|rotate|revoke-tokens|grant|revoke-grant}`.
async fn client_action(
    State(state): State<AppState>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let (store, events) = (state.catalog.store(), state.catalog.events());
    let grant_body = || -> Result<floe_shared::auth::Grant> {
        serde_json::from_slice(&body)
            .map_err(|e| CatalogError::BadRequest(format!("Invalid grant: {e}")))
    };
    match action.as_str() {
        "disable" | "enable" => {
            let client = principals::set_disabled(store, events, &id, action == "disable").await?;
            to_json(&state, StatusCode::OK, &client)
        }
        "rotate" => {
            let secret = principals::rotate_secret(store, events, &id).await?;
            to_json(&state, StatusCode::OK, &secret)
        }
        "revoke-tokens" => {
            let client = principals::revoke_tokens(store, events, &id).await?;
            to_json(&state, StatusCode::OK, &client)
        }
        "grant" => {
            let client = principals::grant(store, events, &id, grant_body()?).await?;
            to_json(&state, StatusCode::OK, &client)
        }
        "revoke-grant" => {
            let client = principals::revoke_grant(store, events, &id, grant_body()?).await?;
            to_json(&state, StatusCode::OK, &client)
        }
        other => Err(CatalogError::NotFound(format!(
            "Unknown client action: {other}"
        ))),
    }
}

async fn create_api_key(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Response> {
    let req = if body.is_empty() {
        principals::CreateApiKeyRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| CatalogError::BadRequest(format!("Invalid API key request: {e}")))?
    };
    let key =
        principals::create_api_key(state.catalog.store(), state.catalog.events(), &id, req).await?;
    to_json(&state, StatusCode::CREATED, &key)
}

async fn list_api_keys(State(state): State<AppState>) -> Result<Response> {
    let list = principals::list_api_keys(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

async fn rotate_api_key(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response> {
    let key =
        principals::rotate_api_key(state.catalog.store(), state.catalog.events(), &id).await?;
    to_json(&state, StatusCode::OK, &key)
}

async fn revoke_api_key(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode> {
    principals::revoke_api_key(state.catalog.store(), state.catalog.events(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The change-event stream (NDJSON) that edges subscribe to.
async fn events(State(state): State<AppState>) -> Response {
    let stream = state.catalog.events().subscribe();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.catalog.store().is_down() {
        return CatalogError::Unavailable("Database not reachable".into()).into_response();
    }
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.catalog.store().ping(),
    )
    .await
    {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(err)) => {
            CatalogError::Unavailable(format!("Database not reachable: {err}")).into_response()
        }
        Err(_) => {
            CatalogError::Unavailable("Database did not answer within 2s".into()).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.catalog.store());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
