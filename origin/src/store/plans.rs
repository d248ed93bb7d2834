//! Scan plans: submitted, completed with their pages, failed or cancelled,
//! forgotten when they expire.

use std::time::Duration;

use sqlx::{FromRow, Row};

use super::exec::{statement, write_in};
use super::{Store, now_ms};
use crate::error::{CatalogError, Result};

/// A scan plan row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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
    /// Records a submitted plan of `table_id`, and forgets expired ones.
    pub async fn insert_plan(&self, id: &str, table_id: &str, ttl: Duration) -> Result<()> {
        let now = now_ms();
        self.write(
            "DELETE FROM scan_plans WHERE expires_at < $1",
            &[now.into()],
        )
        .await?;
        let expires_at = now + ttl.as_millis() as i64;
        self.write(
            "INSERT INTO scan_plans (id, table_id, status, error, pages, created_at, expires_at) \
             VALUES ($1, $2, 'submitted', NULL, 0, $3, $4)",
            &[id.into(), table_id.into(), now.into(), expires_at.into()],
        )
        .await?;
        Ok(())
    }

    /// Stores the pages of a submitted plan and marks it completed, in one
    /// transaction; false when it is no longer submitted (cancelled).
    pub async fn complete_plan(&self, id: &str, pages: &[String]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let completed = statement(
            "UPDATE scan_plans SET status = 'completed', pages = $2 \
             WHERE id = $1 AND status = 'submitted'",
            &[id.into(), (pages.len() as i64).into()],
        );
        if !write_in(&mut *tx, completed).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        for (page, body) in pages.iter().enumerate() {
            let query = statement(
                "INSERT INTO scan_plan_pages (plan_id, page, body) VALUES ($1, $2, $3)",
                &[id.into(), (page as i64).into(), body.into()],
            );
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a submitted plan failed with `error` (ErrorModel JSON).
    pub async fn fail_plan(&self, id: &str, error: &str) -> Result<bool> {
        self.write(
            "UPDATE scan_plans SET status = 'failed', error = $2 WHERE id = $1 AND status = 'submitted'",
            &[id.into(), error.into()],
        )
        .await
    }

    /// Cancels a plan and drops its pages; false when it does not exist.
    pub async fn cancel_plan(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let cancel = statement(
            "UPDATE scan_plans SET status = 'cancelled' WHERE id = $1 AND expires_at >= $2",
            &[id.into(), now_ms().into()],
        );
        let cancelled = write_in(&mut *tx, cancel).await?;
        statement(
            "DELETE FROM scan_plan_pages WHERE plan_id = $1",
            &[id.into()],
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// A plan that has not expired.
    pub async fn plan(&self, id: &str) -> Result<Option<PlanRecord>> {
        let row = statement(
            "SELECT table_id, status, error, pages FROM scan_plans WHERE id = $1 AND expires_at >= $2",
            &[id.into(), now_ms().into()],
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(PlanRecord::from_row).transpose()?)
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
