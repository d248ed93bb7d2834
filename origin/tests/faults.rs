//! Faults at the origin.
//!
//! Losing PostgreSQL: while it is unreachable, requests that need it get 503
//! at once (not after the pool's acquire timeout), `/ready` says so, and
//! everything recovers by itself when it answers again, with no request
//! failing on a connection to the server that went away. The database sits
//! behind a TCP proxy of the test's own that can cut it off (every
//! connection closed, new ones refused) and heal.
//!
//! An origin that dies with a keyed request in flight: the retry, on any
//! origin, answers from what the first one committed, or runs it, never
//! twice.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use support::{Backend, TestApp, TestDb};

/// A TCP proxy to one address that can be cut and healed.
struct Cut {
    open: Arc<AtomicBool>,
    links: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    port: u16,
}

impl Cut {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let open = Arc::new(AtomicBool::new(true));
        let links = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (accepting, tasks) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                tasks.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Cut { open, links, port }
    }

    /// Closes every connection and refuses new ones.
    async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.links.lock().await.abort_all();
    }

    fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_the_database_is_gone_and_recover_by_themselves() {
    let db = TestDb::new(support::Backend::Postgres).await;
    let mut url = url::Url::parse(&db.url).expect("url");
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = Cut::start(target).await;
    url.set_port(Some(proxy.port)).expect("port");
    let proxied = url.to_string();
    let app = TestApp::with_db(db, move |c| {
        c.database.url = proxied;
        c.database.acquire_timeout_ms = 5000;
    })
    .await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let commit = |v: &str| json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": v}}]});
    let url = "/v1/default/namespaces/db/tables/t";
    assert_eq!(app.post(url, commit("before")).await.status, StatusCode::OK);

    proxy.cut().await;
    // The probe notices within a second or so; from then on, requests that
    // need the database are 503 at once, health still answers.
    wait_until("the outage noticed", Duration::from_secs(5), async || {
        app.get("/ready").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        let r = app.post(url, commit("during")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
        assert_eq!(r.error_type(), "ServiceUnavailableException");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answered in {:?}, not after the acquire timeout",
            started.elapsed()
        );
    }
    assert_eq!(app.get("/health").await.status, StatusCode::OK);

    proxy.heal();
    wait_until("recovered", Duration::from_secs(5), async || {
        app.get("/ready").await.status == StatusCode::OK
    })
    .await;
    // No request fails on a pooled connection to the server that went away.
    for i in 0..20 {
        let r = app.post(url, commit(&format!("after-{i}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = app.get(url).await;
    assert_eq!(r.body["metadata"]["properties"]["k"], "after-19");
}

both_backends!(
    a_keyed_commit_whose_origin_died_after_committing_is_answered_not_rerun,
    a_keyed_commit_whose_origin_died_before_committing_runs_once,
);

/// Makes the claim of `key` look like it belongs to an origin that died:
/// never finished, its owner unknown to the heartbeat table; `applied` is
/// what its effect left (None: it never took effect).
async fn orphan(app: &TestApp, key: &str, applied: Option<&str>) {
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("database");
    sqlx::query(
        "UPDATE idempotency_keys SET done = 0, status = 0, body = '', owner = 'gone', \
         applied = $1 WHERE key = $2",
    )
    .bind(applied)
    .bind(key)
    .execute(&pool)
    .await
    .expect("orphan");
    pool.close().await;
}

async fn keyed(app: &TestApp, key: &str, body: serde_json::Value) -> support::Reply {
    let request = axum::http::Request::post("/v1/default/namespaces/db/tables/t")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

fn add_snapshot(location: &str) -> serde_json::Value {
    json!({"requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": null}],
           "updates": support::append_updates(location, 7, None, 1)})
}

async fn a_keyed_commit_whose_origin_died_after_committing_is_answered_not_rerun(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let location = app.table_location("db", "t").await;
    let key = uuid::Uuid::new_v4().to_string();
    // The commit runs and takes effect...
    let body = add_snapshot(&location);
    let first = keyed(&app, &key, body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let committed = first.body["metadata-location"]
        .as_str()
        .unwrap()
        .to_string();
    // ...but its origin died before it could record the answer.
    orphan(&app, &key, Some(&committed)).await;
    // The retry must not run it again (its requirement would now fail: a
    // 409 for a commit that was applied); it answers what was committed.
    let retry = keyed(&app, &key, body.clone()).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.body["metadata-location"], committed.as_str());
    assert_eq!(retry.body["metadata"]["current-snapshot-id"], 7);
    let loaded = app.get("/v1/default/namespaces/db/tables/t").await;
    assert_eq!(
        loaded.body["metadata-location"],
        committed.as_str(),
        "applied once"
    );
    // And that answer is now the key's, for every later retry.
    let again = keyed(&app, &key, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["idempotent-replayed"], "true");
}

async fn a_keyed_commit_whose_origin_died_before_committing_runs_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let location = app.table_location("db", "t").await;
    let key = uuid::Uuid::new_v4().to_string();
    // A claim with nothing applied: its origin died before the commit.
    let probe = keyed(&app, &key, json!({"requirements": [], "updates": []})).await;
    assert_eq!(probe.status, StatusCode::OK, "{:?}", probe.body);
    orphan(&app, &key, None).await;
    // The same key, same request: taken over and run, once.
    let r = keyed(&app, &key, json!({"requirements": [], "updates": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.headers.get("idempotent-replayed").is_none(), "it ran");
    // A claim taken over is the new owner's: a commit under another key,
    // orphaned before it applied, runs and applies once.
    let other = uuid::Uuid::new_v4().to_string();
    let body = add_snapshot(&location);
    let claimed = keyed(&app, &other, body.clone()).await;
    assert_eq!(claimed.status, StatusCode::OK);
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("database");
    sqlx::query("UPDATE idempotency_keys SET applied = NULL WHERE key = $1")
        .bind(&other)
        .execute(&pool)
        .await
        .expect("update");
    pool.close().await;
    orphan(&app, &other, None).await;
    let rerun = keyed(&app, &other, body).await;
    // Re-run: its requirement no longer holds (it did apply, which the
    // record was made to hide): the 409 shows the run happened, and the
    // table holds the snapshot once.
    assert_eq!(rerun.status, StatusCode::CONFLICT, "{:?}", rerun.body);
    let loaded = app.get("/v1/default/namespaces/db/tables/t").await;
    assert_eq!(
        loaded.body["metadata"]["snapshots"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
