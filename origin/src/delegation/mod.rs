//! Storage access delegated to clients: vended credentials and remote signing.
//!
//! A client asks with `X-Iceberg-Access-Delegation` (a comma-separated list of
//! `vended-credentials` and `remote-signing`); the warehouse's settings
//! ([`DelegationConfig`]) say what it offers. Vended credentials are either a
//! fixed client key pair or short-lived STS credentials whose session policy
//! covers the table's location alone, with write actions only for principals
//! that may write there. Remote signing signs S3 requests with the catalog's
//! own key, and only what a client of that table needs ([`Delegator::sign`]):
//! an allowlist of S3 operations (object reads and writes, multipart uploads,
//! listings of the table's folder, DeleteObjects) recognized from the method,
//! the URI and its query; an allowlist of `x-amz-*` headers (nothing that names
//! a second object, sets permissions or retention); the warehouse's endpoint
//! and bucket (or AWS's own hosts for that bucket) and region; object keys and
//! listing prefixes inside the table's folder, decoded once, without dot
//! segments, and outside nested tables' locations; DeleteObjects bodies whose
//! keys are all the table's, bound to the signature by their SHA-256. Every
//! refusal is a 403 naming its rule. The catalog's own key never leaves the
//! process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use reqsign_aws_v4::Credential;
use serde::{Deserialize, Serialize};

use crate::config::{DelegationConfig, VendedMode};
use crate::error::Result;
use sign::SignHosts;

/// The request header.
pub const HEADER: &str = "x-iceberg-access-delegation";

/// What a client asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    /// `vended-credentials` was listed.
    pub vended: bool,
    /// `remote-signing` was listed.
    pub remote_signing: bool,
}

impl Requested {
    /// Parses the header value (unknown modes are ignored, as the spec allows).
    pub fn parse(header: Option<&str>) -> Self {
        let mut requested = Self::default();
        for mode in header.unwrap_or_default().split(',').map(str::trim) {
            match mode {
                "vended-credentials" => requested.vended = true,
                "remote-signing" => requested.remote_signing = true,
                _ => {}
            }
        }
        requested
    }
}

/// What the principal may do with the table's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageAccess {
    /// Read objects only.
    ReadOnly,
    /// Read, write and delete objects.
    ReadWrite,
}

/// A request's delegation: what was asked and what the principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelegationRequest {
    /// The header.
    pub requested: Requested,
    /// The principal's access to the table's namespace.
    pub access: StorageAccess,
}

impl DelegationRequest {
    /// No delegation (internal calls, commits).
    pub fn none() -> Self {
        Self {
            requested: Requested::default(),
            access: StorageAccess::ReadOnly,
        }
    }
}

/// `StorageCredential` of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageCredential {
    /// Storage location prefix the credential is for.
    pub prefix: String,
    /// FileIO properties.
    pub config: BTreeMap<String, String>,
}

/// What a load response carries for delegation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delegated {
    /// Properties merged into the response's `config`.
    pub config: BTreeMap<String, String>,
    /// `storage-credentials` of the response.
    pub credentials: Vec<StorageCredential>,
    /// The ETag's delegation field: what shapes the response.
    pub etag_part: String,
    /// The response carries secrets: `Cache-Control: private, no-store`.
    pub private: bool,
}

/// `RemoteSignRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteSignRequest {
    /// Region to sign for.
    pub region: String,
    /// The request's full URI.
    pub uri: String,
    /// HTTP method.
    pub method: String,
    /// The request's headers.
    pub headers: HashMap<String, Vec<String>>,
    /// Extra properties (unused).
    #[serde(default)]
    pub properties: HashMap<String, String>,
    /// The body, for requests whose body must be checked (DeleteObjects).
    #[serde(default)]
    pub body: Option<String>,
    /// Storage provider; `s3` when absent.
    #[serde(default)]
    pub provider: Option<String>,
}

/// `RemoteSignResult`.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteSignResult {
    /// The URI to send the request to.
    pub uri: String,
    /// Headers to add: the signature and what it covers that the request lacked.
    pub headers: BTreeMap<String, Vec<String>>,
}

/// One warehouse's delegation: its settings, its own key, cached vended
/// credentials.
pub struct Delegator {
    config: DelegationConfig,
    endpoint: Option<String>,
    hosts: SignHosts,
    region: String,
    path_style: bool,
    own: Option<Credential>,
    http: reqwest::Client,
    vended: Mutex<HashMap<(String, StorageAccess), (Credential, u64)>>,
}

impl std::fmt::Debug for Delegator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delegator")
            .field("vended", &self.config.vended)
            .field("remote_signing", &self.config.remote_signing)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `s3://bucket/key/prefix` → (bucket, key prefix without slashes at the ends).
fn split_s3(location: &str) -> Option<(&str, &str)> {
    let rest = location
        .strip_prefix("s3://")
        .or_else(|| location.strip_prefix("s3a://"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key.trim_matches('/')))
}

impl Delegator {
    /// The delegation of a warehouse with these FileIO properties.
    pub fn new(props: &BTreeMap<String, String>) -> Self {
        let own = match (
            props.get(iceberg::io::S3_ACCESS_KEY_ID),
            props.get(iceberg::io::S3_SECRET_ACCESS_KEY),
        ) {
            (Some(id), Some(secret)) => Some(Credential {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: props.get(iceberg::io::S3_SESSION_TOKEN).cloned(),
                expires_in: None,
            }),
            _ => None,
        };
        Self {
            config: DelegationConfig::from_properties(props),
            endpoint: props
                .get(iceberg::io::S3_ENDPOINT)
                .map(|e| e.trim_end_matches('/').to_string()),
            hosts: SignHosts::from_endpoint(
                props
                    .get(iceberg::io::S3_ENDPOINT)
                    .map(|e| e.trim_end_matches('/')),
            ),
            region: props
                .get(iceberg::io::S3_REGION)
                .cloned()
                .unwrap_or_else(|| "us-east-1".to_string()),
            path_style: props
                .get(iceberg::io::S3_PATH_STYLE_ACCESS)
                .is_some_and(|v| v == "true"),
            own,
            http: reqwest::Client::new(),
            vended: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request asking for `requested` gets anything.
    pub fn offers(&self, requested: Requested) -> bool {
        (requested.vended && self.config.vended != VendedMode::None)
            || (requested.remote_signing && self.config.remote_signing)
    }

    /// FileIO properties every client of this storage needs.
    fn base_config(&self) -> BTreeMap<String, String> {
        let mut config = BTreeMap::new();
        if let Some(endpoint) = &self.endpoint {
            config.insert(iceberg::io::S3_ENDPOINT.to_string(), endpoint.clone());
        }
        config.insert(iceberg::io::S3_REGION.to_string(), self.region.clone());
        if self.path_style {
            config.insert(
                iceberg::io::S3_PATH_STYLE_ACCESS.to_string(),
                "true".to_string(),
            );
        }
        config
    }

    /// What a load of the table at `location` returns for `request`.
    /// `sign_path` is the table's `…/sign` path below the catalog root.
    pub async fn delegate(
        &self,
        location: &str,
        request: DelegationRequest,
        sign_path: &str,
    ) -> Result<Delegated> {
        if request.requested.vended
            && let Some(credential) = self.vend(location, request.access).await?
        {
            let expires = credential
                .config
                .get("s3.session-token-expires-at-ms")
                .cloned()
                .unwrap_or_default();
            return Ok(Delegated {
                config: credential.config.clone(),
                etag_part: format!(
                    "vended-credentials:{}:{expires}",
                    self.config.vended.as_str()
                ),
                credentials: vec![credential],
                private: true,
            });
        }
        if request.requested.remote_signing
            && self.config.remote_signing
            && split_s3(location).is_some()
        {
            let mut config = self.base_config();
            config.insert("s3.remote-signing-enabled".into(), "true".into());
            config.insert("s3.signer".into(), "S3V4RestSigner".into());
            config.insert("s3.signer.endpoint".into(), sign_path.to_string());
            return Ok(Delegated {
                config,
                credentials: Vec::new(),
                etag_part: "remote-signing".into(),
                private: false,
            });
        }
        Ok(Delegated::default())
    }
}

fn hex(bytes: &[u8]) -> String {
    floe_shared::auth::hex(bytes)
}

mod sign;
mod vend;

#[cfg(test)]
mod tests {
    use super::sign::{DeleteBodyError, delete_keys};
    use super::vend::{AssumeRoleResponse, parse_expiration, session_policy};
    use super::*;
    use crate::error::CatalogError;
    use sha2::Digest;

    fn delegator(extra: &[(&str, &str)]) -> Delegator {
        let mut props: BTreeMap<String, String> = [
            (iceberg::io::S3_ENDPOINT, "http://127.0.0.1:9000"),
            (iceberg::io::S3_REGION, "us-east-1"),
            (iceberg::io::S3_ACCESS_KEY_ID, "AKIAFLOE000000000000"),
            (iceberg::io::S3_SECRET_ACCESS_KEY, "secret"),
            (iceberg::io::S3_PATH_STYLE_ACCESS, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        Delegator::new(&props)
    }

    fn sign_request(method: &str, uri: &str) -> RemoteSignRequest {
        RemoteSignRequest {
            region: "us-east-1".into(),
            uri: uri.into(),
            method: method.into(),
            headers: HashMap::from([
                ("User-Agent".to_string(), vec!["botocore".to_string()]),
                (
                    "Content-Type".to_string(),
                    vec!["binary/octet-stream".to_string()],
                ),
            ]),
            properties: HashMap::new(),
            body: None,
            provider: None,
        }
    }

    const TABLE: &str = "s3://b/wh/db/t-1";

    #[test]
    fn the_header_lists_modes() {
        assert_eq!(Requested::parse(None), Requested::default());
        let both = Requested::parse(Some("vended-credentials, remote-signing"));
        assert!(both.vended && both.remote_signing);
        let unknown = Requested::parse(Some("something-else"));
        assert!(!unknown.vended && !unknown.remote_signing);
    }

    #[test]
    fn policies_cover_the_table_and_nothing_else() {
        let read = session_policy("b", "wh/db/t-1", StorageAccess::ReadOnly);
        assert!(read.contains("arn:aws:s3:::b/wh/db/t-1/*"));
        assert!(!read.contains("PutObject"));
        let write = session_policy("b", "wh/db/t-1", StorageAccess::ReadWrite);
        assert!(write.contains("s3:PutObject") && write.contains("s3:DeleteObject"));
        assert!(write.contains("\"wh/db/t-1/*\""));
    }

    #[tokio::test]
    async fn static_credentials_are_the_client_pair() {
        let d = delegator(&[
            ("floe.vended-credentials", "static"),
            ("floe.client.access-key-id", "client-id"),
            ("floe.client.secret-access-key", "client-secret"),
        ]);
        let c = d
            .vend(TABLE, StorageAccess::ReadOnly)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.prefix, TABLE);
        assert_eq!(c.config["s3.access-key-id"], "client-id");
        assert_eq!(c.config["s3.secret-access-key"], "client-secret");
        assert!(
            !c.config.values().any(|v| v == "secret"),
            "never the catalog's own key"
        );
        assert!(
            d.vend("file:///local/t", StorageAccess::ReadOnly)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            delegator(&[])
                .vend(TABLE, StorageAccess::ReadWrite)
                .await
                .unwrap()
                .is_none()
        );
    }

    const E: &str = "http://127.0.0.1:9000/b";
    /// The table's folder, as a path-style URI prefix.
    const T: &str = "http://127.0.0.1:9000/b/wh/db/t-1";
    const RW: StorageAccess = StorageAccess::ReadWrite;
    const RO: StorageAccess = StorageAccess::ReadOnly;

    fn aws_delegator() -> Delegator {
        let props: BTreeMap<String, String> = [
            (iceberg::io::S3_REGION, "us-east-1"),
            (iceberg::io::S3_ACCESS_KEY_ID, "AKIAFLOE000000000000"),
            (iceberg::io::S3_SECRET_ACCESS_KEY, "secret"),
            ("floe.remote-signing", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Delegator::new(&props)
    }

    /// A sign request with these headers (and a DeleteObjects body).
    fn with(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RemoteSignRequest {
        let mut request = sign_request(method, uri);
        for (name, value) in headers {
            request
                .headers
                .insert(name.to_string(), vec![value.to_string()]);
        }
        request.body = body.map(str::to_string);
        request
    }

    fn sha256_hex(text: &str) -> String {
        hex(&sha2::Sha256::digest(text.as_bytes()))
    }

    fn delete_body(keys: &[&str]) -> String {
        let objects: String = keys
            .iter()
            .map(|k| format!("<Object><Key>{k}</Key></Object>"))
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{objects}<Quiet>true</Quiet></Delete>"#
        )
    }

    /// What PyIceberg (botocore), pyarrow and Java's S3FileIO send for a
    /// table's own objects: all signed.
    #[tokio::test]
    async fn table_clients_requests_are_signed() {
        let d = delegator(&[("floe.remote-signing", "true")]);
        let body = delete_body(&[
            "wh/db/t-1/data/a.parquet",
            "wh/db/t-1/metadata/b&amp;c.avro",
        ]);
        let hash = sha256_hex(&body);
        #[rustfmt::skip]
        let cases: Vec<(&str, RemoteSignRequest, StorageAccess)> = vec![
            ("GET with Range", with("GET", &format!("{T}/data/f.parquet"), &[("Range", "bytes=0-1023")], None), RO),
            ("HEAD", with("HEAD", &format!("{T}/metadata/v1.metadata.json"), &[], None), RO),
            ("GET a version", with("GET", &format!("{T}/data/f.parquet?versionId=3HL4kqtJ"), &[], None), RO),
            ("GET a part", with("GET", &format!("{T}/data/f.parquet?partNumber=2"), &[("x-amz-checksum-mode", "ENABLED")], None), RO),
            ("GET with x-id", with("GET", &format!("{T}/data/f.parquet?x-id=GetObject"), &[], None), RO),
            ("GET with a Host header", with("GET", &format!("{T}/data/f"), &[("Host", "127.0.0.1:9000")], None), RO),
            ("GET virtual-hosted", with("GET", "http://b.127.0.0.1:9000/wh/db/t-1/data/f", &[], None), RO),
            ("PUT with checksums", with("PUT", &format!("{T}/data/f.parquet"), &[
                ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                ("Content-Length", "0"),
                ("x-amz-checksum-crc32", "AAAAAA=="),
                ("x-amz-sdk-checksum-algorithm", "CRC32"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("x-amz-meta-writer", "floe"),
                ("x-amz-server-side-encryption", "AES256"),
                ("x-amz-storage-class", "STANDARD"),
                ("If-None-Match", "*"),
                ("Expect", "100-continue"),
                ("amz-sdk-invocation-id", "0d2c"),
                ("amz-sdk-request", "attempt=1; max=3"),
            ], None), RW),
            ("PUT with a payload hash", with("PUT", &format!("{T}/data/f"), &[("x-amz-content-sha256", &sha256_hex("x"))], None), RW),
            ("PUT aws-chunked with a trailer", with("PUT", &format!("{T}/data/f"), &[
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("Content-Encoding", "aws-chunked"),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
                ("x-amz-decoded-content-length", "5"),
            ], None), RW),
            ("CreateMultipartUpload", with("POST", &format!("{T}/data/big.parquet?uploads"), &[("x-amz-checksum-algorithm", "CRC32")], None), RW),
            ("UploadPart", with("PUT", &format!("{T}/data/big.parquet?partNumber=1&uploadId=VXBsb2FkIElE"), &[], None), RW),
            ("CompleteMultipartUpload", with("POST", &format!("{T}/data/big.parquet?uploadId=VXBsb2FkIElE"), &[], None), RW),
            ("AbortMultipartUpload", with("DELETE", &format!("{T}/data/big.parquet?uploadId=VXBsb2FkIElE"), &[], None), RW),
            ("ListParts", with("GET", &format!("{T}/data/big.parquet?uploadId=VXBsb2FkIElE&max-parts=100"), &[], None), RO),
            ("DeleteObject", with("DELETE", &format!("{T}/metadata/old.json"), &[], None), RW),
            ("ListObjectsV2", with("GET", &format!("{E}?list-type=2&prefix=wh%2Fdb%2Ft-1%2Fmetadata%2F&encoding-type=url&delimiter=%2F&fetch-owner=false"), &[], None), RO),
            ("ListObjectsV2, next page", with("GET", &format!("{E}?list-type=2&prefix=wh/db/t-1/&continuation-token=abc&max-keys=1000"), &[], None), RO),
            ("ListObjects", with("GET", &format!("{E}/?prefix=wh/db/t-1/data/&marker=wh/db/t-1/data/a"), &[], None), RO),
            ("DeleteObjects, hash sent", with("POST", &format!("{E}?delete"), &[("x-amz-content-sha256", &hash), ("Content-MD5", "x")], Some(&body)), RW),
            ("DeleteObjects, hash added", with("POST", &format!("{E}?delete"), &[("x-amz-checksum-crc32", "AAAAAA==")], Some(&body)), RW),
            ("a key percent-encoded once", with("GET", &format!("{T}/data/p%3Da%252Fb/f.parquet"), &[], None), RO),
        ];
        for (case, request, access) in cases {
            let signed = d.sign(TABLE, request, access).await;
            let signed = match signed {
                Ok(signed) => signed,
                Err(e) => panic!("{case}: {e:?}"),
            };
            let auth = &signed.headers["authorization"][0];
            assert!(
                auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAFLOE000000000000/")
                    && auth.contains("x-amz-content-sha256")
                    && auth.contains("x-amz-date")
                    && auth.contains("host"),
                "{case}: {auth}"
            );
            assert!(signed.headers.contains_key("x-amz-date"), "{case}");
            assert!(
                !auth.contains("user-agent") && !auth.contains("amz-sdk-request"),
                "{case}: {auth}"
            );
        }
    }

    /// Every rule, with the request shape it refuses.
    #[test]
    fn refusals_name_their_rule() {
        let d = delegator(&[("floe.remote-signing", "true")]);
        let other_body =
            delete_body(&["wh/db/t-1/data/a", "wh/theirs/t/metadata/v1.metadata.json"]);
        let good_body = delete_body(&["wh/db/t-1/data/a"]);
        #[rustfmt::skip]
        let cases: Vec<(&str, RemoteSignRequest, StorageAccess)> = vec![
            // CopyObject / UploadPartCopy into the table from anywhere.
            ("names a second object", with("PUT", &format!("{T}/data/x"), &[("x-amz-copy-source", "other/secret.csv")], None), RW),
            ("names a second object", with("PUT", &format!("{T}/data/x"), &[("X-Amz-Copy-Source", "/b/wh/theirs/t/metadata/v1.metadata.json")], None), RW),
            ("names a second object", with("PUT", &format!("{T}/data/x?partNumber=1&uploadId=u"), &[("x-amz-copy-source", "other/secret.csv"), ("x-amz-copy-source-range", "bytes=0-9")], None), RW),
            ("names a second object", with("PUT", &format!("{T}/data/x"), &[("x-amz-copy-source-if-match", "e")], None), RW),
            ("names a second object", with("PUT", &format!("{T}/data/x"), &[("x-amz-rename-source", "/b/wh/theirs/t/x")], None), RW),
            // DeleteObjects whose body is not bound, or names others' keys.
            ("is not allowed on DeleteObjects", with("POST", &format!("{E}?delete"), &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")], Some(&good_body)), RW),
            ("is not allowed on DeleteObjects", with("POST", &format!("{E}?delete"), &[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")], Some(&good_body)), RW),
            ("is not allowed on DeleteObjects", with("POST", &format!("{E}?delete"), &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")], Some(&good_body)), RW),
            ("not the SHA-256 of the DeleteObjects body", with("POST", &format!("{E}?delete"), &[("x-amz-content-sha256", &sha256_hex(&other_body))], Some(&good_body)), RW),
            ("outside the table's location", with("POST", &format!("{E}?delete"), &[], Some(&other_body)), RW),
            ("needs its body", with("POST", &format!("{E}?delete"), &[], None), RW),
            ("does not parse", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><Key>wh/db/t-1/a</Key>")), RW),
            ("names no key", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Quiet>true</Quiet></Delete>")), RW),
            ("names an object version", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><Key>wh/db/t-1/a</Key><VersionId>v</VersionId></Object></Delete>")), RW),
            ("does not parse", with("POST", &format!("{E}?delete"), &[], Some("<!DOCTYPE d [<!ENTITY k \"wh/theirs/t/x\">]><Delete><Object><Key>&k;</Key></Object></Delete>")), RW),
            ("does not parse", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><Key>wh/db/t-1/a</Key><Key>wh/theirs/x</Key></Object></Delete>")), RW),
            ("does not parse", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><Key>wh/db/t-1/<!-- c -->a</Key></Object></Delete>")), RW),
            ("does not parse", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><s3:Key xmlns:s3=\"x\">wh/theirs/a</s3:Key><Key>wh/db/t-1/a</Key></Object></Delete>")), RW),
            ("has a '.' or '..' segment", with("POST", &format!("{E}?delete"), &[], Some("<Delete><Object><Key>wh/db/t-1/&#46;&#46;/x</Key></Object></Delete>")), RW),
            ("not allowed on DeleteObjects", with("POST", &format!("{E}?delete"), &[("Content-Encoding", "aws-chunked")], Some(&good_body)), RW),
            // ACLs and bucket-level sub-resources.
            ("sub-resource ?\"acl\"", with("GET", &format!("{T}/data/x?acl"), &[], None), RW),
            ("sub-resource ?\"acl\"", with("PUT", &format!("{T}/data/x?acl"), &[], None), RW),
            ("header x-amz-acl sets permissions", with("PUT", &format!("{T}/data/x"), &[("x-amz-acl", "public-read")], None), RW),
            ("header x-amz-grant-read sets permissions", with("PUT", &format!("{T}/data/x"), &[("x-amz-grant-read", "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")], None), RW),
            ("sub-resource ?\"policy\"", with("GET", &format!("{E}?policy&prefix=wh/db/t-1/"), &[], None), RW),
            ("sub-resource ?\"acl\"", with("GET", &format!("{E}?acl&prefix=wh/db/t-1/"), &[], None), RW),
            ("sub-resource ?\"versioning\"", with("GET", &format!("{E}?versioning&prefix=wh/db/t-1/"), &[], None), RW),
            ("sub-resource ?\"uploads\"", with("GET", &format!("{E}?uploads&prefix=wh/db/t-1/"), &[], None), RW),
            ("sub-resource ?\"versions\"", with("GET", &format!("{E}?versions&prefix=wh/db/t-1/"), &[], None), RW),
            ("sub-resource ?\"location\"", with("GET", &format!("{E}?location"), &[], None), RW),
            ("sub-resource ?\"tagging\"", with("PUT", &format!("{T}/data/x?tagging"), &[], None), RW),
            ("sub-resource ?\"website\"", with("PUT", &format!("{E}?website"), &[], None), RW),
            ("sub-resource ?\"cors\"", with("PUT", &format!("{E}?cors"), &[], None), RW),
            ("sub-resource ?\"lifecycle\"", with("PUT", &format!("{E}?lifecycle"), &[], None), RW),
            ("sub-resource ?\"notification\"", with("GET", &format!("{E}?notification"), &[], None), RW),
            ("sub-resource ?\"object-lock\"", with("PUT", &format!("{E}?object-lock"), &[], None), RW),
            ("sub-resource ?\"legal-hold\"", with("PUT", &format!("{T}/data/x?legal-hold"), &[], None), RW),
            ("sub-resource ?\"retention\"", with("PUT", &format!("{T}/data/x?retention"), &[], None), RW),
            ("sub-resource ?\"restore\"", with("POST", &format!("{T}/data/x?restore"), &[], None), RW),
            ("sub-resource ?\"select\"", with("POST", &format!("{T}/data/x?select&select-type=2"), &[], None), RW),
            ("sub-resource ?\"torrent\"", with("GET", &format!("{T}/data/x?torrent"), &[], None), RW),
            ("sub-resource ?\"attributes\"", with("GET", &format!("{T}/data/x?attributes"), &[], None), RW),
            ("query parameter ?\"response-content-type\"", with("GET", &format!("{T}/data/x?response-content-type=text/html"), &[], None), RW),
            ("query parameter ?\"X-Amz-Signature\"", with("GET", &format!("{T}/data/x?X-Amz-Signature=00"), &[], None), RW),
            ("query parameter ?\"foo\"", with("GET", &format!("{E}?foo"), &[], None), RW),
            ("given twice", with("GET", &format!("{E}?list-type=2&prefix=wh/db/t-1/&prefix=wh/"), &[], None), RW),
            ("query parameter ?\"versionId\" is not allowed on DeleteObject", with("DELETE", &format!("{T}/data/x?versionId=v"), &[], None), RW),
            ("the value of ?partNumber", with("PUT", &format!("{T}/data/x?partNumber=0&uploadId=u"), &[], None), RW),
            ("the value of ?list-type", with("GET", &format!("{E}?list-type=1&prefix=wh/db/t-1/"), &[], None), RW),
            ("the value of ?x-id", with("DELETE", &format!("{T}/data/x?x-id=GetObject"), &[], None), RW),
            ("the value of ?delete", with("POST", &format!("{E}?delete=1"), &[], Some(&good_body)), RW),
            ("HeadBucket", with("HEAD", E, &[], None), RW),
            ("GET on the bucket", with("GET", E, &[], None), RW),
            ("PUT on the bucket", with("PUT", E, &[], None), RW),
            ("DELETE on the bucket", with("DELETE", &format!("{E}/"), &[], None), RW),
            ("POST on an object", with("POST", &format!("{T}/data/x"), &[], None), RW),
            ("ListObjectsV2 needs ?prefix", with("GET", &format!("{E}?list-type=2"), &[], None), RW),
            ("method \"PATCH\"", with("PATCH", &format!("{T}/data/x"), &[], None), RW),
            ("method \"get\"", with("get", &format!("{T}/data/x"), &[], None), RW),
            // Other headers.
            ("redirects to another object", with("PUT", &format!("{T}/data/x"), &[("x-amz-website-redirect-location", "/wh/theirs/t/x")], None), RW),
            ("changes object retention", with("PUT", &format!("{T}/data/x"), &[("x-amz-object-lock-mode", "COMPLIANCE")], None), RW),
            ("changes object retention", with("DELETE", &format!("{T}/data/x"), &[("x-amz-bypass-governance-retention", "true")], None), RW),
            ("header \"x-amz-metadata-directive\" is not on the signing allowlist", with("PUT", &format!("{T}/data/x"), &[("x-amz-metadata-directive", "REPLACE")], None), RW),
            ("header \"x-amz-mfa\" is not on the signing allowlist", with("DELETE", &format!("{T}/data/x"), &[("x-amz-mfa", "1 2")], None), RW),
            ("header \"x-goog-copy-source\"", with("PUT", &format!("{T}/data/x"), &[("x-goog-copy-source", "b/x")], None), RW),
            ("chunk signatures are not made", with("PUT", &format!("{T}/data/x"), &[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")], None), RW),
            ("the Host header must be the uri's host", with("GET", &format!("{T}/data/x"), &[("Host", "otherbucket.s3.amazonaws.com")], None), RW),
            // Host, scheme, region.
            ("not the warehouse's endpoint and bucket", with("GET", "http://evil.example/b/wh/db/t-1/f", &[], None), RW),
            ("not the warehouse's endpoint and bucket", with("GET", "http://127.0.0.1:9001/b/wh/db/t-1/f", &[], None), RW),
            ("not the warehouse's endpoint and bucket", with("GET", "https://127.0.0.1:9000/b/wh/db/t-1/f", &[], None), RW),
            ("not the warehouse's endpoint and bucket", with("GET", "http://127.0.0.1:9000/other-bucket/wh/db/t-1/f", &[], None), RW),
            ("not the warehouse's endpoint and bucket", with("GET", "http://other.127.0.0.1:9000/wh/db/t-1/f", &[], None), RW),
            ("scheme must be http or https", with("GET", "/b/wh/db/t-1/f", &[], None), RW),
            ("user information", with("GET", "http://user@127.0.0.1:9000/b/wh/db/t-1/f", &[], None), RW),
            ("scheme must be http or https", with("GET", "ftp://127.0.0.1:9000/b/wh/db/t-1/f", &[], None), RW),
            ("scheme must be http or https", with("GET", "s3://b/wh/db/t-1/f", &[], None), RW),
            ("fragment", with("GET", &format!("{T}/f#x"), &[], None), RW),
            // Keys and listing prefixes.
            ("outside the table's location", with("GET", "http://127.0.0.1:9000/b/wh/db/other/f.parquet", &[], None), RW),
            ("outside the table's location", with("GET", "http://127.0.0.1:9000/b/wh/db/t-10/f.parquet", &[], None), RW),
            ("outside the table's location", with("GET", T, &[], None), RW),
            ("outside the table's location", with("GET", "http://127.0.0.1:9000/b//wh/db/t-1/f", &[], None), RW),
            ("has a '.' or '..' segment", with("GET", &format!("{T}/../../x"), &[], None), RW),
            ("has a '.' or '..' segment", with("GET", &format!("{T}/%2e%2e/%2E%2E/theirs/t/x"), &[], None), RW),
            ("has a '.' or '..' segment", with("GET", &format!("{T}/./x"), &[], None), RW),
            ("has a backslash", with("GET", &format!("{T}/..%5C..%5Cx"), &[], None), RW),
            ("has a control character", with("GET", &format!("{T}/x%0A"), &[], None), RW),
            ("not valid percent-encoded UTF-8", with("GET", &format!("{T}/x%zz"), &[], None), RW),
            ("not valid percent-encoded UTF-8", with("GET", &format!("{T}/x%FF"), &[], None), RW),
            ("start with the table's location and a slash", with("GET", &format!("{E}?list-type=2&prefix=wh/"), &[], None), RW),
            ("start with the table's location and a slash", with("GET", &format!("{E}?list-type=2&prefix=wh/db/t-1"), &[], None), RW),
            ("start with the table's location and a slash", with("GET", &format!("{E}?list-type=2&prefix=wh/db/t-10/"), &[], None), RW),
            ("start with the table's location and a slash", with("GET", &format!("{E}?list-type=2&prefix="), &[], None), RW),
            // Writes need write access.
            ("PutObject writes", with("PUT", &format!("{T}/data/f.parquet"), &[], None), RO),
            ("DeleteObject writes", with("DELETE", &format!("{T}/data/f.parquet"), &[], None), RO),
            ("UploadPart writes", with("PUT", &format!("{T}/data/f?partNumber=1&uploadId=u"), &[], None), RO),
            ("CreateMultipartUpload writes", with("POST", &format!("{T}/data/f?uploads"), &[], None), RO),
            ("DeleteObjects writes", with("POST", &format!("{E}?delete"), &[], Some(&good_body)), RO),
        ];
        for (rule, request, access) in cases {
            let described = format!("{} {}", request.method, request.uri);
            match d.check(TABLE, &request, access) {
                Err(CatalogError::Forbidden(message)) => {
                    assert!(
                        message.starts_with("Signing refused: "),
                        "{described}: {message}"
                    );
                    assert!(
                        message.contains(rule),
                        "{described}: {message:?} should name {rule:?}"
                    );
                }
                other => panic!("{described}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_region_and_the_table_location_are_checked() {
        let d = delegator(&[("floe.remote-signing", "true")]);
        let mut request = sign_request("GET", &format!("{T}/data/f"));
        request.region = "eu-west-1".into();
        let r = d.check(TABLE, &request, RW);
        assert!(
            matches!(&r, Err(CatalogError::Forbidden(m)) if m.contains("warehouse's region (us-east-1)")),
            "{r:?}"
        );
        let request = sign_request("GET", "http://127.0.0.1:9000/b/anything");
        for root in ["s3://b", "s3://b/", "s3://b/wh/../x"] {
            let r = d.check(root, &request, RW);
            assert!(
                matches!(&r, Err(CatalogError::Forbidden(m)) if m.contains("not a plain folder")),
                "{root}: {r:?}"
            );
        }
        let mut request = sign_request("GET", &format!("{T}/data/f"));
        request.provider = Some("gcs".into());
        assert!(matches!(
            d.check(TABLE, &request, RW),
            Err(CatalogError::BadRequest(_))
        ));
    }

    /// With no endpoint configured, only AWS S3's own hosts for the
    /// warehouse's bucket are signed for: never another bucket's virtual host.
    #[test]
    fn without_an_endpoint_only_the_buckets_aws_hosts() {
        let d = aws_delegator();
        for uri in [
            "https://b.s3.amazonaws.com/wh/db/t-1/data/f",
            "https://b.s3.us-east-1.amazonaws.com/wh/db/t-1/data/f",
            "https://b.s3.dualstack.us-east-1.amazonaws.com/wh/db/t-1/data/f",
            "https://s3.amazonaws.com/b/wh/db/t-1/data/f",
            "https://s3.us-east-1.amazonaws.com/b/wh/db/t-1/data/f",
            "https://S3.US-EAST-1.AMAZONAWS.COM:443/b/wh/db/t-1/data/f",
            "http://b.s3.amazonaws.com/wh/db/t-1/data/f",
        ] {
            let r = d.check(TABLE, &sign_request("GET", uri), RW);
            assert!(r.is_ok(), "{uri}: {r:?}");
        }
        for uri in [
            // Parsed path-style as bucket b, served virtual-hosted from otherbucket.
            "https://otherbucket.s3.amazonaws.com/b/wh/db/t-1/data/f",
            "https://otherbucket.s3.us-east-1.amazonaws.com/b/wh/db/t-1/data/f",
            "https://b.otherbucket.s3.amazonaws.com/wh/db/t-1/data/f",
            "https://b.s3.eu-west-1.amazonaws.com/wh/db/t-1/data/f",
            "https://s3.eu-west-1.amazonaws.com/b/wh/db/t-1/data/f",
            "https://b.s3-accesspoint.us-east-1.amazonaws.com/wh/db/t-1/data/f",
            "https://b.s3.amazonaws.com.evil.example/wh/db/t-1/data/f",
            "https://evil.example/b.s3.amazonaws.com/wh/db/t-1/data/f",
            "https://bb.s3.amazonaws.com/wh/db/t-1/data/f",
            "https://b.s3.amazonaws.com:8443/wh/db/t-1/data/f",
            "https://s3.amazonaws.com/other/wh/db/t-1/data/f",
            "https://user:pw@b.s3.amazonaws.com/wh/db/t-1/data/f",
        ] {
            let r = d.check(TABLE, &sign_request("GET", uri), RW);
            assert!(
                matches!(&r, Err(CatalogError::Forbidden(m)) if m.starts_with("Signing refused: ")),
                "{uri}: {r:?}"
            );
        }
        // An endpoint that does not parse signs nothing.
        let broken = delegator(&[
            ("floe.remote-signing", "true"),
            (iceberg::io::S3_ENDPOINT, "not a uri"),
        ]);
        let r = broken.check(TABLE, &sign_request("GET", &format!("{T}/f")), RW);
        assert!(matches!(r, Err(CatalogError::Forbidden(_))), "{r:?}");
    }

    #[test]
    fn delete_bodies_are_read_strictly() {
        let java = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n  <Object>\n    <Key>wh/db/t-1/a&amp;b</Key>\n  </Object>\n  <Object><Key><![CDATA[wh/db/t-1/c<d]]></Key></Object>\n  <Object><Key>wh/db/t-1/&#x65;</Key></Object>\n  <Quiet>true</Quiet>\n</Delete>";
        assert_eq!(
            delete_keys(java).unwrap(),
            vec![
                "wh/db/t-1/a&b".to_string(),
                "wh/db/t-1/c<d".to_string(),
                "wh/db/t-1/e".to_string()
            ]
        );
        for bad in [
            "",
            "not xml",
            "<Delete></Delete>",
            "<Delete><Object></Object></Delete>",
            "<Delete><Object><Key/></Object></Delete>",
            "<Delete><Object><Key></Key></Object></Delete>",
            "<Delete><Object><Key>a</Key></Object></Delete><Delete/>",
            "<Delete><Object><Key>a</Key></Object><Extra/></Delete>",
            "<Delete><Object><Key>a<b/></Key></Object></Delete>",
            "<Delete><Object><Key a=\"1\">a</Key></Object></Delete>",
            "<Delete><Object><Key>&unknown;</Key></Object></Delete>",
            "<?xml version=\"1.0\" encoding=\"UTF-16\"?><Delete><Object><Key>a</Key></Object></Delete>",
            "<Delete><Object><Key>a</Key></Object><?pi x?></Delete>",
            "<Delete><Object><Key>a</Key></Object>text</Delete>",
            "<Delete><Object><Key>a</Key></Object><Quiet>maybe</Quiet></Delete>",
            "<Delete><Object><Key>a</Key></Object></Delete>trailing",
            "<Delete><Object><Key>a</Key></Object>",
        ] {
            assert!(delete_keys(bad).is_err(), "{bad:?}: {:?}", delete_keys(bad));
        }
        let why = |body: &str| delete_keys(body).expect_err(body);
        assert!(matches!(why("<Delete></Delete>"), DeleteBodyError::NoKey));
        assert!(matches!(
            why("<Delete><Object><Key></Key></Object></Delete>"),
            DeleteBodyError::EmptyKey
        ));
        assert!(matches!(
            why("<Delete><Object><VersionId>1</VersionId></Object></Delete>"),
            DeleteBodyError::Version
        ));
        let unparsable = why("<Delete><Object");
        assert!(
            std::error::Error::source(&unparsable).is_some(),
            "the parser's reason is kept: {unparsable:?}"
        );
        assert_eq!(
            unparsable.to_string(),
            "does not parse as a DeleteObjects request"
        );
    }

    /// The signature covers `x-amz-content-sha256`, so S3 refuses a
    /// DeleteObjects body other than the one checked: an independent SigV4
    /// computation (not reqsign's) reproduces the signature from the body's
    /// hash, and no other hash does.
    #[tokio::test]
    async fn the_signature_binds_the_delete_body() {
        let d = delegator(&[("floe.remote-signing", "true")]);
        let body = delete_body(&["wh/db/t-1/data/a.parquet"]);
        let uri = format!("{E}?delete");
        let signed = d
            .sign(
                TABLE,
                with("POST", &uri, &[("Content-MD5", "bWQ1")], Some(&body)),
                RW,
            )
            .await
            .unwrap();
        let hash = sha256_hex(&body);
        assert_eq!(signed.headers["x-amz-content-sha256"], vec![hash.clone()]);
        let auth = signed.headers["authorization"][0].clone();
        let signed_names = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap()
            .to_string();
        assert_eq!(
            signed_names,
            "content-md5;content-type;host;x-amz-content-sha256;x-amz-date"
        );
        let date = signed.headers["x-amz-date"][0].clone();
        let signature = |payload_hash: &str| {
            let canonical = format!(
                "POST\n/b\ndelete=\ncontent-md5:bWQ1\ncontent-type:binary/octet-stream\nhost:127.0.0.1:9000\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{date}\n\n{signed_names}\n{payload_hash}"
            );
            let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
                reqsign_core::hash::hex_sha256(canonical.as_bytes())
            );
            let mut key = reqsign_core::hash::hmac_sha256(b"AWS4secret", &date.as_bytes()[..8]);
            for part in ["us-east-1", "s3", "aws4_request"] {
                key = reqsign_core::hash::hmac_sha256(&key, part.as_bytes());
            }
            reqsign_core::hash::hex_hmac_sha256(&key, to_sign.as_bytes())
        };
        assert!(
            auth.ends_with(&format!("Signature={}", signature(&hash))),
            "{auth}"
        );
        let other = delete_body(&["wh/theirs/t/metadata/v1.metadata.json"]);
        for replay in [sha256_hex(&other), "UNSIGNED-PAYLOAD".to_string()] {
            assert!(!auth.ends_with(&signature(&replay)), "{replay}");
        }
    }

    #[tokio::test]
    async fn signing_is_limited_to_the_table_and_to_access() {
        let d = delegator(&[("floe.remote-signing", "true")]);
        let ok = d
            .sign(
                TABLE,
                sign_request("PUT", "http://127.0.0.1:9000/b/wh/db/t-1/data/f.parquet"),
                StorageAccess::ReadWrite,
            )
            .await
            .unwrap();
        let auth = &ok.headers["authorization"][0];
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAFLOE000000000000/"),
            "{auth}"
        );
        assert!(
            auth.contains("content-type") && !auth.contains("user-agent"),
            "{auth}"
        );
        assert!(ok.headers.contains_key("x-amz-date"));
        assert_eq!(ok.headers["x-amz-content-sha256"], vec!["UNSIGNED-PAYLOAD"]);
        assert!(
            !ok.headers.contains_key("content-type") && !ok.headers.contains_key("host"),
            "headers the client has are not repeated"
        );
        // A date the client chose is replaced by the signer's.
        let dated = d
            .sign(
                TABLE,
                with(
                    "GET",
                    &format!("{T}/f"),
                    &[("X-Amz-Date", "20000101T000000Z")],
                    None,
                ),
                StorageAccess::ReadOnly,
            )
            .await
            .unwrap();
        assert_ne!(dated.headers["x-amz-date"], vec!["20000101T000000Z"]);
        // Nothing is signed when the warehouse does not offer it.
        assert!(matches!(
            delegator(&[])
                .sign(
                    TABLE,
                    sign_request("GET", "http://127.0.0.1:9000/b/wh/db/t-1/f"),
                    StorageAccess::ReadWrite
                )
                .await,
            Err(CatalogError::Forbidden(_))
        ));
    }

    #[test]
    fn sts_answers_parse() {
        let xml = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleResult><Credentials>
            <AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>s</SecretAccessKey>
            <SessionToken>tok</SessionToken><Expiration>2026-12-02T10:00:00Z</Expiration>
          </Credentials><AssumedRoleUser><Arn>a</Arn><AssumedRoleId>i</AssumedRoleId></AssumedRoleUser>
          </AssumeRoleResult></AssumeRoleResponse>"#;
        let parsed: AssumeRoleResponse = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(
            parsed.assume_role_result.credentials.access_key_id,
            "ASIAEXAMPLE"
        );
        assert_eq!(
            parse_expiration(&parsed.assume_role_result.credentials.expiration),
            Some(1_796_205_600_000)
        );
    }
}
