//! The catalog proper: namespaces, tables (with their storage credentials,
//! request signing and metrics reports), multi-table transactions, and the
//! functions Floe does not store.

use std::collections::HashMap;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use floe_shared::etag::{self, SnapshotsMode};
use floe_shared::wire::{
    CreateNamespaceRequest, RegisterTableRequest, RenameTableRequest,
    UpdateNamespacePropertiesRequest,
};
use serde::{Deserialize, Serialize};

use crate::delegation::{RemoteSignRequest, StorageCredential};
use crate::error::{CatalogError, Result};
use crate::http::auth::Caller;
use crate::http::extract::{
    JsonBody, ListParams, NamespaceListing, QueryParams, TableAccess, Target, listing,
};
use crate::http::respond::{no_content, not_modified, table_result, to_json};
use crate::http::state::AppState;
use crate::wire::{CommitTableRequest, CommitTransactionRequest, CreateTableRequest};

// ---- namespaces ------------------------------------------------------------

pub async fn list_namespaces(
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

pub async fn create_namespace(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CreateNamespaceRequest>,
) -> Result<Response> {
    let created = state.catalog.create_namespace(&target.prefix, req).await?;
    to_json(&state, StatusCode::OK, &created)
}

pub async fn load_namespace(State(state): State<AppState>, target: Target) -> Result<Response> {
    let ns = state
        .catalog
        .load_namespace(&target.prefix, &target.namespace)
        .await?;
    to_json(&state, StatusCode::OK, &ns)
}

pub async fn namespace_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    no_content(
        state
            .catalog
            .load_namespace(&target.prefix, &target.namespace),
    )
    .await
}

pub async fn drop_namespace(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    no_content(
        state
            .catalog
            .drop_namespace(&target.prefix, &target.namespace),
    )
    .await
}

pub async fn update_properties(
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

pub async fn list_tables(
    State(state): State<AppState>,
    list: NamespaceListing,
) -> Result<Response> {
    let NamespaceListing {
        target,
        page,
        listing,
    } = list;
    let list = state
        .catalog
        .list_tables(&target.prefix, &target.namespace, page, &listing)
        .await?;
    to_json(&state, StatusCode::OK, &list)
}

pub async fn create_table(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> Result<Response> {
    let table = state
        .catalog
        .create_table(&target.prefix, &target.namespace, req, delegation)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

#[derive(Deserialize)]
pub(super) struct LoadParams {
    snapshots: Option<String>,
}

pub async fn load_table(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    headers: HeaderMap,
    QueryParams(params): QueryParams<LoadParams>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let mode = match params.snapshots.as_deref() {
        None => SnapshotsMode::All,
        Some(value) => SnapshotsMode::parse(value).ok_or_else(|| {
            CatalogError::BadRequest(format!("snapshots must be 'all' or 'refs', got {value:?}"))
        })?,
    };
    let table = state
        .catalog
        .load_table(warehouse, namespace, name, mode, delegation)
        .await?;
    if let Some(location) = table.metadata_location.as_deref()
        && let Some(response) = not_modified(&headers, || {
            etag::table_etag(location, mode, &table.delegation)
        })
    {
        return Ok(response);
    }
    Ok(table_result(table, mode))
}

pub async fn table_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
    no_content(state.catalog.table_exists(warehouse, namespace, name)).await
}

pub async fn commit_table(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitTableRequest>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let table = state
        .catalog
        .commit_table(warehouse, namespace, name, req)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

#[derive(Deserialize)]
pub(super) struct DropParams {
    #[serde(rename = "purgeRequested")]
    purge_requested: Option<String>,
}

pub async fn drop_table(
    State(state): State<AppState>,
    target: Target,
    QueryParams(params): QueryParams<DropParams>,
) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
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
    no_content(state.catalog.drop_table(warehouse, namespace, name, purge)).await
}

#[derive(Serialize)]
struct UnregisterTableResult<'a> {
    #[serde(rename = "metadata-location")]
    metadata_location: &'a str,
    metadata: &'a serde_json::value::RawValue,
}

pub async fn unregister_table(State(state): State<AppState>, target: Target) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let (location, metadata) = state
        .catalog
        .unregister_table(warehouse, namespace, name)
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

// ---- register, rename, metrics reports, transactions ---------------------------

pub async fn register_table(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    JsonBody(req): JsonBody<RegisterTableRequest>,
) -> Result<Response> {
    let table = state
        .catalog
        .register_table(&target.prefix, &target.namespace, req, delegation)
        .await?;
    Ok(table_result(table, SnapshotsMode::All))
}

pub async fn rename_table(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<RenameTableRequest>,
) -> Result<StatusCode> {
    no_content(state.catalog.rename_table(&target.prefix, req)).await
}

pub async fn report_metrics(
    State(state): State<AppState>,
    target: Target,
    JsonBody(report): JsonBody<ReportMetricsRequest>,
) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
    state
        .catalog
        .table_exists(warehouse, namespace, name)
        .await?;
    tracing::debug!(report_type = %report.report_type, table = %target.table, "metrics report received");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct ReportMetricsRequest {
    #[serde(rename = "report-type")]
    report_type: String,
}

pub async fn commit_transaction(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitTransactionRequest>,
) -> Result<StatusCode> {
    no_content(state.catalog.commit_transaction(&target.prefix, req)).await
}

// ---- storage access: credentials and signing ---------------------------------

#[derive(Serialize)]
struct LoadCredentialsResponse {
    #[serde(rename = "storage-credentials")]
    storage_credentials: Vec<StorageCredential>,
}

pub async fn load_credentials(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let credentials = state
        .catalog
        .load_credentials(warehouse, namespace, name, delegation.access)
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

pub async fn sign_request(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    JsonBody(req): JsonBody<RemoteSignRequest>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let signed = state
        .catalog
        .sign_request(warehouse, namespace, name, req, delegation.access)
        .await?;
    let mut response = to_json(&state, StatusCode::OK, &signed)?;
    // A signature is for one request at one time: not to be reused.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

// ---- functions ---------------------------------------------------------------

/// Floe stores no functions: every namespace lists none (paging parameters
/// are still checked), and every function is unknown.
pub async fn list_functions(
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

pub async fn load_function(
    State(state): State<AppState>,
    target: Target,
    Path(params): Path<HashMap<String, String>>,
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
