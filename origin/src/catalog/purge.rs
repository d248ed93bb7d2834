//! Purge: deleting a dropped table's files, confined to its own location.

use std::collections::HashSet;

use iceberg::spec::FormatVersion;

use super::Catalog;
use super::documents::parse_metadata;
use crate::error::{CatalogError, Result};
use crate::storage::Confinement;
use crate::store::TableRecord;
use crate::warehouse::Warehouse;

/// The paths of one purge, sorted into those it may touch and those it may not.
struct Purge<'a> {
    confinement: &'a Confinement,
    /// Paths named by the metadata but outside the table's own location.
    refused: usize,
    /// Reads and deletes that failed.
    failed: usize,
}

impl Purge<'_> {
    /// The distinct paths of `paths` that may be touched; counts the others.
    fn keep(&mut self, paths: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for path in paths {
            if path.is_empty() || !seen.insert(path.clone()) {
                continue;
            }
            if self.confinement.allows(&path) {
                kept.push(path);
            } else {
                self.refused += 1;
            }
        }
        kept
    }

    async fn delete(&mut self, io: &iceberg::io::FileIO, paths: Vec<String>) {
        if paths.is_empty() {
            return;
        }
        if let Err(err) = io.delete_stream(futures::stream::iter(paths)).await {
            self.failed += 1;
            tracing::warn!(error = %err, "purge: files could not be deleted");
        }
    }
}

/// The manifests a manifest list names.
async fn read_manifest_list(
    io: &iceberg::io::FileIO,
    path: &str,
    version: FormatVersion,
) -> Result<Vec<iceberg::spec::ManifestFile>> {
    let bytes = io
        .new_input(path)
        .map_err(CatalogError::storage)?
        .read()
        .await
        .map_err(CatalogError::storage)?;
    let list = iceberg::spec::ManifestList::parse_with_version(&bytes, version)
        .map_err(CatalogError::storage)?;
    Ok(list.entries().to_vec())
}

impl Catalog {
    /// Deletes a dropped table's files: data, manifests, manifest lists,
    /// statistics and every metadata file the table recorded (data files
    /// only when `gc.enabled` is not false), as the Java catalogs do. Only
    /// paths inside the table's own location, and outside any other live
    /// object's, are read or deleted (the FileIO itself refuses the rest),
    /// whatever the metadata names: a row written before locations were
    /// confined cannot reach another table's files. Unreferenced files are
    /// left alone.
    pub(super) async fn purge(&self, warehouse: &Warehouse, record: TableRecord) {
        let result = async {
            let metadata = parse_metadata(record.metadata).await?;
            let confinement = self
                .confinement(metadata.location(), None)
                .await?
                .anchored(&warehouse.record.location);
            if confinement.root().is_none() {
                // A row from before locations were confined, sharing its
                // location with another object: which files are whose is
                // unknowable, so none is touched (the row is gone).
                tracing::warn!(
                    location = metadata.location(),
                    "purge skipped: the table's location overlaps another table's or view's"
                );
                return Ok(());
            }
            let io = warehouse.confined_io(confinement.clone());
            let mut purge = Purge {
                confinement: &confinement,
                refused: 0,
                failed: 0,
            };
            let lists = purge.keep(metadata.snapshots().map(|s| s.manifest_list().to_string()));
            let mut manifests = Vec::new();
            for list in &lists {
                match read_manifest_list(&io, list, metadata.format_version()).await {
                    Ok(entries) => manifests.extend(entries),
                    Err(err) => {
                        purge.failed += 1;
                        tracing::warn!(error = %err, "purge: a manifest list could not be read");
                    }
                }
            }
            let manifest_paths = purge.keep(manifests.iter().map(|m| m.manifest_path.clone()));
            let gc = metadata.table_properties().map_or(true, |p| p.gc_enabled);
            if gc {
                let mut data = Vec::new();
                for manifest in manifests
                    .iter()
                    .filter(|m| confinement.allows(&m.manifest_path))
                {
                    match manifest.load_manifest(&io).await {
                        Ok(loaded) => data.extend(
                            loaded
                                .entries()
                                .iter()
                                .map(|e| e.data_file().file_path().to_string()),
                        ),
                        Err(err) => {
                            purge.failed += 1;
                            tracing::warn!(error = %err, "purge: a manifest could not be read");
                        }
                    }
                }
                let data = purge.keep(data);
                purge.delete(&io, data).await;
            }
            purge.delete(&io, manifest_paths).await;
            purge.delete(&io, lists).await;
            let mut files: Vec<String> = metadata
                .metadata_log()
                .iter()
                .map(|m| m.metadata_file.clone())
                .collect();
            files.extend(
                metadata
                    .statistics_iter()
                    .map(|s| s.statistics_path.clone()),
            );
            files.extend(
                metadata
                    .partition_statistics_iter()
                    .map(|s| s.statistics_path.clone()),
            );
            files.push(record.metadata_location);
            let files = purge.keep(files);
            purge.delete(&io, files).await;
            if purge.refused > 0 || purge.failed > 0 {
                tracing::warn!(
                    refused = purge.refused,
                    failed = purge.failed,
                    location = metadata.location(),
                    "purge left files: paths outside the table's own location are never touched"
                );
            }
            Ok::<_, CatalogError>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "purge of a dropped table did not finish; files left in place");
        }
    }
}
