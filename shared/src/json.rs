//! The one place response bodies are serialized.
//!
//! Every JSON body either tier sends is produced here, into buffers of the
//! JSON [`BufferPool`]; the buffer travels to the HTTP layer as `Bytes`
//! without a copy and returns to the pool once the body is written.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::pool::BufferPool;

/// Serializes `value` outside any pool (error bodies, where no pool is at hand).
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, value)?;
    Ok(Bytes::from(buf))
}

/// Response bodies, serialized into pooled buffers.
#[derive(Clone, Debug)]
pub struct JsonBodies {
    pool: BufferPool,
}

impl JsonBodies {
    /// Bodies built in buffers of `pool`.
    pub fn new(pool: BufferPool) -> Self {
        Self { pool }
    }

    /// The pool behind the bodies.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Serializes `value` into a pooled buffer handed over as `Bytes`.
    pub fn to_bytes<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, serde_json::Error> {
        self.to_bytes_with_hint(value, 0)
    }

    /// Like [`Self::to_bytes`], starting from a buffer of at least `size_hint`
    /// bytes (e.g. the size of the previous version of the same document), so
    /// a large body is written without growing its buffer.
    pub fn to_bytes_with_hint<T: Serialize + ?Sized>(
        &self,
        value: &T,
        size_hint: usize,
    ) -> Result<Bytes, serde_json::Error> {
        Ok(self.pool.json(value, size_hint)?.into_bytes())
    }

    /// A table load result (see [`load_table_result`]) in a pooled buffer.
    pub fn load_table_result(
        &self,
        metadata_location: Option<&str>,
        metadata_json: &str,
        config: Option<&BTreeMap<String, String>>,
    ) -> Result<Bytes, serde_json::Error> {
        self.pooled(&LoadTableResult {
            metadata_location,
            metadata_json,
            config,
            storage_credentials: None::<&()>,
        })
    }

    /// A table load result with `storage-credentials` (vended credentials).
    pub fn load_table_result_with_credentials<C: Serialize + ?Sized>(
        &self,
        metadata_location: Option<&str>,
        metadata_json: &str,
        config: Option<&BTreeMap<String, String>>,
        storage_credentials: &C,
    ) -> Result<Bytes, serde_json::Error> {
        self.pooled(&LoadTableResult {
            metadata_location,
            metadata_json,
            config,
            storage_credentials: Some(storage_credentials),
        })
    }

    fn pooled<C: Serialize + ?Sized>(
        &self,
        result: &LoadTableResult<'_, C>,
    ) -> Result<Bytes, serde_json::Error> {
        let mut buf = self.pool.borrow(result.capacity());
        result.write(&mut buf)?;
        Ok(buf.into_bytes())
    }
}

/// Serializes a table load result around `metadata_json`, a document the
/// catalog produced itself at commit time. It is copied in as it is: no
/// parse, no re-serialization, whatever its size.
pub fn load_table_result(
    metadata_location: Option<&str>,
    metadata_json: &str,
    config: Option<&BTreeMap<String, String>>,
) -> Result<Bytes, serde_json::Error> {
    let result = LoadTableResult {
        metadata_location,
        metadata_json,
        config,
        storage_credentials: None::<&()>,
    };
    let mut buf = Vec::with_capacity(result.capacity());
    result.write(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// The parts of a table load result, written around the stored document.
struct LoadTableResult<'a, C: ?Sized> {
    metadata_location: Option<&'a str>,
    metadata_json: &'a str,
    config: Option<&'a BTreeMap<String, String>>,
    storage_credentials: Option<&'a C>,
}

impl<C: Serialize + ?Sized> LoadTableResult<'_, C> {
    /// The document plus room for the rest (more with credentials).
    fn capacity(&self) -> usize {
        let rest = if self.storage_credentials.is_some() {
            1024
        } else {
            512
        };
        self.metadata_json.len() + rest
    }

    fn write(&self, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        debug_assert!(serde_json::from_str::<&RawValue>(self.metadata_json).is_ok());
        buf.push(b'{');
        if let Some(location) = self.metadata_location {
            buf.extend_from_slice(b"\"metadata-location\":");
            serde_json::to_writer(&mut *buf, location)?;
            buf.push(b',');
        }
        buf.extend_from_slice(b"\"metadata\":");
        buf.extend_from_slice(self.metadata_json.as_bytes());
        if let Some(config) = self.config {
            buf.extend_from_slice(b",\"config\":");
            serde_json::to_writer(&mut *buf, config)?;
        }
        if let Some(credentials) = self.storage_credentials {
            buf.extend_from_slice(b",\"storage-credentials\":");
            serde_json::to_writer(&mut *buf, credentials)?;
        }
        buf.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_result_embeds_the_document_verbatim() {
        let doc = r#"{"format-version":2,"table-uuid":"x","snapshots":[]}"#;
        let mut config = BTreeMap::new();
        config.insert("k".to_string(), "v".to_string());
        let body = load_table_result(Some("file:///m.json"), doc, Some(&config)).unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains(doc), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["metadata-location"], "file:///m.json");
        assert_eq!(value["config"]["k"], "v");
        let staged = load_table_result(None, doc, None).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&staged).unwrap();
        assert!(value.get("metadata-location").is_none());
    }

    #[test]
    fn pooled_bodies_equal_unpooled_ones() {
        let pool = BufferPool::new(
            "t",
            Default::default(),
            &crate::pool::PoolMetrics::unregistered(),
        );
        let bodies = JsonBodies::new(pool.clone());
        let doc = r#"{"format-version":2}"#;
        let pooled = bodies.load_table_result(Some("m"), doc, None).unwrap();
        let with = bodies
            .load_table_result_with_credentials(Some("m"), doc, None, &[("p", 1)])
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&with).unwrap();
        assert_eq!(parsed["storage-credentials"], serde_json::json!([["p", 1]]));
        assert_eq!(pooled, load_table_result(Some("m"), doc, None).unwrap());
        let value = serde_json::json!({"k": ["v"]});
        assert_eq!(
            bodies.to_bytes(&value).unwrap(),
            to_json_bytes(&value).unwrap()
        );
        drop(pooled);
        drop(with);
        assert_eq!(pool.stats().in_use, 0);
        assert_eq!(pool.stats().returns, 3);
    }

    #[test]
    fn locations_are_escaped() {
        let body = load_table_result(Some("s3://b/\"q\"/m.json"), "{}", None).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["metadata-location"], "s3://b/\"q\"/m.json");
    }
}
