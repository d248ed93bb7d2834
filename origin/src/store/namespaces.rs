//! Namespaces: levels, properties and their compare-and-set version.

use std::collections::BTreeMap;

use sqlx::Row;

use super::exec::constraint;
use super::{Store, join_levels, new_id, now_ms, props_from_json, props_to_json, split_levels};
use crate::error::{CatalogError, Result};

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

impl Store {
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
}
