//! Request and response bodies of the REST catalog that carry no Iceberg
//! metadata model (those live with the catalog, next to the `iceberg` crate).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// `CatalogConfig`: the answer of `GET /v1/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CatalogConfig {
    /// Applied before client configuration.
    pub defaults: BTreeMap<String, String>,
    /// Applied after client configuration (Floe sets `prefix` here).
    pub overrides: BTreeMap<String, String>,
    /// Every `"<VERB> <path>"` the server really implements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Reuse window of an `Idempotency-Key` (ISO-8601 duration); present
    /// when the server honours the header.
    #[serde(
        default,
        rename = "idempotency-key-lifetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub idempotency_key_lifetime: Option<String>,
}

/// `TableIdentifier`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct TableIdentifier {
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table (or view) name.
    pub name: String,
}

/// `CreateNamespaceRequest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateNamespaceRequest {
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Initial properties.
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// `CreateNamespaceResponse` and `GetNamespaceResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceResponse {
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Stored properties.
    pub properties: BTreeMap<String, String>,
}

/// `ListNamespacesResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListNamespacesResponse {
    /// Set when more results follow; `null` on the last page of a paged listing.
    #[serde(rename = "next-page-token")]
    pub next_page_token: Option<String>,
    /// Full identifiers of the namespaces on this page.
    pub namespaces: Vec<Vec<String>>,
}

/// `ListTablesResponse` (also used for views).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListTablesResponse {
    /// Set when more results follow; `null` on the last page of a paged listing.
    #[serde(rename = "next-page-token")]
    pub next_page_token: Option<String>,
    /// Identifiers on this page.
    pub identifiers: Vec<TableIdentifier>,
}

/// `UpdateNamespacePropertiesRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateNamespacePropertiesRequest {
    /// Keys to remove.
    #[serde(default)]
    pub removals: Vec<String>,
    /// Keys to set.
    #[serde(default)]
    pub updates: HashMap<String, String>,
}

/// `UpdateNamespacePropertiesResponse`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateNamespacePropertiesResponse {
    /// Keys added or changed.
    pub updated: Vec<String>,
    /// Keys removed.
    pub removed: Vec<String>,
    /// Keys asked for removal that were not set.
    pub missing: Vec<String>,
}

/// `RenameTableRequest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameTableRequest {
    /// Current identifier.
    pub source: TableIdentifier,
    /// New identifier.
    pub destination: TableIdentifier,
}

/// `RegisterTableRequest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterTableRequest {
    /// Table name within the namespace of the path.
    pub name: String,
    /// Location of an existing metadata file.
    #[serde(rename = "metadata-location")]
    pub metadata_location: String,
    /// Replace the table's current metadata when it exists.
    #[serde(default)]
    pub overwrite: bool,
}

/// Decodes one segment of a request path (a warehouse prefix, a namespace,
/// a table or view name) the way Iceberg's Java client encodes it.
///
/// The Java client (and so Spark and Trino) encodes names with
/// `URLEncoder`, which writes a space as `+` and a literal `+` as `%2B`;
/// the reference server decodes them with `URLDecoder`. So `+` is a space
/// here, and everything else is percent-decoded.
pub fn decode_path_segment(segment: &str) -> String {
    let spaced;
    let segment = if segment.contains('+') {
        spaced = segment.replace('+', " ");
        spaced.as_str()
    } else {
        segment
    };
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The `method` label of a request: one of the methods HTTP defines, else
/// `OTHER` (extension methods are unbounded, and clients choose them).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::decode_path_segment;

    #[test]
    fn plus_is_a_space_and_percent_escapes_decode() {
        assert_eq!(decode_path_segment("sales"), "sales");
        assert_eq!(decode_path_segment("my+table"), "my table");
        assert_eq!(decode_path_segment("my%20table"), "my table");
        assert_eq!(decode_path_segment("a%2Bb"), "a+b");
        assert_eq!(decode_path_segment("a%1Fb+c"), "a\u{1f}b c");
        assert_eq!(decode_path_segment("caf%C3%A9"), "café");
    }
}
