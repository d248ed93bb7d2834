//! Authentication and authorization at the origin (defence in depth: the
//! edge has checked the same rule already): the guard every request passes.
//! The internal API edges read records from is in `routes/internal.rs`.
//!
//! Credentials are checked against principal and API-key records read from
//! the database and cached by [`Credentials`] (rotation re-reads and the
//! argon2id bound are described there). Every change to a record drops it:
//! at once when this process made it, as soon as PostgreSQL relays it from
//! another origin, and within a second (the change log's poll) when another
//! process such as the CLI made it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use floe_shared::auth::{
    Access, ApiKeyRecord, AuthConfig, Authenticator, Credentials, EDGE_SUBJECT, HashingStats,
    INTERNAL_SCOPE, Identity, Principal, PrincipalRef, RecordSource, Required, allows, now_secs,
    required,
};

use crate::error::{CatalogError, Result};
use crate::events::EventBus;
use crate::store::Store;

/// The origin's authentication state.
#[derive(Clone)]
pub struct OriginAuth {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    authenticator: Authenticator,
    credentials: Credentials<StoreRecords>,
    default_warehouse: String,
}

/// The origin reads principal and API-key records from its database.
struct StoreRecords(Store);

impl RecordSource for StoreRecords {
    type Error = CatalogError;

    async fn principal(&self, who: PrincipalRef<'_>) -> Result<Option<Principal>> {
        let record = match who {
            PrincipalRef::Client(id) => self.0.principal(id).await?,
            PrincipalRef::Subject(subject) => self.0.principal_by_subject(subject).await?,
        };
        Ok(record.map(|r| r.principal))
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self.0.api_key(id).await?.map(|(record, _)| record))
    }
}

impl std::fmt::Debug for OriginAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginAuth")
            .field("enabled", &self.enabled())
            .finish()
    }
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
        let oidc = floe_shared::auth::oidc::load(&config.oidc)
            .await
            .map_err(anyhow::Error::msg)?;
        if let Some(verifier) = &oidc {
            tokio::spawn(floe_shared::auth::oidc::refresh_loop(
                verifier.clone(),
                config.oidc.clone(),
            ));
        }
        let inner = Arc::new(Inner {
            authenticator: Authenticator::new(config, oidc).map_err(anyhow::Error::msg)?,
            credentials: Credentials::new(StoreRecords(store), config),
            default_warehouse: default_warehouse.to_string(),
        });
        let weak = Arc::downgrade(&inner);
        events.on_auth(Arc::new(move |event| {
            let Some(inner) = weak.upgrade() else { return };
            match event {
                Some(event) => inner
                    .credentials
                    .forget(&event.principal, event.api_key.as_deref()),
                None => inner.credentials.forget_all(),
            }
        }));
        Ok(Self { inner: Some(inner) })
    }

    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// argon2id checks of API keys: running now, the most at once, the bound.
    pub fn hashing_stats(&self) -> Option<HashingStats> {
        self.inner.as_ref().map(|i| i.credentials.hashing_stats())
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
            .map_err(CatalogError::Unauthorized)?;
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
        let principal = inner.credentials.resolve(identity).await?;
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
