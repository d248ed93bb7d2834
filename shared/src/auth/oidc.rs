//! Tokens of an external OpenID Connect issuer, verified against its JWKS
//! (from a file, or from a URL re-read periodically). RSA, ECDSA and EdDSA
//! keys are accepted; symmetric algorithms and `none` never are.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

use super::OidcConfig;

/// Why a token of the external issuer was refused. The text goes to the
/// client after `Invalid bearer token: `.
#[derive(Debug, thiserror::Error)]
pub enum OidcTokenError {
    /// The header could not be read.
    #[error("malformed token: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// A symmetric algorithm, `none`, or one Floe does not accept.
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// The header names no key.
    #[error("token has no key id")]
    NoKeyId,
    /// The key set's lock was poisoned.
    #[error("key set unavailable")]
    KeySetUnavailable,
    /// The key set has no key of that id.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The key of that id cannot verify.
    #[error("unusable key {kid}: {source}")]
    UnusableKey {
        /// The key id.
        kid: String,
        /// What reading the key said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// Signature, issuer, audience or expiry refused.
    #[error("token refused: {0}")]
    Refused(#[source] jsonwebtoken::errors::Error),
    /// No `sub`, or an empty one.
    #[error("token has no subject")]
    NoSubject,
}

/// Why the issuer's key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// An issuer without an audience, or the reverse.
    #[error("OpenID Connect needs both auth.oidc.issuer and auth.oidc.audience")]
    IssuerAndAudience,
    /// `auth.oidc.issuer` is set and `auth.oidc.audience` is not (the issuer is named).
    #[error("auth.oidc.audience is required with auth.oidc.issuer ({0})")]
    MissingAudience(String),
    /// Neither `jwks_file` nor `jwks_url`.
    #[error("auth.oidc needs jwks_file or jwks_url")]
    NoSource,
    /// The JWKS file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built, or the request failed.
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    /// The URL answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The JWKS URL.
        url: String,
        /// Its answer.
        status: reqwest::StatusCode,
    },
    /// The document is no JWKS.
    #[error("not a JWKS document: {0}")]
    Document(#[source] serde_json::Error),
}

/// Verifies the external issuer's tokens.
#[derive(Debug)]
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    keys: RwLock<JwkSet>,
}

const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl OidcVerifier {
    /// A verifier with the keys of `jwks` (JSON). The audience is required:
    /// an issuer's tokens for other applications are never accepted.
    pub fn new(issuer: &str, audience: &str, jwks: &str) -> Result<Self, JwksError> {
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err(JwksError::IssuerAndAudience);
        }
        Ok(Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            keys: RwLock::new(parse(jwks)?),
        })
    }

    /// Replaces the keys (a JWKS refresh).
    pub fn replace_keys(&self, jwks: &str) -> Result<(), JwksError> {
        let set = parse(jwks)?;
        if let Ok(mut keys) = self.keys.write() {
            *keys = set;
        }
        Ok(())
    }

    /// Verifies signature, issuer, audience and expiry; returns `sub` and
    /// `iat` (0 when absent).
    pub fn verify(&self, token: &str) -> Result<(String, u64), OidcTokenError> {
        let header = decode_header(token).map_err(OidcTokenError::Malformed)?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(OidcTokenError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or(OidcTokenError::NoKeyId)?;
        let key = {
            let keys = self
                .keys
                .read()
                .map_err(|_| OidcTokenError::KeySetUnavailable)?;
            let jwk = keys.find(&kid).ok_or(OidcTokenError::UnknownKeyId)?;
            DecodingKey::from_jwk(jwk)
                .map_err(|source| OidcTokenError::UnusableKey { kid, source })?
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = decode::<serde_json::Value>(token, &key, &validation)
            .map_err(OidcTokenError::Refused)?;
        let iat = data
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        data.claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| (s.to_string(), iat))
            .ok_or(OidcTokenError::NoSubject)
    }
}

fn parse(jwks: &str) -> Result<JwkSet, JwksError> {
    serde_json::from_str(jwks).map_err(JwksError::Document)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, JwksError> {
    let response = client.get(url).send().await.map_err(JwksError::Http)?;
    if !response.status().is_success() {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    response.text().await.map_err(JwksError::Http)
}

/// Builds the verifier of `config` (none when no issuer is configured):
/// reads the JWKS file, or fetches the URL once. With a URL, run
/// [`refresh_loop`] beside it.
pub async fn load(config: &OidcConfig) -> Result<Option<Arc<OidcVerifier>>, JwksError> {
    if config.issuer.is_empty() {
        return Ok(None);
    }
    if config.audience.trim().is_empty() {
        return Err(JwksError::MissingAudience(config.issuer.clone()));
    }
    let jwks = if !config.jwks_file.is_empty() {
        std::fs::read_to_string(&config.jwks_file).map_err(|source| JwksError::Read {
            path: config.jwks_file.clone(),
            source,
        })?
    } else if !config.jwks_url.is_empty() {
        fetch(&client()?, &config.jwks_url).await?
    } else {
        return Err(JwksError::NoSource);
    };
    OidcVerifier::new(&config.issuer, &config.audience, &jwks).map(|v| Some(Arc::new(v)))
}

fn client() -> Result<reqwest::Client, JwksError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(JwksError::Http)
}

/// Re-reads the JWKS URL every `jwks_refresh_seconds`, keeping the previous
/// keys when a read fails; returns at once without a URL.
pub async fn refresh_loop(verifier: Arc<OidcVerifier>, config: OidcConfig) {
    if config.jwks_url.is_empty() || !config.jwks_file.is_empty() {
        return;
    }
    let Ok(client) = client() else { return };
    let refresh = Duration::from_secs(config.jwks_refresh_seconds.max(1));
    loop {
        tokio::time::sleep(refresh).await;
        match fetch(&client, &config.jwks_url)
            .await
            .and_then(|j| verifier.replace_keys(&j))
        {
            Ok(()) => tracing::debug!(url = %config.jwks_url, "JWKS refreshed"),
            Err(e) => {
                tracing::warn!(url = %config.jwks_url, error = %e, "JWKS refresh failed; keeping the previous keys");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_without_an_audience_is_refused() {
        let jwks = r#"{"keys": []}"#;
        assert!(OidcVerifier::new("https://idp.example", "", jwks).is_err());
        assert!(OidcVerifier::new("https://idp.example", "  ", jwks).is_err());
        assert!(OidcVerifier::new("https://idp.example", "floe", jwks).is_ok());
        let config = OidcConfig {
            issuer: "https://idp.example".into(),
            jwks_file: "/nonexistent".into(),
            ..OidcConfig::default()
        };
        let err = block_on(load(&config)).unwrap_err();
        assert!(matches!(err, JwksError::MissingAudience(_)), "{err}");
        assert!(err.to_string().contains("audience"), "{err}");
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
