//! Server-side scan planning: plan a table scan, fetch or cancel a plan,
//! fetch the tasks of a plan task.

use std::collections::HashMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::{CatalogError, Result};
use crate::http::auth::Caller;
use crate::http::extract::{JsonBody, TableAccess, Target};
use crate::http::respond::{no_content, to_json};
use crate::http::state::AppState;

fn plan_answer(answer: crate::planning::service::PlanAnswer) -> Response {
    (answer.status, axum::Json(answer.body)).into_response()
}

pub async fn plan_table_scan(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    // An empty body plans the current snapshot, unfiltered.
    let req: crate::planning::PlanRequest = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| CatalogError::BadRequest(format!("Invalid scan request: {e}")))?
    };
    let principal = match caller.as_deref() {
        Some(Caller::Principal(p)) => p.id.as_str(),
        _ => "",
    };
    let answer = state
        .catalog
        .plan_scan(warehouse, namespace, name, req, delegation, principal)
        .await?;
    Ok(plan_answer(answer))
}

pub async fn fetch_planning_result(
    State(state): State<AppState>,
    TableAccess { target, delegation }: TableAccess,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let id = params.get("plan-id").cloned().unwrap_or_default();
    let answer = state
        .catalog
        .fetch_plan(warehouse, namespace, name, &id, delegation)
        .await?;
    Ok(plan_answer(answer))
}

pub async fn cancel_planning(
    State(state): State<AppState>,
    target: Target,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode> {
    let (warehouse, namespace, name) = target.names();
    let id = params.get("plan-id").cloned().unwrap_or_default();
    no_content(state.catalog.cancel_plan(warehouse, namespace, name, &id)).await
}

pub async fn fetch_scan_tasks(
    State(state): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<crate::planning::FetchTasksRequest>,
) -> Result<Response> {
    let (warehouse, namespace, name) = target.names();
    let tasks = state
        .catalog
        .fetch_scan_tasks(warehouse, namespace, name, req)
        .await?;
    to_json(&state, StatusCode::OK, &tasks)
}
