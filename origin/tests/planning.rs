//! Scan planning through the router, on both backends: the plan lifecycle
//! (synchronous, asynchronous, failed, cancelled), and requests refused with
//! 400/404. Planning a PyIceberg-written table against PyIceberg's own
//! planning is tests/python/test_scan_planning.py.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use support::{Backend, Reply, TestApp, append_updates};

both_backends!(
    an_empty_table_plans_to_nothing,
    bad_scan_requests_are_refused,
    asynchronous_plans_complete_fail_and_cancel,
);

const PLAN: &str = "/v1/default/namespaces/db/tables/t/plan";

async fn poll(app: &TestApp, id: &str, until: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get(&format!("{PLAN}/{id}")).await;
        if until(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "plan {id} stuck at {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_empty_table_plans_to_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let r = app.post(PLAN, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["file-scan-tasks"], json!([]));
    assert_eq!(r.body["plan-tasks"], json!([]));
    let id = r.body["plan-id"].as_str().unwrap().to_string();
    let fetched = app.get(&format!("{PLAN}/{id}")).await;
    assert_eq!(fetched.body["status"], "completed");
    assert_eq!(fetched.body["plan-id"], id.as_str());
    // A filter on a table without snapshots is still checked, then plans to nothing.
    let r = app
        .post(
            PLAN,
            json!({"filter": {"type": "eq", "term": "id", "value": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // An empty body plans the current snapshot.
    let r = app.raw(Method::POST, PLAN, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The plan belongs to its table.
    app.create_table("db", "other").await;
    let r = app
        .get(&format!("/v1/default/namespaces/db/tables/other/plan/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchPlanIdException");
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/other/tasks",
            json!({"plan-task": format!("{id}.0")}),
        )
        .await;
    assert_eq!(r.error_type(), "NoSuchPlanTaskException");
}

async fn bad_scan_requests_are_refused(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let location = app.table_location("db", "t").await;
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/t",
            json!({"requirements": [], "updates": append_updates(&location, 1, None, 1)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for body in [
        json!({"snapshot-id": 1, "start-snapshot-id": 1, "end-snapshot-id": 1}),
        json!({"start-snapshot-id": 1}),
        json!({"snapshot-id": 99}),
        json!({"start-snapshot-id": 99, "end-snapshot-id": 1}),
        json!({"end-snapshot-id": 99}),
        json!({"select": ["nope"]}),
        json!({"stats-fields": ["nope"]}),
        json!({"filter": {"type": "eq", "term": "nope", "value": 1}}),
        json!({"filter": {"type": "eq", "term": "id", "value": "one"}}),
        json!({"filter": {"type": "frobnicate"}}),
        json!({"filter": 7}),
        json!({"snapshot-id": "one"}),
    ] {
        let r = app.post(PLAN, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body} -> {:?}", r.body);
        assert_eq!(r.error_type(), "BadRequestException");
    }
    let r = app.raw(Method::POST, PLAN, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post("/v1/default/namespaces/db/tables/nope/plan", json!({}))
        .await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app
        .post("/v1/default/namespaces/db/tables/t/tasks", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for task in ["x", "x.y", "nope.0"] {
        let r = app
            .post(
                "/v1/default/namespaces/db/tables/t/tasks",
                json!({"plan-task": task}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{task}");
        assert_eq!(r.error_type(), "NoSuchPlanTaskException");
    }
    let r = app
        .call(Method::DELETE, &format!("{PLAN}/nope"), None)
        .await;
    assert_eq!(r.error_type(), "NoSuchPlanIdException");
}

async fn asynchronous_plans_complete_fail_and_cancel(backend: Backend) {
    let app = TestApp::with(backend, |c| c.catalog.plan_sync_budget_ms = 0).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    // Nothing to read: completes in the background.
    let r = app.post(PLAN, json!({})).await;
    assert_eq!(r.body["status"], "submitted", "{:?}", r.body);
    assert!(
        r.body.get("file-scan-tasks").is_none(),
        "no tasks with submitted"
    );
    let id = r.body["plan-id"].as_str().unwrap().to_string();
    let done = poll(&app, &id, |r| r.body["status"] != "submitted").await;
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["file-scan-tasks"], json!([]));

    // A snapshot whose manifest list is missing: planning fails, and says so.
    let location = app.table_location("db", "t").await;
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/t",
            json!({"requirements": [], "updates": append_updates(&location, 1, None, 1)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.post(PLAN, json!({})).await;
    assert_eq!(r.body["status"], "submitted");
    let id = r.body["plan-id"].as_str().unwrap().to_string();
    let failed = poll(&app, &id, |r| r.body["status"] != "submitted").await;
    assert_eq!(failed.body["status"], "failed", "{:?}", failed.body);
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.body["error"]["type"], "ServiceUnavailableException");
    assert_eq!(failed.body["error"]["code"], 503);

    // Cancelled: the plan says so, and is gone for its tasks.
    let r = app.post(PLAN, json!({})).await;
    let id = r.body["plan-id"].as_str().unwrap().to_string();
    let r = app
        .call(Method::DELETE, &format!("{PLAN}/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = poll(&app, &id, |_| true).await;
    assert_eq!(r.body, json!({"status": "cancelled"}));
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/t/tasks",
            json!({"plan-task": format!("{id}.0")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // With a budget, the same failure is answered at once.
    let sync = TestApp::with(backend, |c| c.catalog.plan_sync_budget_ms = 30_000).await;
    sync.create_namespace(&["db"]).await;
    sync.create_table("db", "t").await;
    let location = sync.table_location("db", "t").await;
    sync.post(
        "/v1/default/namespaces/db/tables/t",
        json!({"requirements": [], "updates": append_updates(&location, 1, None, 1)}),
    )
    .await;
    let r: Reply = sync.post(PLAN, json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.error_type(), "ServiceUnavailableException");
}
