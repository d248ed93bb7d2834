//! Namespaces: create, load, list, update properties, drop.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use floe_shared::auth::Listing;
use floe_shared::wire::{
    CreateNamespaceRequest, ListNamespacesResponse, NamespaceResponse,
    UpdateNamespacePropertiesRequest, UpdateNamespacePropertiesResponse,
};

use super::Catalog;
use super::names::{display, validate_name, validate_namespace};
use super::paging::{PageRequest, fetch_limit, finish_page, visible};
use crate::error::{CatalogError, Result};
use crate::store::NamespaceRecord;
use crate::warehouse::Warehouse;

impl Catalog {
    pub(crate) async fn namespace_record(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
    ) -> Result<NamespaceRecord> {
        self.store
            .namespace(&warehouse.record.id, levels)
            .await?
            .ok_or_else(|| {
                CatalogError::NoSuchNamespace(format!(
                    "Namespace does not exist: {}",
                    display(levels)
                ))
            })
    }

    /// Where a new table or view goes: checks its name (`what`: `Table
    /// name` or `View name`), finds the warehouse, runs `check` on it (a
    /// registration checks its metadata file's path there), then finds the
    /// namespace.
    pub(super) async fn destination<T>(
        &self,
        prefix: &str,
        levels: &[String],
        what: &str,
        name: &str,
        check: impl FnOnce(&Warehouse) -> Result<T>,
    ) -> Result<(Arc<Warehouse>, NamespaceRecord, T)> {
        validate_name(what, name)?;
        let warehouse = self.warehouse(prefix).await?;
        let checked = check(&warehouse)?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        Ok((warehouse, namespace, checked))
    }

    /// `POST /namespaces`.
    pub async fn create_namespace(
        &self,
        prefix: &str,
        req: CreateNamespaceRequest,
    ) -> Result<NamespaceResponse> {
        validate_namespace(&req.namespace)?;
        let warehouse = self.warehouse(prefix).await?;
        let parent_id = match req.namespace.split_last() {
            Some((_, parent)) if !parent.is_empty() => {
                Some(self.namespace_record(&warehouse, parent).await?.id)
            }
            _ => None,
        };
        let properties: BTreeMap<String, String> = req.properties.into_iter().collect();
        if let Some(location) = properties.get("location") {
            warehouse.check_location(location.trim_end_matches('/'))?;
        }
        let record = self
            .store
            .insert_namespace(
                &warehouse.record.id,
                &req.namespace,
                parent_id.as_deref(),
                &properties,
            )
            .await?;
        Ok(NamespaceResponse {
            namespace: record.levels,
            properties: record.properties,
        })
    }

    /// `GET /namespaces/{ns}` (and HEAD).
    pub async fn load_namespace(
        &self,
        prefix: &str,
        levels: &[String],
    ) -> Result<NamespaceResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.namespace_record(&warehouse, levels).await?;
        Ok(NamespaceResponse {
            namespace: record.levels,
            properties: record.properties,
        })
    }

    /// `GET /namespaces?parent=…`.
    ///
    /// `listing` says what the caller may see: every child, or only those
    /// on the way to the namespaces it may read (paging stays exact: the
    /// database pages over the visible ones alone).
    pub async fn list_namespaces(
        &self,
        prefix: &str,
        parent: Option<Vec<String>>,
        page: PageRequest,
        listing: &Listing,
    ) -> Result<ListNamespacesResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let levels = parent.clone().unwrap_or_default();
        let only = visible(listing, &levels, "namespaces")?;
        let parent_id = match &parent {
            Some(levels) => Some(self.namespace_record(&warehouse, levels).await?.id),
            None => None,
        };
        let after = page.after.as_deref();
        let names = match only {
            None => {
                self.store
                    .list_namespaces(
                        &warehouse.record.id,
                        parent_id.as_deref(),
                        after,
                        fetch_limit(&page),
                    )
                    .await?
            }
            Some(children) => {
                let names: Vec<String> = children
                    .iter()
                    .map(|child| {
                        let mut full = levels.clone();
                        full.push(child.clone());
                        crate::store::join_levels(&full)
                    })
                    .collect();
                self.store
                    .namespaces_named(&warehouse.record.id, &names, after, fetch_limit(&page))
                    .await?
            }
        };
        let (namespaces, next_page_token) =
            finish_page(names, &page, |levels| crate::store::join_levels(levels));
        Ok(ListNamespacesResponse {
            next_page_token,
            namespaces,
        })
    }

    /// `POST /namespaces/{ns}/properties`.
    pub async fn update_namespace_properties(
        &self,
        prefix: &str,
        levels: &[String],
        req: UpdateNamespacePropertiesRequest,
        may_relocate: bool,
    ) -> Result<UpdateNamespacePropertiesResponse> {
        let removals: HashSet<&String> = req.removals.iter().collect();
        let mut both: Vec<&String> = req
            .updates
            .keys()
            .filter(|k| removals.contains(k))
            .collect();
        if !both.is_empty() {
            both.sort();
            return Err(CatalogError::Unprocessable(format!(
                "Keys are both updated and removed: {}",
                both.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let warehouse = self.warehouse(prefix).await?;
        let relocates =
            req.updates.contains_key("location") || req.removals.iter().any(|k| k == "location");
        if relocates && !may_relocate {
            return Err(CatalogError::Forbidden(format!(
                "Storage confinement: changing the location of namespace {} needs the writer \
                 role on the whole warehouse (as creating namespaces does)",
                display(levels)
            )));
        }
        if let Some(location) = req.updates.get("location") {
            warehouse.check_location(location.trim_end_matches('/'))?;
        }
        loop {
            let record = self.namespace_record(&warehouse, levels).await?;
            let mut properties = record.properties.clone();
            let mut response = UpdateNamespacePropertiesResponse::default();
            for key in &req.removals {
                if properties.remove(key).is_some() {
                    response.removed.push(key.clone());
                } else {
                    response.missing.push(key.clone());
                }
            }
            for (key, value) in &req.updates {
                properties.insert(key.clone(), value.clone());
                response.updated.push(key.clone());
            }
            response.updated.sort();
            if self
                .store
                .update_namespace_properties(&record.id, record.version, &properties)
                .await?
            {
                return Ok(response);
            }
            // Lost a race with another property update: read again and reapply.
        }
    }

    /// `DELETE /namespaces/{ns}`.
    pub async fn drop_namespace(&self, prefix: &str, levels: &[String]) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.namespace_record(&warehouse, levels).await?;
        if self
            .store
            .delete_namespace(&record.id, &display(levels))
            .await?
        {
            Ok(())
        } else {
            Err(CatalogError::NoSuchNamespace(format!(
                "Namespace does not exist: {}",
                display(levels)
            )))
        }
    }
}
