//! Warehouse, client and API-key management (`/management/v1/…`): the
//! handlers hand over to [`crate::management`] and [`crate::principals`],
//! which the CLI shares.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::error::{CatalogError, Result};
use crate::http::extract::JsonBody;
use crate::http::respond::{no_content, to_json};
use crate::http::state::AppState;
use crate::{management, principals};

pub async fn list_warehouses(State(state): State<AppState>) -> Result<Response> {
    let list = management::list_warehouses(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

pub async fn create_warehouse(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<management::CreateWarehouseRequest>,
) -> Result<Response> {
    let created = management::create_warehouse(state.catalog.store(), req).await?;
    state.catalog.invalidate_warehouse(&created.name);
    to_json(&state, StatusCode::CREATED, &created)
}

pub async fn delete_warehouse(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    management::delete_warehouse(state.catalog.store(), &name).await?;
    state.catalog.invalidate_warehouse(&name);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_clients(State(state): State<AppState>) -> Result<Response> {
    let list = principals::list_clients(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

pub async fn create_client(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<principals::CreateClientRequest>,
) -> Result<Response> {
    let created =
        principals::create_client(state.catalog.store(), state.catalog.events(), req).await?;
    to_json(&state, StatusCode::CREATED, &created)
}

pub async fn get_client(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let client = principals::get_client(state.catalog.store(), &id).await?;
    to_json(&state, StatusCode::OK, &client)
}

/// `POST /management/v1/clients/{id}/{disable|enable|rotate|revoke-tokens|grant|revoke-grant}`.
pub async fn client_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
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

pub async fn create_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
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

pub async fn list_api_keys(State(state): State<AppState>) -> Result<Response> {
    let list = principals::list_api_keys(state.catalog.store()).await?;
    to_json(&state, StatusCode::OK, &list)
}

pub async fn rotate_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let key =
        principals::rotate_api_key(state.catalog.store(), state.catalog.events(), &id).await?;
    to_json(&state, StatusCode::OK, &key)
}

pub async fn revoke_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    no_content(principals::revoke_api_key(
        state.catalog.store(),
        state.catalog.events(),
        &id,
    ))
    .await
}
