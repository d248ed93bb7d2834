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
//!
//! How to read the room, in the order a request meets it:
//!
//! - `model.rs`: roles, grants, principals and API-key records (what the
//!   origin's internal API serves to edges), and the rule for client names.
//! - `config.rs`: the `auth` section both tiers read, and the token signer
//!   and verifier it builds; `keys.rs` reads and writes its key files.
//! - `authenticator.rs`: what a bearer credential says (a Floe token, a
//!   token of the external issuer, an API key) and whether the principal's
//!   state still accepts it.
//! - `policy.rs`: what a request needs ([`required`], read from the route
//!   grammar) and whether grants give it ([`allows`], [`listing`]).
//! - `secrets.rs`: generating, hashing (argon2id) and checking client
//!   secrets and API keys, and the digests the credential caches keep.
//! - `oauth.rs`: the token endpoint's form parsing, its errors and answer.
//! - `records.rs`: the principal and API-key records credentials are
//!   checked against, cached over each tier's source, and the resolution of
//!   a verified identity to its principal.
//! - `oidc.rs`: an external OpenID Connect issuer's keys (discovery, JWKS
//!   refresh) and the verification of its tokens.
//!
//! Everything is re-exported here: callers write `floe_shared::auth::X`.

mod authenticator;
mod config;
mod keys;
mod model;
#[cfg(test)]
mod noise;
mod oauth;
pub mod oidc;
mod policy;
mod records;
mod secrets;

pub use authenticator::{
    AuthError, Authenticator, EDGE_SUBJECT, INTERNAL_SCOPE, Identity, WWW_AUTHENTICATE,
    WWW_AUTHENTICATE_INVALID, bearer, now_secs, service_claims,
};
pub use config::{AuthConfig, AuthConfigError, KeyFile, OidcConfig, RateLimitConfig};
pub use keys::{KeyError, generate_key_files, load_signing_key, load_verifying_key};
pub use model::{
    API_KEYS_PATH, ApiKeyRecord, ClientNameError, Grant, PRINCIPALS_PATH, Principal, Role,
    UnknownRole, validate_client_id,
};
pub use oauth::{ACCESS_TOKEN_TYPE, CATALOG_SCOPE, OAuthError, TokenRequest, write_token_response};
pub use policy::{Access, Listing, Required, allows, is_public, listing, required};
pub use records::{Credentials, HashingStats, PrincipalRef, RecordSource};
pub use secrets::{
    API_KEY_PREFIX, HashError, credential_digest, hash_memory_slots, hash_secret, hex, new_key_id,
    new_secret, parse_api_key, secret_digest, verify_secret,
};
