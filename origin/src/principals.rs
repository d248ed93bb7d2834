//! Managing clients (principals), their grants and API keys; shared by the
//! HTTP management API and the CLI. Secrets are generated here, shown once,
//! and stored only as argon2id hashes. Every change is published as an auth
//! event (and written to the database's change log, which serving origins
//! poll: changes made by the CLI reach edges too), so edges and other origins
//! drop what they cached. Rotation, disabling and token revocation start a new
//! credential generation: every token minted before is refused, whatever its
//! `iat`.

use floe_shared::auth::{Grant, hash_secret, new_key_id, new_secret, validate_client_id};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::events::EventBus;
use crate::store::{PrincipalRecord, Store};

/// `POST /management/v1/clients`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// The client id.
    pub name: String,
    /// Roles granted at creation.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Subject of the external OpenID Connect issuer this principal is.
    #[serde(default, rename = "oidc-subject")]
    pub oidc_subject: Option<String>,
    /// Generate a client secret (default true; false for OpenID Connect-only principals).
    #[serde(default = "yes", rename = "with-secret")]
    pub with_secret: bool,
}

fn yes() -> bool {
    true
}

/// A client as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientView {
    /// Client id.
    #[serde(rename = "client-id")]
    pub client_id: String,
    /// Disabled clients are refused everywhere.
    pub disabled: bool,
    /// Whether a client secret is set.
    #[serde(rename = "has-secret")]
    pub has_secret: bool,
    /// External subject, when mapped.
    #[serde(rename = "oidc-subject", skip_serializing_if = "Option::is_none")]
    pub oidc_subject: Option<String>,
    /// Tokens issued before this (seconds since the epoch) are revoked.
    #[serde(rename = "tokens-not-before")]
    pub not_before: u64,
    /// Credential generation: tokens minted before its last bump are revoked.
    #[serde(rename = "credential-generation", default)]
    pub generation: u64,
    /// Roles.
    pub grants: Vec<Grant>,
}

/// A new or rotated client secret: shown once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientSecret {
    /// Client id.
    #[serde(rename = "client-id")]
    pub client_id: String,
    /// The secret; only its hash is kept.
    #[serde(rename = "client-secret", skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// `GET /management/v1/clients`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientList {
    /// All clients by id.
    pub clients: Vec<ClientView>,
}

/// `POST /management/v1/clients/{id}/api-keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label for operators.
    #[serde(default)]
    pub name: String,
}

/// A new or rotated API key: shown once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKeySecret {
    /// Key id.
    #[serde(rename = "key-id")]
    pub key_id: String,
    /// The principal it acts as.
    #[serde(rename = "client-id")]
    pub client_id: String,
    /// The whole key, sent as `Authorization: Bearer <key>`.
    #[serde(rename = "api-key")]
    pub api_key: String,
}

/// An API key as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKeyView {
    /// Key id.
    #[serde(rename = "key-id")]
    pub key_id: String,
    /// The principal it acts as.
    #[serde(rename = "client-id")]
    pub client_id: String,
    /// Label.
    pub name: String,
    /// Revoked keys are refused.
    pub revoked: bool,
}

/// `GET /management/v1/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKeyList {
    /// All keys.
    #[serde(rename = "api-keys")]
    pub api_keys: Vec<ApiKeyView>,
}

fn view(record: PrincipalRecord) -> ClientView {
    ClientView {
        client_id: record.principal.id,
        disabled: record.principal.disabled,
        has_secret: record.principal.secret_hash.is_some(),
        oidc_subject: record.oidc_subject,
        not_before: record.principal.not_before,
        generation: record.principal.generation,
        grants: record.principal.grants,
    }
}

fn check_grant(grant: &Grant) -> Result<()> {
    if grant.warehouse.is_empty() {
        return Err(CatalogError::BadRequest(
            "A grant names a warehouse, or * for all".into(),
        ));
    }
    if grant.namespace.iter().any(String::is_empty) {
        return Err(CatalogError::BadRequest(
            "Namespace levels must not be empty".into(),
        ));
    }
    if grant.warehouse == "*" && !grant.namespace.is_empty() {
        return Err(CatalogError::BadRequest(
            "A grant on every warehouse (*) cannot name a namespace".into(),
        ));
    }
    Ok(())
}

/// argon2id off the async runtime.
async fn hash(secret: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|e| CatalogError::internal_with(format!("hashing task failed: {e}"), e))?
        .map_err(|e| CatalogError::internal_with(format!("hashing failed: {e}"), e))
}

fn random(result: std::result::Result<String, floe_shared::token::TokenError>) -> Result<String> {
    result.map_err(|e| CatalogError::internal_with(e.to_string(), e))
}

fn no_client(id: &str) -> CatalogError {
    CatalogError::NotFound(format!("Client does not exist: {id}"))
}

/// Creates a client; the secret (when generated) is in the answer only.
pub async fn create_client(
    store: &Store,
    events: &EventBus,
    req: CreateClientRequest,
) -> Result<ClientSecret> {
    validate_client_id(&req.name)
        .map_err(|e| CatalogError::BadRequest(format!("Invalid client name: {e}")))?;
    for grant in &req.grants {
        check_grant(grant)?;
    }
    if !req.with_secret && req.oidc_subject.is_none() {
        return Err(CatalogError::BadRequest(
            "A client needs a secret or an OpenID Connect subject".into(),
        ));
    }
    if req.oidc_subject.as_deref() == Some("") {
        return Err(CatalogError::BadRequest(
            "oidc-subject must not be empty".into(),
        ));
    }
    let secret = if req.with_secret {
        Some(random(new_secret())?)
    } else {
        None
    };
    let secret_hash = match &secret {
        Some(s) => Some(hash(s.clone()).await?),
        None => None,
    };
    store
        .insert_principal(
            &req.name,
            secret_hash.as_deref(),
            req.oidc_subject.as_deref(),
            &req.grants,
        )
        .await?;
    events.publish_auth(&req.name, None).await;
    Ok(ClientSecret {
        client_id: req.name,
        client_secret: secret,
    })
}

/// Lists clients.
pub async fn list_clients(store: &Store) -> Result<ClientList> {
    Ok(ClientList {
        clients: store
            .list_principals()
            .await?
            .into_iter()
            .map(view)
            .collect(),
    })
}

/// One client.
pub async fn get_client(store: &Store, id: &str) -> Result<ClientView> {
    store
        .principal(id)
        .await?
        .map(view)
        .ok_or_else(|| no_client(id))
}

/// Disables (and revokes the tokens of) or re-enables a client.
pub async fn set_disabled(
    store: &Store,
    events: &EventBus,
    id: &str,
    disabled: bool,
) -> Result<ClientView> {
    if !store.set_principal_disabled(id, disabled).await? {
        return Err(no_client(id));
    }
    events.publish_auth(id, None).await;
    get_client(store, id).await
}

/// A new secret; the old one and every token issued with it stop working.
pub async fn rotate_secret(store: &Store, events: &EventBus, id: &str) -> Result<ClientSecret> {
    let secret = random(new_secret())?;
    let secret_hash = hash(secret.clone()).await?;
    if !store.set_principal_secret(id, &secret_hash).await? {
        return Err(no_client(id));
    }
    events.publish_auth(id, None).await;
    Ok(ClientSecret {
        client_id: id.to_string(),
        client_secret: Some(secret),
    })
}

/// Revokes every token issued to the client until now.
pub async fn revoke_tokens(store: &Store, events: &EventBus, id: &str) -> Result<ClientView> {
    if !store.revoke_tokens(id).await? {
        return Err(no_client(id));
    }
    events.publish_auth(id, None).await;
    get_client(store, id).await
}

/// Grants a role (replacing the role of the same place).
pub async fn grant(store: &Store, events: &EventBus, id: &str, grant: Grant) -> Result<ClientView> {
    check_grant(&grant)?;
    store.grant(id, &grant).await?;
    events.publish_auth(id, None).await;
    get_client(store, id).await
}

/// Removes the grant of a place.
pub async fn revoke_grant(
    store: &Store,
    events: &EventBus,
    id: &str,
    grant: Grant,
) -> Result<ClientView> {
    if !store
        .revoke_grant(id, &grant.warehouse, &grant.namespace)
        .await?
    {
        return Err(CatalogError::NotFound(format!(
            "Client {id} has no grant on that place"
        )));
    }
    events.publish_auth(id, None).await;
    get_client(store, id).await
}

/// Creates an API key for a client; the key is in the answer only.
pub async fn create_api_key(
    store: &Store,
    events: &EventBus,
    client: &str,
    req: CreateApiKeyRequest,
) -> Result<ApiKeySecret> {
    if req.name.len() > 256 {
        return Err(CatalogError::BadRequest("API key name is too long".into()));
    }
    let key_id = random(new_key_id())?;
    let secret = random(new_secret())?;
    let secret_hash = hash(secret.clone()).await?;
    store
        .insert_api_key(&key_id, client, &req.name, &secret_hash)
        .await?;
    events.publish_auth(client, Some(&key_id)).await;
    Ok(ApiKeySecret {
        api_key: format!("{}{key_id}_{secret}", floe_shared::auth::API_KEY_PREFIX),
        key_id,
        client_id: client.to_string(),
    })
}

/// Lists API keys (never their secrets).
pub async fn list_api_keys(store: &Store) -> Result<ApiKeyList> {
    Ok(ApiKeyList {
        api_keys: store
            .list_api_keys()
            .await?
            .into_iter()
            .map(|(k, name)| ApiKeyView {
                key_id: k.id,
                client_id: k.principal,
                name,
                revoked: k.revoked,
            })
            .collect(),
    })
}

fn no_key(id: &str) -> CatalogError {
    CatalogError::NotFound(format!("API key does not exist or is revoked: {id}"))
}

/// A new secret for a key; the old key stops working.
pub async fn rotate_api_key(store: &Store, events: &EventBus, id: &str) -> Result<ApiKeySecret> {
    let (record, _) = store.api_key(id).await?.ok_or_else(|| no_key(id))?;
    let secret = random(new_secret())?;
    let secret_hash = hash(secret.clone()).await?;
    if !store.set_api_key_secret(id, &secret_hash).await? {
        return Err(no_key(id));
    }
    events.publish_auth(&record.principal, Some(id)).await;
    Ok(ApiKeySecret {
        api_key: format!("{}{id}_{secret}", floe_shared::auth::API_KEY_PREFIX),
        key_id: id.to_string(),
        client_id: record.principal,
    })
}

/// Revokes a key.
pub async fn revoke_api_key(store: &Store, events: &EventBus, id: &str) -> Result<()> {
    let (record, _) = store.api_key(id).await?.ok_or_else(|| no_key(id))?;
    store.revoke_api_key(id).await?;
    events.publish_auth(&record.principal, Some(id)).await;
    Ok(())
}
