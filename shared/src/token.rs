//! Access tokens: compact JWS (JWT) signed with Ed25519 (`alg: EdDSA`),
//! self-contained so every edge and origin verifies them without a round trip.
//!
//! Issuance builds the token in pooled byte buffers: the random `jti`, the
//! claims JSON and its base64url form all live in scratch borrowed from the
//! token [`BufferPool`], and the token itself is written into one more pooled
//! buffer handed over without a copy.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::pool::{BufferPool, PooledBuf};

/// Claims Floe puts in (and requires of) its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the principal (OAuth2 client id).
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Unique token id (base64url of 16 random bytes); filled at issuance when empty.
    #[serde(default)]
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The credential generation of the principal record the token was
    /// minted from (claim `gen`): a token is revoked once its principal's
    /// generation has moved past it (rotation, disabling, revocation). An
    /// exchanged token keeps the generation of the token it replaced.
    /// Tokens of earlier releases have none (0).
    #[serde(default, rename = "gen")]
    pub generation: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or undecodable JSON.
    #[error("malformed token")]
    Malformed,
    /// Header names another algorithm or an unknown key.
    #[error("unsupported token header")]
    UnsupportedHeader,
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// The random source failed.
    #[error("no randomness available")]
    Randomness,
    /// Serialization failed.
    #[error("token encoding failed")]
    Encoding,
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    alg: &'a str,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
    #[serde(default, borrow)]
    kid: Option<&'a str>,
}

/// Signs tokens with one Ed25519 key.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    kid: String,
    /// base64url of the header, computed once.
    encoded_header: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer from a 32-byte Ed25519 seed and its key id.
    pub fn from_seed(seed: &[u8; 32], kid: &str) -> Self {
        Self::from_key(SigningKey::from_bytes(seed), kid)
    }

    /// A signer from an Ed25519 key and its key id.
    pub fn from_key(key: SigningKey, kid: &str) -> Self {
        let header = serde_json::to_vec(&Header {
            alg: "EdDSA",
            typ: Some("JWT"),
            kid: Some(kid),
        })
        .unwrap_or_default();
        Self {
            key,
            kid: kid.to_string(),
            encoded_header: URL_SAFE_NO_PAD.encode(header),
        }
    }

    /// The key that verifies this signer's tokens.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier {
            keys: vec![(self.kid.clone(), self.key.verifying_key())],
        }
    }

    /// Issues a token with buffers from `pool`.
    pub fn issue_pooled(&self, claims: &Claims, pool: &BufferPool) -> Result<Bytes, TokenError> {
        let mut scratch = pool.borrow(512);
        let mut out = pool.borrow(1024);
        self.write(claims, &mut scratch, &mut out)?;
        drop(scratch);
        Ok(PooledBuf::into_bytes(out))
    }

    /// Issues a token with freshly allocated buffers.
    pub fn issue(&self, claims: &Claims) -> Result<Bytes, TokenError> {
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        self.write(claims, &mut scratch, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// `header.claims.signature` into `out`, with `scratch` for the JSON.
    fn write(
        &self,
        claims: &Claims,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TokenError> {
        scratch.clear();
        out.clear();
        let mut random = [0u8; 16];
        let mut jti = [0u8; 22];
        let jti: &str = if claims.jti.is_empty() {
            getrandom::fill(&mut random).map_err(|_| TokenError::Randomness)?;
            let n = URL_SAFE_NO_PAD
                .encode_slice(random, &mut jti)
                .map_err(|_| TokenError::Encoding)?;
            std::str::from_utf8(&jti[..n]).map_err(|_| TokenError::Encoding)?
        } else {
            &claims.jti
        };
        serde_json::to_writer(
            &mut *scratch,
            &ClaimsRef {
                iss: &claims.iss,
                sub: &claims.sub,
                iat: claims.iat,
                exp: claims.exp,
                jti,
                scope: &claims.scope,
                generation: claims.generation,
            },
        )
        .map_err(|_| TokenError::Encoding)?;
        out.extend_from_slice(self.encoded_header.as_bytes());
        out.push(b'.');
        append_base64(out, scratch);
        let signature = self.key.sign(out);
        out.push(b'.');
        append_base64(out, &signature.to_bytes());
        Ok(())
    }
}

#[derive(Serialize)]
struct ClaimsRef<'a> {
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(rename = "gen")]
    generation: u64,
}

fn append_base64(out: &mut Vec<u8>, input: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(input.len(), false).unwrap_or(0);
    out.resize(start + len, 0);
    let written = URL_SAFE_NO_PAD
        .encode_slice(input, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Verifies tokens against one or more keys (two during a rotation).
#[derive(Clone, Debug, Default)]
pub struct TokenVerifier {
    keys: Vec<(String, VerifyingKey)>,
}

impl TokenVerifier {
    /// Adds a verification key (for key rotation).
    pub fn with_key(mut self, kid: &str, key: VerifyingKey) -> Self {
        self.keys.push((kid.to_string(), key));
        self
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the signature and expiry (`now` in seconds) and returns the claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::UnsupportedHeader);
        }
        let key = self
            .keys
            .iter()
            .find(|(kid, _)| Some(kid.as_str()) == header.kid)
            .map(|(_, key)| key)
            .ok_or(TokenError::UnsupportedHeader)?;
        let signature_bytes = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?;
        let signature =
            Signature::from_slice(&signature_bytes).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..token.len() - signature_b64.len() - 1];
        key.verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{PoolConfig, PoolMetrics};

    fn claims() -> Claims {
        Claims {
            iss: "floe".into(),
            sub: "client-1".into(),
            iat: 1_000,
            exp: 2_000,
            jti: String::new(),
            scope: "catalog".into(),
            generation: 7,
        }
    }

    fn signer() -> TokenSigner {
        TokenSigner::from_seed(&[7u8; 32], "k1")
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let pool = BufferPool::new("token", PoolConfig::tokens(), &PoolMetrics::unregistered());
        let token = signer().issue_pooled(&claims(), &pool).unwrap();
        let text = std::str::from_utf8(&token).unwrap();
        let got = signer().verifier().verify(text, 1_500).unwrap();
        assert_eq!(got.sub, "client-1");
        assert_eq!(got.scope, "catalog");
        assert_eq!(got.jti.len(), 22, "16 random bytes, base64url");
        assert_eq!(
            got.generation, 7,
            "the credential generation travels signed"
        );
        drop(token);
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn pooled_and_unpooled_issuance_agree() {
        let pool = BufferPool::new("token", PoolConfig::tokens(), &PoolMetrics::unregistered());
        let mut fixed = claims();
        fixed.jti = "fixed-id".into();
        let a = signer().issue_pooled(&fixed, &pool).unwrap();
        let b = signer().issue(&fixed).unwrap();
        assert_eq!(a, b, "Ed25519 is deterministic: same claims, same token");
        let c = signer().issue(&claims()).unwrap();
        let d = signer().issue(&claims()).unwrap();
        assert_ne!(c, d, "fresh jti per token");
    }

    #[test]
    fn tampering_expiry_and_unknown_keys_are_refused() {
        let token = String::from_utf8(signer().issue(&claims()).unwrap().to_vec()).unwrap();
        let verifier = signer().verifier();
        assert_eq!(verifier.verify(&token, 2_000), Err(TokenError::Expired));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iss":"floe","sub":"admin","iat":1,"exp":9999}"#);
        parts[1] = &forged;
        assert_eq!(
            verifier.verify(&parts.join("."), 1_500),
            Err(TokenError::BadSignature)
        );
        let other = TokenSigner::from_seed(&[8u8; 32], "k1");
        let foreign = String::from_utf8(other.issue(&claims()).unwrap().to_vec()).unwrap();
        assert_eq!(
            verifier.verify(&foreign, 1_500),
            Err(TokenError::BadSignature)
        );
        let rotated = TokenSigner::from_seed(&[9u8; 32], "k2");
        let new_token = String::from_utf8(rotated.issue(&claims()).unwrap().to_vec()).unwrap();
        assert_eq!(
            verifier.verify(&new_token, 1_500),
            Err(TokenError::UnsupportedHeader)
        );
        let both = verifier
            .clone()
            .with_key("k2", rotated.verifier().keys[0].1);
        assert!(
            both.verify(&new_token, 1_500).is_ok(),
            "two keys during a rotation"
        );
        assert!(both.verify(&token, 1_500).is_ok());
        for junk in ["", "a.b", "a.b.c.d", "!!!.e30.AA", "e30.e30.AA"] {
            assert!(verifier.verify(junk, 1_500).is_err(), "{junk}");
        }
    }
}
