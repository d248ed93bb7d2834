//! Harness of the cross-tier tests: real edges (Pingora, on real sockets)
//! in front of real origins (axum, on real sockets).
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_edge::config::EdgeConfig;
use floe_origin::config::{Config, DatabaseConfig};
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports: every socket is held until all are chosen, so
/// the kernel cannot hand the same port out twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound address").port())
}

pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} not true after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An origin serving on a real socket until dropped.
pub struct Origin {
    pub addr: String,
    pub state: floe_origin::http::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Origin {
    pub async fn start(database_url: &str, warehouse: &std::path::Path) -> Origin {
        Self::start_on(database_url, warehouse, free_port()).await
    }

    pub async fn start_on(database_url: &str, warehouse: &std::path::Path, port: u16) -> Origin {
        Self::start_with(database_url, warehouse, port, |_| {}).await
    }

    pub async fn start_with(
        database_url: &str,
        warehouse: &std::path::Path,
        port: u16,
        tweak: impl FnOnce(&mut Config),
    ) -> Origin {
        let mut config = Config {
            database: DatabaseConfig {
                url: database_url.to_string(),
                max_connections: 8,
                ..DatabaseConfig::default()
            },
            warehouse: floe_origin::config::WarehouseConfig {
                location: warehouse.display().to_string(),
                ..Default::default()
            },
            ..Config::default()
        };
        tweak(&mut config);
        let state = floe_origin::server::prepare(&config).await.expect("origin");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let task = tokio::spawn(async move {
            let _ =
                floe_origin::server::serve(listener, served, Duration::from_millis(100), async {
                    let _ = rx.await;
                })
                .await;
        });
        Origin {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn load_count(&self, http: &reqwest::Client) -> u64 {
        let text = http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| {
                l.starts_with("floe_origin_http_requests_total{method=\"GET\"")
                    && l.contains("/tables/{table}")
                    && l.contains("status=\"200\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

struct Stop(Arc<Notify>);

#[async_trait::async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::GracefulTerminate
    }
}

/// An edge running in its own thread until dropped.
pub struct Edge {
    pub url: String,
    pub metrics_url: String,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Edge {
    pub async fn start(origins: &[&str], tweak: impl FnOnce(&mut EdgeConfig)) -> Edge {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let [port, metrics_port] = free_ports::<2>();
        let mut config = EdgeConfig {
            listen: vec![format!("127.0.0.1:{port}")],
            metrics_listen: format!("127.0.0.1:{metrics_port}"),
            origins: origins
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            ..EdgeConfig::default()
        };
        config.server.threads = 1;
        config.server.grace_period_seconds = 0;
        config.server.graceful_shutdown_timeout_seconds = 1;
        config.health_check.interval_ms = 100;
        config.events.reconnect_ms = 50;
        config.upstream.connect_timeout_ms = 300;
        tweak(&mut config);
        let stop = Arc::new(Notify::new());
        let signal = stop.clone();
        let thread = std::thread::spawn(move || {
            let (server, _parts) = floe_edge::server::build(config, None).expect("edge builds");
            server.run(RunArgs {
                shutdown_signal: Box::new(Stop(signal)),
            });
        });
        let edge = Edge {
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            stop,
            thread: Some(thread),
        };
        let http = reqwest::Client::new();
        let health = format!("http://127.0.0.1:{metrics_port}/health");
        wait_for("edge listening", Duration::from_secs(20), async || {
            http.get(&health).send().await.is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        edge
    }

    pub async fn metric(&self, http: &reqwest::Client, line_start: &str) -> f64 {
        let text = http
            .get(&self.metrics_url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the edge has subscribed to change events.
    pub async fn subscribed(&self, http: &reqwest::Client) {
        wait_for("event subscription", Duration::from_secs(20), async || {
            self.metric(http, "floe_edge_event_stream_up").await == 1.0
        })
        .await;
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn table_body(name: &str) -> Value {
    json!({"name": name, "schema": {"type": "struct", "fields": [
        {"id": 1, "name": "id", "required": true, "type": "long"}
    ]}})
}

pub fn set_property(k: &str, v: &str) -> Value {
    json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {k: v}}]})
}

pub async fn seed(http: &reqwest::Client, base: &str, ns: &str, table: &str) {
    let r = http
        .post(format!("{base}/v1/namespaces"))
        .json(&json!({"namespace": [ns]}))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status() == 409, "{}", r.status());
    let r = http
        .post(format!("{base}/v1/namespaces/{ns}/tables"))
        .json(&table_body(table))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("catalog.db").display()
    )
}
