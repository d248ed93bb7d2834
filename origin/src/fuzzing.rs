//! Entry points of the fuzz targets in `fuzz/` and of the tests that replay
//! their corpora (`origin/tests/fuzz_corpus.rs`): each takes one raw input,
//! runs it through the code a request runs through (as far as it goes
//! without a database or storage), and panics when a property of that code
//! does not hold. Not part of the API.

use std::sync::OnceLock;

use floe_shared::auth::{Required, required};
use floe_shared::fuzzing::java_encode;
use floe_shared::wire::{CreateNamespaceRequest, TableIdentifier, decode_path_segment};
use iceberg::expr::{Bind, Predicate};
use iceberg::spec::TableMetadata;
use iceberg::{TableRequirement, TableUpdate};

use crate::catalog::{
    apply_commit, check_identifier, check_update_paths, documents, next_metadata_location,
    parse_namespace, path_segment, validate_name, validate_namespace,
};
use crate::error::{CatalogError, Result};
use crate::http::extract::Target;
use crate::planning::{self, PlanRequest};
use crate::storage::{StoragePath, has_policy_wildcards};
use crate::wire::CommitTableRequest;

/// The warehouse of the fixed table.
pub const WAREHOUSE: &str = "file:///warehouse";
/// The fixed table's namespace location.
pub const NAMESPACE_LOCATION: &str = "file:///warehouse/db";
/// The fixed table's current metadata file.
pub const METADATA_LOCATION: &str =
    "file:///warehouse/db/t/metadata/00001-1c0b2f5e-5f4b-4d3e-9d51-0c7f0b2a6e11.metadata.json";

/// A small format-version 2 table `db.t`: five columns, partitioned by day,
/// two append snapshots (the second current, on `main`, with a tag on the
/// first), one earlier metadata file.
pub const TABLE_METADATA: &str = r#"{
  "format-version": 2,
  "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1",
  "location": "file:///warehouse/db/t",
  "last-sequence-number": 2,
  "last-updated-ms": 1700000002000,
  "last-column-id": 5,
  "current-schema-id": 0,
  "schemas": [{"type": "struct", "schema-id": 0, "identifier-field-ids": [1], "fields": [
    {"id": 1, "name": "id", "required": true, "type": "long"},
    {"id": 2, "name": "data", "required": false, "type": "string"},
    {"id": 3, "name": "ts", "required": false, "type": "timestamptz"},
    {"id": 4, "name": "price", "required": false, "type": "decimal(10,2)"},
    {"id": 5, "name": "score", "required": false, "type": "double"}
  ]}],
  "default-spec-id": 0,
  "partition-specs": [{"spec-id": 0, "fields": [
    {"name": "ts_day", "transform": "day", "source-id": 3, "field-id": 1000}
  ]}],
  "last-partition-id": 1000,
  "default-sort-order-id": 0,
  "sort-orders": [{"order-id": 0, "fields": []}],
  "properties": {"owner": "fuzz"},
  "current-snapshot-id": 2,
  "snapshots": [
    {"snapshot-id": 1, "sequence-number": 1, "timestamp-ms": 1700000001000,
     "manifest-list": "file:///warehouse/db/t/metadata/snap-1.avro",
     "summary": {"operation": "append"}, "schema-id": 0},
    {"snapshot-id": 2, "parent-snapshot-id": 1, "sequence-number": 2,
     "timestamp-ms": 1700000002000,
     "manifest-list": "file:///warehouse/db/t/metadata/snap-2.avro",
     "summary": {"operation": "append"}, "schema-id": 0}
  ],
  "snapshot-log": [
    {"snapshot-id": 1, "timestamp-ms": 1700000001000},
    {"snapshot-id": 2, "timestamp-ms": 1700000002000}
  ],
  "metadata-log": [
    {"metadata-file": "file:///warehouse/db/t/metadata/00000-5e3f1d2a-8b7c-4a6e-9f10-2d3c4b5a6f70.metadata.json",
     "timestamp-ms": 1700000000000}
  ],
  "refs": {
    "main": {"snapshot-id": 2, "type": "branch"},
    "first": {"snapshot-id": 1, "type": "tag"}
  }
}"#;

/// The fixed table's metadata, parsed.
pub fn table_metadata() -> TableMetadata {
    static PARSED: OnceLock<TableMetadata> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(TABLE_METADATA).expect("the fixed table parses"))
        .clone()
}

fn warehouse_root() -> StoragePath {
    StoragePath::parse(WAREHOUSE).expect("the warehouse is a storage path")
}

/// A client's error: 400 or 409 (never a server error).
fn assert_client_error(err: &CatalogError, input: &dyn std::fmt::Debug) {
    assert!(
        matches!(
            err,
            CatalogError::BadRequest(_) | CatalogError::CommitFailed(_)
        ),
        "{input:?} answered {err:?}"
    );
}

/// Namespace and identifier parsing: a namespace path parameter
/// (`parse_namespace` of the decoded segment), a whole request path
/// (`Target::of_path`, as the router captures it, against the authorizer's
/// `required`) and identifier bodies (`TableIdentifier`,
/// `CreateNamespaceRequest`).
///
/// Properties: an accepted namespace has valid, non-empty levels and reads
/// back from its own encoding, in a path, as the same levels to both the
/// router and the authorizer; storage directory names of its levels are
/// safe and unchanged only when already safe; where the router and the
/// authorizer both read a path, they name the same warehouse and namespace;
/// refusals are 400s.
pub fn namespace_path(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let input = input.as_ref();
    // As the `{namespace}` path parameter.
    match parse_namespace(&decode_path_segment(input)) {
        Err(err) => assert_client_error(&err, &input),
        Ok(levels) => check_levels(&levels),
    }
    // As a whole path (with a query).
    if input.starts_with('/') {
        let path = input.split_once('?').map_or(input, |(path, _)| path);
        match Target::of_path(path, "default") {
            Err(err) => assert_client_error(&err, &path),
            Ok(target) => check_agreement(path, &target),
        }
    }
    // As identifiers in a body.
    if let Ok(ident) = serde_json::from_slice::<TableIdentifier>(data) {
        let checked = validate_namespace(&ident.namespace)
            .and_then(|()| validate_name("Table name", &ident.name));
        match checked {
            Err(err) => assert_client_error(&err, &ident),
            Ok(()) => {
                check_levels(&ident.namespace);
                let text = serde_json::to_string(&ident).expect("identifiers serialize");
                let back: TableIdentifier = serde_json::from_str(&text).expect("and read back");
                assert_eq!(back, ident);
                check_identifier(Some(&ident), &ident.namespace, &ident.name)
                    .expect("an identifier matches its own path");
            }
        }
    }
    if let Ok(req) = serde_json::from_slice::<CreateNamespaceRequest>(data) {
        match validate_namespace(&req.namespace) {
            Err(err) => assert_client_error(&err, &req),
            Ok(()) => check_levels(&req.namespace),
        }
    }
}

/// Properties of accepted namespace levels.
fn check_levels(levels: &[String]) {
    assert!(!levels.is_empty() && levels.len() <= 16, "{levels:?}");
    for level in levels {
        validate_name("Namespace level", level).expect("every level is valid");
        let dir = path_segment(level);
        assert!(
            dir.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "storage directory {dir:?} of {level:?}"
        );
        let safe = level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        assert_eq!(dir == *level, safe, "{level:?} stored as {dir:?}");
    }
    let joined = levels.join("\u{1f}");
    assert_eq!(parse_namespace(&joined).ok().as_deref(), Some(levels));
    // Sent by a client (each level encoded, joined by an encoded 0x1F).
    let encoded: Vec<String> = levels.iter().map(|l| java_encode(l)).collect();
    let table = levels.last().map(String::as_str).unwrap_or_default();
    let path = format!(
        "/v1/wh/namespaces/{}/tables/{}",
        encoded.join("%1F"),
        java_encode(table)
    );
    let target = Target::of_path(&path, "default").expect("an encoded namespace routes");
    assert_eq!(target.prefix, "wh");
    assert_eq!(target.namespace, levels, "{path}");
    assert_eq!(target.table, table, "{path}");
    check_agreement(&path, &target);
}

/// The authorizer reads `path` as the router does: same warehouse, and
/// the same namespace where the route has one.
fn check_agreement(path: &str, target: &Target) {
    for method in ["GET", "POST", "DELETE"] {
        let (Required::Access(access) | Required::List(access)) =
            required(method, path, None, "default")
        else {
            continue;
        };
        let Some(warehouse) = &access.warehouse else {
            continue;
        };
        // What is no warehouse name (a reserved word, `tables` of
        // `/v1/tables/rename`) names no warehouse that could exist.
        if floe_shared::route::check_prefix(&target.prefix).is_err() {
            continue;
        }
        assert_eq!(*warehouse, target.prefix, "{method} {path}: warehouse");
        if !target.namespace.is_empty() {
            assert_eq!(
                access.namespace, target.namespace,
                "{method} {path}: namespace"
            );
        }
    }
}

/// What a commit of `req` to the fixed table `db.t` produces, without a
/// database: the path checks of `Catalog::commit_table`, the requirements
/// and updates (`apply_commit`), the confinement of the new location and of
/// the paths the updates name, and the documents that would be stored.
pub fn commit(req: &CommitTableRequest) -> Result<Option<(TableMetadata, String, String)>> {
    let levels = ["db".to_string()];
    check_identifier(req.identifier.as_ref(), &levels, "t")?;
    let root = warehouse_root();
    let inside_warehouse = |location: &str| -> Result<StoragePath> {
        match StoragePath::parse(location) {
            Ok(path) if root.contains(&path) => Ok(path),
            Ok(_) => Err(CatalogError::BadRequest(format!(
                "location {location} is outside the warehouse"
            ))),
            Err(e) => Err(CatalogError::BadRequest(format!(
                "location {location} is not an allowed storage path: {e}"
            ))),
        }
    };
    for update in &req.updates {
        if let TableUpdate::SetLocation { location } = update {
            inside_warehouse(location.trim_end_matches('/'))?;
        }
    }
    let Some(applied) = apply_commit(table_metadata(), Some(METADATA_LOCATION), req, 0)? else {
        return Ok(None);
    };
    let location = applied.metadata.location();
    let path = if applied.moved {
        // `check_new_location` less the overlap query.
        let path = inside_warehouse(location)?;
        if has_policy_wildcards(location) {
            return Err(CatalogError::BadRequest(format!(
                "location {location} holds wildcards"
            )));
        }
        let parent = StoragePath::parse(NAMESPACE_LOCATION).expect("a storage path");
        if !parent.strictly_contains(&path) {
            return Err(CatalogError::BadRequest(format!(
                "location {location} is outside the namespace"
            )));
        }
        path
    } else {
        StoragePath::parse(location).map_err(|e| CatalogError::BadRequest(e.to_string()))?
    };
    check_update_paths(&path, &req.updates)?;
    let file = next_metadata_location(METADATA_LOCATION, &applied.metadata).to_string();
    let docs = documents(&applied.metadata, file.clone())?;
    let refs = docs.metadata_refs.unwrap_or_else(|| docs.metadata.clone());
    let stored: TableMetadata =
        serde_json::from_str(&docs.metadata).expect("the stored document reads back");
    assert_eq!(
        stored, applied.metadata,
        "the stored document is the metadata"
    );
    serde_json::from_str::<TableMetadata>(&refs).expect("the snapshots=refs form reads back");
    Ok(Some((applied.metadata, file, refs)))
}

/// Commit request bodies (`POST …/tables/{table}`): parsed as the route
/// parses them, then committed to the fixed table by [`commit`].
///
/// Properties: a refused commit is a 400 or 409, and a failed requirement
/// is a 409; an accepted one writes a document that reads back as the new
/// metadata, in a new metadata file inside the table's location, which
/// stays inside the warehouse; it keeps the table's identity and never
/// lowers its format version or sequence number; a commit that changes
/// nothing writes nothing.
pub fn commit_request(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let Ok(req) = serde_json::from_slice::<CommitTableRequest>(data) else {
        return;
    };
    let base = table_metadata();
    let requirements_hold = req
        .requirements
        .iter()
        .all(|r| r.check(Some(&base)).is_ok());
    match commit(&req) {
        Err(err) => {
            assert_client_error(&err, &req);
            if !requirements_hold
                && check_identifier(req.identifier.as_ref(), &["db".into()], "t").is_ok()
            {
                let set_location_ok = req.updates.iter().all(|u| match u {
                    TableUpdate::SetLocation { location } => {
                        StoragePath::parse(location.trim_end_matches('/'))
                            .is_ok_and(|p| warehouse_root().contains(&p))
                    }
                    _ => true,
                });
                if set_location_ok {
                    assert!(
                        matches!(err, CatalogError::CommitFailed(_)),
                        "a failed requirement is a conflict: {err:?}"
                    );
                }
            }
        }
        Ok(None) => {
            assert!(requirements_hold, "a failed requirement was let through");
        }
        Ok(Some((metadata, file, _))) => {
            assert!(requirements_hold, "a failed requirement was let through");
            assert!(
                !req.requirements
                    .iter()
                    .any(|r| matches!(r, TableRequirement::NotExist)),
                "assert-create on an existing table"
            );
            assert_eq!(metadata.uuid(), base.uuid(), "the table keeps its identity");
            assert!(metadata.format_version() >= base.format_version());
            assert!(metadata.last_sequence_number() >= base.last_sequence_number());
            let path = StoragePath::parse(metadata.location()).expect("a storage path");
            assert!(warehouse_root().contains(&path), "{}", metadata.location());
            let file_path = StoragePath::parse(&file).expect("the new file is a storage path");
            assert!(path.strictly_contains(&file_path), "{file} outside {path}");
            assert_ne!(file, METADATA_LOCATION, "a new file per version");
            assert!(file.ends_with(".metadata.json"), "{file}");
        }
    }
}

/// Scan-planning request bodies (`POST …/tables/{table}/plan`): parsed as
/// the route parses them, checked against the fixed table
/// (`planning::check`: snapshots, selected and statistics fields, the
/// filter expression) and the filter bound as the scan binds it.
///
/// Properties: a refusal is a 400; an accepted request names snapshots of
/// the table (a point-in-time scan one, an incremental scan only appends);
/// its filter binds to the schema, and so do its negation and its
/// NOT-free rewrite; the residual handed back is the filter as sent.
pub fn plan_request(data: &[u8]) {
    let req: PlanRequest = if data.iter().all(u8::is_ascii_whitespace) {
        PlanRequest::default()
    } else {
        match serde_json::from_slice(data) {
            Ok(req) => req,
            Err(_) => return,
        }
    };
    let metadata = table_metadata();
    match planning::check(&metadata, &req) {
        Err(err) => assert!(
            matches!(err, CatalogError::BadRequest(_)),
            "{req:?} answered {err:?}"
        ),
        Ok(scan) => {
            for snapshot in &scan.snapshots {
                assert!(metadata.snapshot_by_id(snapshot.snapshot_id()).is_some());
            }
            if !scan.incremental {
                assert!(scan.snapshots.len() <= 1);
            }
            assert_eq!(scan.incremental, req.end_snapshot_id.is_some());
            assert_eq!(scan.predicate.is_some(), req.filter.is_some());
            if let Some(predicate) = scan.predicate {
                let schema = metadata.current_schema().clone();
                let bind = |p: Predicate| p.bind(schema.clone(), true);
                bind(predicate.clone()).expect("a checked filter binds");
                bind(!predicate.clone()).expect("its negation binds");
                bind(predicate.rewrite_not()).expect("its NOT-free form binds");
            }
            if let Some(residual) = &scan.residual {
                assert_eq!(Some(residual), req.filter.as_ref());
            }
        }
    }
}
