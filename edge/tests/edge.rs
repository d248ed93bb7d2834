//! Cross-tier tests: real edges (Pingora, on real sockets) in front of real
//! origins (axum, on real sockets) on SQLite or PostgreSQL.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_shared::cluster::ClusterStatus;
use floe_shared::testkit::PgDb;
use serde_json::Value;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_304_and_local_invalidation() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "db", "t").await;
    let url = format!("{}/v1/namespaces/db/tables/t", edge.url);

    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.headers()["x-floe-cache"], "miss");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let content_type = first.headers()["content-type"].clone();
    let first_body: Value = first.json().await.unwrap();
    let second = http.get(&url).send().await.unwrap();
    assert_eq!(second.headers()["x-floe-cache"], "hit");
    assert_eq!(second.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(second.headers()["content-type"], content_type);
    assert_eq!(second.json::<Value>().await.unwrap(), first_body);
    assert_eq!(
        origin.load_count(&http).await,
        1,
        "the hit never reached the origin"
    );

    let r = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["x-floe-cache"], "hit");
    assert_eq!(origin.load_count(&http).await, 1);

    // Another variant (snapshots=refs) is cached separately.
    let r = http
        .get(format!("{url}?snapshots=refs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-floe-cache"], "miss");

    // A commit through the edge invalidates before its response arrives.
    let r = http
        .post(&url)
        .json(&set_property("k", "v"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let committed: Value = r.json().await.unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        r.headers()["x-floe-cache"],
        "miss",
        "invalidated by the write"
    );
    let loaded: Value = r.json().await.unwrap();
    assert_eq!(loaded["metadata-location"], committed["metadata-location"]);
    assert_eq!(loaded["metadata"]["properties"]["k"], "v");
    let r = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the old tag no longer matches");
    // The same table reached with its prefix is invalidated too.
    let prefixed = format!("{}/v1/default/namespaces/db/tables/t", edge.url);
    http.get(&prefixed).send().await.unwrap();
    let r = http
        .post(format!("{}/v1/default/namespaces/db/tables/t", edge.url))
        .json(&set_property("k", "w"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["metadata"]["properties"]["k"],
        "w"
    );

    // Everything else passes through, with the origin's errors.
    let r = http
        .get(format!("{}/v1/namespaces/db/tables/missing", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "NoSuchTableException"
    );
    let r = http
        .get(format!("{}/v1/config", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["overrides"]["prefix"],
        "default"
    );
    // (Later hits depend on when the origin's event for our own commits
    // arrives and invalidates again; only this minimum is certain.)
    assert!(
        edge.metric(&http, "floe_edge_cache_requests_total{result=\"hit\"}")
            .await
            >= 1.0
    );
    // The token byte pool is there (issuance arrives with authentication).
    let text = http
        .get(&edge.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("floe_pool_buffers_in_use{pool=\"token\"} 0"),
        "{text}"
    );
    assert!(
        edge.metric(&http, "floe_edge_invalidations_total{source=\"local\"}")
            .await
            >= 2.0
    );
    drop(edge);
    origin.stop().await;
}

/// Bodies below, at and far above the connection's write buffer (16 KiB by
/// default) come out of the cache byte for byte as the origin sent them,
/// with the same head, over one keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_bodies_of_every_size_match_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "db", "t").await;
    let buffer = floe_edge::config::EdgeConfig::default()
        .server
        .write_buffer_bytes;
    let mut sizes = Vec::new();
    let events = "floe_edge_invalidations_total{source=\"event\"}";
    for padding in [0, buffer / 2, buffer - 1500, buffer, 4 * buffer, 300_000] {
        let url = format!("{}/v1/namespaces/db/tables/t", edge.url);
        let heard = edge.metric(&http, events).await;
        let r = http
            .post(&url)
            .json(&set_property("pad", &"x".repeat(padding)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The commit's change event comes back too: once it is in, nothing
        // invalidates the entry the next load fills.
        wait_for("the commit's event", Duration::from_secs(10), async || {
            edge.metric(&http, events).await > heard
        })
        .await;
        let direct = http
            .get(format!("http://{}/v1/namespaces/db/tables/t", origin.addr))
            .send()
            .await
            .unwrap();
        let etag = direct.headers()["etag"].clone();
        let want = direct.bytes().await.unwrap();
        for expected in ["miss", "hit", "hit"] {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-floe-cache"], expected, "padding {padding}");
            assert_eq!(r.headers()["etag"], etag);
            assert_eq!(
                r.headers()["content-length"].to_str().unwrap(),
                want.len().to_string()
            );
            assert!(
                r.bytes().await.unwrap() == want,
                "padding {padding}: body differs"
            );
        }
        sizes.push(want.len());
    }
    assert!(sizes.iter().any(|&n| n < buffer) && sizes.iter().any(|&n| n > 4 * buffer));
    drop(edge);
    origin.stop().await;
}

/// An upstream that counts table loads as they arrive and answers them
/// slowly, so that concurrent misses really overlap.
async fn slow_upstream(delay: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    stub_upstream(delay, "public").await
}

/// An upstream answering table loads after `delay` with `cache_control`.
async fn stub_upstream(
    delay: Duration,
    cache_control: &'static str,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::get;
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new()
        .route("/ready", get(|| async { "ready" }))
        .route(
            "/v1/namespaces/{ns}/tables/{t}",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    (
                        [
                            ("etag", "\"stub-1\""),
                            ("content-type", "application/json"),
                            ("cache-control", cache_control),
                        ],
                        r#"{"metadata-location":"m","metadata":{}}"#,
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, count)
}

/// A load answered for one principal (vended credentials: `private`,
/// `no-store`) is never kept for the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_answers_are_not_cached() {
    for directive in ["private, no-store", "no-store", "Private"] {
        let (upstream, count) = stub_upstream(Duration::ZERO, directive).await;
        let edge = Edge::start(&[&upstream], |c| c.events.enabled = false).await;
        let http = reqwest::Client::new();
        let url = format!("{}/v1/namespaces/p/tables/t", edge.url);
        for _ in 0..3 {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-floe-cache"], "miss", "{directive}");
        }
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{directive}"
        );
    }
    // The same answer without the directive is cached.
    let (upstream, count) = stub_upstream(Duration::ZERO, "public").await;
    let edge = Edge::start(&[&upstream], |c| c.events.enabled = false).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/namespaces/p/tables/t", edge.url);
    for _ in 0..3 {
        http.get(&url).send().await.unwrap();
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let (upstream, count) = slow_upstream(Duration::from_millis(300)).await;
    let edge = Edge::start(&[&upstream], |c| c.events.enabled = false).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/namespaces/co/tables/t", edge.url);
    let loads: Vec<_> = (0..32)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let r = http.get(&url).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    for load in loads {
        let (status, body) = load.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("metadata-location"));
    }
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "32 parallel first loads, one origin request"
    );
    assert!(
        edge.metric(
            &http,
            "floe_edge_cache_requests_total{result=\"coalesced\"}"
        )
        .await
            >= 1.0
    );
}

/// HTTP/2 with prior knowledge (h2c) is served beside HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_on_one_port() {
    let (upstream, _) = slow_upstream(Duration::ZERO).await;
    let edge = Edge::start(&[&upstream], |c| c.events.enabled = false).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/v1/namespaces/h/tables/t", edge.url);
    for expected in ["miss", "hit"] {
        let r = h2.get(&url).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-floe-cache"], expected);
    }
    let r = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.headers()["x-floe-cache"], "hit");
}

/// Without events, an entry is trusted for `max_age_seconds` at most: a
/// change made behind the edge's back is served after that bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_bounds_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |c| {
        c.events.enabled = false;
        c.cache.max_age_seconds = 1;
    })
    .await;
    let http = reqwest::Client::new();
    seed(&http, &edge.url, "age", "t").await;
    let url = format!("{}/v1/namespaces/age/tables/t", edge.url);
    http.get(&url).send().await.unwrap();
    // Commit directly on the origin: the edge hears nothing.
    let r = http
        .post(format!("http://{}/v1/namespaces/age/tables/t", origin.addr))
        .json(&set_property("behind", "the edge"))
        .send()
        .await
        .unwrap();
    let committed_at = Instant::now();
    let location = r.json::<Value>().await.unwrap()["metadata-location"].clone();
    loop {
        let r = http.get(&url).send().await.unwrap();
        let fresh = r.json::<Value>().await.unwrap()["metadata-location"] == location;
        if fresh {
            break;
        }
        assert!(
            committed_at.elapsed() < Duration::from_millis(1500),
            "a stale load was served past the 1 s bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(edge);
    origin.stop().await;
}

/// Conditional loads keep the cache filled: once an entry is past
/// `max_age_seconds`, a load whose `If-None-Match` names the entry's version
/// revalidates it with the origin (a 304, and the entry fresh again), and
/// one naming another version gets the body, which refills the entry. A
/// client that only ever asks conditionally is then served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_loads_revalidate_and_refill_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |c| c.cache.max_age_seconds = 1).await;
    let http = reqwest::Client::new();
    seed(&http, &edge.url, "reval", "t").await;
    let url = format!("{}/v1/namespaces/reval/tables/t", edge.url);
    let first = http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let conditional = async |etag: &str| {
        let r = http
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        let cache = r.headers()["x-floe-cache"].to_str().unwrap().to_string();
        (r.status().as_u16(), cache)
    };
    assert_eq!(conditional(&etag).await, (304, "hit".to_string()));
    // Past max_age the entry is no longer served fresh; the first
    // conditional load then revalidates it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = conditional(&etag).await;
        if answer.1 != "hit" {
            break answer;
        }
        assert!(Instant::now() < deadline, "the entry never aged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer, (304, "revalidated".to_string()));
    assert_eq!(conditional(&etag).await, (304, "hit".to_string()));
    // Aged again, a conditional load naming an old version gets the body
    // (from the origin), and the entry is filled with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .get(&url)
            .header("if-none-match", "\"an-old-version\"")
            .send()
            .await
            .unwrap();
        let cache = r.headers()["x-floe-cache"].to_str().unwrap().to_string();
        if cache != "hit" {
            assert_eq!((r.status().as_u16(), cache.as_str()), (200, "miss"));
            let body = r.bytes().await.unwrap();
            assert!(!body.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "the entry never aged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conditional(&etag).await, (304, "hit".to_string()));
    drop(edge);
    origin.stop().await;
}

/// On SIGTERM-style shutdown, requests already in flight complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let (upstream, count) = slow_upstream(Duration::from_millis(400)).await;
    let edge = Edge::start(&[&upstream], |c| {
        c.events.enabled = false;
        c.cache.enabled = false;
        // In-flight requests are served for the grace period; then the
        // runtime stops. It must cover the slowest request.
        c.server.grace_period_seconds = 2;
        c.server.graceful_shutdown_timeout_seconds = 5;
    })
    .await;
    let http = reqwest::Client::new();
    let in_flight: Vec<_> = (0..8)
        .map(|i| {
            let http = http.clone();
            let url = format!("{}/v1/namespaces/g/tables/t{i}", edge.url);
            tokio::spawn(async move { http.get(&url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    wait_for(
        "all requests in flight at the origin",
        Duration::from_secs(5),
        async || count.load(std::sync::atomic::Ordering::SeqCst) == 8,
    )
    .await;
    let stop = std::thread::spawn(move || drop(edge));
    for request in in_flight {
        assert_eq!(request.await.unwrap().expect("no dropped request"), 200);
    }
    stop.join().unwrap();
}

/// Two edges, two origins, one PostgreSQL: a commit through edge A is seen
/// through edge B once B hears the change event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_edge_invalidation_through_events() {
    let db = PgDb::new("edge").await;
    let dir = tempfile::tempdir().unwrap();
    let o1 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let o2 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let a = Edge::start(&[&o1.addr], |_| {}).await;
    let b = Edge::start(&[&o2.addr], |_| {}).await;
    let http = reqwest::Client::new();
    a.subscribed(&http).await;
    b.subscribed(&http).await;
    seed(&http, &a.url, "x", "t").await;
    let on_b = format!("{}/v1/namespaces/x/tables/t", b.url);
    let mut delays = Vec::new();
    for round in 0..20 {
        http.get(&on_b).send().await.unwrap();
        let r = http.get(&on_b).send().await.unwrap();
        assert_eq!(r.headers()["x-floe-cache"], "hit");
        let r = http
            .post(format!("{}/v1/namespaces/x/tables/t", a.url))
            .json(&set_property("round", &round.to_string()))
            .send()
            .await
            .unwrap();
        let committed_at = Instant::now();
        let location = r.json::<Value>().await.unwrap()["metadata-location"].clone();
        wait_for(
            "edge B sees the commit",
            Duration::from_secs(5),
            async || {
                let loaded: Value = http.get(&on_b).send().await.unwrap().json().await.unwrap();
                loaded["metadata-location"] == location
            },
        )
        .await;
        delays.push(committed_at.elapsed());
    }
    delays.sort();
    println!(
        "cross-edge invalidation delay over {} commits: p50 {:?}, p99 {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100]
    );
    assert!(
        b.metric(&http, "floe_edge_invalidations_total{source=\"event\"}")
            .await
            >= 20.0
    );
    drop(a);
    drop(b);
    o1.stop().await;
    o2.stop().await;
}

/// Reads fail over to a healthy origin; with no origin, cached loads are
/// served stale (marked) and writes get a 503 ErrorModel; no stream, no
/// fresh hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_stream_loss_and_stale_if_error() {
    let db = PgDb::new("edge").await;
    let dir = tempfile::tempdir().unwrap();
    let o1 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let o2 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let o1_addr = o1.addr.clone();
    let edge = Edge::start(&[&o1.addr, &o2.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "f", "t").await;
    let url = format!("{}/v1/namespaces/f/tables/t", edge.url);

    // One origin down: every request still answers, reads and writes
    // alike (a refused connection reached no origin: tried on the other).
    o1.stop().await;
    for i in 0..10 {
        let r = http
            .get(format!("{}/v1/namespaces/f", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .post(&url)
            .json(&set_property(&format!("while-down-{i}"), "v"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "unkeyed write {i}");
    }
    edge.subscribed(&http).await;
    http.get(&url).send().await.unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-floe-cache"], "hit");

    // No origin at all: the stream is lost, nothing is served fresh, cached
    // loads are served stale, writes fail fast with 503.
    o2.stop().await;
    wait_for("stream loss noticed", Duration::from_secs(20), async || {
        edge.metric(&http, "floe_edge_event_stream_up").await == 0.0
    })
    .await;
    let started = Instant::now();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-floe-cache"], "stale");
    assert!(r.headers().contains_key("warning"));
    let r = http
        .post(&url)
        .json(&set_property("k", "v"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "ServiceUnavailableException"
    );
    let r = http
        .get(format!("{}/v1/namespaces/f/tables/uncached", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        started.elapsed()
    );

    // An origin comes back: the edge resubscribes and serves fresh again.
    let port: u16 = o1_addr.rsplit(':').next().unwrap().parse().unwrap();
    let back = Origin::start_on(&db.url, &dir.path().join("wh"), port).await;
    edge.subscribed(&http).await;
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        r.headers()["x-floe-cache"],
        "miss",
        "flushed on resubscription"
    );
    drop(edge);
    back.stop().await;
}

/// `GET /management/v1/cluster` at the edge: itself and each origin with
/// the origin's own report; an origin that stops is shown unhealthy, with why
/// it gave no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_report_shows_the_edge_and_each_origin() {
    let db = PgDb::new("edge").await;
    let dir = tempfile::tempdir().unwrap();
    let o1 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let o2 = Origin::start(&db.url, &dir.path().join("wh")).await;
    let (a1, a2) = (o1.addr.clone(), o2.addr.clone());
    let edge = Edge::start(&[&o1.addr, &o2.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "c", "t").await;
    let url = format!("{}/v1/namespaces/c/tables/t", edge.url);
    http.get(&url).send().await.unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-floe-cache"], "hit");

    let report = |http: reqwest::Client, url: String| async move {
        let r = http
            .get(format!("{url}/management/v1/cluster"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<ClusterStatus>().await.unwrap()
    };
    let status = report(http.clone(), edge.url.clone()).await;
    let [edge_status] = status.edges.as_slice() else {
        panic!("one edge: {status:?}")
    };
    assert!(edge_status.event_stream.up);
    assert_eq!(edge_status.cache.entries, 1);
    assert!(edge_status.cache.bytes > 0);
    assert!(edge_status.cache.hits >= 1 && edge_status.cache.misses >= 1);
    let ratio = edge_status.cache.hit_ratio.unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    let mut want = vec![a1.clone(), a2.clone()];
    want.sort();
    let seen: Vec<_> = status
        .origins
        .iter()
        .map(|o| o.address.clone().unwrap())
        .collect();
    assert_eq!(seen, want);
    for origin in &status.origins {
        assert_eq!(origin.healthy, Some(true), "{origin:?}");
        assert_eq!(origin.database.as_deref(), Some("up"), "{origin:?}");
        assert_eq!(
            origin.version.as_deref(),
            Some(edge_status.version.as_str())
        );
        assert_eq!(origin.error, None);
    }

    o1.stop().await;
    wait_for(
        "the stopped origin shown unhealthy",
        Duration::from_secs(20),
        async || {
            let status = report(http.clone(), edge.url.clone()).await;
            status
                .origins
                .iter()
                .any(|o| o.address.as_deref() == Some(a1.as_str()) && o.healthy == Some(false))
        },
    )
    .await;
    let status = report(http.clone(), edge.url.clone()).await;
    for origin in &status.origins {
        if origin.address.as_deref() == Some(a1.as_str()) {
            assert_eq!(origin.version, None);
            let error = origin.error.as_deref().unwrap_or_default();
            assert!(error.starts_with("unreachable"), "{error}");
        } else {
            assert_eq!(origin.healthy, Some(true));
            assert_eq!(origin.database.as_deref(), Some("up"));
        }
    }
    drop(edge);
    o2.stop().await;
}

/// Coalescing against a real origin, counted in the origin's own metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_first_loads_reach_the_origin_once() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "par", "t").await;
    let before = origin.load_count(&http).await;
    let url = format!("{}/v1/namespaces/par/tables/t", edge.url);
    let loads: Vec<_> = (0..32)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move { http.get(&url).send().await.unwrap().status() })
        })
        .collect();
    for load in loads {
        assert_eq!(load.await.unwrap(), 200);
    }
    assert_eq!(origin.load_count(&http).await - before, 1);
    drop(edge);
    origin.stop().await;
}

/// Pingora's graceful upgrade: a new edge binary takes over the listening
/// socket from the old one; clients see no refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_hands_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let port = free_port();
    let sock = dir.path().join("upgrade.sock");
    let conf = dir.path().join("edge.yaml");
    std::fs::write(
        &conf,
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nmetrics_listen: \"\"\norigins: [\"{}\"]\nserver:\n  threads: 1\n  upgrade_sock: {}\n  pid_file: {}\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\nevents:\n  enabled: false\n",
            origin.addr,
            sock.display(),
            dir.path().join("edge.pid").display()
        ),
    )
    .unwrap();
    let spawn = |upgrade: bool, log: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe-edge"));
        cmd.arg("--config").arg(&conf);
        if upgrade {
            cmd.arg("--upgrade");
        }
        let out = std::fs::File::create(dir.path().join(log)).unwrap();
        cmd.stdout(out.try_clone().unwrap()).stderr(out);
        cmd.spawn().expect("floe-edge starts")
    };
    let mut old = spawn(false, "old.log");
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/config");
    wait_for("old edge serving", Duration::from_secs(20), async || {
        http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Clients keep loading through the whole hand-over.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // A new connection each time: refused connections would show.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let r = http.get(&url).send().await.expect("no refused connection");
                assert_eq!(r.status(), 200);
                ok += 1;
            }
            ok
        })
    };
    let mut new = spawn(true, "new.log");
    wait_for(
        "new edge waiting for the sockets",
        Duration::from_secs(10),
        async || sock.exists(),
    )
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-QUIT", &old.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while old.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "old edge did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old process is gone; the new one answers on the same port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = client.await.unwrap();
    assert!(served > 0);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = new.kill();
    let _ = new.wait();
    origin.stop().await;
}

/// A client sends a commit with an Idempotency-Key and hangs up before the
/// answer; its retry with the same key gets the outcome, and the commit
/// happened exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_dropped_response_commits_once() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let base = format!("http://{}", origin.addr);
    let http = reqwest::Client::new();
    seed(&http, &base, "drop", "t").await;
    let table = format!("{base}/v1/namespaces/drop/tables/t");
    let log_len = async || -> usize {
        let body: Value = http.get(&table).send().await.unwrap().json().await.unwrap();
        body["metadata"]["metadata-log"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = log_len().await;
    let key = "017f22e2-79b0-7cc3-98c4-dc0c0c0739aa";
    let body = set_property("dropped", "1").to_string();
    let mut socket = tokio::net::TcpStream::connect(&origin.addr).await.unwrap();
    let request = format!(
        "POST /v1/namespaces/drop/tables/t HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        origin.addr,
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    drop(socket);
    let r = http
        .post(&table)
        .header("idempotency-key", key)
        .json(&set_property("dropped", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(log_len().await, before + 1, "committed exactly once");
}

/// Sends `request` (a raw HTTP/1.1 head, `Connection: close`) to `addr` and
/// returns the status and body as received: the path is not normalized the
/// way a URL library would (`/v1/../metrics` stays as written).
async fn raw_request(addr: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The origin's `/metrics` (unauthenticated, with every route's counts) and
/// `/internal/…` are for operators and edges, not clients: the edge answers
/// them, and anything else outside the client routes, with a 404 ErrorModel
/// of its own, however the path is spelled. The client routes, `/health`
/// and `/ready` still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_operational_routes_are_not_served_through_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    let edge_addr = edge.url.trim_start_matches("http://").to_string();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

    // The request shape works against the origin itself.
    let (status, body) = raw_request(&origin.addr, &get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("floe_origin_http_requests_total"), "{body}");

    for path in [
        "/metrics",
        "/metrics/",
        "/metrics?format=text",
        "//metrics",
        "/./metrics",
        "/v1/../metrics",
        "/v1/%2e%2e/metrics",
        "/%6detrics",
        "/internal/v1/events",
        "/internal/v1/principals/anyone",
        "/",
        "/anything-else",
    ] {
        let (status, body) = raw_request(&edge_addr, &get(path)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("floe_origin"), "{path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(error["error"]["code"], 404, "{path}");
        assert_eq!(error["error"]["type"], "NotFoundException", "{path}");
    }
    for method in ["HEAD", "POST", "DELETE"] {
        let (status, body) = raw_request(
            &edge_addr,
            &format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 404, "{method} /metrics");
        assert!(!body.contains("floe_origin"), "{method}: {body}");
    }

    // Client routes, probes and the management API still reach the origin.
    for path in [
        "/health",
        "/ready",
        "/v1/config",
        "/management/v1/warehouses",
    ] {
        let r = http
            .get(format!("{}{path}", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The edge's own metrics stay on its metrics listener.
    let text = http
        .get(&edge.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("route=\"unserved\""), "{text}");
    drop(edge);
    origin.stop().await;
}

/// Number of lines of a Prometheus exposition at `url`.
async fn metric_lines(http: &reqwest::Client, url: &str) -> usize {
    http.get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .count()
}

/// A deterministic stream of pseudo-random lowercase letters.
struct Letters(u64);

impl Letters {
    fn take(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                char::from(b'a' + (self.0 % 26) as u8)
            })
            .collect()
    }
}

/// 500 requests with made-up methods (`FOOBAR /v1/namespaces`, all 405)
/// add no series to either tier's metrics: methods are labelled from a
/// closed set (unknown ones as `OTHER`), routes are patterns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_methods_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |_| {}).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    let origin_metrics = format!("http://{}/metrics", origin.addr);
    // Every standard request the edge and origin see is already labelled.
    http.get(format!("{}/v1/namespaces", edge.url))
        .send()
        .await
        .unwrap();
    let edge_before = metric_lines(&http, &edge.metrics_url).await;
    let origin_before = metric_lines(&http, &origin_metrics).await;
    let mut letters = Letters(0x2545_f491_4f6c_dd1d);
    let mut methods = std::collections::HashSet::new();
    for _ in 0..500 {
        let name = letters.take(10).to_uppercase();
        methods.insert(name.clone());
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let r = http
            .request(method, format!("{}/v1/namespaces", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{name}");
    }
    assert!(methods.len() > 490, "distinct methods");
    let edge_after = metric_lines(&http, &edge.metrics_url).await;
    let origin_after = metric_lines(&http, &origin_metrics).await;
    println!(
        "metrics lines: edge {edge_before} -> {edge_after}, origin {origin_before} -> {origin_after}"
    );
    // One new label value (OTHER) adds a counter and a latency histogram
    // (at most 18 lines) per route and status it appears with; before this
    // was bounded, each method added its own (about 9,000 lines for 500).
    assert!(
        edge_after <= edge_before + 40,
        "edge: {edge_before} -> {edge_after}"
    );
    assert!(
        origin_after <= origin_before + 40,
        "origin: {origin_before} -> {origin_after}"
    );
    let text = http
        .get(&edge.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("method=\"OTHER\""), "{text}");
    drop(edge);
    origin.stop().await;
}

/// Writes to thousands of distinct tables that do not exist (each one
/// invalidates before the origin refuses it) leave the invalidation
/// structure at its fixed size, and a cached table is still served from the
/// cache and still invalidated by its own commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_unknown_tables_keep_invalidation_bounded() {
    const SLOTS: usize = 1024;
    const WRITES: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let edge = Edge::start(&[&origin.addr], |c| c.cache.generation_slots = SLOTS).await;
    let http = reqwest::Client::new();
    edge.subscribed(&http).await;
    seed(&http, &edge.url, "inv", "t").await;
    let url = format!("{}/v1/namespaces/inv/tables/t", edge.url);
    http.get(&url).send().await.unwrap();
    assert_eq!(
        http.get(&url).send().await.unwrap().headers()["x-floe-cache"],
        "hit"
    );

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, base, next) = (http.clone(), edge.url.clone(), next.clone());
            tokio::spawn(async move {
                let mut letters = Letters(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < WRITES {
                    let name = letters.take(200);
                    // Both spellings: unprefixed and with the warehouse prefix.
                    let prefix = if name.as_bytes()[0] < b'n' {
                        ""
                    } else {
                        "/default"
                    };
                    let r = http
                        .post(format!("{base}/v1{prefix}/namespaces/inv/tables/{name}"))
                        .json(&set_property("k", "v"))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status() == 404 || r.status() == 400, "{}", r.status());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let slots = edge
        .metric(&http, "floe_edge_cache_generation_slots ")
        .await;
    let used = edge
        .metric(&http, "floe_edge_cache_generation_slots_used")
        .await;
    println!("{WRITES} writes to unknown tables: {used} of {slots} generation slots used");
    assert_eq!(slots, SLOTS as f64, "the structure has its configured size");
    assert!(used <= slots, "{used} > {slots}");
    assert!(
        edge.metric(&http, "floe_edge_invalidations_total{source=\"local\"}")
            .await
            >= 2.0 * WRITES as f64,
        "every write invalidated (before forwarding and after the answer)"
    );

    // The cache still works: a miss fills, the next load hits.
    wait_for(
        "the table hits again",
        Duration::from_secs(10),
        async || http.get(&url).send().await.unwrap().headers()["x-floe-cache"] == "hit",
    )
    .await;
    // And the table's own commit invalidates it: the next load shows it.
    let r = http
        .post(&url)
        .json(&set_property("after", "flood"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let committed: Value = r.json().await.unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-floe-cache"], "miss");
    let loaded: Value = r.json().await.unwrap();
    assert_eq!(loaded["metadata-location"], committed["metadata-location"]);
    assert_eq!(loaded["metadata"]["properties"]["after"], "flood");
    drop(edge);
    origin.stop().await;
}

/// An origin that reads each request and hangs up without answering (it
/// answers only its health check): a request cut off mid-flight.
async fn dying_origin() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"GET /ready ") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nready")
                        .await;
                }
                // Anything else: the connection closes, unanswered.
            });
        }
    });
    addr
}

/// A request that reached an origin which then died is replayed on another
/// origin when replaying is harmless (reads, and writes carrying an
/// Idempotency-Key); an unkeyed write answers CommitStateUnknownException,
/// and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cut_mid_flight_are_replayed_only_when_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let real = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let dying = dying_origin().await;
    let edge = Edge::start(&[&dying, &real.addr], |c| c.cache.enabled = false).await;
    let http = reqwest::Client::new();
    // Seeded at the real origin: an unkeyed create through the edge could
    // be cut off too.
    seed(&http, &format!("http://{}", real.addr), "m", "t").await;
    let url = format!("{}/v1/namespaces/m/tables/t", edge.url);
    for _ in 0..10 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "reads are replayed");
    }
    for i in 0..10 {
        let r = http
            .post(&url)
            .header(
                "idempotency-key",
                format!("0190a000-0000-7000-8000-{i:012}"),
            )
            .json(&set_property(&format!("keyed-{i}"), "v"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "keyed writes are replayed");
    }
    let (mut ok, mut unknown) = (0, 0);
    for i in 0..10 {
        let r = http
            .post(&url)
            .json(&set_property(&format!("unkeyed-{i}"), "v"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            502 => {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["type"], "CommitStateUnknownException");
                unknown += 1;
            }
            other => panic!("unkeyed write {i}: {other}"),
        }
    }
    assert!(
        ok > 0 && unknown > 0,
        "both origins took writes: {ok} ok, {unknown} unknown"
    );
    // Every keyed write is in the table exactly as acknowledged.
    let table: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    for i in 0..10 {
        assert_eq!(table["metadata"]["properties"][format!("keyed-{i}")], "v");
    }
}
