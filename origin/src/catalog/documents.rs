//! Metadata documents: parsing stored metadata, the stored forms (full and
//! `snapshots=refs`), writing and reading the catalog's own metadata files,
//! and where the next metadata file of a table goes.

use std::collections::HashSet;
use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::TableMetadata;

use crate::error::{CatalogError, Result};
use crate::store::TableDocs;
use crate::warehouse::Warehouse;

/// Documents above this size are parsed and serialized on the blocking pool.
const BLOCKING_JSON_BYTES: usize = 256 * 1024;

/// Parses a stored metadata document (on the blocking pool when large).
pub(crate) async fn parse_stored_metadata(text: String) -> Result<TableMetadata> {
    parse_metadata(text).await
}

pub(super) async fn parse_metadata(text: String) -> Result<TableMetadata> {
    let text_len = text.len();
    let parse = move || {
        serde_json::from_str::<TableMetadata>(&text).map_err(|e| {
            CatalogError::internal_with(format!("stored table metadata is invalid: {e}"), e)
        })
    };
    if text_len > BLOCKING_JSON_BYTES {
        tokio::task::spawn_blocking(parse).await.map_err(|e| {
            CatalogError::internal_with(format!("metadata parse task failed: {e}"), e)
        })?
    } else {
        parse()
    }
}

/// Serializes metadata into the stored documents: the full form and, when
/// some snapshots are not referenced by any branch or tag, the `refs` form.
pub(crate) fn documents(metadata: &TableMetadata, metadata_location: String) -> Result<TableDocs> {
    let full = serde_json::to_string(metadata)?;
    let current = metadata.current_snapshot_id();
    let trivially_referenced = metadata.snapshots().len() == 0
        || (metadata.snapshots().len() == 1
            && metadata
                .snapshots()
                .all(|s| Some(s.snapshot_id()) == current));
    if trivially_referenced {
        return Ok(TableDocs {
            metadata_location,
            metadata: full,
            metadata_refs: None,
        });
    }
    let mut value = serde_json::to_value(metadata)?;
    let mut keep: HashSet<i64> = current.into_iter().collect();
    if let Some(refs) = value.get("refs").and_then(|r| r.as_object()) {
        keep.extend(refs.values().filter_map(|r| r.get("snapshot-id")?.as_i64()));
    }
    let metadata_refs = if metadata
        .snapshots()
        .all(|s| keep.contains(&s.snapshot_id()))
    {
        None
    } else {
        suppress_historical_snapshots(&mut value, &keep);
        Some(serde_json::to_string(&value)?)
    };
    Ok(TableDocs {
        metadata_location,
        metadata: full,
        metadata_refs,
    })
}

/// The `snapshots=refs` form, as the Java reference builds it: snapshots
/// that no branch or tag points at are dropped, with their statistics, and
/// the snapshot log keeps only the history after the last dropped entry (a
/// log with gaps would mislead time travel).
fn suppress_historical_snapshots(value: &mut serde_json::Value, keep: &HashSet<i64>) {
    let kept = |entry: &serde_json::Value| {
        entry
            .get("snapshot-id")
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|id| keep.contains(&id))
    };
    for field in ["snapshots", "statistics", "partition-statistics"] {
        if let Some(list) = value.get_mut(field).and_then(|s| s.as_array_mut()) {
            list.retain(kept);
        }
    }
    if let Some(log) = value.get_mut("snapshot-log").and_then(|s| s.as_array_mut()) {
        let mut trimmed = Vec::new();
        for entry in log.drain(..) {
            if kept(&entry) {
                trimmed.push(entry);
            } else {
                trimmed.clear();
            }
        }
        *log = trimmed;
    }
}

pub(super) async fn build_documents(
    metadata: TableMetadata,
    location: String,
) -> Result<(TableMetadata, TableDocs)> {
    // Roughly 400 bytes of JSON per snapshot: large histories go to the blocking pool.
    if metadata.snapshots().len() * 400 < BLOCKING_JSON_BYTES {
        let docs = documents(&metadata, location)?;
        return Ok((metadata, docs));
    }
    tokio::task::spawn_blocking(move || {
        let docs = documents(&metadata, location)?;
        Ok((metadata, docs))
    })
    .await
    .map_err(|e| {
        CatalogError::internal_with(format!("metadata serialization task failed: {e}"), e)
    })?
}

/// Writes the metadata file of a new version (gzip when the table asks for it).
pub(super) async fn write_metadata_file(
    warehouse: &Warehouse,
    metadata: &TableMetadata,
    location: &MetadataLocation,
) -> Result<()> {
    metadata
        .write_to(&warehouse.metadata_io(&location.to_string()), location)
        .await
        .map_err(CatalogError::storage)
}

/// A metadata file the catalog wrote itself, as text.
pub(crate) async fn read_own_file(warehouse: &Warehouse, location: &str) -> Result<String> {
    let bytes = warehouse
        .metadata_io(location)
        .new_input(location)
        .map_err(CatalogError::storage)?
        .read()
        .await
        .map_err(CatalogError::storage)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| CatalogError::internal(format!("metadata file {location} is not UTF-8")))
}

pub(crate) async fn delete_quietly(warehouse: &Warehouse, location: &str) {
    if let Err(err) = warehouse.metadata_io(location).delete(location).await {
        tracing::warn!(%location, error = %err, "could not delete metadata file");
    }
}

/// The next metadata file of a table, in `<location>/metadata/` of its
/// (possibly new) location: version + 1 with a fresh uuid, or, when the
/// current file name is not in the standard form (a registered table), a
/// version derived from the metadata log.
pub(crate) fn next_metadata_location(current: &str, metadata: &TableMetadata) -> MetadataLocation {
    let directory = format!("{}/metadata/", metadata.location().trim_end_matches('/'));
    if current.starts_with(&directory)
        && let Ok(location) = MetadataLocation::from_str(current)
    {
        return location.with_next_version().with_new_metadata(metadata);
    }
    let version = current
        .rsplit('/')
        .next()
        .and_then(|file| file.split_once('-'))
        .and_then(|(digits, _)| digits.parse::<usize>().ok())
        .map_or(metadata.metadata_log().len(), |v| v + 1);
    let mut location = MetadataLocation::new_with_metadata(metadata.location(), metadata);
    for _ in 0..version {
        location = location.with_next_version();
    }
    location
}
