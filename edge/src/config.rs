//! Edge configuration (`conf/edge.yaml`): Pingora's server keys and Floe's.
//! Defaults, then the YAML file, then `FLOE_EDGE_<SECTION>__<KEY>`
//! environment variables, then flags; `validate()` last.

use std::path::Path;

use floe_shared::config::{ConfigSource, EnvScheme, load_layered};
use floe_shared::pool::PoolConfig;
use serde::{Deserialize, Serialize};

/// Prefix of the edge's environment overrides.
pub const ENV_PREFIX: &str = "FLOE_EDGE_";

/// The whole edge configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EdgeConfig {
    /// Addresses clients connect to (HTTP/1.1 and, with `h2c`, HTTP/2 prior knowledge).
    pub listen: Vec<String>,
    /// Accept HTTP/2 without TLS (prior knowledge) beside HTTP/1.1.
    pub h2c: bool,
    /// Address of the Prometheus `/metrics` endpoint; empty to disable.
    pub metrics_listen: String,
    /// Origin addresses (`host:port`), balanced round-robin.
    pub origins: Vec<String>,
    /// Serve clients on a non-loopback address with authentication off.
    /// Refused at start-up unless set: anyone who reaches such an edge can
    /// read and change every table.
    pub allow_unauthenticated_network: bool,
    /// Pingora's own server settings.
    pub server: PingoraSettings,
    /// Active health checks of the origins.
    pub health_check: HealthCheckSettings,
    /// Connections to the origins.
    pub upstream: UpstreamSettings,
    /// The table-load cache.
    pub cache: CacheSettings,
    /// Subscription to the origins' change events.
    pub events: EventSettings,
    /// Buffer pools.
    pub pools: EdgePools,
    /// Logging.
    pub log: LogSettings,
    /// Authentication: token issuance and verification (off by default: local use only).
    pub auth: floe_shared::auth::AuthConfig,
    /// TLS listeners.
    pub tls: TlsSettings,
    /// Request size limits.
    pub limits: LimitSettings,
}

/// TLS termination.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TlsSettings {
    /// Addresses served over TLS (HTTP/2 and HTTP/1.1 by ALPN).
    pub listen: Vec<String>,
    /// PEM certificate chain.
    pub cert_path: String,
    /// PEM private key.
    pub key_path: String,
}

/// Request size limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitSettings {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Largest token request body; larger gets 413.
    pub max_token_request_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_token_request_bytes: 16 * 1024,
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:8181".into()],
            h2c: true,
            metrics_listen: "127.0.0.1:9181".into(),
            origins: vec!["127.0.0.1:8182".into()],
            allow_unauthenticated_network: false,
            server: PingoraSettings::default(),
            health_check: HealthCheckSettings::default(),
            upstream: UpstreamSettings::default(),
            cache: CacheSettings::default(),
            events: EventSettings::default(),
            pools: EdgePools::default(),
            log: LogSettings::default(),
            auth: floe_shared::auth::AuthConfig::default(),
            tls: TlsSettings::default(),
            limits: LimitSettings::default(),
        }
    }
}

/// Pingora server keys (same names as Pingora's own YAML).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PingoraSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Pid file (used when daemonized).
    pub pid_file: String,
    /// Socket a new binary receives the listeners on during a graceful upgrade.
    pub upgrade_sock: String,
    /// Seconds between the shutdown signal and the start of the final shutdown.
    pub grace_period_seconds: u64,
    /// Seconds the final shutdown waits for in-flight requests.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle keep-alive connections kept to the origins.
    pub upstream_keepalive_pool_size: usize,
    /// One work-stealing runtime per service (true), or one single-threaded
    /// runtime per worker thread (false: no task migrates between threads).
    pub work_stealing: bool,
    /// Write buffer of each client connection, in bytes. A response whose
    /// head and body fit goes out in one `send` (one wake-up of the client)
    /// instead of two; larger bodies bypass the buffer. Allocated per open
    /// connection.
    pub write_buffer_bytes: usize,
}

impl Default for PingoraSettings {
    fn default() -> Self {
        Self {
            threads: 2,
            pid_file: "/tmp/floe-edge.pid".into(),
            upgrade_sock: "/tmp/floe-edge-upgrade.sock".into(),
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 10,
            upstream_keepalive_pool_size: 256,
            work_stealing: true,
            write_buffer_bytes: 16384,
        }
    }
}

/// Health checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthCheckSettings {
    /// Path requested on each origin; 200 means healthy.
    pub path: String,
    /// Milliseconds between checks.
    pub interval_ms: u64,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            path: "/ready".into(),
            interval_ms: 1000,
        }
    }
}

/// Origin connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UpstreamSettings {
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Per-read timeout.
    pub read_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout_ms: u64,
    /// Other origins tried after a connect failure (idempotent requests, or
    /// writes that carry an `Idempotency-Key`).
    pub retries: u32,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 1000,
            read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            retries: 2,
        }
    }
}

/// Table-load cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheSettings {
    /// Serve table loads from memory.
    pub enabled: bool,
    /// Upper bound of cached body bytes.
    pub max_bytes: usize,
    /// Larger responses are not cached.
    pub max_entry_bytes: usize,
    /// Entries older than this are revalidated with the origin, whatever the events said.
    pub max_age_seconds: u64,
    /// When no origin answers, cached loads younger than this are still served (marked stale).
    pub stale_if_error_seconds: u64,
    /// How long concurrent misses wait for the one request that fills the entry.
    pub coalesce_timeout_ms: u64,
    /// Counters invalidations are tracked in (8 bytes each, allocated once;
    /// rounded up to a power of two). Fewer slots: more spurious misses.
    pub generation_slots: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 32 * 1024 * 1024,
            max_age_seconds: 60,
            stale_if_error_seconds: 300,
            coalesce_timeout_ms: 5000,
            generation_slots: crate::cache::DEFAULT_GENERATION_SLOTS,
        }
    }
}

/// Change-event subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EventSettings {
    /// Subscribe to the origins' change events (without it, the cache is
    /// bounded by `cache.max_age_seconds` and local writes only).
    pub enabled: bool,
    /// Pause between reconnection attempts.
    pub reconnect_ms: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            reconnect_ms: 250,
        }
    }
}

/// Buffer pools of the edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EdgePools {
    /// Token bytes (issuance lands with authentication).
    pub tokens: PoolConfig,
}

impl Default for EdgePools {
    fn default() -> Self {
        Self {
            tokens: PoolConfig::tokens(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSettings {
    /// tracing filter.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl EdgeConfig {
    /// Reads defaults, the optional YAML file, then environment overrides.
    pub fn load(file: Option<&Path>, env: &dyn ConfigSource) -> anyhow::Result<Self> {
        load_layered(
            file,
            env,
            EnvScheme {
                prefix: ENV_PREFIX,
                others: &[],
            },
        )
        .map_err(|e| anyhow::anyhow!(e))
    }

    /// Refuses to serve clients on a non-loopback address with
    /// authentication off, unless `allow_unauthenticated_network` says to.
    /// (`metrics_listen` is not a client address: it is never authenticated
    /// and serves counts only.)
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if self.auth.enabled || self.allow_unauthenticated_network {
            return Ok(());
        }
        for addr in self.listen.iter().chain(&self.tls.listen) {
            if !is_loopback(addr) {
                anyhow::bail!(
                    "refusing to serve clients on {addr} with authentication off: anyone who \
                     reaches it could read and change every table. Set auth.enabled: true (see \
                     conf/production/edge.yaml), listen on a loopback address, or accept the risk \
                     with allow_unauthenticated_network: true \
                     (FLOE_EDGE_ALLOW_UNAUTHENTICATED_NETWORK=true)"
                );
            }
        }
        Ok(())
    }

    /// What `check-config` checks once the configuration has loaded: the
    /// values ([`Self::validate`]) and the exposure rule.
    pub fn check(&self) -> anyhow::Result<()> {
        self.validate()?;
        self.check_exposure()
    }

    /// The one-line verdict of `check-config`.
    pub fn summary(&self) -> String {
        format!(
            "edge configuration: ok (listen {}, origins {}, metrics {}, auth {})",
            self.listen.join(" "),
            self.origins.join(" "),
            if self.metrics_listen.is_empty() {
                "off"
            } else {
                &self.metrics_listen
            },
            if self.auth.enabled { "on" } else { "off" }
        )
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listen.is_empty() && self.tls.listen.is_empty() {
            anyhow::bail!("listen or tls.listen needs at least one address");
        }
        if self.origins.is_empty() {
            anyhow::bail!("origins needs at least one address");
        }
        for addr in self
            .listen
            .iter()
            .chain(&self.origins)
            .chain(&self.tls.listen)
        {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("{addr}: {e} (use ip:port)"))?;
        }
        if !self.metrics_listen.is_empty() {
            let metrics: std::net::SocketAddr = self
                .metrics_listen
                .parse()
                .map_err(|e| anyhow::anyhow!("metrics_listen: {e}"))?;
            // One socket cannot serve two services: clients would reach the
            // metrics endpoint and scrapers the proxy.
            let clash = self
                .listen
                .iter()
                .chain(&self.tls.listen)
                .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
                .any(|a| {
                    a.port() == metrics.port()
                        && (a.ip() == metrics.ip()
                            || a.ip().is_unspecified()
                            || metrics.ip().is_unspecified())
                });
            if clash {
                anyhow::bail!(
                    "metrics_listen {} is also a client address: give it a port of its own",
                    self.metrics_listen
                );
            }
        }
        if self.server.threads == 0 {
            anyhow::bail!("server.threads must be at least 1");
        }
        if !(512..=4 << 20).contains(&self.server.write_buffer_bytes) {
            anyhow::bail!("server.write_buffer_bytes must be between 512 and 4194304");
        }
        if self.cache.max_entry_bytes > self.cache.max_bytes {
            anyhow::bail!("cache.max_entry_bytes must not exceed cache.max_bytes");
        }
        if !(64..=1 << 24).contains(&self.cache.generation_slots) {
            anyhow::bail!("cache.generation_slots must be between 64 and 16777216");
        }
        self.pools
            .tokens
            .validate()
            .map_err(|e| anyhow::anyhow!("pools.tokens: {e}"))?;
        if !self.tls.listen.is_empty() {
            for (key, path) in [
                ("tls.cert_path", &self.tls.cert_path),
                ("tls.key_path", &self.tls.key_path),
            ] {
                if !Path::new(path).is_file() {
                    anyhow::bail!("{key}: {path:?} is not a readable file");
                }
            }
        }
        if self.limits.max_header_bytes < 1024 || self.limits.max_body_bytes < 1024 {
            anyhow::bail!(
                "limits.max_header_bytes and limits.max_body_bytes must be at least 1024"
            );
        }
        self.auth.validate(true).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Whether `addr` (`ip:port`) is a loopback address; anything that does not
/// parse counts as exposed.
fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use floe_shared::config::StaticEnv;

    use super::*;

    #[test]
    fn defaults_validate_and_env_overrides() {
        let cfg = EdgeConfig::load(None, &StaticEnv(&[])).unwrap();
        assert_eq!(cfg, EdgeConfig::default());
        cfg.validate().unwrap();
        let env = [
            ("FLOE_EDGE_CACHE__MAX_AGE_SECONDS", "7"),
            ("FLOE_EDGE_SERVER__THREADS", "4"),
            ("FLOE_DATABASE__URL", "not for the edge"),
        ];
        let cfg = EdgeConfig::load(None, &StaticEnv(&env)).unwrap();
        assert_eq!(cfg.cache.max_age_seconds, 7);
        assert_eq!(cfg.server.threads, 4);
    }

    #[test]
    fn the_metrics_listener_never_shares_a_client_address() {
        let with = |listen: &str, metrics: &str| EdgeConfig {
            listen: vec![listen.to_string()],
            metrics_listen: metrics.to_string(),
            ..EdgeConfig::default()
        };
        for (listen, metrics) in [
            ("127.0.0.1:8181", "127.0.0.1:8181"),
            ("0.0.0.0:8181", "127.0.0.1:8181"),
            ("127.0.0.1:8181", "0.0.0.0:8181"),
        ] {
            let e = with(listen, metrics).validate().expect_err("refused");
            assert!(e.to_string().contains("port of its own"), "{e}");
        }
        with("127.0.0.1:8181", "127.0.0.1:9181")
            .validate()
            .expect("distinct ports");
        with("127.0.0.1:8181", "127.0.0.2:8181")
            .validate()
            .expect("distinct addresses");
    }

    fn load_err(yaml: Option<&str>, env: &[(&str, &str)]) -> (String, std::path::PathBuf) {
        floe_shared::testkit::config_error("edge.yaml", yaml, env, EdgeConfig::load)
    }

    #[test]
    fn a_misspelt_key_of_any_section_is_named_with_the_file_and_the_right_key() {
        floe_shared::testkit::assert_typos_named::<EdgeConfig, _>(
            "edge.yaml",
            41,
            EdgeConfig::load,
        );
        let (e, _) = load_err(
            Some("auth:\n  rate_limit:\n    failures_per_adress_per_minute: 3\n"),
            &[],
        );
        assert!(
            e.contains("`auth.rate_limit.failures_per_adress_per_minute`; did you mean `failures_per_address_per_minute`?"),
            "{e}"
        );
    }

    #[test]
    fn unknown_variables_and_wrong_types_are_named() {
        let (e, _) = load_err(None, &[("FLOE_EDGE_LISTN", "127.0.0.1:1")]);
        assert_eq!(
            e,
            "environment variable FLOE_EDGE_LISTN: unknown configuration key `listn`; did you \
             mean FLOE_EDGE_LISTEN (`listen`)?"
        );
        let (e, _) = load_err(None, &[("FLOE_EDGE_CACHE__MAX_BYTE", "1")]);
        assert!(
            e.contains("did you mean FLOE_EDGE_CACHE__MAX_BYTES (`cache.max_bytes`)?"),
            "{e}"
        );
        let (e, _) = load_err(None, &[("FLOE_EDGE_CACHE_MAX_BYTES", "1")]);
        assert!(
            e.contains("did you mean FLOE_EDGE_CACHE__MAX_BYTES (`cache.max_bytes`)?"),
            "{e}"
        );
        let (e, path) = load_err(Some("server:\n  threads: two\n"), &[]);
        assert!(
            e.starts_with(&format!(
                "{}: key `server.threads`: invalid type",
                path.display()
            )),
            "{e}"
        );
        let (e, _) = load_err(None, &[("FLOE_EDGE_H2C", "sometimes")]);
        assert!(
            e.starts_with("environment variable FLOE_EDGE_H2C: key `h2c`:"),
            "{e}"
        );
        // Not the edge's: left alone.
        let env = [
            ("FLOE_EDGE_CONFIG", "/etc/floe/edge.yaml"),
            ("FLOE_CONFIG", "/etc/floe/origin.yaml"),
            ("FLOE_SERVER__LISTN", "typo, but the origin's"),
            ("FLOE_TEST_PG_URL", "postgres://x"),
        ];
        EdgeConfig::load(None, &StaticEnv(&env)).unwrap();
    }

    #[test]
    fn shipped_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/edge.yaml");
        let cfg = EdgeConfig::load(Some(&path), &StaticEnv(&[])).unwrap();
        assert_eq!(cfg, EdgeConfig::default());
    }

    #[test]
    fn production_example_validates_with_its_files_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let key = floe_shared::testkit::ed25519_key_file(dir.path(), "floe-1.pem");
        let tls = rcgen::generate_simple_self_signed(vec!["edge.example".to_string()]).unwrap();
        let cert = dir.path().join("edge.crt");
        let tls_key = dir.path().join("edge.key");
        std::fs::write(&cert, tls.cert.pem()).unwrap();
        std::fs::write(&tls_key, tls.signing_key.serialize_pem()).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/production/edge.yaml");
        let (cert, tls_key) = (cert.display().to_string(), tls_key.display().to_string());
        let env = [
            ("FLOE_EDGE_AUTH__SIGNING_KEY__PATH", key.as_str()),
            ("FLOE_EDGE_TLS__CERT_PATH", cert.as_str()),
            ("FLOE_EDGE_TLS__KEY_PATH", tls_key.as_str()),
        ];
        let cfg = EdgeConfig::load(Some(&path), &StaticEnv(&env)).unwrap();
        assert!(cfg.auth.enabled && cfg.listen.is_empty() && !cfg.tls.listen.is_empty());
        cfg.validate().unwrap();
        let without = EdgeConfig::load(Some(&path), &StaticEnv(&[])).unwrap();
        assert!(
            without.validate().is_err(),
            "missing key and certificate files"
        );
    }

    #[test]
    fn unauthenticated_network_listeners_need_the_opt_in() {
        let cfg = EdgeConfig::default();
        cfg.check_exposure().expect("loopback is fine");
        // (listener, on the network): only those need the opt-in; the
        // metrics listener never counts.
        for (listen, network) in [
            ("0.0.0.0:8181", true),
            ("10.0.0.5:8181", true),
            ("[::]:8181", true),
            ("[::ffff:10.0.0.5]:8181", true),
            ("127.0.0.1:1", false),
            ("127.8.9.10:1", false),
            ("[::1]:1", false),
            ("[::ffff:127.0.0.1]:1", false),
        ] {
            let cfg = EdgeConfig {
                listen: vec![listen.into()],
                metrics_listen: "0.0.0.0:9181".into(),
                ..EdgeConfig::default()
            };
            match cfg.check_exposure() {
                Ok(()) => assert!(!network, "{listen} served without the opt-in"),
                Err(e) => {
                    assert!(network, "{listen} refused: {e}");
                    assert!(
                        e.to_string().contains("allow_unauthenticated_network"),
                        "{e}"
                    );
                }
            }
            let cfg = EdgeConfig {
                allow_unauthenticated_network: true,
                ..cfg
            };
            cfg.check_exposure().expect("opted in");
        }
        let mut cfg = EdgeConfig::default();
        cfg.tls.listen = vec!["0.0.0.0:8443".into()];
        assert!(cfg.check_exposure().is_err(), "TLS listeners count too");
        cfg.auth.enabled = true;
        cfg.check_exposure().expect("authenticated");
        let env = [("FLOE_EDGE_ALLOW_UNAUTHENTICATED_NETWORK", "true")];
        let cfg = EdgeConfig::load(None, &StaticEnv(&env)).unwrap();
        assert!(cfg.allow_unauthenticated_network);
    }

    #[test]
    fn bad_values_are_refused() {
        let cfg = EdgeConfig {
            origins: vec!["not-an-address".into()],
            ..EdgeConfig::default()
        };
        assert!(cfg.validate().is_err());
        let mut cfg = EdgeConfig::default();
        cfg.cache.max_entry_bytes = cfg.cache.max_bytes + 1;
        assert!(cfg.validate().is_err());
        for slots in [0, 63, (1 << 24) + 1] {
            let mut cfg = EdgeConfig::default();
            cfg.cache.generation_slots = slots;
            assert!(cfg.validate().is_err(), "generation_slots {slots}");
        }
        for bytes in [0, 511, (4 << 20) + 1] {
            let mut cfg = EdgeConfig::default();
            cfg.server.write_buffer_bytes = bytes;
            assert!(cfg.validate().is_err(), "write_buffer_bytes {bytes}");
        }
    }
}
