//! Test support shared by every crate's tests (feature `testkit`): a fresh
//! PostgreSQL database per test on the server named by `FLOE_TEST_PG_URL`.

use sqlx::Connection;

/// Admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("FLOE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn admin(sql: &str) {
    sqlx::any::install_default_drivers();
    let url = pg_admin_url();
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is required for these tests ({e}); run scripts/test")
        });
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database that lives as long as the value.
pub struct PgDb {
    /// Connection URL of the database.
    pub url: String,
    name: String,
}

impl PgDb {
    /// Creates a database named after `purpose` and a random suffix.
    pub async fn new(purpose: &str) -> PgDb {
        let name = format!("floe_{purpose}_{}", uuid::Uuid::new_v4().simple());
        admin(&format!("CREATE DATABASE {name}")).await;
        let base = pg_admin_url();
        let base = base
            .rsplit_once('/')
            .map_or(base.clone(), |(b, _)| b.to_string());
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop cannot await: drop the database from a thread of its own.
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(admin(&format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )));
            }
        })
        .join();
    }
}
