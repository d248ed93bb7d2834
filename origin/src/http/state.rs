//! What every handler and layer shares: the catalog, metrics, response
//! bodies, authentication and the limits read from configuration.

use std::sync::Arc;
use std::time::Duration;

use floe_shared::json::JsonBodies;

use super::auth::OriginAuth;
use crate::catalog::Catalog;
use crate::metrics::Metrics;

/// State shared by all handlers: one reference count per clone (axum clones
/// it for every middleware and extractor of every request).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// Shares `parts` between handlers.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What handlers share.
pub struct AppParts {
    /// The catalog service.
    pub catalog: Catalog,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Pooled serialization of response bodies.
    pub bodies: JsonBodies,
    /// Warehouse served by routes without a prefix.
    pub default_warehouse: String,
    /// Largest body accepted.
    pub body_limit: usize,
    /// Authentication and authorization.
    pub auth: OriginAuth,
    /// How long an Idempotency-Key's outcome is kept.
    pub idempotency_lifetime: Duration,
    /// When the process began serving (for its uptime).
    pub started: std::time::Instant,
}
