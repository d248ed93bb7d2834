//! Remote signing: the rules an S3 request must pass before the catalog signs
//! it with its own key (see the module above for the list).

use std::collections::BTreeMap;

use reqsign_aws_v4::RequestSigner;
use reqsign_core::{Context, SignRequest};
use sha2::Digest;

use super::{Delegator, RemoteSignRequest, RemoteSignResult, StorageAccess, hex, split_s3};
use crate::error::{CatalogError, Result};

/// Headers a client may change after signing (retries, tracing): never signed.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
    "amz-sdk-request",
    "amz-sdk-invocation-id",
];

impl Delegator {
    /// Signs an S3 request for a client of the table at `location`, with the
    /// catalog's own key, when it is one of the operations a table's client
    /// needs and addresses only the table's objects (the rules are applied by
    /// `check`, and listed in the README's "Storage access"); writes need
    /// `ReadWrite`. The caller has checked that no other live object's
    /// location overlaps `location`.
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
        let checked = self.check(location, &request, access)?;
        let own = self.own.as_ref().ok_or_else(|| {
            CatalogError::unavailable("The warehouse has no key to sign with".into())
        })?;
        let mut builder = http::Request::builder()
            .method(checked.method)
            .uri(checked.uri);
        for (name, value) in &checked.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|_| {
                CatalogError::BadRequest("Cannot sign: a header name or value is invalid".into())
            })?
            .into_parts();
        RequestSigner::new("s3", &self.region)
            .sign_request(&Context::new(), &mut parts, Some(own), None)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "signing a remote-sign request failed");
                CatalogError::internal("Signing failed".into())
            })?;
        // Everything the signer added or replaced goes back to the client:
        // the signature, its date, the payload hash it covers, the catalog's
        // session token. Headers the client sent as they are are not repeated.
        let sent: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.join(",")))
            .collect();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let name = name.as_str();
            let unchanged = sent
                .iter()
                .any(|(n, v)| n == name && value.as_bytes() == v.as_bytes());
            if name == "host" || unchanged {
                continue;
            }
            if let Ok(value) = value.to_str() {
                headers
                    .entry(name.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
        Ok(RemoteSignResult {
            uri: parts.uri.to_string(),
            headers,
        })
    }

    /// Applies every signing rule to `request`: what [`Delegator::sign`]
    /// signs, or the rule that refuses it.
    pub(super) fn check(
        &self,
        location: &str,
        request: &RemoteSignRequest,
        access: StorageAccess,
    ) -> Result<Checked> {
        if request.provider.as_deref().is_some_and(|p| p != "s3") {
            return Err(CatalogError::BadRequest(
                "Cannot sign for a storage provider other than s3".into(),
            ));
        }
        let (bucket, prefix) = split_s3(location)
            .ok_or_else(|| CatalogError::BadRequest("The table is not stored in S3".into()))?;
        if prefix.is_empty() || key_flaw(prefix).is_some() {
            return Err(refused(
                "the table's location is not a plain folder of its bucket",
            ));
        }
        let table = TableScope {
            folder: format!("{prefix}/"),
        };
        if request.region != self.region {
            return Err(refused(format!(
                "the signing region must be the warehouse's region ({})",
                self.region
            )));
        }
        let method = match request.method.as_str() {
            "GET" => http::Method::GET,
            "HEAD" => http::Method::HEAD,
            "PUT" => http::Method::PUT,
            "POST" => http::Method::POST,
            "DELETE" => http::Method::DELETE,
            other => {
                return Err(refused(format!(
                    "method {} is not an operation of a table's client",
                    shown(other)
                )));
            }
        };
        if request.uri.contains('#') {
            return Err(refused("the uri has a fragment"));
        }
        let uri: http::Uri = request
            .uri
            .parse()
            .map_err(|_| CatalogError::BadRequest("Cannot sign: the uri does not parse".into()))?;
        let target = self.target(&uri, bucket)?;
        let query = query_parameters(uri.query())?;
        let operation = classify(method.as_str(), matches!(target, Target::Object(_)), &query)?;
        if operation.writes() && access != StorageAccess::ReadWrite {
            return Err(CatalogError::Forbidden(format!(
                "Signing refused: {} writes, and needs write access to the table",
                operation.name()
            )));
        }
        match (&target, operation) {
            (Target::Object(key), _) => table.object(key)?,
            (Target::Bucket, S3Operation::ListObjects | S3Operation::ListObjectsV2) => {
                table.listing(query.get("prefix").map(String::as_str).unwrap_or_default())?;
            }
            (Target::Bucket, _) => {}
        }
        let headers = signed_headers(request, &uri, operation)?;
        let headers = if operation == S3Operation::DeleteObjects {
            bind_delete_body(headers, request.body.as_deref(), &table)?
        } else {
            headers
        };
        Ok(Checked {
            method,
            uri,
            headers,
        })
    }

    /// What `uri` addresses in `bucket`: the bucket itself or one of its
    /// objects. Refuses any other host, bucket or addressing.
    fn target(&self, uri: &http::Uri, bucket: &str) -> Result<Target> {
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let Some(default_port) = default_port(&scheme) else {
            return Err(refused("the uri's scheme must be http or https"));
        };
        let authority = uri
            .authority()
            .ok_or_else(|| refused("the uri has no host"))?;
        if authority.as_str().contains('@') {
            return Err(refused("the uri carries user information"));
        }
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(default_port);
        let not_ours = || refused("the uri is not the warehouse's endpoint and bucket");
        let mut path = uri.path();
        let virtual_host = match &self.hosts {
            SignHosts::Invalid => {
                return Err(refused(
                    "the warehouse's endpoint is not a usable http(s) uri",
                ));
            }
            SignHosts::Endpoint(endpoint) => {
                if scheme != endpoint.scheme || port != endpoint.port {
                    return Err(not_ours());
                }
                path = path
                    .strip_prefix(endpoint.path.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .ok_or_else(not_ours)?;
                if host == endpoint.host {
                    // Path-style; ambiguous when the endpoint itself is a
                    // virtual host of the bucket (S3 would read the path as a key).
                    if endpoint.host.starts_with(&format!("{bucket}.")) {
                        return Err(not_ours());
                    }
                    false
                } else if host == format!("{bucket}.{}", endpoint.host) {
                    true
                } else {
                    return Err(not_ours());
                }
            }
            SignHosts::Aws => {
                if port != default_port {
                    return Err(not_ours());
                }
                let service = |h: &str| aws_s3_host(h, &self.region);
                if service(&host) {
                    false
                } else if host
                    .strip_prefix(bucket)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(service)
                {
                    true
                } else {
                    return Err(not_ours());
                }
            }
        };
        let raw_key = if virtual_host {
            path.strip_prefix('/').unwrap_or(path)
        } else {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let (named, key) = rest.split_once('/').unwrap_or((rest, ""));
            if named != bucket {
                return Err(not_ours());
            }
            key
        };
        if raw_key.is_empty() {
            return Ok(Target::Bucket);
        }
        let key = decode_once(raw_key)
            .ok_or_else(|| refused("the uri's path is not valid percent-encoded UTF-8"))?;
        Ok(Target::Object(key))
    }
}

/// A request that passed every signing rule.
#[derive(Debug)]
pub(super) struct Checked {
    method: http::Method,
    uri: http::Uri,
    /// Lowercase names and values of the headers to sign.
    headers: Vec<(String, String)>,
}

/// Where signatures may be used: the warehouse's endpoint, or AWS S3's own
/// hosts for the bucket when no endpoint is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SignHosts {
    Endpoint(Endpoint),
    Aws,
    /// The configured endpoint does not parse: nothing is signed.
    Invalid,
}

impl SignHosts {
    pub(super) fn from_endpoint(endpoint: Option<&str>) -> Self {
        let Some(endpoint) = endpoint else {
            return Self::Aws;
        };
        let parsed = || -> Option<Endpoint> {
            let uri: http::Uri = endpoint.parse().ok()?;
            let scheme = uri.scheme_str()?.to_ascii_lowercase();
            let port = default_port(&scheme)?;
            let authority = uri.authority()?;
            if authority.as_str().contains('@') || uri.query().is_some() {
                return None;
            }
            Some(Endpoint {
                host: authority.host().to_ascii_lowercase(),
                port: authority.port_u16().unwrap_or(port),
                path: uri.path().trim_end_matches('/').to_string(),
                scheme,
            })
        };
        parsed().map_or(Self::Invalid, Self::Endpoint)
    }
}

/// A configured S3 endpoint, as requests must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    scheme: String,
    host: String,
    port: u16,
    /// Path prefix without trailing slash (usually empty).
    path: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// AWS S3's service hosts for `region`: global, regional, dual-stack.
fn aws_s3_host(host: &str, region: &str) -> bool {
    host == "s3.amazonaws.com"
        || host
            .strip_prefix("s3.")
            .and_then(|h| h.strip_prefix("dualstack.").or(Some(h)))
            .and_then(|h| h.strip_prefix(region))
            .is_some_and(|h| h == ".amazonaws.com")
}

/// What a request addresses in the warehouse's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Bucket,
    /// An object key, percent-decoded once.
    Object(String),
}

/// A refusal that names its rule.
fn refused(rule: impl std::fmt::Display) -> CatalogError {
    CatalogError::Forbidden(format!("Signing refused: {rule}"))
}

/// A client-chosen name in an error message: quoted, escaped, bounded.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Percent-decodes `text` once; `None` for a malformed escape or non-UTF-8.
fn decode_once(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return None;
        }
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The query's parameters, decoded as the signer canonicalizes them (split on
/// `&` and the first `=`, `%XX` decoded once, `+` literal), each at most once.
fn query_parameters(query: Option<&str>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (decode_once(name), decode_once(value)) else {
            return Err(refused("the query is not valid percent-encoded UTF-8"));
        };
        if out.contains_key(&name) {
            return Err(refused(format!(
                "query parameter {} is given twice",
                shown(&name)
            )));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// Why `key` (an object key or key prefix) is never signed, if it is not:
/// `.` and `..` segments (literal in S3, normalized by some servers and
/// proxies), backslashes (a separator for some), control characters.
fn key_flaw(key: &str) -> Option<&'static str> {
    if key.split('/').any(|s| s == "." || s == "..") {
        Some("has a '.' or '..' segment")
    } else if key.contains('\\') {
        Some("has a backslash")
    } else if key.chars().any(char::is_control) {
        Some("has a control character")
    } else {
        None
    }
}

/// The keys a table's signatures may address.
#[derive(Debug)]
struct TableScope {
    /// The table's location as a folder: its key prefix and a slash.
    folder: String,
}

impl TableScope {
    /// An object key: in the table's folder.
    fn object(&self, key: &str) -> Result<()> {
        if let Some(flaw) = key_flaw(key) {
            return Err(refused(format!("the object key {flaw}")));
        }
        if !key.starts_with(&self.folder) {
            return Err(refused("the object key is outside the table's location"));
        }
        Ok(())
    }

    /// A listing prefix: starts with the table's folder (so `…/t` never lists
    /// `…/t10/`).
    fn listing(&self, prefix: &str) -> Result<()> {
        if let Some(flaw) = key_flaw(prefix) {
            return Err(refused(format!("the listing prefix {flaw}")));
        }
        if !prefix.starts_with(&self.folder) {
            return Err(refused(
                "a listing's prefix must start with the table's location and a slash",
            ));
        }
        Ok(())
    }
}

/// The S3 operations a table's client needs: everything signed is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S3Operation {
    GetObject,
    HeadObject,
    PutObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListObjects,
    ListObjectsV2,
    DeleteObjects,
}

impl S3Operation {
    fn name(self) -> &'static str {
        match self {
            Self::GetObject => "GetObject",
            Self::HeadObject => "HeadObject",
            Self::PutObject => "PutObject",
            Self::DeleteObject => "DeleteObject",
            Self::CreateMultipartUpload => "CreateMultipartUpload",
            Self::UploadPart => "UploadPart",
            Self::CompleteMultipartUpload => "CompleteMultipartUpload",
            Self::AbortMultipartUpload => "AbortMultipartUpload",
            Self::ListParts => "ListParts",
            Self::ListObjects => "ListObjects",
            Self::ListObjectsV2 => "ListObjectsV2",
            Self::DeleteObjects => "DeleteObjects",
        }
    }

    fn writes(self) -> bool {
        !matches!(
            self,
            Self::GetObject
                | Self::HeadObject
                | Self::ListParts
                | Self::ListObjects
                | Self::ListObjectsV2
        )
    }

    /// Query parameters: (required, optional). `x-id` (the operation's name,
    /// as some SDKs add it) is accepted on every operation.
    fn parameters(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::GetObject | Self::HeadObject => (&[], &["versionId", "partNumber"]),
            Self::PutObject | Self::DeleteObject => (&[], &[]),
            Self::CreateMultipartUpload => (&["uploads"], &[]),
            Self::UploadPart => (&["partNumber", "uploadId"], &[]),
            Self::CompleteMultipartUpload | Self::AbortMultipartUpload => (&["uploadId"], &[]),
            Self::ListParts => (&["uploadId"], &["max-parts", "part-number-marker"]),
            Self::ListObjects => (
                &["prefix"],
                &["delimiter", "marker", "max-keys", "encoding-type"],
            ),
            Self::ListObjectsV2 => (
                &["list-type", "prefix"],
                &[
                    "delimiter",
                    "continuation-token",
                    "start-after",
                    "max-keys",
                    "encoding-type",
                    "fetch-owner",
                ],
            ),
            Self::DeleteObjects => (&["delete"], &[]),
        }
    }
}

/// S3 sub-resources, named as such when refused.
const SUB_RESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "select-type",
    "session",
    "tagging",
    "torrent",
    "uploads",
    "versioning",
    "versions",
    "website",
];

fn refused_parameter(name: &str, operation: Option<S3Operation>) -> CatalogError {
    let what = if SUB_RESOURCES.contains(&name) {
        "sub-resource"
    } else {
        "query parameter"
    };
    match operation {
        Some(op) => refused(format!(
            "{what} ?{} is not allowed on {}",
            shown(name),
            op.name()
        )),
        None => refused(format!(
            "{what} ?{} is not an operation of a table's client",
            shown(name)
        )),
    }
}

/// Which allowed operation a request is, from its method, whether it names
/// an object, and its query; anything else is refused naming the rule.
fn classify(method: &str, object: bool, query: &BTreeMap<String, String>) -> Result<S3Operation> {
    use S3Operation::*;
    let has = |name: &str| query.contains_key(name);
    let operation = match (method, object) {
        ("GET", true) if has("uploadId") => Some(ListParts),
        ("GET", true) => Some(GetObject),
        ("HEAD", true) => Some(HeadObject),
        ("PUT", true) if has("uploadId") || has("partNumber") => Some(UploadPart),
        ("PUT", true) => Some(PutObject),
        ("POST", true) if has("uploads") => Some(CreateMultipartUpload),
        ("POST", true) if has("uploadId") => Some(CompleteMultipartUpload),
        ("DELETE", true) if has("uploadId") => Some(AbortMultipartUpload),
        ("DELETE", true) => Some(DeleteObject),
        ("GET", false) if has("list-type") => Some(ListObjectsV2),
        ("GET", false) if has("prefix") => Some(ListObjects),
        ("POST", false) if has("delete") => Some(DeleteObjects),
        _ => None,
    };
    let Some(operation) = operation else {
        let allowed = |name: &str| {
            name == "x-id"
                || [
                    GetObject,
                    UploadPart,
                    CreateMultipartUpload,
                    ListParts,
                    ListObjects,
                    ListObjectsV2,
                    DeleteObjects,
                ]
                .iter()
                .any(|op| {
                    let (required, optional) = op.parameters();
                    required.contains(&name) || optional.contains(&name)
                })
        };
        if let Some(name) = query.keys().find(|name| !allowed(name)) {
            return Err(refused_parameter(name, None));
        }
        return Err(refused(match (method, object) {
            ("HEAD", false) => "HeadBucket is not an operation of a table's client".to_string(),
            (_, false) => format!(
                "{method} on the bucket is not an operation of a table's client (only listings with a prefix, and DeleteObjects)"
            ),
            (_, true) => format!(
                "{method} on an object is only allowed to create or complete a multipart upload"
            ),
        }));
    };
    let (required, optional) = operation.parameters();
    for name in query.keys() {
        if !(required.contains(&name.as_str()) || optional.contains(&name.as_str()))
            && name != "x-id"
        {
            return Err(refused_parameter(name, Some(operation)));
        }
    }
    if let Some(missing) = required.iter().find(|name| !has(name)) {
        return Err(refused(format!("{} needs ?{missing}", operation.name())));
    }
    for (name, value) in query {
        let digits = |max: usize| {
            !value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_digit())
        };
        let fine = match name.as_str() {
            "uploads" | "delete" => value.is_empty(),
            "partNumber" => {
                digits(5)
                    && value
                        .parse::<u32>()
                        .is_ok_and(|n| (1..=10_000).contains(&n))
            }
            "uploadId" | "versionId" | "continuation-token" => !value.is_empty(),
            "list-type" => value == "2",
            "max-keys" | "max-parts" | "part-number-marker" => digits(10),
            "fetch-owner" => value == "true" || value == "false",
            "encoding-type" => value == "url",
            "x-id" => value == operation.name(),
            _ => true,
        };
        if !fine {
            return Err(refused(format!(
                "the value of ?{name} is not allowed on {}",
                operation.name()
            )));
        }
    }
    Ok(operation)
}

/// `x-amz-*` headers signed as the client sent them; every other `x-amz-*`
/// header is refused (S3 requires every `x-amz-*` header to be signed, so a
/// client cannot add one the catalog did not sign).
const SIGNED_AMZ_HEADERS: &[&str] = &[
    "x-amz-content-sha256",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-storage-class",
    "x-amz-tagging",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-expected-bucket-owner",
    "x-amz-request-payer",
    "x-amz-user-agent",
    "x-amz-mp-object-size",
    "x-amz-optional-object-attributes",
];

/// Prefixes of allowed `x-amz-*` header families: checksums (and
/// `x-amz-checksum-mode`), server-side encryption, user metadata.
const SIGNED_AMZ_PREFIXES: &[&str] = &[
    "x-amz-checksum-",
    "x-amz-server-side-encryption",
    "x-amz-meta-",
];

/// Headers that name a second object (copies, renames): never signed.
const SECOND_OBJECT_HEADERS: &[&str] =
    &["x-amz-rename-source", "x-amz-source-expected-bucket-owner"];

/// What is done with one of the client's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderUse {
    /// Signed as sent.
    Sign,
    /// Not signed: changed by clients after signing, or set by the signer.
    Drop,
    /// `Host`: must be the uri's authority; the signer sets it.
    Host,
}

fn header_use(name: &str) -> Result<HeaderUse> {
    if UNSIGNED_HEADERS.contains(&name) || name == "x-amz-date" || name == "x-amz-security-token" {
        return Ok(HeaderUse::Drop);
    }
    if name == "host" {
        return Ok(HeaderUse::Host);
    }
    if name.starts_with("x-amz-copy-source") || SECOND_OBJECT_HEADERS.contains(&name) {
        return Err(refused(format!("header {name} names a second object")));
    }
    if name == "x-amz-acl" || name.starts_with("x-amz-grant-") {
        return Err(refused(format!("header {name} sets permissions")));
    }
    if name == "x-amz-website-redirect-location" {
        return Err(refused(format!(
            "header {name} redirects to another object"
        )));
    }
    if name.starts_with("x-amz-object-lock-") || name == "x-amz-bypass-governance-retention" {
        return Err(refused(format!("header {name} changes object retention")));
    }
    let vendor = ["x-amz-", "x-goog-", "x-minio-"]
        .iter()
        .any(|p| name.starts_with(p));
    let allowed = SIGNED_AMZ_HEADERS.contains(&name)
        || SIGNED_AMZ_PREFIXES.iter().any(|p| name.starts_with(p));
    if vendor && !allowed {
        return Err(refused(format!(
            "header {} is not on the signing allowlist",
            shown(name)
        )));
    }
    Ok(HeaderUse::Sign)
}

/// The client's headers to sign (lowercase names, values of one name joined
/// with commas as SigV4 canonicalizes them), after the header rules.
fn signed_headers(
    request: &RemoteSignRequest,
    uri: &http::Uri,
    operation: S3Operation,
) -> Result<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, values) in &request.headers {
        let name = name.to_ascii_lowercase();
        if !seen.insert(name.clone()) {
            return Err(refused(format!("header {} is given twice", shown(&name))));
        }
        let value = values.join(",");
        match header_use(&name)? {
            HeaderUse::Drop => {}
            HeaderUse::Host => {
                let authority = uri
                    .authority()
                    .map(http::uri::Authority::as_str)
                    .unwrap_or_default();
                if !value.eq_ignore_ascii_case(authority) {
                    return Err(refused("the Host header must be the uri's host"));
                }
            }
            HeaderUse::Sign => headers.push((name, value)),
        }
    }
    if let Some((_, hash)) = headers.iter().find(|(n, _)| n == "x-amz-content-sha256") {
        let hex_hash =
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let fine = hex_hash
            || (operation != S3Operation::DeleteObjects
                && (hash == "UNSIGNED-PAYLOAD" || hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"));
        if !fine {
            return Err(refused(format!(
                "x-amz-content-sha256 {} is not allowed on {} (chunk signatures are not made; \
                 DeleteObjects needs the body's SHA-256)",
                shown(hash),
                operation.name()
            )));
        }
    }
    Ok(headers)
}

/// DeleteObjects: every key of the body in the table, and the signature bound
/// to that body by its SHA-256 (`x-amz-content-sha256`, added when the
/// client did not send it), so S3 refuses any other body.
fn bind_delete_body(
    mut headers: Vec<(String, String)>,
    body: Option<&str>,
    table: &TableScope,
) -> Result<Vec<(String, String)>> {
    let body = body.ok_or_else(|| refused("DeleteObjects needs its body in the sign request"))?;
    let keys =
        delete_keys(body).map_err(|flaw| refused(format!("the DeleteObjects body {flaw}")))?;
    for key in &keys {
        table.object(key)?;
    }
    for (name, value) in &headers {
        let chunked = name == "content-encoding"
            && value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("aws-chunked"));
        if chunked || name == "x-amz-trailer" || name == "x-amz-decoded-content-length" {
            return Err(refused(format!(
                "header {name} is not allowed on DeleteObjects (its body must be sent as signed)"
            )));
        }
    }
    let hash = hex(&sha2::Sha256::digest(body.as_bytes()));
    match headers.iter().find(|(n, _)| n == "x-amz-content-sha256") {
        Some((_, sent)) if *sent != hash => {
            return Err(refused(
                "x-amz-content-sha256 is not the SHA-256 of the DeleteObjects body",
            ));
        }
        Some(_) => {}
        None => headers.push(("x-amz-content-sha256".to_string(), hash)),
    }
    Ok(headers)
}

/// Why a DeleteObjects body was refused; the text follows "the
/// DeleteObjects body" in the 403.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeleteBodyError {
    /// Not XML, or XML of another shape (with the parser's reason when it
    /// gave one).
    #[error("does not parse as a DeleteObjects request")]
    Malformed(#[source] Option<quick_xml::Error>),
    /// Declared in another encoding than UTF-8.
    #[error("is not UTF-8")]
    NotUtf8,
    /// An object names a version (`<VersionId>`).
    #[error("names an object version")]
    Version,
    /// A `<Key>` with nothing in it.
    #[error("has an empty key")]
    EmptyKey,
    /// No `<Key>` at all.
    #[error("names no key")]
    NoKey,
}

/// The `<Key>`s of a DeleteObjects body, read strictly: `<Delete>` holding
/// `<Object><Key>…</Key></Object>` elements and an optional `<Quiet>`, no
/// version ids, no DTD, comments or processing instructions, at least one key.
pub(super) fn delete_keys(body: &str) -> std::result::Result<Vec<String>, DeleteBodyError> {
    use quick_xml::events::Event;
    const BAD: DeleteBodyError = DeleteBodyError::Malformed(None);
    let unparsable = |e: quick_xml::Error| DeleteBodyError::Malformed(Some(e));
    let mut reader = quick_xml::Reader::from_str(body);
    let mut open: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    let mut key: Option<String> = None;
    let mut object_keys = 0usize;
    let mut rooted = false;
    loop {
        let event = reader.read_event().map_err(unparsable)?;
        let inside = open.last().map(String::as_str);
        match event {
            Event::Decl(decl) if !rooted && open.is_empty() => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| unparsable(e.into()))?;
                    if !encoding.eq_ignore_ascii_case("utf-8") {
                        return Err(DeleteBodyError::NotUtf8);
                    }
                }
            }
            Event::Start(element) => {
                let name = element.name().as_ref().to_string();
                let allowed = match (open.len(), inside, name.as_str()) {
                    (0, None, "Delete") => !rooted,
                    (1, Some("Delete"), "Object" | "Quiet") => true,
                    (2, Some("Object"), "Key") => key.is_none() && object_keys == 0,
                    (2, Some("Object"), "VersionId") => return Err(DeleteBodyError::Version),
                    _ => false,
                };
                if !allowed {
                    return Err(BAD);
                }
                for attribute in element.attributes() {
                    let attribute = attribute.map_err(|e| unparsable(e.into()))?;
                    let attribute = attribute.key.as_ref();
                    if name != "Delete"
                        || !(attribute == "xmlns" || attribute.starts_with("xmlns:"))
                    {
                        return Err(BAD);
                    }
                }
                match name.as_str() {
                    "Delete" => rooted = true,
                    "Object" => object_keys = 0,
                    "Key" => key = Some(String::new()),
                    _ => {}
                }
                open.push(name);
            }
            Event::End(_) => match open.pop().as_deref() {
                Some("Key") => {
                    let done = key.take().ok_or(BAD)?;
                    if done.is_empty() {
                        return Err(DeleteBodyError::EmptyKey);
                    }
                    keys.push(done);
                    object_keys += 1;
                }
                Some("Object") if object_keys != 1 => return Err(BAD),
                _ => {}
            },
            Event::Text(text) => match (inside, key.as_mut()) {
                (Some("Key"), Some(key)) => key.push_str(&text),
                (Some("Quiet"), _) if matches!(text.trim(), "true" | "false") => {}
                _ if text.trim().is_empty() => {}
                _ => return Err(BAD),
            },
            Event::GeneralRef(reference) => {
                let (Some("Key"), Some(key)) = (inside, key.as_mut()) else {
                    return Err(BAD);
                };
                match reference.resolve_char_ref().map_err(unparsable)? {
                    Some(c) => key.push(c),
                    None => key.push_str(
                        quick_xml::escape::resolve_predefined_entity(&reference).ok_or(BAD)?,
                    ),
                }
            }
            Event::CData(data) => {
                let (Some("Key"), Some(key)) = (inside, key.as_mut()) else {
                    return Err(BAD);
                };
                key.push_str(&data);
            }
            Event::Eof => break,
            _ => return Err(BAD),
        }
    }
    if !rooted || !open.is_empty() {
        return Err(BAD);
    }
    if keys.is_empty() {
        return Err(DeleteBodyError::NoKey);
    }
    Ok(keys)
}
