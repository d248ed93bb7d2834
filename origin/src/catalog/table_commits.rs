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
use super::commit::{Commit, Round, Staged, refusal};
use super::confinement::{check_metadata_paths, check_update_paths};
use super::documents::{
    build_documents, delete_quietly, next_metadata_location, parse_metadata, write_metadata_file,
};
use super::group::groupable;
use super::names::{check_identifier, no_such, table_display, validate_name, validate_namespace};
use super::tables::TableResponse;
use crate::delegation::DelegationRequest;
use crate::error::{CatalogError, Result};
use crate::store::{ObjectKind, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::{CommitTableRequest, CommitTransactionRequest};

/// Property that makes a commit delete metadata files dropped from the log.
const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

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
/// retry, `attempt` > 0). `None` when nothing changes. `previous` is the
/// metadata file of `base`, added to the metadata log; `None` when `base`
/// is itself a version not yet written (a group commit's later members).
pub(crate) fn apply_commit(
    base: TableMetadata,
    previous: Option<&str>,
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
    let refused = refusal(attempt, CatalogError::invalid_metadata);
    let mut builder = base.into_builder(previous.map(str::to_string));
    for update in req.updates.iter().cloned() {
        builder = update.apply(builder).map_err(&refused)?;
    }
    let built = builder.build().map_err(&refused)?;
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

/// 400 when an update moves the table somewhere the warehouse does not allow.
fn check_set_locations(warehouse: &Warehouse, updates: &[TableUpdate]) -> Result<()> {
    for update in updates {
        if let TableUpdate::SetLocation { location } = update {
            warehouse.check_location(location.trim_end_matches('/'))?;
        }
    }
    Ok(())
}

/// What a committed table version leaves for after the commit.
pub(super) struct NewMetadata {
    /// The committed metadata.
    pub(super) metadata: TableMetadata,
    /// Metadata log entries the commit dropped.
    pub(super) expired: Vec<iceberg::spec::MetadataLog>,
}

/// A commit to one table.
struct TableCommit<'a> {
    catalog: &'a Catalog,
    warehouse: &'a Warehouse,
    levels: &'a [String],
    name: &'a str,
    req: &'a CommitTableRequest,
}

impl Commit for TableCommit<'_> {
    type Then = NewMetadata;
    type Output = TableResponse;
    const METERED: bool = true;
    const TOGETHER: bool = false;
    const RIVALS: &'static str = "commits";

    fn subject(&self) -> String {
        format!("Commit to {}", table_display(self.levels, self.name))
    }

    async fn round(
        &mut self,
        attempt: u32,
        staged: &mut Vec<Staged<NewMetadata>>,
    ) -> Result<Round<TableResponse>> {
        let (catalog, warehouse, levels, name, req) = (
            self.catalog,
            self.warehouse,
            self.levels,
            self.name,
            self.req,
        );
        let current = catalog
            .store
            .table(&warehouse.record.id, levels, name, false)
            .await?;
        let Some(current) = current else {
            if is_create(&req.requirements) {
                return match catalog.commit_create(warehouse, levels, name, req).await {
                    // A table created concurrently: the next round fails
                    // assert-create. A view of that name stays a clash.
                    Err(CatalogError::AlreadyExists(msg)) => {
                        if catalog.view_named(warehouse, levels, name).await? {
                            return Err(CatalogError::AlreadyExists(msg));
                        }
                        Ok(Round::Again)
                    }
                    other => other.map(Round::Done),
                };
            }
            return Err(no_such(ObjectKind::Table, levels, name));
        };
        match catalog
            .prepare(warehouse, levels, &current, req, attempt)
            .await?
        {
            Some(version) => {
                staged.push(version);
                Ok(Round::Swap)
            }
            None => catalog
                .table_response(
                    warehouse,
                    Some(&current.metadata_location),
                    &current.metadata,
                )
                .map(Round::Done),
        }
    }

    async fn committed(&mut self, mut staged: Vec<Staged<NewMetadata>>) -> Result<TableResponse> {
        let Some(version) = staged.pop() else {
            return Err(CatalogError::internal(
                "a table commit staged nothing".into(),
            ));
        };
        self.catalog
            .after_commit(self.warehouse, &version.id, &version.then)
            .await;
        self.catalog.table_response(
            self.warehouse,
            Some(&version.docs.metadata_location),
            &version.docs.metadata,
        )
    }
}

/// A transaction over several tables: every pointer moves or none does.
struct TransactionCommit<'a> {
    catalog: &'a Catalog,
    warehouse: &'a Warehouse,
    req: &'a CommitTransactionRequest,
}

impl Commit for TransactionCommit<'_> {
    type Then = (TableIdentifier, NewMetadata);
    type Output = Vec<(TableIdentifier, String)>;
    const METERED: bool = true;
    const TOGETHER: bool = true;
    const RIVALS: &'static str = "commits";

    fn subject(&self) -> String {
        "Transaction".into()
    }

    async fn round(
        &mut self,
        attempt: u32,
        staged: &mut Vec<Staged<Self::Then>>,
    ) -> Result<Round<Self::Output>> {
        let (catalog, warehouse) = (self.catalog, self.warehouse);
        for change in &self.req.table_changes {
            let Some(ident) = change.identifier.clone() else {
                continue;
            };
            let current = catalog
                .store
                .table(&warehouse.record.id, &ident.namespace, &ident.name, false)
                .await?
                .ok_or_else(|| no_such(ObjectKind::Table, &ident.namespace, &ident.name))?;
            if let Some(version) = catalog
                .prepare(warehouse, &ident.namespace, &current, change, attempt)
                .await?
            {
                staged.push(version.map(|new| (ident, new)));
            }
        }
        Ok(Round::Swap)
    }

    async fn committed(&mut self, staged: Vec<Staged<Self::Then>>) -> Result<Self::Output> {
        let mut committed = Vec::new();
        for Staged {
            id,
            docs,
            then: (ident, new),
            ..
        } in staged
        {
            self.catalog.after_commit(self.warehouse, &id, &new).await;
            committed.push((ident, docs.metadata_location));
        }
        Ok(committed)
    }
}

impl Catalog {
    /// `POST /namespaces/{ns}/tables/{t}`: the commit path.
    ///
    /// check requirements → apply updates → write the next metadata file →
    /// compare-and-set the pointer. A lost race is retried on the server while
    /// the requirements still hold; 409 only when nothing was written.
    /// Concurrent commits to one table share a version (`group`); creates
    /// and moves run alone.
    pub async fn commit_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: CommitTableRequest,
    ) -> Result<TableResponse> {
        check_identifier(req.identifier.as_ref(), levels, name)?;
        let warehouse = self.warehouse(prefix).await?;
        check_set_locations(&warehouse, &req.updates)?;
        if groupable(&req) {
            return self
                .commit_in_group(warehouse, prefix, levels, name, req)
                .await;
        }
        let mut commit = TableCommit {
            catalog: self,
            warehouse: &warehouse,
            levels,
            name,
            req: &req,
        };
        let table = self.run_commit(&warehouse, &mut commit).await?;
        self.events
            .publish(
                prefix,
                levels,
                name,
                "commit",
                table.metadata_location.as_deref(),
            )
            .await;
        Ok(table)
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
    ) -> Result<Option<Staged<NewMetadata>>> {
        let base = parse_metadata(current.metadata.clone()).await?;
        let Some(Applied {
            metadata,
            expired,
            moved,
        }) = apply_commit(base, Some(&current.metadata_location), req, attempt)?
        else {
            return Ok(None);
        };
        let path = self
            .version_location(
                warehouse,
                levels,
                &current.id,
                metadata.location(),
                moved,
                "table",
            )
            .await?;
        check_update_paths(&path, &req.updates)?;
        let file = next_metadata_location(&current.metadata_location, &metadata);
        write_metadata_file(warehouse, &metadata, &file).await?;
        let (metadata, docs) = build_documents(metadata, file.to_string()).await?;
        Ok(Some(Staged {
            id: current.id.clone(),
            base: current.metadata_location.clone(),
            docs,
            relocated: moved.then_some(path),
            then: NewMetadata { metadata, expired },
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
            check_set_locations(&warehouse, &change.updates)?;
        }
        let mut commit = TransactionCommit {
            catalog: self,
            warehouse: &warehouse,
            req: &req,
        };
        let committed = self.run_commit(&warehouse, &mut commit).await?;
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
        let asked = updates.iter().find_map(|u| match u {
            TableUpdate::SetLocation { location } => Some(location.as_str()),
            _ => None,
        });
        let (location, path) = self
            .new_location(warehouse, &namespace, asked, name)
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
    pub(super) async fn after_commit(&self, warehouse: &Warehouse, id: &str, new: &NewMetadata) {
        let NewMetadata { metadata, expired } = new;
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
                Some(crate::fuzzing::METADATA_LOCATION),
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
