//! Table commits and multi-table transactions: requirements, updates
//! applied with the `iceberg` crate, the next metadata version, and the
//! compare-and-set of one or many pointers.

use std::collections::{HashMap, HashSet};

use floe_shared::wire::TableIdentifier;
use iceberg::spec::{
    FormatVersion, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::{MetadataLocation, TableRequirement, TableUpdate};

use super::Catalog;
use super::confinement::{check_metadata_paths, check_update_paths};
use super::documents::{
    build_documents, delete_quietly, next_metadata_location, parse_metadata, write_metadata_file,
};
use super::names::{check_identifier, table_display, validate_name, validate_namespace};
use super::tables::TableResponse;
use crate::delegation::DelegationRequest;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{Swap, TableDocs, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::{CommitTableRequest, CommitTransactionRequest};

/// Property that makes a commit delete metadata files dropped from the log.
const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// A new metadata version written to storage, not yet committed.
struct Prepared {
    location: String,
    metadata: TableMetadata,
    docs: TableDocs,
    expired: Vec<iceberg::spec::MetadataLog>,
    /// The table's new location, when the commit moves it.
    relocated: Option<StoragePath>,
}

/// The metadata a commit's updates produce.
pub(crate) struct Applied {
    /// The new metadata.
    pub(crate) metadata: TableMetadata,
    /// Metadata log entries the commit dropped.
    pub(crate) expired: Vec<iceberg::spec::MetadataLog>,
    /// Whether the table's location changed.
    pub(crate) moved: bool,
}

/// Checks a commit's requirements against `base` (409 when one fails) and
/// applies its updates (400 when the `iceberg` crate refuses one; 409 on a
/// retry, `attempt` > 0). `None` when nothing changes.
pub(crate) fn apply_commit(
    base: TableMetadata,
    metadata_location: &str,
    req: &CommitTableRequest,
    attempt: u32,
) -> Result<Option<Applied>> {
    let base_location = base.location().to_string();
    for requirement in &req.requirements {
        requirement
            .check(Some(&base))
            .map_err(CatalogError::commit_failed)?;
    }
    if req.updates.is_empty() {
        return Ok(None);
    }
    // A table's UUID is its identity (what `assert-table-uuid` checks):
    // assigned when it is created, never replaced.
    let uuid = base.uuid();
    if let Some(other) = req.updates.iter().find_map(|u| match u {
        TableUpdate::AssignUuid { uuid: other } if *other != uuid => Some(other),
        _ => None,
    }) {
        return Err(CatalogError::BadRequest(format!(
            "Cannot reassign the table's UUID {uuid} to {other}"
        )));
    }
    // The requirements held, so on a retry a refusal means the table
    // moved under the client: a conflict, not bad input.
    let refused = |e: iceberg::Error| {
        if attempt == 0 {
            CatalogError::invalid_metadata(e)
        } else {
            CatalogError::commit_failed(e)
        }
    };
    let mut builder = base.into_builder(Some(metadata_location.to_string()));
    for update in req.updates.iter().cloned() {
        builder = update.apply(builder).map_err(refused)?;
    }
    let built = builder.build().map_err(refused)?;
    if built.changes.is_empty() {
        return Ok(None);
    }
    let moved = built.metadata.location() != base_location;
    Ok(Some(Applied {
        metadata: built.metadata,
        expired: built.expired_metadata_logs,
        moved,
    }))
}

fn is_create(requirements: &[TableRequirement]) -> bool {
    requirements
        .iter()
        .any(|r| matches!(r, TableRequirement::NotExist))
}

/// The first update of a kind, for assembling a staged table.
fn first<T>(updates: &[TableUpdate], pick: impl Fn(&TableUpdate) -> Option<T>) -> Option<T> {
    updates.iter().find_map(pick)
}

impl Catalog {
    /// `POST /namespaces/{ns}/tables/{t}`: the commit path.
    ///
    /// check requirements → apply updates → write the next metadata file →
    /// compare-and-set the pointer. A lost race is retried on the server while
    /// the requirements still hold; 409 only when nothing was written.
    pub async fn commit_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: CommitTableRequest,
    ) -> Result<TableResponse> {
        check_identifier(req.identifier.as_ref(), levels, name)?;
        let warehouse = self.warehouse(prefix).await?;
        for update in &req.updates {
            if let TableUpdate::SetLocation { location } = update {
                warehouse.check_location(location.trim_end_matches('/'))?;
            }
        }
        let result = self.commit_loop(&warehouse, levels, name, &req).await;
        if let Ok(table) = &result {
            self.events
                .publish(
                    prefix,
                    levels,
                    name,
                    "commit",
                    table.metadata_location.as_deref(),
                )
                .await;
        }
        match &result {
            Ok(_) => self.metrics.commit("committed"),
            Err(CatalogError::CommitFailed(_)) => self.metrics.commit("conflict"),
            Err(CatalogError::BadRequest(_)) => self.metrics.commit("rejected"),
            Err(_) => self.metrics.commit("error"),
        }
        result
    }

    async fn commit_loop(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
        req: &CommitTableRequest,
    ) -> Result<TableResponse> {
        let attempts = self.settings.commit_max_retries + 1;
        for attempt in 0..attempts {
            if attempt > 0 {
                self.metrics.commit_retry();
            }
            let current = self
                .store
                .table(&warehouse.record.id, levels, name, false)
                .await?;
            let Some(current) = current else {
                if is_create(&req.requirements) {
                    match self.commit_create(warehouse, levels, name, req).await {
                        // A table created concurrently: the next round fails
                        // assert-create. A view of that name stays a clash.
                        Err(CatalogError::AlreadyExists(msg)) => {
                            if self.view_named(warehouse, levels, name).await? {
                                return Err(CatalogError::AlreadyExists(msg));
                            }
                            continue;
                        }
                        other => return other,
                    }
                }
                return Err(CatalogError::NoSuchTable(format!(
                    "Table does not exist: {}",
                    table_display(levels, name)
                )));
            };
            let Prepared {
                location,
                metadata,
                docs,
                expired,
                relocated,
            } = match self
                .prepare(warehouse, levels, &current, req, attempt)
                .await?
            {
                Some(prepared) => prepared,
                None => {
                    return self.table_response(
                        warehouse,
                        Some(&current.metadata_location),
                        &current.metadata,
                    );
                }
            };
            let swapped = match &relocated {
                None => {
                    self.store
                        .swap_table_metadata(&current.id, &current.metadata_location, &docs)
                        .await
                }
                Some(path) => {
                    self.store
                        .swap_relocated(&current.id, &current.metadata_location, &docs, path)
                        .await
                }
            };
            match swapped {
                Ok(true) => {
                    self.after_commit(warehouse, &current.id, &metadata, &expired)
                        .await;
                    return self.table_response(warehouse, Some(&location), &docs.metadata);
                }
                Ok(false) => {
                    // Someone else committed first; nothing of ours is visible.
                    delete_quietly(warehouse, &location).await;
                }
                Err(err @ CatalogError::BadRequest(_)) => {
                    // The new location is taken: nothing changed.
                    delete_quietly(warehouse, &location).await;
                    return Err(err);
                }
                Err(err) => {
                    // The pointer may or may not have moved: keep the file.
                    return Err(CatalogError::CommitStateUnknown(format!(
                        "Commit to {} has unknown outcome: {err}",
                        table_display(levels, name)
                    )));
                }
            }
        }
        Err(CatalogError::CommitFailed(format!(
            "Commit to {} lost {attempts} races with concurrent commits; retry",
            table_display(levels, name)
        )))
    }

    /// Checks the requirements against `current`, applies the updates and
    /// writes the next metadata file. `None` when nothing changes.
    async fn prepare(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        current: &TableRecord,
        req: &CommitTableRequest,
        attempt: u32,
    ) -> Result<Option<Prepared>> {
        let base = parse_metadata(current.metadata.clone()).await?;
        let Some(Applied {
            metadata,
            expired,
            moved,
        }) = apply_commit(base, &current.metadata_location, req, attempt)?
        else {
            return Ok(None);
        };
        let path = if moved {
            let namespace = self.namespace_record(warehouse, levels).await?;
            self.check_new_location(
                warehouse,
                &namespace,
                metadata.location(),
                Some(&current.id),
            )
            .await?
        } else {
            StoragePath::parse(metadata.location()).map_err(|e| {
                CatalogError::BadRequest(format!(
                    "Storage confinement: the table's location {} is not an allowed storage \
                     path ({e}); move it with set-location",
                    metadata.location()
                ))
            })?
        };
        check_update_paths(&path, &req.updates)?;
        let file = next_metadata_location(&current.metadata_location, &metadata);
        let location = file.to_string();
        write_metadata_file(warehouse, &metadata, &file).await?;
        let (metadata, docs) = build_documents(metadata, location.clone()).await?;
        Ok(Some(Prepared {
            location,
            metadata,
            docs,
            expired,
            relocated: moved.then_some(path),
        }))
    }

    /// `POST /transactions/commit`: every table commits or none does. The
    /// pointers move in one database transaction; a failed requirement on
    /// any table is a 409 with nothing changed.
    pub async fn commit_transaction(
        &self,
        prefix: &str,
        req: CommitTransactionRequest,
    ) -> Result<()> {
        if req.table_changes.is_empty() {
            return Err(CatalogError::BadRequest(
                "table-changes must not be empty".into(),
            ));
        }
        let mut seen = HashSet::new();
        for change in &req.table_changes {
            let Some(ident) = &change.identifier else {
                return Err(CatalogError::BadRequest(
                    "Every table change of a transaction needs an identifier".into(),
                ));
            };
            validate_namespace(&ident.namespace)?;
            validate_name("Table name", &ident.name)?;
            if !seen.insert((ident.namespace.clone(), ident.name.clone())) {
                return Err(CatalogError::BadRequest(format!(
                    "Table {} appears twice in one transaction",
                    table_display(&ident.namespace, &ident.name)
                )));
            }
        }
        let warehouse = self.warehouse(prefix).await?;
        for change in &req.table_changes {
            for update in &change.updates {
                if let TableUpdate::SetLocation { location } = update {
                    warehouse.check_location(location.trim_end_matches('/'))?;
                }
            }
        }
        let result = self.transaction_loop(&warehouse, &req).await;
        match &result {
            Ok(_) => self.metrics.commit("committed"),
            Err(CatalogError::CommitFailed(_)) => self.metrics.commit("conflict"),
            Err(CatalogError::BadRequest(_)) => self.metrics.commit("rejected"),
            Err(_) => self.metrics.commit("error"),
        }
        let committed = result?;
        for (ident, location) in committed {
            self.events
                .publish(
                    prefix,
                    &ident.namespace,
                    &ident.name,
                    "commit",
                    Some(&location),
                )
                .await;
        }
        Ok(())
    }

    async fn transaction_loop(
        &self,
        warehouse: &Warehouse,
        req: &CommitTransactionRequest,
    ) -> Result<Vec<(TableIdentifier, String)>> {
        let attempts = self.settings.commit_max_retries + 1;
        for attempt in 0..attempts {
            if attempt > 0 {
                self.metrics.commit_retry();
            }
            let mut prepared: Vec<(TableIdentifier, TableRecord, Prepared)> = Vec::new();
            let mut outcome = Ok(());
            for change in &req.table_changes {
                let Some(ident) = change.identifier.clone() else {
                    continue;
                };
                let current = match self
                    .store
                    .table(&warehouse.record.id, &ident.namespace, &ident.name, false)
                    .await
                {
                    Ok(Some(current)) => current,
                    Ok(None) => {
                        outcome = Err(CatalogError::NoSuchTable(format!(
                            "Table does not exist: {}",
                            table_display(&ident.namespace, &ident.name)
                        )));
                        break;
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                match self
                    .prepare(warehouse, &ident.namespace, &current, change, attempt)
                    .await
                {
                    Ok(Some(p)) => prepared.push((ident, current, p)),
                    Ok(None) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            if let Err(e) = outcome {
                // Nothing was committed: remove the files written so far.
                for (_, _, p) in &prepared {
                    delete_quietly(warehouse, &p.location).await;
                }
                return Err(e);
            }
            let swaps: Vec<Swap<'_>> = prepared
                .iter()
                .map(|(_, current, p)| {
                    (
                        current.id.as_str(),
                        current.metadata_location.as_str(),
                        &p.docs,
                        p.relocated.as_ref(),
                    )
                })
                .collect();
            match self.store.swap_many(&swaps).await {
                Ok(true) => {
                    let mut committed = Vec::new();
                    for (ident, current, p) in prepared {
                        self.after_commit(warehouse, &current.id, &p.metadata, &p.expired)
                            .await;
                        committed.push((ident, p.location));
                    }
                    return Ok(committed);
                }
                Ok(false) => {
                    for (_, _, p) in &prepared {
                        delete_quietly(warehouse, &p.location).await;
                    }
                }
                Err(err @ CatalogError::BadRequest(_)) => {
                    for (_, _, p) in &prepared {
                        delete_quietly(warehouse, &p.location).await;
                    }
                    return Err(err);
                }
                Err(err) => {
                    return Err(CatalogError::CommitStateUnknown(format!(
                        "Transaction has unknown outcome: {err}"
                    )));
                }
            }
        }
        Err(CatalogError::CommitFailed(format!(
            "Transaction lost {attempts} races with concurrent commits; retry"
        )))
    }

    /// A commit with `assert-create` on a table that does not exist yet:
    /// build the table from the staged updates.
    async fn commit_create(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        name: &str,
        req: &CommitTableRequest,
    ) -> Result<TableResponse> {
        for requirement in &req.requirements {
            requirement
                .check(None)
                .map_err(CatalogError::commit_failed)?;
        }
        let namespace = self.namespace_record(warehouse, levels).await?;
        let updates = &req.updates;
        let schema = first(updates, |u| match u {
            TableUpdate::AddSchema { schema } => Some(schema.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            CatalogError::BadRequest("A create transaction needs an add-schema update".into())
        })?;
        let spec = first(updates, |u| match u {
            TableUpdate::AddSpec { spec } => Some(spec.clone()),
            _ => None,
        })
        .unwrap_or_else(|| UnboundPartitionSpec::builder().build());
        let order = first(updates, |u| match u {
            TableUpdate::AddSortOrder { sort_order } => Some(sort_order.clone()),
            _ => None,
        })
        .unwrap_or_else(SortOrder::unsorted_order);
        let format_version = first(updates, |u| match u {
            TableUpdate::UpgradeFormatVersion { format_version } => Some(*format_version),
            _ => None,
        })
        .unwrap_or(FormatVersion::V2);
        let location = match first(updates, |u| match u {
            TableUpdate::SetLocation { location } => {
                Some(location.trim_end_matches('/').to_string())
            }
            _ => None,
        }) {
            Some(location) => location,
            None => self.default_table_location(warehouse, &namespace, name),
        };
        let path = self
            .check_new_location(warehouse, &namespace, &location, None)
            .await?;
        let mut builder = TableMetadataBuilder::new(
            schema,
            spec,
            order,
            location.clone(),
            format_version,
            HashMap::new(),
        )
        .map_err(CatalogError::invalid_metadata)?;
        for update in updates.iter().cloned() {
            builder = update
                .apply(builder)
                .map_err(CatalogError::invalid_metadata)?;
        }
        let metadata = builder
            .build()
            .map_err(CatalogError::invalid_metadata)?
            .metadata;
        check_metadata_paths(&path, &metadata)?;
        let file = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        self.create_from_metadata(
            warehouse,
            &warehouse.record.name,
            &namespace,
            levels,
            name,
            metadata,
            file,
            &path,
            DelegationRequest::none(),
        )
        .await
    }

    /// Deletes the metadata files a commit expired from the log, when the
    /// table asks for it; only those inside the table's own location.
    async fn after_commit(
        &self,
        warehouse: &Warehouse,
        id: &str,
        metadata: &TableMetadata,
        expired: &[iceberg::spec::MetadataLog],
    ) {
        let enabled = metadata
            .properties()
            .get(DELETE_AFTER_COMMIT)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !enabled || expired.is_empty() {
            return;
        }
        let confinement = match self.confinement(metadata.location(), Some(id)).await {
            Ok(confinement) => confinement,
            Err(err) => {
                tracing::warn!(error = %err, "expired metadata files kept: confinement unknown");
                return;
            }
        };
        for entry in expired {
            if confinement.allows(&entry.metadata_file) {
                delete_quietly(warehouse, &entry.metadata_file).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_never_reassigns_the_table_uuid() {
        let commit = |updates: serde_json::Value| {
            let req: CommitTableRequest =
                serde_json::from_value(serde_json::json!({"requirements": [], "updates": updates}))
                    .unwrap();
            apply_commit(
                crate::fuzzing::table_metadata(),
                crate::fuzzing::METADATA_LOCATION,
                &req,
                0,
            )
        };
        let err = commit(serde_json::json!([
            {"action": "set-properties", "updates": {"k": "v"}},
            {"action": "assign-uuid", "uuid": "00000000-0000-0000-0000-000000000001"}
        ]))
        .err()
        .unwrap();
        assert!(
            matches!(&err, CatalogError::BadRequest(m) if m.contains("reassign")),
            "{err:?}"
        );
        // Assigning the UUID the table has changes nothing.
        let same = commit(serde_json::json!([
            {"action": "assign-uuid", "uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1"}
        ]));
        assert!(matches!(same, Ok(None)), "{:?}", same.err());
    }
}
