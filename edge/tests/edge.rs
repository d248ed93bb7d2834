//! Cross-tier tests: real edges (Pingora, on real sockets) in front of real
//! origins (axum, on real sockets) on SQLite or PostgreSQL.

mod support;

use floe_shared::testkit::PgDb;

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    for padding in [0, buffer / 2, buffer - 1500, buffer, 4 * buffer, 300_000] {
        let url = format!("{}/v1/namespaces/db/tables/t", edge.url);
        let r = http
            .post(&url)
            .json(&set_property("pad", &"x".repeat(padding)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
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

    // One origin down: every read still answers (retried on the other).
    o1.stop().await;
    for _ in 0..10 {
        let r = http
            .get(format!("{}/v1/namespaces/f", edge.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
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
