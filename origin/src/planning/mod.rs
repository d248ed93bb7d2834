//! Server-side scan planning: which data files (and the delete files that
//! apply to them) a scan of a table must read.
//!
//! Pruning is the `iceberg` crate's own scan planning (manifest, partition
//! and column-metrics evaluators, delete-file index), run on the table's
//! real manifests; the files it selects are then written out with
//! everything their manifest entries record (partition values, statistics
//! when asked, split offsets). A point-in-time scan plans one snapshot; an
//! incremental scan returns the files the append snapshots after
//! `start-snapshot-id` up to `end-snapshot-id` added, as Java's
//! incremental append scan does. The result is cut into pages of file scan
//! tasks: the first page comes with the planning result, the others are
//! plan tasks fetched one by one.

pub mod expr;
pub mod service;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, ManifestContentType, ManifestList, ManifestStatus, Operation, SchemaRef, SnapshotRef,
    StructType, TableMetadata,
};
use iceberg::{NamespaceIdent, TableIdent};
use serde_json::{Value, json};

use crate::error::{CatalogError, Result};
use crate::storage::Confinement;
pub use wire::{FetchTasksRequest, PlanRequest};

/// Manifests read at once while indexing a snapshot.
const MANIFEST_CONCURRENCY: usize = 8;

/// A request checked against the table: what to plan.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Point in time (one snapshot) or the appends of a range, oldest first;
    /// empty when the table has no snapshot.
    pub snapshots: Vec<SnapshotRef>,
    /// Incremental: keep only the files each snapshot added.
    pub incremental: bool,
    /// Bound by the `iceberg` crate at each snapshot.
    pub predicate: Option<Predicate>,
    /// The filter as the client sent it: every task's residual (always a
    /// correct one; clients that find a tighter one may use it).
    pub residual: Option<Value>,
    /// Field ids whose statistics are returned.
    pub stats: HashSet<i32>,
}

fn bad(message: impl std::fmt::Display) -> CatalogError {
    CatalogError::BadRequest(format!("Invalid scan: {message}"))
}

/// Checks a request against the table's metadata (400 on anything wrong).
pub fn check(metadata: &TableMetadata, req: &PlanRequest) -> Result<Scan> {
    if req.snapshot_id.is_some()
        && (req.start_snapshot_id.is_some() || req.end_snapshot_id.is_some())
    {
        return Err(bad(
            "snapshot-id cannot be combined with start-snapshot-id or end-snapshot-id",
        ));
    }
    if req.start_snapshot_id.is_some() && req.end_snapshot_id.is_none() {
        return Err(bad("start-snapshot-id needs end-snapshot-id"));
    }
    let snapshot = |id: i64| {
        metadata
            .snapshot_by_id(id)
            .cloned()
            .ok_or_else(|| bad(format!("snapshot {id} does not exist")))
    };
    let (snapshots, incremental) = match (req.snapshot_id, req.end_snapshot_id) {
        (Some(id), _) => (vec![snapshot(id)?], false),
        (None, Some(end)) => {
            let mut appends = Vec::new();
            let mut current = Some(snapshot(end)?);
            let mut reached_start = req.start_snapshot_id.is_none();
            while let Some(s) = current {
                if Some(s.snapshot_id()) == req.start_snapshot_id {
                    reached_start = true;
                    break;
                }
                if s.summary().operation == Operation::Append {
                    appends.push(s.clone());
                }
                current = s
                    .parent_snapshot_id()
                    .and_then(|p| metadata.snapshot_by_id(p).cloned());
            }
            if !reached_start {
                return Err(bad(format!(
                    "start-snapshot-id {} is not an ancestor of end-snapshot-id {end}",
                    req.start_snapshot_id.unwrap_or_default()
                )));
            }
            appends.reverse();
            (appends, true)
        }
        (None, None) => (
            metadata.current_snapshot().cloned().into_iter().collect(),
            false,
        ),
    };
    let schema: SchemaRef = match (req.use_snapshot_schema, snapshots.last()) {
        (true, Some(s)) => s
            .schema_id()
            .and_then(|id| metadata.schema_by_id(id).cloned())
            .unwrap_or_else(|| metadata.current_schema().clone()),
        _ => metadata.current_schema().clone(),
    };
    let find = |name: &str| {
        if req.case_sensitive {
            schema.field_by_name(name)
        } else {
            schema.field_by_name_case_insensitive(name)
        }
        .ok_or_else(|| bad(format!("no field named {name:?}")))
    };
    for name in req.select.iter().flatten() {
        find(name)?;
    }
    let stats = req
        .stats_fields
        .iter()
        .flatten()
        .map(|name| find(name).map(|f| f.id))
        .collect::<Result<HashSet<_>>>()?;
    let predicate = match &req.filter {
        None => None,
        Some(filter) => Some(expr::parse(filter, &schema, req.case_sensitive).map_err(bad)?),
    };
    let residual = req
        .filter
        .clone()
        .filter(|f| !matches!(f, Value::Bool(true)));
    Ok(Scan {
        snapshots,
        incremental,
        predicate,
        residual,
        stats,
    })
}

/// A content file and the partition spec it was written with.
#[derive(Clone)]
struct Indexed {
    file: DataFile,
    spec_id: i32,
}

/// The live files of a snapshot by path; with `added_by`, only the data
/// files that snapshot added.
async fn index(
    file_io: &FileIO,
    confinement: &Confinement,
    metadata: &TableMetadata,
    snapshot: &SnapshotRef,
    added_by: Option<i64>,
) -> Result<HashMap<String, Indexed>> {
    confined(confinement, "manifest list", snapshot.manifest_list())?;
    let bytes = file_io
        .new_input(snapshot.manifest_list())
        .map_err(CatalogError::storage)?
        .read()
        .await
        .map_err(CatalogError::storage)?;
    let list = ManifestList::parse_with_version(&bytes, metadata.format_version())
        .map_err(CatalogError::storage)?;
    let manifests = list
        .entries()
        .iter()
        .filter(|m| match added_by {
            Some(id) => m.added_snapshot_id == id && m.content == ManifestContentType::Data,
            None => true,
        })
        .cloned()
        .collect::<Vec<_>>();
    for manifest in &manifests {
        confined(confinement, "manifest", &manifest.manifest_path)?;
    }
    let loaded: Vec<_> = futures::stream::iter(manifests)
        .map(|m| {
            let io = file_io.clone();
            async move {
                let manifest = m.load_manifest(&io).await.map_err(CatalogError::storage)?;
                Ok::<_, CatalogError>((m.partition_spec_id, manifest))
            }
        })
        .buffer_unordered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await?;
    let mut files = HashMap::new();
    for (spec_id, manifest) in loaded {
        for entry in manifest.entries() {
            let keep = match added_by {
                Some(id) => {
                    entry.status() == ManifestStatus::Added && entry.snapshot_id() == Some(id)
                }
                None => entry.is_alive(),
            };
            if keep {
                files.insert(
                    entry.file_path().to_string(),
                    Indexed {
                        file: entry.data_file().clone(),
                        spec_id,
                    },
                );
            }
        }
    }
    Ok(files)
}

/// One selected data file and the delete files that apply to it.
struct Selected {
    data: Indexed,
    deletes: Vec<Indexed>,
}

/// Refuses to open a file the table's metadata names outside its location.
fn confined(confinement: &Confinement, what: &str, path: &str) -> Result<()> {
    if confinement.allows(path) {
        Ok(())
    } else {
        Err(CatalogError::BadRequest(format!(
            "Storage confinement: the table's {what} {path} lies outside its location; \
             planning refused"
        )))
    }
}

/// Plans `scan` of the table; the pages of the result, as JSON `ScanTasks`.
/// Every file it opens lies inside the table's location (`file_io` is
/// confined to it; the manifest list and manifests are also checked first,
/// for a clear error).
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    metadata: Arc<TableMetadata>,
    metadata_location: String,
    file_io: FileIO,
    confinement: Confinement,
    ident: (Vec<String>, String),
    scan: Scan,
    page_size: usize,
    max_tasks: usize,
) -> Result<Vec<String>> {
    let ident = TableIdent::new(
        NamespaceIdent::from_vec(ident.0).map_err(CatalogError::invalid_metadata)?,
        ident.1,
    );
    let table = iceberg::table::Table::builder()
        .metadata(metadata.clone())
        .metadata_location(metadata_location)
        .identifier(ident)
        .file_io(file_io.clone())
        .readonly(true)
        .runtime(iceberg::Runtime::try_current().map_err(CatalogError::storage)?)
        .build()
        .map_err(CatalogError::invalid_metadata)?;
    let mut selected: Vec<Selected> = Vec::new();
    let mut seen = HashSet::new();
    for snapshot in &scan.snapshots {
        let live = index(&file_io, &confinement, &metadata, snapshot, None).await?;
        let added = if scan.incremental {
            Some(
                index(
                    &file_io,
                    &confinement,
                    &metadata,
                    snapshot,
                    Some(snapshot.snapshot_id()),
                )
                .await?,
            )
        } else {
            None
        };
        let mut builder = table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select_empty();
        if let Some(predicate) = &scan.predicate {
            builder = builder.with_filter(predicate.clone());
        }
        let tasks: Vec<_> = builder
            .build()
            .map_err(|e| bad(format!("{e}")))?
            .plan_files()
            .await
            .map_err(CatalogError::storage)?
            .try_collect()
            .await
            .map_err(CatalogError::storage)?;
        for task in tasks {
            let path = task.data_file_path.as_str();
            if added.as_ref().is_some_and(|a| !a.contains_key(path))
                || !seen.insert(path.to_string())
            {
                continue;
            }
            let data = live.get(path).cloned().ok_or_else(|| {
                CatalogError::internal(format!(
                    "planned file {path} is not in the snapshot's manifests"
                ))
            })?;
            let deletes = task
                .deletes
                .iter()
                .map(|d| {
                    live.get(&d.file_path).cloned().ok_or_else(|| {
                        CatalogError::internal(format!(
                            "delete file {} is not in the snapshot's manifests",
                            d.file_path
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if selected.len() >= max_tasks {
                return Err(bad(format!(
                    "the plan selects more than {max_tasks} files (catalog.plan_max_tasks); \
                     narrow it with a filter or plan fewer snapshots"
                )));
            }
            selected.push(Selected { data, deletes });
        }
    }
    pages(&metadata, &scan, selected, page_size.max(1))
}

fn pages(
    metadata: &TableMetadata,
    scan: &Scan,
    selected: Vec<Selected>,
    page_size: usize,
) -> Result<Vec<String>> {
    let schema = metadata.current_schema();
    let mut partition_types: HashMap<i32, StructType> = HashMap::new();
    let mut partition_type = |spec_id: i32| -> Result<StructType> {
        if let Some(t) = partition_types.get(&spec_id) {
            return Ok(t.clone());
        }
        let spec = metadata
            .partition_spec_by_id(spec_id)
            .ok_or_else(|| CatalogError::internal(format!("unknown partition spec {spec_id}")))?;
        let t = spec
            .partition_type(schema)
            .map_err(CatalogError::invalid_metadata)?;
        partition_types.insert(spec_id, t.clone());
        Ok(t)
    };
    let no_stats = HashSet::new();
    let mut out = Vec::new();
    for chunk in selected.chunks(page_size) {
        let mut delete_files: Vec<Value> = Vec::new();
        let mut delete_index: HashMap<&str, usize> = HashMap::new();
        let mut tasks = Vec::with_capacity(chunk.len());
        for s in chunk {
            let mut references = Vec::new();
            for d in &s.deletes {
                let idx = match delete_index.get(d.file.file_path()) {
                    Some(i) => *i,
                    None => {
                        let t = partition_type(d.spec_id)?;
                        delete_files
                            .push(wire::content_file_json(&d.file, d.spec_id, &t, &no_stats));
                        delete_index.insert(d.file.file_path(), delete_files.len() - 1);
                        delete_files.len() - 1
                    }
                };
                references.push(idx);
            }
            let t = partition_type(s.data.spec_id)?;
            let mut task = json!({
                "data-file": wire::content_file_json(&s.data.file, s.data.spec_id, &t, &scan.stats),
            });
            if let Value::Object(map) = &mut task {
                if !references.is_empty() {
                    map.insert("delete-file-references".into(), json!(references));
                }
                if let Some(residual) = &scan.residual {
                    map.insert("residual-filter".into(), residual.clone());
                }
            }
            tasks.push(task);
        }
        out.push(serde_json::to_string(&json!({
            "delete-files": delete_files,
            "file-scan-tasks": tasks,
        }))?);
    }
    if out.is_empty() {
        out.push(serde_json::to_string(
            &json!({"delete-files": [], "file-scan-tasks": []}),
        )?);
    }
    Ok(out)
}
