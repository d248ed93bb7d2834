//! A catalog database that cannot be reached is reported at once with its
//! host, port and the cause, never as a pool timeout and never with the
//! password; `check-config` gives a verdict on the migration state.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

use std::time::{Duration, Instant};

use floe_origin::config::DatabaseConfig;
use floe_origin::store::Store;
use floe_shared::testkit::{PgDb, pg_admin_url};

fn config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: url.to_string(),
        acquire_timeout_ms: 5000,
        ..DatabaseConfig::default()
    }
}

async fn connect_error(url: &str) -> String {
    let started = Instant::now();
    let e = match Store::connect(&config(url)).await {
        Ok(_) => panic!("{url}: connected"),
        Err(e) => format!("{e:#}"),
    };
    // Reported from the first attempt, not after the pool gave up waiting.
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "{url}: took {:?}",
        started.elapsed()
    );
    assert!(!e.contains("pool timed out"), "{e}");
    assert!(!e.contains("s3cret"), "password printed: {e}");
    e
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn connection_refused_names_host_port_and_cause() {
    let port = closed_port();
    let e = connect_error(&format!("postgres://floe:s3cret@127.0.0.1:{port}/catalog")).await;
    assert!(
        e.contains(&format!(
            "PostgreSQL at 127.0.0.1:{port} (user floe, database catalog)"
        )),
        "{e}"
    );
    assert!(e.contains("connection refused"), "{e}");
}

#[tokio::test]
async fn unknown_host_is_a_dns_failure() {
    // `.invalid` never resolves (RFC 2606).
    let e = connect_error("postgres://floe:s3cret@catalog-db.invalid:5433/catalog").await;
    assert!(e.contains("PostgreSQL at catalog-db.invalid:5433"), "{e}");
    assert!(e.contains("does not resolve (DNS failure"), "{e}");
}

/// The admin URL with another user (and a password) or database.
fn admin_with(user: Option<&str>, database: &str) -> String {
    let mut url = url::Url::parse(&pg_admin_url()).unwrap();
    if let Some(user) = user {
        url.set_username(user).unwrap();
        url.set_password(Some("s3cret")).unwrap();
    }
    url.set_path(&format!("/{database}"));
    url.to_string()
}

#[tokio::test]
async fn authentication_failure_and_missing_database_are_named() {
    let e = connect_error(&admin_with(Some("floe_no_such_role"), "postgres")).await;
    assert!(e.contains("authentication failed"), "{e}");
    assert!(e.contains("user floe_no_such_role"), "{e}");

    let e = connect_error(&admin_with(None, "floe_no_such_database")).await;
    assert!(e.contains("the database does not exist"), "{e}");
    assert!(e.contains("database floe_no_such_database"), "{e}");
}

#[tokio::test]
async fn check_config_reports_the_migration_state() {
    let db = PgDb::new("checkcfg").await;
    let mut cfg = floe_origin::config::Config::default();
    cfg.database.url = db.url.clone();
    // A fresh database: every migration pending, applied at start-up.
    floe_origin::cli::check_config(&cfg, false).await.unwrap();
    let store = Store::connect(&cfg.database).await.unwrap();
    let state = store.migration_state().await.unwrap();
    assert!(
        state.known > 0 && state.pending.len() == state.known,
        "{state:?}"
    );
    // Without migrations at start-up, pending migrations are an error.
    cfg.database.migrate_on_start = false;
    let e = floe_origin::cli::check_config(&cfg, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("migrations pending") && e.contains("floe-origin migrate"),
        "{e}"
    );
    store.migrate().await.unwrap();
    let state = store.migration_state().await.unwrap();
    assert!(
        state.pending.is_empty() && state.unknown.is_empty(),
        "{state:?}"
    );
    floe_origin::cli::check_config(&cfg, false).await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    // Metadata documents, rewritten by every commit, are compressed with lz4
    // (this server is built with it).
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, attcompression::text FROM pg_attribute \
         WHERE attrelid = 'tables'::regclass AND attname IN ('metadata', 'metadata_refs') \
         ORDER BY attname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        methods,
        [
            ("metadata".to_string(), "l".to_string()),
            ("metadata_refs".to_string(), "l".to_string())
        ]
    );
    // A database migrated by a newer Floe.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999999999, 'future', TRUE, '\\x00'::bytea, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let e = floe_origin::cli::check_config(&cfg, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown to this floe-origin"), "{e}");
    // An unreachable database fails the check with the cause.
    cfg.database.url = format!("postgres://floe:s3cret@127.0.0.1:{}/x", closed_port());
    let e = format!(
        "{:#}",
        floe_origin::cli::check_config(&cfg, false)
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("connection refused") && !e.contains("s3cret"),
        "{e}"
    );
}
