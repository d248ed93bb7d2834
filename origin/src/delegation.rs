//! Storage access delegated to clients: vended credentials and remote signing.
//!
//! A client asks with `X-Iceberg-Access-Delegation` (a comma-separated list of
//! `vended-credentials` and `remote-signing`); the warehouse's settings
//! ([`DelegationConfig`]) say what it offers. Vended credentials are either a
//! fixed client key pair or short-lived STS credentials whose session policy
//! covers the table's location alone, with write actions only for principals
//! that may write there. Remote signing signs S3 requests with the catalog's
//! own key, after checking that they address objects of that table. The
//! catalog's own key never leaves the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context, SignRequest};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::{DelegationConfig, VendedMode};
use crate::error::{CatalogError, Result};

/// The request header.
pub const HEADER: &str = "x-iceberg-access-delegation";

/// Vended credentials are reused while at least this much of their life is left.
const REUSE_MARGIN: Duration = Duration::from_secs(300);

/// Headers a client may change after signing (retries, tracing): never signed.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
    "amz-sdk-request",
    "amz-sdk-invocation-id",
];

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

/// Whether `key` lies under `prefix` (a key prefix without trailing slash).
fn under(prefix: &str, key: &str) -> bool {
    // `.` and `..` are literal in S3 keys, but proxies and some servers
    // normalize them: a key with such a segment is never signed.
    if key.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    prefix.is_empty()
        || key == prefix
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The session policy of vended STS credentials: the table's objects, and
/// listing under its prefix.
fn session_policy(bucket: &str, prefix: &str, access: StorageAccess) -> String {
    let mut actions = vec!["s3:GetObject", "s3:GetObjectVersion"];
    if access == StorageAccess::ReadWrite {
        actions.extend([
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ]);
    }
    let objects = if prefix.is_empty() {
        format!("arn:aws:s3:::{bucket}/*")
    } else {
        format!("arn:aws:s3:::{bucket}/{prefix}/*")
    };
    let listed = if prefix.is_empty() {
        vec!["*".to_string()]
    } else {
        vec![prefix.to_string(), format!("{prefix}/*")]
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": [objects]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [format!("arn:aws:s3:::{bucket}")],
             "Condition": {"StringLike": {"s3:prefix": listed}}},
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [format!("arn:aws:s3:::{bucket}")]}
        ]
    })
    .to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// Milliseconds since the epoch of an STS `Expiration` (RFC 3339, UTC).
fn parse_expiration(text: &str) -> Option<u64> {
    let ts: reqsign_core::time::Timestamp = text.trim().parse().ok()?;
    Some(ts.as_second().max(0) as u64 * 1000)
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

    /// Credentials for the table at `location`, or `None` when the warehouse
    /// vends none (or the location is not in S3).
    pub async fn vend(
        &self,
        location: &str,
        access: StorageAccess,
    ) -> Result<Option<StorageCredential>> {
        let Some((bucket, prefix)) = split_s3(location) else {
            return Ok(None);
        };
        let mut config = self.base_config();
        match self.config.vended {
            VendedMode::None => return Ok(None),
            VendedMode::Static => {
                let (Some(id), Some(secret)) = (
                    &self.config.client_access_key_id,
                    &self.config.client_secret_access_key,
                ) else {
                    return Ok(None);
                };
                config.insert(iceberg::io::S3_ACCESS_KEY_ID.into(), id.clone());
                config.insert(iceberg::io::S3_SECRET_ACCESS_KEY.into(), secret.clone());
            }
            VendedMode::AssumeRole => {
                let (credential, expires_ms) = self.assume_role(bucket, prefix, access).await?;
                config.insert(
                    iceberg::io::S3_ACCESS_KEY_ID.into(),
                    credential.access_key_id,
                );
                config.insert(
                    iceberg::io::S3_SECRET_ACCESS_KEY.into(),
                    credential.secret_access_key,
                );
                if let Some(token) = credential.session_token {
                    config.insert(iceberg::io::S3_SESSION_TOKEN.into(), token);
                }
                config.insert(
                    "s3.session-token-expires-at-ms".into(),
                    expires_ms.to_string(),
                );
            }
        }
        Ok(Some(StorageCredential {
            prefix: location.trim_end_matches('/').to_string(),
            config,
        }))
    }

    async fn assume_role(
        &self,
        bucket: &str,
        prefix: &str,
        access: StorageAccess,
    ) -> Result<(Credential, u64)> {
        let key = (format!("{bucket}/{prefix}"), access);
        let now = now_ms();
        if let Ok(cache) = self.vended.lock()
            && let Some((credential, expires)) = cache.get(&key)
            && *expires > now + REUSE_MARGIN.as_millis() as u64
        {
            return Ok((credential.clone(), *expires));
        }
        let own = self.own.as_ref().ok_or_else(|| {
            CatalogError::Unavailable(
                "The warehouse has no key of its own to assume the vending role with".into(),
            )
        })?;
        let role = self.config.role_arn.as_deref().unwrap_or_default();
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", "AssumeRole")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", role)
                .append_pair(
                    "RoleSessionName",
                    &format!("floe-{}", uuid::Uuid::now_v7().simple()),
                )
                .append_pair("DurationSeconds", &self.config.duration_seconds.to_string())
                .append_pair("Policy", &session_policy(bucket, prefix, access));
            if let Some(external) = &self.config.external_id {
                form.append_pair("ExternalId", external);
            }
            form.finish()
        };
        let endpoint = self
            .config
            .sts_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region));
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{}/", endpoint.trim_end_matches('/')))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(
                "x-amz-content-sha256",
                hex(&sha2::Sha256::digest(body.as_bytes())),
            )
            .body(())
            .map_err(|e| CatalogError::Internal(format!("STS request: {e}")))?;
        let (mut parts, ()) = request.into_parts();
        RequestSigner::new("sts", &self.region)
            .sign_request(&Context::new(), &mut parts, Some(own), None)
            .await
            .map_err(|e| CatalogError::Unavailable(format!("Cannot sign the STS request: {e}")))?;
        let mut outgoing = self
            .http
            .post(parts.uri.to_string())
            .body(Bytes::from(body));
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let response = outgoing
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| CatalogError::Unavailable(format!("STS is unreachable: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CatalogError::Unavailable(format!("STS answer unreadable: {e}")))?;
        if !status.is_success() {
            tracing::warn!(%status, role, "STS refused AssumeRole");
            return Err(CatalogError::Unavailable(format!(
                "STS refused to vend credentials ({status})"
            )));
        }
        let parsed: AssumeRoleResponse = quick_xml::de::from_str(&text)
            .map_err(|e| CatalogError::Unavailable(format!("STS answer not understood: {e}")))?;
        let c = parsed.assume_role_result.credentials;
        let expires = parse_expiration(&c.expiration).ok_or_else(|| {
            CatalogError::Unavailable(format!("STS expiration not understood: {}", c.expiration))
        })?;
        let credential = Credential {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: Some(c.session_token),
            expires_in: None,
        };
        if let Ok(mut cache) = self.vended.lock() {
            cache.retain(|_, (_, e)| *e > now);
            cache.insert(key, (credential.clone(), expires));
        }
        Ok((credential, expires))
    }

    /// Signs an S3 request addressed to an object of the table at
    /// `location`; writes need `ReadWrite`.
    pub async fn sign(
        &self,
        location: &str,
        request: RemoteSignRequest,
        access: StorageAccess,
    ) -> Result<RemoteSignResult> {
        if !self.config.remote_signing {
            return Err(CatalogError::Forbidden(
                "Remote signing is not enabled for this warehouse".into(),
            ));
        }
        if request.provider.as_deref().is_some_and(|p| p != "s3") {
            return Err(CatalogError::BadRequest(format!(
                "Cannot sign for storage provider {:?}",
                request.provider
            )));
        }
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| CatalogError::BadRequest(format!("Bad method {}", request.method)))?;
        let writes = !matches!(method, http::Method::GET | http::Method::HEAD);
        if writes && access != StorageAccess::ReadWrite {
            return Err(CatalogError::Forbidden(
                "Signing a write needs write access to the table".into(),
            ));
        }
        let (bucket, prefix) = split_s3(location)
            .ok_or_else(|| CatalogError::BadRequest("The table is not stored in S3".into()))?;
        let uri: http::Uri = request
            .uri
            .parse()
            .map_err(|e| CatalogError::BadRequest(format!("Bad uri {}: {e}", request.uri)))?;
        let keys = self.addressed_keys(&uri, bucket, &method, request.body.as_deref())?;
        if keys.is_empty() || !keys.iter().all(|k| under(prefix, k)) {
            return Err(CatalogError::Forbidden(format!(
                "{} {} is outside the table's location",
                request.method, request.uri
            )));
        }
        let own = self.own.as_ref().ok_or_else(|| {
            CatalogError::Unavailable("The warehouse has no key to sign with".into())
        })?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        let mut present = Vec::new();
        for (name, values) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if UNSIGNED_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            present.push(lower);
            for value in values {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|e| CatalogError::BadRequest(format!("Bad request to sign: {e}")))?
            .into_parts();
        RequestSigner::new("s3", &request.region)
            .sign_request(&Context::new(), &mut parts, Some(own), None)
            .await
            .map_err(|e| CatalogError::Internal(format!("Signing failed: {e}")))?;
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let name = name.as_str().to_ascii_lowercase();
            if (name == "authorization" || !present.contains(&name))
                && let Ok(value) = value.to_str()
            {
                headers.entry(name).or_default().push(value.to_string());
            }
        }
        headers.remove("host");
        Ok(RemoteSignResult {
            uri: parts.uri.to_string(),
            headers,
        })
    }

    /// The object keys a request addresses in `bucket` (listing: its prefix;
    /// DeleteObjects: every key of the body). Errors when it addresses
    /// another host or bucket.
    fn addressed_keys(
        &self,
        uri: &http::Uri,
        bucket: &str,
        method: &http::Method,
        body: Option<&str>,
    ) -> Result<Vec<String>> {
        let outside = || CatalogError::Forbidden(format!("{uri} is not this warehouse's bucket"));
        let authority = uri.authority().map(|a| a.as_str()).ok_or_else(outside)?;
        let endpoint_authority = self
            .endpoint
            .as_deref()
            .and_then(|e| e.parse::<http::Uri>().ok())
            .and_then(|u| u.authority().map(|a| a.as_str().to_string()));
        let path = percent_encoding::percent_decode_str(uri.path())
            .decode_utf8()
            .map_err(|_| CatalogError::BadRequest("The uri's path is not UTF-8".into()))?;
        let host_ok = |host: &str| match &endpoint_authority {
            Some(expected) => host == expected,
            None => host.ends_with(".amazonaws.com"),
        };
        let key = if let Some(rest) = authority.strip_prefix(&format!("{bucket}.")) {
            if !host_ok(rest) && !host_ok(authority) {
                return Err(outside());
            }
            path.trim_start_matches('/').to_string()
        } else if host_ok(authority) {
            let rest = path.trim_start_matches('/');
            let (b, key) = rest.split_once('/').unwrap_or((rest, ""));
            if b != bucket {
                return Err(outside());
            }
            key.to_string()
        } else {
            return Err(outside());
        };
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if !key.is_empty() {
            return Ok(vec![key]);
        }
        // Bucket-level requests: listings under a prefix, and DeleteObjects.
        if *method == http::Method::POST && query.iter().any(|(k, _)| k == "delete") {
            return Ok(delete_keys(body.unwrap_or_default()));
        }
        if *method == http::Method::GET
            && let Some((_, listed)) = query.iter().find(|(k, _)| k == "prefix")
        {
            return Ok(vec![listed.trim_end_matches('/').to_string()]);
        }
        Ok(Vec::new())
    }
}

/// The `<Key>` elements of a DeleteObjects body.
fn delete_keys(body: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Delete {
        #[serde(rename = "Object", default)]
        objects: Vec<Object>,
    }
    #[derive(Deserialize)]
    struct Object {
        #[serde(rename = "Key")]
        key: String,
    }
    quick_xml::de::from_str::<Delete>(body)
        .map(|d| d.objects.into_iter().map(|o| o.key).collect())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    floe_shared::auth::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn keys_under_a_prefix() {
        assert!(under("wh/t", "wh/t/data/x.parquet"));
        assert!(under("wh/t", "wh/t"));
        assert!(!under("wh/t", "wh/t2/data"));
        assert!(!under("wh/t", "wh"));
        assert_eq!(split_s3("s3://b/wh/t/"), Some(("b", "wh/t")));
        assert_eq!(split_s3("file:///x"), None);
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
        assert!(
            !ok.headers.contains_key("content-type"),
            "headers the client has are not repeated"
        );
        for (method, uri, access) in [
            (
                "PUT",
                "http://127.0.0.1:9000/b/wh/db/t-1/data/f.parquet",
                StorageAccess::ReadOnly,
            ),
            (
                "GET",
                "http://127.0.0.1:9000/b/wh/db/other/f.parquet",
                StorageAccess::ReadWrite,
            ),
            (
                "GET",
                "http://127.0.0.1:9000/other-bucket/wh/db/t-1/f",
                StorageAccess::ReadWrite,
            ),
            (
                "GET",
                "http://evil.example/b/wh/db/t-1/f",
                StorageAccess::ReadWrite,
            ),
            (
                "GET",
                "http://127.0.0.1:9000/b/wh/db/t-1/../../x",
                StorageAccess::ReadWrite,
            ),
            (
                "GET",
                "http://127.0.0.1:9000/b?list-type=2&prefix=wh/",
                StorageAccess::ReadWrite,
            ),
        ] {
            let r = d.sign(TABLE, sign_request(method, uri), access).await;
            assert!(
                matches!(r, Err(CatalogError::Forbidden(_))),
                "{method} {uri}: {r:?}"
            );
        }
        let listing = d
            .sign(
                TABLE,
                sign_request(
                    "GET",
                    "http://127.0.0.1:9000/b?list-type=2&prefix=wh/db/t-1/metadata/",
                ),
                StorageAccess::ReadOnly,
            )
            .await;
        assert!(listing.is_ok(), "{listing:?}");
        let mut delete = sign_request("POST", "http://127.0.0.1:9000/b?delete");
        delete.body = Some("<Delete><Object><Key>wh/db/t-1/a</Key></Object><Object><Key>wh/db/x</Key></Object></Delete>".into());
        assert!(
            d.sign(TABLE, delete, StorageAccess::ReadWrite)
                .await
                .is_err()
        );
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
