//! Warehouse management, shared by the HTTP management API and the CLI.

use std::collections::BTreeMap;

use floe_shared::route::check_prefix;
use serde::{Deserialize, Serialize};

use crate::config::S3Config;
use crate::error::{CatalogError, Result};
use crate::storage::{ensure_local_root, normalize_location};
use crate::store::Store;

/// FileIO properties never shown by listings.
const SECRET_PROPERTIES: &[&str] = &[
    iceberg::io::S3_SECRET_ACCESS_KEY,
    iceberg::io::S3_SESSION_TOKEN,
    crate::config::delegation_keys::CLIENT_SECRET_ACCESS_KEY,
];

/// `POST /management/v1/warehouses`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateWarehouseRequest {
    /// Name and URL prefix.
    pub name: String,
    /// Storage root.
    pub location: String,
    /// S3 settings for `s3://` locations.
    #[serde(default)]
    pub s3: S3Config,
}

/// A warehouse as listed (secrets redacted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WarehouseView {
    /// Name and URL prefix.
    pub name: String,
    /// Storage root.
    pub location: String,
    /// Storage properties, secrets shown as `***`.
    pub properties: BTreeMap<String, String>,
}

/// `GET /management/v1/warehouses`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WarehouseList {
    /// All warehouses by name.
    pub warehouses: Vec<WarehouseView>,
}

fn view(name: String, location: String, mut properties: BTreeMap<String, String>) -> WarehouseView {
    for key in SECRET_PROPERTIES {
        if let Some(v) = properties.get_mut(*key) {
            *v = "***".to_string();
        }
    }
    WarehouseView {
        name,
        location,
        properties,
    }
}

fn checked(name: &str, location: &str, s3: &S3Config) -> Result<String> {
    check_prefix(name)
        .map_err(|e| CatalogError::BadRequest(format!("Invalid warehouse name: {e}")))?;
    s3.validate().map_err(|e| {
        CatalogError::BadRequest(format!("Invalid warehouse storage settings: {e}"))
    })?;
    let location = normalize_location(location)
        .map_err(|e| CatalogError::BadRequest(format!("Invalid warehouse location: {e}")))?;
    ensure_local_root(&location)
        .map_err(|e| CatalogError::BadRequest(format!("Cannot create warehouse directory: {e}")))?;
    Ok(location)
}

/// Creates a warehouse.
pub async fn create_warehouse(store: &Store, req: CreateWarehouseRequest) -> Result<WarehouseView> {
    let location = checked(&req.name, &req.location, &req.s3)?;
    let record = store
        .insert_warehouse(&req.name, &location, &req.s3.to_properties())
        .await?;
    Ok(view(record.name, record.location, record.properties))
}

/// Creates the warehouse or brings its location and storage settings in
/// line with configuration (used for the default warehouse at start-up).
pub async fn ensure_warehouse(store: &Store, req: CreateWarehouseRequest) -> Result<()> {
    let location = checked(&req.name, &req.location, &req.s3)?;
    let properties = req.s3.to_properties();
    match store.warehouse(&req.name).await? {
        Some(existing) if existing.location == location && existing.properties == properties => {
            Ok(())
        }
        Some(existing) => {
            tracing::info!(warehouse = %req.name, from = %existing.location, to = %location, "updating warehouse from configuration");
            store
                .update_warehouse(&req.name, &location, &properties)
                .await?;
            Ok(())
        }
        None => match store
            .insert_warehouse(&req.name, &location, &properties)
            .await
        {
            // Another origin process created it at the same moment.
            Ok(_) | Err(CatalogError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// Lists warehouses.
pub async fn list_warehouses(store: &Store) -> Result<WarehouseList> {
    let warehouses = store
        .list_warehouses()
        .await?
        .into_iter()
        .map(|w| view(w.name, w.location, w.properties))
        .collect();
    Ok(WarehouseList { warehouses })
}

/// Deletes an empty warehouse.
pub async fn delete_warehouse(store: &Store, name: &str) -> Result<()> {
    if store.delete_warehouse(name).await? {
        Ok(())
    } else {
        Err(CatalogError::NoSuchWarehouse(format!(
            "Warehouse does not exist: {name}"
        )))
    }
}
