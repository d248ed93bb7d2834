//! Tokens of an external OpenID Connect issuer, verified against its JWKS
//! (from a file, or from a URL re-read periodically). RSA, ECDSA and EdDSA
//! keys are accepted; symmetric algorithms and `none` never are.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

use crate::auth::OidcConfig;

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
    pub fn new(issuer: &str, audience: &str, jwks: &str) -> Result<Self, String> {
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err(
                "OpenID Connect needs both auth.oidc.issuer and auth.oidc.audience".to_string(),
            );
        }
        Ok(Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            keys: RwLock::new(parse(jwks)?),
        })
    }

    /// Replaces the keys (a JWKS refresh).
    pub fn replace_keys(&self, jwks: &str) -> Result<(), String> {
        let set = parse(jwks)?;
        if let Ok(mut keys) = self.keys.write() {
            *keys = set;
        }
        Ok(())
    }

    /// Verifies signature, issuer, audience and expiry; returns `sub` and
    /// `iat` (0 when absent).
    pub fn verify(&self, token: &str) -> Result<(String, u64), String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.ok_or("token has no key id")?;
        let key = {
            let keys = self.keys.read().map_err(|_| "key set unavailable")?;
            let jwk = keys.find(&kid).ok_or("unknown key id")?;
            DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key {kid}: {e}"))?
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("token refused: {e}"))?;
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
            .ok_or_else(|| "token has no subject".to_string())
    }
}

fn parse(jwks: &str) -> Result<JwkSet, String> {
    serde_json::from_str(jwks).map_err(|e| format!("not a JWKS document: {e}"))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response.text().await.map_err(|e| e.to_string())
}

/// Builds the verifier of `config` (none when no issuer is configured):
/// reads the JWKS file, or fetches the URL once. With a URL, run
/// [`refresh_loop`] beside it.
pub async fn load(config: &OidcConfig) -> Result<Option<Arc<OidcVerifier>>, String> {
    if config.issuer.is_empty() {
        return Ok(None);
    }
    if config.audience.trim().is_empty() {
        return Err(format!(
            "auth.oidc.audience is required with auth.oidc.issuer ({})",
            config.issuer
        ));
    }
    let jwks = if !config.jwks_file.is_empty() {
        std::fs::read_to_string(&config.jwks_file)
            .map_err(|e| format!("cannot read {}: {e}", config.jwks_file))?
    } else if !config.jwks_url.is_empty() {
        fetch(&client()?, &config.jwks_url).await?
    } else {
        return Err("auth.oidc needs jwks_file or jwks_url".into());
    };
    OidcVerifier::new(&config.issuer, &config.audience, &jwks).map(|v| Some(Arc::new(v)))
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
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
                tracing::warn!(url = %config.jwks_url, error = %e, "JWKS refresh failed; keeping the previous keys")
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
        assert!(err.contains("audience"), "{err}");
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
