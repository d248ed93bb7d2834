//! What a client or operator asks of the origin itself: the catalog's
//! configuration (`GET /v1/config`), liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use floe_shared::cluster::{ClusterStatus, OriginStatus};
use serde::Deserialize;

use crate::error::{CatalogError, Result};
use crate::http::extract::QueryParams;
use crate::http::idempotency;
use crate::http::respond::to_json;
use crate::http::state::AppState;

#[derive(Deserialize)]
pub(super) struct ConfigParams {
    warehouse: Option<String>,
}

pub async fn get_config(
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
    config.idempotency_key_lifetime =
        Some(idempotency::lifetime(state.idempotency_lifetime.as_secs()));
    to_json(&state, StatusCode::OK, &config)
}

pub async fn health() -> &'static str {
    "ok"
}

pub async fn ready(State(state): State<AppState>) -> Response {
    if state.catalog.store().is_down() {
        return CatalogError::unavailable("Database not reachable".into()).into_response();
    }
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.catalog.store().ping(),
    )
    .await
    {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(err)) => {
            CatalogError::unavailable(format!("Database not reachable: {err}")).into_response()
        }
        Err(_) => {
            CatalogError::unavailable("Database did not answer within 2s".into()).into_response()
        }
    }
}

/// `GET /management/v1/cluster` asked of the origin itself: its own report
/// (an edge asks it of every origin it balances over).
pub async fn cluster(State(state): State<AppState>) -> Result<Response> {
    let database = if state.catalog.store().is_down() {
        "down"
    } else {
        "up"
    };
    let status = ClusterStatus {
        edges: Vec::new(),
        origins: vec![OriginStatus {
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            uptime_seconds: Some(state.started.elapsed().as_secs()),
            database: Some(database.to_string()),
            ..OriginStatus::default()
        }],
    };
    to_json(&state, StatusCode::OK, &status)
}

pub async fn metrics(State(state): State<AppState>) -> Response {
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
