//! Ed25519 key files: writing a fresh key pair, reading a signing key or a
//! verification key from PEM.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a key file could not be written or read. The text names the file
/// and says what went wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no Ed25519 PKCS#8 private key.
    #[error("{path}: not an Ed25519 PKCS#8 private key: {source}")]
    NotPrivateKey {
        /// The file.
        path: String,
        /// What decoding it said.
        #[source]
        source: ed25519_dalek::pkcs8::Error,
    },
    /// The file holds neither an Ed25519 public key nor a private key.
    #[error("{path}: not an Ed25519 public or private key: {source}")]
    NotKey {
        /// The file.
        path: String,
        /// What decoding it as a private key said.
        #[source]
        source: ed25519_dalek::pkcs8::Error,
    },
    /// No randomness for a fresh key.
    #[error("no randomness: {0}")]
    Randomness(#[source] getrandom::Error),
    /// A fresh private key could not be encoded as PEM.
    #[error("{0}")]
    EncodePrivate(#[source] ed25519_dalek::pkcs8::Error),
    /// A fresh public key could not be encoded as PEM.
    #[error("{0}")]
    EncodePublic(#[source] ed25519_dalek::pkcs8::spki::Error),
    /// A key file could not be written (it may exist already).
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What writing it said.
        #[source]
        source: std::io::Error,
    },
}

fn read_pem(path: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(Path::new(path)).map_err(|source| KeyError::Read {
        path: path.to_string(),
        source,
    })
}

/// Writes a fresh Ed25519 signing key to `path` (PKCS#8 PEM, readable by
/// the owner only) and its public key to `path.pub` (SPKI PEM, for tiers
/// that only verify). Returns the public key's path.
pub fn generate_key_files(path: &Path) -> Result<PathBuf, KeyError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Write { path, source }
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Randomness)?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(KeyError::EncodePrivate)?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(KeyError::EncodePublic)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(written(path))?;
    file.write_all(private.as_bytes()).map_err(written(path))?;
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    std::fs::write(&public_path, public).map_err(written(&public_path))?;
    Ok(public_path)
}

/// Reads an Ed25519 PKCS#8 PEM private key.
pub fn load_signing_key(path: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(&read_pem(path)?).map_err(|source| KeyError::NotPrivateKey {
        path: path.to_string(),
        source,
    })
}

/// Reads an Ed25519 public key (SPKI PEM), or the public half of a private key.
pub fn load_verifying_key(path: &str) -> Result<VerifyingKey, KeyError> {
    let pem = read_pem(path)?;
    VerifyingKey::from_public_key_pem(&pem)
        .or_else(|_| SigningKey::from_pkcs8_pem(&pem).map(|k| k.verifying_key()))
        .map_err(|source| KeyError::NotKey {
            path: path.to_string(),
            source,
        })
}
