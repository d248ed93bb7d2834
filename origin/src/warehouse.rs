//! Warehouses: named storage roots, each with its own FileIO.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use iceberg::io::{FileIO, FileIOBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::config::delegation_keys;
use crate::delegation::Delegator;
use crate::error::{CatalogError, Result};
use crate::storage::{Confinement, StoragePath, confined_file_io};
use crate::store::{Store, WarehouseRecord};

/// How long a warehouse looked up by name is reused before it is read again
/// (so a change made through another origin process is seen within this bound).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// FileIO property keys that are safe to hand to clients in a table's config.
const CLIENT_VISIBLE_PROPERTIES: &[&str] = &[
    iceberg::io::S3_ENDPOINT,
    iceberg::io::S3_REGION,
    iceberg::io::S3_PATH_STYLE_ACCESS,
];

/// A warehouse ready to serve: its record, its FileIO and what it
/// delegates to clients.
#[derive(Debug)]
pub struct Warehouse {
    /// The stored record.
    pub record: WarehouseRecord,
    /// Storage access for object storage, shared; local warehouses and
    /// anything a table's metadata names go through [`Warehouse::metadata_io`]
    /// and [`Warehouse::confined_io`].
    file_io: FileIO,
    /// Vended credentials and remote signing.
    pub delegator: Delegator,
    /// The normalized root; `None` when the stored location is not a path
    /// Floe will touch (then nothing is inside).
    root: Option<StoragePath>,
    /// FileIO properties (credentials, endpoint).
    storage_props: HashMap<String, String>,
}

impl Warehouse {
    /// Builds the FileIO of a warehouse record.
    pub fn new(record: WarehouseRecord) -> Self {
        let storage_props: HashMap<String, String> = record
            .properties
            .iter()
            .filter(|(k, _)| !k.starts_with(delegation_keys::PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file_io = FileIOBuilder::new(Arc::new(OpenDalResolvingStorageFactory::new()))
            .with_props(storage_props.clone())
            .build();
        let delegator = Delegator::new(&record.properties);
        let root = StoragePath::parse(&record.location).ok();
        Self {
            record,
            file_io,
            delegator,
            root,
            storage_props,
        }
    }

    /// The normalized root of the warehouse.
    pub fn root(&self) -> Option<&StoragePath> {
        self.root.as_ref()
    }

    /// True when `location` lies inside this warehouse (after normalization).
    pub fn contains(&self, location: &str) -> bool {
        match (&self.root, StoragePath::parse(location)) {
            (Some(root), Ok(path)) => root.contains(&path),
            _ => false,
        }
    }

    /// The normalized `location`; 400 when it is not a valid storage path
    /// or lies outside this warehouse.
    pub fn check_location(&self, location: &str) -> Result<StoragePath> {
        let path = StoragePath::parse(location).map_err(|e| {
            CatalogError::BadRequest(format!(
                "Storage confinement: location {location} is not an allowed storage path: {e}"
            ))
        })?;
        match &self.root {
            Some(root) if root.contains(&path) => Ok(path),
            _ => Err(CatalogError::BadRequest(format!(
                "Storage confinement: location {location} is outside warehouse {} ({})",
                self.record.name, self.record.location
            ))),
        }
    }

    /// A FileIO of this warehouse's storage that touches only what
    /// `confinement` allows (in a local warehouse, also through no link).
    pub fn confined_io(&self, confinement: Confinement) -> FileIO {
        confined_file_io(
            &self.storage_props,
            confinement.anchored(&self.record.location),
        )
    }

    /// The FileIO for a metadata file the catalog names itself (`file`, in
    /// a location already checked): the shared one for object storage; for
    /// a local warehouse, one confined to the file's directory, so a link
    /// planted there by a client cannot redirect the catalog's write.
    pub fn metadata_io(&self, file: &str) -> FileIO {
        match file.rsplit_once('/') {
            Some((dir, _)) if self.record.location.starts_with("file:") => {
                self.confined_io(Confinement::new(dir, &[]))
            }
            _ => self.file_io.clone(),
        }
    }

    /// Table configuration returned to clients with a load (no secrets).
    pub fn client_config(&self) -> BTreeMap<String, String> {
        self.record
            .properties
            .iter()
            .filter(|(k, _)| CLIENT_VISIBLE_PROPERTIES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Why a warehouse name was refused (the text follows the setting's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 128 bytes.
    #[error("must be 1 to 128 characters")]
    Length,
    /// A character other than ASCII letters, digits, `-`, `_` and `.`.
    #[error("may contain only ASCII letters, digits, '-', '_' and '.'")]
    Characters,
    /// A word the REST paths use after the prefix.
    #[error("'{0}' is reserved")]
    Reserved(String),
}

/// Why a warehouse location was refused (the text follows the setting's name).
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// Empty or blank.
    #[error("must not be empty")]
    Empty,
    /// `s3://` without a bucket.
    #[error("s3 location needs a bucket: s3://bucket/path")]
    NoBucket,
    /// `file://` with a relative path.
    #[error("file location must be absolute: file:///path")]
    RelativeFile,
    /// A scheme other than `file://` and `s3://`.
    #[error("supported schemes are file:// and s3://")]
    UnsupportedScheme,
    /// A relative path, and the working directory to resolve it against is unknown.
    #[error("{0}")]
    WorkingDirectory(#[source] std::io::Error),
    /// A `..` segment.
    #[error("must not contain '..'")]
    ParentSegment,
    /// The storage root itself (`s3://`, `file:///`).
    #[error("must name a directory below the storage root")]
    StorageRoot,
}

/// Checks a warehouse name (also used as URL prefix).
pub fn validate_name(name: &str) -> std::result::Result<(), NameError> {
    if name.is_empty() || name.len() > 128 {
        return Err(NameError::Length);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(NameError::Characters);
    }
    if name == "namespaces" || name == "tables" || name == "transactions" || name == "views" {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// Normalizes a warehouse location: `s3://bucket/path` stays, `file:///abs`
/// stays, a plain path (relative or absolute) becomes `file:///abs/path`.
/// Trailing slashes are removed.
pub fn normalize_location(location: &str) -> std::result::Result<String, LocationError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(LocationError::Empty);
    }
    let normalized = if let Some(rest) = location.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(LocationError::NoBucket);
        }
        location.to_string()
    } else if let Some(path) = location.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(LocationError::RelativeFile);
        }
        location.to_string()
    } else if location.contains("://") {
        return Err(LocationError::UnsupportedScheme);
    } else {
        let path = std::path::Path::new(location);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(LocationError::WorkingDirectory)?
                .join(path)
        };
        format!("file://{}", absolute.display())
    };
    if normalized.split('/').any(|seg| seg == "..") {
        return Err(LocationError::ParentSegment);
    }
    let trimmed = normalized.trim_end_matches('/');
    if trimmed.ends_with(':') || trimmed == "file://" {
        return Err(LocationError::StorageRoot);
    }
    Ok(trimmed.to_string())
}

/// Creates the directory of a `file://` warehouse so the first write succeeds.
pub fn ensure_local_root(location: &str) -> std::io::Result<()> {
    if let Some(path) = location.strip_prefix("file://") {
        std::fs::create_dir_all(path)?;
    }
    Ok(())
}

/// Warehouses by name, read from the store and kept for a short time.
#[derive(Debug, Default)]
pub struct WarehouseCache {
    entries: RwLock<HashMap<String, (Instant, Arc<Warehouse>)>>,
}

impl WarehouseCache {
    /// The warehouse called `name`, or 404.
    pub async fn get(&self, store: &Store, name: &str) -> Result<Arc<Warehouse>> {
        if let Ok(entries) = self.entries.read()
            && let Some((at, warehouse)) = entries.get(name)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(warehouse.clone());
        }
        let record = store.warehouse(name).await?.ok_or_else(|| {
            CatalogError::NoSuchWarehouse(format!("Warehouse does not exist: {name}"))
        })?;
        let warehouse = Arc::new(Warehouse::new(record));
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(name.to_string(), (Instant::now(), warehouse.clone()));
        }
        Ok(warehouse)
    }

    /// Forgets a warehouse after a local change.
    pub fn invalidate(&self, name: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warehouse(location: &str) -> Warehouse {
        Warehouse::new(WarehouseRecord {
            id: "w".into(),
            name: "w".into(),
            location: location.into(),
            properties: BTreeMap::new(),
        })
    }

    #[test]
    fn containment_respects_segment_boundaries() {
        let w = warehouse("s3://bucket/wh");
        assert!(w.contains("s3://bucket/wh"));
        assert!(w.contains("s3://bucket/wh/ns/t"));
        assert!(!w.contains("s3://bucket/wh2/t"));
        assert!(!w.contains("s3://bucket/wh/../other"));
        assert!(!w.contains("s3://bucket/wh/%2e%2e/other"));
        assert!(w.contains("s3://bucket//wh//ns"));
        assert!(!w.contains("s3://other/wh/t"));
        assert!(w.check_location("file:///etc").is_err());
    }

    #[test]
    fn locations_normalize() {
        assert_eq!(normalize_location("s3://b/p/").unwrap(), "s3://b/p");
        assert_eq!(
            normalize_location("file:///tmp/w/").unwrap(),
            "file:///tmp/w"
        );
        assert_eq!(normalize_location("/tmp/w").unwrap(), "file:///tmp/w");
        assert!(normalize_location("rel").unwrap().starts_with("file:///"));
        for (location, refused) in [
            ("", "must not be empty"),
            ("s3://", "s3 location needs a bucket: s3://bucket/path"),
            ("gs://b", "supported schemes are file:// and s3://"),
            (
                "file://relative",
                "file location must be absolute: file:///path",
            ),
            ("/tmp/../etc", "must not contain '..'"),
            ("file:///", "must name a directory below the storage root"),
        ] {
            let error = normalize_location(location).expect_err(location);
            assert_eq!(error.to_string(), refused, "{location:?}");
        }
        assert!(matches!(
            normalize_location("s3://"),
            Err(LocationError::NoBucket)
        ));
    }

    #[test]
    fn names() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("prod_1.eu-west").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Length));
        assert_eq!(validate_name(&"a".repeat(129)), Err(NameError::Length));
        assert_eq!(validate_name("a/b"), Err(NameError::Characters));
        assert_eq!(
            validate_name("namespaces"),
            Err(NameError::Reserved("namespaces".into()))
        );
        assert_eq!(
            validate_name("namespaces").unwrap_err().to_string(),
            "'namespaces' is reserved"
        );
    }

    #[test]
    fn secrets_never_reach_client_config() {
        let mut w = warehouse("s3://b/w");
        w.record.properties = BTreeMap::from([
            (
                "s3.endpoint".to_string(),
                "http://127.0.0.1:9000".to_string(),
            ),
            ("s3.secret-access-key".to_string(), "secret".to_string()),
        ]);
        let cfg = w.client_config();
        assert_eq!(cfg.len(), 1);
        assert!(cfg.contains_key("s3.endpoint"));
    }
}
