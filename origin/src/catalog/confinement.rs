//! Locations and confinement: where a new table or view goes, which paths a
//! commit or a registered document may name (inside the table's location),
//! and what a table's storage access may reach.

use iceberg::TableUpdate;
use iceberg::spec::TableMetadata;

use super::Catalog;
use super::names::{display, path_segment};
use crate::error::{CatalogError, Result};
use crate::storage::{Confinement, StoragePath, has_policy_wildcards};
use crate::store::{NamespaceRecord, overlap_error};
use crate::warehouse::Warehouse;

/// Table properties whose values redirect where a table's files go: each
/// must lie inside the table's location. Besides these, every `write.*`
/// property whose name ends in `.path` or `.location`.
const PATH_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
];

fn is_path_property(key: &str) -> bool {
    PATH_PROPERTIES.contains(&key)
        || (key.starts_with("write.") && (key.ends_with(".path") || key.ends_with(".location")))
}

/// The location of a namespace: its `location` property, or the
/// warehouse's layout (`<warehouse>/<level>/…`).
fn namespace_location(warehouse: &Warehouse, namespace: &NamespaceRecord) -> String {
    match namespace.properties.get("location") {
        Some(location) => location.trim_end_matches('/').to_string(),
        None => {
            let mut base = warehouse.record.location.clone();
            for level in &namespace.levels {
                base.push('/');
                base.push_str(&path_segment(level));
            }
            base
        }
    }
}

/// The 403 for storage access to a table whose location (written before
/// locations were confined) overlaps another object's.
fn overlap_refusal() -> CatalogError {
    CatalogError::Forbidden(
        "Storage confinement: the table's location overlaps another table's or view's, or is \
         not an allowed storage path; this storage access is not delegated for it until it is \
         moved with set-location"
            .into(),
    )
}

/// Fails with 400 naming `what` when `path` is not inside `location`.
pub(super) fn check_inside(location: &StoragePath, what: &str, path: &str) -> Result<()> {
    match StoragePath::parse(path) {
        Ok(p) if location.contains(&p) => Ok(()),
        Ok(_) => Err(CatalogError::BadRequest(format!(
            "Storage confinement: {what} {path} lies outside the table's location {location}"
        ))),
        Err(e) => Err(CatalogError::BadRequest(format!(
            "Storage confinement: {what} {path} is not an allowed storage path: {e}"
        ))),
    }
}

/// The paths a commit's updates introduce (statistics files, manifest
/// lists, path properties) must lie inside the table's location.
pub(crate) fn check_update_paths(location: &StoragePath, updates: &[TableUpdate]) -> Result<()> {
    for update in updates {
        match update {
            TableUpdate::SetStatistics { statistics } => {
                check_inside(location, "statistics file", &statistics.statistics_path)?;
            }
            TableUpdate::SetPartitionStatistics {
                partition_statistics,
            } => check_inside(
                location,
                "partition statistics file",
                &partition_statistics.statistics_path,
            )?,
            TableUpdate::AddSnapshot { snapshot } => {
                check_inside(location, "manifest list", snapshot.manifest_list())?;
            }
            TableUpdate::SetProperties { updates } => {
                for (key, value) in updates.iter().filter(|(k, _)| is_path_property(k)) {
                    check_inside(location, &format!("property {key}"), value)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every path a whole metadata document names (a registered or created
/// table) must lie inside the table's location.
pub(super) fn check_metadata_paths(location: &StoragePath, metadata: &TableMetadata) -> Result<()> {
    for snapshot in metadata.snapshots() {
        check_inside(location, "manifest list", snapshot.manifest_list())?;
    }
    for statistics in metadata.statistics_iter() {
        check_inside(location, "statistics file", &statistics.statistics_path)?;
    }
    for statistics in metadata.partition_statistics_iter() {
        check_inside(
            location,
            "partition statistics file",
            &statistics.statistics_path,
        )?;
    }
    for entry in metadata.metadata_log() {
        check_inside(location, "metadata log file", &entry.metadata_file)?;
    }
    for (key, value) in metadata
        .properties()
        .iter()
        .filter(|(k, _)| is_path_property(k))
    {
        check_inside(location, &format!("property {key}"), value)?;
    }
    Ok(())
}

impl Catalog {
    pub(crate) fn default_table_location(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        name: &str,
    ) -> String {
        format!(
            "{}/{}-{}",
            namespace_location(warehouse, namespace),
            path_segment(name),
            uuid::Uuid::now_v7().simple()
        )
    }

    /// The location of a new table or view `name` of `namespace`: the one
    /// asked for (without a trailing `/`) or the namespace's default, with
    /// its normalized form, checked as [`Catalog::check_new_location`] does.
    pub(super) async fn new_location(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        asked: Option<&str>,
        name: &str,
    ) -> Result<(String, StoragePath)> {
        let location = match asked {
            Some(location) => location.trim_end_matches('/').to_string(),
            None => self.default_table_location(warehouse, namespace, name),
        };
        let path = self
            .check_new_location(warehouse, namespace, &location, None)
            .await?;
        Ok((location, path))
    }

    /// The normalized location of a new table or view of `namespace`, or
    /// of one moving there: a valid storage path strictly inside the
    /// namespace's location (so never the warehouse root) and, unless it is
    /// `except` itself, overlapping no live object's location. The store
    /// checks the overlap again when it claims the location.
    pub(crate) async fn check_new_location(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        location: &str,
        except: Option<&str>,
    ) -> Result<StoragePath> {
        let path = warehouse.check_location(location)?;
        if has_policy_wildcards(location) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: location {location} holds '*', '?' or '$', which storage \
                 policies read as wildcards"
            )));
        }
        let parent_text = namespace_location(warehouse, namespace);
        let parent = StoragePath::parse(&parent_text)
            .ok()
            .filter(|p| warehouse.root().is_some_and(|root| root.contains(p)))
            .ok_or_else(|| {
                CatalogError::BadRequest(format!(
                    "Storage confinement: namespace {} has location {parent_text}, which is not \
                     a storage path inside the warehouse; set a valid location property",
                    display(&namespace.levels)
                ))
            })?;
        if !parent.strictly_contains(&path) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: location {location} must lie inside the location of \
                 namespace {} ({parent_text})",
                display(&namespace.levels)
            )));
        }
        if !self.store.overlapping(&path, except).await?.is_empty() {
            return Err(overlap_error(location));
        }
        Ok(path)
    }

    /// A metadata file to register may be read only when it lies inside the
    /// namespace's location and outside every live object's but `except`.
    pub(crate) async fn check_registered_file(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        file: &StoragePath,
        text: &str,
        except: Option<&str>,
    ) -> Result<()> {
        let root = StoragePath::parse(&namespace_location(warehouse, namespace)).ok();
        if !root.is_some_and(|root| root.strictly_contains(file)) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: metadata file {text} must lie inside the location of \
                 namespace {}",
                display(&namespace.levels)
            )));
        }
        let others = self.store.overlapping(file, except).await?;
        if others.iter().any(|other| other.contains(file)) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: metadata file {text} lies inside the location of another \
                 table or view"
            )));
        }
        Ok(())
    }

    /// 403 unless the table `id` at `location` may have its storage
    /// delegated: a valid location no other live object's overlaps (only
    /// rows written before locations were confined can fail this), without
    /// IAM policy wildcards.
    pub(crate) async fn check_exclusive(&self, location: &str, id: &str) -> Result<()> {
        if has_policy_wildcards(location)
            || self.confinement(location, Some(id)).await?.root().is_none()
        {
            return Err(overlap_refusal());
        }
        Ok(())
    }

    /// What the table (or view) at `location`, row `except`, may touch in storage.
    pub(crate) async fn confinement(
        &self,
        location: &str,
        except: Option<&str>,
    ) -> Result<Confinement> {
        let Ok(path) = StoragePath::parse(location) else {
            return Ok(Confinement::nothing());
        };
        let others = self.store.overlapping(&path, except).await?;
        Ok(Confinement::new(location, &others))
    }
}
