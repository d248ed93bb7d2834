//! Warehouses: named storage roots, each with its own FileIO.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use iceberg::io::{FileIO, FileIOBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::config::delegation_keys;
use crate::delegation::Delegator;
use crate::error::{CatalogError, Result};
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
    /// Storage access for metadata files.
    pub file_io: FileIO,
    /// Vended credentials and remote signing.
    pub delegator: Delegator,
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
            .with_props(storage_props)
            .build();
        let delegator = Delegator::new(&record.properties);
        Self {
            record,
            file_io,
            delegator,
        }
    }

    /// True when `location` lies inside this warehouse.
    pub fn contains(&self, location: &str) -> bool {
        let root = self.record.location.as_str();
        let Some(rest) = location.strip_prefix(root) else {
            return false;
        };
        (rest.is_empty() || rest.starts_with('/')) && !rest.split('/').any(|seg| seg == "..")
    }

    /// Fails with 400 when `location` is outside this warehouse.
    pub fn check_location(&self, location: &str) -> Result<()> {
        if self.contains(location) {
            Ok(())
        } else {
            Err(CatalogError::BadRequest(format!(
                "Location {location} is outside warehouse {} ({})",
                self.record.name, self.record.location
            )))
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

/// Checks a warehouse name (also used as URL prefix).
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may contain only ASCII letters, digits, '-', '_' and '.'".into());
    }
    if name == "namespaces" || name == "tables" || name == "transactions" || name == "views" {
        return Err(format!("'{name}' is reserved"));
    }
    Ok(())
}

/// Normalizes a warehouse location: `s3://bucket/path` stays, `file:///abs`
/// stays, a plain path (relative or absolute) becomes `file:///abs/path`.
/// Trailing slashes are removed.
pub fn normalize_location(location: &str) -> std::result::Result<String, String> {
    let location = location.trim();
    if location.is_empty() {
        return Err("must not be empty".into());
    }
    let normalized = if let Some(rest) = location.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err("s3 location needs a bucket: s3://bucket/path".into());
        }
        location.to_string()
    } else if let Some(path) = location.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("file location must be absolute: file:///path".into());
        }
        location.to_string()
    } else if location.contains("://") {
        return Err("supported schemes are file:// and s3://".into());
    } else {
        let path = std::path::Path::new(location);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(path)
        };
        format!("file://{}", absolute.display())
    };
    if normalized.split('/').any(|seg| seg == "..") {
        return Err("must not contain '..'".into());
    }
    let trimmed = normalized.trim_end_matches('/');
    if trimmed.ends_with(':') || trimmed == "file://" {
        return Err("must name a directory below the storage root".into());
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
        assert!(normalize_location("s3://").is_err());
        assert!(normalize_location("gs://b").is_err());
        assert!(normalize_location("file://relative").is_err());
        assert!(normalize_location("/tmp/../etc").is_err());
        assert!(normalize_location("file:///").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("prod_1.eu-west").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("namespaces").is_err());
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
