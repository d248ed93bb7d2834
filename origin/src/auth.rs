//! Authentication and authorization at the origin (defence in depth: the
//! edge has checked the same rule already), and the internal API edges read
//! principals and API keys from.
//!
//! Principal and API-key records are cached for `auth.principal_cache_seconds`;
//! every change to them (from this process, or relayed from others through
//! PostgreSQL) drops the cached record at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use floe_shared::auth::{
    Access, ApiKeyRecord, AuthConfig, AuthError, Authenticator, EDGE_SUBJECT, ExpiringMap,
    INTERNAL_SCOPE, Identity, Principal, Required, allows, credential_digest, now_secs, required,
    verify_secret,
};

use crate::error::{CatalogError, Result};
use crate::events::EventBus;
use crate::routes::AppState;
use crate::store::Store;

const CACHE_CAPACITY: usize = 100_000;

/// The origin's authentication state.
#[derive(Clone)]
pub struct OriginAuth {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    authenticator: Authenticator,
    store: Store,
    default_warehouse: String,
    /// `c:<id>` and `s:<subject>` → principal.
    principals: ExpiringMap<Arc<Principal>>,
    api_keys: ExpiringMap<Arc<ApiKeyRecord>>,
    /// API key id → digest of the secret that verified.
    verified: ExpiringMap<[u8; 32]>,
}

impl std::fmt::Debug for OriginAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginAuth")
            .field("enabled", &self.enabled())
            .finish()
    }
}

fn unauthorized(e: AuthError) -> CatalogError {
    CatalogError::Unauthorized(e.to_string(), e.presented())
}

impl OriginAuth {
    /// No authentication: every request is allowed.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// From configuration; starts the cache invalidation task on `events`.
    pub async fn start(
        config: &AuthConfig,
        store: Store,
        events: &EventBus,
        default_warehouse: &str,
    ) -> anyhow::Result<Self> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        config.validate(false).map_err(anyhow::Error::msg)?;
        let oidc = floe_shared::oidc::load(&config.oidc)
            .await
            .map_err(anyhow::Error::msg)?;
        if let Some(verifier) = &oidc {
            tokio::spawn(floe_shared::oidc::refresh_loop(
                verifier.clone(),
                config.oidc.clone(),
            ));
        }
        let ttl = Duration::from_secs(config.principal_cache_seconds);
        let inner = Arc::new(Inner {
            authenticator: Authenticator::new(config, oidc).map_err(anyhow::Error::msg)?,
            store,
            default_warehouse: default_warehouse.to_string(),
            principals: ExpiringMap::new(ttl, CACHE_CAPACITY),
            api_keys: ExpiringMap::new(ttl, CACHE_CAPACITY),
            verified: ExpiringMap::new(
                Duration::from_secs(config.credential_cache_seconds),
                CACHE_CAPACITY,
            ),
        });
        let weak = Arc::downgrade(&inner);
        events.on_auth(Arc::new(move |event| {
            let Some(inner) = weak.upgrade() else { return };
            match event {
                Some(event) => {
                    inner.principals.remove(&format!("c:{}", event.principal));
                    inner.principals.remove_where(|p| p.id == event.principal);
                    if let Some(key) = &event.api_key {
                        inner.api_keys.remove(key);
                        inner.verified.remove(key);
                    }
                    inner
                        .api_keys
                        .remove_where(|k| k.principal == event.principal);
                }
                None => {
                    inner.principals.clear();
                    inner.api_keys.clear();
                    inner.verified.clear();
                }
            }
        }));
        Ok(Self { inner: Some(inner) })
    }

    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Authenticates and authorizes one request; says who made it.
    pub async fn check(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Caller> {
        let Some(inner) = &self.inner else {
            return Ok(Caller::Anyone);
        };
        let needed = required(method, path, query, &inner.default_warehouse);
        if needed == Required::Public {
            return Ok(Caller::Unauthenticated);
        }
        let identity = inner
            .authenticator
            .identify(authorization, now_secs())
            .map_err(unauthorized)?;
        let internal = matches!(&identity, Identity::Token(c) if c.scope == INTERNAL_SCOPE && c.sub == EDGE_SUBJECT);
        if needed == Required::Internal || internal {
            return if needed == Required::Internal && internal {
                Ok(Caller::Edge)
            } else {
                Err(CatalogError::Forbidden(
                    "This credential may not call this endpoint".into(),
                ))
            };
        }
        let principal = inner.resolve(identity).await?;
        match needed {
            Required::Access(access) if !allows(&principal.grants, &access) => {
                Err(CatalogError::Forbidden(describe(&principal.id, &access)))
            }
            _ => Ok(Caller::Principal(principal)),
        }
    }
}

/// Who made a request, for the decisions handlers make beyond the route's
/// required role (what storage access to delegate, which requests to sign).
/// Put into every request's extensions by [`guard`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off: everyone may do everything.
    Anyone,
    /// A public route, no credential checked.
    Unauthenticated,
    /// An edge on the internal API.
    Edge,
    /// An authenticated principal.
    Principal(Arc<Principal>),
}

impl Caller {
    /// Whether the caller may write in `namespace` of `warehouse`.
    pub fn may_write(&self, warehouse: &str, namespace: &[String]) -> bool {
        match self {
            Self::Anyone => true,
            Self::Unauthenticated | Self::Edge => false,
            Self::Principal(p) => allows(
                &p.grants,
                &Access {
                    warehouse: Some(warehouse.to_string()),
                    namespace: namespace.to_vec(),
                    role: floe_shared::auth::Role::Writer,
                },
            ),
        }
    }
}

/// The 403 message.
pub fn describe(principal: &str, access: &Access) -> String {
    let place = match &access.warehouse {
        None => "this deployment".to_string(),
        Some(w) if access.namespace.is_empty() => format!("warehouse {w}"),
        Some(w) => format!("namespace {} of warehouse {w}", access.namespace.join(".")),
    };
    format!(
        "Principal {principal} lacks the {} role on {place}",
        access.role.as_str()
    )
}

impl Inner {
    async fn principal(&self, key: String) -> Result<Option<Arc<Principal>>> {
        if let Some(p) = self.principals.get(&key) {
            return Ok(Some(p));
        }
        // A change during the read must win over what the read saw.
        let generation = self.principals.generation();
        let record = match key.split_once(':') {
            Some(("c", id)) => self.store.principal(id).await?,
            Some((_, subject)) => self.store.principal_by_subject(subject).await?,
            None => None,
        };
        Ok(record.map(|r| {
            let p = Arc::new(r.principal);
            self.principals.insert_since(&key, p.clone(), generation);
            p
        }))
    }

    async fn resolve(&self, identity: Identity) -> Result<Arc<Principal>> {
        let revoked = || unauthorized(AuthError::Revoked);
        match identity {
            Identity::Token(claims) => {
                let p = self
                    .principal(format!("c:{}", claims.sub))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_principal(&p, claims.iat).map_err(unauthorized)?;
                Ok(p)
            }
            Identity::External { subject, iat } => {
                let p = self
                    .principal(format!("s:{subject}"))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_principal(&p, iat).map_err(unauthorized)?;
                Ok(p)
            }
            Identity::ApiKey { id, secret } => {
                let key = match self.api_keys.get(&id) {
                    Some(k) => k,
                    None => {
                        let generation = self.api_keys.generation();
                        let (record, _) = self.store.api_key(&id).await?.ok_or_else(revoked)?;
                        let record = Arc::new(record);
                        self.api_keys.insert_since(&id, record.clone(), generation);
                        record
                    }
                };
                if key.revoked {
                    return Err(revoked());
                }
                let digest = credential_digest(&secret, &key.secret_hash);
                if self.verified.get(&id) != Some(digest) {
                    let generation = self.verified.generation();
                    let hash = key.secret_hash.clone();
                    let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
                        .await
                        .unwrap_or(false);
                    if !ok {
                        return Err(revoked());
                    }
                    self.verified.insert_since(&id, digest, generation);
                }
                let p = self
                    .principal(format!("c:{}", key.principal))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_principal(&p, u64::MAX).map_err(unauthorized)?;
                Ok(p)
            }
        }
    }
}

/// Middleware: every request passes [`OriginAuth::check`] first.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !state.auth.enabled() {
        request.extensions_mut().insert(Caller::Anyone);
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let uri = request.uri();
    match state
        .auth
        .check(
            request.method().as_str(),
            uri.path(),
            uri.query(),
            authorization,
        )
        .await
    {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

fn internal_principal(
    state: &AppState,
    record: Option<crate::store::PrincipalRecord>,
) -> Result<Response> {
    let mut principal = record
        .ok_or_else(|| CatalogError::NotFound("No such principal".into()))?
        .principal;
    principal.default_warehouse = state.default_warehouse.clone();
    Ok(axum::Json(principal).into_response())
}

/// `GET /internal/v1/principals/{id}`: a principal with its secret hash (edges only).
pub async fn internal_principal_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let record = state.catalog.store().principal(&id).await?;
    internal_principal(&state, record)
}

/// `GET /internal/v1/subjects/{subject}`: the principal of an external subject.
pub async fn internal_principal_by_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Response> {
    let record = state.catalog.store().principal_by_subject(&subject).await?;
    internal_principal(&state, record)
}

/// `GET /internal/v1/api-keys/{id}`: an API key record (edges only).
pub async fn internal_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let (record, _) = state
        .catalog
        .store()
        .api_key(&id)
        .await?
        .ok_or_else(|| CatalogError::NotFound("No such API key".into()))?;
    Ok(axum::Json(record).into_response())
}
