//! Idempotency-Key claims: claim, record the outcome, release, take over,
//! and the task-local key under which a request's effect is recorded.

use sqlx::Row;
use sqlx::error::ErrorKind;

use super::exec::{statement, write_in};
use super::{Store, now_ms};
use crate::error::Result;

tokio::task_local! {
    /// The Idempotency-Key of the request this task serves: the effect of
    /// that request is recorded in the key's row in the same database
    /// transaction ([`Store::effect`]).
    pub static IDEMPOTENCY_KEY: String;
}

/// The key of the keyed request this task serves, if any.
pub(super) fn current_key() -> Option<String> {
    IDEMPOTENCY_KEY.try_with(Clone::clone).ok()
}

/// A claim whose owner has not been seen for this long was abandoned.
const OWNER_SILENT_MS: i64 = 5_000;

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
    /// Claims `key` for a request about to run; false when the key is taken.
    /// Keys first used before `expired_before` (ms) are deleted first.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: &str,
        expired_before: i64,
    ) -> Result<bool> {
        self.write(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[expired_before.into()],
        )
        .await?;
        let claim = statement(
            "INSERT INTO idempotency_keys \
             (key, fingerprint, done, status, body, created_at, updated_at, owner) \
             VALUES ($1, $2, 0, 0, '', $3, $3, $4)",
            &[
                key.into(),
                fingerprint.into(),
                now_ms().into(),
                (&*self.instance).into(),
            ],
        );
        match write_in(&self.pool, claim).await {
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
        self.write(
            "UPDATE idempotency_keys SET done = 1, status = $1, body = $2, updated_at = $3 WHERE key = $4",
            &[i64::from(status).into(), body.into(), now_ms().into(), key.into()],
        )
        .await?;
        Ok(())
    }

    /// Gives up a claimed key whose request ended without a final outcome
    /// (5xx): the next request with it takes over, answering from what the
    /// request applied, if anything, else running it.
    pub async fn release_idempotency_key(&self, key: &str) -> Result<()> {
        self.write(
            "UPDATE idempotency_keys SET owner = NULL, updated_at = $1 WHERE key = $2 AND done = 0",
            &[now_ms().into(), key.into()],
        )
        .await?;
        Ok(())
    }

    /// Takes an abandoned claim that nothing was applied for, if it is
    /// still as it was at `updated_at`: true when this process now owns it.
    pub async fn take_over_idempotency_key(&self, key: &str, updated_at: i64) -> Result<bool> {
        self.write(
            "UPDATE idempotency_keys SET owner = $1, updated_at = $2 \
             WHERE key = $3 AND updated_at = $4 AND done = 0 AND applied IS NULL",
            &[
                (&*self.instance).into(),
                now_ms().into(),
                key.into(),
                updated_at.into(),
            ],
        )
        .await
    }
}
