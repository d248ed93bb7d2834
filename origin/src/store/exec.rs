//! How a write runs: a keyed request's effect recorded beside it, and
//! constraint violations as the catalog errors their callers name.

use sqlx::error::ErrorKind;

use super::Store;
use super::idempotency::current_key;
use crate::error::CatalogError;

/// Maps a constraint violation to the catalog error the caller names, and
/// anything else through the generic conversion.
pub(super) fn constraint(
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

impl Store {
    /// Runs `query`, the effect of the request this task serves; when that
    /// request carries an Idempotency-Key, in one transaction with the
    /// record that it was applied (`mark`: the metadata location it
    /// produced, or '' when it has none). Rows affected.
    pub(super) async fn effect<'q>(
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
    pub(super) async fn mark_applied(
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
}
