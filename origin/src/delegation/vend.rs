//! Vended credentials: a fixed key pair, or short-lived STS credentials whose
//! session policy covers one table's location.

use std::time::Duration;

use bytes::Bytes;
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context, SignRequest};
use serde::Deserialize;
use sha2::Digest;

use super::{Delegator, StorageAccess, StorageCredential, hex, now_ms, split_s3};
use crate::config::VendedMode;
use crate::error::{CatalogError, Result};

/// Vended credentials are reused while at least this much of their life is left.
const REUSE_MARGIN: Duration = Duration::from_secs(300);

/// The session policy of vended STS credentials: the table's objects, and
/// listing under its prefix.
pub(super) fn session_policy(bucket: &str, prefix: &str, access: StorageAccess) -> String {
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
pub(super) struct AssumeRoleResponse {
    pub(super) assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AssumeRoleResult {
    pub(super) credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StsCredentials {
    pub(super) access_key_id: String,
    pub(super) secret_access_key: String,
    pub(super) session_token: String,
    pub(super) expiration: String,
}

/// Milliseconds since the epoch of an STS `Expiration` (RFC 3339, UTC).
pub(super) fn parse_expiration(text: &str) -> Option<u64> {
    let ts: reqsign_core::time::Timestamp = text.trim().parse().ok()?;
    Some(ts.as_second().max(0) as u64 * 1000)
}

impl Delegator {
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
            CatalogError::unavailable(
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
            .map_err(|e| CatalogError::internal_with(format!("STS request: {e}"), e))?;
        let (mut parts, ()) = request.into_parts();
        RequestSigner::new("sts", &self.region)
            .sign_request(&Context::new(), &mut parts, Some(own), None)
            .await
            .map_err(|e| {
                CatalogError::unavailable_with(format!("Cannot sign the STS request: {e}"), e)
            })?;
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
            .map_err(|e| CatalogError::unavailable_with(format!("STS is unreachable: {e}"), e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            CatalogError::unavailable_with(format!("STS answer unreadable: {e}"), e)
        })?;
        if !status.is_success() {
            tracing::warn!(%status, role, "STS refused AssumeRole");
            return Err(CatalogError::unavailable(format!(
                "STS refused to vend credentials ({status})"
            )));
        }
        let parsed: AssumeRoleResponse = quick_xml::de::from_str(&text).map_err(|e| {
            CatalogError::unavailable_with(format!("STS answer not understood: {e}"), e)
        })?;
        let c = parsed.assume_role_result.credentials;
        let expires = parse_expiration(&c.expiration).ok_or_else(|| {
            CatalogError::unavailable(format!("STS expiration not understood: {}", c.expiration))
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
}
