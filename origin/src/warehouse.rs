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
