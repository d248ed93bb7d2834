//! Origin configuration: defaults, then a YAML file, then `FLOE_…` environment
//! variables, then command-line flags; `validate()` last.
//!
//! Environment variables map onto keys with `__` between levels:
//! `FLOE_DATABASE__URL` sets `database.url`, `FLOE_SERVER__LISTEN` sets
//! `server.listen`. They are read through [`ConfigSource`] so tests never touch
//! the process environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use floe_shared::pool::PoolConfig;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "FLOE_";

pub use floe_shared::config::{ConfigSource, ProcessEnv, StaticEnv};

/// The whole origin configuration (`conf/origin.yaml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Catalog database.
    pub database: DatabaseConfig,
    /// The default warehouse, created (or updated) at start-up.
    pub warehouse: WarehouseConfig,
    /// Catalog behaviour.
    pub catalog: CatalogSettings,
    /// Buffer pools.
    pub pools: PoolsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication and authorization (off by default: local use only).
    pub auth: floe_shared::auth::AuthConfig,
}

/// Buffer pools of the origin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PoolsConfig {
    /// Buffers every JSON response body is serialized into.
    pub json: PoolConfig,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerConfig {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// Serve on a non-loopback address with authentication off. Refused at
    /// start-up unless set: anyone who reaches such an origin can read and
    /// change every table.
    pub allow_unauthenticated_network: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8181)),
            body_limit_bytes: 16 * 1024 * 1024,
            shutdown_grace_seconds: 30,
            allow_unauthenticated_network: false,
        }
    }
}

/// Catalog database settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before 503.
    pub acquire_timeout_ms: u64,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/floe.db?mode=rwc".to_string(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout_ms: 5000,
            migrate_on_start: true,
        }
    }
}

/// A warehouse: a name (also its URL prefix) and a storage location.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WarehouseConfig {
    /// Name, also the `{prefix}` in `/v1/{prefix}/…`.
    pub name: String,
    /// Root of the warehouse: `file:///abs/path`, a relative path, or `s3://bucket/path`.
    pub location: String,
    /// S3 settings, used when the location is `s3://`.
    pub s3: S3Config,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            name: "default".to_string(),
            location: "data/warehouse".to_string(),
            s3: S3Config::default(),
        }
    }
}

/// S3 storage settings of a warehouse.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct S3Config {
    /// Custom endpoint (S3-compatible servers), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region name.
    pub region: Option<String>,
    /// Path-style addressing instead of virtual-hosted buckets.
    pub path_style_access: bool,
    /// Static access key id.
    pub access_key_id: Option<String>,
    /// Static secret key (never logged, never sent to clients).
    pub secret_access_key: Option<String>,
    /// What clients may get through `X-Iceberg-Access-Delegation`.
    pub delegation: DelegationConfig,
}

/// How a warehouse delegates storage access to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DelegationConfig {
    /// Answer to `vended-credentials`: `none`, `static` (the client key pair
    /// below, the same for every table) or `assume-role` (short-lived STS
    /// credentials scoped to the table's location, read-only for principals
    /// without write access).
    pub vended: VendedMode,
    /// `static`: the key id handed to clients (not the catalog's own).
    pub client_access_key_id: Option<String>,
    /// `static`: its secret.
    pub client_secret_access_key: Option<String>,
    /// `assume-role`: the role assumed with the warehouse's own key.
    pub role_arn: Option<String>,
    /// `assume-role`: the external id the role's trust policy asks for.
    pub external_id: Option<String>,
    /// `assume-role`: STS endpoint; default `https://sts.<region>.amazonaws.com`.
    pub sts_endpoint: Option<String>,
    /// `assume-role`: lifetime of vended credentials (900 to 43200).
    pub duration_seconds: u32,
    /// Answer `remote-signing`: clients send each S3 request to
    /// `…/tables/{t}/sign` and the catalog signs it with its own key,
    /// for objects under the table's location only.
    pub remote_signing: bool,
}

impl Default for DelegationConfig {
    fn default() -> Self {
        Self {
            vended: VendedMode::None,
            client_access_key_id: None,
            client_secret_access_key: None,
            role_arn: None,
            external_id: None,
            sts_endpoint: None,
            duration_seconds: 3600,
            remote_signing: false,
        }
    }
}

/// Which credentials `vended-credentials` hands out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VendedMode {
    /// None: the header is ignored.
    #[default]
    None,
    /// A fixed client key pair.
    Static,
    /// STS AssumeRole, scoped to the table.
    AssumeRole,
}

impl VendedMode {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Static => "static",
            Self::AssumeRole => "assume-role",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "static" => Some(Self::Static),
            "assume-role" => Some(Self::AssumeRole),
            _ => None,
        }
    }
}

/// Warehouse property keys of the delegation settings (Floe's own keys,
/// kept beside the FileIO properties and never passed to FileIO).
pub mod delegation_keys {
    /// [`super::DelegationConfig::vended`].
    pub const VENDED: &str = "floe.vended-credentials";
    /// [`super::DelegationConfig::client_access_key_id`].
    pub const CLIENT_ACCESS_KEY_ID: &str = "floe.client.access-key-id";
    /// [`super::DelegationConfig::client_secret_access_key`].
    pub const CLIENT_SECRET_ACCESS_KEY: &str = "floe.client.secret-access-key";
    /// [`super::DelegationConfig::role_arn`].
    pub const ROLE_ARN: &str = "floe.sts.role-arn";
    /// [`super::DelegationConfig::external_id`].
    pub const EXTERNAL_ID: &str = "floe.sts.external-id";
    /// [`super::DelegationConfig::sts_endpoint`].
    pub const STS_ENDPOINT: &str = "floe.sts.endpoint";
    /// [`super::DelegationConfig::duration_seconds`].
    pub const DURATION_SECONDS: &str = "floe.sts.duration-seconds";
    /// [`super::DelegationConfig::remote_signing`].
    pub const REMOTE_SIGNING: &str = "floe.remote-signing";
    /// Prefix of every key here.
    pub const PREFIX: &str = "floe.";
}

/// Catalog behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CatalogSettings {
    /// Server-side retries of a commit that lost a race while its requirements still hold.
    pub commit_max_retries: u32,
    /// Page size when a client asks for paging (`pageToken`) without `pageSize`.
    pub default_page_size: u32,
    /// Largest page size honoured.
    pub max_page_size: u32,
    /// How long the outcome of a request with an `Idempotency-Key` is kept
    /// for replay (advertised as `idempotency-key-lifetime`).
    pub idempotency_key_lifetime_seconds: u64,
    /// Scan planning answers at once when it finishes within this budget,
    /// else with a plan id to poll (0: always asynchronous).
    pub plan_sync_budget_ms: u64,
    /// File scan tasks per page of a plan (one plan task each).
    pub plan_page_size: usize,
    /// How long a plan and its pages are kept.
    pub plan_ttl_seconds: u64,
    /// Plans one principal may have running at once on one origin; more
    /// are refused with 429.
    pub plan_max_running_per_principal: usize,
    /// File scan tasks one plan may select; a larger plan fails with 400
    /// (narrow it with a filter, or plan fewer snapshots).
    pub plan_max_tasks: usize,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            commit_max_retries: 16,
            default_page_size: 100,
            max_page_size: 1000,
            idempotency_key_lifetime_seconds: 1800,
            plan_sync_budget_ms: 2000,
            plan_page_size: 1000,
            plan_ttl_seconds: 3600,
            plan_max_running_per_principal: 4,
            plan_max_tasks: 1_000_000,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `floe_origin=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            format: "text".to_string(),
        }
    }
}

/// Command-line overrides for the common cases.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--database-url`
    pub database_url: Option<String>,
    /// `--warehouse`
    pub warehouse: Option<String>,
}

impl Config {
    /// Reads defaults, the optional YAML file, then environment overrides.
    pub fn load(file: Option<&Path>, env: &dyn ConfigSource) -> anyhow::Result<Self> {
        floe_shared::config::load_layered(
            file,
            env,
            floe_shared::config::EnvScheme {
                prefix: ENV_PREFIX,
                // The edge's variables, read by the edge (also in `floe`).
                others: &["FLOE_EDGE_"],
            },
        )
        .map_err(|e| anyhow::anyhow!(e))
    }

    /// Applies command-line flags.
    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(listen) = overrides.listen {
            self.server.listen = listen;
        }
        if let Some(url) = &overrides.database_url {
            self.database.url.clone_from(url);
        }
        if let Some(location) = &overrides.warehouse {
            self.warehouse.location.clone_from(location);
        }
    }

    /// Refuses to serve on a non-loopback address with authentication off,
    /// unless `server.allow_unauthenticated_network` says to. Checked when
    /// serving only: the CLI commands listen on nothing.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        let ip = self.server.listen.ip().to_canonical();
        if self.auth.enabled || self.server.allow_unauthenticated_network || ip.is_loopback() {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to serve on {} with authentication off: anyone who reaches it could read \
             and change every table. Set auth.enabled: true (see conf/production/origin.yaml), \
             listen on a loopback address, or accept the risk with \
             server.allow_unauthenticated_network: true \
             (FLOE_SERVER__ALLOW_UNAUTHENTICATED_NETWORK=true)",
            self.server.listen
        )
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            anyhow::bail!("database.url must start with sqlite: or postgres://");
        }
        if self.database.max_connections == 0 {
            anyhow::bail!("database.max_connections must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 {
            anyhow::bail!("server.body_limit_bytes must be at least 1024");
        }
        if self.catalog.default_page_size == 0
            || self.catalog.max_page_size < self.catalog.default_page_size
        {
            anyhow::bail!("catalog.default_page_size must be in 1..=catalog.max_page_size");
        }
        floe_shared::route::check_prefix(&self.warehouse.name)
            .map_err(|e| anyhow::anyhow!("warehouse.name: {e}"))?;
        crate::storage::normalize_location(&self.warehouse.location)
            .map_err(|e| anyhow::anyhow!("warehouse.location: {e}"))?;
        if self.catalog.plan_max_running_per_principal == 0 || self.catalog.plan_max_tasks == 0 {
            anyhow::bail!(
                "catalog.plan_max_running_per_principal and catalog.plan_max_tasks must be at least 1"
            );
        }
        if self.catalog.plan_page_size == 0 {
            anyhow::bail!("catalog.plan_page_size must be at least 1");
        }
        self.warehouse
            .s3
            .validate()
            .map_err(|e| anyhow::anyhow!("warehouse.{e}"))?;
        self.pools
            .json
            .validate()
            .map_err(|e| anyhow::anyhow!("pools.json: {e}"))?;
        if !["text", "json"].contains(&self.log.format.as_str()) {
            anyhow::bail!("log.format must be text or json");
        }
        self.auth.validate(false).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// The storage properties (FileIO keys) of the configured default warehouse.
    pub fn warehouse_properties(&self) -> BTreeMap<String, String> {
        self.warehouse.s3.to_properties()
    }
}

impl S3Config {
    /// FileIO property keys for this configuration.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                props.insert(k.to_string(), v.clone());
            }
        };
        put(iceberg::io::S3_ENDPOINT, &self.endpoint);
        put(iceberg::io::S3_REGION, &self.region);
        put(iceberg::io::S3_ACCESS_KEY_ID, &self.access_key_id);
        put(iceberg::io::S3_SECRET_ACCESS_KEY, &self.secret_access_key);
        if self.path_style_access {
            props.insert(
                iceberg::io::S3_PATH_STYLE_ACCESS.to_string(),
                "true".to_string(),
            );
        }
        props.extend(self.delegation.to_properties());
        props
    }

    /// Checks what the delegation settings need.
    pub fn validate(&self) -> Result<(), String> {
        self.delegation.validate()
    }
}

impl DelegationConfig {
    /// Warehouse properties of these settings (none when all are defaults).
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        use delegation_keys as k;
        let mut props = BTreeMap::new();
        if self.vended != VendedMode::None {
            props.insert(k::VENDED.to_string(), self.vended.as_str().to_string());
            props.insert(
                k::DURATION_SECONDS.to_string(),
                self.duration_seconds.to_string(),
            );
        }
        for (key, value) in [
            (k::CLIENT_ACCESS_KEY_ID, &self.client_access_key_id),
            (k::CLIENT_SECRET_ACCESS_KEY, &self.client_secret_access_key),
            (k::ROLE_ARN, &self.role_arn),
            (k::EXTERNAL_ID, &self.external_id),
            (k::STS_ENDPOINT, &self.sts_endpoint),
        ] {
            if let Some(value) = value {
                props.insert(key.to_string(), value.clone());
            }
        }
        if self.remote_signing {
            props.insert(k::REMOTE_SIGNING.to_string(), "true".to_string());
        }
        props
    }

    /// The settings stored in warehouse properties.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Self {
        use delegation_keys as k;
        let get = |key: &str| props.get(key).cloned();
        let defaults = Self::default();
        Self {
            vended: props
                .get(k::VENDED)
                .and_then(|v| VendedMode::parse(v))
                .unwrap_or_default(),
            client_access_key_id: get(k::CLIENT_ACCESS_KEY_ID),
            client_secret_access_key: get(k::CLIENT_SECRET_ACCESS_KEY),
            role_arn: get(k::ROLE_ARN),
            external_id: get(k::EXTERNAL_ID),
            sts_endpoint: get(k::STS_ENDPOINT),
            duration_seconds: props
                .get(k::DURATION_SECONDS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(defaults.duration_seconds),
            remote_signing: props.get(k::REMOTE_SIGNING).is_some_and(|v| v == "true"),
        }
    }

    /// Checks that each mode has what it needs.
    pub fn validate(&self) -> Result<(), String> {
        match self.vended {
            VendedMode::None => {}
            VendedMode::Static => {
                if self.client_access_key_id.is_none() || self.client_secret_access_key.is_none() {
                    return Err(
                        "s3.delegation.vended: static needs client_access_key_id and \
                                client_secret_access_key"
                            .into(),
                    );
                }
            }
            VendedMode::AssumeRole => {
                if self.role_arn.is_none() {
                    return Err("s3.delegation.vended: assume-role needs role_arn".into());
                }
                if !(900..=43_200).contains(&self.duration_seconds) {
                    return Err("s3.delegation.duration_seconds must be 900 to 43200".into());
                }
            }
        }
        Ok(())
    }
}

/// Resolves the SQLite file of a `sqlite:` URL, to create its directory.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_mode() {
        let cfg = Config::load(None, &StaticEnv(&[])).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8181");
        assert!(cfg.database.url.starts_with("sqlite:"));
        cfg.validate().unwrap();
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origin.yaml");
        std::fs::write(
            &path,
            "server:\n  listen: 0.0.0.0:9000\ndatabase:\n  url: postgres://a@h/db\n  max_connections: 4\n",
        )
        .unwrap();
        let env = [
            ("FLOE_DATABASE__MAX_CONNECTIONS", "7"),
            ("FLOE_WAREHOUSE__S3__PATH_STYLE_ACCESS", "true"),
            ("OTHER", "ignored"),
        ];
        let mut cfg = Config::load(Some(&path), &StaticEnv(&env)).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.database.url, "postgres://a@h/db");
        assert_eq!(cfg.database.max_connections, 7);
        assert!(cfg.warehouse.s3.path_style_access);
        cfg.apply(&Overrides {
            database_url: Some("sqlite::memory:".into()),
            ..Default::default()
        });
        assert_eq!(cfg.database.url, "sqlite::memory:");
        cfg.validate().unwrap();
    }

    #[test]
    fn unauthenticated_network_listeners_need_the_opt_in() {
        let mut cfg = Config::default();
        cfg.check_exposure().expect("loopback is fine");
        for listen in [
            "0.0.0.0:8182",
            "10.0.0.5:8182",
            "[::]:8182",
            "[::ffff:10.0.0.5]:8182",
        ] {
            cfg.server.listen = listen.parse().unwrap();
            cfg.server.allow_unauthenticated_network = false;
            let e = cfg.check_exposure().expect_err(listen).to_string();
            assert!(e.contains("server.allow_unauthenticated_network"), "{e}");
            cfg.server.allow_unauthenticated_network = true;
            cfg.check_exposure().expect("opted in");
        }
        cfg.server.allow_unauthenticated_network = false;
        cfg.auth.enabled = true;
        cfg.check_exposure().expect("authenticated");
        cfg.auth.enabled = false;
        for listen in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            cfg.server.listen = listen.parse().unwrap();
            cfg.check_exposure().expect(listen);
        }
        let env = [("FLOE_SERVER__ALLOW_UNAUTHENTICATED_NETWORK", "true")];
        let cfg = Config::load(None, &StaticEnv(&env)).unwrap();
        assert!(cfg.server.allow_unauthenticated_network);
    }

    #[test]
    fn invalid_values_are_refused() {
        let env = [("FLOE_DATABASE__URL", "mysql://x")];
        let cfg = Config::load(None, &StaticEnv(&env)).unwrap();
        assert!(cfg.validate().is_err());
        let env = [("FLOE_DATABASE__MAX_CONNECTIONS", "many")];
        assert!(Config::load(None, &StaticEnv(&env)).is_err());
        assert!(Config::load(Some(Path::new("/nonexistent/x.yaml")), &StaticEnv(&[])).is_err());
    }

    fn load_err(yaml: Option<&str>, env: &[(&str, &str)]) -> (String, PathBuf) {
        floe_shared::testkit::config_error("origin.yaml", yaml, env, Config::load)
    }

    #[test]
    fn a_misspelt_key_of_any_section_is_named_with_the_file_and_the_right_key() {
        floe_shared::testkit::assert_typos_named::<Config, _>("origin.yaml", 31, Config::load);
        // Deeper levels too, and the issue's own example.
        let (e, _) = load_err(Some("server: {listn: 1}\n"), &[]);
        assert!(
            e.ends_with("unknown key `server.listn`; did you mean `listen`?"),
            "{e}"
        );
        let (e, _) = load_err(
            Some("warehouse:\n  s3:\n    delegation:\n      vendd: static\n"),
            &[],
        );
        assert!(
            e.contains("`warehouse.s3.delegation.vendd`; did you mean `vended`?"),
            "{e}"
        );
        // A key nothing resembles: the valid ones are listed.
        let (e, _) = load_err(Some("log:\n  zzzzzzzzzz: 1\n"), &[]);
        assert!(
            e.contains("`log.zzzzzzzzzz`; valid keys here: format, level"),
            "{e}"
        );
    }

    #[test]
    fn unknown_configuration_variables_are_named_other_floe_variables_left_alone() {
        let (e, _) = load_err(None, &[("FLOE_SERVER__LISTN", "127.0.0.1:1")]);
        assert_eq!(
            e,
            "environment variable FLOE_SERVER__LISTN: unknown configuration key \
             `server.listn`; did you mean FLOE_SERVER__LISTEN (`server.listen`)?"
        );
        // One `_` where a level needs `__`.
        let (e, _) = load_err(None, &[("FLOE_DATABASE_URL", "postgres://h/db")]);
        assert!(
            e.contains("did you mean FLOE_DATABASE__URL (`database.url`)?"),
            "{e}"
        );
        // A misspelt section.
        let (e, _) = load_err(None, &[("FLOE_DATABSE__URL", "postgres://h/db")]);
        assert!(
            e.starts_with("environment variable FLOE_DATABSE__URL:"),
            "{e}"
        );
        assert!(e.contains("FLOE_DATABASE"), "{e}");
        // Variables consumed elsewhere keep working: the edge's, the
        // configuration file's, the tests', the scripts'.
        let env = [
            ("FLOE_CONFIG", "/etc/floe/origin.yaml"),
            ("FLOE_EDGE_CONFIG", "/etc/floe/edge.yaml"),
            ("FLOE_EDGE_LISTEN", "127.0.0.1:1"),
            ("FLOE_EDGE_NOSUCH__KEY", "1"),
            ("FLOE_TEST_PG_URL", "postgres://postgres@127.0.0.1/postgres"),
            ("FLOE_TEST_BACKEND", "sqlite"),
            ("FLOE_BIN", "/bin/floe"),
            ("FLOE_PROFILE", "dev"),
            ("FLOE_CLIENT_SECRET_ACCESS_KEY", "s"),
            ("FLOE_S3_SECRET_ACCESS_KEY", "s"),
            ("FLOE_LOG__LEVEL", "debug"),
        ];
        let cfg = Config::load(None, &StaticEnv(&env)).unwrap();
        assert_eq!(cfg.log.level, "debug");
    }

    #[test]
    fn wrong_types_name_the_key_and_where_the_value_came_from() {
        let (e, path) = load_err(Some("server:\n  listen: here\n"), &[]);
        assert!(
            e.starts_with(&format!("{}: key `server.listen`:", path.display())),
            "{e}"
        );
        let (e, path) = load_err(Some("database:\n  max_connections: lots\n"), &[]);
        assert!(
            e.starts_with(&format!(
                "{}: key `database.max_connections`: invalid type",
                path.display()
            )),
            "{e}"
        );
        let (e, _) = load_err(
            Some("database:\n  max_connections: 4\n"),
            &[("FLOE_DATABASE__MAX_CONNECTIONS", "many")],
        );
        assert!(
            e.starts_with(
                "environment variable FLOE_DATABASE__MAX_CONNECTIONS: key `database.max_connections`:"
            ),
            "{e}"
        );
        let (e, path) = load_err(
            Some("warehouse:\n  s3:\n    delegation:\n      vended: sometimes\n"),
            &[],
        );
        assert!(
            e.starts_with(&format!(
                "{}: key `warehouse.s3.delegation.vended`:",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_file("sqlite://data/floe.db?mode=rwc"),
            Some(PathBuf::from("data/floe.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
