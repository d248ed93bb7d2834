//! Shaping answers: JSON bodies with their content type, and table and view
//! results with their ETags and cache headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floe_shared::etag::{self, SnapshotsMode};
use serde::Serialize;

use super::state::AppState;
use crate::catalog::TableResponse;
use crate::catalog::views::ViewResponse;
use crate::error::Result;

/// A JSON body with its content type.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
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

/// `value` serialized through the pooled bodies, as a JSON answer.
pub(crate) fn to_json<T: Serialize>(
    state: &AppState,
    status: StatusCode,
    value: &T,
) -> Result<Response> {
    Ok(json_response(status, state.bodies.to_bytes(value)?))
}

/// A table result with its ETag (when it has a metadata location); one that
/// carries credentials is marked for no shared cache to keep.
pub(crate) fn table_result(table: TableResponse, mode: SnapshotsMode) -> Response {
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

/// A `LoadViewResult` with its ETag.
pub(crate) fn view_result(view: ViewResponse) -> Response {
    let mut response = json_response(StatusCode::OK, view.body);
    if let Ok(value) = HeaderValue::from_str(&etag::view_etag(&view.metadata_location)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// 304 with the ETag when the request's `If-None-Match` names the entity's
/// current `tag` (made only when the request has that header).
pub(crate) fn not_modified(headers: &HeaderMap, tag: impl FnOnce() -> String) -> Option<Response> {
    let inm = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let tag = tag();
    if !etag::if_none_match_matches(inm, &tag) {
        return None;
    }
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Some(response)
}

/// 204 once `work` (a catalog call whose answer has no body) succeeds.
pub(crate) async fn no_content<T>(work: impl Future<Output = Result<T>>) -> Result<StatusCode> {
    work.await?;
    Ok(StatusCode::NO_CONTENT)
}
