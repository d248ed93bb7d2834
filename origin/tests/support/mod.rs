//! Test harness: the origin app on a real database (a temporary SQLite file
//! or a fresh PostgreSQL database), called through the router without a socket.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use floe_origin::config::{Config, DatabaseConfig};
use floe_origin::http::{AppState, app};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that lives as long as the test.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    _pg: Option<floe_shared::testkit::PgDb>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("catalog.db").display()
                ),
                dir,
                _pg: None,
            },
            Backend::Postgres => {
                let pg = floe_shared::testkit::PgDb::new("t").await;
                TestDb {
                    url: pg.url.clone(),
                    dir,
                    _pg: Some(pg),
                }
            }
        }
    }

    /// Local warehouse root inside the temp dir.
    pub fn warehouse_path(&self) -> std::path::PathBuf {
        self.dir.path().join("warehouse")
    }
}

/// The origin app over a fresh database.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub db: TestDb,
    pub config: Config,
}

/// A response, body parsed as JSON when there is one.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: bytes::Bytes,
}

impl Reply {
    /// The ErrorModel `type` of an error reply.
    pub fn error_type(&self) -> &str {
        self.body["error"]["type"].as_str().unwrap_or("<none>")
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::with_db(TestDb::new(backend).await, tweak).await
    }

    /// The origin app over `db`, configured as `tweak` says.
    pub async fn with_db(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            database: DatabaseConfig {
                url: db.url.clone(),
                max_connections: 8,
                ..DatabaseConfig::default()
            },
            ..Config::default()
        };
        config.warehouse.location = db.warehouse_path().display().to_string();
        tweak(&mut config);
        let state = floe_origin::server::prepare(&config)
            .await
            .expect("origin starts");
        let router = app(state.clone());
        TestApp {
            router,
            state,
            db,
            config,
        }
    }

    /// Location of the default warehouse as stored (`file:///…`).
    pub fn warehouse_url(&self) -> String {
        format!("file://{}", self.db.warehouse_path().display())
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        let request = match body {
            Some(b) => builder.body(Body::from(b.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    pub async fn raw(&self, method: Method, uri: &str, body: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    pub async fn create_namespace(&self, levels: &[&str]) {
        let r = self
            .post(
                "/v1/default/namespaces",
                serde_json::json!({"namespace": levels, "properties": {}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// The `location` of a table, as its metadata says.
    pub async fn table_location(&self, ns: &str, name: &str) -> String {
        let r = self
            .get(&format!("/v1/default/namespaces/{ns}/tables/{name}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["metadata"]["location"]
            .as_str()
            .expect("location")
            .to_string()
    }

    pub async fn create_table(&self, ns: &str, name: &str) -> Reply {
        let r = self
            .post(
                &format!("/v1/default/namespaces/{ns}/tables"),
                create_table_body(name),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r
    }
}

/// A minimal CreateTableRequest.
pub fn create_table_body(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "schema": {
            "type": "struct",
            "schema-id": 0,
            "fields": [
                {"id": 1, "name": "id", "required": true, "type": "long"},
                {"id": 2, "name": "ts", "required": false, "type": "timestamp"},
                {"id": 3, "name": "category", "required": false, "type": "string"}
            ]
        },
        "partition-spec": {"spec-id": 0, "fields": [
            {"source-id": 2, "field-id": 1000, "name": "ts_day", "transform": "day"}
        ]},
        "write-order": {"order-id": 0, "fields": []},
        "properties": {"owner": "tests"}
    })
}

/// Now in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Updates that append snapshot `id` (sequence `seq`) of the table at
/// `location` and point `main` at it (its manifest list is not written).
pub fn append_updates(location: &str, id: i64, parent: Option<i64>, seq: i64) -> Value {
    let mut snapshot = serde_json::json!({
        "snapshot-id": id,
        "sequence-number": seq,
        "timestamp-ms": now_ms(),
        "manifest-list": format!("{location}/metadata/snap-{id}.avro"),
        "summary": {"operation": "append"},
        "schema-id": 0
    });
    if let Some(p) = parent {
        snapshot["parent-snapshot-id"] = p.into();
    }
    serde_json::json!([
        {"action": "add-snapshot", "snapshot": snapshot},
        {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id}
    ])
}

/// Generates `#[tokio::test]` functions for both backends from one async fn.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}
