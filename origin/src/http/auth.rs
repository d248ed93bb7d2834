//! Authentication and authorization at the origin (defence in depth: the
//! edge has checked the same rule already): the guard every request passes,
//! and the cached principal and API-key records it checks against. The
//! internal API edges read those records from is in `routes/internal.rs`.
//!
//! Principal and API-key records are cached for `auth.principal_cache_seconds`;
//! every change to them drops the cached record: at once when this process
//! made it, as soon as PostgreSQL relays it from another origin, and within
//! a second (the change log's poll) when another process such as the CLI made
//! it. A refused API key whose record may be stale is checked once more
//! against a fresh read, so a rotated key works at once.
//!
//! argon2id on the API-key path runs on at most one blocking thread per
//! core at once, however many requests present keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use floe_shared::auth::{
    Access, ApiKeyRecord, AuthConfig, AuthError, Authenticator, EDGE_SUBJECT, ExpiringMap,
    INTERNAL_SCOPE, Identity, Principal, Required, allows, credential_digest, now_secs, required,
    verify_secret,
};
use floe_shared::token::Claims;

use crate::error::{CatalogError, Result};
use crate::events::EventBus;
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
    /// argon2id runs on at most this many blocking threads at once.
    hashing: tokio::sync::Semaphore,
    hashing_now: AtomicUsize,
    hashing_peak: AtomicUsize,
}

/// How many argon2id checks run at once on the API-key path: now, the most
/// ever seen, and the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingStats {
    /// Running now.
    pub running: usize,
    /// The most that ever ran at once.
    pub peak: usize,
    /// The bound (one per core).
    pub limit: usize,
}

/// Blocking threads argon2id may occupy at once: one per core.
fn hashing_limit() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
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
        config.validate(false).map_err(anyhow::Error::msg)?;
        // Edges hear about principal changes other processes (the CLI) made
        // through this origin, whether or not it checks credentials itself.
        events.watch_principals();
        if !config.enabled {
            return Ok(Self::disabled());
        }
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
            hashing: tokio::sync::Semaphore::new(hashing_limit()),
            hashing_now: AtomicUsize::new(0),
            hashing_peak: AtomicUsize::new(0),
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

    /// argon2id checks of API keys: running now, the most at once, the bound.
    pub fn hashing_stats(&self) -> HashingStats {
        let (running, peak) = self.inner.as_ref().map_or((0, 0), |i| {
            (
                i.hashing_now.load(Ordering::Relaxed),
                i.hashing_peak.load(Ordering::Relaxed),
            )
        });
        HashingStats {
            running,
            peak,
            limit: hashing_limit(),
        }
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
        self.read_principal(key).await
    }

    /// Reads a principal from the database and caches it (unless a change
    /// arrived meanwhile: then the read may predate it).
    async fn read_principal(&self, key: String) -> Result<Option<Arc<Principal>>> {
        let ticket = self.principals.ticket();
        let record = match key.split_once(':') {
            Some(("c", id)) => self.store.principal(id).await?,
            Some((_, subject)) => self.store.principal_by_subject(subject).await?,
            None => None,
        };
        Ok(record.map(|r| {
            let p = Arc::new(r.principal);
            self.principals.insert_since(&key, p.clone(), ticket);
            p
        }))
    }

    /// The principal of a Floe token. A token minted from a newer record than
    /// the cached one proves the cache stale: it is read again (at most once
    /// a second per principal).
    async fn token_principal(&self, claims: &Claims) -> Result<Option<Arc<Principal>>> {
        let key = format!("c:{}", claims.sub);
        match self.principals.get_aged(&key) {
            Some((p, age)) if claims.generation <= p.generation || age < REREAD_AFTER => {
                Ok(Some(p))
            }
            _ => self.read_principal(key).await,
        }
    }

    async fn api_key(&self, id: &str, fresh: bool) -> Result<Option<Arc<ApiKeyRecord>>> {
        if !fresh && let Some(k) = self.api_keys.get(id) {
            return Ok(Some(k));
        }
        let ticket = self.api_keys.ticket();
        let Some((record, _)) = self.store.api_key(id).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.api_keys.insert_since(id, record.clone(), ticket);
        Ok(Some(record))
    }

    /// argon2id on a blocking thread, at most one per core at once.
    async fn hash_check(&self, secret: &str, hash: &str) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let running = self.hashing_now.fetch_add(1, Ordering::Relaxed) + 1;
        self.hashing_peak.fetch_max(running, Ordering::Relaxed);
        let (secret, hash) = (secret.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        self.hashing_now.fetch_sub(1, Ordering::Relaxed);
        ok
    }

    /// Whether `secret` is the key's, remembered as a digest bound to the hash.
    async fn key_matches(&self, key: &ApiKeyRecord, secret: &str) -> bool {
        let digest = credential_digest(secret, &key.secret_hash);
        if self.verified.get(&key.id) == Some(digest) {
            return true;
        }
        let ticket = self.verified.ticket();
        let ok = self.hash_check(secret, &key.secret_hash).await;
        if ok {
            self.verified.insert_since(&key.id, digest, ticket);
        }
        ok
    }

    async fn resolve(&self, identity: Identity) -> Result<Arc<Principal>> {
        let revoked = || unauthorized(AuthError::Revoked);
        match identity {
            Identity::Token(claims) => {
                let p = self.token_principal(&claims).await?.ok_or_else(revoked)?;
                Authenticator::check_token(&p, &claims).map_err(unauthorized)?;
                Ok(p)
            }
            Identity::External { subject, iat } => {
                let p = self
                    .principal(format!("s:{subject}"))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_external(&p, iat).map_err(unauthorized)?;
                Ok(p)
            }
            Identity::ApiKey { id, secret } => {
                let mut key = self.api_key(&id, false).await?.ok_or_else(revoked)?;
                let mut ok = !key.revoked && self.key_matches(&key, &secret).await;
                if !ok && !key.revoked {
                    // The key may have been rotated by another process since
                    // it was cached: one fresh read before refusing (only
                    // after an argon2id check failed, so never more often).
                    let fresh = self.api_key(&id, true).await?.ok_or_else(revoked)?;
                    if fresh.secret_hash != key.secret_hash || fresh.revoked {
                        ok = !fresh.revoked && self.key_matches(&fresh, &secret).await;
                    }
                    key = fresh;
                }
                if !ok {
                    return Err(revoked());
                }
                let p = self
                    .principal(format!("c:{}", key.principal))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_key_holder(&p).map_err(unauthorized)?;
                Ok(p)
            }
        }
    }
}

/// A cached record younger than this is not read again on suspicion alone.
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// Middleware: every request passes [`OriginAuth::check`] first.
pub(crate) async fn guard(
    State(auth): State<OriginAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    if !auth.enabled() {
        request.extensions_mut().insert(Caller::Anyone);
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let uri = request.uri();
    match auth
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
