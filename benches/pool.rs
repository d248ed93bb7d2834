//! Pooled against unpooled, in one run: bytes and allocations per operation
//! (a counting global allocator) and time.
//!
//! Run: `cargo bench --bench pool`
//!
//! Pairs: table-metadata serialization (typical, 150 columns, 10,000
//! snapshots), the table-load body built around a stored document (the
//! origin's hot path), token issuance, borrow/return under 2 and 64 threads
//! (also against a plain `Mutex<Vec<_>>` pool), and the edge's cache-hit
//! path against its miss path (a real edge on loopback, a raw keep-alive
//! client that allocates nothing per request). Each pair ends with
//! `alloc <name>: bytes -NN% allocs -NN% time +/-NN%`, measured in the same
//! process with alternating batches, so the ratios hold on a noisy machine.

// The counting allocator is the one place Floe needs `unsafe`: a
// `GlobalAlloc` impl that forwards to the system allocator. Bench only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use floe_shared::json::{self, JsonBodies};
use floe_shared::pool::{BufferPool, PoolConfig, PoolMetrics};
use floe_shared::token::{Claims, TokenSigner};
use iceberg::spec::TableMetadata;
use serde_json::json;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted(ops: u64, mut f: impl FnMut()) -> (f64, f64) {
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    f();
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((b1 - b0) as f64 / ops as f64, (a1 - a0) as f64 / ops as f64)
}

fn percent(new: f64, old: f64) -> String {
    if old == 0.0 {
        return "+0%".to_string();
    }
    let p = (new - old) / old * 100.0;
    format!("{}{:.0}%", if p >= 0.0 { "+" } else { "-" }, p.abs())
}

/// Bytes/allocs per op and median time, pooled against unpooled; prints the summary line.
fn compare(name: &str, batch: u64, mut pooled: impl FnMut(), mut unpooled: impl FnMut()) {
    // Warm both (fills the pool, settles caches).
    for _ in 0..batch {
        pooled();
        unpooled();
    }
    let (pb, pa) = counted(batch, || (0..batch).for_each(|_| pooled()));
    let (ub, ua) = counted(batch, || (0..batch).for_each(|_| unpooled()));
    let mut pt = Vec::new();
    let mut ut = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        (0..batch).for_each(|_| pooled());
        pt.push(t.elapsed());
        let t = Instant::now();
        (0..batch).for_each(|_| unpooled());
        ut.push(t.elapsed());
    }
    pt.sort();
    ut.sort();
    let (pm, um) = (
        pt[pt.len() / 2].as_secs_f64(),
        ut[ut.len() / 2].as_secs_f64(),
    );
    println!(
        "detail {name}: pooled {pb:.0} B {pa:.2} allocs {:.2} µs/op; unpooled {ub:.0} B {ua:.2} allocs {:.2} µs/op",
        pm / batch as f64 * 1e6,
        um / batch as f64 * 1e6
    );
    println!(
        "alloc {name}: bytes {} allocs {} time {}",
        percent(pb, ub),
        percent(pa, ua),
        percent(pm, um)
    );
}

fn metadata(columns: usize, snapshots: i64) -> TableMetadata {
    let fields: Vec<_> = (1..=columns)
        .map(|i| {
            let ty = ["long", "string", "double", "timestamp", "boolean"][i % 5];
            json!({"id": i, "name": format!("column_{i}"), "required": false, "type": ty})
        })
        .collect();
    let snapshot_list: Vec<_> = (1..=snapshots)
        .map(|i| {
            let mut s = json!({
                "snapshot-id": i,
                "sequence-number": i,
                "timestamp-ms": 1_700_000_000_000_i64 + i,
                "manifest-list": format!("s3://bucket/wh/db/t/metadata/snap-{i}-1-6e2d8c0c-0000-0000-0000-00000000000{}.avro", i % 10),
                "summary": {"operation": "append", "added-data-files": "4", "added-records": "4000",
                            "total-records": (i * 4000).to_string(), "total-data-files": (i * 4).to_string()},
                "schema-id": 0
            });
            if i > 1 {
                s["parent-snapshot-id"] = json!(i - 1);
            }
            s
        })
        .collect();
    let log: Vec<_> = (1..=snapshots)
        .map(|i| json!({"snapshot-id": i, "timestamp-ms": 1_700_000_000_000_i64 + i}))
        .collect();
    let mut doc = json!({
        "format-version": 2,
        "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1",
        "location": "s3://bucket/wh/db/t",
        "last-sequence-number": snapshots,
        "last-updated-ms": 1_700_000_000_000_i64 + snapshots,
        "last-column-id": columns,
        "current-schema-id": 0,
        "schemas": [{"type": "struct", "schema-id": 0, "fields": fields}],
        "default-spec-id": 0,
        "partition-specs": [{"spec-id": 0, "fields": [
            {"source-id": 1, "field-id": 1000, "name": "column_1_bucket", "transform": "bucket[16]"}
        ]}],
        "last-partition-id": 1000,
        "default-sort-order-id": 0,
        "sort-orders": [{"order-id": 0, "fields": []}],
        "properties": {"owner": "analytics", "write.format.default": "parquet",
                       "commit.retry.num-retries": "4"},
        "snapshots": snapshot_list,
        "snapshot-log": log,
        "metadata-log": [],
        "refs": {}
    });
    if snapshots > 0 {
        doc["current-snapshot-id"] = json!(snapshots);
        doc["refs"] = json!({"main": {"snapshot-id": snapshots, "type": "branch"}});
    }
    serde_json::from_value(doc).expect("valid metadata")
}

struct MutexPool(Mutex<Vec<Vec<u8>>>);

impl MutexPool {
    fn borrow(&self) -> Vec<u8> {
        let popped = self.0.lock().ok().and_then(|mut v| v.pop());
        popped.unwrap_or_else(|| Vec::with_capacity(4096))
    }
    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut v) = self.0.lock()
            && v.len() < 256
        {
            v.push(buf);
        }
    }
}

fn threaded(threads: usize, ops: u64, op: impl Fn() + Sync) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| (0..ops / threads as u64).for_each(|_| op()));
        }
    });
}

fn bench(c: &mut Criterion) {
    let metrics = PoolMetrics::unregistered();
    let pool = BufferPool::new("json", PoolConfig::default(), &metrics);
    let bodies = JsonBodies::new(pool.clone());
    let tables = [
        ("typical", metadata(12, 5)),
        ("wide-150-columns", metadata(150, 20)),
        ("10k-snapshots", metadata(12, 10_000)),
    ];

    let mut group = c.benchmark_group("serialize");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    // The origin knows the size of a document's previous version; so does this bench.
    let hints: Vec<usize> = tables
        .iter()
        .map(|(_, m)| json::to_json_bytes(m).expect("json").len())
        .collect();
    for ((name, meta), hint) in tables.iter().zip(&hints) {
        group.bench_with_input(BenchmarkId::new("pooled", name), meta, |b, m| {
            b.iter(|| black_box(bodies.to_bytes_with_hint(m, *hint).expect("json")));
        });
        group.bench_with_input(BenchmarkId::new("unpooled", name), meta, |b, m| {
            b.iter(|| black_box(json::to_json_bytes(m).expect("json")));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("load_result");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    let docs: Vec<(&str, String)> = tables
        .iter()
        .map(|(n, m)| (*n, serde_json::to_string(m).expect("json")))
        .collect();
    for (name, doc) in &docs {
        group.bench_with_input(BenchmarkId::new("pooled", name), doc, |b, d| {
            b.iter(|| {
                black_box(
                    bodies
                        .load_table_result(Some("s3://b/m.json"), d, None)
                        .expect("body"),
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("unpooled", name), doc, |b, d| {
            b.iter(|| {
                black_box(json::load_table_result(Some("s3://b/m.json"), d, None).expect("body"))
            });
        });
    }
    group.finish();

    let token_pool = BufferPool::new("token", PoolConfig::tokens(), &metrics);
    let signer = TokenSigner::from_seed(&[3u8; 32], "bench");
    let claims = Claims {
        iss: "floe".into(),
        sub: "analytics-service".into(),
        iat: 1_700_000_000,
        exp: 1_700_003_600,
        jti: String::new(),
        scope: "catalog".into(),
        generation: 0,
    };
    let mut group = c.benchmark_group("token");
    group.bench_function("pooled", |b| {
        b.iter(|| black_box(signer.issue_pooled(&claims, &token_pool).expect("token")));
    });
    group.bench_function("unpooled", |b| {
        b.iter(|| black_box(signer.issue(&claims).expect("token")));
    });
    group.finish();

    let mutex_pool = MutexPool(Mutex::new(Vec::new()));
    let payload = [b'x'; 1024];
    let pooled_op = || {
        let mut buf = pool.borrow(4096);
        buf.extend_from_slice(&payload);
        black_box(&buf);
    };
    let mutex_op = || {
        let mut buf = mutex_pool.borrow();
        buf.extend_from_slice(&payload);
        black_box(&buf);
        mutex_pool.give_back(buf);
    };
    let unpooled_op = || {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        buf.extend_from_slice(&payload);
        black_box(&buf);
    };
    let mut group = c.benchmark_group("concurrent");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for threads in [2usize, 64] {
        for (variant, op) in [
            ("lock-free-pool", &pooled_op as &(dyn Fn() + Sync)),
            ("mutex-pool", &mutex_op),
            ("unpooled", &unpooled_op),
        ] {
            group.bench_function(BenchmarkId::new(variant, threads), |b| {
                b.iter_custom(|iters| {
                    let ops = iters.max(threads as u64) * 64;
                    let t = Instant::now();
                    threaded(threads, ops, op);
                    t.elapsed() / 64
                });
            });
        }
    }
    group.finish();

    println!();
    for (((name, meta), (_, doc)), hint) in tables.iter().zip(&docs).zip(&hints) {
        let batch = if name.starts_with("10k") { 10 } else { 300 };
        compare(
            &format!("serialize-{name}"),
            batch,
            || {
                drop(black_box(
                    bodies.to_bytes_with_hint(meta, *hint).expect("json"),
                ));
            },
            || drop(black_box(json::to_json_bytes(meta).expect("json"))),
        );
        compare(
            &format!("load-result-{name}"),
            batch,
            || {
                drop(black_box(
                    bodies
                        .load_table_result(Some("s3://b/m.json"), doc, None)
                        .expect("body"),
                ));
            },
            || {
                drop(black_box(
                    json::load_table_result(Some("s3://b/m.json"), doc, None).expect("body"),
                ));
            },
        );
    }
    compare(
        "token",
        2000,
        || {
            drop(black_box(
                signer.issue_pooled(&claims, &token_pool).expect("token"),
            ));
        },
        || drop(black_box(signer.issue(&claims).expect("token"))),
    );
    for threads in [2usize, 64] {
        let ops = 64_000;
        compare(
            &format!("concurrent-{threads}"),
            1,
            || threaded(threads, ops, pooled_op),
            || threaded(threads, ops, unpooled_op),
        );
        let mut lock_free = Vec::new();
        let mut mutex = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            threaded(threads, ops, pooled_op);
            lock_free.push(t.elapsed());
            let t = Instant::now();
            threaded(threads, ops, mutex_op);
            mutex.push(t.elapsed());
        }
        lock_free.sort();
        mutex.sort();
        println!(
            "ratio concurrent-{threads} lock-free/mutex time: {:.2}",
            lock_free[7].as_secs_f64() / mutex[7].as_secs_f64()
        );
    }
    let stats = pool.stats();
    println!(
        "pool json after the run: idle {} KiB (cap {} KiB), in use {}",
        stats.idle_bytes / 1024,
        pool.config().max_idle_bytes / 1024,
        stats.in_use
    );
}

/// Sends `GET path` on a keep-alive connection and reads the response into
/// `buf` without allocating; returns the body length.
fn raw_get(stream: &mut std::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> usize {
    use std::io::{Read, Write};
    stream.write_all(request).expect("write");
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("head");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).expect("read");
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            return length;
        }
    }
}

/// The edge's hit path against its miss path, one process, loopback.
fn edge_hit_path() {
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let body =
        serde_json::to_string(&json!({"metadata-location": "m", "metadata": metadata(12, 5)}))
            .expect("json");
    let upstream = rt.block_on(async move {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ready", get(|| async { "ready" }))
            .route(
                "/v1/namespaces/{ns}/tables/{t}",
                get(move || {
                    let body = body.clone();
                    async move {
                        (
                            [
                                ("etag", "\"bench-1\""),
                                ("content-type", "application/json"),
                            ],
                            body,
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    });
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    };
    let mut ports = Vec::new();
    let stops: Vec<Arc<tokio::sync::Notify>> = [true, false]
        .into_iter()
        .map(|cache| {
            let port = free();
            ports.push(port);
            let mut config = floe_edge::config::EdgeConfig {
                listen: vec![format!("127.0.0.1:{port}")],
                metrics_listen: String::new(),
                origins: vec![upstream.clone()],
                ..Default::default()
            };
            config.server.threads = 1;
            config.server.grace_period_seconds = 0;
            config.events.enabled = false;
            config.cache.enabled = cache;
            let stop = Arc::new(tokio::sync::Notify::new());
            let signal = stop.clone();
            std::thread::spawn(move || {
                struct Stop(Arc<tokio::sync::Notify>);
                #[async_trait::async_trait]
                impl pingora::server::ShutdownSignalWatch for Stop {
                    async fn recv(&self) -> pingora::server::ShutdownSignal {
                        self.0.notified().await;
                        pingora::server::ShutdownSignal::FastShutdown
                    }
                }
                let (server, _parts) = floe_edge::server::build(config, None).expect("edge");
                server.run(pingora::server::RunArgs {
                    shutdown_signal: Box::new(Stop(signal)),
                });
            });
            stop
        })
        .collect();
    let connect = |port: u16| loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_nodelay(true).expect("nodelay");
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut hit = connect(ports[0]);
    let mut miss = connect(ports[1]);
    let request = b"GET /v1/namespaces/bench/tables/t HTTP/1.1\r\nHost: edge\r\n\r\n".to_vec();
    let mut buf_a = Vec::with_capacity(64 * 1024);
    let mut buf_b = Vec::with_capacity(64 * 1024);
    let length = raw_get(&mut hit, &request, &mut buf_a);
    compare(
        "edge-hit-vs-miss",
        500,
        || {
            black_box(raw_get(&mut hit, &request, &mut buf_a));
        },
        || {
            black_box(raw_get(&mut miss, &request, &mut buf_b));
        },
    );
    println!("edge body per request: {length} B (the hit path shares the cached Bytes, no copy)");
    for stop in stops {
        stop.notify_one();
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    edge_hit_path();
    Criterion::default().configure_from_args().final_summary();
}
