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
use floe_shared::auth::Listing;
use floe_shared::wire::{ListTablesResponse, RenameTableRequest};
use iceberg::spec::{ViewFormatVersion, ViewMetadata, ViewMetadataBuilder};

use super::Catalog;
use super::commit::{Commit, Round, Staged, refusal};
use super::documents::read_own_file;
use super::names::{check_identifier, no_such, table_display};
use super::paging::PageRequest;
use super::view_update;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{NamespaceRecord, ObjectKind, TableDocs, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::{CommitViewRequest, CreateViewRequest, RegisterViewRequest};

/// A serialized `LoadViewResult` and the location its ETag derives from.
#[derive(Debug, Clone)]
pub struct ViewResponse {
    /// JSON body.
    pub body: Bytes,
    /// Location of the metadata file.
    pub metadata_location: String,
}

fn invalid_view(err: impl std::fmt::Display) -> CatalogError {
    CatalogError::BadRequest(format!("Invalid view metadata change: {err}"))
}

fn parse_view(text: &str) -> Result<ViewMetadata> {
    serde_json::from_str(text).map_err(|e| {
        CatalogError::internal_with(format!("stored view metadata is invalid: {e}"), e)
    })
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

/// A replace of one view.
struct ViewReplace<'a> {
    catalog: &'a Catalog,
    warehouse: &'a Warehouse,
    prefix: &'a str,
    levels: &'a [String],
    name: &'a str,
    req: &'a CommitViewRequest,
}

impl Commit for ViewReplace<'_> {
    type Then = ();
    type Output = ViewResponse;
    const METERED: bool = false;
    const TOGETHER: bool = false;
    const RIVALS: &'static str = "replaces";

    fn subject(&self) -> String {
        format!("Replace of view {}", table_display(self.levels, self.name))
    }

    async fn round(
        &mut self,
        attempt: u32,
        staged: &mut Vec<Staged<()>>,
    ) -> Result<Round<ViewResponse>> {
        let (catalog, warehouse, levels) = (self.catalog, self.warehouse, self.levels);
        let current = catalog.view_record(warehouse, levels, self.name).await?;
        let base = parse_view(&current.metadata)?;
        let base_location = base.location().to_string();
        for requirement in &self.req.requirements {
            requirement
                .check(&base)
                .map_err(|e| CatalogError::CommitFailed(e.to_string()))?;
        }
        let refused = refusal(attempt, invalid_view);
        let mut builder = base.into_builder();
        for update in self.req.updates.iter().cloned() {
            builder = view_update::apply(builder, update).map_err(&refused)?;
        }
        let built = builder.build().map_err(&refused)?;
        if built.changes.is_empty() {
            return catalog
                .view_response(warehouse, &current.metadata_location, &current.metadata)
                .map(Round::Done);
        }
        let metadata = built.metadata;
        let moved = metadata.location() != base_location;
        let path = catalog
            .version_location(
                warehouse,
                levels,
                &current.id,
                metadata.location(),
                moved,
                "view",
            )
            .await?;
        let version = file_version(&current.metadata_location)
            .map_or(metadata.history().len() as u64, |v| v + 1);
        let location = view_metadata_location(&metadata, version);
        let json = serde_json::to_string(&metadata)?;
        write_view_file(warehouse, &location, &json).await?;
        staged.push(Staged {
            id: current.id,
            base: current.metadata_location,
            docs: TableDocs {
                metadata_location: location,
                metadata: json,
                metadata_refs: None,
            },
            relocated: moved.then_some(path),
            then: (),
        });
        Ok(Round::Swap)
    }

    async fn committed(&mut self, staged: Vec<Staged<()>>) -> Result<ViewResponse> {
        let Some(version) = staged.into_iter().next_back() else {
            return Err(CatalogError::internal(
                "a view replace staged nothing".into(),
            ));
        };
        self.catalog
            .events()
            .publish_view(self.prefix, self.levels, self.name, "commit")
            .await;
        self.catalog.view_response(
            self.warehouse,
            &version.docs.metadata_location,
            &version.docs.metadata,
        )
    }
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

    pub(super) async fn view_record(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
    ) -> Result<TableRecord> {
        self.store()
            .view(&warehouse.record.id, levels, name)
            .await?
            .ok_or_else(|| no_such(ObjectKind::View, levels, name))
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
        self.insert_new(
            ObjectKind::View,
            warehouse,
            namespace,
            levels,
            name,
            &docs,
            path,
            write,
        )
        .await?;
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
        self.list_objects(ObjectKind::View, prefix, levels, page, listing)
            .await
    }

    /// `POST /namespaces/{ns}/views`.
    pub async fn create_view(
        &self,
        prefix: &str,
        levels: &[String],
        req: CreateViewRequest,
    ) -> Result<ViewResponse> {
        let (warehouse, namespace, ()) = self
            .destination(prefix, levels, "View name", &req.name, |_| Ok(()))
            .await?;
        let (location, path) = self
            .new_location(&warehouse, &namespace, req.location.as_deref(), &req.name)
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
        let mut replace = ViewReplace {
            catalog: self,
            warehouse: &warehouse,
            prefix,
            levels,
            name,
            req: &req,
        };
        self.run_commit(&warehouse, &mut replace).await
    }

    /// `DELETE /namespaces/{ns}/views/{v}`. The metadata files stay (a view
    /// has no data; Java's catalogs keep them too).
    pub async fn drop_view(&self, prefix: &str, levels: &[String], name: &str) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.view_record(&warehouse, levels, name).await?;
        if !self.store().delete_table(&record.id).await? {
            return Err(no_such(ObjectKind::View, levels, name));
        }
        self.events()
            .publish_view(prefix, levels, name, "drop")
            .await;
        Ok(())
    }

    /// `POST /views/rename`.
    pub async fn rename_view(&self, prefix: &str, req: RenameTableRequest) -> Result<()> {
        self.rename(ObjectKind::View, prefix, req).await
    }

    /// `POST /namespaces/{ns}/register-view`: tracks a view whose metadata
    /// file already exists in the warehouse.
    pub async fn register_view(
        &self,
        prefix: &str,
        levels: &[String],
        req: RegisterViewRequest,
    ) -> Result<ViewResponse> {
        let (warehouse, namespace, file) = self
            .destination(prefix, levels, "View name", &req.name, |warehouse| {
                warehouse.check_location(&req.metadata_location)
            })
            .await?;
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
