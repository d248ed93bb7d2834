//! Scan plans: submitted, completed with their pages, failed or cancelled,
//! forgotten when they expire.

use std::time::Duration;

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{CatalogError, Result};

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
