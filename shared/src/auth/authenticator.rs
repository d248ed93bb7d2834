//! Verifying bearer credentials: what an `Authorization` header says (a
//! Floe token, a token of the external OpenID Connect issuer, an API key),
//! and whether the principal's state still accepts it. Also the edge's
//! service token for the origin's internal API.

use super::config::{AuthConfig, AuthConfigError};
use super::model::Principal;
use super::secrets::{parse_api_key, secret_digest};
use crate::expiring::ExpiringMap;
use crate::token::{Claims, TokenError, TokenVerifier};

/// Scope of the tokens an edge signs for itself to call the origin's internal API.
pub const INTERNAL_SCOPE: &str = "floe:internal";
/// Subject of those service tokens; no client may take this name.
pub const EDGE_SUBJECT: &str = "floe-edge";
/// The value of `WWW-Authenticate` on a 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"floe\"";
/// The value of `WWW-Authenticate` on a 401 for a presented but refused token.
pub const WWW_AUTHENTICATE_INVALID: &str = "Bearer realm=\"floe\", error=\"invalid_token\"";

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who a bearer credential says it is (before the principal is looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A Floe token (shared with the verified-token cache).
    Token(std::sync::Arc<Claims>),
    /// A token of the external OpenID Connect issuer; the principal is the subject.
    External {
        /// `sub`.
        subject: String,
        /// `iat` (0 when absent).
        iat: u64,
    },
    /// An API key.
    ApiKey {
        /// Key id.
        id: String,
        /// Secret part.
        secret: String,
    },
}

/// Why a credential was refused (a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Authentication required: send an Authorization: Bearer token")]
    Missing,
    /// The token was refused.
    #[error("Invalid bearer token: {0}")]
    Invalid(String),
    /// The principal is unknown, disabled or the token revoked.
    #[error("Credentials revoked or unknown")]
    Revoked,
}

impl AuthError {
    /// Whether a credential was presented (the 401 then says `invalid_token`).
    pub fn presented(&self) -> bool {
        !matches!(self, AuthError::Missing)
    }
}

/// Verifies bearer credentials: Floe's tokens, the external issuer's, API keys.
///
/// A Floe token whose signature verified is remembered (by its SHA-256, with
/// its claims) for `credential_cache_seconds` and never past its expiry, so
/// a client's repeated requests cost a hash instead of an Ed25519 check.
#[derive(Clone)]
pub struct Authenticator {
    issuer: String,
    tokens: TokenVerifier,
    oidc: Option<std::sync::Arc<super::oidc::OidcVerifier>>,
    /// SHA-256 of a verified token → its claims.
    verified: std::sync::Arc<ExpiringMap<std::sync::Arc<Claims>, [u8; 32]>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// From configuration (keys read now; the JWKS handle is filled by the caller).
    pub fn new(
        config: &AuthConfig,
        oidc: Option<std::sync::Arc<super::oidc::OidcVerifier>>,
    ) -> Result<Self, AuthConfigError> {
        Ok(Self::from_parts(
            &config.issuer,
            config.verifier()?,
            oidc,
            config.credential_cache_seconds,
        ))
    }

    /// From its parts: the issuer, the verification keys, the external
    /// issuer and how long a verified token is remembered.
    pub fn from_parts(
        issuer: &str,
        tokens: TokenVerifier,
        oidc: Option<std::sync::Arc<super::oidc::OidcVerifier>>,
        credential_cache_seconds: u64,
    ) -> Self {
        Self {
            issuer: issuer.to_string(),
            tokens,
            oidc,
            verified: std::sync::Arc::new(ExpiringMap::new(
                std::time::Duration::from_secs(credential_cache_seconds),
                100_000,
            )),
        }
    }

    /// What the `Authorization` header value says, checked cryptographically
    /// (the principal's state is checked by the caller).
    pub fn identify(&self, header: Option<&str>, now: u64) -> Result<Identity, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let credential = bearer(header)
            .ok_or_else(|| AuthError::Invalid("expected the Bearer scheme".into()))?;
        if let Some((id, secret)) = parse_api_key(credential) {
            return Ok(Identity::ApiKey {
                id: id.to_string(),
                secret: secret.to_string(),
            });
        }
        let digest = secret_digest(credential);
        if let Some(claims) = self.verified.get(&digest)
            && claims.exp > now
        {
            return Ok(Identity::Token(claims));
        }
        match self.tokens.verify(credential, now) {
            Ok(claims) if claims.iss == self.issuer => {
                let claims = std::sync::Arc::new(claims);
                self.verified.insert(digest, claims.clone());
                Ok(Identity::Token(claims))
            }
            Ok(_) => Err(AuthError::Invalid("wrong issuer".into())),
            Err(TokenError::UnsupportedHeader) if self.oidc.is_some() => {
                let oidc = self.oidc.as_ref().ok_or(AuthError::Missing)?;
                oidc.verify(credential)
                    .map(|(subject, iat)| Identity::External { subject, iat })
                    .map_err(|e| AuthError::Invalid(e.to_string()))
            }
            Err(e) => Err(AuthError::Invalid(e.to_string())),
        }
    }

    /// Checks a Floe token of `principal` against its state: refused when the
    /// principal is disabled, or the token was minted from a record of an
    /// older credential generation (rotation, disabling, revocation since).
    /// Tokens without a generation (earlier releases) are judged by `iat`.
    pub fn check_token(principal: &Principal, claims: &Claims) -> Result<(), AuthError> {
        let revoked = principal.disabled
            || claims.generation < principal.generation
            || (claims.generation == 0 && claims.iat < principal.not_before);
        if revoked {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Checks a token of the external issuer against the principal's state.
    /// Its `iat` has one-second resolution, so a token issued in the second
    /// of a revocation is refused too (as are tokens without `iat`, once the
    /// principal has been revoked at all).
    pub fn check_external(principal: &Principal, iat: u64) -> Result<(), AuthError> {
        if principal.disabled || (principal.not_before > 0 && iat <= principal.not_before) {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Checks the principal an API key acts as (the key itself was checked).
    pub fn check_key_holder(principal: &Principal) -> Result<(), AuthError> {
        if principal.disabled {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }
}

/// The edge's service token for the origin's internal API.
pub fn service_claims(issuer: &str, now: u64, ttl: u64) -> Claims {
    Claims {
        iss: issuer.to_string(),
        sub: EDGE_SUBJECT.to_string(),
        iat: now,
        exp: now + ttl,
        jti: String::new(),
        scope: INTERNAL_SCOPE.to_string(),
        generation: 0,
    }
}

/// Seconds since the epoch (token `iat` / `exp` time).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::noise::Noise;
    use super::super::oauth::CATALOG_SCOPE;
    use super::*;
    use crate::token::TokenSigner;

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn generations_revoke_tokens_without_a_clock() {
        let mut principal = Principal {
            id: "etl".into(),
            disabled: false,
            not_before: 1_000,
            generation: 3,
            grants: Vec::new(),
            secret_hash: None,
            default_warehouse: String::new(),
        };
        let token = |iat: u64, generation: u64| Claims {
            iss: "floe".into(),
            sub: "etl".into(),
            iat,
            exp: iat + 60,
            jti: String::new(),
            scope: CATALOG_SCOPE.into(),
            generation,
        };
        assert!(Authenticator::check_token(&principal, &token(1_000, 3)).is_ok());
        assert!(Authenticator::check_token(&principal, &token(999, 4)).is_ok());
        assert_eq!(
            Authenticator::check_token(&principal, &token(1_000, 2)),
            Err(AuthError::Revoked),
            "minted in the revocation's own second from the older record"
        );
        assert_eq!(
            Authenticator::check_token(&principal, &token(5_000, 2)),
            Err(AuthError::Revoked),
            "minted long after, by a tier that still had the older record"
        );
        principal.generation = 0;
        assert!(Authenticator::check_token(&principal, &token(999, 0)).is_err());
        assert!(Authenticator::check_token(&principal, &token(1_000, 0)).is_ok());
        assert!(Authenticator::check_external(&principal, 1_000).is_err());
        assert!(Authenticator::check_external(&principal, 1_001).is_ok());
        principal.not_before = 0;
        assert!(
            Authenticator::check_external(&principal, 0).is_ok(),
            "never revoked"
        );
        principal.disabled = true;
        assert!(Authenticator::check_token(&principal, &token(9_999, 9)).is_err());
        assert!(Authenticator::check_key_holder(&principal).is_err());
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let signer = TokenSigner::from_seed(&[3u8; 32], "k");
        let authenticator = Authenticator {
            issuer: "floe".into(),
            tokens: signer.verifier(),
            oidc: None,
            verified: std::sync::Arc::new(ExpiringMap::new(
                std::time::Duration::from_secs(60),
                1000,
            )),
        };
        let good = String::from_utf8(
            signer
                .issue(&service_claims("floe", 100, 1000))
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(
            authenticator
                .identify(Some(&format!("Bearer {good}")), 200)
                .is_ok()
        );
        let token_alphabet = b"eyJhbGciOiJFZERTQSJ9.-_ABCxyz012=+/\xc3\xa9";
        for i in 0..20_000 {
            let mut candidate = noise.bytes(token_alphabet, 200);
            if i % 2 == 0 {
                // Flip one byte of a valid token.
                candidate = good.clone().into_bytes();
                let at = (noise.next() as usize) % candidate.len();
                candidate[at] = token_alphabet[(noise.next() as usize) % token_alphabet.len()];
                if candidate == good.as_bytes() {
                    continue;
                }
            }
            let header = format!("Bearer {}", String::from_utf8_lossy(&candidate));
            assert!(
                authenticator.identify(Some(&header), 200).is_err(),
                "accepted {header}"
            );
        }
    }
}
