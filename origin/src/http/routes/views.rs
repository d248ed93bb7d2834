//! Views: list, create, load (with ETag and `If-None-Match`), check, replace,
//! drop, rename and register.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use floe_shared::etag;
use floe_shared::wire::RenameTableRequest;

use crate::error::Result;
use crate::http::extract::{JsonBody, NamespaceListing, Target};
use crate::http::respond::{no_content, not_modified, to_json, view_result};
use crate::http::state::AppState;
use crate::wire::{CommitViewRequest, CreateViewRequest, RegisterViewRequest};

pub async fn list_views(State(state): State<AppState>, list: NamespaceListing) -> Result<Response> {
    let NamespaceListing {
        target,
        page,
        listing,
    } = list;
    let list = state
        .catalog
        .list_views(&target.prefix, &target.namespace, page, &listing)
        .await?;
    to_json(&state, StatusCode::OK, &list)
}

pub async fn create_view(
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

pub async fn load_view(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let view = state.catalog.load_view(warehouse, namespace, name).await?;
    Ok(
        not_modified(&headers, || etag::view_etag(&view.metadata_location))
            .unwrap_or_else(|| view_result(view)),
    )
}

pub async fn view_exists(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
    no_content(state.catalog.view_exists(warehouse, namespace, name)).await
}

pub async fn replace_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<CommitViewRequest>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let view = state
        .catalog
        .replace_view(warehouse, namespace, name, req)
        .await?;
    Ok(view_result(view))
}

pub async fn drop_view(State(state): State<AppState>, target: Target) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
    no_content(state.catalog.drop_view(warehouse, namespace, name)).await
}

pub async fn rename_view(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<RenameTableRequest>,
) -> Result<StatusCode> {
    no_content(state.catalog.rename_view(&target.prefix, req)).await
}

pub async fn register_view(
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
