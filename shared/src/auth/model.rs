//! Roles, grants, principals and API-key records as both tiers see them
//! (the origin's internal API serves them to edges), and the rule for
//! client names.

use serde::{Deserialize, Serialize};

use super::secrets::API_KEY_PREFIX;

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

/// A role name that is none of `reader`, `writer` and `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (reader, writer or admin)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
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

/// Why a client name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientNameError {
    /// Empty, or longer than 128 bytes.
    #[error("client name must be 1 to 128 characters")]
    Length,
    /// A character outside letters, digits, `-`, `_`, `.` and `@`.
    #[error("client name may hold only letters, digits, '-', '_', '.' and '@'")]
    Characters,
    /// `floe-` and `floe_` belong to Floe (its edges' subject, API keys).
    #[error("client names starting with 'floe-' or 'floe_' are reserved")]
    Reserved,
}

/// Validates a client (principal) name: it is the OAuth2 client id.
pub fn validate_client_id(id: &str) -> Result<(), ClientNameError> {
    if id.is_empty() || id.len() > 128 {
        return Err(ClientNameError::Length);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(ClientNameError::Characters);
    }
    if id.starts_with("floe-") || id.starts_with(API_KEY_PREFIX) {
        return Err(ClientNameError::Reserved);
    }
    Ok(())
}
