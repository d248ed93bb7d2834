//! The catalog database: one store over sqlx's `Any` driver, so PostgreSQL
//! (production) and SQLite (embedded default) run the same statements.
//!
//! Every write is a single statement whose outcome the database decides:
//! uniqueness and foreign keys answer "already exists" and "not empty", and a
//! table commit is a compare-and-set on the metadata pointer. There is no
//! read-then-write transaction for a racing client to slip into, and SQLite
//! never has to upgrade a read lock. Database errors become catalog errors
//! here and nowhere else.
//!
//! How to read this room: this file holds the [`Store`] itself (opening the
//! pool, migrations, the health probe and heartbeat, notifications, pool
//! figures) and the row encodings every aggregate shares. `exec.rs` is how
//! one write runs (one row changed or none, a keyed request's effect,
//! constraint violations as catalog errors). Then one file per aggregate,
//! each an `impl Store` with its record types: `warehouses.rs`,
//! `namespaces.rs`, `objects.rs` (tables and views, pointer swaps, location
//! overlaps), `plans.rs` (scan plans), `principals.rs` (principals, grants,
//! API keys, the change log) and `idempotency.rs` (Idempotency-Key claims).
//! `connect.rs` speaks about database URLs and failed connections.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::config::DatabaseConfig;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;

mod connect;
mod exec;
mod idempotency;
mod namespaces;
mod objects;
mod plans;
mod principals;
mod warehouses;

pub use connect::{probe_postgres, redact_url};
pub use idempotency::{IDEMPOTENCY_KEY, IdempotencyRecord};
pub use namespaces::NamespaceRecord;
pub(crate) use objects::overlap_error;
pub use objects::{ObjectKind, Swap, TableDocs, TableRecord};
pub use plans::PlanRecord;
pub use principals::{AuthChange, PrincipalRecord};
pub use warehouses::WarehouseRecord;

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

/// The catalog database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    health: Arc<Health>,
    /// This origin process (owner of its Idempotency-Key claims).
    instance: Arc<str>,
}

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
        .map_err(|e| CatalogError::internal_with(format!("corrupt properties in database: {e}"), e))
}

fn now_secs() -> i64 {
    now_ms() / 1000
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
                self.write(
                    "UPDATE tables SET location_key = $1 WHERE id = $2",
                    &[(&key).into(), (&id).into()],
                )
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

    /// Whether the pool has been closed (the process is stopping).
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}
