//! Registering a table whose metadata file already exists in the warehouse.

use floe_shared::wire::RegisterTableRequest;
use iceberg::spec::TableMetadata;

use super::Catalog;
use super::confinement::{check_inside, check_metadata_paths};
use super::documents::build_documents;
use super::names::table_display;
use super::tables::TableResponse;
use crate::delegation::DelegationRequest;
use crate::error::{CatalogError, Result};
use crate::store::ObjectKind;

impl Catalog {
    /// `POST /namespaces/{ns}/register`.
    ///
    /// The metadata file must lie inside the namespace's location and
    /// outside every other live object's before it is read; the table it
    /// describes must then satisfy the rules of a new location, and every
    /// path its metadata names must lie inside that location.
    pub async fn register_table(
        &self,
        prefix: &str,
        levels: &[String],
        req: RegisterTableRequest,
        delegation: DelegationRequest,
    ) -> Result<TableResponse> {
        let (warehouse, namespace, file) = self
            .destination(prefix, levels, "Table name", &req.name, |warehouse| {
                warehouse.check_location(&req.metadata_location)
            })
            .await?;
        let existing = self
            .store
            .table(&warehouse.record.id, levels, &req.name, false)
            .await?;
        // A name taken (by a view, or by a table without overwrite) is a
        // 409 whatever the file.
        let taken = match &existing {
            Some(_) => !req.overwrite,
            None => self
                .store
                .kind_of(&namespace.id, &req.name)
                .await?
                .is_some(),
        };
        if taken {
            return Err(self
                .name_taken(&namespace.id, levels, &req.name, ObjectKind::Table)
                .await);
        }
        let except = existing.as_ref().map(|t| t.id.as_str());
        self.check_registered_file(
            &warehouse,
            &namespace,
            &file,
            &req.metadata_location,
            except,
        )
        .await?;
        let io = warehouse.metadata_io(&req.metadata_location);
        let metadata = TableMetadata::read_from(&io, &req.metadata_location)
            .await
            .map_err(|e| {
                // The storage error stays in the log: its text would tell
                // the caller what exists where.
                tracing::info!(error = %e, "register: metadata file unreadable");
                CatalogError::BadRequest(format!(
                    "Cannot read table metadata from {}",
                    req.metadata_location
                ))
            })?;
        let path = self
            .check_new_location(&warehouse, &namespace, metadata.location(), except)
            .await?;
        check_inside(&path, "metadata file", &req.metadata_location)?;
        check_metadata_paths(&path, &metadata)?;
        let (_, docs) = build_documents(metadata, req.metadata_location.clone()).await?;
        let outcome = match &existing {
            Some(current) => self
                .store
                .swap_relocated(&current.id, &current.metadata_location, &docs, &path)
                .await
                .and_then(|swapped| {
                    swapped.then_some(()).ok_or_else(|| {
                        CatalogError::CommitFailed(format!(
                            "Table {} changed while it was being overwritten; retry",
                            table_display(levels, &req.name)
                        ))
                    })
                }),
            None => self
                .store
                .insert_table(&namespace.id, &req.name, &docs, &path)
                .await
                .map(|_| ()),
        };
        match outcome {
            Ok(()) => {}
            Err(CatalogError::AlreadyExists(_)) => {
                return Err(self
                    .name_taken(&namespace.id, levels, &req.name, ObjectKind::Table)
                    .await);
            }
            Err(other) => return Err(other),
        }
        self.events
            .publish(
                prefix,
                levels,
                &req.name,
                "register",
                Some(&req.metadata_location),
            )
            .await;
        self.delegated_response(
            &warehouse,
            prefix,
            levels,
            &req.name,
            Some(&req.metadata_location),
            &docs.metadata,
            delegation,
            None,
        )
        .await
    }
}
