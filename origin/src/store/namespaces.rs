//! Namespaces: levels, properties and their compare-and-set version.

use std::collections::BTreeMap;

use sqlx::Row;

use super::exec::{Arg, constraint, statement};
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
        let name = join_levels(levels);
        let props = props_to_json(properties)?;
        let query = statement(
            "INSERT INTO namespaces \
             (id, warehouse_id, name, parent_id, properties, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            &[
                (&id).into(),
                warehouse_id.into(),
                (&name).into(),
                parent_id.into(),
                (&props).into(),
                now_ms().into(),
            ],
        );
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
        let (filter, filter_args) = match parent_id {
            Some(parent) => ("parent_id = $4", vec![parent.into()]),
            None => ("parent_id IS NULL", Vec::new()),
        };
        self.names_page(warehouse_id, filter, &filter_args, after, limit)
            .await
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
        let filter = format!("name IN ({})", placeholders.join(", "));
        let names: Vec<Arg<'_>> = names.iter().map(Arg::from).collect();
        self.names_page(warehouse_id, &filter, &names, after, limit)
            .await
    }

    /// Names of a warehouse's namespaces that pass `filter` (whose
    /// arguments, `filter_args`, are `$4` on), by name, after the keyset
    /// `after`, at most `limit` (all when `None`).
    async fn names_page(
        &self,
        warehouse_id: &str,
        filter: &str,
        filter_args: &[Arg<'_>],
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Vec<String>>> {
        let sql = format!(
            "SELECT name FROM namespaces WHERE warehouse_id = $1 AND {filter} \
             AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3"
        );
        let mut args = vec![
            warehouse_id.into(),
            after.into(),
            limit.map_or(i64::MAX, i64::from).into(),
        ];
        args.extend_from_slice(filter_args);
        let rows = statement(&sql, &args).fetch_all(&self.pool).await?;
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
        let props = props_to_json(properties)?;
        self.write(
            "UPDATE namespaces SET properties = $1, version = version + 1, updated_at = $2 \
             WHERE id = $3 AND version = $4",
            &[
                (&props).into(),
                now_ms().into(),
                id.into(),
                expected_version.into(),
            ],
        )
        .await
    }

    /// Deletes a namespace with no children; false when already gone.
    pub async fn delete_namespace(&self, id: &str, display: &str) -> Result<bool> {
        let query = statement("DELETE FROM namespaces WHERE id = $1", &[id.into()]);
        self.effect(query, "").await.map_err(|e| {
            constraint(
                e,
                || CatalogError::internal("unexpected unique violation".into()),
                || CatalogError::NamespaceNotEmpty(format!("Namespace is not empty: {display}")),
            )
        })
    }
}
