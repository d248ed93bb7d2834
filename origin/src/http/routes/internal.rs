//! The API between the tiers (service tokens only): the change-event stream
//! edges subscribe to, and the principal and API-key records they
//! authenticate requests with.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::{CatalogError, Result};
use crate::http::state::AppState;

/// The change-event stream (NDJSON) that edges subscribe to.
pub async fn events(State(state): State<AppState>) -> Response {
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

/// `GET /internal/v1/principals/{id}` and `GET /internal/v1/subjects/{subject}`:
/// a principal (by id, or by the external subject it maps), with its secret
/// hash and the deployment's default warehouse.
pub async fn principal(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response> {
    let store = state.catalog.store();
    let record = match (params.get("id"), params.get("subject")) {
        (Some(id), _) => store.principal(id).await?,
        (None, Some(subject)) => store.principal_by_subject(subject).await?,
        (None, None) => None,
    };
    let mut principal = record
        .ok_or_else(|| CatalogError::NotFound("No such principal".into()))?
        .principal;
    principal.default_warehouse = state.default_warehouse.clone();
    Ok(axum::Json(principal).into_response())
}

/// `GET /internal/v1/api-keys/{id}`: an API key record (edges only).
pub async fn api_key(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let (record, _) = state
        .catalog
        .store()
        .api_key(&id)
        .await?
        .ok_or_else(|| CatalogError::NotFound("No such API key".into()))?;
    Ok(axum::Json(record).into_response())
}
