//! The catalog service: validate → business logic → store, one function per
//! operation. Handlers call these and nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use floe_shared::auth::Listing;
use floe_shared::etag::SnapshotsMode;
use floe_shared::json::JsonBodies;
use floe_shared::wire::{
    CatalogConfig, CreateNamespaceRequest, ListNamespacesResponse, ListTablesResponse,
    NamespaceResponse, RegisterTableRequest, RenameTableRequest, TableIdentifier,
    UpdateNamespacePropertiesRequest, UpdateNamespacePropertiesResponse,
};
use iceberg::spec::{
    FormatVersion, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::{MetadataLocation, TableCreation, TableRequirement, TableUpdate};
use sha2::Digest;

use crate::config::CatalogSettings;
use crate::delegation::{
    DelegationRequest, RemoteSignRequest, RemoteSignResult, StorageAccess, StorageCredential,
};
use crate::error::{CatalogError, Result};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::storage::{Confinement, StoragePath, has_policy_wildcards};
use crate::store::{
    NAMESPACE_SEPARATOR, NamespaceRecord, ObjectKind, Store, Swap, TableDocs, TableRecord,
    overlap_error,
};
use crate::warehouse::{Warehouse, WarehouseCache};
use crate::wire::{CommitTableRequest, CommitTransactionRequest, CreateTableRequest};

/// Documents above this size are parsed and serialized on the blocking pool.
const BLOCKING_JSON_BYTES: usize = 256 * 1024;

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

/// Table properties whose values redirect where a table's files go: each
/// must lie inside the table's location. Besides these, every `write.*`
/// property whose name ends in `.path` or `.location`.
const PATH_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
];

fn is_path_property(key: &str) -> bool {
    PATH_PROPERTIES.contains(&key)
        || (key.starts_with("write.") && (key.ends_with(".path") || key.ends_with(".location")))
}

/// The location of a namespace: its `location` property, or the
/// warehouse's layout (`<warehouse>/<level>/…`).
fn namespace_location(warehouse: &Warehouse, namespace: &NamespaceRecord) -> String {
    match namespace.properties.get("location") {
        Some(location) => location.trim_end_matches('/').to_string(),
        None => {
            let mut base = warehouse.record.location.clone();
            for level in &namespace.levels {
                base.push('/');
                base.push_str(&path_segment(level));
            }
            base
        }
    }
}

/// The children a listing may show: `None` for all of them, else only
/// these names; 403 when the caller may see nothing here or below.
pub(crate) fn visible<'a>(
    listing: &'a Listing,
    levels: &[String],
    what: &str,
) -> Result<Option<&'a std::collections::BTreeSet<String>>> {
    match listing {
        Listing::All => Ok(None),
        Listing::OnTheWay(children) => Ok(Some(children)),
        Listing::Nothing => Err(CatalogError::Forbidden(format!(
            "No grant to list {what} of {}",
            if levels.is_empty() {
                "this warehouse".to_string()
            } else {
                format!("namespace {}", display(levels))
            }
        ))),
    }
}

/// The 403 for storage access to a table whose location (written before
/// locations were confined) overlaps another object's.
fn overlap_refusal() -> CatalogError {
    CatalogError::Forbidden(
        "Storage confinement: the table's location overlaps another table's or view's, or is \
         not an allowed storage path; this storage access is not delegated for it until it is \
         moved with set-location"
            .into(),
    )
}

/// Fails with 400 naming `what` when `path` is not inside `location`.
fn check_inside(location: &StoragePath, what: &str, path: &str) -> Result<()> {
    match StoragePath::parse(path) {
        Ok(p) if location.contains(&p) => Ok(()),
        Ok(_) => Err(CatalogError::BadRequest(format!(
            "Storage confinement: {what} {path} lies outside the table's location {location}"
        ))),
        Err(e) => Err(CatalogError::BadRequest(format!(
            "Storage confinement: {what} {path} is not an allowed storage path: {e}"
        ))),
    }
}

/// The paths a commit's updates introduce (statistics files, manifest
/// lists, path properties) must lie inside the table's location.
pub(crate) fn check_update_paths(location: &StoragePath, updates: &[TableUpdate]) -> Result<()> {
    for update in updates {
        match update {
            TableUpdate::SetStatistics { statistics } => {
                check_inside(location, "statistics file", &statistics.statistics_path)?
            }
            TableUpdate::SetPartitionStatistics {
                partition_statistics,
            } => check_inside(
                location,
                "partition statistics file",
                &partition_statistics.statistics_path,
            )?,
            TableUpdate::AddSnapshot { snapshot } => {
                check_inside(location, "manifest list", snapshot.manifest_list())?
            }
            TableUpdate::SetProperties { updates } => {
                for (key, value) in updates.iter().filter(|(k, _)| is_path_property(k)) {
                    check_inside(location, &format!("property {key}"), value)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every path a whole metadata document names (a registered or created
/// table) must lie inside the table's location.
fn check_metadata_paths(location: &StoragePath, metadata: &TableMetadata) -> Result<()> {
    for snapshot in metadata.snapshots() {
        check_inside(location, "manifest list", snapshot.manifest_list())?;
    }
    for statistics in metadata.statistics_iter() {
        check_inside(location, "statistics file", &statistics.statistics_path)?;
    }
    for statistics in metadata.partition_statistics_iter() {
        check_inside(
            location,
            "partition statistics file",
            &statistics.statistics_path,
        )?;
    }
    for entry in metadata.metadata_log() {
        check_inside(location, "metadata log file", &entry.metadata_file)?;
    }
    for (key, value) in metadata
        .properties()
        .iter()
        .filter(|(k, _)| is_path_property(k))
    {
        check_inside(location, &format!("property {key}"), value)?;
    }
    Ok(())
}

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
        .map_err(|e| CatalogError::Internal(format!("stored table metadata is invalid: {e}")))
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

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Keyset: return names after this one.
    pub after: Option<String>,
    /// At most this many; `None` = everything (no `pageToken` sent).
    pub limit: Option<u32>,
}

/// The catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    warehouses: Arc<WarehouseCache>,
    settings: CatalogSettings,
    metrics: Metrics,
    bodies: JsonBodies,
    events: EventBus,
    plans: Arc<crate::planning::service::Running>,
}

/// Checks one namespace level or table name.
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(CatalogError::BadRequest(format!(
            "{kind} must not be empty"
        )));
    }
    if name.len() > 255 {
        return Err(CatalogError::BadRequest(format!(
            "{kind} is longer than 255 bytes"
        )));
    }
    if name == "." || name == ".." {
        return Err(CatalogError::BadRequest(format!(
            "{kind} must not be '.' or '..'"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(CatalogError::BadRequest(format!(
            "{kind} contains an invalid character {c:?}: {name:?}"
        )));
    }
    Ok(())
}

/// Checks a namespace identifier.
pub fn validate_namespace(levels: &[String]) -> Result<()> {
    if levels.is_empty() {
        return Err(CatalogError::BadRequest(
            "Namespace must have at least one level".into(),
        ));
    }
    if levels.len() > 16 {
        return Err(CatalogError::BadRequest(
            "Namespace has more than 16 levels".into(),
        ));
    }
    levels
        .iter()
        .try_for_each(|l| validate_name("Namespace level", l))
}

/// Parses a namespace path parameter (`a%1Fb`, already percent-decoded).
pub fn parse_namespace(raw: &str) -> Result<Vec<String>> {
    let levels: Vec<String> = raw.split(NAMESPACE_SEPARATOR).map(str::to_string).collect();
    validate_namespace(&levels)?;
    Ok(levels)
}

pub(crate) fn display(levels: &[String]) -> String {
    levels.join(".")
}

pub(crate) fn table_display(namespace: &[String], name: &str) -> String {
    format!("{}.{name}", display(namespace))
}

/// A 400 when a body's identifier contradicts the path.
pub(crate) fn check_identifier(
    ident: Option<&TableIdentifier>,
    levels: &[String],
    name: &str,
) -> Result<()> {
    match ident {
        Some(ident) if ident.namespace != levels || ident.name != name => {
            Err(CatalogError::BadRequest(format!(
                "Identifier in body ({}) does not match the path ({})",
                table_display(&ident.namespace, &ident.name),
                table_display(levels, name)
            )))
        }
        _ => Ok(()),
    }
}

/// Builds the page request from `pageToken` / `pageSize`.
pub fn page_request(
    token: Option<&str>,
    size: Option<&str>,
    settings: &CatalogSettings,
) -> Result<PageRequest> {
    let size = match size {
        None | Some("") => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n.min(settings.max_page_size)),
            _ => {
                return Err(CatalogError::BadRequest(format!(
                    "pageSize must be a positive integer, got {s:?}"
                )));
            }
        },
    };
    let Some(token) = token else {
        return Ok(PageRequest::default());
    };
    let after = if token.is_empty() {
        None
    } else {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CatalogError::BadRequest("Invalid pageToken".into()))?;
        Some(
            String::from_utf8(bytes)
                .map_err(|_| CatalogError::BadRequest("Invalid pageToken".into()))?,
        )
    };
    Ok(PageRequest {
        after,
        limit: Some(size.unwrap_or(settings.default_page_size)),
    })
}

/// Splits one extra fetched row off into a next-page token.
pub(crate) fn finish_page<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    match page.limit {
        Some(limit) if items.len() > limit as usize => {
            items.truncate(limit as usize);
            let token = items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)));
            (items, token)
        }
        _ => (items, None),
    }
}

/// Fetch size for a page: one more than asked, to know whether more follow.
pub(crate) fn fetch_limit(page: &PageRequest) -> Option<u32> {
    page.limit.map(|l| l.saturating_add(1))
}

/// A path segment safe in every storage URL: the name itself when it is
/// made of ASCII letters, digits, `-`, `_` and `.`; else those characters
/// with `_` for the others and a digest of the whole name, so two names
/// never share a directory (`a b` and `a_b`, or two names in another
/// script, would otherwise both be `a_b` or `__`).
pub(crate) fn path_segment(name: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.chars().all(safe) {
        return name.to_string();
    }
    let replaced: String = name
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    let digest = sha2::Sha256::digest(name.as_bytes());
    format!("{replaced}-{}", &floe_shared::auth::hex(&digest)[..16])
}

/// Parses a stored metadata document (on the blocking pool when large).
pub(crate) async fn parse_stored_metadata(text: String) -> Result<TableMetadata> {
    parse_metadata(text).await
}

async fn parse_metadata(text: String) -> Result<TableMetadata> {
    let text_len = text.len();
    let parse = move || {
        serde_json::from_str::<TableMetadata>(&text)
            .map_err(|e| CatalogError::Internal(format!("stored table metadata is invalid: {e}")))
    };
    if text_len > BLOCKING_JSON_BYTES {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| CatalogError::Internal(format!("metadata parse task failed: {e}")))?
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
            .and_then(|id| id.as_i64())
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

async fn build_documents(
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
    .map_err(|e| CatalogError::Internal(format!("metadata serialization task failed: {e}")))?
}

/// Writes the metadata file of a new version (gzip when the table asks for it).
async fn write_metadata_file(
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
        .map_err(|_| CatalogError::Internal(format!("metadata file {location} is not UTF-8")))
}

pub(crate) async fn delete_quietly(warehouse: &Warehouse, location: &str) {
    if let Err(err) = warehouse.metadata_io(location).delete(location).await {
        tracing::warn!(%location, error = %err, "could not delete metadata file");
    }
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
    /// A catalog over `store`.
    pub fn new(
        store: Store,
        settings: CatalogSettings,
        metrics: Metrics,
        bodies: JsonBodies,
        events: EventBus,
    ) -> Self {
        Self {
            store,
            warehouses: Arc::new(WarehouseCache::default()),
            settings,
            metrics,
            bodies,
            events,
            plans: Arc::default(),
        }
    }

    /// Scan planning tasks running in this process.
    pub(crate) fn running_plans(&self) -> &Arc<crate::planning::service::Running> {
        &self.plans
    }

    /// The change publisher.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The store (for health checks and management).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pooled serialization of response bodies.
    pub(crate) fn bodies(&self) -> &JsonBodies {
        &self.bodies
    }

    /// Paging settings.
    pub fn settings(&self) -> &CatalogSettings {
        &self.settings
    }

    /// The warehouse for a URL prefix.
    pub async fn warehouse(&self, prefix: &str) -> Result<Arc<Warehouse>> {
        self.warehouses.get(&self.store, prefix).await
    }

    /// Forgets a cached warehouse after a management change.
    pub fn invalidate_warehouse(&self, name: &str) {
        self.warehouses.invalidate(name);
    }

    // ---- config -----------------------------------------------------------

    /// `GET /v1/config`.
    pub async fn config(
        &self,
        warehouse: Option<&str>,
        default_warehouse: &str,
        endpoints: Vec<String>,
    ) -> Result<CatalogConfig> {
        let requested = warehouse
            .filter(|w| !w.is_empty())
            .unwrap_or(default_warehouse);
        let name = match self.warehouses.get(&self.store, requested).await {
            Ok(w) => w.record.name.clone(),
            Err(CatalogError::NoSuchWarehouse(msg)) => {
                // Clients may name a warehouse by its location.
                let wanted = requested.trim_end_matches('/');
                self.store
                    .list_warehouses()
                    .await?
                    .into_iter()
                    .find(|w| w.location == wanted)
                    .map(|w| w.name)
                    .ok_or(CatalogError::NoSuchWarehouse(msg))?
            }
            Err(e) => return Err(e),
        };
        Ok(CatalogConfig {
            defaults: BTreeMap::new(),
            overrides: BTreeMap::from([("prefix".to_string(), name)]),
            endpoints,
            idempotency_key_lifetime: None,
        })
    }

    // ---- namespaces -------------------------------------------------------

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

    // ---- tables -----------------------------------------------------------

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
        let on_the_way = visible(listing, levels, "tables")?.is_some();
        let warehouse = self.warehouse(prefix).await?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        let names = if on_the_way {
            Vec::new()
        } else {
            self.store
                .list_tables(&namespace.id, page.after.as_deref(), fetch_limit(&page))
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

    fn table_response(
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
    async fn delegated_response(
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
            .ok_or_else(|| {
                CatalogError::NoSuchTable(format!(
                    "Table does not exist: {}",
                    table_display(levels, name)
                ))
            })
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
    async fn view_named(
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
        validate_name("Table name", &req.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        let location = match &req.location {
            Some(location) => location.trim_end_matches('/').to_string(),
            None => self.default_table_location(&warehouse, &namespace, &req.name),
        };
        let path = self
            .check_new_location(&warehouse, &namespace, &location, None)
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
            .and_then(|b| b.build())
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

    pub(crate) fn default_table_location(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        name: &str,
    ) -> String {
        format!(
            "{}/{}-{}",
            namespace_location(warehouse, namespace),
            path_segment(name),
            uuid::Uuid::now_v7().simple()
        )
    }

    /// The normalized location of a new table or view of `namespace`, or
    /// of one moving there: a valid storage path strictly inside the
    /// namespace's location (so never the warehouse root) and, unless it is
    /// `except` itself, overlapping no live object's location. The store
    /// checks the overlap again when it claims the location.
    pub(crate) async fn check_new_location(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        location: &str,
        except: Option<&str>,
    ) -> Result<StoragePath> {
        let path = warehouse.check_location(location)?;
        if has_policy_wildcards(location) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: location {location} holds '*', '?' or '$', which storage \
                 policies read as wildcards"
            )));
        }
        let parent_text = namespace_location(warehouse, namespace);
        let parent = StoragePath::parse(&parent_text)
            .ok()
            .filter(|p| warehouse.root().is_some_and(|root| root.contains(p)))
            .ok_or_else(|| {
                CatalogError::BadRequest(format!(
                    "Storage confinement: namespace {} has location {parent_text}, which is not \
                     a storage path inside the warehouse; set a valid location property",
                    display(&namespace.levels)
                ))
            })?;
        if !parent.strictly_contains(&path) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: location {location} must lie inside the location of \
                 namespace {} ({parent_text})",
                display(&namespace.levels)
            )));
        }
        if !self.store.overlapping(&path, except).await?.is_empty() {
            return Err(overlap_error(location));
        }
        Ok(path)
    }

    /// A metadata file to register may be read only when it lies inside the
    /// namespace's location and outside every live object's but `except`.
    pub(crate) async fn check_registered_file(
        &self,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        file: &StoragePath,
        text: &str,
        except: Option<&str>,
    ) -> Result<()> {
        let root = StoragePath::parse(&namespace_location(warehouse, namespace)).ok();
        if !root.is_some_and(|root| root.strictly_contains(file)) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: metadata file {text} must lie inside the location of \
                 namespace {}",
                display(&namespace.levels)
            )));
        }
        let others = self.store.overlapping(file, except).await?;
        if others.iter().any(|other| other.contains(file)) {
            return Err(CatalogError::BadRequest(format!(
                "Storage confinement: metadata file {text} lies inside the location of another \
                 table or view"
            )));
        }
        Ok(())
    }

    /// 403 unless the table `id` at `location` may have its storage
    /// delegated: a valid location no other live object's overlaps (only
    /// rows written before locations were confined can fail this), without
    /// IAM policy wildcards.
    pub(crate) async fn check_exclusive(&self, location: &str, id: &str) -> Result<()> {
        if has_policy_wildcards(location)
            || self.confinement(location, Some(id)).await?.root().is_none()
        {
            return Err(overlap_refusal());
        }
        Ok(())
    }

    /// What the table (or view) at `location`, row `except`, may touch in storage.
    pub(crate) async fn confinement(
        &self,
        location: &str,
        except: Option<&str>,
    ) -> Result<Confinement> {
        let Ok(path) = StoragePath::parse(location) else {
            return Ok(Confinement::nothing());
        };
        let others = self.store.overlapping(&path, except).await?;
        Ok(Confinement::new(location, &others))
    }

    /// Writes the first metadata file and inserts the table row; removes the
    /// file again when the row cannot be inserted.
    #[allow(clippy::too_many_arguments)]
    async fn create_from_metadata(
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
        if let Err(err) = self
            .store
            .insert_table(&namespace.id, name, &docs, path)
            .await
        {
            if !refused_without_writing(&err) {
                // The row may or may not be in: the file stays.
                return Err(CatalogError::CommitStateUnknown(format!(
                    "Create of {} has unknown outcome: {err}",
                    table_display(levels, name)
                )));
            }
            delete_quietly(warehouse, &location).await;
            return Err(match err {
                CatalogError::AlreadyExists(_) => {
                    self.name_taken(&namespace.id, levels, name, ObjectKind::Table)
                        .await
                }
                CatalogError::NoSuchNamespace(_) => CatalogError::NoSuchNamespace(format!(
                    "Namespace does not exist: {}",
                    display(levels)
                )),
                other => other,
            });
        }
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
            return Err(CatalogError::NoSuchTable(format!(
                "Table does not exist: {}",
                table_display(levels, name)
            )));
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

    /// Deletes a dropped table's files: data, manifests, manifest lists,
    /// statistics and every metadata file the table recorded (data files
    /// only when `gc.enabled` is not false), as the Java catalogs do. Only
    /// paths inside the table's own location, and outside any other live
    /// object's, are read or deleted (the FileIO itself refuses the rest),
    /// whatever the metadata names: a row written before locations were
    /// confined cannot reach another table's files. Unreferenced files are
    /// left alone.
    async fn purge(&self, warehouse: &Warehouse, record: TableRecord) {
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
            let gc = metadata
                .table_properties()
                .map(|p| p.gc_enabled)
                .unwrap_or(true);
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

    /// `POST /tables/rename`.
    pub async fn rename_table(&self, prefix: &str, req: RenameTableRequest) -> Result<()> {
        validate_namespace(&req.source.namespace)?;
        validate_namespace(&req.destination.namespace)?;
        validate_name("Table name", &req.source.name)?;
        validate_name("Table name", &req.destination.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let source = self
            .table_record(&warehouse, &req.source.namespace, &req.source.name, true)
            .await?;
        let destination = self
            .store
            .namespace(&warehouse.record.id, &req.destination.namespace)
            .await?
            .ok_or_else(|| {
                CatalogError::NoSuchNamespace(format!(
                    "Namespace does not exist: {}",
                    display(&req.destination.namespace)
                ))
            })?;
        let renamed = self
            .move_object(
                &source.id,
                &destination.id,
                &req.destination,
                ObjectKind::Table,
            )
            .await?;
        if renamed {
            let (src, dst) = (&req.source, &req.destination);
            self.events
                .publish(prefix, &src.namespace, &src.name, "rename", None)
                .await;
            self.events
                .publish(
                    prefix,
                    &dst.namespace,
                    &dst.name,
                    "rename",
                    Some(&source.metadata_location),
                )
                .await;
            Ok(())
        } else {
            Err(CatalogError::NoSuchTable(format!(
                "Table does not exist: {}",
                table_display(&req.source.namespace, &req.source.name)
            )))
        }
    }

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
        validate_name("Table name", &req.name)?;
        let warehouse = self.warehouse(prefix).await?;
        let file = warehouse.check_location(&req.metadata_location)?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
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

/// Whether an insert that failed with `err` provably wrote nothing (the
/// database refused it), so the metadata file written for it may go.
pub(crate) fn refused_without_writing(err: &CatalogError) -> bool {
    matches!(
        err,
        CatalogError::AlreadyExists(_)
            | CatalogError::NoSuchNamespace(_)
            | CatalogError::BadRequest(_)
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CatalogSettings {
        CatalogSettings::default()
    }

    #[test]
    fn no_token_means_everything() {
        let page = page_request(None, Some("5"), &settings()).unwrap();
        assert_eq!(page, PageRequest::default());
    }

    #[test]
    fn empty_token_starts_paging() {
        let page = page_request(Some(""), Some("5"), &settings()).unwrap();
        assert_eq!(page.limit, Some(5));
        assert_eq!(page.after, None);
        let page = page_request(Some(""), None, &settings()).unwrap();
        assert_eq!(page.limit, Some(settings().default_page_size));
        let page = page_request(Some(""), Some("1000000"), &settings()).unwrap();
        assert_eq!(page.limit, Some(settings().max_page_size));
    }

    #[test]
    fn bad_paging_input_is_400() {
        assert!(page_request(Some("!!"), None, &settings()).is_err());
        assert!(page_request(Some(""), Some("0"), &settings()).is_err());
        assert!(page_request(Some(""), Some("-1"), &settings()).is_err());
        assert!(page_request(Some(""), Some("x"), &settings()).is_err());
    }

    #[test]
    fn pages_round_trip_tokens() {
        let page = PageRequest {
            after: None,
            limit: Some(2),
        };
        let (items, token) = finish_page(
            vec!["a".to_string(), "b".into(), "c".into()],
            &page,
            Clone::clone,
        );
        assert_eq!(items, vec!["a", "b"]);
        let next = page_request(token.as_deref(), Some("2"), &settings()).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        let (items, token) = finish_page(vec!["c".to_string()], &next, Clone::clone);
        assert_eq!(items, vec!["c"]);
        assert_eq!(token, None);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("t", "ok_name-1").is_ok());
        assert!(validate_name("t", "quote'; DROP TABLE tables;--").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\u{1f}b", "a\0b"] {
            assert!(validate_name("t", bad).is_err(), "{bad:?}");
        }
        assert!(parse_namespace("a\u{1f}b").unwrap() == vec!["a", "b"]);
        assert!(parse_namespace("a\u{1f}").is_err());
        assert!(parse_namespace("").is_err());
    }

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

    #[test]
    fn path_segments_are_storage_safe_and_distinct() {
        assert_eq!(path_segment("sales_2024"), "sales_2024");
        let unsafe_name = path_segment("a b#c?d%");
        assert!(unsafe_name.starts_with("a_b_c_d_-"), "{unsafe_name}");
        assert!(
            unsafe_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_ne!(path_segment("a b"), path_segment("a_b"));
        assert_ne!(path_segment("销售"), path_segment("人事"));
        assert_eq!(path_segment("销售"), path_segment("销售"));
    }
}
