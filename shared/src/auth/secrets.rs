//! Client secrets and API keys: generating them, hashing them with argon2id,
//! checking a presented one (with pooled working memory), the API-key
//! format, and the digests the verified-credential caches keep.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::token::TokenError;

/// Prefix of API keys: `floe_<key id>_<secret>`.
pub const API_KEY_PREFIX: &str = "floe_";

/// A fresh random secret: 32 bytes, base64url.
pub fn new_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| TokenError::Randomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh key id: 8 random bytes, hex.
pub fn new_key_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|_| TokenError::Randomness)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The argon2id PHC string of `secret` (default parameters, random salt).
/// Slow on purpose (tens of milliseconds): call it off the async runtime.
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(HashError)
}

/// argon2 could not hash a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HashError(#[source] pub argon2::password_hash::Error);

/// Whether `secret` matches the PHC string `hash`. Slow on purpose: call it
/// off the async runtime.
///
/// argon2id's working memory (19 MiB at the default parameters) comes from
/// [`HASH_MEMORY`] and goes back to it. Allocated and freed on every check,
/// it made glibc raise its mmap threshold past that size after the first
/// free, so every later check took the memory from a thread's heap arena,
/// where it stayed resident: each failed token request grew the edge by
/// 19 MiB (found by the soak, `tests/soak`).
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let mut memory = HASH_MEMORY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop()
        .unwrap_or_default();
    let ok = verify_with_memory(secret.as_bytes(), &parsed, &mut memory);
    if memory.len() <= MAX_KEPT_BLOCKS {
        let mut kept = HASH_MEMORY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < hash_memory_slots() {
            kept.push(memory);
        }
    }
    ok
}

/// Working memory of argon2id checks, one buffer per check that ran at once
/// (at most [`hash_memory_slots`] kept: the callers run that many at a time).
static HASH_MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

/// Buffers above this many 1 KiB blocks (64 MiB) are not kept.
const MAX_KEPT_BLOCKS: usize = 65536;

/// How many argon2id checks the tiers run at once (their hashing semaphores),
/// so how many buffers are kept.
pub fn hash_memory_slots() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// argon2's own verification (`PasswordVerifier`) with `memory` as its
/// working memory, grown when the hash's parameters need more.
fn verify_with_memory(
    secret: &[u8],
    parsed: &PasswordHash<'_>,
    memory: &mut Vec<argon2::Block>,
) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        argon2::Params::try_from(parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret, salt, out, &mut memory[..blocks])
        .is_ok()
        // `Output`'s equality is constant-time.
        && argon2::password_hash::Output::new(out).is_ok_and(|computed| computed == expected)
}

/// Splits an API key `floe_<id>_<secret>` into id and secret.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// What the verified-credential caches keep for a secret that passed
/// argon2id: the SHA-256 of the secret together with the hash it matched, so
/// a changed hash (rotation) never matches a remembered secret.
pub fn credential_digest(secret: &str, hash: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(hash.as_bytes());
    hasher.update([0u8]);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// Lowercase hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// SHA-256 of a presented secret: what the verified-credential caches keep
/// (never the secret itself).
pub fn secret_digest(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 43);
        let hash = hash_secret(&secret).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains(&secret));
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret("wrong", &hash));
        assert!(!verify_secret(&secret, "not a hash"));
        assert_ne!(credential_digest("s", "h1"), credential_digest("s", "h2"));
    }

    /// The pooled check agrees with argon2's own verification, for the
    /// default parameters and others, and keeps its buffers bounded.
    #[test]
    fn pooled_checks_agree_with_argon2_and_reuse_their_memory() {
        use argon2::password_hash::PasswordVerifier;
        let small = argon2::Params::new(64, 2, 2, Some(24)).unwrap();
        let hashes = [
            hash_secret("right").unwrap(),
            argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                small.clone(),
            )
            .hash_password(b"right", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string(),
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x10, small)
                .hash_password(b"right", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string(),
        ];
        for hash in &hashes {
            let parsed = PasswordHash::new(hash).unwrap();
            for secret in ["right", "wrong", "", "right "] {
                let theirs = argon2::Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(verify_secret(secret, hash), theirs, "{hash} {secret:?}");
                assert_eq!(theirs, secret == "right");
            }
        }
        // Another hash's salt, or a cut output: refused.
        let (a, b) = (&hashes[0], hash_secret("right").unwrap());
        let swapped = format!(
            "{}${}",
            a.rsplit_once('$').unwrap().0,
            b.rsplit_once('$').unwrap().1
        );
        assert!(!verify_secret("right", &swapped));
        assert!(!verify_secret("right", &a[..a.len() - 4]));
        let kept = HASH_MEMORY.lock().unwrap();
        assert!(!kept.is_empty() && kept.len() <= hash_memory_slots());
        // The default parameters' 19 MiB buffer is among them, ready for reuse.
        assert!(
            kept.iter()
                .any(|m| m.len() >= argon2::Params::DEFAULT.block_count())
        );
    }

    #[test]
    fn api_keys_parse() {
        let id = new_key_id().unwrap();
        let key = format!("floe_{id}_abc_def");
        assert_eq!(parse_api_key(&key), Some((id.as_str(), "abc_def")));
        assert_eq!(parse_api_key("floe_short_x"), None);
        assert_eq!(parse_api_key("eyJ.x.y"), None);
    }
}
