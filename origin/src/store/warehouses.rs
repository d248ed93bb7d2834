//! Warehouses: name, storage root and FileIO properties.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::exec::{constraint, statement, write_in};
use super::{Store, new_id, now_ms, props_from_json, props_to_json};
use crate::error::{CatalogError, Result};

/// A warehouse row.
#[derive(Debug, Clone, PartialEq)]
pub struct WarehouseRecord {
    /// Surrogate id.
    pub id: String,
    /// Name and URL prefix.
    pub name: String,
    /// Normalized storage root (`file:///…` or `s3://…`), no trailing slash.
    pub location: String,
    /// FileIO properties (S3 endpoint, region, keys…).
    pub properties: BTreeMap<String, String>,
}

impl Store {
    fn warehouse_from_row(row: &AnyRow) -> Result<WarehouseRecord> {
        Ok(WarehouseRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            location: row.try_get("location")?,
            properties: props_from_json(&row.try_get::<String, _>("properties")?)?,
        })
    }

    /// Inserts a warehouse; its id is generated.
    pub async fn insert_warehouse(
        &self,
        name: &str,
        location: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<WarehouseRecord> {
        let id = new_id();
        let props = props_to_json(properties)?;
        let query = statement(
            "INSERT INTO warehouses (id, name, location, properties, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
            &[
                (&id).into(),
                name.into(),
                location.into(),
                (&props).into(),
                now_ms().into(),
            ],
        );
        write_in(&self.pool, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Warehouse already exists: {name}")),
                || CatalogError::internal("unexpected foreign key on warehouses".into()),
            )
        })?;
        Ok(WarehouseRecord {
            id,
            name: name.to_string(),
            location: location.to_string(),
            properties: properties.clone(),
        })
    }

    /// Updates location and properties of a warehouse; false when it does not exist.
    pub async fn update_warehouse(
        &self,
        name: &str,
        location: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<bool> {
        self.write(
            "UPDATE warehouses SET location = $1, properties = $2, updated_at = $3 WHERE name = $4",
            &[
                location.into(),
                (&props_to_json(properties)?).into(),
                now_ms().into(),
                name.into(),
            ],
        )
        .await
    }

    /// All warehouses by name.
    pub async fn list_warehouses(&self) -> Result<Vec<WarehouseRecord>> {
        let rows =
            sqlx::query("SELECT id, name, location, properties FROM warehouses ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Self::warehouse_from_row).collect()
    }

    /// One warehouse by name.
    pub async fn warehouse(&self, name: &str) -> Result<Option<WarehouseRecord>> {
        let row =
            sqlx::query("SELECT id, name, location, properties FROM warehouses WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::warehouse_from_row).transpose()
    }

    /// Deletes an empty warehouse; false when it does not exist.
    pub async fn delete_warehouse(&self, name: &str) -> Result<bool> {
        let query = statement("DELETE FROM warehouses WHERE name = $1", &[name.into()]);
        write_in(&self.pool, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::internal("unexpected unique violation".into()),
                || CatalogError::NamespaceNotEmpty(format!("Warehouse is not empty: {name}")),
            )
        })
    }
}
