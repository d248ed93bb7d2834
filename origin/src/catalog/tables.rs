//! Tables: list, load (with delegated storage access), credentials and
//! signing, create, drop, unregister, rename.

use std::collections::HashMap;

use bytes::Bytes;
use floe_shared::auth::Listing;
use floe_shared::etag::SnapshotsMode;
use floe_shared::wire::{ListTablesResponse, RenameTableRequest, TableIdentifier};
use iceberg::spec::{FormatVersion, TableMetadata, TableMetadataBuilder};
use iceberg::{MetadataLocation, TableCreation};

use super::Catalog;
use super::confinement::check_metadata_paths;
use super::documents::{build_documents, read_own_file, write_metadata_file};
use super::names::{no_such, table_display, validate_name, validate_namespace};
use super::paging::PageRequest;
use crate::delegation::{
    DelegationRequest, RemoteSignRequest, RemoteSignResult, StorageAccess, StorageCredential,
};
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{NamespaceRecord, ObjectKind, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::CreateTableRequest;

/// A serialized table result with what the HTTP layer needs for caching.
#[derive(Debug, Clone)]
pub struct TableResponse {
    /// JSON body.
    pub body: Bytes,
    /// Location of the metadata file (`None` for a staged create).
    pub metadata_location: Option<String>,
    /// The delegation that shaped the body (the ETag's delegation field).
    pub delegation: String,
    /// The body carries credentials: never stored by shared caches.
    pub private: bool,
}

/// The `location` of a stored metadata document, read without building it.
fn table_location(metadata_json: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Location<'a> {
        #[serde(borrow)]
        location: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Location>(metadata_json)
        .map(|l| l.location.into_owned())
        .map_err(|e| {
            CatalogError::internal_with(format!("stored table metadata is invalid: {e}"), e)
        })
}

/// The table's signing endpoint below the catalog root, as clients append it.
fn sign_path(prefix: &str, levels: &[String], name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let namespace: Vec<String> = levels.iter().map(|l| encode(l)).collect();
    format!(
        "v1/{}/namespaces/{}/tables/{}/sign",
        encode(prefix),
        namespace.join("%1F"),
        encode(name)
    )
}

/// Reads `format-version` out of creation properties (it is not a property).
fn take_format_version(properties: &mut HashMap<String, String>) -> Result<FormatVersion> {
    match properties.remove("format-version").as_deref() {
        None => Ok(FormatVersion::V2),
        Some("1") => Ok(FormatVersion::V1),
        Some("2") => Ok(FormatVersion::V2),
        Some("3") => Ok(FormatVersion::V3),
        Some(other) => Err(CatalogError::BadRequest(format!(
            "Unsupported format-version: {other}"
        ))),
    }
}

impl Catalog {
    /// `GET /namespaces/{ns}/tables`.
    ///
    /// A caller who may read only namespaces below this one sees none of
    /// its tables.
    pub async fn list_tables(
        &self,
        prefix: &str,
        levels: &[String],
        page: PageRequest,
        listing: &Listing,
    ) -> Result<ListTablesResponse> {
        self.list_objects(ObjectKind::Table, prefix, levels, page, listing)
            .await
    }

    pub(super) fn table_response(
        &self,
        warehouse: &Warehouse,
        location: Option<&str>,
        metadata: &str,
    ) -> Result<TableResponse> {
        let config = warehouse.client_config();
        let body = self
            .bodies
            .load_table_result(location, metadata, Some(&config))?;
        Ok(TableResponse {
            body,
            metadata_location: location.map(str::to_string),
            delegation: String::new(),
            private: false,
        })
    }

    /// A table result with the storage access the client asked for
    /// (vended credentials or remote signing), when the warehouse offers it.
    /// `stored` is the row of a table read from the database, whose location
    /// is checked against the others first; `None` for a location this
    /// request has just claimed (or a staged table, which has none yet).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn delegated_response(
        &self,
        warehouse: &Warehouse,
        prefix: &str,
        levels: &[String],
        name: &str,
        location: Option<&str>,
        metadata: &str,
        delegation: DelegationRequest,
        stored: Option<&str>,
    ) -> Result<TableResponse> {
        if !warehouse.delegator.offers(delegation.requested) {
            return self.table_response(warehouse, location, metadata);
        }
        let table_location = table_location(metadata)?;
        if let Some(id) = stored
            && self.check_exclusive(&table_location, id).await.is_err()
        {
            // A row from before locations were confined, overlapping
            // another object: no credentials or signatures until it moves.
            tracing::warn!(location = %table_location, "no storage access delegated: the table's location overlaps another's");
            return self.table_response(warehouse, location, metadata);
        }
        let delegated = warehouse
            .delegator
            .delegate(
                &table_location,
                delegation,
                &sign_path(prefix, levels, name),
            )
            .await?;
        let mut config = warehouse.client_config();
        config.extend(delegated.config);
        let body = if delegated.credentials.is_empty() {
            self.bodies
                .load_table_result(location, metadata, Some(&config))?
        } else {
            self.bodies.load_table_result_with_credentials(
                location,
                metadata,
                Some(&config),
                &delegated.credentials,
            )?
        };
        Ok(TableResponse {
            body,
            metadata_location: location.map(str::to_string),
            delegation: delegated.etag_part,
            private: delegated.private,
        })
    }

    async fn table_record(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
        refs: bool,
    ) -> Result<TableRecord> {
        self.store
            .table(&warehouse.record.id, levels, name, refs)
            .await?
            .ok_or_else(|| no_such(ObjectKind::Table, levels, name))
    }

    /// `GET /namespaces/{ns}/tables/{t}`: one indexed read, the stored
    /// document spliced into the body as it is.
    pub async fn load_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        mode: SnapshotsMode,
        delegation: DelegationRequest,
    ) -> Result<TableResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self
            .table_record(&warehouse, levels, name, mode == SnapshotsMode::Refs)
            .await?;
        self.delegated_response(
            &warehouse,
            prefix,
            levels,
            name,
            Some(&record.metadata_location),
            &record.metadata,
            delegation,
            Some(&record.id),
        )
        .await
    }

    /// The result a keyed commit, create or register whose effect produced
    /// `metadata_location` would have answered (its origin went away before
    /// answering): the table as that metadata file holds it.
    pub async fn applied_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        metadata_location: &str,
        delegation: DelegationRequest,
    ) -> Result<TableResponse> {
        let warehouse = self.warehouse(prefix).await?;
        let text = read_own_file(&warehouse, metadata_location).await?;
        self.delegated_response(
            &warehouse,
            prefix,
            levels,
            name,
            Some(metadata_location),
            &text,
            delegation,
            None,
        )
        .await
    }

    /// `GET …/tables/{t}/credentials`: what `vended-credentials` would hand
    /// out for the table now (an empty list when the warehouse vends none).
    pub async fn load_credentials(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        access: StorageAccess,
    ) -> Result<Vec<StorageCredential>> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.table_record(&warehouse, levels, name, true).await?;
        let location = table_location(&record.metadata)?;
        self.check_exclusive(&location, &record.id).await?;
        Ok(warehouse
            .delegator
            .vend(&location, access)
            .await?
            .into_iter()
            .collect())
    }

    /// `POST …/tables/{t}/sign`: signs an S3 request for an object of the table.
    pub async fn sign_request(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: RemoteSignRequest,
        access: StorageAccess,
    ) -> Result<RemoteSignResult> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.table_record(&warehouse, levels, name, true).await?;
        let location = table_location(&record.metadata)?;
        self.check_exclusive(&location, &record.id).await?;
        warehouse.delegator.sign(&location, req, access).await
    }

    /// 204 when the table exists, 404 otherwise (HEAD, and the metrics report check).
    pub async fn table_exists(&self, prefix: &str, levels: &[String], name: &str) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        self.table_record(&warehouse, levels, name, true)
            .await
            .map(|_| ())
    }

    /// The 409 for a name already taken, saying by what (the messages of
    /// the Java reference catalog).
    pub(crate) async fn name_taken(
        &self,
        namespace_id: &str,
        levels: &[String],
        name: &str,
        creating: ObjectKind,
    ) -> CatalogError {
        let ident = table_display(levels, name);
        let existing = self
            .store
            .kind_of(namespace_id, name)
            .await
            .ok()
            .flatten()
            .unwrap_or(creating);
        CatalogError::AlreadyExists(match (creating, existing) {
            (ObjectKind::Table, ObjectKind::Table) => format!("Table already exists: {ident}"),
            (ObjectKind::Table, ObjectKind::View) => {
                format!("View with same name already exists: {ident}")
            }
            (ObjectKind::View, ObjectKind::Table) => {
                format!("Table with same name already exists: {ident}")
            }
            (ObjectKind::View, ObjectKind::View) => format!("View already exists: {ident}"),
        })
    }

    /// Moves a table or view to `to` in namespace `namespace_id`; false
    /// when it is gone; a taken name is a 409 saying what holds it.
    pub(crate) async fn move_object(
        &self,
        id: &str,
        namespace_id: &str,
        to: &TableIdentifier,
        kind: ObjectKind,
    ) -> Result<bool> {
        let target = table_display(&to.namespace, &to.name);
        match self
            .store
            .rename_table(id, namespace_id, &to.name, &target)
            .await
        {
            Err(CatalogError::AlreadyExists(_)) => Err(self
                .name_taken(namespace_id, &to.namespace, &to.name, kind)
                .await),
            other => other,
        }
    }

    /// Whether `name` is a view of that namespace.
    pub(super) async fn view_named(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
    ) -> Result<bool> {
        Ok(self
            .store
            .view(&warehouse.record.id, levels, name)
            .await?
            .is_some())
    }

    /// `POST /namespaces/{ns}/tables`.
    pub async fn create_table(
        &self,
        prefix: &str,
        levels: &[String],
        req: CreateTableRequest,
        delegation: DelegationRequest,
    ) -> Result<TableResponse> {
        let (warehouse, namespace, ()) = self
            .destination(prefix, levels, "Table name", &req.name, |_| Ok(()))
            .await?;
        let (location, path) = self
            .new_location(&warehouse, &namespace, req.location.as_deref(), &req.name)
            .await?;
        let mut properties = req.properties;
        let format_version = take_format_version(&mut properties)?;
        let creation = TableCreation::builder()
            .name(req.name.clone())
            .location(location.clone())
            .schema(req.schema)
            .partition_spec_opt(req.partition_spec)
            .sort_order_opt(req.write_order)
            .properties(properties)
            .format_version(format_version)
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(iceberg::spec::TableMetadataBuilder::build)
            .map_err(CatalogError::invalid_metadata)?
            .metadata;
        check_metadata_paths(&path, &metadata)?;
        if req.stage_create {
            let text = serde_json::to_string(&metadata)?;
            return self
                .delegated_response(
                    &warehouse, prefix, levels, &req.name, None, &text, delegation, None,
                )
                .await;
        }
        let file = MetadataLocation::new_with_metadata(&location, &metadata);
        self.create_from_metadata(
            &warehouse, prefix, &namespace, levels, &req.name, metadata, file, &path, delegation,
        )
        .await
    }

    /// Writes the first metadata file and inserts the table row; removes the
    /// file again when the row cannot be inserted.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create_from_metadata(
        &self,
        warehouse: &Warehouse,
        prefix: &str,
        namespace: &NamespaceRecord,
        levels: &[String],
        name: &str,
        metadata: TableMetadata,
        file: MetadataLocation,
        path: &StoragePath,
        delegation: DelegationRequest,
    ) -> Result<TableResponse> {
        let location = file.to_string();
        write_metadata_file(warehouse, &metadata, &file).await?;
        let (_, docs) = build_documents(metadata, location.clone()).await?;
        self.insert_new(
            ObjectKind::Table,
            warehouse,
            namespace,
            levels,
            name,
            &docs,
            path,
            true,
        )
        .await?;
        self.delegated_response(
            warehouse,
            prefix,
            levels,
            name,
            Some(&location),
            &docs.metadata,
            delegation,
            None,
        )
        .await
    }

    /// `DELETE /namespaces/{ns}/tables/{t}`.
    pub async fn drop_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        purge: bool,
    ) -> Result<()> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self.table_record(&warehouse, levels, name, false).await?;
        if !self.store.delete_table(&record.id).await? {
            return Err(no_such(ObjectKind::Table, levels, name));
        }
        self.events
            .publish(prefix, levels, name, "drop", None)
            .await;
        if purge {
            self.purge(&warehouse, record).await;
        }
        Ok(())
    }

    /// Stops tracking a table and returns its last metadata location and
    /// document; its files stay. The row goes only if no commit moved it
    /// since it was read, so the answer includes every acknowledged commit.
    pub async fn unregister_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
    ) -> Result<(String, String)> {
        let warehouse = self.warehouse(prefix).await?;
        loop {
            let record = self.table_record(&warehouse, levels, name, false).await?;
            if self
                .store
                .delete_table_at(&record.id, &record.metadata_location)
                .await?
            {
                self.events
                    .publish(prefix, levels, name, "unregister", None)
                    .await;
                return Ok((record.metadata_location, record.metadata));
            }
        }
    }

    /// `POST /tables/rename`.
    pub async fn rename_table(&self, prefix: &str, req: RenameTableRequest) -> Result<()> {
        self.rename(ObjectKind::Table, prefix, req).await
    }

    /// Moves a table or view to another name, in the same or another
    /// namespace; each name gets a change event (a table's new name with
    /// its metadata location, so edges can serve it at once).
    pub(super) async fn rename(
        &self,
        kind: ObjectKind,
        prefix: &str,
        req: RenameTableRequest,
    ) -> Result<()> {
        let what = match kind {
            ObjectKind::Table => "Table name",
            ObjectKind::View => "View name",
        };
        let (src, dst) = (&req.source, &req.destination);
        validate_namespace(&src.namespace)?;
        validate_namespace(&dst.namespace)?;
        validate_name(what, &src.name)?;
        validate_name(what, &dst.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let source = match kind {
            ObjectKind::Table => {
                self.table_record(&warehouse, &src.namespace, &src.name, true)
                    .await?
            }
            ObjectKind::View => {
                self.view_record(&warehouse, &src.namespace, &src.name)
                    .await?
            }
        };
        let destination = self.namespace_record(&warehouse, &dst.namespace).await?;
        if !self
            .move_object(&source.id, &destination.id, dst, kind)
            .await?
        {
            return Err(no_such(kind, &src.namespace, &src.name));
        }
        match kind {
            ObjectKind::Table => {
                self.events
                    .publish(prefix, &src.namespace, &src.name, "rename", None)
                    .await;
                let location = Some(source.metadata_location.as_str());
                self.events
                    .publish(prefix, &dst.namespace, &dst.name, "rename", location)
                    .await;
            }
            ObjectKind::View => {
                self.events
                    .publish_view(prefix, &src.namespace, &src.name, "rename")
                    .await;
                self.events
                    .publish_view(prefix, &dst.namespace, &dst.name, "rename")
                    .await;
            }
        }
        Ok(())
    }
}
