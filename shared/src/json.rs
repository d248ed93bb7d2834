//! The one place response bodies are serialized.
//!
//! Every JSON body either tier sends is produced here, so buffer pooling (and
//! any later change of serializer) is a change to this file alone.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

/// Serializes `value` to JSON bytes ready to hand to the HTTP layer.
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, value)?;
    Ok(Bytes::from(buf))
}

/// Serializes a table load result around `metadata_json`, a document the
/// catalog produced itself at commit time. It is copied in as it is: no
/// parse, no re-serialization, whatever its size.
pub fn load_table_result(
    metadata_location: Option<&str>,
    metadata_json: &str,
    config: Option<&BTreeMap<String, String>>,
) -> Result<Bytes, serde_json::Error> {
    debug_assert!(serde_json::from_str::<&RawValue>(metadata_json).is_ok());
    let mut buf = Vec::with_capacity(metadata_json.len() + 256);
    buf.push(b'{');
    if let Some(location) = metadata_location {
        buf.extend_from_slice(b"\"metadata-location\":");
        serde_json::to_writer(&mut buf, location)?;
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"metadata\":");
    buf.extend_from_slice(metadata_json.as_bytes());
    if let Some(config) = config {
        buf.extend_from_slice(b",\"config\":");
        serde_json::to_writer(&mut buf, config)?;
    }
    buf.push(b'}');
    Ok(Bytes::from(buf))
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
    fn locations_are_escaped() {
        let body = load_table_result(Some("s3://b/\"q\"/m.json"), "{}", None).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["metadata-location"], "s3://b/\"q\"/m.json");
    }
}
