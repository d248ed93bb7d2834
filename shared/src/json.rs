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

/// The body of a `LoadTableResult` / `CommitTableResponse`, built around a
/// stored metadata document without parsing or re-serializing it.
#[derive(Serialize)]
struct LoadTableBody<'a> {
    #[serde(rename = "metadata-location", skip_serializing_if = "Option::is_none")]
    metadata_location: Option<&'a str>,
    metadata: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a BTreeMap<String, String>>,
}

/// Serializes a table load result around `metadata_json`, which must already
/// be a valid JSON document (as stored by the catalog at commit time).
pub fn load_table_result(
    metadata_location: Option<&str>,
    metadata_json: &str,
    config: Option<&BTreeMap<String, String>>,
) -> Result<Bytes, serde_json::Error> {
    let metadata: &RawValue = serde_json::from_str(metadata_json)?;
    let mut buf = Vec::with_capacity(metadata_json.len() + 256);
    serde_json::to_writer(
        &mut buf,
        &LoadTableBody {
            metadata_location,
            metadata,
            config,
        },
    )?;
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
    fn invalid_documents_are_rejected() {
        assert!(load_table_result(None, "{not json", None).is_err());
    }
}
