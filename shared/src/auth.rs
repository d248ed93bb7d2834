//! Who may do what. Both tiers authenticate and authorize with this module,
//! so the edge (which answers table loads from its cache) and the origin
//! (which checks again) can never disagree.
//!
//! - A **principal** is an OAuth2 client (id + argon2id-hashed secret), a
//!   subject of an external OpenID Connect issuer, or both. It holds
//!   **grants**: a role on a warehouse (`*` for all), optionally narrowed to
//!   a namespace and everything below it.
//! - **Roles** are ordered: `reader` < `writer` < `admin`; a grant of a role
//!   also grants the roles below it.
//! - [`required`] maps a request (method, path, query) to the [`Access`] it
//!   needs; [`allows`] decides it against the principal's grants.

use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::token::{Claims, TokenError, TokenSigner, TokenVerifier};

/// Scope of the tokens issued to clients.
pub const CATALOG_SCOPE: &str = "catalog";
/// Scope of the tokens an edge signs for itself to call the origin's internal API.
pub const INTERNAL_SCOPE: &str = "floe:internal";
/// Subject of those service tokens; no client may take this name.
pub const EDGE_SUBJECT: &str = "floe-edge";
/// Prefix of API keys: `floe_<key id>_<secret>`.
pub const API_KEY_PREFIX: &str = "floe_";
/// The value of `WWW-Authenticate` on a 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"floe\"";
/// The value of `WWW-Authenticate` on a 401 for a presented but refused token.
pub const WWW_AUTHENTICATE_INVALID: &str = "Bearer realm=\"floe\", error=\"invalid_token\"";
/// The internal endpoint an edge reads principals from (`/{id}` appended).
pub const PRINCIPALS_PATH: &str = "/internal/v1/principals";
/// The internal endpoint an edge reads API keys from (`/{key id}` appended).
pub const API_KEYS_PATH: &str = "/internal/v1/api-keys";

/// A role, ordered by what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read namespaces, tables and views; plan scans; report metrics.
    Reader,
    /// Also create, change and drop tables and views; create namespaces.
    Writer,
    /// Also drop namespaces and register or unregister tables; on `*`, manage
    /// warehouses, clients and keys.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (reader, writer or admin)")),
        }
    }
}

/// A role on a warehouse, or on a namespace of it and its children.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// Warehouse name, or `*` for every warehouse.
    pub warehouse: String,
    /// Namespace levels; empty for the whole warehouse.
    #[serde(default)]
    pub namespace: Vec<String>,
    /// The role granted.
    pub role: Role,
}

/// A principal as both tiers see it (the origin's internal API serves it to edges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Client id (also the `sub` of its tokens).
    pub id: String,
    /// A disabled principal is refused everywhere.
    #[serde(default)]
    pub disabled: bool,
    /// Tokens issued before this instant (seconds) are revoked: set by
    /// rotation, disabling and explicit revocation. Floe's own tokens are
    /// judged by [`Principal::generation`]; this second is what tokens of the
    /// external issuer (and Floe tokens of earlier releases) are judged by.
    #[serde(default)]
    pub not_before: u64,
    /// Credential generation: bumped by rotation, disabling and explicit
    /// revocation. Every Floe token carries the generation of the record it
    /// was minted from, and is refused once the record's has moved past it,
    /// whatever its `iat` (no one-second window, no clock involved).
    #[serde(default)]
    pub generation: u64,
    /// What it may do.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The argon2id PHC string of the client secret (internal API only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Warehouse served by routes without a prefix (internal API only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_warehouse: String,
}

/// An API key as the origin's internal API serves it to edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Key id (the public part of the key).
    pub id: String,
    /// The principal the key acts as.
    pub principal: String,
    /// argon2id PHC string of the secret part.
    pub secret_hash: String,
    /// A revoked key is refused.
    #[serde(default)]
    pub revoked: bool,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// Nobody needs to authenticate (health, readiness, metrics, the token endpoint).
    Public,
    /// Any authenticated principal (`/v1/config`, unknown routes).
    Authenticated,
    /// An edge's service token.
    Internal,
    /// A role on a warehouse (`None`: every warehouse, i.e. management) and namespace.
    Access(Access),
    /// A listing of the namespace's children: any authenticated principal
    /// may ask; the origin shows what [`listing`] allows (and refuses with
    /// 403 when that is nothing).
    List(Access),
}

/// A role needed on a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Warehouse name; `None` for deployment-wide management.
    pub warehouse: Option<String>,
    /// Namespace levels; empty for the whole warehouse.
    pub namespace: Vec<String>,
    /// The least role that may.
    pub role: Role,
}

/// Routes anyone may call: health, readiness, metrics and the token endpoint.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics" | "/v1/oauth/tokens")
}

/// What `method path?query` needs; unprefixed routes are on `default_warehouse`.
///
/// Read from the route grammar ([`crate::route`]): a request that is no
/// route needs only authentication (it is answered 404 or 405). Operations
/// whose namespaces come from the body (creating a namespace, renaming,
/// multi-table transactions) need the role on the whole warehouse.
pub fn required(
    method: &str,
    path: &str,
    query: Option<&str>,
    default_warehouse: &str,
) -> Required {
    use crate::route::{Area, Operation as Op};
    let Some(route) = crate::route::parse(method, path) else {
        return Required::Authenticated;
    };
    match route.spec.resource.area() {
        Area::Ops => return Required::Public,
        Area::Internal => return Required::Internal,
        Area::Management => {
            return Required::Access(Access {
                warehouse: None,
                namespace: Vec::new(),
                role: Role::Admin,
            });
        }
        Area::Session if route.operation() == Op::GetToken => return Required::Public,
        Area::Session => return Required::Authenticated,
        Area::Catalog => {}
    }
    let warehouse = Some(route.names.warehouse(default_warehouse));
    let namespace = route.names.namespace_levels();
    let role = match route.operation() {
        Op::ListNamespaces => {
            let parent = query
                .into_iter()
                .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                .find(|(k, _)| k == "parent")
                .map(|(_, v)| {
                    v.split('\u{1f}')
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Required::List(Access {
                warehouse,
                namespace: parent,
                role: Role::Reader,
            });
        }
        Op::ListTables | Op::ListViews => {
            return Required::List(Access {
                warehouse,
                namespace,
                role: Role::Reader,
            });
        }
        Op::DropNamespace | Op::RegisterTable | Op::RegisterView | Op::UnregisterTable => {
            Role::Admin
        }
        // Scan planning, metrics reports, credentials and signing are part
        // of reading a table (the origin signs writes only for writers).
        Op::LoadNamespace
        | Op::NamespaceExists
        | Op::LoadTable
        | Op::TableExists
        | Op::ReportMetrics
        | Op::LoadCredentials
        | Op::SignRequest
        | Op::PlanTableScan
        | Op::FetchPlanningResult
        | Op::CancelPlanning
        | Op::FetchScanTasks
        | Op::ListFunctions
        | Op::LoadFunction
        | Op::LoadView
        | Op::ViewExists => Role::Reader,
        _ => Role::Writer,
    };
    Required::Access(Access {
        warehouse,
        namespace,
        role,
    })
}

/// Whether `grants` give `access`.
pub fn allows(grants: &[Grant], access: &Access) -> bool {
    grants.iter().any(|g| {
        g.role >= access.role
            && match &access.warehouse {
                None => g.warehouse == "*" && g.namespace.is_empty(),
                Some(w) => {
                    (g.warehouse == "*" || g.warehouse == *w)
                        && access.namespace.starts_with(&g.namespace)
                }
            }
    })
}

/// What a listing of a namespace's children (namespaces, tables, views)
/// may show a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The principal may read the namespace: every child.
    All,
    /// The principal may read only namespaces below: the children on the
    /// way to them (no tables or views of this namespace).
    OnTheWay(std::collections::BTreeSet<String>),
    /// Nothing here or below: the listing is refused (403).
    Nothing,
}

/// What the principal with `grants` may see when listing `namespace` of
/// `warehouse` (empty: the top level).
pub fn listing(grants: &[Grant], warehouse: &str, namespace: &[String]) -> Listing {
    let read = Access {
        warehouse: Some(warehouse.to_string()),
        namespace: namespace.to_vec(),
        role: Role::Reader,
    };
    if allows(grants, &read) {
        return Listing::All;
    }
    let below: std::collections::BTreeSet<String> = grants
        .iter()
        .filter(|g| {
            (g.warehouse == "*" || g.warehouse == warehouse)
                && g.namespace.len() > namespace.len()
                && g.namespace.starts_with(namespace)
        })
        .map(|g| g.namespace[namespace.len()].clone())
        .collect();
    if below.is_empty() {
        Listing::Nothing
    } else {
        Listing::OnTheWay(below)
    }
}

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
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

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

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

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

fn read_pem(path: &str) -> Result<String, String> {
    std::fs::read_to_string(Path::new(path))
        .map_err(|e| format!("cannot read key file {path}: {e}"))
}

/// Writes a fresh Ed25519 signing key to `path` (PKCS#8 PEM, readable by
/// the owner only) and its public key to `path.pub` (SPKI PEM, for tiers
/// that only verify). Returns the public key's path.
pub fn generate_key_files(path: &Path) -> Result<std::path::PathBuf, String> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(private.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = std::path::PathBuf::from(public_path);
    std::fs::write(&public_path, public).map_err(|e| format!("{}: {e}", public_path.display()))?;
    Ok(public_path)
}

/// Reads an Ed25519 PKCS#8 PEM private key.
pub fn load_signing_key(path: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(&read_pem(path)?)
        .map_err(|e| format!("{path}: not an Ed25519 PKCS#8 private key: {e}"))
}

/// Reads an Ed25519 public key (SPKI PEM), or the public half of a private key.
pub fn load_verifying_key(path: &str) -> Result<VerifyingKey, String> {
    let pem = read_pem(path)?;
    VerifyingKey::from_public_key_pem(&pem)
        .or_else(|_| SigningKey::from_pkcs8_pem(&pem).map(|k| k.verifying_key()))
        .map_err(|e| format!("{path}: not an Ed25519 public or private key: {e}"))
}

impl AuthConfig {
    /// Checks the section and loads its keys; `signing` when this tier issues tokens.
    pub fn validate(&self, signing: bool) -> Result<(), String> {
        if !self.oidc.issuer.is_empty() && self.oidc.audience.trim().is_empty() {
            return Err(format!(
                "auth.oidc.audience is required with auth.oidc.issuer ({}): without it, tokens \
                 that issuer minted for any other application would be accepted here",
                self.oidc.issuer
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.token_ttl_seconds == 0 {
            return Err("auth.token_ttl_seconds must be positive".into());
        }
        if signing && self.signing_key.path.is_empty() {
            return Err("auth.signing_key.path is required when auth is enabled".into());
        }
        self.verifier().map(|_| ())
    }

    /// The signer of the configured signing key.
    pub fn signer(&self) -> Result<TokenSigner, String> {
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
    pub fn verifier(&self) -> Result<TokenVerifier, String> {
        let mut verifier = TokenVerifier::default();
        for key in std::iter::once(&self.signing_key).chain(&self.verification_keys) {
            if key.path.is_empty() {
                continue;
            }
            verifier = verifier.with_key(&self.kid(key), load_verifying_key(&key.path)?);
        }
        if verifier.is_empty() && self.oidc.issuer.is_empty() {
            return Err("auth is enabled but no key (auth.signing_key, auth.verification_keys) or OpenID Connect issuer is configured".into());
        }
        Ok(verifier)
    }
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
    oidc: Option<std::sync::Arc<crate::oidc::OidcVerifier>>,
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
        oidc: Option<std::sync::Arc<crate::oidc::OidcVerifier>>,
    ) -> Result<Self, String> {
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
        oidc: Option<std::sync::Arc<crate::oidc::OidcVerifier>>,
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
                    .map_err(AuthError::Invalid)
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

/// Validates a client (principal) name: it is the OAuth2 client id.
pub fn validate_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("client name must be 1 to 128 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err("client name may hold only letters, digits, '-', '_', '.' and '@'".into());
    }
    if id.starts_with("floe-") || id.starts_with(API_KEY_PREFIX) {
        return Err("client names starting with 'floe-' or 'floe_' are reserved".into());
    }
    Ok(())
}

/// An OAuth2 token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// `client_credentials`.
    ClientCredentials {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// Requested scope.
        scope: String,
    },
    /// RFC 8693 token exchange of a Floe access token (refresh).
    Exchange {
        /// The token being exchanged.
        subject_token: String,
        /// Requested scope.
        scope: String,
    },
}

/// An OAuth2 error answer (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_scope`.
    pub error: &'static str,
    /// What went wrong.
    pub error_description: String,
}

impl OAuthError {
    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            error_description: description.into(),
        }
    }
    /// 401 `invalid_client`.
    pub fn invalid_client() -> Self {
        Self {
            status: 401,
            error: "invalid_client",
            error_description: "Client authentication failed".into(),
        }
    }
    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_grant",
            error_description: description.into(),
        }
    }
    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The token-type URN of access tokens (RFC 8693).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

fn basic_credentials(header: &str) -> Result<(String, String), OAuthError> {
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or_else(OAuthError::invalid_client)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = STANDARD
        .decode(value.trim())
        .map_err(|_| OAuthError::invalid_client())?;
    let text = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

impl TokenRequest {
    /// Parses a form body and the optional `Authorization` header.
    pub fn parse(body: &[u8], authorization: Option<&str>) -> Result<Self, OAuthError> {
        let mut grant_type = None;
        let mut client_id = None;
        let mut client_secret = None;
        let mut subject_token = None;
        let mut subject_token_type = None;
        let mut scope = None;
        for (key, value) in form_urlencoded::parse(body) {
            let slot = match key.as_ref() {
                "grant_type" => &mut grant_type,
                "client_id" => &mut client_id,
                "client_secret" => &mut client_secret,
                "subject_token" => &mut subject_token,
                "subject_token_type" => &mut subject_token_type,
                "scope" => &mut scope,
                _ => continue,
            };
            if slot.is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {key} is repeated"
                )));
            }
            *slot = Some(value.into_owned());
        }
        let scope = scope.unwrap_or_else(|| CATALOG_SCOPE.to_string());
        if scope
            .split(' ')
            .any(|s| !s.is_empty() && s != CATALOG_SCOPE)
        {
            return Err(OAuthError {
                status: 400,
                error: "invalid_scope",
                error_description: format!("only the scope {CATALOG_SCOPE:?} is issued"),
            });
        }
        match grant_type.as_deref() {
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some("client_credentials") => {
                // Only HTTP Basic authenticates a client; clients that keep
                // sending their previous bearer token (PyIceberg on refresh)
                // are not using a second method.
                let basic = authorization.filter(|h| {
                    h.trim_start()
                        .get(..6)
                        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "))
                });
                let (client_id, client_secret) = match (basic, client_id, client_secret) {
                    (Some(header), None, None) => basic_credentials(header)?,
                    (None, Some(id), Some(secret)) => (id, secret),
                    (Some(_), _, _) => {
                        return Err(OAuthError::invalid_request(
                            "send client credentials either in the body or with HTTP Basic, not both",
                        ));
                    }
                    _ => {
                        return Err(OAuthError::invalid_request(
                            "client_id and client_secret are required",
                        ));
                    }
                };
                if client_id.is_empty() || client_secret.is_empty() {
                    return Err(OAuthError::invalid_client());
                }
                Ok(TokenRequest::ClientCredentials {
                    client_id,
                    client_secret,
                    scope,
                })
            }
            Some(EXCHANGE_GRANT) => {
                let subject_token = subject_token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
                match subject_token_type.as_deref() {
                    Some(ACCESS_TOKEN_TYPE) | Some(JWT_TOKEN_TYPE) => {}
                    _ => {
                        return Err(OAuthError::invalid_request(
                            "subject_token_type must be an access token or JWT",
                        ));
                    }
                }
                Ok(TokenRequest::Exchange {
                    subject_token,
                    scope,
                })
            }
            Some(other) => Err(OAuthError {
                status: 400,
                error: "unsupported_grant_type",
                error_description: format!("grant_type {other:?} is not supported"),
            }),
        }
    }
}

/// A successful token answer, written into `out` (a pooled buffer).
pub fn write_token_response(out: &mut Vec<u8>, token: &[u8], expires_in: u64) {
    out.extend_from_slice(b"{\"access_token\":\"");
    // Tokens are base64url parts joined by dots: nothing to escape.
    out.extend_from_slice(token);
    out.extend_from_slice(b"\",\"token_type\":\"bearer\",\"expires_in\":");
    out.extend_from_slice(expires_in.to_string().as_bytes());
    out.extend_from_slice(b",\"issued_token_type\":\"");
    out.extend_from_slice(ACCESS_TOKEN_TYPE.as_bytes());
    out.extend_from_slice(b"\",\"scope\":\"catalog\"}");
}

/// A small map whose entries expire: the principal, API-key and
/// verified-credential caches of both tiers. Bounded: it never holds more
/// than `capacity` entries (when full of live entries, it starts over).
/// Keys are strings unless said otherwise (digests are kept as bytes).
#[derive(Debug)]
pub struct ExpiringMap<V, K = String> {
    ttl: std::time::Duration,
    capacity: usize,
    entries: std::sync::Mutex<Entries<K, V>>,
}

#[derive(Debug)]
struct Entries<K, V> {
    map: std::collections::HashMap<K, (std::time::Instant, V)>,
    /// Bumped by every removal: a value read before a removal is not inserted after it.
    generation: u64,
}

/// What a reader notes before fetching a value it means to cache (see
/// [`ExpiringMap::ticket`]): the map's removal count and the instant. A value
/// stored with it ages from that instant, not from when the fetch ended, so
/// a record read before a change is never kept `ttl` past the change.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    at: std::time::Instant,
}

impl<V: Clone, K: std::hash::Hash + Eq> ExpiringMap<V, K> {
    /// Entries live `ttl`; at most `capacity` are kept.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: std::sync::Mutex::new(Entries {
                map: std::collections::HashMap::new(),
                generation: 0,
            }),
        }
    }

    /// The live value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.get_aged(key).map(|(v, _)| v)
    }

    /// The live value of `key` and how long ago it was read.
    pub fn get_aged<Q>(&self, key: &Q) -> Option<(V, std::time::Duration)>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        entries
            .map
            .get(key)
            .map(|(at, v)| (at.elapsed(), v))
            .filter(|(age, _)| *age < self.ttl)
            .map(|(age, v)| (v.clone(), age))
    }

    /// Note this before fetching a value, and pass it to
    /// [`ExpiringMap::insert_since`].
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.entries.lock().map(|e| e.generation).unwrap_or(0),
            at: std::time::Instant::now(),
        }
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: impl Into<K>, value: V) {
        let ticket = self.ticket();
        self.insert_since(key, value, ticket);
    }

    /// Stores `value` (read after `ticket` was taken) unless something was
    /// removed since: the value may predate that removal. It ages from the
    /// ticket's instant.
    pub fn insert_since(&self, key: impl Into<K>, value: V, ticket: Ticket) {
        let key = key.into();
        if let Ok(mut entries) = self.entries.lock() {
            if entries.generation != ticket.generation {
                return;
            }
            if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
                entries.map.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if entries.map.len() >= self.capacity {
                    entries.map.clear();
                }
            }
            entries.map.insert(key, (ticket.at, value));
        }
    }

    /// How many entries are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.map.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.remove(key);
        }
    }

    /// Drops every entry whose value matches.
    pub fn remove_where(&self, f: impl Fn(&V) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.retain(|_, (_, v)| !f(v));
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.generation += 1;
            entries.map.clear();
        }
    }
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

/// Seconds since the epoch (token `iat` / `exp` time).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
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

    fn grant(w: &str, ns: &[&str], role: Role) -> Grant {
        Grant {
            warehouse: w.into(),
            namespace: ns.iter().map(|s| s.to_string()).collect(),
            role,
        }
    }

    fn access(r: Required) -> Access {
        match r {
            Required::Access(a) => a,
            other => panic!("expected access, got {other:?}"),
        }
    }

    #[test]
    fn routes_need_the_right_role_on_the_right_place() {
        let a = access(required(
            "GET",
            "/v1/wh/namespaces/a%1Fb/tables/t",
            None,
            "d",
        ));
        assert_eq!(a.warehouse.as_deref(), Some("wh"));
        assert_eq!(a.namespace, vec!["a", "b"]);
        assert_eq!(a.role, Role::Reader);
        let a = access(required("POST", "/v1/namespaces/a/tables/t", None, "d"));
        assert_eq!((a.warehouse.as_deref(), a.role), (Some("d"), Role::Writer));
        let a = access(required(
            "GET",
            "/v1/w+h/namespaces/my+ns/tables/t",
            None,
            "d",
        ));
        assert_eq!(a.warehouse.as_deref(), Some("w h"));
        assert_eq!(a.namespace, vec!["my ns"]);
        let a = access(required("DELETE", "/v1/wh/namespaces/a", None, "d"));
        assert_eq!(a.role, Role::Admin);
        let a = access(required(
            "POST",
            "/v1/wh/namespaces/a/tables/t/metrics",
            None,
            "d",
        ));
        assert_eq!(a.role, Role::Reader);
        let Required::List(a) = required("GET", "/v1/wh/namespaces", Some("parent=a%1Fb"), "d")
        else {
            panic!("a listing");
        };
        assert_eq!((a.namespace.len(), a.role), (2, Role::Reader));
        for path in ["/v1/wh/namespaces/a/tables", "/v1/wh/namespaces/a/views"] {
            assert!(matches!(
                required("GET", path, None, "d"),
                Required::List(Access { ref namespace, .. }) if namespace == &["a"]
            ));
            assert!(matches!(
                required("POST", path, None, "d"),
                Required::Access(Access {
                    role: Role::Writer,
                    ..
                })
            ));
        }
        let a = access(required("POST", "/v1/wh/namespaces", None, "d"));
        assert_eq!((a.namespace.len(), a.role), (0, Role::Writer));
        let a = access(required("POST", "/v1/wh/tables/rename", None, "d"));
        assert_eq!((a.namespace.len(), a.role), (0, Role::Writer));
        let a = access(required("POST", "/v1/wh/namespaces/a/register", None, "d"));
        assert_eq!(a.role, Role::Admin);
        let a = access(required("GET", "/management/v1/warehouses", None, "d"));
        assert_eq!((a.warehouse, a.role), (None, Role::Admin));
        assert_eq!(
            required("GET", "/v1/config", None, "d"),
            Required::Authenticated
        );
        assert_eq!(
            required("POST", "/v1/oauth/tokens", None, "d"),
            Required::Public
        );
        assert_eq!(
            required("GET", "/internal/v1/events", None, "d"),
            Required::Internal
        );
        assert_eq!(required("GET", "/metrics", None, "d"), Required::Public);
        assert_eq!(required("GET", "/nope", None, "d"), Required::Authenticated);
    }

    #[test]
    fn grants_cover_children_and_lower_roles_only() {
        let grants = vec![
            grant("wh", &["a"], Role::Writer),
            grant("*", &[], Role::Reader),
        ];
        let on = |w: &str, ns: &[&str], role| Access {
            warehouse: Some(w.into()),
            namespace: ns.iter().map(|s| s.to_string()).collect(),
            role,
        };
        assert!(allows(&grants, &on("wh", &["a"], Role::Writer)));
        assert!(allows(&grants, &on("wh", &["a", "b"], Role::Writer)));
        assert!(!allows(&grants, &on("wh", &["ab"], Role::Writer)));
        assert!(!allows(&grants, &on("wh", &[], Role::Writer)));
        assert!(allows(&grants, &on("other", &["x"], Role::Reader)));
        assert!(!allows(&grants, &on("wh", &["a"], Role::Admin)));
        let management = Access {
            warehouse: None,
            namespace: Vec::new(),
            role: Role::Admin,
        };
        assert!(!allows(&grants, &management));
        assert!(!allows(&[grant("wh", &[], Role::Admin)], &management));
        assert!(allows(&[grant("*", &[], Role::Admin)], &management));
        assert!(!allows(&[], &on("wh", &[], Role::Reader)));
    }

    #[test]
    fn listings_show_what_grants_reach() {
        let levels = |ns: &[&str]| ns.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let sales = vec![grant("wh", &["corp", "sales"], Role::Reader)];
        assert_eq!(
            listing(&sales, "wh", &[]),
            Listing::OnTheWay(["corp".to_string()].into())
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp"])),
            Listing::OnTheWay(["sales".to_string()].into())
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp", "sales"])),
            Listing::All
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp", "sales", "eu"])),
            Listing::All
        );
        assert_eq!(listing(&sales, "wh", &levels(&["hr"])), Listing::Nothing);
        assert_eq!(listing(&sales, "other", &[]), Listing::Nothing);
        let everywhere = vec![grant("*", &["x", "y"], Role::Writer)];
        assert_eq!(
            listing(&everywhere, "any", &[]),
            Listing::OnTheWay(["x".to_string()].into())
        );
        assert_eq!(
            listing(&[grant("wh", &[], Role::Reader)], "wh", &[]),
            Listing::All
        );
    }

    #[test]
    fn a_removal_during_a_fetch_wins_over_the_fetched_value() {
        let map: ExpiringMap<i32> = ExpiringMap::new(std::time::Duration::from_secs(60), 10);
        let before = map.ticket();
        map.remove("p");
        map.insert_since("p", 1, before);
        assert_eq!(map.get("p"), None, "read before the removal: not cached");
        map.insert_since("p", 2, map.ticket());
        assert_eq!(map.get("p"), Some(2));
        assert_ne!(credential_digest("s", "h1"), credential_digest("s", "h2"));
    }

    #[test]
    fn entries_age_from_the_start_of_their_fetch_and_the_map_stays_bounded() {
        let ttl = std::time::Duration::from_millis(200);
        let map: ExpiringMap<i32> = ExpiringMap::new(ttl, 3);
        let ticket = map.ticket();
        std::thread::sleep(ttl);
        map.insert_since("slow", 1, ticket);
        assert_eq!(
            map.get("slow"),
            None,
            "a fetch that began a ttl ago is already stale"
        );
        map.insert("fresh", 2);
        let (value, age) = map.get_aged("fresh").unwrap();
        assert!(value == 2 && age < ttl);
        for i in 0..1_000 {
            map.insert(format!("k{i}"), i);
            assert!(map.len() <= 3, "never more than the capacity");
        }
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
    fn an_openid_connect_issuer_needs_an_audience() {
        let mut config = AuthConfig::default();
        config.oidc.issuer = "https://idp.example".into();
        config.oidc.jwks_file = "/nonexistent".into();
        let err = config.validate(false).unwrap_err();
        assert!(err.contains("auth.oidc.audience is required"), "{err}");
        config.enabled = true;
        let err = config.validate(true).unwrap_err();
        assert!(err.contains("auth.oidc.audience is required"), "{err}");
        config.oidc.audience = "floe".into();
        config.enabled = false;
        assert!(config.validate(false).is_ok());
    }

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
    fn api_keys_and_bearer_headers_parse() {
        let id = new_key_id().unwrap();
        let key = format!("floe_{id}_abc_def");
        assert_eq!(parse_api_key(&key), Some((id.as_str(), "abc_def")));
        assert_eq!(parse_api_key("floe_short_x"), None);
        assert_eq!(parse_api_key("eyJ.x.y"), None);
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn token_requests_parse_as_the_spec_says() {
        let r = TokenRequest::parse(
            b"grant_type=client_credentials&client_id=etl&client_secret=s%3Dx&scope=catalog",
            None,
        )
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::ClientCredentials {
                client_id: "etl".into(),
                client_secret: "s=x".into(),
                scope: "catalog".into()
            }
        );
        let basic = format!("Basic {}", STANDARD.encode("etl:se%3Acret"));
        let r = TokenRequest::parse(b"grant_type=client_credentials", Some(&basic)).unwrap();
        assert!(
            matches!(r, TokenRequest::ClientCredentials { client_secret, .. } if client_secret == "se:cret")
        );
        let r = TokenRequest::parse(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
            None,
        )
        .unwrap();
        assert!(matches!(r, TokenRequest::Exchange { .. }));
        let err = |body: &[u8], auth: Option<&str>| TokenRequest::parse(body, auth).unwrap_err();
        assert_eq!(err(b"", None).error, "invalid_request");
        assert_eq!(
            err(b"grant_type=password", None).error,
            "unsupported_grant_type"
        );
        assert_eq!(
            err(b"grant_type=client_credentials&client_id=a", None).error,
            "invalid_request"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=a&client_id=b&client_secret=c",
                None
            )
            .error,
            "invalid_request"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=a&client_secret=b&scope=admin",
                None
            )
            .error,
            "invalid_scope"
        );
        let e = err(b"grant_type=client_credentials", Some("Basic !!!"));
        assert_eq!((e.status, e.error), (401, "invalid_client"));
        assert_eq!(
            err(
                b"grant_type=client_credentials",
                Some(&basic.replace("Basic", "Bearer"))
            )
            .error,
            "invalid_request",
            "a bearer header is no client authentication"
        );
        let r = TokenRequest::parse(
            b"grant_type=client_credentials&client_id=etl&client_secret=s",
            Some("Bearer old.token.here"),
        );
        assert!(
            r.is_ok(),
            "a stale bearer header beside form credentials is ignored"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=etl&client_secret=s",
                Some(&basic)
            )
            .error,
            "invalid_request",
            "two client authentication methods"
        );
    }

    /// Deterministic pseudo-random bytes (xorshift64*).
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
            let len = (self.next() as usize) % (max + 1);
            (0..len)
                .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
                .collect()
        }
    }

    #[test]
    fn malformed_forms_and_tokens_are_refused_without_panicking() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let form_alphabet = b"=&%+grant_type=client_credentialsurn:ietf:%ZZ%FF\xff\x00 ";
        for _ in 0..20_000 {
            let body = noise.bytes(form_alphabet, 120);
            let auth_raw = noise.bytes(b"Basic Bearer YWJj:=+/\xff ", 24);
            let auth = String::from_utf8_lossy(&auth_raw).into_owned();
            if let Err(e) =
                TokenRequest::parse(&body, Some(auth.as_str()).filter(|a| !a.is_empty()))
            {
                assert!(matches!(e.status, 400 | 401), "{e:?}");
            }
        }
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
