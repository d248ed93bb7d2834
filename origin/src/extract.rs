//! Extractors whose rejections are the catalog's own `ErrorModel`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::catalog::parse_namespace;
use crate::error::CatalogError;
use crate::routes::AppState;

/// A JSON body parsed with serde; any content type is accepted, any parse
/// failure (syntax, unknown update or requirement type, missing field) is a
/// 400 naming the problem, and a body over the limit is a 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = CatalogError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    CatalogError::PayloadTooLarge(format!("Request body is too large: {e}"))
                } else {
                    CatalogError::BadRequest(format!("Cannot read request body: {e}"))
                }
            })?;
        if bytes.is_empty() {
            return Err(CatalogError::BadRequest("Request body is empty".into()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| CatalogError::BadRequest(format!("Malformed request body: {e}")))
    }
}

/// Query parameters, 400 on anything that does not parse.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = CatalogError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| CatalogError::BadRequest(format!("Invalid query parameters: {e}")))
    }
}

/// What the path names: the warehouse (prefix, or the default one when the
/// route has none), the namespace and the table when the route has them.
pub struct Target {
    /// Warehouse name.
    pub prefix: String,
    /// Namespace levels (empty when the route has no namespace).
    pub namespace: Vec<String>,
    /// Table (or view) name (empty when the route has none).
    pub table: String,
}

impl FromRequestParts<AppState> for Target {
    type Rejection = CatalogError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| CatalogError::BadRequest(format!("Invalid path: {e}")))?;
        let prefix = params
            .remove("prefix")
            .unwrap_or_else(|| state.default_warehouse.clone());
        let namespace = match params.remove("namespace") {
            Some(raw) => parse_namespace(&raw)?,
            None => Vec::new(),
        };
        let table = params
            .remove("table")
            .or_else(|| params.remove("view"))
            .unwrap_or_default();
        Ok(Target {
            prefix,
            namespace,
            table,
        })
    }
}
