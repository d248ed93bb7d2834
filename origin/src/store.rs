//! The catalog database: one store over sqlx's `Any` driver, so PostgreSQL
//! (production) and SQLite (embedded default) run the same statements.
//!
//! Every write is a single statement whose outcome the database decides:
//! uniqueness and foreign keys answer "already exists" and "not empty", and a
//! table commit is a compare-and-set on the metadata pointer. There is no
//! read-then-write transaction for a racing client to slip into, and SQLite
//! never has to upgrade a read lock. Database errors become catalog errors
//! here and nowhere else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::ErrorKind;
use sqlx::{AnyPool, Row};

use floe_shared::auth::{ApiKeyRecord, Grant, Principal};

use crate::config::DatabaseConfig;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;

/// The compare-and-set of a table's metadata pointer ($5 = id, $6 = expected location).
const SWAP_POINTER: &str = "UPDATE tables SET metadata_location = $1, metadata = $2, \
     metadata_refs = $3, version = version + 1, updated_at = $4 \
     WHERE id = $5 AND metadata_location = $6";

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

/// Separator of namespace levels inside the stored name (and on the wire).
pub const NAMESPACE_SEPARATOR: char = '\u{1f}';

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A warehouse row.
#[derive(Debug, Clone, PartialEq)]
pub struct WarehouseRecord {
    /// Surrogate id.
    pub id: String,
    /// Name and URL prefix.
    pub name: String,
    /// Normalized storage root (`file:///…` or `s3://…`), no trailing slash.
    pub location: String,
    /// FileIO properties (S3 endpoint, region, keys…).
    pub properties: BTreeMap<String, String>,
}

/// A namespace row.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRecord {
    /// Surrogate id.
    pub id: String,
    /// Levels of the namespace.
    pub levels: Vec<String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Bumped on every property change (compare-and-set).
    pub version: i64,
}

/// A table row: its pointer and the current metadata document beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRecord {
    /// Surrogate id.
    pub id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// Table name.
    pub name: String,
    /// Location of the current metadata file.
    pub metadata_location: String,
    /// The current metadata document (JSON), or its `snapshots=refs` form when asked.
    pub metadata: String,
    /// Commit counter.
    pub version: i64,
}

/// What a catalog object is: tables and views share one name space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An Iceberg table.
    Table,
    /// An Iceberg view.
    View,
}

impl ObjectKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::View => "view",
        }
    }

    fn parse(stored: &str) -> Result<Self> {
        match stored {
            "table" => Ok(Self::Table),
            "view" => Ok(Self::View),
            other => Err(CatalogError::Internal(format!(
                "unknown object kind in database: {other}"
            ))),
        }
    }
}

/// A new metadata version to store.
#[derive(Debug, Clone)]
pub struct TableDocs {
    /// Location of the metadata file just written.
    pub metadata_location: String,
    /// Full metadata JSON.
    pub metadata: String,
    /// `snapshots=refs` JSON when it differs from the full document.
    pub metadata_refs: Option<String>,
}

/// The 400 for a location another live object's location overlaps.
pub(crate) fn overlap_error(location: &str) -> CatalogError {
    CatalogError::BadRequest(format!(
        "Storage confinement: location {location} overlaps the location of another table or \
         view (a location may neither contain nor lie inside another's)"
    ))
}

/// One compare-and-set of [`Store::swap_many`]: object id, expected
/// metadata location, the new documents, and the new location when it moves.
pub type Swap<'a> = (&'a str, &'a str, &'a TableDocs, Option<&'a StoragePath>);

/// The query for live objects overlapping `location` (its binds, in order):
/// every key of a path containing it, or any key in `[key, key')` where
/// `key'` follows every key that starts with `key`.
fn overlap_query(location: &StoragePath, except: Option<&str>) -> (String, Vec<String>) {
    let ancestors = location.ancestor_keys();
    let key = location.key();
    let mut upper = key.clone();
    upper.pop();
    upper.push('0'); // the byte after '/'
    let mut binds = Vec::with_capacity(ancestors.len() + 3);
    let mut placeholders = Vec::with_capacity(ancestors.len());
    for ancestor in ancestors {
        binds.push(ancestor);
        placeholders.push(format!("${}", binds.len()));
    }
    binds.push(key);
    let low = binds.len();
    binds.push(upper);
    let high = binds.len();
    let mut sql = format!(
        "SELECT location_key FROM tables WHERE (location_key IN ({}) \
         OR (location_key >= ${low} AND location_key < ${high}))",
        placeholders.join(", ")
    );
    if let Some(except) = except {
        binds.push(except.to_string());
        sql.push_str(&format!(" AND id <> ${}", binds.len()));
    }
    (sql, binds)
}

/// The catalog database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    health: Arc<Health>,
    /// This origin process (owner of its Idempotency-Key claims).
    instance: Arc<str>,
}

tokio::task_local! {
    /// The Idempotency-Key of the request this task serves: the effect of
    /// that request is recorded in the key's row in the same database
    /// transaction ([`Store::effect`]).
    pub static IDEMPOTENCY_KEY: String;
}

/// The key of the keyed request this task serves, if any.
fn current_key() -> Option<String> {
    IDEMPOTENCY_KEY.try_with(Clone::clone).ok()
}

/// A claim whose owner has not been seen for this long was abandoned.
const OWNER_SILENT_MS: i64 = 5_000;

/// Whether the database answers, as the probe ([`Store::watch_health`])
/// last saw it.
#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
    /// When the database last came back (ms since the epoch): pooled
    /// connections opened before it belong to the server that went away.
    recovered_at_ms: AtomicI64,
}

/// How long the probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Between probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Joins namespace levels into the stored form.
pub fn join_levels(levels: &[String]) -> String {
    levels.join(&NAMESPACE_SEPARATOR.to_string())
}

fn split_levels(name: &str) -> Vec<String> {
    name.split(NAMESPACE_SEPARATOR)
        .map(str::to_string)
        .collect()
}

fn props_to_json(props: &BTreeMap<String, String>) -> Result<String> {
    Ok(serde_json::to_string(props)?)
}

fn props_from_json(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text)
        .map_err(|e| CatalogError::Internal(format!("corrupt properties in database: {e}")))
}

/// Maps a constraint violation to the catalog error the caller names, and
/// anything else through the generic conversion.
fn constraint(
    err: sqlx::Error,
    unique: impl FnOnce() -> CatalogError,
    foreign_key: impl FnOnce() -> CatalogError,
) -> CatalogError {
    if let sqlx::Error::Database(db) = &err {
        match db.kind() {
            ErrorKind::UniqueViolation => return unique(),
            ErrorKind::ForeignKeyViolation => return foreign_key(),
            _ => {}
        }
    }
    CatalogError::from(err)
}

/// Applied migrations against the ones this binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Migrations this binary knows.
    pub known: usize,
    /// Known versions not applied yet.
    pub pending: Vec<i64>,
    /// Applied versions this binary does not know (a newer Floe migrated).
    pub unknown: Vec<i64>,
    /// Versions whose migration failed part-way.
    pub failed: Vec<i64>,
}

fn is_missing_table(e: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL: undefined_table; SQLite has no code, only the message.
    e.code().as_deref() == Some("42P01") || e.message().contains("no such table")
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Connects once to the PostgreSQL server of `url`, within `timeout`, and
/// reports a failure with the server's host and port, the user and database,
/// and the cause in words (never the password).
pub async fn probe_postgres(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "database.url {} is not a valid PostgreSQL URL: {e}",
            redact_url(url)
        )
    })?;
    let place = format!(
        "PostgreSQL at {}:{} (user {}, database {})",
        options.get_host(),
        options.get_port(),
        options.get_username(),
        options.get_database().unwrap_or(options.get_username())
    );
    let cause = match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        Ok(Err(e)) => connect_cause(&e),
        Err(_) => format!(
            "no answer within {} ms (database.acquire_timeout_ms): a firewall dropping packets, \
             or a server too busy to accept",
            timeout.as_millis()
        ),
    };
    anyhow::bail!("cannot connect to {place}: {cause}")
}

/// The cause of a failed connection attempt, in words.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (nothing listens on that port: is PostgreSQL running, on that port?)"
                    .to_string()
            }
            std::io::ErrorKind::TimedOut => format!("connection timed out ({io})"),
            _ if io.to_string().contains("lookup address")
                || io.to_string().contains("Name or service not known")
                || io.to_string().contains("nodename nor servname") =>
            {
                format!("the host name does not resolve (DNS failure: {io})")
            }
            _ => format!("network error: {io}"),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => {
                format!("authentication failed ({})", db.message())
            }
            Some("3D000") => format!(
                "the database does not exist ({}); create it, or fix the URL's path",
                db.message()
            ),
            Some("53300") => format!("the server has no connection slots left ({})", db.message()),
            Some(code) => format!("the server refused the connection: {} (SQLSTATE {code})", db.message()),
            None => format!("the server refused the connection: {}", db.message()),
        },
        sqlx::Error::Tls(t) => format!("TLS failed: {t}"),
        other => other.to_string(),
    }
}

impl Store {
    /// Opens the pool (creating the SQLite file and its directory if needed).
    pub async fn connect(cfg: &DatabaseConfig) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if cfg.url.starts_with("sqlite:") {
            if let Some(path) = crate::config::sqlite_file(&cfg.url)
                && let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Postgres {
            // One direct attempt first: a database that cannot be reached is
            // reported with its address and the cause, not as a pool timeout.
            probe_postgres(&cfg.url, Duration::from_millis(cfg.acquire_timeout_ms)).await?;
        }
        let health = Arc::new(Health::default());
        let probe = health.clone();
        let mut options = AnyPoolOptions::new()
            .max_connections(cfg.max_connections)
            .min_connections(cfg.min_connections)
            .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
            // sqlx pings a connection when it goes back to the pool; pinging it
            // again on the way out costs every query a second round trip. Only
            // connections idle long enough to have gone stale are tested.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                // A connection older than the database's last return is to
                // a server that went away: dropped, not used (its first
                // query would fail a request a fresh connection serves).
                let opened_ms = now_ms() - i64::try_from(meta.age.as_millis()).unwrap_or(i64::MAX);
                let stale = opened_ms < probe.recovered_at_ms.load(Ordering::Relaxed);
                Box::pin(async move {
                    if stale {
                        return Ok(false);
                    }
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; waits on a
                    // busy database instead of failing at once.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&cfg.url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot open the catalog database {}: {e}",
                redact_url(&cfg.url)
            )
        })?;
        Ok(Self {
            pool,
            backend,
            health,
            instance: uuid::Uuid::now_v7().simple().to_string().into(),
        })
    }

    /// The backend kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How the database's applied migrations compare with this binary's.
    pub async fn migration_state(&self) -> anyhow::Result<MigrationState> {
        let migrator = match self.backend {
            Backend::Postgres => &PG_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        };
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        // sqlx's own bookkeeping table; absent until the first migration.
        let applied = match sqlx::query("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<bool, _>(1)?)))
                .collect::<std::result::Result<Vec<(i64, bool)>, sqlx::Error>>()?,
            Err(sqlx::Error::Database(e)) if is_missing_table(e.as_ref()) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let failed = applied
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(v, _)| *v)
            .collect();
        let applied_ok: Vec<i64> = applied
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(v, _)| *v)
            .collect();
        Ok(MigrationState {
            known: known.len(),
            pending: known
                .iter()
                .filter(|v| !applied_ok.contains(v))
                .copied()
                .collect(),
            unknown: applied_ok
                .iter()
                .filter(|v| !known.contains(v))
                .copied()
                .collect(),
            failed,
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &PG_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        };
        migrator.run(&self.pool).await?;
        self.fill_location_keys().await?;
        Ok(())
    }

    /// Fills `location_key` of rows written before the column existed, from
    /// the location in their metadata. A location that is not a valid path
    /// gets a key no other location can overlap; such a table's files are
    /// never touched (its confinement allows nothing).
    async fn fill_location_keys(&self) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Located {
            location: String,
        }
        loop {
            let rows =
                sqlx::query("SELECT id, metadata FROM tables WHERE location_key IS NULL LIMIT 100")
                    .fetch_all(&self.pool)
                    .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let id: String = row.try_get("id")?;
                let metadata: String = row.try_get("metadata")?;
                let key = serde_json::from_str::<Located>(&metadata)
                    .ok()
                    .and_then(|m| StoragePath::parse(&m.location).ok())
                    .map_or_else(|| format!("invalid:{id}"), |p| p.key());
                sqlx::query("UPDATE tables SET location_key = $1 WHERE id = $2")
                    .bind(key)
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
            }
        }
    }

    /// This origin process's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the probe last found the database unreachable: requests that
    /// need it are answered 503 at once instead of waiting for a connection.
    pub fn is_down(&self) -> bool {
        self.health.down.load(Ordering::Relaxed)
    }

    /// Probes the database every 250 ms (each probe waits at most 1 s)
    /// until the pool closes, keeping [`Store::is_down`] current; when the
    /// database comes back, the pool's old connections are retired.
    pub fn watch_health(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut round: u64 = 0;
            while !store.pool.is_closed() {
                // The probe of every fourth round (once a second) is the
                // heartbeat that keeps this process's claims its own.
                let beat = round.is_multiple_of(4);
                let probe = async {
                    if beat {
                        store.heartbeat().await
                    } else {
                        store.ping().await
                    }
                };
                round += 1;
                let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())));
                let was_down = store.health.down.swap(!up, Ordering::Relaxed);
                match (was_down, up) {
                    (false, false) => tracing::warn!(
                        "catalog database unreachable: requests that need it get 503 until it answers"
                    ),
                    (true, true) => {
                        store
                            .health
                            .recovered_at_ms
                            .store(now_ms(), Ordering::Relaxed);
                        tracing::info!("catalog database reachable again");
                    }
                    _ => {}
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
    }

    /// Records that this origin process is alive.
    pub async fn heartbeat(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO origin_instances (id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = $2",
        )
        .bind(&*self.instance)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs `query`, the effect of the request this task serves; when that
    /// request carries an Idempotency-Key, in one transaction with the
    /// record that it was applied (`mark`: the metadata location it
    /// produced, or '' when it has none). Rows affected.
    async fn effect<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        mark: &str,
    ) -> std::result::Result<u64, sqlx::Error> {
        let Some(key) = current_key() else {
            return Ok(query.execute(&self.pool).await?.rows_affected());
        };
        let mut tx = self.pool.begin().await?;
        let rows = query.execute(&mut *tx).await?.rows_affected();
        if rows > 0 {
            Self::mark_applied(&mut tx, &key, mark).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// Records in `tx` that the keyed request `key` took effect.
    async fn mark_applied(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        key: &str,
        mark: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        sqlx::query("UPDATE idempotency_keys SET applied = $1 WHERE key = $2")
            .bind(mark)
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Sends a PostgreSQL notification (no-op on SQLite, which has no other processes).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// `(open connections, idle connections)` of the pool.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Connections the pool may open (`database.max_connections`).
    pub fn pool_max_connections(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- warehouses -------------------------------------------------------

    fn warehouse_from_row(row: &AnyRow) -> Result<WarehouseRecord> {
        Ok(WarehouseRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            location: row.try_get("location")?,
            properties: props_from_json(&row.try_get::<String, _>("properties")?)?,
        })
    }

    /// Inserts a warehouse; its id is generated.
    pub async fn insert_warehouse(
        &self,
        name: &str,
        location: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<WarehouseRecord> {
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO warehouses (id, name, location, properties, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(location)
        .bind(props_to_json(properties)?)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Warehouse already exists: {name}")),
                || CatalogError::Internal("unexpected foreign key on warehouses".into()),
            )
        })?;
        Ok(WarehouseRecord {
            id,
            name: name.to_string(),
            location: location.to_string(),
            properties: properties.clone(),
        })
    }

    /// Updates location and properties of a warehouse; false when it does not exist.
    pub async fn update_warehouse(
        &self,
        name: &str,
        location: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE warehouses SET location = $1, properties = $2, updated_at = $3 WHERE name = $4",
        )
        .bind(location)
        .bind(props_to_json(properties)?)
        .bind(now_ms())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// All warehouses by name.
    pub async fn list_warehouses(&self) -> Result<Vec<WarehouseRecord>> {
        let rows =
            sqlx::query("SELECT id, name, location, properties FROM warehouses ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Self::warehouse_from_row).collect()
    }

    /// One warehouse by name.
    pub async fn warehouse(&self, name: &str) -> Result<Option<WarehouseRecord>> {
        let row =
            sqlx::query("SELECT id, name, location, properties FROM warehouses WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::warehouse_from_row).transpose()
    }

    /// Deletes an empty warehouse; false when it does not exist.
    pub async fn delete_warehouse(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM warehouses WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                constraint(
                    e,
                    || CatalogError::Internal("unexpected unique violation".into()),
                    || CatalogError::NamespaceNotEmpty(format!("Warehouse is not empty: {name}")),
                )
            })?;
        Ok(done.rows_affected() == 1)
    }

    // ---- namespaces -------------------------------------------------------

    /// One namespace.
    pub async fn namespace(
        &self,
        warehouse_id: &str,
        levels: &[String],
    ) -> Result<Option<NamespaceRecord>> {
        let row = sqlx::query(
            "SELECT id, name, properties, version FROM namespaces \
             WHERE warehouse_id = $1 AND name = $2",
        )
        .bind(warehouse_id)
        .bind(join_levels(levels))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(NamespaceRecord {
            id: row.try_get("id")?,
            levels: split_levels(&row.try_get::<String, _>("name")?),
            properties: props_from_json(&row.try_get::<String, _>("properties")?)?,
            version: row.try_get("version")?,
        }))
    }

    /// Creates a namespace under `parent_id` (which must still exist).
    pub async fn insert_namespace(
        &self,
        warehouse_id: &str,
        levels: &[String],
        parent_id: Option<&str>,
        properties: &BTreeMap<String, String>,
    ) -> Result<NamespaceRecord> {
        let id = new_id();
        let now = now_ms();
        let name = join_levels(levels);
        let query = sqlx::query(
            "INSERT INTO namespaces \
             (id, warehouse_id, name, parent_id, properties, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(&id)
        .bind(warehouse_id)
        .bind(&name)
        .bind(parent_id)
        .bind(props_to_json(properties)?)
        .bind(now);
        self.effect(query, "").await.map_err(|e| {
            constraint(
                e,
                || {
                    CatalogError::AlreadyExists(format!(
                        "Namespace already exists: {}",
                        levels.join(".")
                    ))
                },
                || {
                    CatalogError::NoSuchNamespace(format!(
                        "Parent namespace does not exist: {}",
                        levels[..levels.len().saturating_sub(1)].join(".")
                    ))
                },
            )
        })?;
        Ok(NamespaceRecord {
            id,
            levels: levels.to_vec(),
            properties: properties.clone(),
            version: 1,
        })
    }

    /// Children of `parent_id` (top level when `None`), by name, after the
    /// keyset `after`, at most `limit` (all when `None`).
    pub async fn list_namespaces(
        &self,
        warehouse_id: &str,
        parent_id: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Vec<String>>> {
        let parent_clause = if parent_id.is_some() {
            "parent_id = $4"
        } else {
            "parent_id IS NULL"
        };
        let sql = format!(
            "SELECT name FROM namespaces WHERE warehouse_id = $1 AND {parent_clause} \
             AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(warehouse_id)
            .bind(after)
            .bind(limit.map_or(i64::MAX, i64::from));
        if let Some(parent) = parent_id {
            query = query.bind(parent);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(split_levels(&r.try_get::<String, _>("name")?)))
            .collect()
    }

    /// The namespaces of `names` (stored form) that exist, by name, after
    /// the keyset `after`, at most `limit` (all when `None`).
    pub async fn namespaces_named(
        &self,
        warehouse_id: &str,
        names: &[String],
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Vec<String>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT name FROM namespaces WHERE warehouse_id = $1 AND name IN ({}) \
             AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(warehouse_id)
            .bind(after)
            .bind(limit.map_or(i64::MAX, i64::from));
        for name in names {
            query = query.bind(name);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(split_levels(&r.try_get::<String, _>("name")?)))
            .collect()
    }

    /// Replaces the properties if the namespace is still at `expected_version`.
    pub async fn update_namespace_properties(
        &self,
        id: &str,
        expected_version: i64,
        properties: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE namespaces SET properties = $1, version = version + 1, updated_at = $2 \
             WHERE id = $3 AND version = $4",
        )
        .bind(props_to_json(properties)?)
        .bind(now_ms())
        .bind(id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a namespace with no children; false when already gone.
    pub async fn delete_namespace(&self, id: &str, display: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM namespaces WHERE id = $1").bind(id);
        let done = self.effect(query, "").await.map_err(|e| {
            constraint(
                e,
                || CatalogError::Internal("unexpected unique violation".into()),
                || CatalogError::NamespaceNotEmpty(format!("Namespace is not empty: {display}")),
            )
        })?;
        Ok(done == 1)
    }

    // ---- tables and views -------------------------------------------------

    /// One table with its full document (or its `snapshots=refs` form).
    pub async fn table(
        &self,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
        refs_only: bool,
    ) -> Result<Option<TableRecord>> {
        self.object(ObjectKind::Table, warehouse_id, namespace, name, refs_only)
            .await
    }

    /// One view with its metadata document.
    pub async fn view(
        &self,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
    ) -> Result<Option<TableRecord>> {
        self.object(ObjectKind::View, warehouse_id, namespace, name, false)
            .await
    }

    /// What a name of a namespace is, if anything.
    pub async fn kind_of(&self, namespace_id: &str, name: &str) -> Result<Option<ObjectKind>> {
        let row = sqlx::query("SELECT kind FROM tables WHERE namespace_id = $1 AND name = $2")
            .bind(namespace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => ObjectKind::parse(&row.try_get::<String, _>("kind")?).map(Some),
        }
    }

    async fn object(
        &self,
        kind: ObjectKind,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
        refs_only: bool,
    ) -> Result<Option<TableRecord>> {
        let document = if refs_only {
            "COALESCE(t.metadata_refs, t.metadata)"
        } else {
            "t.metadata"
        };
        let sql = format!(
            "SELECT t.id, t.namespace_id, t.name, t.metadata_location, {document} AS metadata, \
             t.version FROM tables t JOIN namespaces n ON t.namespace_id = n.id \
             WHERE n.warehouse_id = $1 AND n.name = $2 AND t.name = $3 AND t.kind = $4"
        );
        let row = sqlx::query(&sql)
            .bind(warehouse_id)
            .bind(join_levels(namespace))
            .bind(name)
            .bind(kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TableRecord {
            id: row.try_get("id")?,
            namespace_id: row.try_get("namespace_id")?,
            name: row.try_get("name")?,
            metadata_location: row.try_get("metadata_location")?,
            metadata: row.try_get("metadata")?,
            version: row.try_get("version")?,
        }))
    }

    /// Creates a table row pointing at an already written metadata file.
    pub async fn insert_table(
        &self,
        namespace_id: &str,
        name: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<String> {
        self.insert_object(ObjectKind::Table, namespace_id, name, docs, location)
            .await
    }

    /// Creates a table or view row pointing at an already written metadata
    /// file, claiming `location`. `AlreadyExists` when the name is taken, by
    /// either kind; `BadRequest` when the location overlaps another live
    /// object's. Claim and insert are one transaction behind the locations
    /// lock, so two creates never both find a place free.
    pub async fn insert_object(
        &self,
        kind: ObjectKind,
        namespace_id: &str,
        name: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<String> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        Self::claim(&mut tx, location, None).await?;
        sqlx::query(
            "INSERT INTO tables (id, namespace_id, name, kind, metadata_location, metadata, \
             metadata_refs, version, created_at, updated_at, location_key) \
             VALUES ($1, $2, $3, $8, $4, $5, $6, 1, $7, $7, $9)",
        )
        .bind(&id)
        .bind(namespace_id)
        .bind(name)
        .bind(&docs.metadata_location)
        .bind(&docs.metadata)
        .bind(docs.metadata_refs.as_deref())
        .bind(now)
        .bind(kind.as_str())
        .bind(location.key())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Name already taken: {name}")),
                || CatalogError::NoSuchNamespace("Namespace does not exist".into()),
            )
        })?;
        if let Some(key) = current_key() {
            Self::mark_applied(&mut tx, &key, &docs.metadata_location).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Takes the locations lock and fails with `BadRequest` when `location`
    /// overlaps the location of a live object other than `except`.
    async fn claim(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        location: &StoragePath,
        except: Option<&str>,
    ) -> Result<()> {
        // A write first: PostgreSQL queues on the row, SQLite takes its
        // write lock, so the check below sees every earlier claim.
        sqlx::query("UPDATE locks SET taken = taken + 1 WHERE name = 'locations'")
            .execute(&mut **tx)
            .await?;
        let (sql, binds) = overlap_query(location, except);
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if query.fetch_optional(&mut **tx).await?.is_some() {
            return Err(overlap_error(&location.to_string()));
        }
        Ok(())
    }

    /// Locations of the live objects, other than `except`, whose location
    /// contains `location` or lies inside it.
    pub async fn overlapping(
        &self,
        location: &StoragePath,
        except: Option<&str>,
    ) -> Result<Vec<StoragePath>> {
        let (sql, binds) = overlap_query(location, except);
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut found = Vec::new();
        for row in rows {
            let key: String = row.try_get("location_key")?;
            found.extend(StoragePath::from_key(&key));
        }
        Ok(found)
    }

    /// Table names of a namespace, by name, after `after`, at most `limit`.
    pub async fn list_tables(
        &self,
        namespace_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        self.list_objects(ObjectKind::Table, namespace_id, after, limit)
            .await
    }

    /// Names of a namespace's tables or views, by name, after `after`, at
    /// most `limit`.
    pub async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM tables WHERE namespace_id = $1 AND kind = $4 \
             AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(namespace_id)
        .bind(after)
        .bind(limit.map_or(i64::MAX, i64::from))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("name")?))
            .collect()
    }

    /// Compare-and-set of the metadata pointer: true when the table still
    /// pointed at `expected_location` and now points at the new version.
    pub async fn swap_table_metadata(
        &self,
        id: &str,
        expected_location: &str,
        docs: &TableDocs,
    ) -> Result<bool> {
        let query = sqlx::query(SWAP_POINTER)
            .bind(&docs.metadata_location)
            .bind(&docs.metadata)
            .bind(docs.metadata_refs.as_deref())
            .bind(now_ms())
            .bind(id)
            .bind(expected_location);
        Ok(self.effect(query, &docs.metadata_location).await? == 1)
    }

    /// Compare-and-set of the pointer of an object whose location moves to
    /// `location`: the new location is claimed in the same transaction
    /// (`BadRequest`, nothing changed, when another object holds it).
    pub async fn swap_relocated(
        &self,
        id: &str,
        expected_location: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<bool> {
        self.swap_many(&[(id, expected_location, docs, Some(location))])
            .await
    }

    /// Compare-and-set of several pointers in one database transaction:
    /// true when every table still pointed at its expected location and all
    /// moved; false (and nothing changed) otherwise.
    /// A swap with a location moves the object there, claimed as
    /// [`Store::insert_object`] claims.
    pub async fn swap_many(&self, swaps: &[Swap<'_>]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // Each new location is claimed, then recorded, before the next is
        // checked: two tables of one transaction never get one place.
        for (id, _, _, location) in swaps {
            if let Some(location) = location {
                Self::claim(&mut tx, location, Some(id)).await?;
                sqlx::query("UPDATE tables SET location_key = $1 WHERE id = $2")
                    .bind(location.key())
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (id, expected, docs, _) in swaps {
            // Writes only: SQLite takes its write lock at the first statement.
            let done = sqlx::query(SWAP_POINTER)
                .bind(&docs.metadata_location)
                .bind(&docs.metadata)
                .bind(docs.metadata_refs.as_deref())
                .bind(now)
                .bind(*id)
                .bind(*expected)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        if let Some(key) = current_key() {
            let mark = match swaps {
                [(_, _, docs, _)] => docs.metadata_location.as_str(),
                _ => "",
            };
            Self::mark_applied(&mut tx, &key, mark).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a table row if it still points at `location`; false otherwise
    /// (gone, or a commit moved it meanwhile).
    pub async fn delete_table_at(&self, id: &str, location: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tables WHERE id = $1 AND metadata_location = $2")
            .bind(id)
            .bind(location)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a table row; false when it was already gone.
    pub async fn delete_table(&self, id: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM tables WHERE id = $1").bind(id);
        Ok(self.effect(query, "").await? == 1)
    }

    /// Moves a table to another namespace and/or name.
    pub async fn rename_table(
        &self,
        id: &str,
        namespace_id: &str,
        name: &str,
        display: &str,
    ) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE tables SET namespace_id = $1, name = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(namespace_id)
        .bind(name)
        .bind(now_ms())
        .bind(id);
        let done = self.effect(query, "").await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Name already taken: {display}")),
                || CatalogError::NoSuchNamespace(format!("Namespace does not exist: {display}")),
            )
        })?;
        Ok(done == 1)
    }
}

/// A scan plan row.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    /// The planned table.
    pub table_id: String,
    /// `submitted`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The ErrorModel JSON of a failed plan.
    pub error: Option<String>,
    /// Pages of a completed plan.
    pub pages: i64,
}

impl Store {
    // ---- scan plans --------------------------------------------------------

    /// Records a submitted plan of `table_id`, and forgets expired ones.
    pub async fn insert_plan(&self, id: &str, table_id: &str, ttl: Duration) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM scan_plans WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO scan_plans (id, table_id, status, error, pages, created_at, expires_at) \
             VALUES ($1, $2, 'submitted', NULL, 0, $3, $4)",
        )
        .bind(id)
        .bind(table_id)
        .bind(now)
        .bind(now + ttl.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the pages of a submitted plan and marks it completed, in one
    /// transaction; false when it is no longer submitted (cancelled).
    pub async fn complete_plan(&self, id: &str, pages: &[String]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE scan_plans SET status = 'completed', pages = $2 \
             WHERE id = $1 AND status = 'submitted'",
        )
        .bind(id)
        .bind(pages.len() as i64)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for (page, body) in pages.iter().enumerate() {
            sqlx::query("INSERT INTO scan_plan_pages (plan_id, page, body) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(page as i64)
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a submitted plan failed with `error` (ErrorModel JSON).
    pub async fn fail_plan(&self, id: &str, error: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE scan_plans SET status = 'failed', error = $2 WHERE id = $1 AND status = 'submitted'",
        )
        .bind(id)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a plan and drops its pages; false when it does not exist.
    pub async fn cancel_plan(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE scan_plans SET status = 'cancelled' WHERE id = $1 AND expires_at >= $2",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM scan_plan_pages WHERE plan_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// A plan that has not expired.
    pub async fn plan(&self, id: &str) -> Result<Option<PlanRecord>> {
        let row = sqlx::query(
            "SELECT table_id, status, error, pages FROM scan_plans WHERE id = $1 AND expires_at >= $2",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PlanRecord {
            table_id: row.try_get("table_id")?,
            status: row.try_get("status")?,
            error: row.try_get("error")?,
            pages: row.try_get("pages")?,
        }))
    }

    /// One page of a completed plan.
    pub async fn plan_page(&self, id: &str, page: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT body FROM scan_plan_pages WHERE plan_id = $1 AND page = $2")
            .bind(id)
            .bind(page)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("body").map_err(CatalogError::from))
            .transpose()
    }
}

/// A principal row with its grants.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalRecord {
    /// The principal (grants, state, secret hash).
    pub principal: Principal,
    /// External OpenID Connect subject mapped to it.
    pub oidc_subject: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

impl Store {
    // ---- principals, grants, API keys --------------------------------------

    /// Inserts a principal and its grants in one transaction.
    pub async fn insert_principal(
        &self,
        id: &str,
        secret_hash: Option<&str>,
        oidc_subject: Option<&str>,
        grants: &[Grant],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO principals (id, secret_hash, oidc_subject, disabled, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, 0, $4, $4)",
        )
        .bind(id)
        .bind(secret_hash)
        .bind(oidc_subject)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Client or subject already exists: {id}")),
                || CatalogError::Internal("unexpected foreign key on principals".into()),
            )
        })?;
        for grant in grants {
            Self::upsert_grant(&mut tx, id, grant).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_grant(conn: &mut sqlx::AnyConnection, id: &str, grant: &Grant) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (principal_id, warehouse, namespace, role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (principal_id, warehouse, namespace) DO UPDATE SET role = excluded.role",
        )
        .bind(id)
        .bind(&grant.warehouse)
        .bind(join_levels(&grant.namespace))
        .bind(grant.role.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            constraint(
                e,
                || CatalogError::Internal("unexpected unique violation on grants".into()),
                || CatalogError::NotFound(format!("Client does not exist: {id}")),
            )
        })?;
        Ok(())
    }

    /// Grants (or changes) a role; NotFound when the principal does not exist.
    pub async fn grant(&self, id: &str, grant: &Grant) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Self::upsert_grant(&mut conn, id, grant).await?;
        self.touch_principal(id, false).await.map(|_| ())
    }

    /// Removes a grant; false when there was none.
    pub async fn revoke_grant(
        &self,
        id: &str,
        warehouse: &str,
        namespace: &[String],
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM grants WHERE principal_id = $1 AND warehouse = $2 AND namespace = $3",
        )
        .bind(id)
        .bind(warehouse)
        .bind(join_levels(namespace))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.touch_principal(id, false).await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Marks the principal changed; `revoke` also ends every token minted so
    /// far (a new credential generation, and `not_before` for external tokens).
    async fn touch_principal(&self, id: &str, revoke: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE principals SET updated_at = $1, \
             not_before = CASE WHEN $2 = 1 THEN $3 ELSE not_before END, \
             generation = CASE WHEN $2 = 1 THEN generation + 1 ELSE generation END \
             WHERE id = $4",
        )
        .bind(now_ms())
        .bind(i64::from(revoke))
        .bind(now_secs())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the client secret and revokes every token minted before
    /// (a new credential generation).
    pub async fn set_principal_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE principals SET secret_hash = $1, not_before = $2, updated_at = $3, \
             generation = generation + 1 WHERE id = $4",
        )
        .bind(secret_hash)
        .bind(now_secs())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables or enables a principal; disabling also revokes its tokens
    /// (a new credential generation), so enabling does not bring them back.
    pub async fn set_principal_disabled(&self, id: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE principals SET disabled = $1, not_before = CASE WHEN $1 = 1 THEN $2 ELSE not_before END, \
             generation = CASE WHEN $1 = 1 THEN generation + 1 ELSE generation END, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(i64::from(disabled))
        .bind(now_secs())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every token of the principal minted so far (a new credential
    /// generation; external tokens issued up to this second).
    pub async fn revoke_tokens(&self, id: &str) -> Result<bool> {
        self.touch_principal(id, true).await
    }

    fn principal_from_row(row: &AnyRow) -> Result<PrincipalRecord> {
        Ok(PrincipalRecord {
            principal: Principal {
                id: row.try_get("id")?,
                disabled: row.try_get::<i64, _>("disabled")? != 0,
                not_before: u64::try_from(row.try_get::<i64, _>("not_before")?).unwrap_or(0),
                generation: u64::try_from(row.try_get::<i64, _>("generation")?).unwrap_or(0),
                grants: Vec::new(),
                secret_hash: row.try_get("secret_hash")?,
                default_warehouse: String::new(),
            },
            oidc_subject: row.try_get("oidc_subject")?,
            created_at: row.try_get("created_at")?,
        })
    }

    async fn with_grants(&self, mut record: PrincipalRecord) -> Result<PrincipalRecord> {
        let rows = sqlx::query(
            "SELECT warehouse, namespace, role FROM grants WHERE principal_id = $1 \
             ORDER BY warehouse, namespace",
        )
        .bind(&record.principal.id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let namespace: String = row.try_get("namespace")?;
            let role: String = row.try_get("role")?;
            record.principal.grants.push(Grant {
                warehouse: row.try_get("warehouse")?,
                namespace: if namespace.is_empty() {
                    Vec::new()
                } else {
                    split_levels(&namespace)
                },
                role: role.parse().map_err(|e: floe_shared::auth::UnknownRole| {
                    CatalogError::Internal(format!("corrupt grant: {e}"))
                })?,
            });
        }
        Ok(record)
    }

    const PRINCIPAL_COLUMNS: &str = "SELECT id, secret_hash, oidc_subject, disabled, not_before, generation, created_at FROM principals";

    /// One principal by id (client id), with grants.
    pub async fn principal(&self, id: &str) -> Result<Option<PrincipalRecord>> {
        let row = sqlx::query(&format!("{} WHERE id = $1", Self::PRINCIPAL_COLUMNS))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(
                self.with_grants(Self::principal_from_row(&row)?).await?,
            )),
            None => Ok(None),
        }
    }

    /// The principal mapped to an external subject, with grants.
    pub async fn principal_by_subject(&self, subject: &str) -> Result<Option<PrincipalRecord>> {
        let row = sqlx::query(&format!(
            "{} WHERE oidc_subject = $1",
            Self::PRINCIPAL_COLUMNS
        ))
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(
                self.with_grants(Self::principal_from_row(&row)?).await?,
            )),
            None => Ok(None),
        }
    }

    /// Every principal by id, with grants.
    pub async fn list_principals(&self) -> Result<Vec<PrincipalRecord>> {
        let rows = sqlx::query(&format!("{} ORDER BY id", Self::PRINCIPAL_COLUMNS))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_grants(Self::principal_from_row(&row)?).await?);
        }
        Ok(out)
    }

    /// Stores a new API key of a principal.
    pub async fn insert_api_key(
        &self,
        id: &str,
        principal: &str,
        name: &str,
        secret_hash: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_keys (id, principal_id, name, secret_hash, revoked, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
        )
        .bind(id)
        .bind(principal)
        .bind(name)
        .bind(secret_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("API key id collision: {id}")),
                || CatalogError::NotFound(format!("Client does not exist: {principal}")),
            )
        })?;
        Ok(())
    }

    /// One API key.
    pub async fn api_key(&self, id: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        let row = sqlx::query(
            "SELECT id, principal_id, name, secret_hash, revoked FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Self::api_key_from_row(&row)).transpose()
    }

    fn api_key_from_row(row: &AnyRow) -> Result<(ApiKeyRecord, String)> {
        Ok((
            ApiKeyRecord {
                id: row.try_get("id")?,
                principal: row.try_get("principal_id")?,
                secret_hash: row.try_get("secret_hash")?,
                revoked: row.try_get::<i64, _>("revoked")? != 0,
            },
            row.try_get("name")?,
        ))
    }

    /// Every API key (with its name), by principal then id.
    pub async fn list_api_keys(&self) -> Result<Vec<(ApiKeyRecord, String)>> {
        let rows = sqlx::query(
            "SELECT id, principal_id, name, secret_hash, revoked FROM api_keys ORDER BY principal_id, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::api_key_from_row).collect()
    }

    /// Replaces the secret of an unrevoked key; false when none.
    pub async fn set_api_key_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET secret_hash = $1, updated_at = $2 WHERE id = $3 AND revoked = 0",
        )
        .bind(secret_hash)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a key; false when it does not exist.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked = 1, updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends a principal change to the log every origin polls. The row is
    /// numbered `MAX(seq) + 1` by the inserting statement, so it is only
    /// numbered after every lower row committed; two writers racing for a
    /// number lose to the unique key and try again.
    pub async fn record_auth_change(
        &self,
        principal: &str,
        api_key: Option<&str>,
        origin: &str,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            let inserted = sqlx::query(
                "INSERT INTO auth_changes (seq, principal_id, api_key_id, origin, created_at) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM auth_changes \
                 RETURNING seq",
            )
            .bind(principal)
            .bind(api_key)
            .bind(origin)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(row.try_get("seq")?),
                Err(sqlx::Error::Database(db))
                    if db.kind() == ErrorKind::UniqueViolation && attempt < 16 =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The number of the last principal change (0 when none).
    pub async fn last_auth_change(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM auth_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("seq")?)
    }

    /// Principal changes after `seq`, oldest first, at most `limit`.
    pub async fn auth_changes_since(&self, seq: i64, limit: i64) -> Result<Vec<AuthChange>> {
        let rows = sqlx::query(
            "SELECT seq, principal_id, api_key_id, origin FROM auth_changes \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuthChange {
                    seq: row.try_get("seq")?,
                    principal: row.try_get("principal_id")?,
                    api_key: row.try_get("api_key_id")?,
                    origin: row.try_get("origin")?,
                })
            })
            .collect()
    }

    /// Drops all but the last `keep` principal changes (the last one always
    /// stays, so numbering never restarts).
    pub async fn prune_auth_changes(&self, keep: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM auth_changes WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM auth_changes) - $1",
        )
        .bind(keep.max(1))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Whether the pool has been closed (the process is stopping).
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}

/// One row of the principal change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChange {
    /// Its number: every origin reads the rows after the last it saw.
    pub seq: i64,
    /// The principal changed.
    pub principal: String,
    /// The API key changed, if one was.
    pub api_key: Option<String>,
    /// The process that made the change.
    pub origin: String,
}

/// A request outcome kept under its Idempotency-Key.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// Method, path, query and body digest of the request that claimed the key.
    pub fingerprint: String,
    /// Whether the outcome is final (else the request is still running).
    pub done: bool,
    /// HTTP status of the final outcome.
    pub status: u16,
    /// Body of the final outcome.
    pub body: String,
    /// When the key was first used (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Whether the process running the claimed request is gone: it gave up
    /// without a final outcome, or has not been seen for a few seconds.
    pub abandoned: bool,
    /// What the claimed request's effect produced, when it took effect
    /// (a metadata location, or '').
    pub applied: Option<String>,
}

impl Store {
    // ---- idempotency keys --------------------------------------------------

    /// Claims `key` for a request about to run; false when the key is taken.
    /// Keys first used before `expired_before` (ms) are deleted first.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: &str,
        expired_before: i64,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(expired_before)
            .execute(&self.pool)
            .await?;
        let now = now_ms();
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys \
             (key, fingerprint, done, status, body, created_at, updated_at, owner) \
             VALUES ($1, $2, 0, 0, '', $3, $3, $4)",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .bind(&*self.instance)
        .execute(&self.pool)
        .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.kind() == ErrorKind::UniqueViolation => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of `key`.
    pub async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT k.fingerprint, k.done, k.status, k.body, k.created_at, k.updated_at, \
             k.owner, k.applied, o.seen_at FROM idempotency_keys k \
             LEFT JOIN origin_instances o ON o.id = k.owner WHERE k.key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<IdempotencyRecord> {
            let owner: Option<String> = row.try_get("owner")?;
            let seen_at: Option<i64> = row.try_get("seen_at")?;
            let alive = |seen: i64| now_ms() - seen < OWNER_SILENT_MS;
            // Our own claims are ours while this process runs.
            let abandoned = match owner.as_deref() {
                None => true,
                Some(owner) if owner == &*self.instance => false,
                Some(_) => !seen_at.is_some_and(alive),
            };
            Ok(IdempotencyRecord {
                fingerprint: row.try_get("fingerprint")?,
                done: row.try_get::<i64, _>("done")? != 0,
                status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
                body: row.try_get("body")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                abandoned,
                applied: row.try_get("applied")?,
            })
        })
        .transpose()
    }

    /// Stores the final outcome of the request that claimed `key`.
    pub async fn finish_idempotency_key(&self, key: &str, status: u16, body: &str) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET done = 1, status = $1, body = $2, updated_at = $3 WHERE key = $4",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(now_ms())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up a claimed key whose request ended without a final outcome
    /// (5xx): the next request with it takes over, answering from what the
    /// request applied, if anything, else running it.
    pub async fn release_idempotency_key(&self, key: &str) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET owner = NULL, updated_at = $1 WHERE key = $2 AND done = 0",
        )
        .bind(now_ms())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes an abandoned claim that nothing was applied for, if it is
    /// still as it was at `updated_at`: true when this process now owns it.
    pub async fn take_over_idempotency_key(&self, key: &str, updated_at: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET owner = $1, updated_at = $2 \
             WHERE key = $3 AND updated_at = $4 AND done = 0 AND applied IS NULL",
        )
        .bind(&*self.instance)
        .bind(now_ms())
        .bind(key)
        .bind(updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
