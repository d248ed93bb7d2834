//! Iceberg views: list, create, load, replace, drop, rename, register.
//!
//! A view is kept like a table: its metadata document is written to
//! `<location>/metadata/<version>-<uuid>.metadata.json`, and a row holds the
//! pointer to it beside the document. Views and tables share one name space
//! per namespace (one unique index), so a name is a table or a view, never
//! both, whoever creates it first. A replace is a compare-and-set of the
//! pointer, retried on the server while the requirements still hold, as
//! table commits are.

use bytes::Bytes;
use floe_shared::wire::{ListTablesResponse, RenameTableRequest, TableIdentifier};
use iceberg::spec::{ViewFormatVersion, ViewMetadata, ViewMetadataBuilder};

use super::Catalog;
use super::commit::refused_without_writing;
use super::documents::{delete_quietly, read_own_file};
use super::names::{check_identifier, display, table_display, validate_name, validate_namespace};
use super::paging::{PageRequest, fetch_limit, finish_page, visible};
use super::view_update;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{NamespaceRecord, ObjectKind, TableDocs, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::{CommitViewRequest, CreateViewRequest, RegisterViewRequest};
use floe_shared::auth::Listing;

/// A serialized `LoadViewResult` and the location its ETag derives from.
#[derive(Debug, Clone)]
pub struct ViewResponse {
    /// JSON body.
    pub body: Bytes,
    /// Location of the metadata file.
    pub metadata_location: String,
}

fn no_such_view(levels: &[String], name: &str) -> CatalogError {
    CatalogError::NoSuchView(format!(
        "View does not exist: {}",
        table_display(levels, name)
    ))
}

fn invalid_view(err: impl std::fmt::Display) -> CatalogError {
    CatalogError::BadRequest(format!("Invalid view metadata change: {err}"))
}

fn parse_view(text: &str) -> Result<ViewMetadata> {
    serde_json::from_str(text)
        .map_err(|e| CatalogError::Internal(format!("stored view metadata is invalid: {e}")))
}

/// The file name version of a metadata location (`00003-<uuid>.metadata.json` → 3).
fn file_version(location: &str) -> Option<u64> {
    let file = location.rsplit('/').next()?;
    let (digits, rest) = file.split_once('-')?;
    rest.ends_with(".metadata.json")
        .then(|| digits.parse().ok())
        .flatten()
}

/// `<location>/metadata/<version:05>-<uuid>.metadata.json`.
fn view_metadata_location(metadata: &ViewMetadata, version: u64) -> String {
    format!(
        "{}/metadata/{version:05}-{}.metadata.json",
        metadata.location().trim_end_matches('/'),
        uuid::Uuid::now_v7()
    )
}

async fn write_view_file(warehouse: &Warehouse, location: &str, json: &str) -> Result<()> {
    warehouse
        .metadata_io(location)
        .new_output(location)
        .map_err(CatalogError::storage)?
        .write(Bytes::copy_from_slice(json.as_bytes()))
        .await
        .map_err(CatalogError::storage)
}

impl Catalog {
    fn view_response(
        &self,
        warehouse: &Warehouse,
        location: &str,
        metadata: &str,
    ) -> Result<ViewResponse> {
        let config = warehouse.client_config();
        let body = self
            .bodies()
            .load_table_result(Some(location), metadata, Some(&config))?;
        Ok(ViewResponse {
            body,
            metadata_location: location.to_string(),
        })
    }

    async fn view_record(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
    ) -> Result<TableRecord> {
        self.store()
            .view(&warehouse.record.id, levels, name)
            .await?
            .ok_or_else(|| no_such_view(levels, name))
    }

    /// Writes the first metadata file and inserts the view row; removes the
    /// file again when the row cannot be inserted.
    #[allow(clippy::too_many_arguments)]
    async fn insert_view(
        &self,
        prefix: &str,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        levels: &[String],
        name: &str,
        location: String,
        json: String,
        write: bool,
        path: &StoragePath,
    ) -> Result<ViewResponse> {
        if write {
            write_view_file(warehouse, &location, &json).await?;
        }
        let docs = TableDocs {
            metadata_location: location.clone(),
            metadata: json,
            metadata_refs: None,
        };
        if let Err(err) = self
            .store()
            .insert_object(ObjectKind::View, &namespace.id, name, &docs, path)
            .await
        {
            if !refused_without_writing(&err) {
                return Err(CatalogError::CommitStateUnknown(format!(
                    "Create of view {} has unknown outcome: {err}",
                    table_display(levels, name)
                )));
            }
            if write {
                delete_quietly(warehouse, &location).await;
            }
            return Err(match err {
                CatalogError::AlreadyExists(_) => {
                    self.name_taken(&namespace.id, levels, name, ObjectKind::View)
                        .await
                }
                CatalogError::NoSuchNamespace(_) => CatalogError::NoSuchNamespace(format!(
                    "Namespace does not exist: {}",
                    display(levels)
                )),
                other => other,
            });
        }
        self.events()
            .publish_view(prefix, levels, name, "create")
            .await;
        self.view_response(warehouse, &location, &docs.metadata)
    }

    /// The result a keyed create, replace or register of a view whose
    /// effect produced `metadata_location` would have answered.
    pub async fn applied_view(
        &self,
        prefix: &str,
        metadata_location: &str,
    ) -> Result<ViewResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let text = read_own_file(&warehouse, metadata_location).await?;
        self.view_response(&warehouse, metadata_location, &text)
    }

    /// `GET /namespaces/{ns}/views`.
    pub async fn list_views(
        &self,
        prefix: &str,
        levels: &[String],
        page: PageRequest,
        listing: &Listing,
    ) -> Result<ListTablesResponse> {
        let on_the_way = visible(listing, levels, "views")?.is_some();
        let warehouse = self.warehouse(prefix).await?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        let names = if on_the_way {
            Vec::new()
        } else {
            self.store()
                .list_objects(
                    ObjectKind::View,
                    &namespace.id,
                    page.after.as_deref(),
                    fetch_limit(&page),
                )
                .await?
        };
        let (names, next_page_token) = finish_page(names, &page, Clone::clone);
        Ok(ListTablesResponse {
            next_page_token,
            identifiers: names
                .into_iter()
                .map(|name| TableIdentifier {
                    namespace: levels.to_vec(),
                    name,
                })
                .collect(),
        })
    }

    /// `POST /namespaces/{ns}/views`.
    pub async fn create_view(
        &self,
        prefix: &str,
        levels: &[String],
        req: CreateViewRequest,
    ) -> Result<ViewResponse> {
        validate_name("View name", &req.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        let location = match &req.location {
            Some(location) => location.trim_end_matches('/').to_string(),
            None => self.default_table_location(&warehouse, &namespace, &req.name),
        };
        let path = self
            .check_new_location(&warehouse, &namespace, &location, None)
            .await?;
        let metadata = ViewMetadataBuilder::new(
            location,
            req.schema,
            req.view_version,
            ViewFormatVersion::V1,
            req.properties,
        )
        .and_then(ViewMetadataBuilder::build)
        .map_err(invalid_view)?
        .metadata;
        let file = view_metadata_location(&metadata, 0);
        let json = serde_json::to_string(&metadata)?;
        self.insert_view(
            prefix, &warehouse, &namespace, levels, &req.name, file, json, true, &path,
        )
        .await
    }

    /// `GET /namespaces/{ns}/views/{v}`.
    pub async fn load_view(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
    ) -> Result<ViewResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.view_record(&warehouse, levels, name).await?;
        self.view_response(&warehouse, &record.metadata_location, &record.metadata)
    }

    /// `HEAD /namespaces/{ns}/views/{v}`: 204 or 404.
    pub async fn view_exists(&self, prefix: &str, levels: &[String], name: &str) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        self.view_record(&warehouse, levels, name).await.map(|_| ())
    }

    /// `POST /namespaces/{ns}/views/{v}`: check the requirements, apply the
    /// updates, write the next metadata file, compare-and-set the pointer;
    /// retried on the server when another replace won the race.
    pub async fn replace_view(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: CommitViewRequest,
    ) -> Result<ViewResponse> {
        check_identifier(req.identifier.as_ref(), levels, name)?;
        let warehouse = self.warehouse(prefix).await?;
        for update in &req.updates {
            if let iceberg::ViewUpdate::SetLocation { location } = update {
                warehouse.check_location(location.trim_end_matches('/'))?;
            }
        }
        let attempts = self.settings().commit_max_retries + 1;
        for attempt in 0..attempts {
            let current = self.view_record(&warehouse, levels, name).await?;
            let base = parse_view(&current.metadata)?;
            let base_location = base.location().to_string();
            for requirement in &req.requirements {
                requirement
                    .check(&base)
                    .map_err(CatalogError::CommitFailed)?;
            }
            // The requirements held, so on a retry a refusal means the view
            // moved under the client: a conflict, not bad input.
            let refused = |e: iceberg::Error| {
                if attempt == 0 {
                    invalid_view(e)
                } else {
                    CatalogError::commit_failed(e)
                }
            };
            let mut builder = base.into_builder();
            for update in req.updates.iter().cloned() {
                builder = view_update::apply(builder, update).map_err(refused)?;
            }
            let built = builder.build().map_err(refused)?;
            if built.changes.is_empty() {
                return self.view_response(
                    &warehouse,
                    &current.metadata_location,
                    &current.metadata,
                );
            }
            let metadata = built.metadata;
            let relocated = if metadata.location() != base_location {
                let namespace = self.namespace_record(&warehouse, levels).await?;
                Some(
                    self.check_new_location(
                        &warehouse,
                        &namespace,
                        metadata.location(),
                        Some(&current.id),
                    )
                    .await?,
                )
            } else {
                StoragePath::parse(metadata.location()).map_err(|e| {
                    CatalogError::BadRequest(format!(
                        "Storage confinement: the view's location {} is not an allowed storage \
                         path ({e}); move it with set-location",
                        metadata.location()
                    ))
                })?;
                None
            };
            let version = file_version(&current.metadata_location)
                .map_or(metadata.history().len() as u64, |v| v + 1);
            let location = view_metadata_location(&metadata, version);
            let json = serde_json::to_string(&metadata)?;
            write_view_file(&warehouse, &location, &json).await?;
            let docs = TableDocs {
                metadata_location: location.clone(),
                metadata: json,
                metadata_refs: None,
            };
            let swapped = match &relocated {
                None => {
                    self.store()
                        .swap_table_metadata(&current.id, &current.metadata_location, &docs)
                        .await
                }
                Some(path) => {
                    self.store()
                        .swap_relocated(&current.id, &current.metadata_location, &docs, path)
                        .await
                }
            };
            match swapped {
                Ok(true) => {
                    self.events()
                        .publish_view(prefix, levels, name, "commit")
                        .await;
                    return self.view_response(&warehouse, &location, &docs.metadata);
                }
                Ok(false) => delete_quietly(&warehouse, &location).await,
                Err(err @ CatalogError::BadRequest(_)) => {
                    delete_quietly(&warehouse, &location).await;
                    return Err(err);
                }
                Err(err) => {
                    return Err(CatalogError::CommitStateUnknown(format!(
                        "Replace of view {} has unknown outcome: {err}",
                        table_display(levels, name)
                    )));
                }
            }
        }
        Err(CatalogError::CommitFailed(format!(
            "Replace of view {} lost {attempts} races with concurrent replaces; retry",
            table_display(levels, name)
        )))
    }

    /// `DELETE /namespaces/{ns}/views/{v}`. The metadata files stay (a view
    /// has no data; Java's catalogs keep them too).
    pub async fn drop_view(&self, prefix: &str, levels: &[String], name: &str) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.view_record(&warehouse, levels, name).await?;
        if !self.store().delete_table(&record.id).await? {
            return Err(no_such_view(levels, name));
        }
        self.events()
            .publish_view(prefix, levels, name, "drop")
            .await;
        Ok(())
    }

    /// `POST /views/rename`.
    pub async fn rename_view(&self, prefix: &str, req: RenameTableRequest) -> Result<()> {
        validate_namespace(&req.source.namespace)?;
        validate_namespace(&req.destination.namespace)?;
        validate_name("View name", &req.source.name)?;
        validate_name("View name", &req.destination.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let source = self
            .view_record(&warehouse, &req.source.namespace, &req.source.name)
            .await?;
        let destination = self
            .namespace_record(&warehouse, &req.destination.namespace)
            .await?;
        let renamed = self
            .move_object(
                &source.id,
                &destination.id,
                &req.destination,
                ObjectKind::View,
            )
            .await?;
        if !renamed {
            return Err(no_such_view(&req.source.namespace, &req.source.name));
        }
        let (src, dst) = (&req.source, &req.destination);
        self.events()
            .publish_view(prefix, &src.namespace, &src.name, "rename")
            .await;
        self.events()
            .publish_view(prefix, &dst.namespace, &dst.name, "rename")
            .await;
        Ok(())
    }

    /// `POST /namespaces/{ns}/register-view`: tracks a view whose metadata
    /// file already exists in the warehouse.
    pub async fn register_view(
        &self,
        prefix: &str,
        levels: &[String],
        req: RegisterViewRequest,
    ) -> Result<ViewResponse> {
        validate_name("View name", &req.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let file = warehouse.check_location(&req.metadata_location)?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        if self
            .store()
            .kind_of(&namespace.id, &req.name)
            .await?
            .is_some()
        {
            return Err(self
                .name_taken(&namespace.id, levels, &req.name, ObjectKind::View)
                .await);
        }
        self.check_registered_file(&warehouse, &namespace, &file, &req.metadata_location, None)
            .await?;
        // One answer for a file that is missing, unreadable or not view
        // metadata: the details stay in the log.
        let unreadable = |e: &dyn std::fmt::Display| {
            tracing::info!(error = %e, "register-view: metadata file unreadable");
            CatalogError::BadRequest(format!(
                "Cannot read view metadata from {}",
                req.metadata_location
            ))
        };
        let bytes = warehouse
            .metadata_io(&req.metadata_location)
            .new_input(&req.metadata_location)
            .map_err(|e| unreadable(&e))?
            .read()
            .await
            .map_err(|e| unreadable(&e))?;
        let metadata: ViewMetadata = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        let path = self
            .check_new_location(&warehouse, &namespace, metadata.location(), None)
            .await?;
        if !path.contains(&file) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: metadata file {} lies outside the view's location {}",
                req.metadata_location,
                metadata.location()
            )));
        }
        let json = serde_json::to_string(&metadata)?;
        self.insert_view(
            prefix,
            &warehouse,
            &namespace,
            levels,
            &req.name,
            req.metadata_location,
            json,
            false,
            &path,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::file_version;

    #[test]
    fn file_versions_are_read_from_standard_names_only() {
        assert_eq!(
            file_version("s3://b/v/metadata/00003-0190-aa.metadata.json"),
            Some(3)
        );
        assert_eq!(file_version("s3://b/v/metadata/v1.metadata.json"), None);
        assert_eq!(file_version("s3://b/v/metadata/x-y.json"), None);
    }
}
