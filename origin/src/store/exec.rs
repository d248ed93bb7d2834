//! How a write runs: a statement and its arguments in order, "one row
//! changed, or none" as a boolean, a keyed request's effect recorded beside
//! it, and constraint violations as the catalog errors their callers name.

use sqlx::error::ErrorKind;

use super::Store;
use super::idempotency::current_key;
use crate::error::{CatalogError, Result};

/// A statement of sqlx's `Any` driver with its arguments bound.
pub(super) type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// One argument of a statement: the Rust types the store binds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    /// Text.
    Text(&'a str),
    /// Text or NULL.
    MaybeText(Option<&'a str>),
    /// A 64-bit integer.
    Int(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Self::Text(value)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(value: &'a String) -> Self {
        Self::Text(value)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Self::MaybeText(value)
    }
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// `sql` with `args` bound to `$1`, `$2`, … in order.
pub(super) fn statement<'q>(sql: &'q str, args: &[Arg<'q>]) -> Query<'q> {
    args.iter().fold(sqlx::query(sql), |query, arg| match *arg {
        Arg::Text(text) => query.bind(text),
        Arg::MaybeText(text) => query.bind(text),
        Arg::Int(int) => query.bind(int),
    })
}

/// Runs `query` on `executor` (the pool, or a transaction): true when it
/// changed exactly one row.
pub(super) async fn write_in<'c, E>(
    executor: E,
    query: Query<'_>,
) -> std::result::Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(query.execute(executor).await?.rows_affected() == 1)
}

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
    /// Runs `sql` with `args` on the pool: true when it changed exactly one
    /// row. (A write whose constraint violations mean something to its
    /// caller runs through [`write_in`] and [`constraint`].)
    pub(super) async fn write(&self, sql: &str, args: &[Arg<'_>]) -> Result<bool> {
        Ok(write_in(&self.pool, statement(sql, args)).await?)
    }

    /// Runs `query`, the effect of the request this task serves; when that
    /// request carries an Idempotency-Key, in one transaction with the
    /// record that it was applied (`mark`: the metadata location it
    /// produced, or '' when it has none). True when exactly one row changed.
    pub(super) async fn effect(
        &self,
        query: Query<'_>,
        mark: &str,
    ) -> std::result::Result<bool, sqlx::Error> {
        let Some(key) = current_key() else {
            return write_in(&self.pool, query).await;
        };
        let mut tx = self.pool.begin().await?;
        let rows = query.execute(&mut *tx).await?.rows_affected();
        if rows > 0 {
            Self::mark_applied(&mut tx, &key, mark).await?;
        }
        tx.commit().await?;
        Ok(rows == 1)
    }

    /// Records in `tx` that the keyed request `key` took effect.
    pub(super) async fn mark_applied(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        key: &str,
        mark: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        let query = statement(
            "UPDATE idempotency_keys SET applied = $1 WHERE key = $2",
            &[mark.into(), key.into()],
        );
        query.execute(&mut **tx).await?;
        Ok(())
    }
}
