//! `Idempotency-Key` on mutations: a request claims its key in the catalog
//! database before it runs and stores its final outcome (2xx and 4xx) after;
//! a retry with the same key gets that outcome replayed without running
//! again. A duplicate that arrives while the first is still running waits
//! for it (and conflicts if it takes too long); 5xx outcomes are not kept, so
//! the retry runs. The claimed request runs to completion even if its client
//! goes away, so a dropped response never leaves a half-done operation.
//!
//! A claim belongs to the origin process that made it. When that process
//! dies (or gives up with a 5xx), the next request with the key takes over:
//! if the first one's effect was committed, the record says so (written in
//! the same database transaction as the effect, see `store::IDEMPOTENCY_KEY`)
//! and the answer is built from it; otherwise the request runs. So a keyed
//! write cut off mid-flight is applied once and answered, whichever origin
//! the retry reaches.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floe_shared::etag::SnapshotsMode;
use floe_shared::route::Operation;
use sha2::Digest;

use super::auth::Caller;
use super::extract::{Target, delegation};
use super::respond::{table_result, to_json, view_result};
use super::state::AppState;
use crate::error::CatalogError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a duplicate waits for the first request before it conflicts.
const WAIT: Duration = Duration::from_secs(30);
/// A claim not finished after this long belongs to a process that died.
const ABANDONED_MS: i64 = 120_000;

/// The advertised reuse window, as an ISO-8601 duration (`PT1800S`).
pub fn lifetime(seconds: u64) -> String {
    format!("PT{seconds}S")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Whether the route grammar says a key makes this request run at most once.
fn applies(method: &Method, path: &str) -> bool {
    floe_shared::route::parse(method.as_str(), path).is_some_and(|r| r.keyed())
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body.clone()).into_response();
    if !body.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let headers = response.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    // What was stored may carry vended credentials: no cache keeps a replay.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// Middleware: runs a keyed mutation at most once.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    if !applies(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    match run_once(state, key, request, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run_once(
    state: AppState,
    key: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, CatalogError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| k.len() == 36 && uuid::Uuid::parse_str(k).is_ok())
        .ok_or_else(|| {
            CatalogError::BadRequest("Idempotency-Key must be a UUID (36 characters)".into())
        })?
        .to_ascii_lowercase();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| {
            CatalogError::PayloadTooLarge(format!(
                "Request body is over the limit of {} bytes",
                state.body_limit
            ))
        })?;
    let mut digest = sha2::Sha256::new();
    digest.update(parts.method.as_str());
    digest.update(b" ");
    digest.update(parts.uri.to_string());
    digest.update(b"\n");
    digest.update(&body);
    // The key is the caller's: another principal's request with the same
    // key is a different request, and never gets this one's answer.
    if let Some(Caller::Principal(principal)) = parts.extensions.get::<Caller>() {
        digest.update(b"\n");
        digest.update(principal.id.as_bytes());
    }
    let fingerprint = floe_shared::auth::hex(&digest.finalize());
    // From the claim on, the work is detached: a client that goes away does
    // not cancel it. Cancelled between the claim and the run, a request
    // would leave its key claimed by nobody, and its retry would wait for a
    // run that never comes.
    tokio::spawn(claim_and_run(state, key, fingerprint, parts, body, next))
        .await
        .map_err(|e| CatalogError::internal_with(format!("request task failed: {e}"), e))?
}

/// Claims `key` (or replays, waits for or takes over an earlier claim), runs
/// the request once and records its outcome.
async fn claim_and_run(
    state: AppState,
    key: String,
    fingerprint: String,
    parts: Parts,
    body: Bytes,
    next: Next,
) -> Result<Response, CatalogError> {
    let store = state.catalog.store().clone();
    let lifetime_ms = i64::try_from(state.idempotency_lifetime.as_millis()).unwrap_or(i64::MAX);
    let started = Instant::now();
    loop {
        if store
            .claim_idempotency_key(&key, &fingerprint, now_ms() - lifetime_ms)
            .await?
        {
            break;
        }
        let Some(record) = store.idempotency_record(&key).await? else {
            continue; // released meanwhile: claim again
        };
        if record.fingerprint != fingerprint {
            return Err(CatalogError::Unprocessable(
                "This Idempotency-Key was used for a different request".into(),
            ));
        }
        if record.done {
            return Ok(replay(record.status, record.body));
        }
        if record.abandoned || now_ms() - record.updated_at > ABANDONED_MS {
            if let Some(applied) = &record.applied {
                // The first run took effect, then its process went away:
                // answer as it would have, and keep that answer.
                let mut parts = parts;
                let response = applied_answer(&state, &mut parts, &body, applied).await?;
                let (head, bytes) = response.into_parts();
                let bytes = axum::body::to_bytes(bytes, usize::MAX)
                    .await
                    .unwrap_or_default();
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    store
                        .finish_idempotency_key(&key, head.status.as_u16(), text)
                        .await?;
                }
                return Ok(Response::from_parts(head, Body::from(bytes)));
            }
            if store
                .take_over_idempotency_key(&key, record.updated_at)
                .await?
            {
                break;
            }
            continue;
        }
        if started.elapsed() > WAIT {
            return Err(CatalogError::CommitFailed(
                "A request with this Idempotency-Key is still running; retry later".into(),
            ));
        }
        // The first request is running: wait for its outcome.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = Request::from_parts(parts, Body::from(body));
    let response = crate::store::IDEMPOTENCY_KEY
        .scope(key.clone(), next.run(request))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let text = std::str::from_utf8(&bytes).ok();
    let outcome = match text {
        Some(text) if !parts.status.is_server_error() => {
            store
                .finish_idempotency_key(&key, parts.status.as_u16(), text)
                .await
        }
        _ => store.release_idempotency_key(&key).await,
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "could not record an idempotent outcome");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The answer to a keyed request whose effect was committed (`applied`: the
/// metadata location it produced, or '') by an origin that went away before
/// answering: what that origin would have answered.
async fn applied_answer(
    state: &AppState,
    parts: &mut Parts,
    body: &Bytes,
    applied: &str,
) -> Result<Response, CatalogError> {
    use Operation as Op;
    let path = parts.uri.path().to_string();
    let operation = floe_shared::route::parse(parts.method.as_str(), &path)
        .map(|route| route.operation())
        .ok_or_else(|| CatalogError::NotFound(format!("No route for {path}")))?;
    let target = Target::of_path(&path, &state.default_warehouse)?;
    let named = || -> Result<String, CatalogError> {
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
