//! Table loads do not grow with history.
//!
//! Run: `cargo bench --bench catalog`
//!
//! An origin on SQLite (in-process router, no socket) holds a fresh table and
//! a table with 10,000 snapshots. Criterion times loads of both in both
//! snapshot modes, plus the baseline a load would cost if the catalog parsed
//! and re-serialized the stored document. The run ends with ratio lines
//! measured in the same process, so they hold on a noisy machine:
//! `ratio load-10k-refs/load-fresh: …`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group};
use floe_origin::config::{Config, DatabaseConfig};
use floe_origin::http::app;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const SNAPSHOTS: i64 = 10_000;

struct Fixture {
    router: axum::Router,
    _dir: tempfile::TempDir,
    big_metadata: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<String>,
) -> bytes::Bytes {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(
        status.is_success(),
        "{method} {uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

fn table(name: &str) -> String {
    json!({"name": name, "schema": {"type": "struct", "fields": [
        {"id": 1, "name": "id", "required": true, "type": "long"},
        {"id": 2, "name": "ts", "required": false, "type": "timestamp"},
        {"id": 3, "name": "payload", "required": false, "type": "string"}
    ]}})
    .to_string()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        database: DatabaseConfig {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            ..DatabaseConfig::default()
        },
        warehouse: floe_origin::config::WarehouseConfig {
            location: dir.path().join("wh").display().to_string(),
            ..Default::default()
        },
        ..Config::default()
    };
    let state = floe_origin::server::prepare(&config).await.expect("origin");
    let router = app(state);
    call(
        &router,
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": ["bench"]}).to_string()),
    )
    .await;
    call(
        &router,
        "POST",
        "/v1/namespaces/bench/tables",
        Some(table("fresh")),
    )
    .await;
    let created = call(
        &router,
        "POST",
        "/v1/namespaces/bench/tables",
        Some(table("history")),
    )
    .await;
    let created: serde_json::Value = serde_json::from_slice(&created).expect("json");
    let location = created["metadata"]["location"]
        .as_str()
        .expect("location")
        .to_string();
    let start = now_ms();
    let mut updates = Vec::with_capacity(SNAPSHOTS as usize + 1);
    for i in 1..=SNAPSHOTS {
        let mut snapshot = json!({
            "snapshot-id": i,
            "sequence-number": i,
            "timestamp-ms": start + i,
            "manifest-list": format!("{location}/metadata/snap-{i}-1-00000000-0000-0000-0000-000000000000.avro"),
            "summary": {"operation": "append", "added-data-files": "1", "added-records": "100"},
            "schema-id": 0
        });
        if i > 1 {
            snapshot["parent-snapshot-id"] = json!(i - 1);
        }
        updates.push(json!({"action": "add-snapshot", "snapshot": snapshot}));
    }
    updates.push(json!({"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": SNAPSHOTS}));
    call(
        &router,
        "POST",
        "/v1/namespaces/bench/tables/history",
        Some(json!({"requirements": [], "updates": updates}).to_string()),
    )
    .await;
    let loaded = call(&router, "GET", "/v1/namespaces/bench/tables/history", None).await;
    let value: serde_json::Value = serde_json::from_slice(&loaded).expect("json");
    assert_eq!(
        value["metadata"]["snapshots"].as_array().map(Vec::len),
        Some(SNAPSHOTS as usize)
    );
    Fixture {
        router,
        _dir: dir,
        big_metadata: value["metadata"].to_string(),
    }
}

const CASES: &[(&str, &str)] = &[
    ("load-fresh", "/v1/namespaces/bench/tables/fresh"),
    (
        "load-fresh-refs",
        "/v1/namespaces/bench/tables/fresh?snapshots=refs",
    ),
    (
        "load-10k-refs",
        "/v1/namespaces/bench/tables/history?snapshots=refs",
    ),
    ("load-10k-all", "/v1/namespaces/bench/tables/history"),
];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fx = rt.block_on(fixture());
    let mut group = c.benchmark_group("table_load");
    group.measurement_time(Duration::from_secs(3));
    for (name, uri) in CASES {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| call(&fx.router, "GET", uri, None));
        });
    }
    group.bench_function("baseline-parse-serialize-10k", |b| {
        b.iter(|| {
            let metadata: iceberg::spec::TableMetadata =
                serde_json::from_str(&fx.big_metadata).expect("parse");
            serde_json::to_vec(&metadata).expect("serialize")
        });
    });
    group.finish();

    // Ratios from medians measured in one interleaved loop.
    let rounds = 200;
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); CASES.len()];
    rt.block_on(async {
        for _ in 0..rounds {
            for (i, (_, uri)) in CASES.iter().enumerate() {
                let t = Instant::now();
                call(&fx.router, "GET", uri, None).await;
                samples[i].push(t.elapsed().as_secs_f64());
            }
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = samples.iter_mut().map(median).collect();
    for ((name, _), m) in CASES.iter().zip(&medians) {
        println!("median {name}: {:.1} µs", m * 1e6);
    }
    println!(
        "ratio load-10k-refs/load-fresh-refs: {:.2}",
        medians[2] / medians[1]
    );
    println!(
        "ratio load-10k-all/load-fresh: {:.2}",
        medians[3] / medians[0]
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
