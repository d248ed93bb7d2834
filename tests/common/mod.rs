//! Real processes on real sockets: the `floe` binary and helper servers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed when dropped, with its output in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit after SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The all-in-one binary.
pub fn floe_bin() -> &'static str {
    env!("CARGO_BIN_EXE_floe")
}

/// A running `floe` server.
pub struct Floe {
    pub proc: Proc,
    /// The edge (what clients use).
    pub url: String,
    /// The origin behind it (internal endpoints are not served by the edge).
    pub origin_url: String,
    pub http: reqwest::Client,
}

impl Floe {
    /// Starts `floe` with `args` and `envs` in `dir` on a free port, waits for `/ready`.
    pub async fn start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Floe {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let origin_listen = format!("127.0.0.1:{}", free_port());
        let metrics_listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(floe_bin());
        cmd.current_dir(dir)
            .args(["--listen", &listen])
            .args(["--origin-listen", &origin_listen])
            .args(["--edge-metrics-listen", &metrics_listen])
            .args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(cmd, dir.join(format!("floe-{port}.log")));
        let url = format!("http://{listen}");
        let http = reqwest::Client::new();
        let ready = format!("{url}/ready");
        let mut floe = Floe {
            proc,
            origin_url: format!("http://{origin_listen}"),
            url: url.clone(),
            http,
        };
        let client = floe.http.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&ready).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = floe.proc.child.try_wait().expect("wait") {
                panic!("floe exited with {status}:\n{}", floe.proc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "floe not ready:\n{}",
                floe.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        floe
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request")
    }
}

/// A CreateTableRequest with a small schema.
pub fn table_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": true, "type": "long"},
            {"id": 2, "name": "v", "required": false, "type": "string"}
        ]}
    })
}

/// Runs `floe` to completion with `args` (a CLI subcommand) and returns stdout.
pub fn floe_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(floe_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run floe");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Path of the repository's Python venv tool `name` (made by scripts/test).
pub fn venv_tool(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test once (it creates the test venv)",
        path.display()
    );
    path
}

/// Reads NDJSON frames from a streaming response.
pub struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(resp: reqwest::Response) -> Self {
        Lines {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the stream; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line[..line.len() - 1]).expect("json line"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {timeout:?}");
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None) | Err(_)) => return None,
                Err(_) => panic!("no event within {timeout:?}"),
            }
        }
    }

    /// The next `change` frame, skipping pings.
    pub async fn next_change(&mut self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no change within {timeout:?}");
            let frame = self.next(left).await.expect("stream ended");
            if frame["type"] == "change" {
                return frame;
            }
        }
    }
}

pub use floe_shared::testkit::PgDb;
