//! The `auth` section both tiers read (keys, the external issuer, rate
//! limits, cache lifetimes), its checks, and the token signer and verifier
//! built from it.

use serde::{Deserialize, Serialize};

use super::keys::{KeyError, load_signing_key, load_verifying_key};
use crate::token::{TokenSigner, TokenVerifier};

/// A key named by id, read from a PEM file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyFile {
    /// Key id (`kid` in token headers).
    pub kid: String,
    /// PEM file: an Ed25519 PKCS#8 private key, or (verification only) its
    /// SubjectPublicKeyInfo public key.
    pub path: String,
}

/// An external OpenID Connect issuer whose tokens are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OidcConfig {
    /// Expected `iss`; empty disables OpenID Connect.
    pub issuer: String,
    /// Expected `aud`: required with an issuer (start-up refuses an issuer
    /// without one, so tokens the issuer minted for other applications are
    /// never accepted).
    pub audience: String,
    /// JWKS file with the issuer's keys.
    pub jwks_file: String,
    /// JWKS URL (read at start-up and every `jwks_refresh_seconds`).
    pub jwks_url: String,
    /// Seconds between JWKS refreshes from the URL.
    pub jwks_refresh_seconds: u64,
    /// The web console's client id at the issuer (edge only): a public
    /// client allowed the authorization-code flow with PKCE and the redirect
    /// URI `<edge address>/ui/`. Empty: the console offers no OpenID Connect
    /// sign-in.
    pub console_client_id: String,
}

impl OidcConfig {
    /// The issuer's origin (`scheme://host[:port]`) when the console signs
    /// in through it: the page may call that origin (discovery, token
    /// endpoint) and nothing else outside the edge.
    pub fn console_origin(&self) -> Option<String> {
        if self.console_client_id.is_empty() {
            return None;
        }
        let url = reqwest::Url::parse(&self.issuer).ok()?;
        matches!(url.scheme(), "https" | "http")
            .then(|| url.origin().ascii_serialization())
            .filter(|origin| origin != "null")
    }
}

/// Limits on failed credentials: after this many failed attempts within a
/// minute, further token requests for that client id *from that address*
/// (or anything from that address) get 429.
///
/// There is deliberately no limit per client id alone: it would let anyone,
/// from anywhere, lock a known client out. Secrets and API keys are 256-bit
/// random values Floe generates, so spreading guesses over many addresses
/// gains an attacker nothing but argon2 work, which runs on at most one
/// blocking thread per core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Failed attempts per client id from one source address per minute.
    pub failures_per_client_per_minute: u32,
    /// Failed attempts per source address per minute (any client ids, API keys).
    pub failures_per_address_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            failures_per_client_per_minute: 10,
            failures_per_address_per_minute: 30,
        }
    }
}

/// The `auth` section both tiers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Require authentication. Off only for local use: start-up then warns.
    pub enabled: bool,
    /// `iss` of issued tokens (and required of verified ones).
    pub issuer: String,
    /// Lifetime of issued tokens.
    pub token_ttl_seconds: u64,
    /// The key tokens are signed with (edge); its public half also verifies.
    pub signing_key: KeyFile,
    /// More verification keys (the previous key during a rotation).
    pub verification_keys: Vec<KeyFile>,
    /// How long a principal record is cached (edge and origin). Change
    /// events drop it sooner; this bounds staleness when they are lost.
    pub principal_cache_seconds: u64,
    /// How long a verified client secret or API key is remembered, so
    /// repeated issuance skips argon2. Dropped on the principal's change event.
    pub credential_cache_seconds: u64,
    /// Token endpoint limits.
    pub rate_limit: RateLimitConfig,
    /// External OpenID Connect issuer.
    pub oidc: OidcConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: "floe".into(),
            token_ttl_seconds: 3600,
            signing_key: KeyFile::default(),
            verification_keys: Vec::new(),
            principal_cache_seconds: 30,
            credential_cache_seconds: 300,
            rate_limit: RateLimitConfig::default(),
            oidc: OidcConfig {
                jwks_refresh_seconds: 300,
                ..OidcConfig::default()
            },
        }
    }
}

/// Why the `auth` section was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// An OpenID Connect issuer without an audience (the issuer is named).
    #[error(
        "auth.oidc.audience is required with auth.oidc.issuer ({0}): without it, tokens \
         that issuer minted for any other application would be accepted here"
    )]
    MissingAudience(String),
    /// The console's OpenID Connect sign-in without an HTTP(S) issuer URL.
    #[error(
        "auth.oidc.console_client_id needs auth.oidc.issuer to be the issuer's https:// URL \
         (discovery is read from <issuer>/.well-known/openid-configuration), got {0:?}"
    )]
    ConsoleWithoutIssuerUrl(String),
    /// `auth.token_ttl_seconds` is 0.
    #[error("auth.token_ttl_seconds must be positive")]
    ZeroTokenTtl,
    /// A tier that issues tokens has no signing key.
    #[error("auth.signing_key.path is required when auth is enabled")]
    NoSigningKey,
    /// Nothing could verify a token.
    #[error(
        "auth is enabled but no key (auth.signing_key, auth.verification_keys) or OpenID \
         Connect issuer is configured"
    )]
    NoVerifier,
    /// A key file could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl AuthConfig {
    /// Checks the section and loads its keys; `signing` when this tier issues tokens.
    pub fn validate(&self, signing: bool) -> Result<(), AuthConfigError> {
        if !self.oidc.issuer.is_empty() && self.oidc.audience.trim().is_empty() {
            return Err(AuthConfigError::MissingAudience(self.oidc.issuer.clone()));
        }
        if !self.oidc.console_client_id.is_empty() && self.oidc.console_origin().is_none() {
            return Err(AuthConfigError::ConsoleWithoutIssuerUrl(
                self.oidc.issuer.clone(),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.token_ttl_seconds == 0 {
            return Err(AuthConfigError::ZeroTokenTtl);
        }
        if signing && self.signing_key.path.is_empty() {
            return Err(AuthConfigError::NoSigningKey);
        }
        self.verifier().map(|_| ())
    }

    /// The signer of the configured signing key.
    pub fn signer(&self) -> Result<TokenSigner, KeyError> {
        let key = load_signing_key(&self.signing_key.path)?;
        Ok(TokenSigner::from_key(key, &self.kid(&self.signing_key)))
    }

    fn kid(&self, key: &KeyFile) -> String {
        if key.kid.is_empty() {
            "default".into()
        } else {
            key.kid.clone()
        }
    }

    /// A verifier of every configured key (signing key first).
    pub fn verifier(&self) -> Result<TokenVerifier, AuthConfigError> {
        let mut verifier = TokenVerifier::default();
        for key in std::iter::once(&self.signing_key).chain(&self.verification_keys) {
            if key.path.is_empty() {
                continue;
            }
            verifier = verifier.with_key(&self.kid(key), load_verifying_key(&key.path)?);
        }
        if verifier.is_empty() && self.oidc.issuer.is_empty() {
            return Err(AuthConfigError::NoVerifier);
        }
        Ok(verifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consoles_sign_in_needs_an_issuer_url() {
        let mut config = AuthConfig::default();
        config.oidc.console_client_id = "floe-console".into();
        for issuer in ["", "floe-idp", "ftp://idp.example", "file:///idp"] {
            config.oidc.issuer = issuer.into();
            config.oidc.audience = "floe".into();
            let err = config.validate(false).unwrap_err();
            assert!(
                matches!(&err, AuthConfigError::ConsoleWithoutIssuerUrl(i) if i == issuer),
                "{issuer}: {err}"
            );
        }
        config.oidc.issuer = "https://login.example:8443/realms/floe".into();
        assert!(config.validate(false).is_ok());
        assert_eq!(
            config.oidc.console_origin().as_deref(),
            Some("https://login.example:8443")
        );
        config.oidc.console_client_id.clear();
        assert_eq!(config.oidc.console_origin(), None);
    }

    #[test]
    fn an_openid_connect_issuer_needs_an_audience() {
        let mut config = AuthConfig::default();
        config.oidc.issuer = "https://idp.example".into();
        config.oidc.jwks_file = "/nonexistent".into();
        let err = config.validate(false).unwrap_err();
        assert!(
            matches!(&err, AuthConfigError::MissingAudience(issuer) if issuer == "https://idp.example"),
            "{err}"
        );
        assert!(
            err.to_string().contains("auth.oidc.audience is required"),
            "{err}"
        );
        config.enabled = true;
        let err = config.validate(true).unwrap_err();
        assert!(matches!(err, AuthConfigError::MissingAudience(_)), "{err}");
        config.oidc.audience = "floe".into();
        config.enabled = false;
        assert!(config.validate(false).is_ok());
    }
}
