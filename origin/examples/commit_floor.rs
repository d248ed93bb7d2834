//! cargo run --release -p floe-origin --example commit_floor -- 127.0.0.1:8191 DATABASE_URL DIR DOC_FILE
//!
//! The storage floor of a commit, for the load harness: an HTTP server whose
//! `POST /{anything}/{n}` does the durable work a table commit cannot skip
//! and nothing else — it creates a new file of DOC_FILE's bytes under
//! `DIR/<n>/metadata/`, syncs it to disk, moves a pointer row of
//! PostgreSQL to it with one compare-and-set `UPDATE` (the document beside
//! it, as the catalog stores it) and answers the document. No
//! authentication, no JSON, no Iceberg, no change event, no edge in front.
//!
//! The catalog's commits measured against it show what Floe's own code costs
//! on top of the file system and the database of the machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Pointer rows: one per table number the server has seen.
const TABLES: i64 = 1024;

struct Floor {
    pool: PgPool,
    dir: PathBuf,
    doc: Arc<str>,
    sequence: AtomicU64,
}

/// One commit's durable work; answers the document.
async fn commit(
    State(floor): State<Arc<Floor>>,
    Path((_, n)): Path<(String, i64)>,
) -> Result<String, (StatusCode, String)> {
    let failed = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let n = n.rem_euclid(TABLES);
    let sequence = floor.sequence.fetch_add(1, Ordering::Relaxed);
    let dir = floor.dir.join(n.to_string()).join("metadata");
    let file = dir.join(format!(
        "{sequence:05}-{}.metadata.json",
        uuid::Uuid::new_v4()
    ));
    let doc = floor.doc.clone();
    let written = file.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let mut out = std::fs::File::create_new(&written)?;
        out.write_all(doc.as_bytes())?;
        out.sync_all()
    })
    .await
    .map_err(|e| failed(&e))?
    .map_err(|e| failed(&e))?;
    let location = file.to_string_lossy().into_owned();
    // Compare-and-set on the row's current pointer, retried on a lost race
    // (two connections may commit to one table number).
    loop {
        let expected: String =
            sqlx::query_scalar("SELECT metadata_location FROM floor_tables WHERE id = $1")
                .bind(n)
                .fetch_one(&floor.pool)
                .await
                .map_err(|e| failed(&e))?;
        let moved = sqlx::query(
            "UPDATE floor_tables SET metadata_location = $1, metadata = $2, \
             version = version + 1 WHERE id = $3 AND metadata_location = $4",
        )
        .bind(&location)
        .bind(&*floor.doc)
        .bind(n)
        .bind(&expected)
        .execute(&floor.pool)
        .await
        .map_err(|e| failed(&e))?;
        if moved.rows_affected() == 1 {
            return Ok(floor.doc.to_string());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(url), Some(dir), Some(doc)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: commit_floor LISTEN_ADDR DATABASE_URL DIR DOC_FILE");
    };
    let doc: Arc<str> = std::fs::read_to_string(&doc)?.into();
    // As many connections as the catalog's PostgreSQL configuration.
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(&url)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS floor_tables (id BIGINT PRIMARY KEY, \
         metadata_location TEXT NOT NULL, metadata TEXT NOT NULL, version BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    // Compressed as the catalog's documents are, where the server has lz4.
    let _ = sqlx::query("ALTER TABLE floor_tables ALTER COLUMN metadata SET COMPRESSION lz4")
        .execute(&pool)
        .await;
    sqlx::query(
        "INSERT INTO floor_tables SELECT n, '', $1, 0 FROM generate_series(0, $2 - 1) AS n \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&*doc)
    .bind(TABLES)
    .execute(&pool)
    .await?;
    let floor = Arc::new(Floor {
        pool,
        dir: PathBuf::from(dir),
        doc,
        sequence: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/ready", get(|| async { "ok" }))
        .route("/{*rest}", post(commit_any))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Takes the last path segment as the table number (`…/tables/c17` → 17).
async fn commit_any(
    state: State<Arc<Floor>>,
    Path(rest): Path<String>,
) -> Result<String, (StatusCode, String)> {
    let last = rest.rsplit('/').next().unwrap_or_default();
    let n = last
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse::<i64>()
        .map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("no table number in {rest}"),
            )
        })?;
    commit(state, Path((rest.clone(), n))).await
}
