//! The layers around every handler besides authentication and
//! idempotency: the whole body read first, each request counted and timed,
//! and a 503 at once while the catalog database is down.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::error::CatalogError;

/// While the catalog database is unreachable, requests that need it get 503
/// at once (not after a pool's acquire timeout). Health, metrics and the
/// change-event stream keep answering, so edges stay subscribed and keep
/// serving the loads they hold, and the cluster report says the database is
/// down rather than failing.
pub(super) async fn database_gate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let exempt = floe_shared::route::match_path(path).is_some_and(|m| {
        use floe_shared::route::Resource;
        matches!(
            m.resource,
            Resource::Health | Resource::Metrics | Resource::Events | Resource::Cluster
        )
    });
    if !exempt && state.catalog.store().is_down() {
        return CatalogError::unavailable(
            "The catalog database is unreachable; nothing was changed. Retry later".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts and times every request by its route pattern.
pub(super) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
